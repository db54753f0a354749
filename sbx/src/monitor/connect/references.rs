//! The caller's other references to a socket that transparent egress replaces.
//!
//! `SECCOMP_ADDFD_FLAG_SETFD` replaces the socket at one descriptor number. A program can
//! also reach the same socket through a duplicate (`dup` before `connect`) and through its
//! epoll instances, which key a registration by the open file: Netty (so gRPC-java and most
//! Java network clients) registers a channel before it connects, and would wait for ever on
//! the old socket's registration. So before the replacement the supervisor reads the
//! caller's descriptor table (`/proc/PID/fd`, and `/proc/PID/fdinfo` of each epoll
//! instance, which lists its registrations with the target's inode), and the replacement
//! then puts the new socket at every number that named the old one and moves every
//! registration of the old one to it, with the same number, events and data
//! ([`sys::move_epoll_entries`]).
//!
//! Only the calling process's table is read: a copy of the socket held by another process
//! (inherited through `fork` before the connect) keeps the old, unconnected socket.

use std::os::fd::OwnedFd;

use crate::sys;

/// What must follow the socket when it is replaced.
#[derive(Debug, Default)]
pub(super) struct References {
    /// Every other descriptor number of the caller naming the socket, and whether each is
    /// close-on-exec.
    pub duplicates: Vec<(i32, bool)>,
    /// Every registration of the socket in the caller's epoll instances.
    pub epoll: Vec<sys::EpollEntry>,
}

/// Descriptors read at most on sbx's runtime thread; a longer table is read on the
/// blocking pool.
pub(super) const QUICK: usize = 64;

/// The references to `sock` (a duplicate of the caller's descriptor `fd`) in the table of
/// thread `pid`, whose descriptors are taken through `pidfd`. What cannot be read is left
/// out: the connect itself goes on. `None` when the table has more than `most` descriptors.
pub(super) fn of(pid: u32, pidfd: &OwnedFd, sock: &OwnedFd, fd: i32, most: usize) -> Option<References> {
    let mut found = References::default();
    let Ok(st) = nix::sys::stat::fstat(sock) else { return Some(found) };
    let link = format!("socket:[{}]", st.st_ino);
    // fdinfo prints the target's device as the kernel encodes it (major << 20 | minor).
    let sdev = (u64::from(libc::major(st.st_dev)) << 20) | u64::from(libc::minor(st.st_dev));
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Some(found) };
    for (i, entry) in entries.flatten().enumerate() {
        if i >= most {
            return None;
        }
        let Some(n) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.as_os_str().as_encoded_bytes();
        if target == link.as_bytes() && n != fd {
            found.duplicates.push((n, cloexec(pid, n)));
        } else if target == b"anon_inode:[eventpoll]" {
            let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{n}")) else { continue };
            let registrations: Vec<Registration> = info.lines().filter_map(registration).filter(|r| r.ino == st.st_ino && r.sdev == sdev).collect();
            if registrations.is_empty() {
                continue;
            }
            let Ok(epoll) = sys::pidfd_getfd(pidfd, n) else { continue };
            for r in registrations {
                let Ok(epoll) = epoll.try_clone() else { continue };
                found.epoll.push(sys::EpollEntry { epoll, fd: r.fd, events: r.events, data: r.data });
            }
        }
    }
    Some(found)
}

/// Whether the caller's descriptor `fd` is close-on-exec (`/proc/PID/fdinfo`).
pub(super) fn cloexec(pid: u32, fd: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("flags:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok()))
        .is_some_and(|f| f & libc::O_CLOEXEC as u32 != 0)
}

/// One line of an epoll instance's fdinfo.
#[derive(Debug, PartialEq, Eq)]
struct Registration {
    fd: i32,
    events: u32,
    data: u64,
    ino: u64,
    sdev: u64,
}

/// Parses `tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x` (fs/eventpoll.c).
fn registration(line: &str) -> Option<Registration> {
    let rest = line.strip_prefix("tfd:")?;
    let mut words = rest.split_whitespace();
    let fd = words.next()?.parse().ok()?;
    let (mut events, mut data, mut ino, mut sdev) = (None, None, None, None);
    while let Some(word) = words.next() {
        match word {
            "events:" => events = u32::from_str_radix(words.next()?, 16).ok(),
            "data:" => data = u64::from_str_radix(words.next()?, 16).ok(),
            w => {
                if let Some(v) = w.strip_prefix("ino:") {
                    ino = u64::from_str_radix(v, 16).ok();
                } else if let Some(v) = w.strip_prefix("sdev:") {
                    sdev = u64::from_str_radix(v, 16).ok();
                }
            }
        }
    }
    Some(Registration { fd, events: events?, data: data?, ino: ino?, sdev: sdev? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoll_fdinfo_line_is_read_whole_or_not_at_all() {
        let line = "tfd:        7 events: 80000019 data: ffffffff00000007  pos:0 ino:2e0a sdev:8";
        assert_eq!(registration(line), Some(Registration { fd: 7, events: 0x8000_0019, data: 0xffff_ffff_0000_0007, ino: 0x2e0a, sdev: 8 }));
        assert_eq!(registration("tfd:        7 events: 19 pos:0 ino:2e0a sdev:8"), None);
        assert_eq!(registration("pos:\t0"), None);
    }

    /// This process's own table: a socket registered in an epoll instance under its number
    /// and under a duplicate's is found twice, with the events and data as registered; the
    /// duplicate is listed with its close-on-exec flag.
    #[test]
    fn the_registrations_and_duplicates_of_a_socket_are_found() {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        use std::os::fd::AsRawFd as _;
        let sock = sys::new_socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0).unwrap();
        let dup = nix::unistd::dup(&sock).unwrap();
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
        let flags = EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
        ep.add(&sock, EpollEvent::new(flags, 11)).unwrap();
        ep.add(&dup, EpollEvent::new(flags, 22)).unwrap();
        let pid = std::process::id();
        let pidfd = sys::pidfd_open(pid).unwrap();
        let found = of(pid, &pidfd, &sock, sock.as_raw_fd(), usize::MAX).unwrap();
        assert!(of(pid, &pidfd, &sock, sock.as_raw_fd(), 1).is_none(), "more than one descriptor");
        assert_eq!(found.duplicates, [(dup.as_raw_fd(), false)]);
        let mut regs: Vec<(i32, u32, u64)> = found.epoll.iter().map(|e| (e.fd, e.events, e.data)).collect();
        regs.sort();
        // The kernel adds EPOLLERR and EPOLLHUP to every registration (and reports them).
        let events = (flags | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP).bits() as u32;
        assert_eq!(regs, [(sock.as_raw_fd(), events, 11), (dup.as_raw_fd(), events, 22)]);
    }
}
