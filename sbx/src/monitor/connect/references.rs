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

use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::sys;

/// What must follow the socket when it is replaced.
#[derive(Debug, Default)]
pub(super) struct References {
    /// Every other descriptor number of the caller naming the socket, and whether each is
    /// close-on-exec.
    pub duplicates: Vec<(i32, bool)>,
    /// The registrations of the socket in the caller's epoll instances (at most
    /// [`MOST_REGISTRATIONS`]), each with the caller's number for its instance. The
    /// instances are taken from the caller only when the registrations are moved: sbx
    /// holds none of them while the connect is made (a registration outlives the number it
    /// was added under, so a short table can hold tens of thousands of them, and a
    /// descriptor of sbx's for each filled sbx's table).
    pub epoll: Vec<(i32, Registration)>,
}

/// Descriptors read at most on sbx's runtime thread; a longer table is read on the
/// blocking pool.
pub(super) const QUICK: usize = 64;
/// Bytes of one epoll instance's fdinfo read at most (some 3,000 registrations).
const MOST_FDINFO: u64 = 256 * 1024;
/// Registrations of the socket moved at most, and duplicates replaced at most; the rest
/// stay with the old socket (a program that names one socket by more numbers than this has
/// no use for them).
pub(super) const MOST_REGISTRATIONS: usize = 1024;

/// The references to `sock` (a duplicate of the caller's descriptor `fd`) in the table of
/// thread `pid`. What cannot be read is left out: the connect itself goes on. `quick`:
/// `None` when the table has more than [`QUICK`] descriptors or an epoll instance (to be
/// read again, not quick, elsewhere): the kernel renders an instance's fdinfo whole at
/// every read, however little is read, and a program can give one instance hundreds of
/// thousands of registrations (a second of the runtime thread per connect).
pub(super) fn of(pid: u32, sock: &OwnedFd, fd: i32, quick: bool) -> Option<References> {
    let mut found = References::default();
    let Ok(st) = nix::sys::stat::fstat(sock) else { return Some(found) };
    let link = format!("socket:[{}]", st.st_ino);
    // fdinfo prints the target's device as the kernel encodes it (major << 20 | minor).
    let sdev = (u64::from(libc::major(st.st_dev)) << 20) | u64::from(libc::minor(st.st_dev));
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Some(found) };
    for (i, entry) in entries.flatten().enumerate() {
        if quick && i >= QUICK {
            return None;
        }
        let Some(n) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.as_os_str().as_encoded_bytes();
        if target == link.as_bytes() && n != fd {
            // Each costs an ADDFD, which the caller's thread carries out while sbx's runtime
            // waits: at most as many as registrations.
            if found.duplicates.len() < MOST_REGISTRATIONS {
                found.duplicates.push((n, cloexec(pid, n)));
            }
        } else if target == b"anon_inode:[eventpoll]" && found.epoll.len() < MOST_REGISTRATIONS {
            if quick {
                return None;
            }
            let Some(info) = fdinfo(pid, n) else { continue };
            let room = MOST_REGISTRATIONS - found.epoll.len();
            found.epoll.extend(info.lines().filter_map(registration).filter(|r| r.ino == st.st_ino && r.sdev == sdev).take(room).map(|r| (n, r)));
        }
    }
    Some(found)
}

/// The whole lines of the first [`MOST_FDINFO`] bytes of the caller's fdinfo of `n`.
fn fdinfo(pid: u32, n: i32) -> Option<String> {
    let mut info = String::new();
    std::fs::File::open(format!("/proc/{pid}/fdinfo/{n}")).ok()?.take(MOST_FDINFO).read_to_string(&mut info).ok()?;
    info.truncate(info.rfind('\n').map_or(0, |i| i + 1));
    Some(info)
}

impl References {
    /// Moves the registrations found from `old` to `new` in the epoll instances of the
    /// caller (a pidfd made while its notification was valid), taken now, one descriptor of
    /// sbx's per instance for the duration.
    pub fn move_epoll(&self, caller: &OwnedFd, old: &OwnedFd, new: &OwnedFd) -> std::io::Result<()> {
        let mut instances: HashMap<i32, Option<Arc<OwnedFd>>> = HashMap::new();
        let mut entries = Vec::with_capacity(self.epoll.len());
        for (n, r) in &self.epoll {
            let instance = instances.entry(*n).or_insert_with(|| sys::pidfd_getfd(caller, *n).ok().map(Arc::new));
            if let Some(epoll) = instance {
                entries.push(sys::EpollEntry { epoll: epoll.clone(), fd: r.fd, events: r.events, data: r.data });
            }
        }
        sys::move_epoll_entries(&entries, old, new)
    }
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
pub(super) struct Registration {
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
        // Never quick with an epoll instance in the table: the kernel renders its whole
        // fdinfo at each read, which a program can make take a second (sbx reads a table
        // quick on its runtime thread, which also serves the proxy and the DNS).
        assert!(of(pid, &sock, sock.as_raw_fd(), true).is_none());
        let found = of(pid, &sock, sock.as_raw_fd(), false).unwrap();
        assert_eq!(found.duplicates, [(dup.as_raw_fd(), false)]);
        assert!(found.epoll.iter().all(|(n, _)| *n == ep.0.as_raw_fd()));
        let mut regs: Vec<(i32, u32, u64)> = found.epoll.iter().map(|(_, r)| (r.fd, r.events, r.data)).collect();
        regs.sort();
        // The kernel adds EPOLLERR and EPOLLHUP to every registration (and reports them).
        let events = (flags | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP).bits() as u32;
        assert_eq!(regs, [(sock.as_raw_fd(), events, 11), (dup.as_raw_fd(), events, 22)]);
    }
}
