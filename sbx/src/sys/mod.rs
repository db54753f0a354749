//! The thin layer of raw system calls that neither `nix` nor `landlock`
//! wrap the way sbx needs. Every `unsafe` block outside stage-2 and the eBPF
//! loader lives here, each with its reason.

mod fdpass;

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
pub const CAP_SYS_ADMIN: u32 = 21;
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
