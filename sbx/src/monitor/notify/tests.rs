//! The supervisor's tests: children that install filters and make the blocked calls.

use super::*;
use std::path::Path;
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
