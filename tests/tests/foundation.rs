//! The foundation: `sbx doctor` on this host, exit statuses, and the one
//! clear sentence for each setup error.

use std::process::Command;

use sbx_integration_tests::{As, Workspace, require_root, require_tool, text};

fn doctor_json(ws: &Workspace) -> (serde_json::Value, std::process::Output) {
    let out = ws.sbx(["doctor", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", text(&out)));
    (v, out)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check named {name}: {report:#}"))
}

#[test]
fn doctor_as_root_proves_every_layer_on_this_host() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let (report, out) = doctor_json(&ws);
    assert!(out.status.success(), "{}", text(&out));
    let landlock = check(&report, "landlock");
    assert_eq!(landlock["verdict"], "ok", "{report:#}");
    assert!(landlock["detail"].as_str().unwrap().starts_with("ABI 7"), "{landlock}");
    let seccomp = check(&report, "seccomp");
    assert!(seccomp["detail"].as_str().unwrap().contains("user_notif available"), "{seccomp}");
    assert_eq!(check(&report, "btf")["verdict"], "ok");
    let ebpf = check(&report, "ebpf load+attach");
    assert_eq!(ebpf["verdict"], "ok", "the embedded eBPF object must load and attach here: {ebpf}");
    for ns in ["user namespace", "pid namespace", "net namespace"] {
        assert_eq!(check(&report, ns)["verdict"], "ok", "{ns}");
    }
    // The text form names the same verdicts.
    let human = ws.sbx(["doctor"]).output().unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("ABI 7"), "{human}");
}

#[test]
fn doctor_as_a_user_says_monitoring_is_unavailable_and_fails() {
    require_root!();
    let ws = Workspace::new(As::User);
    let (report, out) = doctor_json(&ws);
    assert!(!out.status.success(), "the eBPF check cannot pass unprivileged: {}", text(&out));
    let ebpf = check(&report, "ebpf load+attach");
    assert_eq!(ebpf["verdict"], "fail");
    assert_eq!(ebpf["consequence"], "monitoring unavailable: not root");
    assert!(ebpf["fix"].as_str().unwrap().contains("sudo"), "{ebpf}");
    // Landlock and seccomp do not need privileges.
    assert_eq!(check(&report, "landlock")["verdict"], "ok");
}

#[test]
fn exit_status_is_the_commands_own() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let code = |script: &str| ws.run_sh(script).status.code();
        assert_eq!(code("exit 0"), Some(0), "{who:?}");
        assert_eq!(code("exit 7"), Some(7), "{who:?}");
        assert_eq!(code("kill -TERM $$"), Some(128 + 15), "{who:?}");
        assert_eq!(code("kill -KILL $$"), Some(128 + 9), "{who:?}");
        let out = ws.sbx(["run", "--", "no-such-command-sbx"]).output().unwrap();
        assert_eq!(out.status.code(), Some(127), "{}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-command-sbx: command not found"), "{}", text(&out));
        let script = ws.write("not-executable.sh", "#!/bin/sh\necho hi\n");
        let out = ws.sbx(["run", "--"]).arg(&script).output().unwrap();
        assert_eq!(out.status.code(), Some(126), "{}", text(&out));
    }
}

#[test]
fn stdout_and_stdin_are_the_commands() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let out = ws
        .sbx(["run", "--", "/bin/sh", "-c", "read line; echo \"got $line\"; echo err >&2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(b"hello\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n", "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
}

#[test]
fn sigterm_to_sbx_reaches_the_command() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let mut child = ws
        .sbx(["run", "--", "/bin/sh", "-c", "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn a_missing_bwrap_is_one_sentence_and_125() {
    require_root!();
    let ws = Workspace::new(As::Root);
    // A bwrap on PATH does not stand in for a missing or untrusted one: sbx runs in a
    // mount namespace where /usr/bin/bwrap (and so /bin/bwrap) is a mode-0666 device.
    let bin = tempfile::tempdir_in("/var/tmp").unwrap();
    std::os::unix::fs::symlink("/usr/bin/true", bin.path().join("bwrap")).unwrap();
    let out = Command::new("/usr/bin/bwrap")
        .args(["--dev-bind", "/", "/", "--ro-bind", "/dev/null", "/usr/bin/bwrap", "--"])
        .arg(sbx_integration_tests::sbx_bin())
        .args(["run", "--", "true"])
        .current_dir(ws.path())
        .env("PATH", bin.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("sbx: no bubblewrap that only root can change was found (/usr/bin/bwrap is writable by everyone (mode 666); /usr/local/bin"), "{stderr}");
    assert!(stderr.ends_with("): install it with `apt-get install bubblewrap` (sbx never runs a bwrap found through $PATH)\n"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_bad_flag_is_one_sentence_and_125() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["run", "--frobnicate", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "sbx: unexpected argument '--frobnicate' found (see `sbx --help`)\n");
    let out = ws.sbx(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("sbx: no command given"), "{}", text(&out));
    let out = ws.sbx(["run", "-p", "3128", "--", "touch", "ran"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sbx: invalid value '3128' for '--port <[ADDR:]PORT>': 3128 is the port of sbx's HTTP proxy inside the sandbox (see `sbx --help`)\n"
    );
    assert!(!ws.path().join("ran").exists());
    // -p of a port the policy relays to the host would lead back to itself.
    ws.write("sbx.jsonc", r#"{ "network": { "allowLocalOutboundPorts": [5433] } }"#);
    let out = ws.sbx(["run", "-p", "5433", "--", "touch", "ran"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sbx: -p 5433: port 5433 is also in network.allowLocalOutboundPorts, whose relay inside the sandbox would lead back to it\n"
    );
    assert!(!ws.path().join("ran").exists());
}

#[test]
fn a_bad_config_names_the_key_and_line_and_runs_nothing() {
    require_root!();
    let ws = Workspace::new(As::Root);
    ws.write("sbx.jsonc", "{\n  // comment\n  \"filesystem\": {\n    \"alowWrite\": [\"/x\"]\n  }\n}\n");
    let out = ws.run_sh("touch ran");
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sbx.jsonc:4:5: unknown key \"filesystem.alowWrite\""), "{err}");
    assert!(!ws.path().join("ran").exists(), "nothing may run with a bad config");
}

#[test]
fn bench_tools_exist() {
    // The startup bench compares against bare bwrap and true: both must exist.
    require_tool("bwrap");
    require_tool("true");
}

#[test]
fn log_has_session_start_and_end_with_enforcement() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let out = ws.sbx(["run", "--log"]).arg(&log).args(["--", "/bin/sh", "-c", "exit 5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let text_log = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text_log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // As root `sbx run --log` traces too: process events come between.
    assert_eq!(lines[0]["type"], "session_start");
    assert_eq!(lines[0]["v"], 1);
    assert_eq!(lines[0]["seq"], 0);
    assert_eq!(lines[0]["enforcement"]["landlock"]["enforced"], "full");
    assert_eq!(lines[0]["enforcement"]["landlock"]["abi"], 7);
    assert_eq!(lines[0]["enforcement"]["seccomp"]["enforced"], true);
    assert_eq!(lines[0]["enforcement"]["netns"]["enforced"], true);
    assert_eq!(lines[0]["command"], serde_json::json!(["/bin/sh", "-c", "exit 5"]));
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "session_end");
    assert_eq!(end["seq"], lines.len() - 1);
    assert_eq!(end["exit_code"], 5);
    assert!(end["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines.iter().any(|l| l["type"] == "process" && l["action"] == "exec" && l["comm"] == "sh"), "{text_log}");
}

#[test]
fn log_is_complete_when_the_command_is_killed() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let out = ws.sbx(["run", "--log"]).arg(&log).args(["--", "/bin/sh", "-c", "kill -KILL $$"]).output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    let last: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "session_end");
    assert_eq!(last["exit_code"], 137);
}

#[test]
fn require_passes_here_and_an_unwritable_log_is_125() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["run", "--require", "landlock,seccomp,netns", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "no warning when every layer is enforced: {}", text(&out));
    let out = ws.sbx(["run", "--require", "selinux", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let out = ws.sbx(["run", "--log", "/nonexistent-dir/x.jsonl", "--", "touch", "ran"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    // One sentence, the cause said once.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sbx: cannot open the log file /nonexistent-dir/x.jsonl (--log): No such file or directory (os error 2)\n"
    );
    assert!(!ws.path().join("ran").exists());
}

#[test]
fn config_commands() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["templates"]).output().unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    for t in ["default", "code", "code-strict", "local-dev-server"] {
        assert!(listed.lines().any(|l| l.split_whitespace().next() == Some(t)), "{t} missing: {listed}");
    }
    let out = ws.sbx(["config", "init"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(ws.path().join("sbx.jsonc").is_file());
    let again = ws.sbx(["config", "init"]).output().unwrap();
    assert_eq!(again.status.code(), Some(125), "init must not overwrite");
    let out = ws.sbx(["config", "show"]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("{}/sbx.jsonc", ws.path().display())), "{shown}");
    let out = ws.sbx(["config", "show", "-t", "code-strict"]).output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("\"defaultDenyRead\": true"), "{shown}");
    assert!(shown.contains("code"), "{shown}");
}
