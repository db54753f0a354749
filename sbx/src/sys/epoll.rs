//! Moving another process's epoll registrations from one open file to another, under the
//! descriptor numbers that process knows them by: for the connect mediator
//! (`monitor::connect`), which replaces a program's socket with one it connected on the host.
//!
//! An epoll instance keys each registration by the open file *and* the descriptor number
//! it was added under, and the kernel takes neither from the epoll owner's descriptor table
//! when it adds one: `epoll_ctl` looks the number up in the table of the thread that calls
//! it. So the registrations are moved by a thread of sbx with a descriptor table of its own
//! (`unshare(CLONE_FILES)`), in which each number is made to name first the old file (to
//! delete its registration) and then the new one (to add it with the same events and data).
//! That table is a copy, and goes when the thread ends: sbx's own descriptors are untouched.

use std::{
    collections::{HashMap, HashSet},
    io,
    os::fd::{AsRawFd as _, OwnedFd, RawFd},
    sync::Arc,
};

/// One registration of a program's epoll instance, as `/proc/PID/fdinfo` shows it.
#[derive(Debug)]
pub struct EpollEntry {
    /// The instance (a duplicate of the program's descriptor: the same open file), shared
    /// by the entries of one instance.
    pub epoll: Arc<OwnedFd>,
    /// The descriptor number the file is registered under.
    pub fd: RawFd,
    /// The events and flags (`EPOLLET`, `EPOLLONESHOT`, ...) and the data, as registered.
    pub events: u32,
    pub data: u64,
}

/// Moves every entry's registration from `old` to `new` (both ours, open files): deletes
/// the one of `old` under the entry's number and adds `new` under it with the same events
/// and data. Every entry is tried; the first failure is returned.
pub fn move_epoll_entries(entries: &[EpollEntry], old: &OwnedFd, new: &OwnedFd) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    // Builder::spawn_scoped: a thread that cannot be made (the user's process limit, which
    // the sandbox's processes count against when sbx is the same user) is an error, not a
    // panic of the supervisor's task.
    std::thread::scope(|s| {
        let thread = std::thread::Builder::new().spawn_scoped(s, || in_own_table(entries, old.as_raw_fd(), new.as_raw_fd()))?;
        thread.join().unwrap_or_else(|_| Err(io::Error::other("the epoll thread panicked")))
    })
}

/// The work of [`move_epoll_entries`], in the calling thread, which it gives a descriptor
/// table of its own first. Nothing here closes a descriptor by its number: numbers in this
/// table name sbx's files only in this copy, and the copy is freed with the thread.
fn in_own_table(entries: &[EpollEntry], old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: unshare(CLONE_FILES) gives this thread a copy of the descriptor table; it reads
    // and writes no memory.
    if unsafe { libc::unshare(libc::CLONE_FILES) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The numbers about to be overwritten; our files are held at numbers outside them (the
    // lowest free ones: a registration may be under the last number the limit allows).
    let numbers: HashSet<RawFd> = entries.iter().map(|e| e.fd).collect();
    if let Some(&most) = numbers.iter().max() {
        allow_number(most);
    }
    let hold = |fd: RawFd| -> io::Result<RawFd> {
        loop {
            // SAFETY: F_DUPFD_CLOEXEC on a descriptor of this table; no memory involved. A
            // number among `numbers` is left as it is (overwritten later): at most as many
            // tries as there are numbers.
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if !numbers.contains(&n) {
                return Ok(n);
            }
        }
    };
    let (old, new) = (hold(old)?, hold(new)?);
    let mut held: HashMap<RawFd, RawFd> = HashMap::new();
    let mut first = None;
    for e in entries {
        let epoll = match held.get(&e.epoll.as_raw_fd()) {
            Some(&h) => Ok(h),
            None => hold(e.epoll.as_raw_fd()).inspect(|&h| {
                held.insert(e.epoll.as_raw_fd(), h);
            }),
        };
        if let Err(err) = epoll.and_then(|epoll| move_one(epoll, e, old, new)) {
            first.get_or_insert(err);
        }
    }
    first.map_or(Ok(()), Err)
}

/// One registration moved: `old` put at its number and deleted, `new` put there and added.
fn move_one(epoll: RawFd, e: &EpollEntry, old: RawFd, new: RawFd) -> io::Result<()> {
    let at = |file: RawFd| -> io::Result<()> {
        // SAFETY: dup2 between two numbers of this (private) table.
        if unsafe { libc::dup2(file, e.fd) } < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    };
    at(old)?;
    // SAFETY: EPOLL_CTL_DEL ignores the event pointer (NULL is allowed since 2.6.9).
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, e.fd, std::ptr::null_mut()) } < 0 {
        let err = io::Error::last_os_error();
        // Already gone (the program deleted it meanwhile): add the new one all the same.
        if err.raw_os_error() != Some(libc::ENOENT) {
            return Err(err);
        }
    }
    at(new)?;
    let mut event = libc::epoll_event { events: e.events, u64: e.data };
    // SAFETY: EPOLL_CTL_ADD reads one epoll_event.
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, e.fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The program's numbers are below its own limit, which may be above sbx's soft one (a
/// JVM raises its soft limit to the hard one): sbx's soft limit is raised to its hard one
/// when `most` is beyond it (for the whole process: a limit, not a resource).
fn allow_number(most: RawFd) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 && limit.rlim_cur <= most as libc::rlim_t && limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd as _, FromRawFd as _};

    fn epoll() -> OwnedFd {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor nothing else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    fn wait(ep: &OwnedFd) -> Vec<(u32, u64)> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: epoll_wait writes at most 4 events.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), 4, 1000) };
        events[..n.max(0) as usize].iter().map(|e| (e.events, e.u64)).collect()
    }

    /// A registration made under number N for one pipe is moved to another pipe under the
    /// same number, with its events and data; this thread's own descriptors are untouched,
    /// and the program-side calls on N (MOD, DEL through a table where N is the new file)
    /// find it.
    #[test]
    fn a_registration_moves_to_the_new_file_under_the_same_number_and_data() {
        let (old_r, _old_w) = pipe();
        let (new_r, new_w) = pipe();
        let ep = epoll();
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0xfeed_beef_0042 };
        // SAFETY: EPOLL_CTL_ADD reads one epoll_event.
        assert_eq!(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, old_r.as_raw_fd(), &mut event) }, 0);
        let number = old_r.as_raw_fd();
        let entry = EpollEntry { epoll: std::sync::Arc::new(ep.try_clone().unwrap()), fd: number, events: libc::EPOLLIN as u32, data: 0xfeed_beef_0042 };
        let ino = |fd: std::os::fd::BorrowedFd| nix::sys::stat::fstat(fd).unwrap().st_ino;
        let old_ino = ino(old_r.as_fd());
        move_epoll_entries(&[entry], &old_r, &new_r).unwrap();
        // Our own table still has the old pipe at that number.
        assert_eq!(ino(old_r.as_fd()), old_ino);
        assert_ne!(ino(new_r.as_fd()), old_ino);
        nix::unistd::write(&new_w, b"x").unwrap();
        assert_eq!(wait(&ep), [(libc::EPOLLIN as u32, 0xfeed_beef_0042)]);
        // The old registration is gone: deleting (old, number) here finds nothing.
        // SAFETY: as above.
        let rc = unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_DEL, number, std::ptr::null_mut()) };
        assert_eq!((rc, io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ENOENT)));
    }
}
