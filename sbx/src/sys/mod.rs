//! The thin layer of raw system calls that neither `nix` nor `landlock`
//! wrap the way sbx needs: descriptor passing (`fdpass`), the seccomp
//! notification ioctls, process memory and pidfds (`notif`), sockets on raw
//! addresses (`socket`), other processes' epoll registrations (`epoll`), the new mount API (`mount`), namespaces, polling, memfds, close_range, cgroup
//! joins. The crate denies `unsafe_code`; this module is where it is allowed
//! (the few other places are named in ARCHITECTURE.md), each block with its
//! `SAFETY` reason.

pub mod bpf;
mod epoll;
mod fdpass;
pub mod mount;
mod notif;
mod socket;

pub use notif::{notif_addfd_at, notif_continue, notif_id_valid, notif_recv, notif_send, pidfd_getfd, pidfd_open, read_process_memory};
pub use socket::{bind_raw, connect_raw, copy_socket_options, listen_raw, lookup_canonical, loopback_freebind, new_socket, socket_domain, socket_error, socket_has_peer, socket_listens, socket_netns_cookie, socket_protocol, socket_type};
pub use epoll::{EpollEntry, move_epoll_entries};
pub use fdpass::{FDS_PER_MESSAGE, HandoverError, recv_all_fds, recv_fds, recv_listener, send_all_fds, send_fds, send_listener};

use std::{
    fs::File,
    io::{self, Seek as _, SeekFrom, Write as _},
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
};

/// The Landlock ABI version this kernel offers, 0 when Landlock is absent
/// or disabled at boot.
pub fn landlock_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the
    // call only returns a number; it reads and writes no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    ret.max(0)
}

/// An anonymous in-memory file holding `bytes`, positioned at its start, to
/// hand data to a child by file descriptor (bwrap's `--args`, the stage-2
/// plan). Close-on-exec is set; `Inherit` clears it in the child only.
pub fn memfd_with(name: &std::ffi::CStr, bytes: &[u8]) -> io::Result<File> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Clears FD_CLOEXEC on `fd`. Meant for a `pre_exec` hook, so it uses only
/// async-signal-safe calls and allocates nothing.
pub fn inherit(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor touches no memory; a bad fd is
    // reported as EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the calling thread into the v1 cgroup whose `tasks` file `tasks` is open for
/// writing. Called between fork and exec, where the thread is the whole process: a move of
/// the caller alone does not take the lock a whole-process move does (and its RCU grace
/// period). Async-signal-safe.
pub fn join_own_cgroup(tasks: RawFd) -> io::Result<()> {
    // SAFETY: write reads one byte from a static string; a bad fd is reported as EBADF.
    if unsafe { libc::write(tasks, c"0".as_ptr().cast(), 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ignores (`ignore`) or restores the default action of SIGINT and SIGQUIT, the signals a
/// terminal sends its foreground process group for Ctrl-C and Ctrl-\. An ignored signal
/// stays ignored across exec: bubblewrap, started so, is not killed by the Ctrl-C meant
/// for the command, and stage-2 restores the default for the command. Async-signal-safe.
pub fn ignore_interrupts(ignore: bool) -> io::Result<()> {
    let action = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: signal with SIG_IGN or SIG_DFL installs no handler code.
        if unsafe { libc::signal(sig, action) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Ignores every signal a terminal or sbx's relay sends to a process group (INT, QUIT, TERM,
/// HUP, TSTP, TTIN, TTOU, PIPE), as a pid 1 does: for the init of a sandbox without
/// namespaces, which shares the command's process group and must outlive it.
pub fn ignore_job_signals() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU, libc::SIGPIPE] {
        // SAFETY: signal with SIG_IGN installs no handler code.
        if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets FD_CLOEXEC on every descriptor from `first` up, so that nothing sbx
/// inherited or opened leaks into the command it execs.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOEXEC only changes descriptor flags.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    Ok((r, w))
}

/// Whether the effective capability set holds `cap` (a CAP_* number).
pub fn has_effective_cap(cap: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1u64 << cap) != 0)
}

/// Capability numbers from linux/capability.h that `sbx doctor` checks.
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// The raw descriptor number of anything that has one, for argument lists.
pub fn raw(fd: &impl std::os::fd::AsRawFd) -> RawFd {
    fd.as_raw_fd()
}

/// Whether `fd` refers to a terminal.
pub fn is_tty(fd: &impl std::os::fd::AsFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Becomes another user: supplementary groups, gid, then uid (`identity`). Called between
/// fork and exec: three system calls on values prepared before the fork, async-signal-safe.
pub fn become_user(uid: u32, gid: u32, groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: setgroups reads `groups.len()` ids from a live slice; setgid and setuid take
    // integers.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Drops every capability for good: the bounding set (so that no exec, not even of a
/// set-uid or file-capability program, gets one back), the ambient, inheritable, permitted and
/// effective sets. For a process without capabilities (an ordinary user) this is a no-op.
/// Used where no user namespace holds them (`--no-namespaces`).
pub fn drop_capabilities() -> io::Result<()> {
    // The highest capability this kernel knows; bwrap's --cap-drop ALL does the same walk.
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(63);
    // SAFETY: prctl and capget/capset with integer arguments and pointers to live locals.
    unsafe {
        for cap in 0..=last {
            // Dropping from the bounding set needs CAP_SETPCAP: without it, there is nothing
            // to drop but what the sets below clear (a process without capabilities).
            if libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
            {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EPERM) {
                    return Err(e);
                }
            }
        }
        if libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) != 0 {
            let e = io::Error::last_os_error();
            // EINVAL: a kernel without ambient capabilities.
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
        }
        // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header { version: 0x2008_0522, pid: 0 };
        let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
        if libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The effective identity of another process (uid, gid, supplementary groups), for acting
/// on its behalf with its own permissions ([`as_caller`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The identity of process `pid` when sbx, as root, would otherwise act for it with more
/// than its own: it is another user (under sudo or `--user`). None when sbx is not root or
/// the process is root too (nothing to lower), or its status cannot be read.
pub fn foreign_creds(pid: u32) -> Option<Creds> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().filter_map(|x| x.parse::<u32>().ok()).collect::<Vec<_>>());
    // Uid: real, effective, saved, filesystem: the effective one decides.
    let uid = *field("Uid:")?.get(1)?;
    let gid = *field("Gid:")?.get(1)?;
    let groups = field("Groups:").unwrap_or_default();
    (uid != 0).then_some(Creds { uid, gid, groups })
}

/// Runs `f` with this thread's effective uid, gid and groups set to `creds` (raw system
/// calls change the calling thread only; glibc's wrappers would change every thread), so
/// that what `f` does is checked, and owned, as that user's: a Unix socket connected or
/// bound for a sandboxed process of another user than root is theirs, not root's. The
/// effective capabilities go with the effective uid 0 and come back with it. `Err(EPERM)`
/// without running `f` when the identity cannot be taken; root's is put back after, and if
/// that fails the process aborts rather than go on as the user. `f` must not yield (no
/// other task may run with these credentials).
pub fn as_caller<T>(creds: &Creds, f: impl FnOnce() -> T) -> Result<T, i32> {
    // SAFETY: raw getgroups/setgroups/setresgid/setresuid with integers and live buffers.
    unsafe {
        let mut saved = [0 as libc::gid_t; 256];
        let n = libc::syscall(libc::SYS_getgroups, saved.len(), saved.as_mut_ptr());
        if n < 0 {
            return Err(libc::EPERM);
        }
        let restore = || {
            let ok = libc::syscall(libc::SYS_setresuid, u32::MAX, 0u32, u32::MAX) == 0
                && libc::syscall(libc::SYS_setresgid, u32::MAX, 0u32, u32::MAX) == 0
                && libc::syscall(libc::SYS_setgroups, n as usize, saved.as_ptr()) == 0;
            if !ok {
                std::process::abort();
            }
        };
        let lowered = libc::syscall(libc::SYS_setgroups, creds.groups.len(), creds.groups.as_ptr()) == 0
            && libc::syscall(libc::SYS_setresgid, u32::MAX, creds.gid, u32::MAX) == 0
            && libc::syscall(libc::SYS_setresuid, u32::MAX, creds.uid, u32::MAX) == 0;
        if !lowered {
            restore();
            return Err(libc::EPERM);
        }
        let out = f();
        restore();
        Ok(out)
    }
}

/// Makes this process the subreaper of its descendants: an orphan below it is reparented
/// to it, not to the host's init (`PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process is killed when its parent thread dies (`PR_SET_PDEATHSIG`, SIGKILL).
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What already confines this process (a container, another sandbox, sbx itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Confinement {
    /// A seccomp filter is applied (`Seccomp: 2` in /proc/self/status).
    pub seccomp_filter: bool,
    /// The process is in the initial user namespace (its uid_map is the identity of all
    /// uids): root here is the host's root.
    pub initial_userns: bool,
}

/// This process's [`Confinement`], from `/proc/self`.
pub fn confinement() -> Confinement {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let seccomp_filter = status.lines().any(|l| l.strip_prefix("Seccomp:").is_some_and(|v| v.trim() == "2"));
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let initial_userns = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    Confinement { seccomp_filter, initial_userns }
}

/// Whether this process may create a user namespace, tried in a child process that calls
/// `unshare(CLONE_NEWUSER)` and exits with the error (a fork, so not on the fast path).
pub fn try_userns() -> Result<(), nix::errno::Errno> {
    // SAFETY: the child calls only unshare and _exit, both async-signal-safe, before it
    // ends; it touches no lock or allocation the parent's threads may hold.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: as above.
            unsafe {
                let code = if libc::unshare(libc::CLONE_NEWUSER) == 0 { 0 } else { *libc::__errno_location() };
                libc::_exit(code.clamp(0, 255));
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => Err(nix::errno::Errno::from_raw(code)),
            Ok(_) => Err(nix::errno::Errno::EINVAL),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

/// Writes all of `bytes` to the descriptor `fd`, which the caller keeps open and owns.
pub fn write_all_raw(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: write reads `bytes.len()` bytes from a live slice; a bad fd is EBADF.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// Makes the calling process a session leader whose controlling terminal is its stdout
/// (`setsid`, `TIOCSCTTY`; stdin may be a pipe the command reads). Meant for a `pre_exec`
/// hook: async-signal-safe, no allocation.
pub fn take_controlling_terminal() -> io::Result<()> {
    // SAFETY: setsid takes no argument; TIOCSCTTY on fd 1 takes an integer argument.
    if unsafe { libc::setsid() } < 0 || unsafe { libc::ioctl(1, libc::TIOCSCTTY, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What `poll(2)` reports for `fd` now (`revents`; 0 when nothing), without blocking;
/// retried on EINTR.
pub fn poll_now(fd: RawFd, events: libc::c_short) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    loop {
        // SAFETY: poll on one pollfd that lives across the call, with a zero timeout.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        if rc >= 0 {
            return Ok(pfd.revents);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sets a terminal's size (`TIOCSWINSZ`); on a pty's master, the kernel
/// sends SIGWINCH to the slave's foreground process group when the size
/// changed.
pub fn set_window_size(fd: &impl std::os::fd::AsFd, cols: u16, rows: u16) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize, which lives across the call.
    if unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes waiting to be read on `fd` (`FIONREAD`).
pub fn pending_bytes(fd: RawFd) -> io::Result<usize> {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut pending) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pending.max(0) as usize)
}

/// `setns(2)`: moves the calling thread into the namespace open as `fd`.
pub fn setns(fd: &impl std::os::fd::AsFd, nstype: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on an open namespace file descriptor.
    if unsafe { libc::setns(fd.as_fd().as_raw_fd(), nstype) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The user namespace that owns the namespace open as `ns` (`NS_GET_USERNS`).
pub fn owning_userns(ns: &impl std::os::fd::AsFd) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd as _;
    const NS_GET_USERNS: libc::c_ulong = 0xb701;
    // SAFETY: the ioctl takes no argument and returns a new descriptor.
    let fd = unsafe { libc::ioctl(ns.as_fd().as_raw_fd(), NS_GET_USERNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fd` registered with the current tokio reactor for `interest`.
pub fn async_fd(fd: OwnedFd, interest: tokio::io::Interest) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes `fd` by value and owns it until it is dropped; an OwnedFd's
    // as_raw_fd always returns the same open fd for its whole life.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn memfd_reads_back_from_the_start() {
        let mut f = memfd_with(c"test", b"a\0b\0").unwrap();
        let mut s = Vec::new();
        f.read_to_end(&mut s).unwrap();
        assert_eq!(s, b"a\0b\0");
        assert!(std::os::fd::AsRawFd::as_raw_fd(&f) > 2);
    }
}
