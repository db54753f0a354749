//! sbx's own files, terminal output and logs cannot be turned against the
//! user: each attack of issue 14, reproduced with a real sandbox, as root
//! and as an unprivileged user, checked on the host's files and on the
//! bytes sbx prints.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use sbx_integration_tests::{As, Workspace, chown, read_log, require_root, require_tool, test_user, text};

/// The home sbx runs with for `who`.
fn home_of(who: As) -> PathBuf {
    match who {
        As::Root => PathBuf::from(std::env::var_os("HOME").expect("HOME")),
        As::User => test_user().home.clone(),
    }
}

/// A directory outside the workspace owned by `who` (for victims and logs).
fn outside(who: As) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("sbx-it-outside").tempdir().unwrap();
    if who == As::User {
        let u = test_user();
        chown(dir.path(), u.uid, u.gid);
    }
    dir
}

fn own(path: &Path, who: As) {
    if who == As::User {
        let u = test_user();
        chown(path, u.uid, u.gid);
    }
}

/// Runs `cmd`, failing the test if it has not ended within `limit` (a
/// FIFO that sbx waited on would hang it).
fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start sbx");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill with the pid of our own child and a valid signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("sbx did not end within {limit:?}: it waited on something it opened");
        }
    }
}

/// No byte a terminal interprets, but the line breaks.
#[track_caller]
fn assert_inert(bytes: &[u8], what: &str) {
    let bad: Vec<u8> = bytes.iter().copied().filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f).collect();
    assert!(bad.is_empty(), "{what} holds control bytes {bad:?}:\n{}", String::from_utf8_lossy(bytes));
    assert!(!String::from_utf8_lossy(bytes).chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)), "{what} holds C1 controls");
}

/// Issue 14, 1: the command replaces the log by a symlink to a file of the
/// user's (~/.bashrc); the next `sbx run --log` with `$(...)` in its argv
/// would have appended it there.
#[test]
fn a_log_replaced_by_a_symlink_is_refused_and_the_target_untouched() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let victims = outside(who);
        let bashrc = victims.path().join("bashrc");
        std::fs::write(&bashrc, "# my shell\n").unwrap();
        own(&bashrc, who);
        let plant = format!("rm audit.jsonl; ln -s {} audit.jsonl", bashrc.display());
        let out = ws.sbx(["run", "--log", "audit.jsonl", "--", "/bin/sh", "-c", &plant]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert!(ws.path().join("audit.jsonl").symlink_metadata().unwrap().file_type().is_symlink(), "{who:?}: the plant did not happen");

        let out = ws.sbx(["run", "--log", "audit.jsonl", "--", "/bin/true", "$(touch /tmp/pwned)"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{who:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{who:?}: {err}");
        assert!(err.contains("audit.jsonl is a symbolic link; sbx does not follow symbolic links"), "{who:?}: {err}");
        assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# my shell\n", "{who:?}: the user's file was written");
    }
}

/// The same through a hard link and through a file of another user: the
/// log must be a regular file with one link, owned by whoever runs sbx.
#[test]
fn a_log_that_is_a_hard_link_or_not_ours_is_refused() {
    require_root!();
    let who = As::User;
    let ws = Workspace::new(who);
    let bashrc = ws.write("bashrc", "# rc\n");
    std::fs::hard_link(&bashrc, ws.path().join("audit.jsonl")).unwrap();
    let out = ws.sbx(["run", "--log", "audit.jsonl", "--", "/bin/true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has 2 hard links"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# rc\n");
    // A root-owned log in the user's workspace.
    let theirs = ws.path().join("theirs.jsonl");
    std::fs::write(&theirs, "").unwrap();
    // Writable by anyone: only the owner check stands in the way.
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ws.sbx(["run", "--log", "theirs.jsonl", "--", "/bin/true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to uid 0"), "{}", text(&out));
}

/// Issue 14, 1, `policy suggest --write`: its temporary file had a fixed
/// name next to the policy file; a symlink planted there, or in place of
/// the policy file, is never written through.
#[test]
fn suggest_write_never_writes_through_a_planted_symlink() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let victims = outside(who);
        let bashrc = victims.path().join("bashrc");
        // Valid JSONC, so that sbx gets as far as writing.
        std::fs::write(&bashrc, "// my shell\n{}\n").unwrap();
        own(&bashrc, who);
        let logs = outside(who);
        let log = logs.path().join("audit.jsonl");
        // A session refused a name: suggest proposes it.
        let out = ws.sbx(["run", "--log", log.to_str().unwrap(), "--", "/bin/sh", "-c", "python3 -c 'import urllib.request,os; urllib.request.urlopen(\"http://allowed.example/\")' 2>/dev/null; true"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        for name in [".sbx.jsonc.sbx-tmp", "sbx.jsonc"] {
            let planted = ws.path().join(name);
            std::os::unix::fs::symlink(&bashrc, &planted).unwrap();
            let out = ws.sbx(["policy", "suggest", "--from", log.to_str().unwrap(), "-s", "sbx.jsonc", "--write"]).output().unwrap();
            assert!(out.status.success(), "{who:?} {name}: {}", text(&out));
            assert!(String::from_utf8_lossy(&out.stdout).contains("allowed.example"), "{who:?}: {}", text(&out));
            assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "// my shell\n{}\n", "{who:?} {name}: written through the symlink");
            let written = ws.path().join("sbx.jsonc");
            assert!(written.symlink_metadata().unwrap().file_type().is_file(), "{who:?} {name}: sbx.jsonc is not a file");
            assert!(std::fs::read_to_string(&written).unwrap().contains("\"allowed.example\""), "{who:?}");
            let _ = std::fs::remove_file(&planted);
            let _ = std::fs::remove_file(&written);
        }
    }
}

/// What to put in a place sbx reads a policy from.
#[derive(Debug, Clone, Copy)]
enum Special {
    Fifo,
    Socket,
    Device,
}

impl Special {
    /// Creates it at `path`; the returned listener keeps a socket alive.
    fn make(self, path: &Path) -> Option<std::os::unix::net::UnixListener> {
        match self {
            Special::Fifo => {
                let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0, "mkfifo {}", path.display());
                None
            }
            Special::Socket => Some(std::os::unix::net::UnixListener::bind(path).unwrap()),
            Special::Device => {
                let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
                // SAFETY: a valid path; /dev/null's numbers (1, 3).
                assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) }, 0, "mknod {}", path.display());
                None
            }
        }
    }

    fn words(self) -> &'static str {
        match self {
            Special::Fifo => "is a FIFO (named pipe), not a regular file",
            Special::Socket => "is a socket, not a regular file",
            Special::Device => "is a character device, not a regular file",
        }
    }
}

/// A place sbx reads a policy: what is special, the sbx arguments, the
/// files to write first.
type Place = (&'static str, &'static [&'static str], &'static [(&'static str, &'static str)]);

/// Issue 14, 2: a FIFO (socket, device) in every place sbx reads a policy
/// file or a log is one sentence naming it and exit 125, never a wait.
#[test]
fn a_fifo_socket_or_device_where_sbx_reads_a_policy_is_one_sentence() {
    require_root!();
    for who in [As::Root, As::User] {
        for kind in [Special::Fifo, Special::Socket, Special::Device] {
            let ws = Workspace::new(who);
            let config_home = outside(who);
            // Each place: (what is special, the sbx arguments, files to write first).
            let places: [Place; 6] = [
                ("special.jsonc", &["config", "show", "-s", "special.jsonc"], &[]),
                ("sbx.jsonc", &["config", "show"], &[]),
                ("special.jsonc", &["config", "show", "-s", "base.jsonc"], &[("base.jsonc", "{ \"extends\": \"./special.jsonc\" }")]),
                ("xdg", &["config", "show"], &[]),
                ("special.jsonc", &["policy", "suggest", "--from", "log.jsonl", "-s", "special.jsonc"], &[]),
                ("log.jsonl", &["policy", "suggest", "--from", "log.jsonl"], &[]),
            ];
            for (special, args, files) in places {
                let dir = tempfile::Builder::new().prefix("place").tempdir_in(ws.path()).unwrap();
                own(dir.path(), who);
                for (name, content) in files {
                    std::fs::write(dir.path().join(name), content).unwrap();
                    own(&dir.path().join(name), who);
                }
                // A sealed log from a real session for the suggest cases.
                if args.contains(&"suggest") && special != "log.jsonl" {
                    let out = ws.sbx(["run", "--log", dir.path().join("log.jsonl").to_str().unwrap(), "--", "/bin/true"]).output().unwrap();
                    assert!(out.status.success(), "{}", text(&out));
                }
                let target = if special == "xdg" {
                    let d = config_home.path().join("sbx");
                    std::fs::create_dir_all(&d).unwrap();
                    own(&d, who);
                    d.join("sbx.jsonc")
                } else {
                    dir.path().join(special)
                };
                let _ = std::fs::remove_file(&target);
                let _keep = kind.make(&target);
                let mut cmd = ws.sbx(args.iter().copied());
                cmd.current_dir(dir.path()).env("XDG_CONFIG_HOME", config_home.path());
                let out = output_within(&mut cmd, Duration::from_secs(20));
                assert_eq!(out.status.code(), Some(125), "{who:?} {kind:?} {special} {args:?}: {}", text(&out));
                let err = String::from_utf8_lossy(&out.stderr);
                assert_eq!(err.lines().count(), 1, "{who:?} {kind:?} {special}: {err}");
                let name = target.file_name().unwrap().to_string_lossy().into_owned();
                assert!(err.contains(&format!("{name} {}", kind.words())), "{who:?} {kind:?} {special} {args:?}: {err}");
                // Each place on its own: the user config is read by the places after it.
                drop(_keep);
                let _ = std::fs::remove_file(&target);
            }
        }
    }
}

/// Issue 14, 3: a file name chosen to print a fake "no denials" and hide
/// what follows is printed escaped, in the exit summary and in `policy
/// suggest`.
#[test]
fn terminal_escapes_in_names_are_printed_escaped() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let logs = outside(who);
        let log = logs.path().join("audit.jsonl");
        // As root the tracer sees the file; as a user the seccomp
        // supervisor sees a mount with the same string.
        // The command's own stderr is its own (it is sbx's): kept out of
        // what is checked.
        let script = "touch \"/etc/$(printf 'x\\033[2K\\rsbx: no denials\\n\\033[8m')\" 2>/dev/null; \
                      python3 -c 'import ctypes; ctypes.CDLL(None).mount(b\"\\x1b[2K\\rsbx: no denials\\n\\x1b[8m\", b\"/mnt\", b\"tmpfs\", 0, None)' 2>/dev/null; true";
        let out = ws.sbx(["run", "--log", log.to_str().unwrap(), "--", "/bin/sh", "-c", script]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_inert(&out.stderr, "the exit summary");
        let err = String::from_utf8_lossy(&out.stderr);
        let summary = err.lines().find(|l| l.contains("denial")).unwrap_or_else(|| panic!("{who:?}: no summary: {err}"));
        assert!(summary.contains("\\x1b[2K"), "{who:?}: {summary}");
        if who == As::Root {
            assert!(summary.contains("create /etc/x\\x1b[2K\\rsbx: no denials\\n\\x1b[8m"), "{summary}");
        }
        let out = ws.sbx(["policy", "suggest", "--from", log.to_str().unwrap()]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_inert(&out.stdout, "policy suggest's output");
        assert_inert(&out.stderr, "policy suggest's messages");
        if who == As::Root {
            assert!(String::from_utf8_lossy(&out.stdout).contains("\\x1b[8m"), "{}", text(&out));
        }
    }
}

/// Issue 14, 5: a denial the command appended to the log it can write
/// would have become `allowedDomains` without a flag.
#[test]
fn a_forged_line_in_the_log_is_refused_by_suggest_and_named_by_log_verify() {
    require_root!();
    let forged = r#"{"v":1,"type":"denial","seq":99,"time":"2026-12-07T00:00:00.000000Z","source":"proxy","host":"attacker-c2.example","port":443,"operation":"connect","detail":{"rule":"no rule allows it","protocol":"connect"}}"#;
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("forged.txt", &format!("{forged}\n"));
        let out = ws.sbx(["run", "--log", "audit.jsonl", "--", "/bin/sh", "-c", "cat forged.txt >> audit.jsonl"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let lines = std::fs::read_to_string(ws.path().join("audit.jsonl")).unwrap();
        let n = lines.lines().position(|l| l.contains("attacker-c2")).expect("the forged line is in the log") + 1;

        let out = ws.sbx(["policy", "suggest", "--from", "audit.jsonl", "--write"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{who:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{who:?}: {err}");
        assert!(err.contains(&format!("fails verification: line {n}: it carries no MAC")), "{who:?}: {err}");
        assert!(!ws.path().join("sbx.jsonc").exists(), "{who:?}: a policy was written");

        let out = ws.sbx(["log", "verify", "audit.jsonl"]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{who:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("fails verification at line {n}:")), "{who:?}: {}", text(&out));

        // --unverified reads it, and holds every proposal as risky.
        let out = ws.sbx(["policy", "suggest", "--from", "audit.jsonl", "--write", "--unverified"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("attacker-c2.example") && stdout.contains("! risky: from a log that was not verified"), "{who:?}: {stdout}");
        assert!(stdout.contains("held back"), "{who:?}: {stdout}");
        assert!(!ws.path().join("sbx.jsonc").exists(), "{who:?}: the unverified proposal was written");
    }
}

/// The key that seals a session's log is not visible inside the sandbox.
#[test]
fn the_sandbox_cannot_read_the_logs_keys() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let logs = outside(who);
        let log = logs.path().join("audit.jsonl");
        let state = home_of(who).join(".local/state/sbx");
        let script = format!("ls -A {0} {0}/keys 2>&1; cat {0}/keys/* 2>&1; true", state.display());
        let out = ws.sbx(["run", "--log", log.to_str().unwrap(), "--", "/bin/sh", "-c", &script]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let seen = String::from_utf8_lossy(&out.stdout);
        assert!(seen.contains("Permission denied"), "{who:?}: {seen}");
        let key_id = read_log(&log)[0]["mac_key"].as_str().unwrap().to_string();
        let key = std::fs::read_to_string(state.join("keys").join(&key_id)).unwrap();
        assert!(!seen.contains(&key[..64]) && !seen.contains(&key_id), "{who:?}: the key is visible inside:\n{seen}");
        let mode = std::fs::metadata(state.join("keys").join(&key_id)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    }
}

/// `sbx log verify` on a real log: intact, then edited, truncated,
/// reordered and appended, each named by its first bad line.
#[test]
fn log_verify_names_the_first_line_of_an_edited_truncated_reordered_or_appended_log() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let logs = outside(who);
        let log = logs.path().join("audit.jsonl");
        for _ in 0..2 {
            let out = ws.sbx(["run", "--log", log.to_str().unwrap(), "--", "/bin/sh", "-c", "touch /etc/nope; unshare -U true; true"]).output().unwrap();
            assert!(out.status.success(), "{who:?}: {}", text(&out));
        }
        let verify = |name: &str, content: &str| -> (Option<i32>, String) {
            let p = logs.path().join(name);
            std::fs::write(&p, content).unwrap();
            own(&p, who);
            let out = ws.sbx(["log", "verify", p.to_str().unwrap()]).output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let intact = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = intact.lines().collect();
        assert!(lines.len() >= 4, "{who:?}: {intact}");
        let (code, out) = verify("intact.jsonl", &intact);
        assert_eq!(code, Some(0), "{who:?}: {out}");
        assert!(out.contains(&format!("verified: {} lines from 2 writers", lines.len())), "{who:?}: {out}");
        let join = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        let first_session = lines.iter().skip(1).position(|l| l.contains("\"mac_key\"")).unwrap() + 1;

        let edited = intact.replacen("\"seq\":1,", "\"seq\":7,", 1);
        assert_ne!(edited, intact);
        let (code, out) = verify("edited.jsonl", &edited);
        assert_eq!(code, Some(1), "{who:?}: {out}");
        assert!(out.contains("at line 2: its MAC does not match"), "{who:?}: {out}");

        // The first session's last line removed.
        let mut cut: Vec<&str> = lines.clone();
        cut.remove(first_session - 1);
        let (code, out) = verify("truncated.jsonl", &join(&cut));
        assert_eq!(code, Some(1), "{who:?}: {out}");
        assert!(out.contains(&format!("at line {first_session}: 1 line of the writer that starts at line 1 is missing")), "{who:?}: {out}");
        // The log's last line removed.
        let (code, out) = verify("tail-cut.jsonl", &join(&lines[..lines.len() - 1]));
        assert_eq!(code, Some(1), "{who:?}: {out}");
        assert!(out.contains("lines were removed"), "{who:?}: {out}");

        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let (code, out) = verify("reordered.jsonl", &join(&swapped));
        assert_eq!(code, Some(1), "{who:?}: {out}");
        assert!(out.contains("at line 2:"), "{who:?}: {out}");

        let appended = format!("{intact}{}\n", lines[1]);
        let (code, out) = verify("appended.jsonl", &appended);
        assert_eq!(code, Some(1), "{who:?}: {out}");
        assert!(out.contains(&format!("at line {}: it follows the last line", lines.len() + 1)), "{who:?}: {out}");
    }
}

/// The runtime directory for runs with `XDG_STATE_HOME=state`.
fn runtime_dir(state: &Path) -> PathBuf {
    state.join("sbx/run")
}

/// Issue 14, 6: after `kill -9` of sbx nothing is left in /tmp (there is
/// nothing there to begin with), and what it left in its runtime
/// directory is removed by the next session.
#[test]
fn a_killed_session_leaves_nothing_in_tmp_and_the_next_one_cleans_up() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let state = outside(who);
        // The names sbx used in /tmp, for this sbx's pid (other sbx
        // processes on this machine may use /tmp as they please).
        let in_tmp = |pid: u32| -> Vec<String> {
            std::fs::read_dir("/tmp")
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("sbx-hidden-{pid}-")) || *n == format!("sbx-monitor-{pid}.stderr") || *n == format!("sbx-learn-{pid}.jsonl"))
                .collect()
        };
        let mut child = ws
            .sbx(["run", "--log", "audit.jsonl", "--", "sleep", "60"])
            .env_remove("XDG_RUNTIME_DIR")
            .env("XDG_STATE_HOME", state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let run = runtime_dir(state.path());
        let started = Instant::now();
        let stale = loop {
            let found: Vec<PathBuf> = std::fs::read_dir(&run).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
            if let Some(p) = found.into_iter().find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("hidden-{}-", child.id()))) {
                break p;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{who:?}: no session file in {}", run.display());
            std::thread::sleep(Duration::from_millis(50));
        };
        // Wait for the sandbox to be up, then kill sbx outright.
        let log = ws.path().join("audit.jsonl");
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("session_start")) {
            assert!(started.elapsed() < Duration::from_secs(30), "{who:?}: the session did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // While it ran, and after it was killed: nothing in /tmp.
        assert_eq!(in_tmp(child.id()), Vec::<String>::new(), "{who:?}: sbx created files in /tmp");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(in_tmp(child.id()), Vec::<String>::new(), "{who:?}: sbx left files in /tmp");
        assert!(stale.exists(), "{who:?}: the killed session's file is gone already?");
        assert_eq!(std::fs::metadata(&run).unwrap().permissions().mode() & 0o777, 0o700);
        let out = ws.sbx(["run", "--", "/bin/true"]).env_remove("XDG_RUNTIME_DIR").env("XDG_STATE_HOME", state.path()).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert!(!stale.exists(), "{who:?}: the next session left {} in place", stale.display());
        let left: Vec<_> = std::fs::read_dir(&run).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert!(left.is_empty(), "{who:?}: left behind: {left:?}");
    }
}

/// The monitor's files are in the private directory too (the dashboard's
/// stderr was `/tmp/sbx-monitor-<pid>.stderr`, opened following symlinks):
/// symlinks planted at the old names for the next pids stay unused.
#[test]
fn a_planted_symlink_at_the_old_monitor_stderr_name_is_never_used() {
    require_root!();
    require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let victims = outside(As::Root);
    let victim = victims.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let session = format!("sbx-own-{}", std::process::id());
    let shell = format!("cd {} && exec {} monitor -- sh -c 'echo started; sleep 30'", ws.path().display(), sbx_integration_tests::sbx_bin().display());
    let next = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid").ok().and_then(|s| s.trim().parse::<u32>().ok()).unwrap_or(0);
    let planted: Vec<PathBuf> = (next + 1..next + 1000).map(|p| PathBuf::from(format!("/tmp/sbx-monitor-{p}.stderr"))).collect();
    for p in &planted {
        let _ = std::os::unix::fs::symlink(&victim, p);
    }
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "100", "-y", "30", &shell]).status.success());
    let started = Instant::now();
    while !String::from_utf8_lossy(&tmux(&["capture-pane", "-t", &session, "-p"]).stdout).contains("started") {
        assert!(started.elapsed() < Duration::from_secs(30), "the dashboard did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid: u32 = String::from_utf8_lossy(&tmux(&["display-message", "-t", &session, "-p", "#{pane_pid}"]).stdout).trim().parse().unwrap();
    tmux(&["send-keys", "-t", &session, "q"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux(&["send-keys", "-t", &session, "y"]);
    while tmux(&["has-session", "-t", &session]).status.success() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    for p in &planted {
        if p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(p);
        }
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    // Only meaningful when sbx's pid was among the planted names.
    assert!(pid > next && pid < next + 1000, "sbx's pid {pid} was not among the planted names ({next}+1..+1000)");
}

/// Issue 14, 5, for `sbx learn`: the command appends a forged denial to
/// the log it is learnt from; learning stops rather than learn it.
#[test]
fn learn_refuses_a_run_whose_log_the_command_edited() {
    require_root!();
    let forged = r#"{"v":1,"type":"denial","seq":99,"time":"2026-12-07T00:00:00.000000Z","source":"proxy","host":"attacker-c2.example","port":443,"operation":"connect","detail":{"rule":"no rule allows it","protocol":"connect"}}"#;
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("forged.txt", &format!("{forged}\n"));
        let out = ws.sbx(["learn", "--log", "audit.jsonl", "--", "/bin/sh", "-c", "cat forged.txt >> audit.jsonl"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{who:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains("the run's log") && last.contains("fails verification: line") && last.contains("it carries no MAC"), "{who:?}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("attacker-c2"), "{who:?}: {}", text(&out));
        // --unverified learns it, marked for review.
        let out = ws.sbx(["learn", "--unverified", "--max-runs", "1", "--log", "audit2.jsonl", "--", "/bin/sh", "-c", "cat forged.txt >> audit2.jsonl"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("\"attacker-c2.example\"") && stdout.contains("review: from a log that was not verified"), "{who:?}: {}", text(&out));
        assert_inert(&out.stderr, "learn's messages");
    }
}

/// sbx hides its state directory in every session; a policy that already
/// hides a parent of it (`~/.local`) must still start (a second mask
/// inside the first could not be made).
#[test]
fn a_policy_hiding_a_parent_of_the_state_directory_still_runs() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", r#"{ "filesystem": { "denyRead": ["~/.local"] } }"#);
        let out = ws.sbx(["run", "--log", "audit.jsonl", "--", "/bin/sh", "-c", "ls ~/.local/state/sbx 2>&1; echo ran"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("ran") && !stdout.contains("keys"), "{who:?}: {stdout}");
    }
}
