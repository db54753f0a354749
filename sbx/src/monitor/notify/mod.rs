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
//!    with the result of a connect the supervisor makes itself, still never CONTINUE; and exec
//!    under command rules ([`supervise_mediating`], [`super::exec`]), answered with CONTINUE
//!    or EPERM: a guardrail, whose limit that module states.
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
pub use super::exec::CommandRefusal;
use super::exec::{ExecDecider, Verdict};
use super::connect::Mediator;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

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
    /// An exec a command rule refused (`monitor::exec`): the event is then a denial of
    /// source `command`.
    pub command: Option<CommandRefusal>,
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
        Self::spawn_mediating(listener, tx, limits, Mediation { unix, commands: None, egress: None })
    }

    /// [`Supervisor::spawn`], mediating what `mediation` names.
    pub fn spawn_mediating(
        listener: OwnedFd,
        tx: mpsc::Sender<SeccompDenial>,
        limits: Limits,
        mediation: Mediation,
    ) -> Result<Supervisor, NotifyError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NotifyError::NoRuntime)?;
        Ok(Supervisor {
            handle: Some(runtime.spawn(supervise_mediating(listener, tx, limits, mediation))),
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
    supervise_mediating(listener, tx, limits, Mediation { unix, commands: None, egress: None }).await
}

/// What the supervisor decides instead of reporting, when the filter notifies it.
#[derive(Debug, Clone, Default)]
pub struct Mediation {
    /// connect(2) under `allowUnixSockets` ([`super::connect`]).
    pub unix: Option<UnixSocketPolicy>,
    /// execve(2) and execveat(2) under command rules ([`super::exec`]).
    pub commands: Option<crate::command_rules::CommandRules>,
    /// Transparent egress: connect(2) to addresses outside the sandbox decided by the
    /// egress policy and carried out on the host, bind(2) and listen(2) refused on the host
    /// sockets that installs ([`super::connect`]).
    pub egress: Option<std::sync::Arc<crate::proxy::egress::Egress>>,
}


/// [`supervise`], deciding what `mediation` names.
pub async fn supervise_mediating(
    listener: OwnedFd,
    tx: mpsc::Sender<SeccompDenial>,
    limits: Limits,
    mediation: Mediation,
) -> Result<Stats, NotifyError> {
    let Mediation { unix, commands, egress } = mediation;
    let afd = crate::sys::async_fd(listener, Interest::READABLE).map_err(NotifyError::Register)?;
    let fd = afd.get_ref().as_raw_fd();
    let exec = commands.map(ExecDecider::new);
    let mediator = match (unix, egress) {
        (None, None) => None,
        (unix, egress) => Some(Mediator::new(afd.get_ref(), unix, tx.clone(), egress).map_err(NotifyError::Register)?),
    };
    let mut handler = Handler {
        fd,
        tx,
        limits,
        stats: Stats::default(),
        mediator,
        exec,
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
    /// Decides execs (command rules); without it exec is never notified.
    exec: Option<ExecDecider>,
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
        if let Some(exec) = &self.exec
            && ExecDecider::handles(i64::from(req.data.nr))
        {
            return self.exec(exec.decide(&req), &req);
        }
        if let Some(mediator) = &self.mediator
            && (i64::from(req.data.nr) == libc::SYS_connect
                || (mediator.mediates_bind() && matches!(i64::from(req.data.nr), libc::SYS_bind | libc::SYS_listen)))
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

    /// Carries out the verdict on an exec: CONTINUE, or EPERM and a `command` denial.
    fn exec(&mut self, verdict: Verdict, req: &libc::seccomp_notif) -> Result<(), NotifyError> {
        // What was read belongs to this call only if it still waits (the pid may be reused).
        if !self.id_valid(req.id)? {
            self.stats.vanished += 1;
            return Ok(());
        }
        let (path, requested, refusal) = match verdict {
            Verdict::Continue => {
                crate::sys::notif_continue(self.fd, req.id).map_err(|source| NotifyError::Send { id: req.id, source })?;
                return Ok(());
            }
            Verdict::Fail(errno) => {
                crate::sys::notif_send(self.fd, req.id, -errno).map_err(|source| NotifyError::Send { id: req.id, source })?;
                return Ok(());
            }
            Verdict::Refuse { path, requested, refusal } => (path, requested, refusal),
        };
        if crate::sys::notif_send(self.fd, req.id, -libc::EPERM).map_err(|source| NotifyError::Send { id: req.id, source })? {
            self.stats.answered += 1;
        }
        let nr = i64::from(req.data.nr);
        let syscall = crate::syscalls::syscall_name(nr).unwrap_or("unknown");
        let argv: Vec<String> = refusal.argv.iter().map(|a| format!("{a:?}")).collect();
        let shown = path.as_ref().map_or_else(|| format!("{requested:?}"), |p| format!("{:?}", p.display().to_string()));
        let event = SeccompDenial {
            pid: req.pid,
            syscall_nr: nr,
            syscall,
            summary: format!("{syscall}({shown}, [{}])", argv.join(", ")),
            detail: Vec::new(),
            path,
            requested_path: requested,
            comm: comm(req.pid),
            command: Some(refusal),
        };
        match self.tx.try_send(event) {
            Ok(()) => self.stats.events_sent += 1,
            Err(_) => self.stats.events_dropped += 1,
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

mod capture;
mod decode;
mod names;

use capture::*;
pub(crate) use capture::{Text, comm, read_bytes, read_cstr};
use decode::*;
use names::*;

#[cfg(test)]
// The tests fork children that install filters and make raw syscalls.
#[allow(unsafe_code)]
mod tests;
