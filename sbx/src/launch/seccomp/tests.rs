//! The filter's tests: programs compiled and installed in forked children, each blocked
//! call made for real.

use super::*;
use crate::syscalls::{PER_LINUX, PER_QUERY, blocked};
use std::os::fd::{AsRawFd, RawFd};

// ----- helpers -----------------------------------------------------------------------

/// A child's exit code for "the filter could not be installed".
const CHILD_INSTALL_FAILED: i32 = 200;
/// A child's exit code for "something other than the syscall under test went wrong".
const CHILD_BROKEN: i32 = 201;

/// An address no process maps: any pointer argument set to it gives EFAULT.
const BAD_PTR: libc::c_ulong = libc::c_ulong::MAX - 4095;

#[derive(Debug, PartialEq, Eq)]
enum End {
    Exited(i32),
    Signaled(i32),
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// 0 for success, else errno: what a child passes to `_exit`.
fn outcome(rc: libc::c_long) -> i32 {
    if rc == -1 { errno() } else { 0 }
}

fn wait(pid: libc::pid_t) -> End {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        assert!(
            rc == -1 && errno() == libc::EINTR,
            "waitpid: errno {}",
            errno()
        );
    }
    if libc::WIFEXITED(status) {
        End::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        End::Signaled(libc::WTERMSIG(status))
    } else {
        panic!("unexpected wait status {status:#x}")
    }
}

/// Fork; in the child install `prog` (if any), run `body` and `_exit` with its result.
/// `body` must be async-signal-safe: raw syscalls only, no allocation, no panics.
fn run_child(prog: Option<&BpfProgram>, body: impl FnOnce() -> i32) -> End {
    // SAFETY: the test process is multi-threaded; the child only runs async-signal-safe
    // code (install: prctl + seccomp, no allocation; body: raw syscalls) and leaves with
    // _exit, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: errno {}", errno());
    if pid == 0 {
        let code = match prog {
            // A program that notifies (connect under allowUnixSockets) gets a listener that
            // nobody reads: the bodies never make a notified call.
            Some(p) => match install(p, if p.iter().any(|i| i.code == BPF_RET_K && i.k == libc::SECCOMP_RET_USER_NOTIF) { Listener::New } else { Listener::None }) {
                Ok(_) => body(),
                Err(_) => CHILD_INSTALL_FAILED,
            },
            None => body(),
        };
        // SAFETY: leaves the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) }
    }
    wait(pid)
}

fn deny_prog() -> BpfProgram {
    compile(DenyAction::Errno).expect("compile(Errno)")
}

/// `syscall(nr, args...)` with every argument as an unsigned long.
fn sys(nr: libc::c_long, a: [libc::c_ulong; 6]) -> i32 {
    // SAFETY: raw syscall; the tests only pass values and pointers that are valid or
    // deliberately unmapped (EFAULT), never memory the kernel could corrupt.
    outcome(unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) })
}

/// Assert that `call` gets EPERM under the filter, and `unfiltered` without it (a
/// different errno, which proves that the filter and not the kernel said EPERM).
fn assert_denied(what: &str, call: impl Fn() -> i32 + Copy, unfiltered: i32) {
    let prog = deny_prog();
    assert_ne!(unfiltered, libc::EPERM, "{what}: control must not be EPERM");
    assert_eq!(
        run_child(None, call),
        End::Exited(unfiltered),
        "{what} without the filter"
    );
    assert_eq!(
        run_child(Some(&prog), call),
        End::Exited(libc::EPERM),
        "{what} under the filter"
    );
}

#[test]
fn listener_ioctl_numbers_match_the_kernel() {
    assert_eq!(libc::SECCOMP_IOCTL_NOTIF_RECV, 0xc050_2100);
    assert_eq!(libc::SECCOMP_IOCTL_NOTIF_SEND, 0xc018_2101);
    assert_eq!(libc::SECCOMP_IOCTL_NOTIF_ID_VALID, 0x4008_2102);
    assert_eq!(libc::SECCOMP_RET_USER_NOTIF, 0x7fc0_0000);
}

// ----- program shape -----------------------------------------------------------------

#[test]
#[cfg(target_arch = "x86_64")]
fn program_starts_with_the_arch_x32_clone3_prologue() {
    #[rustfmt::skip]
    let expected = vec![
        sock_filter { code: 0x20, jt: 0, jf: 0, k: 4 },
        sock_filter { code: 0x15, jt: 1, jf: 0, k: 0xc000_003e },
        sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x8000_0000 },
        sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 },
        sock_filter { code: 0x35, jt: 0, jf: 2, k: 0x4000_0000 },
        sock_filter { code: 0x15, jt: 1, jf: 0, k: 0xffff_ffff },
        sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x8000_0000 },
        sock_filter { code: 0x15, jt: 0, jf: 1, k: 435 },
        sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x0005_0026 },
    ];
    assert_eq!(prologue().expect("prologue"), expected);
    for action in [DenyAction::Errno, DenyAction::UserNotif] {
        let prog = compile(action).expect("compile");
        assert_eq!(prog[..expected.len()], expected[..], "{action:?}");
        // seccompiler's part follows, starting with its own arch check.
        assert_eq!(
            prog[expected.len()],
            sock_filter {
                code: 0x20,
                jt: 0,
                jf: 0,
                k: 4
            }
        );
        assert!(prog.len() < MAX_INSNS);
    }
}

fn rets(prog: &BpfProgram, k: u32) -> usize {
    prog.iter().filter(|i| i.code == 0x06 && i.k == k).count()
}

#[test]
fn user_notif_program_notifies_and_keeps_no_sentinel() {
    let prog = compile(DenyAction::UserNotif).expect("compile");
    assert_eq!(rets(&prog, libc::SECCOMP_RET_ERRNO | DENY_SENTINEL), 0);
    assert_eq!(rets(&prog, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32), 0);
    assert!(rets(&prog, libc::SECCOMP_RET_USER_NOTIF) >= 1);
    // clone3 stays ENOSYS.
    assert_eq!(
        rets(&prog, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        1
    );
}

#[test]
fn errno_program_never_notifies() {
    let prog = compile(DenyAction::Errno).expect("compile");
    assert_eq!(rets(&prog, libc::SECCOMP_RET_USER_NOTIF), 0);
    assert_eq!(rets(&prog, libc::SECCOMP_RET_ERRNO | DENY_SENTINEL), 0);
    assert!(rets(&prog, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32) >= 1);
    assert_eq!(
        rets(&prog, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        1
    );
}

#[test]
fn both_actions_give_the_same_program_but_for_the_deny_returns() {
    let errno = compile(DenyAction::Errno).expect("compile");
    let notif = compile(DenyAction::UserNotif).expect("compile");
    assert_eq!(errno.len(), notif.len());
    for (a, b) in errno.iter().zip(&notif) {
        if a != b {
            assert_eq!(a.code, 0x06);
            assert_eq!(a.k, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32);
            assert_eq!(b.k, libc::SECCOMP_RET_USER_NOTIF);
        }
    }
}

#[test]
fn install_refuses_a_notifying_program_without_listener() {
    let prog = compile(DenyAction::UserNotif).expect("compile");
    // Refused before any syscall, so this does not touch the test process.
    assert!(matches!(
        install(&prog, Listener::None),
        Err(SeccompError::CheckProgram(_))
    ));
    assert!(matches!(
        install(&Vec::new(), Listener::None),
        Err(SeccompError::CheckProgram(_))
    ));
}

// ----- behaviour: denied ---------------------------------------------------------------

#[test]
fn every_unconditional_entry_is_denied_with_eperm() {
    let prog = deny_prog();
    for b in blocked()
        .iter()
        .filter(|b| b.condition == Condition::Always && b.outcome == Outcome::Deny)
    {
        let nr = b.nr;
        // All-ones arguments: if the filter let the call through it would fail in the
        // kernel (EFAULT, EINVAL, EBADF, ...), harmlessly.
        let end = run_child(Some(&prog), || sys(nr, [libc::c_ulong::MAX; 6]));
        assert_eq!(end, End::Exited(libc::EPERM), "{}", b.name);
    }
}

#[test]
fn mount_is_denied() {
    // The kernel copies the fstype string first: EFAULT.
    assert_denied(
        "mount",
        || sys(libc::SYS_mount, [0, BAD_PTR, BAD_PTR, 0, 0, 0]),
        libc::EFAULT,
    );
}

#[test]
fn umount2_is_denied() {
    // Unknown flags are refused before the path is looked up: EINVAL.
    assert_denied(
        "umount2",
        || {
            sys(
                libc::SYS_umount2,
                [c".".as_ptr() as libc::c_ulong, 0x8000_0000, 0, 0, 0, 0],
            )
        },
        libc::EINVAL,
    );
}

#[test]
fn unshare_is_denied_whatever_the_flags() {
    let prog = deny_prog();
    let newuser = || {
        sys(
            libc::SYS_unshare,
            [libc::CLONE_NEWUSER as libc::c_ulong, 0, 0, 0, 0, 0],
        )
    };
    assert_eq!(run_child(Some(&prog), newuser), End::Exited(libc::EPERM));
    let none = || sys(libc::SYS_unshare, [0; 6]);
    assert_eq!(run_child(Some(&prog), none), End::Exited(libc::EPERM));
    // Bit 0 is no unshare flag: EINVAL before any permission check.
    assert_denied(
        "unshare(CLONE_NEWUSER|1)",
        || {
            sys(
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as libc::c_ulong | 1, 0, 0, 0, 0, 0],
            )
        },
        libc::EINVAL,
    );
}

#[test]
fn setns_is_denied() {
    assert_denied(
        "setns",
        || {
            sys(
                libc::SYS_setns,
                [
                    u32::MAX.into(),
                    libc::CLONE_NEWNS as libc::c_ulong,
                    0,
                    0,
                    0,
                    0,
                ],
            )
        },
        libc::EBADF,
    );
}

/// clone(flags | CLONE_THREAD) without CLONE_SIGHAND is EINVAL in the kernel, so the
/// control creates no process.
fn clone_thread_without_sighand(flags: libc::c_ulong) -> i32 {
    sys(
        libc::SYS_clone,
        [flags | libc::CLONE_THREAD as libc::c_ulong, 0, 0, 0, 0, 0],
    )
}

#[test]
fn clone_with_any_namespace_flag_is_denied() {
    for (name, flag) in [
        ("CLONE_NEWNS", libc::CLONE_NEWNS),
        ("CLONE_NEWCGROUP", libc::CLONE_NEWCGROUP),
        ("CLONE_NEWUTS", libc::CLONE_NEWUTS),
        ("CLONE_NEWIPC", libc::CLONE_NEWIPC),
        ("CLONE_NEWUSER", libc::CLONE_NEWUSER),
        ("CLONE_NEWPID", libc::CLONE_NEWPID),
        ("CLONE_NEWNET", libc::CLONE_NEWNET),
        ("CLONE_NEWTIME", libc::CLONE_NEWTIME),
    ] {
        assert_denied(
            &format!("clone({name})"),
            move || clone_thread_without_sighand(flag as libc::c_ulong),
            libc::EINVAL,
        );
    }
    // Bits above 32 change neither the kernel's view nor the filter's.
    assert_denied(
        "clone(1<<32 | CLONE_NEWNS)",
        || clone_thread_without_sighand((1 << 32) | libc::CLONE_NEWNS as libc::c_ulong),
        libc::EINVAL,
    );
    // The plain call, as a program would make it (no control: it would fork).
    let prog = deny_prog();
    let newns = || {
        sys(
            libc::SYS_clone,
            [
                (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong,
                0,
                0,
                0,
                0,
                0,
            ],
        )
    };
    assert_eq!(run_child(Some(&prog), newns), End::Exited(libc::EPERM));
}

#[test]
fn clone3_gets_enosys() {
    let prog = deny_prog();
    // Without the filter, a zero size is EINVAL.
    let call = || sys(libc::SYS_clone3, [0; 6]);
    assert_eq!(run_child(None, call), End::Exited(libc::EINVAL));
    assert_eq!(run_child(Some(&prog), call), End::Exited(libc::ENOSYS));
    let notif = compile(DenyAction::UserNotif).expect("compile");
    // Even with UserNotif clone3 is a plain ENOSYS (install with a listener, never read).
    // SAFETY: as in run_child: the child only runs async-signal-safe code and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match install(&notif, Listener::New) {
            Ok(Some(_listener)) => call(),
            _ => CHILD_INSTALL_FAILED,
        };
        // SAFETY: see run_child.
        unsafe { libc::_exit(code) }
    }
    assert_eq!(wait(pid), End::Exited(libc::ENOSYS));
}

#[test]
fn ptrace_is_denied() {
    // No such pid (pid_max is at most 2^22): ESRCH.
    assert_denied(
        "ptrace(PTRACE_ATTACH)",
        || {
            sys(
                libc::SYS_ptrace,
                [libc::PTRACE_ATTACH.into(), 0x3fff_ffff, 0, 0, 0, 0],
            )
        },
        libc::ESRCH,
    );
    let prog = deny_prog();
    let traceme = || {
        sys(
            libc::SYS_ptrace,
            [libc::PTRACE_TRACEME.into(), 0, 0, 0, 0, 0],
        )
    };
    assert_eq!(run_child(Some(&prog), traceme), End::Exited(libc::EPERM));
}

#[test]
fn process_vm_readv_is_denied() {
    // Nonzero flags: EINVAL.
    assert_denied(
        "process_vm_readv",
        || sys(libc::SYS_process_vm_readv, [1, 0, 0, 0, 0, 1]),
        libc::EINVAL,
    );
}

#[test]
fn bpf_is_denied() {
    // Unknown command: EINVAL.
    assert_denied(
        "bpf",
        || sys(libc::SYS_bpf, [9999, 0, 0, 0, 0, 0]),
        libc::EINVAL,
    );
}

#[test]
fn perf_event_open_is_denied() {
    // Unknown flags: EINVAL before anything else.
    assert_denied(
        "perf_event_open",
        || {
            sys(
                libc::SYS_perf_event_open,
                [0, 0, u32::MAX.into(), u32::MAX.into(), 1 << 31, 0],
            )
        },
        libc::EINVAL,
    );
}

#[test]
fn keyctl_is_denied() {
    // Unknown operation: EOPNOTSUPP.
    assert_denied(
        "keyctl",
        || sys(libc::SYS_keyctl, [9999, 0, 0, 0, 0, 0]),
        libc::EOPNOTSUPP,
    );
}

#[test]
fn io_uring_setup_is_denied() {
    let prog = deny_prog();
    let call = || sys(libc::SYS_io_uring_setup, [1, BAD_PTR, 0, 0, 0, 0]);
    assert_eq!(run_child(Some(&prog), call), End::Exited(libc::EPERM));
    // The control depends on kernel.io_uring_disabled (2 gives EPERM): only when enabled.
    let enabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() == "0")
        .unwrap_or(false);
    if enabled {
        assert_eq!(run_child(None, call), End::Exited(libc::EFAULT));
    } else {
        eprintln!("io_uring_setup_is_denied: io_uring disabled here, control skipped");
    }
}

#[test]
fn userfaultfd_is_denied() {
    // UFFD_USER_MODE_ONLY is allowed to everyone, the other bit is unknown: EINVAL.
    assert_denied(
        "userfaultfd",
        || sys(libc::SYS_userfaultfd, [1 | 2, 0, 0, 0, 0, 0]),
        libc::EINVAL,
    );
}

#[test]
fn personality_only_query_and_per_linux_pass() {
    const PER_BSD: libc::c_ulong = 0x0006;
    const ADDR_NO_RANDOMIZE: libc::c_ulong = 0x0004_0000;
    let prog = deny_prog();
    let set_bsd = || sys(libc::SYS_personality, [PER_BSD, 0, 0, 0, 0, 0]);
    assert_eq!(run_child(None, set_bsd), End::Exited(0));
    assert_eq!(run_child(Some(&prog), set_bsd), End::Exited(libc::EPERM));
    let no_aslr = || sys(libc::SYS_personality, [ADDR_NO_RANDOMIZE, 0, 0, 0, 0, 0]);
    assert_eq!(run_child(Some(&prog), no_aslr), End::Exited(libc::EPERM));
    let query = || sys(libc::SYS_personality, [PER_QUERY.into(), 0, 0, 0, 0, 0]);
    assert_eq!(run_child(Some(&prog), query), End::Exited(0));
    let linux = || sys(libc::SYS_personality, [PER_LINUX.into(), 0, 0, 0, 0, 0]);
    assert_eq!(run_child(Some(&prog), linux), End::Exited(0));
}

#[test]
fn unix_rules_refuse_unix_sockets_and_datagram_pairs_only() {
    let unix = FilterOptions { block_unix_sockets: true, ..FilterOptions::default() };
    let prog = compile_with(DenyAction::Errno, &unix).expect("compile_with");
    let without = deny_prog();
    let pair = |ty: libc::c_int| {
        move || {
            let mut sv = [-1 as libc::c_int; 2];
            let sv_ptr = sv.as_mut_ptr() as libc::c_ulong;
            sys(libc::SYS_socketpair, [libc::AF_UNIX as libc::c_ulong, ty as libc::c_ulong, 0, sv_ptr, 0, 0])
        }
    };
    let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    for ty in [libc::SOCK_DGRAM, libc::SOCK_DGRAM | flags] {
        assert_eq!(run_child(Some(&prog), pair(ty)), End::Exited(libc::EPERM), "socketpair type {ty:#x}");
        assert_eq!(run_child(Some(&without), pair(ty)), End::Exited(0), "socketpair type {ty:#x} (allowAllUnixSockets)");
    }
    for ty in [libc::SOCK_STREAM, libc::SOCK_SEQPACKET | flags] {
        assert_eq!(run_child(Some(&prog), pair(ty)), End::Exited(0), "socketpair type {ty:#x}");
    }
    let unix_socket = || sys(libc::SYS_socket, [libc::AF_UNIX as libc::c_ulong, libc::SOCK_STREAM as libc::c_ulong, 0, 0, 0, 0]);
    assert_eq!(run_child(Some(&prog), unix_socket), End::Exited(libc::EPERM));
    assert_eq!(
        unix.entries().filter(|b| b.name == "socketpair").map(|b| b.condition.to_string()).collect::<Vec<_>>(),
        ["unless arg0 is one of 0x1", "when arg1 & 0xf is one of 0x0, 0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf"]
    );
}

#[test]
fn mediated_unix_sockets_allow_stream_sockets_and_notify_connect() {
    let mediated = FilterOptions { block_unix_sockets: true, mediate_unix_connect: true, mediate_exec: false, ..FilterOptions::default() };
    let prog = compile_with(DenyAction::Errno, &mediated).expect("compile_with");
    let socket = |family: libc::c_int, ty: libc::c_int| {
        move || sys(libc::SYS_socket, [family as libc::c_ulong, ty as libc::c_ulong, 0, 0, 0, 0])
    };
    let cloexec = libc::SOCK_CLOEXEC;
    assert_eq!(run_child(Some(&prog), socket(libc::AF_UNIX, libc::SOCK_STREAM | cloexec)), End::Exited(0));
    assert_eq!(run_child(Some(&prog), socket(libc::AF_UNIX, libc::SOCK_SEQPACKET)), End::Exited(0));
    assert_eq!(run_child(Some(&prog), socket(libc::AF_UNIX, libc::SOCK_DGRAM | cloexec)), End::Exited(libc::EPERM));
    assert_eq!(run_child(Some(&prog), socket(libc::AF_INET, libc::SOCK_DGRAM)), End::Exited(0));
    let dgram_pair = || {
        let mut sv = [-1 as libc::c_int; 2];
        let sv_ptr = sv.as_mut_ptr() as libc::c_ulong;
        sys(libc::SYS_socketpair, [libc::AF_UNIX as libc::c_ulong, libc::SOCK_DGRAM as libc::c_ulong, 0, sv_ptr, 0, 0])
    };
    assert_eq!(run_child(Some(&prog), dgram_pair), End::Exited(libc::EPERM));
    // connect(2) is notified even with the ERRNO deny action, so the program needs a
    // listener; the notify entry sits in the prologue, after clone3's.
    let prologue = prologue_with(&mediated).expect("prologue_with");
    let connect_nr = u32::try_from(libc::SYS_connect).expect("nr");
    assert_eq!(
        prologue[prologue.len() - 2..],
        [jump(BPF_JEQ_K, connect_nr, 0, 1), stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF)]
    );
    assert_eq!(prog[..prologue.len()], prologue[..]);
    assert!(matches!(install(&prog, Listener::None), Err(SeccompError::CheckProgram(_))));
    let without = compile_with(DenyAction::Errno, &FilterOptions { block_unix_sockets: true, ..FilterOptions::default() })
        .expect("compile_with");
    assert!(!without.iter().any(|i| i.code == BPF_RET_K && i.k == libc::SECCOMP_RET_USER_NOTIF));
    assert_eq!(
        mediated.entries().filter(|b| b.name == "socket").map(|b| b.condition.to_string()).last(),
        Some("when arg0 is one of 0x1 and when arg1 & 0xf is one of 0x0, 0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf".to_owned())
    );
}

/// The socket allow list, table-driven on the compiled filters of the three Unix-socket
/// policies: (family, type, protocol) and what each policy answers. `0` is "created",
/// EPERM is the filter; other errnos come from the kernel (a family this kernel lacks is
/// EAFNOSUPPORT without the filter, which the filter's EPERM must beat).
#[test]
fn socket_families_and_types_are_an_allow_list() {
    const NONBLOCK: libc::c_int = libc::SOCK_NONBLOCK;
    const CLOEXEC: libc::c_int = libc::SOCK_CLOEXEC;
    let blocked = compile_with(DenyAction::Errno, &FilterOptions { block_unix_sockets: true, mediate_unix_connect: false, mediate_exec: false, ..FilterOptions::default() })
        .expect("blocked");
    let mediated = compile_with(DenyAction::Errno, &FilterOptions { block_unix_sockets: true, mediate_unix_connect: true, mediate_exec: true, ..FilterOptions::default() })
        .expect("mediated");
    let all_unix = deny_prog();
    const EPERM: i32 = libc::EPERM;
    // (family, type, protocol, default, allowUnixSockets, allowAllUnixSockets)
    #[rustfmt::skip]
    let cases: &[(libc::c_int, libc::c_int, libc::c_int, i32, i32, i32)] = &[
        (libc::AF_INET, libc::SOCK_STREAM, 0, 0, 0, 0),
        (libc::AF_INET, libc::SOCK_DGRAM | CLOEXEC, 0, 0, 0, 0),
        (libc::AF_INET6, libc::SOCK_STREAM | NONBLOCK, 0, 0, 0, 0),
        (libc::AF_INET6, libc::SOCK_DGRAM, 0, 0, 0, 0),
        (libc::AF_NETLINK, libc::SOCK_RAW | CLOEXEC, libc::NETLINK_ROUTE, 0, 0, 0),
        (libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_ROUTE, 0, 0, 0),
        (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_AUDIT, EPERM, EPERM, EPERM),
        (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_KOBJECT_UEVENT, EPERM, EPERM, EPERM),
        (libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_SOCK_DIAG, EPERM, EPERM, EPERM),
        (libc::AF_UNIX, libc::SOCK_STREAM, 0, EPERM, 0, 0),
        (libc::AF_UNIX, libc::SOCK_SEQPACKET | CLOEXEC | NONBLOCK, 0, EPERM, 0, 0),
        (libc::AF_UNIX, libc::SOCK_DGRAM, 0, EPERM, EPERM, 0),
        (libc::AF_UNIX, libc::SOCK_RAW, 0, EPERM, EPERM, 0),
        (libc::AF_UNIX, libc::SOCK_RAW | CLOEXEC, 0, EPERM, EPERM, 0),
        (libc::AF_UNIX, libc::SOCK_RDM, 0, EPERM, EPERM, libc::ESOCKTNOSUPPORT),
        (libc::AF_VSOCK, libc::SOCK_STREAM, 0, EPERM, EPERM, EPERM),
        (libc::AF_VSOCK, libc::SOCK_DGRAM | CLOEXEC, 0, EPERM, EPERM, EPERM),
        (libc::AF_PACKET, libc::SOCK_RAW, 0, EPERM, EPERM, EPERM),
        (libc::AF_ALG, libc::SOCK_SEQPACKET, 0, EPERM, EPERM, EPERM),
        (libc::AF_XDP, libc::SOCK_RAW, 0, EPERM, EPERM, EPERM),
        (libc::AF_BLUETOOTH, libc::SOCK_STREAM, 0, EPERM, EPERM, EPERM),
        (libc::AF_TIPC, libc::SOCK_RDM, 0, EPERM, EPERM, EPERM),
        (libc::AF_RDS, libc::SOCK_SEQPACKET, 0, EPERM, EPERM, EPERM),
        (libc::AF_KEY, libc::SOCK_RAW, 2, EPERM, EPERM, EPERM),
        (libc::AF_CAN, libc::SOCK_RAW, 1, EPERM, EPERM, EPERM),
        (libc::AF_UNSPEC, libc::SOCK_STREAM, 0, EPERM, EPERM, EPERM),
        (255, libc::SOCK_STREAM, 0, EPERM, EPERM, EPERM),
    ];
    for &(family, ty, protocol, default, some_unix, every_unix) in cases {
        let call = move || sys(libc::SYS_socket, [family as libc::c_ulong, ty as libc::c_ulong, protocol as libc::c_ulong, 0, 0, 0]);
        for (name, prog, want) in [("default", &blocked, default), ("allowUnixSockets", &mediated, some_unix), ("allowAllUnixSockets", &all_unix, every_unix)] {
            assert_eq!(run_child(Some(prog), call), End::Exited(want), "socket({family}, {ty:#x}, {protocol}) under {name}");
        }
    }
    // socketpair: Unix stream and seqpacket only, whatever the Unix policy (but every
    // Unix type under allowAllUnixSockets); other families never.
    #[rustfmt::skip]
    let pairs: &[(libc::c_int, libc::c_int, i32, i32)] = &[
        (libc::AF_UNIX, libc::SOCK_STREAM, 0, 0),
        (libc::AF_UNIX, libc::SOCK_SEQPACKET | CLOEXEC, 0, 0),
        (libc::AF_UNIX, libc::SOCK_DGRAM, EPERM, 0),
        (libc::AF_UNIX, libc::SOCK_RAW | NONBLOCK, EPERM, 0),
        (libc::AF_UNIX, libc::SOCK_RDM, EPERM, libc::ESOCKTNOSUPPORT),
        (libc::AF_INET, libc::SOCK_STREAM, EPERM, EPERM),
        (libc::AF_TIPC, libc::SOCK_RDM, EPERM, EPERM),
        (libc::AF_VSOCK, libc::SOCK_STREAM, EPERM, EPERM),
    ];
    for &(family, ty, confined, every_unix) in pairs {
        let call = move || {
            let mut sv = [-1 as libc::c_int; 2];
            let sv_ptr = sv.as_mut_ptr() as libc::c_ulong;
            sys(libc::SYS_socketpair, [family as libc::c_ulong, ty as libc::c_ulong, 0, sv_ptr, 0, 0])
        };
        for (name, prog, want) in [("default", &blocked, confined), ("allowUnixSockets", &mediated, confined), ("allowAllUnixSockets", &all_unix, every_unix)] {
            assert_eq!(run_child(Some(prog), call), End::Exited(want), "socketpair({family}, {ty:#x}) under {name}");
        }
    }
}

/// A pipe in the child; `Err(code)` if it could not be made.
fn child_pipe() -> Result<[libc::c_int; 2], i32> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two ints into `fds`.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc == 0 { Ok(fds) } else { Err(CHILD_BROKEN) }
}

fn ioctl_on_pipe(request: libc::c_ulong) -> i32 {
    match child_pipe() {
        Ok([r, _w]) => {
            let mut buf = [0u8; 64];
            sys(
                libc::SYS_ioctl,
                [
                    r as libc::c_ulong,
                    request,
                    buf.as_mut_ptr() as libc::c_ulong,
                    0,
                    0,
                    0,
                ],
            )
        }
        Err(code) => code,
    }
}

#[test]
fn ioctl_tiocsti_and_tioclinux_are_denied_others_pass() {
    // On a pipe, terminal ioctls are ENOTTY.
    assert_denied(
        "ioctl(TIOCSTI)",
        || ioctl_on_pipe(libc::TIOCSTI),
        libc::ENOTTY,
    );
    assert_denied(
        "ioctl(TIOCLINUX)",
        || ioctl_on_pipe(libc::TIOCLINUX),
        libc::ENOTTY,
    );
    // The kernel truncates the request to 32 bits, and so does the filter.
    assert_denied(
        "ioctl(1<<32 | TIOCSTI)",
        || ioctl_on_pipe((1 << 32) | libc::TIOCSTI),
        libc::ENOTTY,
    );
    let prog = deny_prog();
    let fionread = || ioctl_on_pipe(libc::FIONREAD);
    assert_eq!(run_child(Some(&prog), fionread), End::Exited(0));
    let winsz = || ioctl_on_pipe(libc::TIOCGWINSZ);
    assert_eq!(run_child(Some(&prog), winsz), End::Exited(libc::ENOTTY));
}

// ----- behaviour: allowed --------------------------------------------------------------

#[test]
fn getpid_works() {
    let prog = deny_prog();
    assert_eq!(
        run_child(Some(&prog), || sys(libc::SYS_getpid, [0; 6])),
        End::Exited(0)
    );
}

#[test]
fn plain_fork_still_works() {
    let prog = deny_prog();
    let fork = || {
        // SAFETY: a fork through the raw clone syscall; the grandchild only calls _exit.
        let pid = unsafe {
            libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0)
        };
        if pid == 0 {
            // SAFETY: leave the grandchild at once.
            unsafe { libc::_exit(42) }
        }
        if pid < 0 {
            return errno();
        }
        let mut status = 0;
        // SAFETY: wait for our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if rc == pid as libc::pid_t
            && libc::WIFEXITED(status)
            && libc::WEXITSTATUS(status) == 42
        {
            0
        } else {
            CHILD_BROKEN
        }
    };
    assert_eq!(run_child(Some(&prog), fork), End::Exited(0));
}

const HELPER_ENV: &str = "SBX_SECCOMP_TEST_HELPER";

/// Runs only in the re-executed test binary (see the next test), under the filter.
#[test]
fn helper_threads_and_spawn_under_filter() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    // The filter is there: clone3 is ENOSYS.
    assert_eq!(sys(libc::SYS_clone3, [0; 6]), libc::ENOSYS);
    // pthread_create and posix_spawn try clone3 and fall back to clone.
    let handle = std::thread::spawn(|| 7);
    assert_eq!(handle.join().expect("join"), 7);
    let status = std::process::Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .status()
        .expect("spawn /bin/sh");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn threads_and_process_spawn_work_under_filter_across_exec() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(HELPER_ENV).is_some() {
        return;
    }
    let prog = deny_prog();
    let here = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    let name = format!("{here}::helper_threads_and_spawn_under_filter");
    let mut cmd = std::process::Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([name.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, "1");
    // SAFETY: the hook runs between fork and exec; install is async-signal-safe (no
    // allocation), and the error is built from a raw errno without allocating.
    unsafe {
        cmd.pre_exec(move || {
            install(&prog, Listener::None)
                .map(drop)
                .map_err(|_| io::Error::from_raw_os_error(libc::EPERM))
        });
    }
    let out = cmd.output().expect("run the helper");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "helper failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- behaviour: architecture ---------------------------------------------------------

#[test]
#[cfg(target_arch = "x86_64")]
fn x32_syscall_numbers_kill_the_process() {
    let prog = deny_prog();
    let x32_getpid = || sys(i64::from(X32_SYSCALL_BIT) | libc::SYS_getpid, [0; 6]);
    assert_eq!(
        run_child(Some(&prog), x32_getpid),
        End::Signaled(libc::SIGSYS)
    );
    let x32_mount = || {
        sys(
            i64::from(X32_SYSCALL_BIT) | libc::SYS_mount,
            [0, BAD_PTR, BAD_PTR, 0, 0, 0],
        )
    };
    assert_eq!(
        run_child(Some(&prog), x32_mount),
        End::Signaled(libc::SIGSYS)
    );
    // syscall(-1) is not x32: the kernel answers ENOSYS.
    let minus_one = || sys(-1, [0; 6]);
    assert_eq!(run_child(Some(&prog), minus_one), End::Exited(libc::ENOSYS));
}

#[test]
#[cfg(target_arch = "x86_64")]
fn i386_syscalls_kill_the_process() {
    fn int80_getpid() -> i32 {
        let mut eax: i32 = 20; // __NR_getpid on i386
        // SAFETY: `int 0x80` enters the i386 syscall ABI; getpid takes no arguments and
        // the kernel may clobber r8-r11 there.
        unsafe {
            core::arch::asm!(
                "int 0x80",
                inout("eax") eax,
                lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
                options(nostack)
            );
        }
        if eax > 0 { 0 } else { CHILD_BROKEN }
    }
    if run_child(None, int80_getpid) != End::Exited(0) {
        eprintln!("i386_syscalls_kill_the_process: SKIPPED, no IA32 emulation in this kernel");
        return;
    }
    let prog = deny_prog();
    assert_eq!(
        run_child(Some(&prog), int80_getpid),
        End::Signaled(libc::SIGSYS)
    );
}

// ----- behaviour: user notification ----------------------------------------------------

// The listener travels with sbx's own handover functions (monitor::notify).
/// Wait until `fd` is readable, at most `ms` milliseconds.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

#[test]
fn user_notif_hands_mount_to_the_supervisor() {
    let prog = compile(DenyAction::UserNotif).expect("compile");
    let mut pair = [-1; 2];
    // SAFETY: socketpair writes two fds into `pair`.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: errno {}", errno());
    // SAFETY: both fds were just created and are owned here.
    let (parent_sock, child_sock) =
        unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };

    // SAFETY: as in run_child: the child only runs async-signal-safe code and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = match install(&prog, Listener::New) {
            Ok(Some(listener)) => {
                // sendmsg is not in the table, so handing over the fd is not notified.
                // send_listener closes our copy: the sandboxed side must
                // not keep the listener.
                if crate::sys::send_listener(&child_sock, listener).is_ok() {
                    let mount = sys(libc::SYS_mount, [0, BAD_PTR, BAD_PTR, 0, 0, 0]);
                    // clone3 is never notified (nobody answers it here).
                    if sys(libc::SYS_clone3, [0; 6]) == libc::ENOSYS {
                        mount
                    } else {
                        CHILD_BROKEN
                    }
                } else {
                    CHILD_BROKEN
                }
            }
            _ => CHILD_INSTALL_FAILED,
        };
        // SAFETY: see run_child.
        unsafe { libc::_exit(code) }
    }
    drop(child_sock);

    let kill_and_fail = |why: &str| -> ! {
        // SAFETY: kill our own child by its pid, then reap it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let end = wait(pid);
        panic!("{why} (child: {end:?})");
    };
    if !readable(parent_sock.as_raw_fd(), 10_000) {
        kill_and_fail("no listener fd from the child");
    }
    let Ok(listener) = crate::sys::recv_listener(&parent_sock) else {
        kill_and_fail("could not receive the listener fd");
    };
    if !readable(listener.as_raw_fd(), 10_000) {
        kill_and_fail("no notification");
    }
    // SAFETY: seccomp_notif is plain data, and the kernel requires it zeroed for RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV writes one seccomp_notif into `req`.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    };
    if rc != 0 {
        kill_and_fail("SECCOMP_IOCTL_NOTIF_RECV failed");
    }
    assert_eq!(i64::from(req.data.nr), libc::SYS_mount);
    assert_eq!(req.pid, pid as u32);
    assert_eq!(req.data.arch, native_arch().expect("native arch").1);
    let mut id = req.id;
    // SAFETY: NOTIF_ID_VALID reads one u64.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id,
        )
    };
    assert_eq!(rc, 0, "notification id no longer valid");
    let mut resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 0,
        error: -libc::EPERM,
        flags: 0,
    };
    // SAFETY: NOTIF_SEND reads one seccomp_notif_resp.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        )
    };
    if rc != 0 {
        kill_and_fail("SECCOMP_IOCTL_NOTIF_SEND failed");
    }
    assert_eq!(wait(pid), End::Exited(libc::EPERM));
}

#[test]
fn command_rules_notify_every_exec_in_the_prologue() {
    let options = FilterOptions { block_unix_sockets: true, mediate_unix_connect: true, mediate_exec: true, ..FilterOptions::default() };
    assert!(options.notifies() && FilterOptions { mediate_unix_connect: false, ..options }.notifies());
    let prologue = prologue_with(&options).expect("prologue_with");
    let notify = |nr: libc::c_long| [jump(BPF_JEQ_K, u32::try_from(nr).expect("nr"), 0, 1), stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF)];
    let tail: Vec<_> = [notify(libc::SYS_connect), notify(libc::SYS_execve), notify(libc::SYS_execveat)].concat();
    assert_eq!(prologue[prologue.len() - 6..], tail[..]);
    let without = prologue_with(&FilterOptions { mediate_exec: false, ..options }).expect("prologue_with");
    assert_eq!(without.len(), prologue.len() - 4);
}

/// Without namespaces (`--no-namespaces`): IP sockets are refused unless the network is
/// unfiltered, and the host's System V and POSIX message-queue IPC always; Unix stream
/// sockets and everything else stay as the policy has them.
#[test]
fn without_namespaces_ip_sockets_and_host_ipc_are_refused() {
    let base = FilterOptions { block_unix_sockets: true, ..FilterOptions::default() };
    let none = compile_with(DenyAction::Errno, &FilterOptions { shared_host: true, no_ip: true, ..base }).expect("none");
    let unfiltered = compile_with(DenyAction::Errno, &FilterOptions { shared_host: true, ..base }).expect("unfiltered");
    let ns = compile_with(DenyAction::Errno, &base).expect("namespaces");
    let socket = |family: libc::c_int, ty: libc::c_int| move || sys(libc::SYS_socket, [family as libc::c_ulong, ty as libc::c_ulong, 0, 0, 0, 0]);
    // Lookups of keys and names that do not exist (nothing is created on the host): ENOENT
    // from the kernel, EPERM from the filter.
    const KEY: libc::c_ulong = 0x5b8_7e57;
    let shmget = || sys(libc::SYS_shmget, [KEY, 4096, 0, 0, 0, 0]);
    let semget = || sys(libc::SYS_semget, [KEY, 1, 0, 0, 0, 0]);
    let msgget = || sys(libc::SYS_msgget, [KEY, 0, 0, 0, 0, 0]);
    // The raw call takes the name without glibc's leading slash.
    let name = c"sbx-test-no-such-queue";
    let mq_open = move || sys(libc::SYS_mq_open, [name.as_ptr() as libc::c_ulong, libc::O_RDONLY as libc::c_ulong, 0, 0, 0, 0]);
    for (what, prog, inet, ipc) in [("none", &none, libc::EPERM, libc::EPERM), ("unfiltered", &unfiltered, 0, libc::EPERM), ("namespaces", &ns, 0, libc::ENOENT)] {
        for family in [libc::AF_INET, libc::AF_INET6] {
            for ty in [libc::SOCK_STREAM, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::SOCK_RAW] {
                // A raw socket needs CAP_NET_RAW, which the kernel refuses without the filter.
                let want = if ty == libc::SOCK_RAW && inet == 0 { None } else { Some(inet) };
                if let Some(want) = want {
                    assert_eq!(run_child(Some(prog), socket(family, ty)), End::Exited(want), "{what}: socket({family}, {ty:#x})");
                }
            }
        }
        assert_eq!(run_child(Some(prog), socket(libc::AF_UNIX, libc::SOCK_STREAM)), End::Exited(libc::EPERM), "{what}: the Unix rules stay");
        for (call, f) in [("shmget", &shmget as &dyn Fn() -> i32), ("semget", &semget), ("msgget", &msgget)] {
            assert_eq!(run_child(Some(prog), f), End::Exited(ipc), "{what}: {call}");
        }
        assert_eq!(run_child(Some(prog), mq_open), End::Exited(ipc), "{what}: mq_open");
    }
}
