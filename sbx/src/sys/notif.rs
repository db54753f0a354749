//! The seccomp user-notification listener's ioctls (one set, for the supervisor,
//! `monitor::notify`, and the connect mediator, `monitor::connect`), and what a supervisor
//! needs of the calling process: its memory (`process_vm_readv`) and its descriptors
//! (`pidfd_open`, `pidfd_getfd`).

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
};

// The request numbers as the kernel defines them (x86_64 and aarch64 share them).
const _: () = {
    assert!(libc::SECCOMP_IOCTL_NOTIF_RECV == 0xc050_2100);
    assert!(libc::SECCOMP_IOCTL_NOTIF_SEND == 0xc018_2101);
    assert!(libc::SECCOMP_IOCTL_NOTIF_ID_VALID == 0x4008_2102);
};

/// `SECCOMP_IOCTL_NOTIF_RECV`: the next notification on `listener`, retried on EINTR. Blocks
/// when none is queued. ENOENT (the caller was interrupted or killed after queueing it) is
/// returned as the error it is.
pub fn notif_recv(listener: RawFd) -> io::Result<libc::seccomp_notif> {
    // SAFETY: seccomp_notif is plain data, and the kernel requires it zeroed for RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: NOTIF_RECV writes one seccomp_notif into `req`.
        let rc = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
        if rc == 0 {
            return Ok(req);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_ID_VALID`: whether notification `id` is still waiting for its
/// answer (`false` on ENOENT).
pub fn notif_id_valid(listener: RawFd, id: u64) -> io::Result<bool> {
    let mut id_arg = id;
    // SAFETY: NOTIF_ID_VALID reads one u64.
    let rc = unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut id_arg) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT) => Ok(false),
        _ => Err(err),
    }
}

/// `SECCOMP_IOCTL_NOTIF_SEND`: answers notification `id` with `error` (a negative errno, or
/// 0 for success with return value 0), retried on EINTR; `false` if the caller is gone
/// (ENOENT). Never `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: see `monitor::notify`.
pub fn notif_send(listener: RawFd, id: u64, error: i32) -> io::Result<bool> {
    send_response(listener, libc::seccomp_notif_resp { id, val: 0, error, flags: 0 })
}

/// `SECCOMP_IOCTL_NOTIF_SEND` with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: the kernel runs the
/// call as if it had not been notified; `false` if the caller is gone. Only for exec under
/// command rules (`monitor::exec`), where the decision is a guardrail on a copy of the
/// arguments, as that module says; never for a decision the sandbox's boundary rests on.
pub fn notif_continue(listener: RawFd, id: u64) -> io::Result<bool> {
    send_response(listener, libc::seccomp_notif_resp { id, val: 0, error: 0, flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32 })
}

fn send_response(listener: RawFd, mut resp: libc::seccomp_notif_resp) -> io::Result<bool> {
    // SAFETY: NOTIF_SEND reads one seccomp_notif_resp.
    retry_notif(|| unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) })
}

/// Runs a notification ioctl again while it is interrupted: `false` when the notification
/// is gone (ENOENT: the caller was interrupted or killed).
fn retry_notif(mut ioctl: impl FnMut() -> libc::c_int) -> io::Result<bool> {
    loop {
        if ioctl() >= 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ENOENT) => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Read `buf.len()` bytes at `addr` in process `pid`; the count actually read.
pub fn read_process_memory(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as usize as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: `local` describes `buf`, writable for its whole length; `remote` is an address
    // in the other process, which the kernel checks and this process never dereferences.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// A pidfd for task `tid`: `PIDFD_THREAD` (Linux 6.9) since a notification names a thread;
/// without it (older kernels) for a thread-group leader, which is what single-threaded
/// callers are.
pub fn pidfd_open(tid: u32) -> io::Result<OwnedFd> {
    const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
    let mut last = io::Error::from_raw_os_error(libc::ESRCH);
    for flags in [PIDFD_THREAD, 0] {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, tid as libc::c_long, flags) };
        if fd >= 0 {
            // SAFETY: a fresh descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        last = io::Error::last_os_error();
    }
    Err(last)
}

/// `pidfd_getfd`: a duplicate of the process's descriptor `fd` (the same open file).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two descriptors and flags and returns a new descriptor or -1.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd() as libc::c_long, fd as libc::c_long, 0 as libc::c_long) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup as RawFd) })
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD`: puts `fd` (one of ours) at
/// descriptor number `target` of the process that made notification `id`, replacing (and
/// closing, in that process) what was there; `cloexec` gives it `O_CLOEXEC` there. `false`
/// if the caller is gone (ENOENT). The notification is still to be answered.
pub fn notif_addfd_at(listener: RawFd, id: u64, fd: &impl std::os::fd::AsRawFd, target: i32, cloexec: bool) -> io::Result<bool> {
    let mut add = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: target as u32,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: NOTIF_ADDFD reads one seccomp_notif_addfd.
    retry_notif(|| unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &mut add) })
}
