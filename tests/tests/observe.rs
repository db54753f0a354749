//! Observation: the kernel tracer, the event schema and the audit log, from
//! real sandboxes.

use std::{path::Path, process::Command};

use sbx_integration_tests::{As, Workspace, assert_golden, normalize_event, read_log, require_root, require_tool, text};

fn monitor(ws: &Workspace, log: &Path, script: &str) -> std::process::Output {
    ws.sbx(["monitor", "--no-tui", "--log"]).arg(log).args(["--", "/bin/sh", "-c", script]).output().unwrap()
}

fn of_type<'a>(events: &'a [serde_json::Value], ty: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == ty).collect()
}

#[test]
fn scripted_denials_match_the_golden_log() {
    require_root!();
    let ws = Workspace::new(As::Root);
    ws.write("sbx.jsonc", r#"{ "filesystem": { "denyRead": ["./secret", "./token"] }, "limits": { "memory": "4G" } }"#);
    std::fs::create_dir(ws.path().join("secret")).unwrap();
    ws.write("token", "TOPSECRET\n");
    let log = ws.path().join("audit.jsonl");
    // Relative requests are resolved against the base directory the kernel
    // program captured at the call (the shell's cwd after `cd`).
    let script = "echo x > /etc/sbx-golden; mkdir /usr/sbx-golden; cd /etc && true > ./rel-golden; cd \"$OLDPWD\"; \
                  echo y > /proc/sys/kernel/core_pattern; unshare -U true; true > secret/x; cat token; \
                  curl -s -x $HTTP_PROXY http://unlisted.example/; sleep 0.5; exit 3";
    let out = monitor(&ws, &log, script);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let events = read_log(&log);
    // Process events carry argv read from /proc, which a process that has
    // already exited cannot give: they are checked apart from the golden.
    let stable: Vec<_> = events.iter().filter(|e| e["type"] != "process").map(|e| normalize_event(e, ws.path())).collect();
    let mut stable = stable;
    if let Some(end) = stable.last_mut() {
        end["counts"].as_object_mut().unwrap().remove("process");
    }
    // Each source (kernel tracer, seccomp supervisor) keeps its own order,
    // but the two interleave as they arrive: compare the middle as a set.
    let n = stable.len();
    stable[1..n - 1].sort_by_key(|e| e.to_string());
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i, "seq must be gapless: {e}");
        assert_eq!(e["v"], 1);
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
    assert_golden("monitor_denials.jsonl", &stable);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sbx: 8 denials: 5 mount (create /etc/sbx-golden, create /usr/sbx-golden, create /etc/rel-golden, ...), 1 landlock (create /proc/sys/kernel/core_pattern), 1 proxy (unlisted.example), 1 seccomp (unshare(CLONE_NEWUSER))"),
        "{stderr}"
    );
}

#[test]
fn processes_are_followed_through_fork_exec_double_fork_and_threads() {
    require_root!();
    require_tool("python3");
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let script = r#"
        (sh -c 'sh -c "touch /etc/sbx-daemon" &' ) ; sleep 0.3
        python3 -c '
import threading, os
def w():
    try: open("/etc/sbx-thread", "w")
    except OSError: pass
t = threading.Thread(target=w); t.start(); t.join()
print(os.getpid())'
    "#;
    let out = monitor(&ws, &log, script);
    assert!(out.status.success(), "{}", text(&out));
    let py_pid: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let events = read_log(&log);
    let denials = of_type(&events, "denial");
    let daemon = denials.iter().find(|d| d["path"] == "/etc/sbx-daemon").unwrap_or_else(|| panic!("double-forked: {denials:#?}"));
    assert_eq!(daemon["comm"], "touch");
    let thread = denials.iter().find(|d| d["path"] == "/etc/sbx-thread").unwrap_or_else(|| panic!("thread: {denials:#?}"));
    assert_ne!(thread["tid"], thread["pid"], "the denial came from a second thread");
    // The pid printed inside is in the sandbox's pid namespace; the event's
    // is the host's: they differ, and the event's process exec'd python3.
    let _ = py_pid;
    let execs = of_type(&events, "process");
    assert!(execs.iter().any(|p| p["action"] == "exec" && p["pid"] == thread["pid"] && p["comm"].as_str().unwrap().starts_with("python3")), "{execs:#?}");
}

#[test]
fn unrelated_processes_never_appear() {
    require_root!();
    let user = sbx_integration_tests::test_user();
    // A busy process outside the sandbox hitting EACCES all the time.
    let mut busy = Command::new("setpriv")
        .args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--clear-groups", "/bin/sh", "-c"])
        .arg("while :; do cat /etc/shadow 2>/dev/null; done")
        .spawn()
        .unwrap();
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let out = monitor(&ws, &log, "touch /etc/sbx-mine; sleep 0.5");
    busy.kill().unwrap();
    busy.wait().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let events = read_log(&log);
    let denials = of_type(&events, "denial");
    assert_eq!(denials.len(), 1, "only the sandbox's own denial: {denials:#?}");
    assert_eq!(denials[0]["path"], "/etc/sbx-mine");
    assert!(!events.iter().any(|e| e["path"] == "/etc/shadow"));
}

#[test]
fn a_tiny_ring_buffer_reports_its_losses() {
    require_root!();
    require_tool("cc");
    let ws = Workspace::new(As::Root);
    ws.write("burst.c", "#include <fcntl.h>\nint main(void){for(int i=0;i<20000;i++){open(\"/etc/sbx-burst\",O_WRONLY|O_CREAT,0644);}return 0;}\n");
    assert!(Command::new("cc").args(["-O2", "-o"]).arg(ws.path().join("burst")).arg(ws.path().join("burst.c")).status().unwrap().success());
    let log = ws.path().join("audit.jsonl");
    let out = ws
        .sbx(["monitor", "--no-tui", "--ring-bytes", "4096", "--log"])
        .arg(&log)
        .args(["--", "./burst"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let events = read_log(&log);
    let seen = of_type(&events, "denial").iter().filter(|d| d["comm"] == "burst").count() as u64;
    let loss = of_type(&events, "loss");
    assert_eq!(loss.len(), 1, "one loss event: {}", text(&out));
    let lost = loss[0]["count"].as_u64().unwrap();
    assert!(lost > 0);
    let end = events.last().unwrap();
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["lost"], lost);
    // Every attempt is either delivered or counted as lost (plus at most
    // the few exec/exit events that shared the buffer).
    assert!(seen + lost >= 20000 && seen + lost <= 20004, "seen {seen} + lost {lost}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("({lost} events lost)")));
}

#[test]
fn without_privileges_monitor_says_so_and_still_runs() {
    require_root!();
    let ws = Workspace::new(As::User);
    let log = ws.path().join("audit.jsonl");
    let out = monitor(&ws, &log, "unshare -U true; exit 4");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Before the command runs: the limits that need a cgroup, then the tracer.
    let mut lines = stderr.lines();
    assert!(lines.next().unwrap().starts_with("sbx: warning: limits.memory ("), "{stderr}");
    assert!(lines.next().unwrap().starts_with("sbx: monitoring unavailable: the kernel tracer needs root: run sbx with sudo"), "{stderr}");
    let events = read_log(&log);
    assert_eq!(events.first().unwrap()["type"], "session_start");
    assert_eq!(events.last().unwrap()["type"], "session_end");
    assert_eq!(events.last().unwrap()["exit_code"], 4);
}

/// Issue 17, 1: unprivileged, three refused file operations used to end with "sbx: no
/// denials" and a log that looked like root's. Now the summary says file denials were not
/// observed and why, session_start records it, and `policy suggest` says the log lacks them.
#[test]
fn without_the_tracer_nothing_claims_no_denials() {
    require_root!();
    let ws = Workspace::new(As::User);
    let log = ws.path().join("audit.jsonl");
    let out = ws
        .sbx(["run", "--memory", "off", "--log", "audit.jsonl", "--", "sh", "-c", "cat ~/.ssh/id_rsa; echo > ~/.bashrc; echo > /etc/z; true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("no denials"), "{stderr}");
    let why = "the kernel tracer needs root: run sbx with sudo (the command still runs as you)";
    assert!(stderr.contains(&format!("sbx: 0 denials seen; file denials were not observed: {why}\n")), "{stderr}");
    let start = read_log(&log).into_iter().find(|e| e["type"] == "session_start").unwrap();
    assert_eq!(start["observation"], serde_json::json!({"kernel_tracer": false, "reason": why}), "{start}");
    let out = ws.sbx(["policy", "suggest", "--from", "audit.jsonl"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("The log has no kernel denials (file access) from 1 of its sessions: {why}")), "{}", text(&out));
    // As root, with the tracer: observed, and said so in the log.
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let out = ws.sbx(["run", "--log", "audit.jsonl", "--", "sh", "-c", "echo > /etc/z; true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("not observed"), "{}", text(&out));
    let start = read_log(&log).into_iter().find(|e| e["type"] == "session_start").unwrap();
    assert_eq!(start["observation"], serde_json::json!({"kernel_tracer": true}), "{start}");
}

#[test]
fn the_log_is_complete_when_sbx_is_terminated() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let mut child = ws
        .sbx(["monitor", "--no-tui", "--log"])
        .arg(&log)
        .args(["--", "/bin/sh", "-c", "touch /etc/sbx-before; echo ready; sleep 30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out));
    let events = read_log(&log);
    assert!(events.iter().any(|e| e["type"] == "denial" && e["path"] == "/etc/sbx-before"), "{events:#?}");
    let end = events.last().unwrap();
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["exit_code"], 143);
}

/// Regression: a session killed with SIGKILL cannot remove its cgroup; the
/// next session removes such leftovers (empty, and their sbx is gone).
#[test]
fn leftover_session_cgroups_are_removed() {
    require_root!();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let root = mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount (see sbx doctor)");
    // A pid that is surely gone: a child we started and reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = root.join(format!("sbx-{dead}-1"));
    std::fs::create_dir(&stale).unwrap();
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["monitor", "--no-tui", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let gone = !stale.exists();
    let _ = std::fs::remove_dir(&stale);
    assert!(gone, "the leftover cgroup {} was not removed", stale.display());
}
