//! seccomp user notification: every blocked syscall becomes one readable
//! denial event, and the caller still sees EPERM.

use std::collections::BTreeMap;

use sbx_integration_tests::{As, Workspace, read_log, require_root, require_tool, text};

#[test]
fn each_blocked_call_is_one_decoded_event_and_eperm() {
    require_root!();
    require_tool("cc");
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("blocked.c", include_str!("../fixtures/blocked.c"));
        let log = ws.path().join("audit.jsonl");
        let out = ws
            .sbx(["monitor", "--no-tui", "--log"])
            .arg(&log)
            .args(["--", "/bin/sh", "-c", "cc -O0 -o blocked blocked.c && ./blocked"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        // The program saw EPERM for each (ENOSYS for clone3, which is never notified).
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(sbx_integration_tests::assert_blocked_calls(&stdout, who), 44, "{who:?}: {stdout}");
        let events = read_log(&log);
        let seccomp: Vec<_> = events.iter().filter(|e| e["type"] == "denial" && e["source"] == "seccomp").collect();
        let mut per_syscall: BTreeMap<String, usize> = BTreeMap::new();
        for e in &seccomp {
            assert_eq!(e["errno"], "EPERM");
            assert_eq!(e["comm"], "blocked", "{e}");
            *per_syscall.entry(e["syscall"].as_str().unwrap().to_string()).or_default() += 1;
        }
        // Exactly one event per blocked call (ioctl twice: TIOCSTI, TIOCLINUX).
        for (name, n) in &per_syscall {
            let expected = if name == "ioctl" { 2 } else { 1 };
            assert_eq!(*n, expected, "{who:?}: {name} gave {n} events: {per_syscall:?}");
        }
        assert_eq!(seccomp.len(), 41, "{who:?}: {per_syscall:?}");
        let call = |syscall: &str| -> Vec<String> {
            seccomp
                .iter()
                .filter(|e| e["syscall"] == syscall)
                .map(|e| e["detail"]["call"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(call("mount"), [r#"mount("tmpfs", "/tmp", "tmpfs", 0, NULL)"#]);
        assert_eq!(call("unshare"), ["unshare(CLONE_NEWUSER)"]);
        assert_eq!(call("ptrace"), ["ptrace(PTRACE_ATTACH, 1 [bwrap])"]);
        assert_eq!(call("ioctl"), ["ioctl(0, TIOCSTI)", "ioctl(0, TIOCLINUX)"]);
        let mount = seccomp.iter().find(|e| e["syscall"] == "mount").unwrap();
        assert_eq!(mount["path"], "/tmp");
        // The summary names them too.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("41 seccomp ("), "{stderr}");
    }
}

#[test]
fn plain_run_without_a_log_uses_errno_and_no_supervisor() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let out = ws.run_sh("unshare -U true 2>&1; true");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Operation not permitted"), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("denial"), "no summary without a log: {}", text(&out));
}

/// Issue 18, point 2: glibc looks users and hosts up through nscd first (socket(AF_UNIX) and
/// a connect to its socket); that probe, and a connect to a socket path that is not there,
/// are no denial: the log of a session of `id`, `getent passwd` and such connects holds none.
#[test]
fn name_lookups_and_absent_socket_paths_are_no_denial() {
    require_root!();
    require_tool("python3");
    require_tool("getent");
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let log = ws.path().join("audit.jsonl");
        let script = r#"id -un >/dev/null && getent passwd root >/dev/null && python3 - <<'PY'
import socket
for path in ("/var/run/nscd/socket", "/run/nscd/socket", "/tmp/absent.sock"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print("connected", path)
    except OSError as e:
        print(e.strerror)
PY"#;
        let out = ws.sbx(["monitor", "--no-tui", "--log"]).arg(&log).args(["--", "/bin/sh", "-c", script]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "No such file or directory\n".repeat(3), "{who:?}: {}", text(&out));
        let denials: Vec<_> = read_log(&log).into_iter().filter(|e| e["type"] == "denial").collect();
        assert!(denials.is_empty(), "{who:?}: {denials:?}");
    }
}
