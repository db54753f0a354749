//! Supervisor of seccomp user notifications: answers each blocked syscall with EPERM and
//! reports it as a [`SeccompDenial`] a person can read.
//!
//! # Protocol
//!
//! Stage 2 (inside the sandbox) installs the filter compiled with
//! `DenyAction::UserNotif` and `Listener::New`, hands the listener to sbx with
//! `sys::send_listener` (sendmsg is not in the filter, so the handover is never notified), closes
//! its own copy and execs the command. sbx takes the fd with `sys::recv_listener` and runs
//! [`supervise`] (or [`Supervisor::spawn`]) on its tokio runtime.
//!
//! # One notification
//!
//! 1. `SECCOMP_IOCTL_NOTIF_RECV` into a zeroed `seccomp_notif`, only after `poll` reports
//!    `POLLIN` (RECV itself blocks and ignores `O_NONBLOCK`). `ENOENT` means the caller was
//!    interrupted or killed after it queued the notification: nothing to answer.
//! 2. Capture, only if the event channel has room: the pointed-to strings and small structs
//!    (`process_vm_readv`, page by page, at most [`Limits::max_string`] bytes a string), the
//!    links of the fds and dirfds in the arguments and the caller's cwd (`/proc/PID/fd/N`,
//!    `/proc/PID/cwd`). All of that is the caller's state, which can change as soon as it runs
//!    again, so it is read before the answer; it is cheap. For the calls that name another
//!    process (ptrace, process_vm_readv/writev, pidfd_getfd) the target's host pid and `comm`
//!    are found here too, with a bounded scan of `/proc`: after the answer the caller could
//!    already have killed the target. That costs those rare calls some latency, no others.
//! 3. `SECCOMP_IOCTL_NOTIF_ID_VALID`: the pid in the notification could have been recycled
//!    between RECV and the reads; if the id is no longer valid nothing read is trusted, no
//!    event is made and no answer is needed (the call is gone).
//! 4. `SECCOMP_IOCTL_NOTIF_SEND` with `{ val: 0, error: -EPERM, flags: 0 }`. Always EPERM,
//!    never `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the arguments were read racily (another thread
//!    of the caller can rewrite them), so they make a report, never a decision. A notification
//!    whose memory cannot be read still gets its EPERM. The exception is connect(2) under
//!    `allowUnixSockets` ([`supervise_with`]), which [`super::connect`] decides and answers
//!    with the result of a connect the supervisor makes itself, still never CONTINUE.
//! 5. After the answer, the decoding into words. The event goes to the
//!    bounded channel with `try_send`; when it is full (or closed) the event is counted in
//!    [`Stats::events_dropped`] and nothing waits: a slow consumer never stalls the sandbox and
//!    memory stays bounded.
//!
//! # Privileges
//!
//! Reading the caller's memory (`process_vm_readv`) and its `/proc/PID/{cwd,fd,ns}` links needs
//! ptrace access to it (`PTRACE_MODE_ATTACH_REALCREDS` for the memory, `PTRACE_MODE_READ` for
//! the links). As root that is always granted; unprivileged, it holds for a dumpable process
//! of the same uid that sbx is an ancestor of (Yama scope <= 1), which is the sandbox. When a
//! read is refused the event shows the pointer (`0x7ffc...`) instead of the string.
//!
//! # Paths and pids
//!
//! Paths come from the caller's memory as passed (`requested_path`) and are made absolute with
//! the caller's cwd or dirfd as the kernel shows them in `/proc` (`path`): that is the path
//! inside the sandbox's mount namespace, a hint, not something to open. Pids in the arguments
//! are numbers in the caller's pid namespace: they are translated to host pids by scanning
//! `/proc` (at most [`Limits::max_proc_scan`] entries) for a process in the same pid namespace
//! (`/proc/X/ns/pid`) whose innermost `NSpid` is that number, and shown with its `comm`
//! (`1 [sh]`). A target in a pid namespace nested below the caller's, or a thread id, is not
//! found and is shown as the bare number.
//!
//! # When the supervisor is gone
//!
//! When the listener fd is closed (task dropped or aborted, sbx killed), the kernel fails the
//! calls waiting for an answer and every later notified call with `ENOSYS`: blocked calls still
//! fail, with ENOSYS instead of EPERM, and the sandbox keeps running. The filter stays; only
//! the reporting is lost. Once the listener is closed the filter has no listener any more, so a
//! process inside could then install a filter of its own with a listener of its own (which only
//! sees its own filter's notifications); while ours is open such a second listener is refused
//! with `EBUSY` (one listener per filter tree).
//!
//! The supervisor ends when the listener reports `POLLHUP`: every task that uses the filter
//! has exited (on Linux 6.18 at exit already, zombies need not be reaped).

use crate::syscalls;
pub use super::connect::UnixSocketPolicy;
use super::connect::Mediator;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tokio::io::Interest;
use tokio::sync::mpsc;

/// Memory is read page by page so that a string ending before an unmapped page is still read.
const READ_CHUNK: u64 = 4096;

/// Notifications handled in a row before the task yields to the runtime.
const BUDGET: u32 = 64;

/// Errors of the supervisor; each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No tokio runtime to spawn the supervisor on.
    #[error("spawning the seccomp supervisor: no tokio runtime")]
    NoRuntime,
    /// The listener could not be registered with the tokio reactor.
    #[error("registering the seccomp listener with the tokio reactor")]
    Register(#[source] io::Error),
    /// Waiting for readiness of the listener failed.
    #[error("waiting for seccomp notifications")]
    Wait(#[source] io::Error),
    /// `poll` on the listener failed or reported an error.
    #[error("polling the seccomp listener")]
    Poll(#[source] io::Error),
    /// `SECCOMP_IOCTL_NOTIF_RECV` failed.
    #[error("receiving a seccomp notification (SECCOMP_IOCTL_NOTIF_RECV)")]
    Recv(#[source] io::Error),
    /// `SECCOMP_IOCTL_NOTIF_ID_VALID` failed otherwise than with ENOENT.
    #[error("checking seccomp notification {id:#x} (SECCOMP_IOCTL_NOTIF_ID_VALID)")]
    IdValid {
        /// The notification's id.
        id: u64,
        /// The ioctl's error.
        #[source]
        source: io::Error,
    },
    /// `SECCOMP_IOCTL_NOTIF_SEND` failed otherwise than with ENOENT.
    #[error("answering seccomp notification {id:#x} (SECCOMP_IOCTL_NOTIF_SEND)")]
    Send {
        /// The notification's id.
        id: u64,
        /// The ioctl's error.
        #[source]
        source: io::Error,
    },
    /// The supervisor task panicked or was aborted.
    #[error("joining the seccomp supervisor task")]
    Join(#[source] tokio::task::JoinError),
}

/// Bounds on the work done for one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest string read from the caller's memory, in bytes (the kernel's `PATH_MAX` is 4096).
    pub max_string: usize,
    /// Most `/proc` entries looked at to translate one pid argument.
    pub max_proc_scan: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_string: 4096,
            max_proc_scan: 4096,
        }
    }
}

/// Counters of one supervisor's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Notifications received.
    pub notifications: u64,
    /// Notifications answered with EPERM.
    pub answered: u64,
    /// Notifications whose caller was gone before the answer (no answer needed).
    pub vanished: u64,
    /// Events handed to the channel.
    pub events_sent: u64,
    /// Events not made or not delivered because the channel was full or closed.
    pub events_dropped: u64,
}

/// One blocked syscall, decoded for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompDenial {
    /// The caller's pid, in sbx's pid namespace (0 if it is not visible there).
    pub pid: u32,
    /// The syscall number on this architecture.
    pub syscall_nr: i64,
    /// The syscall's name ("unknown" for a number `syscall_name` does not know).
    pub syscall: &'static str,
    /// The call in C-like form: `mount("tmpfs", "/mnt", "tmpfs", 0, NULL)`.
    pub summary: String,
    /// The decoded arguments and what they point at, by name.
    pub detail: Vec<(&'static str, String)>,
    /// The main path argument made absolute (see the module documentation), if any.
    pub path: Option<PathBuf>,
    /// The main path argument as the caller passed it, if any.
    pub requested_path: Option<String>,
    /// The caller's command name, when it could be read.
    pub comm: Option<String>,
}

// ----- supervisor -------------------------------------------------------------------------------

/// A [`supervise`] task on the current tokio runtime. Dropping it aborts the task, which closes
/// the listener: from then on the sandbox's blocked calls fail with ENOSYS.
#[derive(Debug)]
pub struct Supervisor {
    handle: Option<tokio::task::JoinHandle<Result<Stats, NotifyError>>>,
}

impl Supervisor {
    /// Spawn [`supervise`] on the current tokio runtime.
    pub fn spawn(
        listener: OwnedFd,
        tx: mpsc::Sender<SeccompDenial>,
        limits: Limits,
    ) -> Result<Supervisor, NotifyError> {
        Self::spawn_with(listener, tx, limits, None)
    }

    /// [`Supervisor::spawn`], mediating connect(2) under `unix` when the filter notifies it
    /// (`allowUnixSockets`, see [`super::connect`]).
    pub fn spawn_with(
        listener: OwnedFd,
        tx: mpsc::Sender<SeccompDenial>,
        limits: Limits,
        unix: Option<UnixSocketPolicy>,
    ) -> Result<Supervisor, NotifyError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        Ok(Supervisor {
            handle: Some(runtime.spawn(supervise_with(listener, tx, limits, unix))),
        })
    }

    /// Wait for the task: its [`Stats`] once every filtered process is gone.
    pub async fn wait(mut self) -> Result<Stats, NotifyError> {
        match self.handle.take() {
            Some(handle) => handle.await.map_err(NotifyError::Join)?,
            None => Ok(Stats::default()),
        }
    }

    /// Abort the task (the listener is closed when the runtime drops it).
    pub fn abort(&self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Answer every notification of `listener` with EPERM and send one [`SeccompDenial`] per
/// answered call to `tx` (dropped when the channel is full), until every process that uses the
/// filter is gone (`POLLHUP`). See the module documentation for the steps.
pub async fn supervise(
    listener: OwnedFd,
    tx: mpsc::Sender<SeccompDenial>,
    limits: Limits,
) -> Result<Stats, NotifyError> {
    supervise_with(listener, tx, limits, None).await
}

/// [`supervise`], handing connect(2) notifications to [`super::connect`] when `unix` is given.
pub async fn supervise_with(
    listener: OwnedFd,
    tx: mpsc::Sender<SeccompDenial>,
    limits: Limits,
    unix: Option<UnixSocketPolicy>,
) -> Result<Stats, NotifyError> {
    let afd = crate::sys::async_fd(listener, Interest::READABLE).map_err(NotifyError::Register)?;
    let fd = afd.get_ref().as_raw_fd();
    let mediator = match unix {
        Some(policy) => Some(Mediator::new(afd.get_ref(), policy, tx.clone()).map_err(NotifyError::Register)?),
        None => None,
    };
    let mut handler = Handler {
        fd,
        tx,
        limits,
        stats: Stats::default(),
        mediator,
    };
    loop {
        let mut guard = afd.readable().await.map_err(NotifyError::Wait)?;
        let mut handled = 0;
        let exhausted = loop {
            match pending(fd)? {
                Pending::Notification => {
                    handler.handle_one()?;
                    handled += 1;
                    if handled >= BUDGET {
                        break true;
                    }
                }
                Pending::HangUp => return Ok(handler.stats),
                Pending::Nothing => break false,
            }
        };
        if exhausted {
            // Keep the readiness (more may be queued) and let other tasks run.
            drop(guard);
            tokio::task::yield_now().await;
        } else {
            // Clears only if no new edge arrived since `readable()` returned (tokio compares
            // readiness ticks), so a notification queued after our poll is not lost.
            guard.clear_ready();
        }
    }
}

enum Pending {
    Notification,
    HangUp,
    Nothing,
}

/// What the listener has now, without blocking.
fn pending(fd: RawFd) -> Result<Pending, NotifyError> {
    let revents = crate::sys::poll_now(fd, libc::POLLIN).map_err(NotifyError::Poll)?;
    if revents & libc::POLLIN != 0 {
        Ok(Pending::Notification)
    } else if revents & libc::POLLHUP != 0 {
        Ok(Pending::HangUp)
    } else if revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        Err(NotifyError::Poll(io::Error::from_raw_os_error(libc::EBADF)))
    } else {
        Ok(Pending::Nothing)
    }
}

struct Handler {
    fd: RawFd,
    tx: mpsc::Sender<SeccompDenial>,
    limits: Limits,
    stats: Stats,
    /// Mediates connect(2) (`allowUnixSockets`); without it connect is never notified.
    mediator: Option<Mediator>,
}

impl Handler {
    fn handle_one(&mut self) -> Result<(), NotifyError> {
        // It blocks only when no notification is queued; `pending` saw POLLIN and we are the
        // only reader.
        let req = match crate::sys::notif_recv(self.fd) {
            Ok(req) => req,
            // The caller was interrupted or killed after queueing the notification.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(NotifyError::Recv(e)),
        };
        self.stats.notifications += 1;
        if let Some(mediator) = &self.mediator
            && i64::from(req.data.nr) == libc::SYS_connect
        {
            // A decision, made and answered on the blocking pool (see super::connect).
            mediator.dispatch(req);
            return Ok(());
        }

        let room = !self.tx.is_closed() && self.tx.capacity() > 0;
        let captured = room.then(|| capture(&req, &self.limits));
        if captured.is_some() && !self.id_valid(req.id)? {
            self.stats.vanished += 1;
            return Ok(());
        }
        if self.answer(req.id)? {
            self.stats.answered += 1;
        } else {
            self.stats.vanished += 1;
        }
        match captured {
            Some(captured) => {
                let event = decode(&captured);
                match self.tx.try_send(event) {
                    Ok(()) => self.stats.events_sent += 1,
                    Err(_) => self.stats.events_dropped += 1,
                }
            }
            None => self.stats.events_dropped += 1,
        }
        Ok(())
    }

    /// Whether notification `id` is still waiting for its answer.
    fn id_valid(&self, id: u64) -> Result<bool, NotifyError> {
        crate::sys::notif_id_valid(self.fd, id).map_err(|source| NotifyError::IdValid { id, source })
    }

    /// Answer `id` with EPERM; `false` if the caller is gone.
    fn answer(&self, id: u64) -> Result<bool, NotifyError> {
        crate::sys::notif_send(self.fd, id, -libc::EPERM).map_err(|source| NotifyError::Send { id, source })
    }
}

// ----- capture (before the answer) --------------------------------------------------------------

/// How an argument is read before the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A number: nothing to read.
    Int,
    /// A NUL-terminated string.
    Str,
    /// A path string, relative to the cwd (`None`) or to the dirfd in argument `n`.
    Path(Option<usize>),
    /// A file descriptor (or dirfd): its `/proc/PID/fd/N` link.
    Fd,
    /// A pidfd: its link and the pid in its fdinfo.
    PidFd,
    /// A pid in the caller's pid namespace.
    Pid,
    /// A pointer to this many bytes of a struct.
    Bytes(usize),
}

const P: Kind = Kind::Path(None);
const I: Kind = Kind::Int;
const INTS: [Kind; 6] = [I; 6];

const KEYCTL_JOIN_SESSION_KEYRING: u64 = 1;
const KEYCTL_SEARCH: u64 = 10;
const FSCONFIG_SET_FLAG: u64 = 0;
const FSCONFIG_SET_STRING: u64 = 1;
const FSCONFIG_SET_BINARY: u64 = 2;
const FSCONFIG_SET_PATH: u64 = 3;
const FSCONFIG_SET_PATH_EMPTY: u64 = 4;
const FSCONFIG_SET_FD: u64 = 5;
const LINUX_REBOOT_CMD_RESTART2: u64 = 0xA1B2_C3D4;
const SYS_OPEN_TREE_ATTR: i64 = 467;

fn kinds(nr: i64, a: &[u64; 6]) -> [Kind; 6] {
    use Kind::*;
    let at = |d: usize| Path(Some(d));
    match nr {
        libc::SYS_mount => [Str, P, Str, I, Str, I],
        libc::SYS_umount2 | libc::SYS_swapon | libc::SYS_swapoff | libc::SYS_acct => {
            [P, I, I, I, I, I]
        }
        libc::SYS_pivot_root => [P, P, I, I, I, I],
        libc::SYS_init_module => [I, I, Str, I, I, I],
        libc::SYS_finit_module => [Fd, Str, I, I, I, I],
        libc::SYS_delete_module => [Str, I, I, I, I, I],
        libc::SYS_kexec_file_load => [Fd, Fd, I, Str, I, I],
        libc::SYS_setns | libc::SYS_quotactl_fd | libc::SYS_fsmount => [Fd, I, I, I, I, I],
        libc::SYS_io_uring_enter | libc::SYS_io_uring_register => [Fd, I, I, I, I, I],
        libc::SYS_open_by_handle_at => [Fd, I, I, I, I, I],
        libc::SYS_ptrace => [I, Pid, I, I, I, I],
        libc::SYS_process_vm_readv | libc::SYS_process_vm_writev => [Pid, I, I, I, I, I],
        libc::SYS_pidfd_getfd => [PidFd, I, I, I, I, I],
        libc::SYS_ioctl => {
            let req = a[1] & 0xffff_ffff;
            let pointee = if req == libc::TIOCSTI || req == libc::TIOCLINUX {
                Bytes(1)
            } else {
                I
            };
            [Fd, I, pointee, I, I, I]
        }
        libc::SYS_bpf => [I, Bytes(4), I, I, I, I],
        libc::SYS_perf_event_open => [Bytes(16), I, I, Fd, I, I],
        libc::SYS_keyctl => match a[0] {
            KEYCTL_JOIN_SESSION_KEYRING => [I, Str, I, I, I, I],
            KEYCTL_SEARCH => [I, I, Str, Str, I, I],
            _ => INTS,
        },
        libc::SYS_add_key => [Str, Str, I, I, I, I],
        libc::SYS_request_key => [Str, Str, Str, I, I, I],
        libc::SYS_name_to_handle_at => [Fd, at(0), I, I, I, I],
        libc::SYS_reboot if a[2] & 0xffff_ffff == LINUX_REBOOT_CMD_RESTART2 => [I, I, I, Str, I, I],
        libc::SYS_fsopen => [Str, I, I, I, I, I],
        libc::SYS_fsconfig => {
            let key = if a[1] <= FSCONFIG_SET_FD { Str } else { I };
            match a[1] {
                FSCONFIG_SET_STRING => [Fd, I, key, Str, I, I],
                FSCONFIG_SET_PATH | FSCONFIG_SET_PATH_EMPTY => [Fd, I, key, at(4), Fd, I],
                FSCONFIG_SET_FD => [Fd, I, key, I, Fd, I],
                _ => [Fd, I, key, I, I, I],
            }
        }
        libc::SYS_fspick | libc::SYS_open_tree | SYS_OPEN_TREE_ATTR => [Fd, at(0), I, I, I, I],
        libc::SYS_mount_setattr => [Fd, at(0), I, Bytes(32), I, I],
        libc::SYS_move_mount => [Fd, at(0), Fd, at(2), I, I],
        libc::SYS_quotactl => [I, P, I, I, I, I],
        _ => INTS,
    }
}

/// A string read from the caller's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Text {
    /// The pointer was NULL.
    Null,
    /// The bytes before the NUL, or the first `max_string` ones (`truncated`).
    Read { bytes: Vec<u8>, truncated: bool },
    /// Nothing could be read at the pointer.
    Unreadable,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum ArgData {
    #[default]
    None,
    Text(Text),
    Link(Option<PathBuf>),
    PidFd {
        link: Option<PathBuf>,
        target: Option<Target>,
    },
    Pid(Option<Target>),
    Bytes(Option<Vec<u8>>),
}

/// A process named by a pid argument or a pidfd.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host_pid: u32,
    comm: Option<String>,
}

/// The caller's pid namespace, for translating pid arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallerNs {
    /// `readlink /proc/PID/ns/pid`.
    link: PathBuf,
    /// How many levels `NSpid` has (1: the caller is in our /proc's pid namespace).
    depth: usize,
}

/// Everything read about one notification before it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Captured {
    pid: u32,
    /// The call was made with the native ABI (the only one the filter lets through).
    native: bool,
    nr: i64,
    args: [u64; 6],
    kinds: [Kind; 6],
    data: [ArgData; 6],
    cwd: Option<PathBuf>,
    /// The caller's command name, read before the answer (it may exit
    /// right after).
    comm: Option<String>,
}

fn capture(req: &libc::seccomp_notif, limits: &Limits) -> Captured {
    let pid = req.pid;
    let nr = i64::from(req.data.nr);
    let args = req.data.args;
    let native = syscalls::native_arch() == Some(req.data.arch);
    let kinds = if native { kinds(nr, &args) } else { INTS };
    let mut data: [ArgData; 6] = Default::default();
    let mut caller_ns: Option<Option<CallerNs>> = None;
    let mut need_cwd = false;
    if pid != 0 {
        for (i, kind) in kinds.iter().enumerate() {
            data[i] = match *kind {
                Kind::Int => ArgData::None,
                Kind::Str => ArgData::Text(read_cstr(pid, args[i], limits.max_string)),
                Kind::Path(dirfd) => {
                    let text = read_cstr(pid, args[i], limits.max_string);
                    if let Text::Read { bytes, .. } = &text {
                        let relative = bytes.first() != Some(&b'/');
                        let from_cwd = dirfd.is_none_or(|d| fd_arg(args[d]) == libc::AT_FDCWD);
                        need_cwd |= relative && from_cwd;
                    }
                    ArgData::Text(text)
                }
                Kind::Fd => ArgData::Link(fd_link(pid, fd_arg(args[i]))),
                Kind::PidFd => {
                    let fd = fd_arg(args[i]);
                    ArgData::PidFd {
                        link: fd_link(pid, fd),
                        target: pidfd_pid(pid, fd).map(target),
                    }
                }
                Kind::Pid => {
                    let ns = caller_ns.get_or_insert_with(|| caller_pid_ns(pid));
                    let host = ns
                        .as_ref()
                        .and_then(|ns| host_pid(fd_arg(args[i]), ns, limits));
                    ArgData::Pid(host.map(target))
                }
                Kind::Bytes(n) => ArgData::Bytes(read_bytes(pid, args[i], n)),
            };
        }
    }
    let cwd = if need_cwd {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
    } else {
        None
    };
    let comm = (pid != 0)
        .then(|| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .flatten()
        .map(|c| c.trim_end().to_owned());
    Captured {
        pid,
        native,
        nr,
        args,
        kinds,
        data,
        cwd,
        comm,
    }
}

/// An fd argument as the kernel reads it (`int`).
fn fd_arg(v: u64) -> i32 {
    v as u32 as i32
}

/// Read a NUL-terminated string of at most `max` bytes at `addr`, page by page.
fn read_cstr(pid: u32, addr: u64, max: usize) -> Text {
    if addr == 0 {
        return Text::Null;
    }
    let mut bytes = Vec::new();
    let mut cur = addr;
    while bytes.len() < max {
        let to_boundary = (READ_CHUNK - cur % READ_CHUNK) as usize;
        let start = bytes.len();
        bytes.resize(start + to_boundary.min(max - start), 0);
        match crate::sys::read_process_memory(pid, cur, &mut bytes[start..]) {
            Ok(n) if n > 0 => {
                bytes.truncate(start + n);
                if let Some(nul) = bytes[start..].iter().position(|&b| b == 0) {
                    bytes.truncate(start + nul);
                    return Text::Read {
                        bytes,
                        truncated: false,
                    };
                }
                match cur.checked_add(n as u64) {
                    Some(next) => cur = next,
                    None => break,
                }
            }
            _ => {
                bytes.truncate(start);
                if start == 0 {
                    return Text::Unreadable;
                }
                break;
            }
        }
    }
    Text::Read {
        bytes,
        truncated: true,
    }
}

fn read_bytes(pid: u32, addr: u64, n: usize) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut buf = vec![0u8; n];
    match crate::sys::read_process_memory(pid, addr, &mut buf) {
        Ok(got) if got == n => Some(buf),
        _ => None,
    }
}

fn fd_link(pid: u32, fd: i32) -> Option<PathBuf> {
    if fd < 0 {
        return None;
    }
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// The pid a pidfd refers to, in our /proc's pid namespace (`Pid:` of its fdinfo).
fn pidfd_pid(pid: u32, fd: i32) -> Option<u32> {
    if fd < 0 {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    status_field(&info, "Pid:")?.trim().parse().ok()
}

fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key))
}

fn nspid(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = status_field(&status, "NSpid:")?;
    field.split_whitespace().map(|p| p.parse().ok()).collect()
}

fn caller_pid_ns(pid: u32) -> Option<CallerNs> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let depth = nspid(pid)?.len();
    Some(CallerNs { link, depth })
}

fn target(host_pid: u32) -> Target {
    Target {
        host_pid,
        comm: comm(host_pid),
    }
}

fn comm(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

/// The host pid of `ns_pid`, a pid in the caller's pid namespace (see the module docs).
fn host_pid(ns_pid: i32, caller: &CallerNs, limits: &Limits) -> Option<u32> {
    let ns_pid = u32::try_from(ns_pid).ok().filter(|&p| p > 0)?;
    if caller.depth == 1 {
        return Path::new(&format!("/proc/{ns_pid}"))
            .exists()
            .then_some(ns_pid);
    }
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.take(limits.max_proc_scan).flatten() {
        let Some(host) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let same_ns =
            std::fs::read_link(format!("/proc/{host}/ns/pid")).is_ok_and(|l| l == caller.link);
        if same_ns && nspid(host).and_then(|p| p.last().copied()) == Some(ns_pid) {
            return Some(host);
        }
    }
    None
}

// ----- decoding (after the answer) --------------------------------------------------------------

type Table = &'static [(u64, &'static str)];

static MOUNT_FLAGS: Table = &[
    (0x1, "MS_RDONLY"),
    (0x2, "MS_NOSUID"),
    (0x4, "MS_NODEV"),
    (0x8, "MS_NOEXEC"),
    (0x10, "MS_SYNCHRONOUS"),
    (0x20, "MS_REMOUNT"),
    (0x40, "MS_MANDLOCK"),
    (0x80, "MS_DIRSYNC"),
    (0x100, "MS_NOSYMFOLLOW"),
    (0x400, "MS_NOATIME"),
    (0x800, "MS_NODIRATIME"),
    (0x1000, "MS_BIND"),
    (0x2000, "MS_MOVE"),
    (0x4000, "MS_REC"),
    (0x8000, "MS_SILENT"),
    (0x1_0000, "MS_POSIXACL"),
    (0x2_0000, "MS_UNBINDABLE"),
    (0x4_0000, "MS_PRIVATE"),
    (0x8_0000, "MS_SLAVE"),
    (0x10_0000, "MS_SHARED"),
    (0x20_0000, "MS_RELATIME"),
    (0x40_0000, "MS_KERNMOUNT"),
    (0x80_0000, "MS_I_VERSION"),
    (0x100_0000, "MS_STRICTATIME"),
    (0x200_0000, "MS_LAZYTIME"),
];

static UMOUNT_FLAGS: Table = &[
    (0x1, "MNT_FORCE"),
    (0x2, "MNT_DETACH"),
    (0x4, "MNT_EXPIRE"),
    (0x8, "UMOUNT_NOFOLLOW"),
];

/// The namespace flags, in the order they are printed.
static NS_FLAGS: Table = &[
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2_0000, "CLONE_NEWNS"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x400_0000, "CLONE_NEWUTS"),
    (0x800_0000, "CLONE_NEWIPC"),
    (0x200_0000, "CLONE_NEWCGROUP"),
    (0x80, "CLONE_NEWTIME"),
];

/// unshare(2)'s flags: the namespaces, then the others it takes.
static UNSHARE_FLAGS: Table = &[
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2_0000, "CLONE_NEWNS"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x400_0000, "CLONE_NEWUTS"),
    (0x800_0000, "CLONE_NEWIPC"),
    (0x200_0000, "CLONE_NEWCGROUP"),
    (0x80, "CLONE_NEWTIME"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x4_0000, "CLONE_SYSVSEM"),
];

static PTRACE_REQUESTS: Table = &[
    (0, "PTRACE_TRACEME"),
    (1, "PTRACE_PEEKTEXT"),
    (2, "PTRACE_PEEKDATA"),
    (3, "PTRACE_PEEKUSER"),
    (4, "PTRACE_POKETEXT"),
    (5, "PTRACE_POKEDATA"),
    (6, "PTRACE_POKEUSER"),
    (7, "PTRACE_CONT"),
    (8, "PTRACE_KILL"),
    (9, "PTRACE_SINGLESTEP"),
    (12, "PTRACE_GETREGS"),
    (13, "PTRACE_SETREGS"),
    (14, "PTRACE_GETFPREGS"),
    (15, "PTRACE_SETFPREGS"),
    (16, "PTRACE_ATTACH"),
    (17, "PTRACE_DETACH"),
    (18, "PTRACE_GETFPXREGS"),
    (19, "PTRACE_SETFPXREGS"),
    (24, "PTRACE_SYSCALL"),
    (25, "PTRACE_GET_THREAD_AREA"),
    (26, "PTRACE_SET_THREAD_AREA"),
    (30, "PTRACE_ARCH_PRCTL"),
    (31, "PTRACE_SYSEMU"),
    (32, "PTRACE_SYSEMU_SINGLESTEP"),
    (33, "PTRACE_SINGLEBLOCK"),
    (0x4200, "PTRACE_SETOPTIONS"),
    (0x4201, "PTRACE_GETEVENTMSG"),
    (0x4202, "PTRACE_GETSIGINFO"),
    (0x4203, "PTRACE_SETSIGINFO"),
    (0x4204, "PTRACE_GETREGSET"),
    (0x4205, "PTRACE_SETREGSET"),
    (0x4206, "PTRACE_SEIZE"),
    (0x4207, "PTRACE_INTERRUPT"),
    (0x4208, "PTRACE_LISTEN"),
    (0x4209, "PTRACE_PEEKSIGINFO"),
    (0x420a, "PTRACE_GETSIGMASK"),
    (0x420b, "PTRACE_SETSIGMASK"),
    (0x420c, "PTRACE_SECCOMP_GET_FILTER"),
    (0x420d, "PTRACE_SECCOMP_GET_METADATA"),
    (0x420e, "PTRACE_GET_SYSCALL_INFO"),
    (0x420f, "PTRACE_GET_RSEQ_CONFIGURATION"),
    (0x4210, "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG"),
    (0x4211, "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG"),
];

static ADDRESS_FAMILIES: Table = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (3, "AF_AX25"),
    (4, "AF_IPX"),
    (5, "AF_APPLETALK"),
    (6, "AF_NETROM"),
    (7, "AF_BRIDGE"),
    (8, "AF_ATMPVC"),
    (9, "AF_X25"),
    (10, "AF_INET6"),
    (11, "AF_ROSE"),
    (12, "AF_DECnet"),
    (13, "AF_NETBEUI"),
    (14, "AF_SECURITY"),
    (15, "AF_KEY"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (21, "AF_RDS"),
    (26, "AF_LLC"),
    (27, "AF_IB"),
    (28, "AF_MPLS"),
    (29, "AF_CAN"),
    (30, "AF_TIPC"),
    (31, "AF_BLUETOOTH"),
    (38, "AF_ALG"),
    (40, "AF_VSOCK"),
    (41, "AF_KCM"),
    (42, "AF_QIPCRTR"),
    (43, "AF_SMC"),
    (44, "AF_XDP"),
    (45, "AF_MCTP"),
];

static SOCKET_TYPES: Table = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];

static SOCKET_TYPE_FLAGS: Table = &[(0x800, "SOCK_NONBLOCK"), (0x8_0000, "SOCK_CLOEXEC")];

static BPF_COMMANDS: Table = &[
    (0, "BPF_MAP_CREATE"),
    (1, "BPF_MAP_LOOKUP_ELEM"),
    (2, "BPF_MAP_UPDATE_ELEM"),
    (3, "BPF_MAP_DELETE_ELEM"),
    (4, "BPF_MAP_GET_NEXT_KEY"),
    (5, "BPF_PROG_LOAD"),
    (6, "BPF_OBJ_PIN"),
    (7, "BPF_OBJ_GET"),
    (8, "BPF_PROG_ATTACH"),
    (9, "BPF_PROG_DETACH"),
    (10, "BPF_PROG_TEST_RUN"),
    (11, "BPF_PROG_GET_NEXT_ID"),
    (12, "BPF_MAP_GET_NEXT_ID"),
    (13, "BPF_PROG_GET_FD_BY_ID"),
    (14, "BPF_MAP_GET_FD_BY_ID"),
    (15, "BPF_OBJ_GET_INFO_BY_FD"),
    (16, "BPF_PROG_QUERY"),
    (17, "BPF_RAW_TRACEPOINT_OPEN"),
    (18, "BPF_BTF_LOAD"),
    (19, "BPF_BTF_GET_FD_BY_ID"),
    (20, "BPF_TASK_FD_QUERY"),
    (21, "BPF_MAP_LOOKUP_AND_DELETE_ELEM"),
    (22, "BPF_MAP_FREEZE"),
    (23, "BPF_BTF_GET_NEXT_ID"),
    (24, "BPF_MAP_LOOKUP_BATCH"),
    (25, "BPF_MAP_LOOKUP_AND_DELETE_BATCH"),
    (26, "BPF_MAP_UPDATE_BATCH"),
    (27, "BPF_MAP_DELETE_BATCH"),
    (28, "BPF_LINK_CREATE"),
    (29, "BPF_LINK_UPDATE"),
    (30, "BPF_LINK_GET_FD_BY_ID"),
    (31, "BPF_LINK_GET_NEXT_ID"),
    (32, "BPF_ENABLE_STATS"),
    (33, "BPF_ITER_CREATE"),
    (34, "BPF_LINK_DETACH"),
    (35, "BPF_PROG_BIND_MAP"),
    (36, "BPF_TOKEN_CREATE"),
];

static PERF_TYPES: Table = &[
    (0, "PERF_TYPE_HARDWARE"),
    (1, "PERF_TYPE_SOFTWARE"),
    (2, "PERF_TYPE_TRACEPOINT"),
    (3, "PERF_TYPE_HW_CACHE"),
    (4, "PERF_TYPE_RAW"),
    (5, "PERF_TYPE_BREAKPOINT"),
];

static PERF_FLAGS: Table = &[
    (0x1, "PERF_FLAG_FD_NO_GROUP"),
    (0x2, "PERF_FLAG_FD_OUTPUT"),
    (0x4, "PERF_FLAG_PID_CGROUP"),
    (0x8, "PERF_FLAG_FD_CLOEXEC"),
];

static KEYCTL_OPS: Table = &[
    (0, "KEYCTL_GET_KEYRING_ID"),
    (1, "KEYCTL_JOIN_SESSION_KEYRING"),
    (2, "KEYCTL_UPDATE"),
    (3, "KEYCTL_REVOKE"),
    (4, "KEYCTL_CHOWN"),
    (5, "KEYCTL_SETPERM"),
    (6, "KEYCTL_DESCRIBE"),
    (7, "KEYCTL_CLEAR"),
    (8, "KEYCTL_LINK"),
    (9, "KEYCTL_UNLINK"),
    (10, "KEYCTL_SEARCH"),
    (11, "KEYCTL_READ"),
    (12, "KEYCTL_INSTANTIATE"),
    (13, "KEYCTL_NEGATE"),
    (14, "KEYCTL_SET_REQKEY_KEYRING"),
    (15, "KEYCTL_SET_TIMEOUT"),
    (16, "KEYCTL_ASSUME_AUTHORITY"),
    (17, "KEYCTL_GET_SECURITY"),
    (18, "KEYCTL_SESSION_TO_PARENT"),
    (19, "KEYCTL_REJECT"),
    (20, "KEYCTL_INSTANTIATE_IOV"),
    (21, "KEYCTL_INVALIDATE"),
    (22, "KEYCTL_GET_PERSISTENT"),
    (23, "KEYCTL_DH_COMPUTE"),
    (24, "KEYCTL_PKEY_QUERY"),
    (25, "KEYCTL_PKEY_ENCRYPT"),
    (26, "KEYCTL_PKEY_DECRYPT"),
    (27, "KEYCTL_PKEY_SIGN"),
    (28, "KEYCTL_PKEY_VERIFY"),
    (29, "KEYCTL_RESTRICT_KEYRING"),
    (30, "KEYCTL_MOVE"),
    (31, "KEYCTL_CAPABILITIES"),
    (32, "KEYCTL_WATCH_KEY"),
];

/// Special key serials (`KEY_SPEC_*`), as the kernel reads them (`int32`).
static KEY_SPECS: &[(i32, &str)] = &[
    (-1, "KEY_SPEC_THREAD_KEYRING"),
    (-2, "KEY_SPEC_PROCESS_KEYRING"),
    (-3, "KEY_SPEC_SESSION_KEYRING"),
    (-4, "KEY_SPEC_USER_KEYRING"),
    (-5, "KEY_SPEC_USER_SESSION_KEYRING"),
    (-6, "KEY_SPEC_GROUP_KEYRING"),
    (-7, "KEY_SPEC_REQKEY_AUTH_KEY"),
    (-8, "KEY_SPEC_REQUESTOR_KEYRING"),
];

static REBOOT_MAGIC: Table = &[
    (0xfee1_dead, "LINUX_REBOOT_MAGIC1"),
    (0x2812_1969, "LINUX_REBOOT_MAGIC2"),
    (0x0512_1996, "LINUX_REBOOT_MAGIC2A"),
    (0x1604_1998, "LINUX_REBOOT_MAGIC2B"),
    (0x2011_2000, "LINUX_REBOOT_MAGIC2C"),
];

static REBOOT_COMMANDS: Table = &[
    (0x0123_4567, "LINUX_REBOOT_CMD_RESTART"),
    (0xCDEF_0123, "LINUX_REBOOT_CMD_HALT"),
    (0x89AB_CDEF, "LINUX_REBOOT_CMD_CAD_ON"),
    (0x0000_0000, "LINUX_REBOOT_CMD_CAD_OFF"),
    (0x4321_FEDC, "LINUX_REBOOT_CMD_POWER_OFF"),
    (0xA1B2_C3D4, "LINUX_REBOOT_CMD_RESTART2"),
    (0xD000_FCE2, "LINUX_REBOOT_CMD_SW_SUSPEND"),
    (0x4558_4543, "LINUX_REBOOT_CMD_KEXEC"),
];

static SYSLOG_ACTIONS: Table = &[
    (0, "SYSLOG_ACTION_CLOSE"),
    (1, "SYSLOG_ACTION_OPEN"),
    (2, "SYSLOG_ACTION_READ"),
    (3, "SYSLOG_ACTION_READ_ALL"),
    (4, "SYSLOG_ACTION_READ_CLEAR"),
    (5, "SYSLOG_ACTION_CLEAR"),
    (6, "SYSLOG_ACTION_CONSOLE_OFF"),
    (7, "SYSLOG_ACTION_CONSOLE_ON"),
    (8, "SYSLOG_ACTION_CONSOLE_LEVEL"),
    (9, "SYSLOG_ACTION_SIZE_UNREAD"),
    (10, "SYSLOG_ACTION_SIZE_BUFFER"),
];

static IOCTL_REQUESTS: Table = &[(libc::TIOCSTI, "TIOCSTI"), (libc::TIOCLINUX, "TIOCLINUX")];

static FSOPEN_FLAGS: Table = &[(0x1, "FSOPEN_CLOEXEC")];

static FSCONFIG_COMMANDS: Table = &[
    (0, "FSCONFIG_SET_FLAG"),
    (1, "FSCONFIG_SET_STRING"),
    (2, "FSCONFIG_SET_BINARY"),
    (3, "FSCONFIG_SET_PATH"),
    (4, "FSCONFIG_SET_PATH_EMPTY"),
    (5, "FSCONFIG_SET_FD"),
    (6, "FSCONFIG_CMD_CREATE"),
    (7, "FSCONFIG_CMD_RECONFIGURE"),
    (8, "FSCONFIG_CMD_CREATE_EXCL"),
];

static FSMOUNT_FLAGS: Table = &[(0x1, "FSMOUNT_CLOEXEC")];

static MOUNT_ATTRS: Table = &[
    (0x1, "MOUNT_ATTR_RDONLY"),
    (0x2, "MOUNT_ATTR_NOSUID"),
    (0x4, "MOUNT_ATTR_NODEV"),
    (0x8, "MOUNT_ATTR_NOEXEC"),
    (0x10, "MOUNT_ATTR_NOATIME"),
    (0x20, "MOUNT_ATTR_STRICTATIME"),
    (0x80, "MOUNT_ATTR_NODIRATIME"),
    (0x10_0000, "MOUNT_ATTR_IDMAP"),
    (0x20_0000, "MOUNT_ATTR_NOSYMFOLLOW"),
];

static OPEN_TREE_FLAGS: Table = &[
    (0x1, "OPEN_TREE_CLONE"),
    (0x8_0000, "OPEN_TREE_CLOEXEC"),
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
];

static FSPICK_FLAGS: Table = &[
    (0x1, "FSPICK_CLOEXEC"),
    (0x2, "FSPICK_SYMLINK_NOFOLLOW"),
    (0x4, "FSPICK_NO_AUTOMOUNT"),
    (0x8, "FSPICK_EMPTY_PATH"),
];

static MOVE_MOUNT_FLAGS: Table = &[
    (0x1, "MOVE_MOUNT_F_SYMLINKS"),
    (0x2, "MOVE_MOUNT_F_AUTOMOUNTS"),
    (0x4, "MOVE_MOUNT_F_EMPTY_PATH"),
    (0x10, "MOVE_MOUNT_T_SYMLINKS"),
    (0x20, "MOVE_MOUNT_T_AUTOMOUNTS"),
    (0x40, "MOVE_MOUNT_T_EMPTY_PATH"),
    (0x100, "MOVE_MOUNT_SET_GROUP"),
    (0x200, "MOVE_MOUNT_BENEATH"),
];

static AT_FLAGS: Table = &[
    (0x1, "AT_HANDLE_MNT_ID_UNIQUE"),
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_HANDLE_FID"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
];

static OPEN_FLAGS: Table = &[
    (0x1, "O_WRONLY"),
    (0x2, "O_RDWR"),
    (0x800, "O_NONBLOCK"),
    (0x1_0000, "O_DIRECTORY"),
    (0x2_0000, "O_NOFOLLOW"),
    (0x4_0000, "O_NOATIME"),
    (0x8_0000, "O_CLOEXEC"),
    (0x20_0000, "O_PATH"),
];

static DELETE_MODULE_FLAGS: Table = &[(0x800, "O_NONBLOCK"), (0x200, "O_TRUNC")];

static FINIT_MODULE_FLAGS: Table = &[
    (0x1, "MODULE_INIT_IGNORE_MODVERSIONS"),
    (0x2, "MODULE_INIT_IGNORE_VERMAGIC"),
    (0x4, "MODULE_INIT_COMPRESSED_FILE"),
];

static KEXEC_FILE_FLAGS: Table = &[
    (0x1, "KEXEC_FILE_UNLOAD"),
    (0x2, "KEXEC_FILE_ON_CRASH"),
    (0x4, "KEXEC_FILE_NO_INITRAMFS"),
    (0x8, "KEXEC_FILE_DEBUG"),
];

static SWAP_FLAGS: Table = &[
    (0x8000, "SWAP_FLAG_PREFER"),
    (0x1_0000, "SWAP_FLAG_DISCARD"),
];

static USERFAULTFD_FLAGS: Table = &[
    (0x1, "UFFD_USER_MODE_ONLY"),
    (0x800, "O_NONBLOCK"),
    (0x8_0000, "O_CLOEXEC"),
];

static IO_URING_ENTER_FLAGS: Table = &[
    (0x1, "IORING_ENTER_GETEVENTS"),
    (0x2, "IORING_ENTER_SQ_WAKEUP"),
    (0x4, "IORING_ENTER_SQ_WAIT"),
    (0x8, "IORING_ENTER_EXT_ARG"),
    (0x10, "IORING_ENTER_REGISTERED_RING"),
];

/// `a|b|0x40` for the bits of `v` named in `table`, the rest in hex; `0` for 0.
fn flags(v: u64, table: Table) -> String {
    if v == 0 {
        return "0".to_owned();
    }
    let mut out = String::new();
    let mut rest = v;
    for &(bit, name) in table {
        if bit != 0 && rest & bit == bit {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        if !out.is_empty() {
            out.push('|');
        }
        let _ = write!(out, "{rest:#x}");
    }
    out
}

/// The name of `v` in `table`, or the number.
fn name(v: u64, table: Table) -> String {
    table
        .iter()
        .find(|&&(k, _)| k == v)
        .map_or_else(|| v.to_string(), |&(_, n)| n.to_owned())
}

/// A string as C source would show it, with `...` when truncated.
fn quote(bytes: &[u8], truncated: bool) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    if truncated {
        out.push_str("...");
    }
    out
}

/// A path made absolute against `base` (a cwd or dirfd link), dropping `.` components.
fn resolve(requested: &[u8], base: Option<&Path>) -> Option<PathBuf> {
    let req = Path::new(OsStr::from_bytes(requested));
    let full = if req.is_absolute() {
        req.to_path_buf()
    } else {
        let base = base.filter(|b| b.is_absolute())?;
        if requested.is_empty() {
            base.to_path_buf()
        } else {
            base.join(req)
        }
    };
    Some(
        full.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect(),
    )
}

/// Builds one [`SeccompDenial`] from a [`Captured`].
struct Decoder<'a> {
    c: &'a Captured,
    detail: Vec<(&'static str, String)>,
    path: Option<PathBuf>,
    requested_path: Option<String>,
}

impl Decoder<'_> {
    fn arg(&self, i: usize) -> u64 {
        self.c.args[i]
    }

    fn push(&mut self, key: &'static str, value: String) {
        self.detail.push((key, value));
    }

    /// A string argument, quoted (`NULL`, or the pointer if unreadable); also in `detail`.
    fn string(&mut self, i: usize, key: &'static str) -> String {
        let shown = match &self.c.data[i] {
            ArgData::Text(Text::Read { bytes, truncated }) => quote(bytes, *truncated),
            ArgData::Text(Text::Null) => "NULL".to_owned(),
            _ if self.arg(i) == 0 => "NULL".to_owned(),
            _ => format!("{:#x}", self.arg(i)),
        };
        self.push(key, shown.clone());
        shown
    }

    /// A path argument; its absolute form goes to `detail` as `resolved_key`. The one asked
    /// for with `main` fills `path`/`requested_path`.
    fn path(
        &mut self,
        i: usize,
        key: &'static str,
        resolved_key: &'static str,
        main: bool,
    ) -> String {
        let shown = self.string(i, key);
        let ArgData::Text(Text::Read { bytes, truncated }) = &self.c.data[i] else {
            return shown;
        };
        let base = match self.c.kinds[i] {
            Kind::Path(Some(d)) if fd_arg(self.arg(d)) != libc::AT_FDCWD => match &self.c.data[d] {
                ArgData::Link(link) => link.as_deref(),
                _ => None,
            },
            _ => self.c.cwd.as_deref(),
        };
        let resolved = if *truncated {
            None
        } else {
            resolve(bytes, base)
        };
        if let Some(resolved) = &resolved {
            self.push(resolved_key, resolved.display().to_string());
        }
        if main && self.requested_path.is_none() {
            self.requested_path = Some(String::from_utf8_lossy(bytes).into_owned());
            self.path = resolved;
        }
        shown
    }

    /// An fd argument as a number; its link goes to `detail`.
    fn fd(&mut self, i: usize, key: &'static str) -> String {
        let fd = fd_arg(self.arg(i));
        let link = match &self.c.data[i] {
            ArgData::Link(link) | ArgData::PidFd { link, .. } => link.as_deref(),
            _ => None,
        };
        match link {
            Some(link) => self.push(key, format!("{fd} ({})", link.display())),
            None => self.push(key, fd.to_string()),
        }
        fd.to_string()
    }

    /// An fd argument that names a file: also fills `path` when nothing else did.
    fn file_fd(&mut self, i: usize, key: &'static str) -> String {
        let shown = self.fd(i, key);
        if self.path.is_none()
            && let ArgData::Link(Some(link)) = &self.c.data[i]
            && link.is_absolute()
        {
            self.path = Some(link.clone());
        }
        shown
    }

    /// A dirfd argument: `AT_FDCWD` or the fd.
    fn dirfd(&mut self, i: usize, key: &'static str) -> String {
        if fd_arg(self.arg(i)) == libc::AT_FDCWD {
            self.push(key, "AT_FDCWD".to_owned());
            "AT_FDCWD".to_owned()
        } else {
            self.fd(i, key)
        }
    }

    fn flags(&mut self, i: usize, key: &'static str, table: Table) -> String {
        let shown = flags(self.arg(i), table);
        self.push(key, shown.clone());
        shown
    }

    /// A 32-bit flags argument (the kernel reads an `unsigned int`).
    fn flags32(&mut self, i: usize, key: &'static str, table: Table) -> String {
        let shown = flags(self.arg(i) & 0xffff_ffff, table);
        self.push(key, shown.clone());
        shown
    }

    fn named(&mut self, i: usize, key: &'static str, table: Table) -> String {
        let shown = name(self.arg(i), table);
        self.push(key, shown.clone());
        shown
    }

    fn int(&mut self, i: usize, key: &'static str) -> String {
        let shown = (self.arg(i) as i64).to_string();
        self.push(key, shown.clone());
        shown
    }

    fn int32(&mut self, i: usize, key: &'static str) -> String {
        let shown = fd_arg(self.arg(i)).to_string();
        self.push(key, shown.clone());
        shown
    }

    fn hex(&mut self, i: usize, key: &'static str) -> String {
        let shown = format!("{:#x}", self.arg(i));
        self.push(key, shown.clone());
        shown
    }

    fn key_serial(&mut self, i: usize, key: &'static str) -> String {
        let v = fd_arg(self.arg(i));
        let shown = KEY_SPECS
            .iter()
            .find(|&&(k, _)| k == v)
            .map_or_else(|| v.to_string(), |&(_, n)| n.to_owned());
        self.push(key, shown.clone());
        shown
    }

    /// A pid argument in the caller's pid namespace: `N [comm]` when it can be found.
    fn pid(&mut self, i: usize, key: &'static str) -> String {
        let ns_pid = fd_arg(self.arg(i));
        self.push(key, ns_pid.to_string());
        let target = match &self.c.data[i] {
            ArgData::Pid(target) => target.clone(),
            _ => None,
        };
        self.target(target.as_ref(), ns_pid.to_string())
    }

    /// Adds the host pid and comm of a target process to `detail`; `shown [comm]`.
    fn target(&mut self, target: Option<&Target>, shown: String) -> String {
        let Some(target) = target else {
            return shown;
        };
        self.push("target_host_pid", target.host_pid.to_string());
        match &target.comm {
            Some(comm) => {
                self.push("target_comm", comm.clone());
                format!("{shown} [{comm}]")
            }
            None => shown,
        }
    }

    fn bytes(&self, i: usize) -> Option<&[u8]> {
        match &self.c.data[i] {
            ArgData::Bytes(Some(b)) => Some(b),
            _ => None,
        }
    }

    fn u32_at(&self, i: usize, off: usize) -> Option<u32> {
        let b = self.bytes(i)?.get(off..off + 4)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    }

    fn u64_at(&self, i: usize, off: usize) -> Option<u64> {
        let b = self.bytes(i)?.get(off..off + 8)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }
}

fn call(name: &str, args: &[String]) -> String {
    format!("{name}({})", args.join(", "))
}

fn decode(c: &Captured) -> SeccompDenial {
    let syscall = if c.native {
        syscalls::syscall_name(c.nr).unwrap_or("unknown")
    } else {
        "unknown"
    };
    let mut d = Decoder {
        c,
        detail: Vec::new(),
        path: None,
        requested_path: None,
    };
    let summary = if c.native {
        decode_args(&mut d, syscall)
    } else {
        generic(&mut d, syscall)
    };
    // The entry whose condition these arguments meet (socket has several).
    if let Some(reason) = syscalls::blocked()
        .iter()
        .chain(syscalls::UNIX_SOCKETS)
        .chain(syscalls::MEDIATED_UNIX_SOCKETS)
        .find(|b| b.nr == c.nr && b.condition.matches(&c.args))
        .map(|b| b.reason)
    {
        d.push("reason", reason.to_owned());
    }
    SeccompDenial {
        pid: c.pid,
        syscall_nr: c.nr,
        syscall,
        summary,
        detail: d.detail,
        path: d.path,
        requested_path: d.requested_path,
        comm: c.comm.clone(),
    }
}

fn generic(d: &mut Decoder<'_>, syscall: &str) -> String {
    const KEYS: [&str; 6] = ["arg0", "arg1", "arg2", "arg3", "arg4", "arg5"];
    let args: Vec<String> = (0..6).map(|i| d.hex(i, KEYS[i])).collect();
    call(syscall, &args)
}

fn decode_args(d: &mut Decoder<'_>, syscall: &str) -> String {
    let nr = d.c.nr;
    let a = d.c.args;
    let s = syscall;
    match nr {
        libc::SYS_mount => {
            let src = d.string(0, "source");
            let target = d.path(1, "target", "resolved", true);
            let fstype = d.string(2, "fstype");
            let mut raw = a[3];
            let magic = raw & 0xffff_0000 == 0xC0ED_0000;
            if magic {
                raw &= 0xffff;
            }
            let mut fl = flags(raw, MOUNT_FLAGS);
            if magic {
                fl = format!("MS_MGC_VAL|{fl}");
            }
            d.push("flags", fl.clone());
            let data = d.string(4, "data");
            call(s, &[src, target, fstype, fl, data])
        }
        libc::SYS_umount2 => {
            let target = d.path(0, "target", "resolved", true);
            let fl = d.flags(1, "flags", UMOUNT_FLAGS);
            call(s, &[target, fl])
        }
        libc::SYS_pivot_root => {
            let new = d.path(0, "new_root", "resolved", true);
            let old = d.path(1, "put_old", "put_old_resolved", false);
            call(s, &[new, old])
        }
        libc::SYS_swapon => {
            let p = d.path(0, "path", "resolved", true);
            let fl = d.flags(1, "flags", SWAP_FLAGS);
            call(s, &[p, fl])
        }
        libc::SYS_swapoff | libc::SYS_acct => {
            let p = d.path(0, "path", "resolved", true);
            call(s, &[p])
        }
        libc::SYS_init_module => {
            let image = d.hex(0, "image");
            let len = d.int(1, "len");
            let params = d.string(2, "params");
            call(s, &[image, len, params])
        }
        libc::SYS_finit_module => {
            let fd = d.file_fd(0, "fd");
            let params = d.string(1, "params");
            let fl = d.flags(2, "flags", FINIT_MODULE_FLAGS);
            call(s, &[fd, params, fl])
        }
        libc::SYS_delete_module => {
            let name = d.string(0, "name");
            let fl = d.flags(1, "flags", DELETE_MODULE_FLAGS);
            call(s, &[name, fl])
        }
        libc::SYS_kexec_load => {
            let entry = d.hex(0, "entry");
            let n = d.int(1, "nr_segments");
            let segs = d.hex(2, "segments");
            let fl = d.hex(3, "flags");
            call(s, &[entry, n, segs, fl])
        }
        libc::SYS_kexec_file_load => {
            let kernel = d.file_fd(0, "kernel_fd");
            let initrd = d.fd(1, "initrd_fd");
            let len = d.int(2, "cmdline_len");
            let cmdline = d.string(3, "cmdline");
            let fl = d.flags(4, "flags", KEXEC_FILE_FLAGS);
            call(s, &[kernel, initrd, len, cmdline, fl])
        }
        libc::SYS_unshare => {
            let fl = d.flags32(0, "flags", UNSHARE_FLAGS);
            call(s, &[fl])
        }
        libc::SYS_clone => {
            // CLONE_NEWTIME's bit is the exit signal's byte in clone(2).
            let v = a[0] & 0xffff_ffff;
            let fl = flags(v, &NS_FLAGS[..NS_FLAGS.len() - 1]);
            d.push("flags", fl.clone());
            d.hex(1, "stack");
            d.hex(2, "parent_tid");
            d.hex(3, "child_tid");
            d.hex(4, "tls");
            call(s, &[fl, "...".to_owned()])
        }
        libc::SYS_setns => {
            let fd = d.fd(0, "fd");
            let nstype = d.flags32(1, "nstype", NS_FLAGS);
            call(s, &[fd, nstype])
        }
        libc::SYS_ptrace => {
            let req = d.named(0, "request", PTRACE_REQUESTS);
            if a[0] == 0 {
                return call(s, &[req]);
            }
            let pid = d.pid(1, "pid");
            d.hex(2, "addr");
            d.hex(3, "data");
            let mut args = vec![req, pid];
            if a[2] != 0 || a[3] != 0 {
                args.push("...".to_owned());
            }
            call(s, &args)
        }
        libc::SYS_process_vm_readv | libc::SYS_process_vm_writev => {
            let pid = d.pid(0, "pid");
            d.hex(1, "local_iov");
            d.int(2, "liovcnt");
            d.hex(3, "remote_iov");
            d.int(4, "riovcnt");
            d.hex(5, "flags");
            call(s, &[pid, "...".to_owned()])
        }
        libc::SYS_pidfd_getfd => {
            let pidfd = d.fd(0, "pidfd");
            if let ArgData::PidFd { target, .. } = &d.c.data[0] {
                d.target(target.as_ref(), String::new());
            }
            let targetfd = d.int32(1, "targetfd");
            let fl = d.hex(2, "flags");
            call(s, &[pidfd, targetfd, fl])
        }
        libc::SYS_socket | libc::SYS_socketpair => {
            let family = d.named(0, "domain", ADDRESS_FAMILIES);
            let t = a[1] & 0xffff_ffff;
            let mut ty = name(t & 0xf, SOCKET_TYPES);
            if t & !0xf != 0 {
                ty = format!("{ty}|{}", flags(t & !0xf, SOCKET_TYPE_FLAGS));
            }
            d.push("type", ty.clone());
            let proto = d.int32(2, "protocol");
            if nr == libc::SYS_socketpair {
                call(s, &[family, ty, proto, "...".to_owned()])
            } else {
                call(s, &[family, ty, proto])
            }
        }
        libc::SYS_ioctl => {
            let fd = d.file_fd(0, "fd");
            let req_v = a[1] & 0xffff_ffff;
            let req = name(req_v, IOCTL_REQUESTS);
            let req = if req_v > 0xff && req.parse::<u64>().is_ok() {
                format!("{req_v:#x}")
            } else {
                req
            };
            d.push("request", req.clone());
            if let Some(b) = d.bytes(2).and_then(|b| b.first().copied()) {
                if req_v == libc::TIOCSTI {
                    d.push("char", quote(&[b], false));
                } else {
                    d.push("subcode", b.to_string());
                }
            }
            call(s, &[fd, req])
        }
        libc::SYS_bpf => {
            let cmd = d.named(0, "cmd", BPF_COMMANDS);
            d.hex(1, "attr");
            d.int(2, "size");
            let key = match a[0] {
                0 => Some("map_type"),
                5 => Some("prog_type"),
                _ => None,
            };
            if let (Some(key), Some(v)) = (key, d.u32_at(1, 0)) {
                d.push(key, v.to_string());
            }
            call(s, &[cmd, "...".to_owned()])
        }
        libc::SYS_perf_event_open => {
            let attr = match (d.u32_at(0, 0), d.u64_at(0, 8)) {
                (Some(ty), Some(config)) => {
                    let ty = name(u64::from(ty), PERF_TYPES);
                    d.push("type", ty.clone());
                    d.push("config", format!("{config:#x}"));
                    format!("{{type={ty}, config={config:#x}}}")
                }
                _ => d.hex(0, "attr"),
            };
            let pid = d.int32(1, "pid");
            let cpu = d.int32(2, "cpu");
            let group = d.int32(3, "group_fd");
            let fl = d.flags(4, "flags", PERF_FLAGS);
            call(s, &[attr, pid, cpu, group, fl])
        }
        libc::SYS_keyctl => {
            let op = d.named(0, "operation", KEYCTL_OPS);
            match a[0] {
                KEYCTL_JOIN_SESSION_KEYRING => {
                    let name = d.string(1, "name");
                    return call(s, &[op, name]);
                }
                KEYCTL_SEARCH => {
                    let keyring = d.key_serial(1, "keyring");
                    let ty = d.string(2, "type");
                    let desc = d.string(3, "description");
                    return call(s, &[op, keyring, ty, desc, "...".to_owned()]);
                }
                _ => {
                    d.key_serial(1, "arg2");
                    d.hex(2, "arg3");
                    d.hex(3, "arg4");
                    d.hex(4, "arg5");
                }
            }
            call(s, &[op, "...".to_owned()])
        }
        libc::SYS_add_key => {
            let ty = d.string(0, "type");
            let desc = d.string(1, "description");
            d.int(3, "plen");
            d.key_serial(4, "keyring");
            call(s, &[ty, desc, "...".to_owned()])
        }
        libc::SYS_request_key => {
            let ty = d.string(0, "type");
            let desc = d.string(1, "description");
            d.string(2, "callout_info");
            d.key_serial(3, "dest_keyring");
            call(s, &[ty, desc, "...".to_owned()])
        }
        libc::SYS_io_uring_setup => {
            let entries = d.int(0, "entries");
            d.hex(1, "params");
            call(s, &[entries, "...".to_owned()])
        }
        libc::SYS_io_uring_enter => {
            let fd = d.fd(0, "fd");
            let submit = d.int(1, "to_submit");
            let min = d.int(2, "min_complete");
            let fl = d.flags(3, "flags", IO_URING_ENTER_FLAGS);
            call(s, &[fd, submit, min, fl, "...".to_owned()])
        }
        libc::SYS_io_uring_register => {
            let fd = d.fd(0, "fd");
            let op = d.int(1, "opcode");
            d.hex(2, "arg");
            d.int(3, "nr_args");
            call(s, &[fd, op, "...".to_owned()])
        }
        libc::SYS_userfaultfd => {
            let fl = d.flags(0, "flags", USERFAULTFD_FLAGS);
            call(s, &[fl])
        }
        libc::SYS_open_by_handle_at => {
            let fd = d.file_fd(0, "mount_fd");
            d.hex(1, "handle");
            let fl = d.flags(2, "flags", OPEN_FLAGS);
            call(s, &[fd, "...".to_owned(), fl])
        }
        libc::SYS_name_to_handle_at => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(4, "flags", AT_FLAGS);
            call(s, &[dirfd, p, "...".to_owned(), "...".to_owned(), fl])
        }
        libc::SYS_reboot => {
            let m1 = d.named(0, "magic1", REBOOT_MAGIC);
            let m2 = d.named(1, "magic2", REBOOT_MAGIC);
            let cmd = name(a[2] & 0xffff_ffff, REBOOT_COMMANDS);
            d.push("cmd", cmd.clone());
            let mut args = vec![m1, m2, cmd];
            if a[2] & 0xffff_ffff == LINUX_REBOOT_CMD_RESTART2 {
                args.push(d.string(3, "arg"));
            }
            call(s, &args)
        }
        libc::SYS_syslog => {
            let action = d.named(0, "action", SYSLOG_ACTIONS);
            d.hex(1, "buf");
            let len = d.int32(2, "len");
            call(s, &[action, "...".to_owned(), len])
        }
        libc::SYS_personality => {
            let p = format!("{:#x}", a[0] & 0xffff_ffff);
            d.push("persona", p.clone());
            call(s, &[p])
        }
        #[cfg(target_arch = "x86_64")]
        libc::SYS_ioperm => {
            let from = d.hex(0, "from");
            let num = d.int(1, "num");
            let on = d.int(2, "turn_on");
            call(s, &[from, num, on])
        }
        #[cfg(target_arch = "x86_64")]
        libc::SYS_iopl => {
            let level = d.int(0, "level");
            call(s, &[level])
        }
        libc::SYS_fsopen => {
            let fs = d.string(0, "fsname");
            let fl = d.flags(1, "flags", FSOPEN_FLAGS);
            call(s, &[fs, fl])
        }
        libc::SYS_fsconfig => {
            let fd = d.fd(0, "fd");
            let cmd = d.named(1, "cmd", FSCONFIG_COMMANDS);
            let key = if a[1] <= FSCONFIG_SET_FD {
                d.string(2, "key")
            } else {
                "NULL".to_owned()
            };
            let value = match a[1] {
                FSCONFIG_SET_STRING => d.string(3, "value"),
                FSCONFIG_SET_PATH | FSCONFIG_SET_PATH_EMPTY => d.path(3, "value", "resolved", true),
                FSCONFIG_SET_BINARY => d.hex(3, "value"),
                _ if a[3] == 0 => "NULL".to_owned(),
                _ => d.hex(3, "value"),
            };
            let aux = match a[1] {
                FSCONFIG_SET_PATH | FSCONFIG_SET_PATH_EMPTY => d.dirfd(4, "aux"),
                FSCONFIG_SET_FD => d.fd(4, "aux"),
                FSCONFIG_SET_FLAG => d.int32(4, "aux"),
                _ => d.int32(4, "aux"),
            };
            call(s, &[fd, cmd, key, value, aux])
        }
        libc::SYS_fsmount => {
            let fd = d.fd(0, "fs_fd");
            let fl = d.flags(1, "flags", FSMOUNT_FLAGS);
            let attrs = d.flags(2, "attr_flags", MOUNT_ATTRS);
            call(s, &[fd, fl, attrs])
        }
        libc::SYS_fspick => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", FSPICK_FLAGS);
            call(s, &[dirfd, p, fl])
        }
        libc::SYS_open_tree => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", OPEN_TREE_FLAGS);
            call(s, &[dirfd, p, fl])
        }
        SYS_OPEN_TREE_ATTR => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", OPEN_TREE_FLAGS);
            d.hex(3, "attr");
            let size = d.int(4, "size");
            call(s, &[dirfd, p, fl, "...".to_owned(), size])
        }
        libc::SYS_mount_setattr => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", OPEN_TREE_FLAGS);
            let attr = match (d.u64_at(3, 0), d.u64_at(3, 8), d.u64_at(3, 16)) {
                (Some(set), Some(clr), Some(prop)) => {
                    let set = flags(set, MOUNT_ATTRS);
                    let clr = flags(clr, MOUNT_ATTRS);
                    let prop = name(prop, MOUNT_FLAGS);
                    d.push("attr_set", set.clone());
                    d.push("attr_clr", clr.clone());
                    d.push("propagation", prop.clone());
                    format!("{{attr_set={set}, attr_clr={clr}, propagation={prop}}}")
                }
                _ => d.hex(3, "attr"),
            };
            let size = d.int(4, "size");
            call(s, &[dirfd, p, fl, attr, size])
        }
        libc::SYS_move_mount => {
            let from_dirfd = d.dirfd(0, "from_dirfd");
            let from = d.path(1, "from_path", "from_resolved", false);
            let to_dirfd = d.dirfd(2, "to_dirfd");
            let to = d.path(3, "to_path", "resolved", true);
            let fl = d.flags(4, "flags", MOVE_MOUNT_FLAGS);
            call(s, &[from_dirfd, from, to_dirfd, to, fl])
        }
        libc::SYS_quotactl => {
            let cmd = d.hex(0, "cmd");
            let special = d.path(1, "special", "resolved", true);
            let id = d.int32(2, "id");
            d.hex(3, "addr");
            call(s, &[cmd, special, id, "...".to_owned()])
        }
        libc::SYS_quotactl_fd => {
            let fd = d.file_fd(0, "fd");
            let cmd = d.hex(1, "cmd");
            let id = d.int32(2, "id");
            d.hex(3, "addr");
            call(s, &[fd, cmd, id, "...".to_owned()])
        }
        libc::SYS_lookup_dcookie => {
            let cookie = d.hex(0, "cookie");
            d.hex(1, "buf");
            let len = d.int(2, "len");
            call(s, &[cookie, "...".to_owned(), len])
        }
        _ => generic(d, syscall),
    }
}

#[cfg(test)]
// The tests fork children that install filters and make raw syscalls.
#[allow(unsafe_code)]
mod tests {
    use super::*;
    use crate::launch::seccomp::{self, BpfProgram, DenyAction, Listener};
    use crate::syscalls::FilterOptions;
    use crate::sys::{recv_listener, send_listener};
    use std::os::fd::FromRawFd;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// The tests fork; a child forked by one test while another holds a listener would keep a
    /// copy of it open. Run them one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(|e| e.into_inner())
    }

    const CHILD_INSTALL_FAILED: i32 = 200;
    const CHILD_BROKEN: i32 = 201;
    const TIMEOUT: Duration = Duration::from_secs(20);

    fn errno() -> i32 {
        // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
        unsafe { *libc::__errno_location() }
    }

    /// A raw syscall: 0 on success, else its errno. Async-signal-safe.
    fn sys(nr: i64, a: [u64; 6]) -> i32 {
        // SAFETY: the tests pass numbers and pointers to live data or bad addresses; a blocked
        // syscall never runs, an allowed one is harmless (getpid and the like).
        let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
        if rc < 0 { errno() } else { 0 }
    }

    fn ptr(s: &[u8]) -> u64 {
        s.as_ptr() as u64
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two fds into `fds`.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2: errno {}", errno());
        // SAFETY: both fds were just created and are owned here.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn socketpair() -> (OwnedFd, OwnedFd) {
        let mut fds = [-1; 2];
        // SAFETY: socketpair writes two fds into `fds`.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "socketpair: errno {}", errno());
        // SAFETY: both fds were just created and are owned here.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// The child's side: report numbers, wait for the parent's go. Async-signal-safe.
    struct ChildIo {
        results: RawFd,
        go: RawFd,
    }

    impl ChildIo {
        fn report(&self, v: i64) {
            let b = v.to_ne_bytes();
            // SAFETY: write 8 bytes from a live buffer to our pipe.
            unsafe { libc::write(self.results, b.as_ptr().cast(), 8) };
        }
        fn wait_go(&self) -> bool {
            let mut b = [0u8; 1];
            // SAFETY: read 1 byte into a live buffer.
            unsafe { libc::read(self.go, b.as_mut_ptr().cast(), 1) == 1 }
        }
    }

    struct Child {
        pid: libc::pid_t,
        listener: Option<OwnedFd>,
        results: OwnedFd,
        go: OwnedFd,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum End {
        Exited(i32),
        Signaled(i32),
    }

    impl Child {
        /// Fork a child that installs `prog`, hands over the listener (with `Listener::New`)
        /// and runs `body`, whose value is its exit code. `body` must be async-signal-safe.
        fn spawn(
            prog: &BpfProgram,
            listener: Listener,
            body: impl FnOnce(&ChildIo) -> i32,
        ) -> Child {
            let (parent_sock, child_sock) = socketpair();
            let (results_r, results_w) = pipe();
            let (go_r, go_w) = pipe();
            // SAFETY: the child runs only async-signal-safe code (no allocation: install,
            // send_listener and the bodies use raw syscalls and stack buffers) and _exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: errno {}", errno());
            if pid == 0 {
                drop(parent_sock);
                let io = ChildIo {
                    results: results_w.as_raw_fd(),
                    go: go_r.as_raw_fd(),
                };
                let code = match seccomp::install(prog, listener) {
                    Ok(Some(l)) => match send_listener(&child_sock, l) {
                        Ok(()) => body(&io),
                        Err(_) => CHILD_BROKEN,
                    },
                    Ok(None) => body(&io),
                    Err(_) => CHILD_INSTALL_FAILED,
                };
                // SAFETY: leave the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            drop((child_sock, results_w, go_r));
            let listener = match listener {
                Listener::New => match recv_listener(&parent_sock) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        let end = kill_and_wait(pid);
                        panic!("receiving the listener: {e} (child: {end:?})");
                    }
                },
                Listener::None => None,
            };
            Child {
                pid,
                listener,
                results: results_r,
                go: go_w,
            }
        }

        fn go(&self) {
            // SAFETY: write 1 byte from a live buffer to our pipe.
            let n = unsafe { libc::write(self.go.as_raw_fd(), b"g".as_ptr().cast(), 1) };
            assert_eq!(n, 1);
        }

        /// Everything the child reported (read after it exited).
        fn results(&self) -> Vec<i64> {
            let mut out = Vec::new();
            let mut buf = [0u8; 8];
            loop {
                // SAFETY: read up to 8 bytes into a live buffer.
                let n = unsafe { libc::read(self.results.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                if n != 8 {
                    return out;
                }
                out.push(i64::from_ne_bytes(buf));
            }
        }
    }

    fn wait(pid: libc::pid_t, timeout: Duration) -> End {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: waitpid on our own child with a valid status pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if rc == pid {
                if libc::WIFEXITED(status) {
                    return End::Exited(libc::WEXITSTATUS(status));
                }
                return End::Signaled(libc::WTERMSIG(status));
            }
            assert!(rc == 0, "waitpid: errno {}", errno());
            if start.elapsed() > timeout {
                let end = kill_and_wait(pid);
                panic!("child {pid} did not finish in {timeout:?} ({end:?})");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn kill_and_wait(pid: libc::pid_t) -> End {
        // SAFETY: kill our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: reap it.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFEXITED(status) {
            End::Exited(libc::WEXITSTATUS(status))
        } else {
            End::Signaled(libc::WTERMSIG(status))
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
    }

    fn notif_prog() -> BpfProgram {
        let options = FilterOptions {
            block_unix_sockets: true,
            ..FilterOptions::default()
        };
        seccomp::compile_with(DenyAction::UserNotif, &options).expect("compile")
    }

    /// Run `child` under a supervisor until it exits and the supervisor sees POLLHUP.
    fn supervise_child(child: &mut Child, capacity: usize) -> (End, Stats, Vec<SeccompDenial>) {
        let listener = child.listener.take().expect("listener");
        let pid = child.pid;
        runtime().block_on(async move {
            let (tx, mut rx) = mpsc::channel(capacity);
            let sup = Supervisor::spawn(listener, tx, Limits::default()).expect("spawn");
            let end = tokio::task::spawn_blocking(move || wait(pid, TIMEOUT))
                .await
                .expect("waiter");
            let stats = tokio::time::timeout(TIMEOUT, sup.wait())
                .await
                .expect("supervisor did not see POLLHUP")
                .expect("supervisor failed");
            let mut events = Vec::new();
            while let Ok(e) = rx.try_recv() {
                events.push(e);
            }
            (end, stats, events)
        })
    }

    fn detail<'a>(e: &'a SeccompDenial, key: &str) -> Option<&'a str> {
        e.detail
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    // ----- events ----------------------------------------------------------------------------

    #[test]
    fn every_blocked_call_gets_eperm_and_exactly_one_decoded_event() {
        let _serial = serial();
        let prog = notif_prog();
        let tmp = std::fs::canonicalize("/tmp").expect("/tmp");
        let mut child = Child::spawn(&prog, Listener::New, |io| {
            static TMPFS: &[u8] = b"tmpfs\0";
            static MNT: &[u8] = b"/mnt\0";
            static NONE: &[u8] = b"none\0";
            static REL: &[u8] = b"rel/./dir\0";
            static TMP: &[u8] = b"/tmp\0";
            static X: &[u8] = b"x\0";
            static NETNS: &[u8] = b"/proc/self/ns/net\0";
            // SAFETY: getppid takes nothing.
            let ppid = unsafe { libc::getppid() } as u64;
            let c = b'x';
            let mut attr = [0u32; 32];
            attr[0] = 1; // BPF_MAP_TYPE_HASH
            let calls: [(i64, [u64; 6]); 9] = [
                (libc::SYS_mount, [ptr(TMPFS), ptr(MNT), ptr(TMPFS), 0, 0, 0]),
                (
                    libc::SYS_unshare,
                    [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                ),
                (
                    libc::SYS_ptrace,
                    [libc::PTRACE_ATTACH as u64, ppid, 0, 0, 0, 0],
                ),
                (
                    libc::SYS_ioctl,
                    [0, libc::TIOCSTI, &c as *const u8 as u64, 0, 0, 0],
                ),
                (
                    libc::SYS_socket,
                    [libc::AF_UNIX as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0],
                ),
                (libc::SYS_keyctl, [0, -3i64 as u64, 0, 0, 0, 0]),
                (libc::SYS_bpf, [0, attr.as_ptr() as u64, 128, 0, 0, 0]),
                (libc::SYS_process_vm_readv, [ppid, 0, 0, 0, 0, 0]),
                (
                    libc::SYS_unshare,
                    [
                        (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64,
                        0,
                        0,
                        0,
                        0,
                        0,
                    ],
                ),
            ];
            for (nr, a) in calls {
                io.report(i64::from(sys(nr, a)));
            }
            // A relative mount target, against the cwd.
            // SAFETY: chdir with a NUL-terminated path.
            if unsafe { libc::chdir(TMP.as_ptr().cast()) } != 0 {
                return CHILD_BROKEN;
            }
            let flags = libc::MS_BIND | libc::MS_REC;
            io.report(i64::from(sys(
                libc::SYS_mount,
                [ptr(NONE), ptr(REL), 0, flags, 0, 0],
            )));
            // A dirfd-relative path.
            // SAFETY: open with a NUL-terminated path.
            let dirfd =
                unsafe { libc::open(TMP.as_ptr().cast(), libc::O_PATH | libc::O_DIRECTORY) };
            io.report(i64::from(dirfd));
            let clone_flags = libc::OPEN_TREE_CLONE as u64;
            io.report(i64::from(sys(
                libc::SYS_open_tree,
                [dirfd as u64, ptr(X), clone_flags, 0, 0, 0],
            )));
            // setns on a namespace fd.
            // SAFETY: open with a NUL-terminated path.
            let nsfd = unsafe { libc::open(NETNS.as_ptr().cast(), libc::O_RDONLY) };
            io.report(i64::from(nsfd));
            io.report(i64::from(sys(
                libc::SYS_setns,
                [nsfd as u64, libc::CLONE_NEWNET as u64, 0, 0, 0, 0],
            )));
            // Not blocked: no event.
            io.report(i64::from(sys(libc::SYS_getpid, [0; 6])));
            0
        });
        let (end, stats, events) = supervise_child(&mut child, 64);
        assert_eq!(end, End::Exited(0));
        let r = child.results();
        assert_eq!(r.len(), 15, "results: {r:?}");
        let (dirfd, nsfd) = (r[10], r[12]);
        let calls: Vec<i64> = r[..10].iter().chain([&r[11], &r[13]]).copied().collect();
        assert!(
            calls.iter().all(|&e| e == i64::from(libc::EPERM)),
            "errnos: {calls:?}"
        );
        assert_eq!(r[14], 0, "getpid");

        let me = std::process::id();
        let my_comm = comm(me).expect("own comm");
        let expected = [
            "mount(\"tmpfs\", \"/mnt\", \"tmpfs\", 0, NULL)".to_owned(),
            "unshare(CLONE_NEWUSER)".to_owned(),
            format!("ptrace(PTRACE_ATTACH, {me} [{my_comm}])"),
            "ioctl(0, TIOCSTI)".to_owned(),
            "socket(AF_UNIX, SOCK_STREAM, 0)".to_owned(),
            "keyctl(KEYCTL_GET_KEYRING_ID, ...)".to_owned(),
            "bpf(BPF_MAP_CREATE, ...)".to_owned(),
            format!("process_vm_readv({me} [{my_comm}], ...)"),
            "unshare(CLONE_NEWUSER|CLONE_NEWNS)".to_owned(),
            "mount(\"none\", \"rel/./dir\", NULL, MS_BIND|MS_REC, NULL)".to_owned(),
            format!("open_tree({dirfd}, \"x\", OPEN_TREE_CLONE)"),
            format!("setns({nsfd}, CLONE_NEWNET)"),
        ];
        let summaries: Vec<&str> = events.iter().map(|e| e.summary.as_str()).collect();
        assert_eq!(summaries, expected);
        for e in &events {
            eprintln!("{} {:?} path={:?}", e.summary, e.detail, e.path);
            assert_eq!(e.pid, child.pid as u32);
        }
        assert_eq!(events[0].syscall, "mount");
        assert_eq!(events[0].path.as_deref(), Some(Path::new("/mnt")));
        assert_eq!(events[0].requested_path.as_deref(), Some("/mnt"));
        assert_eq!(detail(&events[0], "reason"), Some("mounting filesystems"));
        assert_eq!(detail(&events[3], "char"), Some("\"x\""));
        assert_eq!(detail(&events[5], "arg2"), Some("KEY_SPEC_SESSION_KEYRING"));
        assert_eq!(detail(&events[6], "map_type"), Some("1"));
        assert_eq!(events[9].path, Some(tmp.join("rel/dir")));
        assert_eq!(events[9].requested_path.as_deref(), Some("rel/./dir"));
        assert_eq!(events[10].path, Some(tmp.join("x")));
        assert!(
            detail(&events[11], "fd").is_some_and(|v| v.contains("net:[")),
            "{:?}",
            events[11].detail
        );
        assert_eq!(
            stats,
            Stats {
                notifications: 12,
                answered: 12,
                vanished: 0,
                events_sent: 12,
                events_dropped: 0,
            }
        );
    }

    #[test]
    fn ptrace_target_pid_is_translated_from_the_callers_pid_namespace() {
        let _serial = serial();
        let prog = notif_prog();
        let (parent_sock, child_sock) = socketpair();
        let (results_r, results_w) = pipe();
        // SAFETY: as in Child::spawn: async-signal-safe code only, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // The middle process: a new pid namespace whose init installs the filter.
            if sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWPID as u64, 0, 0, 0, 0, 0],
            ) != 0
            {
                // SAFETY: leave the child.
                unsafe { libc::_exit(CHILD_INSTALL_FAILED) }
            }
            // SAFETY: fork again; the grandchild is pid 1 of the new namespace.
            let init = unsafe { libc::fork() };
            if init == 0 {
                let sent = match seccomp::install(&prog, Listener::New) {
                    Ok(Some(l)) => send_listener(&child_sock, l).is_ok(),
                    _ => false,
                };
                let code = match sent {
                    true => {
                        static NAME: &[u8] = b"sbx-target\0";
                        static INIT: &[u8] = b"sbx-init\0";
                        // SAFETY: PR_SET_NAME with a NUL-terminated name; the target
                        // inherits it, and init takes another one after the fork.
                        unsafe { libc::prctl(libc::PR_SET_NAME, NAME.as_ptr()) };
                        // SAFETY: fork a target that only pauses until killed.
                        let target = unsafe { libc::fork() };
                        if target == 0 {
                            loop {
                                // SAFETY: wait for the SIGKILL.
                                unsafe { libc::pause() };
                            }
                        }
                        // SAFETY: as above.
                        unsafe { libc::prctl(libc::PR_SET_NAME, INIT.as_ptr()) };
                        let rc = sys(
                            libc::SYS_ptrace,
                            [libc::PTRACE_ATTACH as u64, target as u64, 0, 0, 0, 0],
                        );
                        let io = ChildIo {
                            results: results_w.as_raw_fd(),
                            go: -1,
                        };
                        io.report(i64::from(target));
                        io.report(i64::from(rc));
                        // SAFETY: kill and reap our own child.
                        unsafe {
                            libc::kill(target, libc::SIGKILL);
                            libc::waitpid(target, std::ptr::null_mut(), 0);
                        }
                        0
                    }
                    _ => CHILD_BROKEN,
                };
                // SAFETY: leave.
                unsafe { libc::_exit(code) }
            }
            let mut status = 0;
            // SAFETY: reap the namespace's init.
            unsafe { libc::waitpid(init, &mut status, 0) };
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                CHILD_BROKEN
            };
            // SAFETY: leave.
            unsafe { libc::_exit(code) }
        }
        drop((child_sock, results_w));
        let listener = match recv_listener(&parent_sock) {
            Ok(l) => l,
            Err(e) => {
                let end = kill_and_wait(pid);
                if end == End::Exited(CHILD_INSTALL_FAILED) {
                    eprintln!("SKIPPED: cannot create a pid namespace");
                    return;
                }
                panic!("receiving the listener: {e} ({end:?})");
            }
        };
        let mut child = Child {
            pid,
            listener: Some(listener),
            results: results_r,
            go: pipe().1,
        };
        let (end, stats, events) = supervise_child(&mut child, 8);
        assert_eq!(end, End::Exited(0));
        let r = child.results();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], i64::from(libc::EPERM));
        assert_eq!(stats.answered, 1);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        eprintln!("{} {:?}", e.summary, e.detail);
        assert_eq!(
            e.summary,
            format!("ptrace(PTRACE_ATTACH, {} [sbx-target])", r[0])
        );
        let host: u32 = detail(e, "target_host_pid")
            .expect("host pid")
            .parse()
            .expect("pid");
        assert_ne!(i64::from(host), r[0], "translated to a host pid");
    }

    // ----- the supervisor going away ---------------------------------------------------------

    #[test]
    fn after_the_supervisor_is_dropped_blocked_calls_fail_with_enosys() {
        let _serial = serial();
        let prog = notif_prog();
        let mut child = Child::spawn(&prog, Listener::New, |io| {
            let unshare = [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0];
            io.report(i64::from(sys(libc::SYS_unshare, unshare)));
            if !io.wait_go() {
                return CHILD_BROKEN;
            }
            io.report(i64::from(sys(libc::SYS_unshare, unshare)));
            io.report(i64::from(sys(libc::SYS_mount, [0; 6])));
            // Still running: allowed calls work.
            io.report(i64::from(sys(libc::SYS_getpid, [0; 6])));
            0
        });
        let listener = child.listener.take().expect("listener");
        runtime().block_on(async {
            let (tx, mut rx) = mpsc::channel(8);
            let sup = Supervisor::spawn(listener, tx, Limits::default()).expect("spawn");
            let first = tokio::time::timeout(TIMEOUT, rx.recv())
                .await
                .expect("first event");
            assert_eq!(
                first.map(|e| e.summary).as_deref(),
                Some("unshare(CLONE_NEWUSER)")
            );
            sup.abort();
            // The task's future (and the listener in it) is dropped before the join completes.
            assert!(matches!(sup.wait().await, Err(NotifyError::Join(e)) if e.is_cancelled()));
        });
        child.go();
        assert_eq!(wait(child.pid, TIMEOUT), End::Exited(0));
        let r = child.results();
        let (eperm, enosys) = (i64::from(libc::EPERM), i64::from(libc::ENOSYS));
        assert_eq!(r, vec![eperm, enosys, enosys, 0]);
    }

    #[test]
    fn closing_the_listener_fails_a_waiting_call_with_enosys() {
        let _serial = serial();
        let prog = notif_prog();
        let mut child = Child::spawn(&prog, Listener::New, |io| {
            io.report(i64::from(sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0],
            )));
            io.report(i64::from(sys(libc::SYS_getpid, [0; 6])));
            0
        });
        let listener = child.listener.take().expect("listener");
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(rc, 1, "no notification");
        // The call is waiting for an answer; nobody will give one.
        drop(listener);
        assert_eq!(wait(child.pid, TIMEOUT), End::Exited(0));
        assert_eq!(child.results(), vec![i64::from(libc::ENOSYS), 0]);
    }

    // ----- flood and latency -----------------------------------------------------------------

    #[test]
    fn a_flood_with_a_full_channel_is_answered_and_drops_events() {
        const CALLS: i64 = 100_000;
        let _serial = serial();
        let prog = notif_prog();
        let mut child = Child::spawn(&prog, Listener::New, |io| {
            let mut eperm = 0;
            for _ in 0..CALLS {
                if sys(
                    libc::SYS_unshare,
                    [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                ) == libc::EPERM
                {
                    eperm += 1;
                }
            }
            io.report(eperm);
            0
        });
        let start = Instant::now();
        // Capacity 16 and the receiver is never read (supervise_child reads it only after).
        let (end, stats, events) = supervise_child(&mut child, 16);
        let elapsed = start.elapsed();
        assert_eq!(end, End::Exited(0));
        assert_eq!(child.results(), vec![CALLS]);
        assert_eq!(events.len(), 16);
        assert_eq!(stats.notifications, CALLS as u64);
        assert_eq!(stats.answered, CALLS as u64);
        assert_eq!(stats.events_sent, 16);
        assert_eq!(stats.events_dropped, CALLS as u64 - 16);
        eprintln!(
            "flood: {CALLS} notified calls in {elapsed:?}: {:.0} notifications/s ({stats:?})",
            CALLS as f64 / elapsed.as_secs_f64()
        );
    }

    /// Median latency in ns of `n` blocked unshare calls in a child under `prog`.
    fn median_latency(prog: &BpfProgram, listener: Listener, n: usize) -> (i64, Stats) {
        let mut samples = vec![0u64; n];
        let mut child = Child::spawn(prog, listener, |io| {
            let now = || {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: clock_gettime writes one timespec.
                unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
                ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
            };
            for s in samples.iter_mut() {
                let t0 = now();
                let rc = sys(
                    libc::SYS_unshare,
                    [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                );
                *s = now() - t0;
                if rc != libc::EPERM {
                    return CHILD_BROKEN;
                }
            }
            let mid = samples.len() / 2;
            let (_, median, _) = samples.select_nth_unstable(mid);
            io.report(*median as i64);
            0
        });
        let (end, stats) = if child.listener.is_some() {
            let listener = child.listener.take().expect("listener");
            let pid = child.pid;
            runtime().block_on(async move {
                let (tx, mut rx) = mpsc::channel(1024);
                // A consumer that keeps up, as sbx's would.
                let consumer = tokio::spawn(async move { while rx.recv().await.is_some() {} });
                let sup = Supervisor::spawn(listener, tx, Limits::default()).expect("spawn");
                let end = tokio::task::spawn_blocking(move || wait(pid, TIMEOUT))
                    .await
                    .expect("waiter");
                let stats = sup.wait().await.expect("supervisor");
                consumer.await.expect("consumer");
                (end, stats)
            })
        } else {
            (wait(child.pid, TIMEOUT), Stats::default())
        };
        assert_eq!(end, End::Exited(0));
        let r = child.results();
        assert_eq!(r.len(), 1);
        (r[0], stats)
    }

    #[test]
    fn latency_of_a_notified_call_versus_errno() {
        const N: usize = 20_000;
        let _serial = serial();
        let notif = notif_prog();
        let errno_prog =
            seccomp::compile_with(DenyAction::Errno, &FilterOptions::default()).expect("compile");
        let (notified, stats) = median_latency(&notif, Listener::New, N);
        let (plain, _) = median_latency(&errno_prog, Listener::None, N);
        assert_eq!(stats.answered, N as u64);
        eprintln!(
            "latency: median of {N} blocked unshare calls: {notified} ns notified (EPERM from the supervisor) vs {plain} ns with ERRNO(EPERM) in the filter; {stats:?}"
        );
    }

    // ----- nested listeners ------------------------------------------------------------------

    #[test]
    fn a_second_listener_in_the_sandbox_is_ebusy_until_ours_is_closed() {
        let _serial = serial();
        let prog = notif_prog();
        let allow: BpfProgram = vec![seccompiler::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }];
        let mut child = Child::spawn(&prog, Listener::New, |io| {
            let code = |r: Result<Option<OwnedFd>, seccomp::SeccompError>| match r {
                Ok(_) => 0,
                Err(seccomp::SeccompError::LoadFilter(e)) => {
                    i64::from(e.raw_os_error().unwrap_or(-1))
                }
                Err(_) => -2,
            };
            // seccomp() is not in the table: the call reaches the kernel, which refuses a
            // second listener in the same filter tree.
            io.report(code(seccomp::install(&allow, Listener::New)));
            // A filter without a listener is fine.
            io.report(code(seccomp::install(&allow, Listener::None)));
            // Blocked calls are still notified to us.
            io.report(i64::from(sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0],
            )));
            if !io.wait_go() {
                return CHILD_BROKEN;
            }
            // Our listener is closed: a new one can be made now.
            io.report(code(seccomp::install(&allow, Listener::New)));
            io.report(i64::from(sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0],
            )));
            0
        });
        let listener = child.listener.take().expect("listener");
        runtime().block_on(async {
            let (tx, mut rx) = mpsc::channel(8);
            let sup = Supervisor::spawn(listener, tx, Limits::default()).expect("spawn");
            let first = tokio::time::timeout(TIMEOUT, rx.recv())
                .await
                .expect("event");
            assert_eq!(
                first.map(|e| e.summary).as_deref(),
                Some("unshare(CLONE_NEWNS)")
            );
            drop(sup);
            tokio::task::yield_now().await;
        });
        child.go();
        assert_eq!(wait(child.pid, TIMEOUT), End::Exited(0));
        let r = child.results();
        eprintln!("nested listener: {r:?} (EBUSY = {})", libc::EBUSY);
        assert_eq!(
            r,
            vec![
                i64::from(libc::EBUSY),
                0,
                i64::from(libc::EPERM),
                0,
                i64::from(libc::ENOSYS)
            ]
        );
    }

    // ----- decoding, no kernel needed --------------------------------------------------------

    #[test]
    fn flags_and_quotes_render_like_c() {
        assert_eq!(flags(0, MOUNT_FLAGS), "0");
        assert_eq!(flags(0x6, MOUNT_FLAGS), "MS_NOSUID|MS_NODEV");
        assert_eq!(
            flags(0x1000_0000 | 0x2_0000 | 0x11, NS_FLAGS),
            "CLONE_NEWUSER|CLONE_NEWNS|0x11"
        );
        assert_eq!(
            quote(b"a\"b\\\n\x01\xff", true),
            "\"a\\\"b\\\\\\n\\x01\\xff\"..."
        );
        assert_eq!(
            resolve(b"a/./b", Some(Path::new("/w"))),
            Some(PathBuf::from("/w/a/b"))
        );
        assert_eq!(
            resolve(b"", Some(Path::new("/w"))),
            Some(PathBuf::from("/w"))
        );
        assert_eq!(resolve(b"a", Some(Path::new("anon_inode:[x]"))), None);
        assert_eq!(resolve(b"/abs", None), Some(PathBuf::from("/abs")));
    }
}
