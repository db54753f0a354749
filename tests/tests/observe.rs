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

/// `sbx doctor`'s line on the pinned tracer.
fn pins_line(ws: &Workspace) -> String {
    let out = ws.sbx(["doctor"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    said.lines().find(|l| l.contains("tracer pins")).unwrap_or_else(|| panic!("{}", text(&out))).to_owned()
}

/// The pinned tracer's directory and its programs' ids, as `sbx doctor` reports them.
fn pinned_tracer(ws: &Workspace) -> (std::path::PathBuf, Vec<u32>) {
    let line = pins_line(ws);
    let rest = line.split("loaded and pinned at ").nth(1).unwrap_or_else(|| panic!("not pinned: {line}"));
    let (dir, rest) = rest.split_once(" (program ids ").unwrap();
    let ids = rest.split(')').next().unwrap().split(", ").map(|i| i.parse().unwrap()).collect();
    (dir.into(), ids)
}

/// Serialises the tests that read or remove the pins (one removes them to race the first load).
static PINS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The tracer slot (`/run/sbx/tracer-slots/N`) process `pid` holds open.
fn slot_of(pid: u32) -> std::path::PathBuf {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .find(|target| target.starts_with("/run/sbx/tracer-slots/"))
        .unwrap_or_else(|| panic!("sbx {pid} holds no tracer slot"))
}

/// Whether the slot's lock is free now (taken and released at once).
fn slot_is_free(slot: &Path) -> bool {
    let file = std::fs::File::open(slot).unwrap();
    // SAFETY: flock on a descriptor we own; closing it releases the lock.
    unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Which processes hold links (attachments) of the programs `ids`: (pid, comm) per link.
fn link_holders(ids: &[u32]) -> Vec<(u32, String)> {
    let mut holders = Vec::new();
    for proc in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fdinfo")) else { continue };
        for fd in fds.flatten() {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(str::trim).map(str::to_owned);
            if field("link_type:").as_deref() == Some("raw_tracepoint")
                && field("prog_id:").and_then(|p| p.parse().ok()).is_some_and(|p| ids.contains(&p))
            {
                let comm = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default().trim().to_owned();
                holders.push((pid, comm));
            }
        }
    }
    holders
}

/// Starts `sbx monitor` on `script`, which prints `ready` once running, and waits for it.
fn monitor_running(ws: &Workspace, log: &Path, script: &str) -> std::process::Child {
    let mut child = ws
        .sbx(["monitor", "--no-tui", "--log"])
        .arg(log)
        .args(["--", "/bin/sh", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    child
}

/// Issue 22: two sessions at once, each making denials and execs while the other runs: each
/// log has its own and nothing of the other's (each session has its own ring buffer and its
/// own links, whose cookie is its cgroup).
#[test]
fn two_concurrent_sessions_never_see_each_others_events() {
    require_root!();
    let ws = Workspace::new(As::Root);
    // Each announces itself, waits (at most 10 s) for the other, makes its denials, then
    // waits for the other to finish its own.
    let script = |me: &str, other: &str| {
        format!(
            "touch started-{me}; i=0; while [ ! -e started-{other} ]; do i=$((i+1)); [ $i -gt 1000 ] && exit 7; sleep 0.01; done; \
             n=0; while [ $n -lt 40 ]; do n=$((n+1)); touch /etc/sbx-{me}-$n 2>/dev/null; /bin/echo {me} > /dev/null; done; \
             touch done-{me}; i=0; while [ ! -e done-{other} ]; do i=$((i+1)); [ $i -gt 1000 ] && exit 7; sleep 0.01; done"
        )
    };
    let (log_a, log_b) = (ws.path().join("a.jsonl"), ws.path().join("b.jsonl"));
    let a = ws.sbx(["monitor", "--no-tui", "--log"]).arg(&log_a).args(["--", "/bin/sh", "-c", &script("a", "b")]).spawn().unwrap();
    let b = ws.sbx(["monitor", "--no-tui", "--log"]).arg(&log_b).args(["--", "/bin/sh", "-c", &script("b", "a")]).output().unwrap();
    let a = a.wait_with_output().unwrap();
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    for (me, other, log) in [("a", "b", &log_a), ("b", "a", &log_b)] {
        let events = read_log(log);
        let denials = of_type(&events, "denial");
        let mine = denials.iter().filter(|d| d["path"].as_str().is_some_and(|p| p.starts_with(&format!("/etc/sbx-{me}-")))).count();
        assert_eq!(mine, 40, "session {me} saw its 40 denials: {denials:#?}");
        let foreign = denials.iter().filter(|d| d["path"].as_str().is_some_and(|p| p.starts_with(&format!("/etc/sbx-{other}-")))).count();
        assert_eq!(foreign, 0, "session {me} saw none of {other}'s denials: {denials:#?}");
        // Each session's echo execs are its own 40 (argv is read from /proc and may be
        // missing for one that already exited, so they are counted by comm).
        let execs = of_type(&events, "process");
        let echoes = execs.iter().filter(|p| p["action"] == "exec" && p["comm"] == "echo").count();
        assert_eq!(echoes, 40, "session {me}'s own 40 execs of echo, no more: {execs:#?}");
        assert!(!execs.iter().any(|p| p["argv"] == serde_json::json!(["/bin/echo", other])), "{execs:#?}");
    }
}

/// Issue 22: the programs are loaded once and pinned in a directory only root can reach;
/// a later session reuses them; they are attached only through the sessions' own links,
/// which no other process holds (the sandbox never inherits them) and which go with the
/// session.
#[test]
fn the_tracer_is_pinned_for_root_only_reused_and_attached_only_by_sessions() {
    require_root!();
    let _pins = PINS.lock().unwrap_or_else(|e| e.into_inner());
    use std::os::unix::fs::MetadataExt as _;
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["monitor", "--no-tui", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (dir, ids) = pinned_tracer(&ws);
    assert_eq!(ids.len(), 3, "three programs pinned: {ids:?}");
    let root = dir.parent().unwrap();
    let meta = std::fs::symlink_metadata(root).unwrap();
    assert!(meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o777 == 0o700, "{} is root's, 0700: {meta:?}", root.display());
    // The unprivileged user can neither list the pins nor reach one.
    let user = sbx_integration_tests::test_user();
    for target in [root.to_path_buf(), dir.join("SESSIONS")] {
        let out = Command::new("setpriv")
            .args(["--reuid", &user.uid.to_string(), "--regid", &user.gid.to_string(), "--clear-groups", "stat"])
            .arg(&target)
            .output()
            .unwrap();
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{}: {}", target.display(), text(&out));
    }
    // Reused: the next session loads nothing.
    let out = ws.sbx(["monitor", "--no-tui", "--", "true"]).env("SBX_LOG", "sbx::session=debug").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("(programs loaded now: false)"), "{}", text(&out));
    // While a session runs, its sbx holds its three links; nothing but sbx processes
    // (this test's and concurrent tests' sessions) holds any.
    let log = ws.path().join("audit.jsonl");
    let child = monitor_running(&ws, &log, "echo ready; sleep 1");
    let sbx_pid = child.id();
    let holders = link_holders(&ids);
    assert_eq!(holders.iter().filter(|(p, _)| *p == sbx_pid).count(), 3, "{holders:?}");
    assert!(holders.iter().all(|(_, comm)| comm == "sbx"), "only sbx holds the links: {holders:?}");
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!link_holders(&ids).iter().any(|(p, _)| *p == sbx_pid));
}

/// Issue 22, as an attacker: a command sandboxed by root (root in its user namespace) tries
/// to remove, replace or add pins, and to take a tracer slot; the pins and the slots are
/// untouched afterwards.
#[test]
fn a_sandboxed_command_cannot_touch_the_pins_or_the_slots() {
    require_root!();
    let _pins = PINS.lock().unwrap_or_else(|e| e.into_inner());
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["monitor", "--no-tui", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (dir, ids) = pinned_tracer(&ws);
    let script = format!(
        "rm -rf {d}/* {d}; mkdir {root}/x; touch {d}/y; mv {d} {root}/z; rm -f /run/sbx/tracer-slots/0;          mount -t bpf bpf /sys/fs/bpf; exec 3>/run/sbx/tracer-slots/0; echo done",
        d = dir.display(),
        root = dir.parent().unwrap().display()
    );
    let out = ws.sbx(["run", "--", "/bin/sh", "-c", &script]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("done") || !out.status.success(), "{}", text(&out));
    assert_eq!(pinned_tracer(&ws), (dir.clone(), ids), "the same programs, pinned at the same place");
    let names: Vec<String> = std::fs::read_dir(dir.parent().unwrap()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 1, "nothing added beside the pins: {names:?}");
    assert!(!dir.join("y").exists());
    let out = monitor(&ws, &ws.path().join("after.jsonl"), "touch /etc/sbx-after-attack; true");
    assert!(out.status.success(), "{}", text(&out));
    assert!(of_type(&read_log(&ws.path().join("after.jsonl")), "denial").iter().any(|d| d["path"] == "/etc/sbx-after-attack"));
}

/// Issue 22: a session killed with SIGKILL cannot clean up: its links go with its
/// descriptors, and so does the lock on its slot, which the next session takes with its
/// ring buffer (emptied of what the killed one left), so nothing grows.
#[test]
fn a_killed_session_leaves_nothing_attached_or_held() {
    require_root!();
    let _pins = PINS.lock().unwrap_or_else(|e| e.into_inner());
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let child = monitor_running(&ws, &log, "echo ready; sleep 30");
    let (_, ids) = pinned_tracer(&ws);
    let pid = child.id();
    let slot = slot_of(pid);
    assert!(!slot_is_free(&slot), "the running session holds its slot");
    assert_eq!(link_holders(&ids).iter().filter(|(p, _)| *p == pid).count(), 3);
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed: {}", text(&out));
    assert!(!link_holders(&ids).iter().any(|(p, _)| *p == pid), "the links went with the process");
    assert!(slot_is_free(&slot), "the slot's lock went with the process");
    // The next session traces as usual (in the lowest free slot, maybe this one, whose
    // ring it empties of what the killed session left).
    let out = monitor(&ws, &log, "touch /etc/sbx-after-kill; true");
    assert!(out.status.success(), "{}", text(&out));
    assert!(of_type(&read_log(&log), "denial").iter().any(|d| d["path"] == "/etc/sbx-after-kill"));
}

/// Issue 22: the first load after the pins are gone is serialised: sessions that start at
/// once all trace, and at most one of them loads the programs (the others wait on the lock,
/// then reuse them).
#[test]
fn sessions_starting_at_once_load_the_tracer_once() {
    require_root!();
    let _pins = PINS.lock().unwrap_or_else(|e| e.into_inner());
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["monitor", "--no-tui", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (dir, _) = pinned_tracer(&ws);
    {
        // Under the loaders' lock, so that no load of a concurrent test is cut in half.
        let root = std::fs::File::open(dir.parent().unwrap()).unwrap();
        // SAFETY: flock on a descriptor we own.
        assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&root), libc::LOCK_EX) }, 0);
        for pin in std::fs::read_dir(&dir).unwrap().flatten() {
            std::fs::remove_file(pin.path()).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
    }
    let sessions: Vec<_> = (0..3)
        .map(|n| {
            let log = ws.path().join(format!("{n}.jsonl"));
            let child = ws
                .sbx(["monitor", "--no-tui", "--log"])
                .arg(&log)
                .args(["--", "/bin/sh", "-c", &format!("touch /etc/sbx-race-{n}")])
                .env("SBX_LOG", "sbx::session=debug")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (n, log, child)
        })
        .collect();
    let mut loads = 0;
    for (n, log, child) in sessions {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.code() == Some(1) || out.status.success(), "{}", text(&out));
        loads += String::from_utf8_lossy(&out.stderr).matches("(programs loaded now: true)").count();
        let events = read_log(&log);
        assert!(of_type(&events, "denial").iter().any(|d| d["path"] == format!("/etc/sbx-race-{n}")), "session {n} traced: {}", text(&out));
    }
    assert!(loads <= 1, "{loads} sessions loaded the programs");
    assert_eq!(pinned_tracer(&ws).1.len(), 3);
}
