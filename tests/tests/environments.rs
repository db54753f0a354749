//! Issue 17, 3: doctor tells the truth where developers run sbx, and sbx says in one
//! sentence why it cannot sandbox where namespaces are refused (sbx inside sbx, a
//! container's profile).

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use sbx_integration_tests::{As, SudoRule, Workspace, chown, public_sbx, require_root, require_tool, test_user, text};

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check: {report}"))
}

/// sbx inside sbx (bubblewrap's --disable-userns, a seccomp filter): `run` refuses in one
/// sentence that names the cause and the way out, and doctor fails the same checks `run`
/// would, with that sentence as the fix; nothing says "allowed".
#[test]
fn nested_sbx_says_why_in_one_sentence_and_doctor_agrees() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        // Inside, /tmp is the sandbox's own: the inner sbx comes from the workspace.
        let sbx = ws.path().join("sbx");
        std::fs::copy(public_sbx(), &sbx).unwrap();
        std::fs::set_permissions(&sbx, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = ws.sbx(["run", "--memory", "off", "--"]).arg(&sbx).args(["run", "--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{who:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("sbx: cannot create the namespaces a sandbox needs here (unshare: Operation not permitted): sbx runs inside another sandbox or container")
                && err.lines().count() == 1,
            "{who:?}: {err}"
        );
        let out = ws.sbx(["run", "--"]).arg(&sbx).args(["doctor", "--json"]).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{who:?}: {e}: {}", text(&out)));
        for name in ["user namespace", "pid namespace", "net namespace", "unprivileged userns"] {
            let c = check(&report, name);
            assert_eq!(c["verdict"], "fail", "{who:?}: {c}");
            assert!(c["fix"].as_str().unwrap().contains("run sbx outside it"), "{who:?}: {c}");
        }
        let p = check(&report, "privileges");
        assert_eq!(p["verdict"], "warn", "{who:?}: uid 0 in the sandbox's namespace is not the host's root: {p}");
        // The way out that works here, said with what it costs (no_namespaces_* tests it).
        let n = check(&report, "no-namespaces mode");
        assert!(n["verdict"] == "warn" && n["detail"].as_str().unwrap().contains("Landlock ABI"), "{who:?}: {n}");
    }
}

/// doctor's advice for the tracer works: as a user the privileges check warns and says
/// `sudo sbx ...`; following it (with a real sudo), the same doctor passes it and loads
/// the tracer.
#[test]
fn doctors_advice_for_the_tracer_is_sudo_and_it_works() {
    require_root!();
    require_tool("sudo");
    require_tool("runuser");
    let u = test_user();
    let sbx = public_sbx();
    let ws = Workspace::new(As::User);
    let out = ws.sbx(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let p = check(&report, "privileges");
    assert_eq!(p["verdict"], "warn", "{p}");
    assert!(p["fix"].as_str().unwrap().contains("sudo sbx monitor"), "{p}");
    assert!(!report.to_string().contains("setcap"), "advice that does not work: {report}");
    let sudo = SudoRule::allow(&sbx);
    let out = Command::new("runuser").args(["-u", u.name, "--", "sudo", "-n"]).arg(&sbx).args(["doctor", "--json"]).current_dir(ws.path()).output().unwrap();
    drop(sudo);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(check(&report, "privileges")["verdict"], "ok", "{report}");
    assert_eq!(check(&report, "ebpf load+attach")["verdict"], "ok", "{report}");
}

/// Docker's default capability set has no CAP_SYS_ADMIN: doctor said the pid and net
/// namespaces failed (it tried them without a user namespace) although `run` enforces both.
/// Now doctor checks them as `run` uses them, and both agree: ok, and enforced.
#[test]
fn without_cap_sys_admin_doctor_and_run_agree() {
    require_root!();
    require_tool("setpriv");
    confined_the_same(&["--bounding-set=-sys_admin"]);
    // no_new_privs already set (systemd's NoNewPrivileges=, some CI runners): the same.
    confined_the_same(&["--no-new-privs"]);
}

fn confined_the_same(setpriv: &[&str]) {
    let ws = Workspace::new(As::Root);
    let dropped = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(setpriv).arg("--").arg(sbx_integration_tests::sbx_bin()).args(args).current_dir(ws.path());
        cmd.output().unwrap()
    };
    // What setpriv sets is really in force for what it starts.
    let out = Command::new("setpriv").args(setpriv).args(["--", "grep", "-E", "CapEff|NoNewPrivs", "/proc/self/status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_owned();
    if setpriv.contains(&"--no-new-privs") {
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    } else {
        let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
        assert_eq!(eff & (1 << 21), 0, "CAP_SYS_ADMIN is still effective: {status}");
    }
    let out = dropped(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    for name in ["user namespace", "pid namespace", "net namespace", "unprivileged userns"] {
        assert_eq!(check(&report, name)["verdict"], "ok", "{setpriv:?}: {}", check(&report, name));
    }
    let out = dropped(&["run", "--log", "audit.jsonl", "--", "sh", "-c", "echo pid=$$; echo > /etc/z; true"]);
    assert!(out.status.success(), "{setpriv:?}: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pid=2\n", "{setpriv:?}: not in a pid namespace of its own: {}", text(&out));
    let events = sbx_integration_tests::read_log(&ws.path().join("audit.jsonl"));
    assert!(events.iter().any(|e| e["type"] == "denial" && e["path"] == "/etc/z"), "{setpriv:?}: {events:?}");
}

/// `sbx run --no-namespaces ARGS` inside a bubblewrap that may not create user namespaces
/// (`--disable-userns`): where sbx cannot create its own, as in a container.
fn in_nested_userns(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let bwrap = require_tool("bwrap");
    let mut cmd = ws.sbx_at(&bwrap, ["--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]);
    cmd.arg(public_sbx()).args(args);
    cmd.output().unwrap()
}

/// Issue 17, containers: where namespaces cannot be created, `--no-namespaces` runs the
/// command under Landlock and seccomp alone and says what it does not enforce. Attacked as
/// a command would: a hidden directory read directly, through a symlink and a hard link;
/// writes outside the writable paths; the network; a signal to a host process of the same
/// user; the host's System V IPC; a daemon left behind; git hooks and config planted for
/// the host; every check made on the host's state afterwards.
#[test]
fn no_namespaces_confines_with_landlock_and_seccomp_alone() {
    require_root!();
    let u = test_user();
    let ws = Workspace::new(As::User);
    let owned = |p: &std::path::Path| sbx_integration_tests::chown(p, u.uid, u.gid);
    // The user's own files outside the workspace: a secret the policy hides, a directory
    // it may not write.
    let outside = tempfile::Builder::new().prefix("sbx-it-outside").tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::write(secret.join("key"), "TOPSECRET").unwrap();
    // A second secret hidden by the name of a symlink to it.
    let linked = outside.path().join("linked-secret");
    std::fs::create_dir(&linked).unwrap();
    std::fs::write(linked.join("key"), "TOPSECRET").unwrap();
    std::os::unix::fs::symlink(&linked, outside.path().join("link")).unwrap();
    for p in [outside.path(), &secret, &secret.join("key"), &linked, &linked.join("key")] {
        owned(p);
    }
    ws.write("sbx.jsonc", &format!(r#"{{ "filesystem": {{ "denyRead": ["{}", "{}/link"] }} }}"#, secret.display(), outside.path().display()));
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        sbx_integration_tests::as_test_user(cmd.args(args).current_dir(ws.path()).env("HOME", &u.home));
        assert!(cmd.status().unwrap().success(), "git {args:?}");
    };
    git(&["init", "-q", "."]);
    let config_before = std::fs::read(ws.path().join(".git/config")).unwrap();
    // A process of the same user on the host, which the command must not signal, with a
    // terminal of the user's (a pty `script` made), which the command must not write to.
    require_tool("script");
    let mut neighbour = Command::new("script");
    sbx_integration_tests::as_test_user(neighbour.args(["-qfc", "sleep 60", "/dev/null"]).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()));
    let mut neighbour = neighbour.spawn().unwrap();
    let users_pty = (0..50).find_map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::read_dir("/dev/pts").unwrap().flatten().map(|e| e.path()).find(|p| {
            use std::os::unix::fs::MetadataExt as _;
            p.file_name().unwrap().to_str().unwrap().parse::<u32>().is_ok() && std::fs::metadata(p).is_ok_and(|m| m.uid() == u.uid)
        })
    });
    assert!(users_pty.is_some(), "script made no terminal of the user's");
    let marker = format!("sbx-it-daemon-{}", std::process::id());
    let script = format!(
        r#"cat {s}/key && echo LEAK-direct
cat {o}/link/key {o}/linked-secret/key && echo LEAK-linked
ls {s} >/dev/null && echo listed
ln -s {s} lnk; cat lnk/key && echo LEAK-symlink
ln {s}/key hl 2>/dev/null; cat hl 2>/dev/null && echo LEAK-hardlink
echo ok > inside && cat inside
echo x > {o}/planted && echo LEAK-outside
echo x > /tmp/sbx-it-planted-$$ && echo LEAK-tmp
echo t > "$TMPDIR/t" && cat "$TMPDIR/t" && echo "tmpdir=$TMPDIR"
kill -0 {n} && echo LEAK-signal
for t in /dev/pts/[0-9]*; do echo x 2>/dev/null > "$t" && echo LEAK-terminal; done
cat /dev/sda /dev/vda /dev/mem 2>/dev/null | head -c1 | grep -q . && echo LEAK-device
python3 -c '
import ctypes, socket
try:
    socket.create_connection(("127.0.0.1", 9)); print("LEAK-net")
except OSError as e: print("net:", e.errno)
libc = ctypes.CDLL(None, use_errno=True)
print("shmget:", libc.shmget(0, 4096, 0o1600), ctypes.get_errno())
'
echo evil > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit
git config core.fsmonitor 'touch /tmp/pwned'
(setsid sh -c 'exec -a {m} sleep 300' &)
echo end"#,
        s = secret.display(),
        o = outside.path().display(),
        n = neighbour.id(),
        m = marker,
    );
    let out = in_nested_userns(&ws, &["run", "--memory", "off", "--log", "audit.jsonl", "--no-namespaces", "--", "sh", "-c", &script]);
    let _ = neighbour.kill();
    let _ = neighbour.wait();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && stdout.ends_with("end\n"), "{}", text(&out));
    assert!(!stdout.contains("LEAK") && !stdout.contains("TOPSECRET"), "{}", text(&out));
    for expected in ["listed\n", "ok\n", "t\ntmpdir=", "net: 1\n", "shmget: -1 1\n"] {
        assert!(stdout.contains(expected), "{expected:?}: {}", text(&out));
    }
    // The session's TMPDIR is gone, and nothing was written outside.
    let tmpdir = stdout.lines().find_map(|l| l.strip_prefix("tmpdir=")).unwrap();
    assert!(tmpdir.starts_with("/tmp/sbx-tmp-") && !std::path::Path::new(tmpdir).exists(), "{tmpdir}");
    assert!(!outside.path().join("planted").exists());
    // No process of the sandbox outlives it, not even a setsid'd daemon.
    let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
    assert!(left.stdout.is_empty(), "left running: {}", String::from_utf8_lossy(&left.stdout));
    // The planted hook is gone and the config is the original, each reported.
    assert!(!ws.path().join(".git/hooks/pre-commit").exists(), "{}", text(&out));
    assert_eq!(std::fs::read(ws.path().join(".git/config")).unwrap(), config_before, "{}", text(&out));
    assert!(stderr.contains(".git/hooks/pre-commit was created during the session") && stderr.contains(".git/config"), "{}", text(&out));
    // Said at start, and in the log, what is not enforced.
    assert!(stderr.contains("sbx: not enforced without namespaces: network: none"), "{}", text(&out));
    let events = sbx_integration_tests::read_log(&ws.path().join("audit.jsonl"));
    let e = &events[0]["enforcement"];
    assert_eq!((e["bwrap"]["enforced"].as_bool(), e["netns"]["enforced"].as_bool(), e["landlock"]["enforced"].as_str()), (Some(false), Some(false), Some("full")), "{e}");
    let missing: Vec<&str> = e["not_enforced"].as_array().unwrap().iter().filter_map(|w| w.as_str()).collect();
    assert!(missing.iter().any(|w| w.starts_with("network: none")) && missing.iter().any(|w| w.contains("no private /tmp")), "{missing:?}");
    assert!(events.iter().any(|e| e["type"] == "denial" && e["syscall"] == "shmget"), "{events:?}");

    // No tmpfs to size; no RLIMIT_NPROC that would count the user's other processes.
    let limits = &e["limits"];
    assert_eq!((limits["tmpSize"]["enforced"].as_bool(), limits["pids"]["enforced"].as_bool()), (Some(false), Some(false)), "{limits}");

    // A hidden path inside the writable workspace cannot be left out of Landlock's roots:
    // refused before anything runs, in one sentence.
    let inner = tempfile::Builder::new().prefix("sbx-it-ws").tempdir_in(ws.path()).unwrap();
    owned(inner.path());
    std::fs::write(inner.path().join(".env"), "TOKEN").unwrap();
    std::fs::write(inner.path().join("sbx.jsonc"), r#"{ "filesystem": { "denyRead": ["./.env"] } }"#).unwrap();
    for p in [".env", "sbx.jsonc"] {
        owned(&inner.path().join(p));
    }
    let mut cmd = ws.sbx_at(&require_tool("bwrap"), ["--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--"]);
    let out = cmd.arg(public_sbx()).args(["run", "--memory", "off", "--no-namespaces", "--", "cat", ".env"]).current_dir(inner.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-namespaces cannot hide") && out.stdout.is_empty(), "{}", text(&out));

    // SIGTERM to sbx ends the sandbox: the command and what it started (here a process that
    // ignores SIGTERM) are gone when sbx is (its init ignores the signal sent to the
    // command's process group, and kills the rest once the command has ended).
    let mark = format!("sbx-it-term-{}", std::process::id());
    // (On the host, where sbx is the child: --no-namespaces works anywhere.)
    let mut cmd = ws.sbx(["run", "--memory", "off", "--no-namespaces", "--", "bash", "-c"]);
    let mut child = cmd.arg(format!("(trap '' TERM; exec -a {mark}-a sleep 100) & exec -a {mark}-b sleep 100")).stderr(std::process::Stdio::null()).spawn().unwrap();
    let running = |m: &str| !Command::new("pgrep").args(["-f", m]).output().unwrap().stdout.is_empty();
    for _ in 0..100 {
        if running(&format!("{mark}-a")) && running(&format!("{mark}-b")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill with a pid and a signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let ended = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        child.try_wait().unwrap().is_some()
    });
    let left = running(&mark);
    let _ = child.kill();
    let _ = Command::new("pkill").args(["-KILL", "-f", &mark]).status();
    assert!(ended && !left, "sbx ended: {ended}; left running after SIGTERM: {left}");

    // --require netns cannot be had without namespaces; -p neither.
    let out = in_nested_userns(&ws, &["run", "--no-namespaces", "--require", "netns", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--require netns: --no-namespaces runs without a network namespace"), "{}", text(&out));
    // Without the flag, the sentence names it as a way out.
    let out = in_nested_userns(&ws, &["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-namespaces"), "{}", text(&out));
    // The unfiltered network only when asked for: a server on the host's loopback.
    let (port, hits) = sbx_integration_tests::http_server();
    let get = format!("import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/').read().decode().strip())");
    let out = in_nested_userns(&ws, &["run", "--memory", "off", "--no-namespaces", "--unfiltered-network", "--", "python3", "-c", &get]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{}", text(&out));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("network: the host's, unfiltered"), "{}", text(&out));

    // Under a real sudo (and with --user from root), the command runs as the user and the
    // kernel tracer observes what Landlock refused.
    require_tool("sudo");
    let _sudo = SudoRule::allow(&public_sbx());
    let script = format!("id -u; cat {}/key", secret.display());
    for how in ["sudo", "--user"] {
        let log = ws.path().join(format!("root-{}.jsonl", how.trim_start_matches('-')));
        let run = ["run", "--memory", "off", "--no-namespaces", "--log"];
        let mut cmd = if how == "sudo" {
            let mut c = Command::new("runuser");
            c.args(["-u", u.name, "--", "sudo", "-n"]).arg(public_sbx()).args(run);
            c
        } else {
            let mut c = Command::new(sbx_integration_tests::sbx_bin());
            c.args(run).env_remove("SUDO_UID");
            c
        };
        cmd.arg(&log);
        if how == "--user" {
            cmd.args(["--user", u.name]);
        }
        let out = cmd.args(["--", "sh", "-c", &script]).current_dir(ws.path()).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", u.uid), "{how}: {}", text(&out));
        let events = sbx_integration_tests::read_log(&log);
        assert_eq!(events[0]["observation"]["kernel_tracer"], true, "{how}: {events:?}");
        let key = secret.join("key").display().to_string();
        assert!(events.iter().any(|e| e["type"] == "denial" && e["path"] == key.as_str() && e["source"] == "landlock"), "{how}: {events:?}");
    }

    // As root, the command would own the host's files: refused in one sentence.
    let root_ws = Workspace::new(As::Root);
    let out = in_nested_userns(&root_ws, &["run", "--no-namespaces", "--", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("sbx: --no-namespaces cannot run a command as root") && err.lines().count() == 1, "{err}");
}

/// Without namespaces the protected paths are restored at the end, not read-only: the
/// attacker's pass tried to get past that check. A renamed `.git` with a gitlink to an
/// evil gitdir in its place, a hard link to a hook (a later session would write through
/// it), a hooks directory made world-writable, a hook hidden among 5,000 files (settled as a whole directory), and a FIFO
/// in the hooks directory when the quarantine is on another filesystem (a copy would block
/// on it for good). After the run the host's git runs no canary, and sbx ended.
#[test]
fn no_namespaces_exit_checks_hold_against_renames_links_modes_floods_and_fifos() {
    require_root!();
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let u = test_user();
    // The workspace on a tmpfs of the test's own, the quarantine in the user's home on disk.
    struct Tmpfs(tempfile::TempDir);
    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
        }
    }
    let tmpfs = Tmpfs(tempfile::Builder::new().prefix("sbx-it-tmpfs").tempdir().unwrap());
    assert!(Command::new("mount").args(["-t", "tmpfs", "-o", "size=256m,mode=0755", "sbx-it"]).arg(tmpfs.0.path()).status().unwrap().success());
    let ws = Workspace::new_in(As::User, tmpfs.0.path());
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        sbx_integration_tests::as_test_user(cmd.args(args).current_dir(ws.path()).env("HOME", &u.home).env("GIT_CONFIG_NOSYSTEM", "1"));
        cmd.output().unwrap()
    };
    assert!(git(&["init", "-q", "."]).status.success());
    ws.write(".git/hooks/pre-commit", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(ws.path().join(".git/hooks/pre-commit"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config_before = std::fs::read(ws.path().join(".git/config")).unwrap();
    let hook_ino = std::fs::metadata(ws.path().join(".git/hooks/pre-commit")).unwrap().ino();
    let canaries = tempfile::Builder::new().prefix("sbx-it-canary").tempdir().unwrap();
    sbx_integration_tests::chown(canaries.path(), u.uid, u.gid);
    let c = canaries.path().display();
    let script = format!(
        "ln .git/hooks/pre-commit .keep-me; chmod 777 .git/hooks; mkfifo .git/hooks/0-block; \
         i=0; while [ $i -lt 5000 ]; do : > .git/hooks/f$i; i=$((i+1)); done; printf '#!/bin/sh\\ntouch {c}/flood\\n' > .git/hooks/post-commit; chmod +x .git/hooks/post-commit; \
         mv .git .git-orig; mkdir evil.git; cp -r .git-orig/. evil.git/; rm -rf evil.git/hooks; \
         git --git-dir=evil.git config core.fsmonitor 'touch {c}/gitlink'; git --git-dir=evil.git config core.worktree ..; printf 'gitdir: evil.git\\n' > .git; echo done"
    );
    let out = ws.sbx(["run", "--memory", "off", "--no-namespaces", "--", "sh", "-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{}", text(&out));
    // .git is the original again, with its config; the gitlink went to the quarantine.
    assert!(ws.path().join(".git").is_dir(), "{}", text(&out));
    assert_eq!(std::fs::read(ws.path().join(".git/config")).unwrap(), config_before);
    // The hook is a file of its own again (the link keeps the old inode), the directory's
    // mode is back, the flood's hook and the FIFO are gone.
    let hook = std::fs::metadata(ws.path().join(".git/hooks/pre-commit")).unwrap();
    assert!(hook.ino() != hook_ino && hook.nlink() == 1, "{}", text(&out));
    assert_eq!(std::fs::metadata(ws.path().join(".git/hooks")).unwrap().mode() & 0o777, 0o755, "{}", text(&out));
    for gone in [".git/hooks/post-commit", ".git/hooks/0-block", ".git/hooks/f4999"] {
        assert!(std::fs::symlink_metadata(ws.path().join(gone)).is_err(), "{gone}: {}", text(&out));
    }
    // The host's git runs nothing of the command's.
    let _ = git(&["status", "--short"]);
    let _ = git(&["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x"]);
    let fired: Vec<_> = ["flood", "gitlink"].into_iter().filter(|f| canaries.path().join(f).exists()).collect();
    assert!(fired.is_empty(), "{fired:?} ran on the host: {}", text(&out));
}

/// More of the attacker's pass, without namespaces: a large file on the user's PATH (too
/// large to keep a copy of) rewritten in place with its mtime put back is still caught (its
/// ctime moved) and moved away; as root running the command as the user, a `.git` replaced
/// by a symlink to root's files never makes the exit check act on those files.
#[test]
fn no_namespaces_exit_checks_catch_a_rewritten_large_file_and_never_follow_a_symlinked_git() {
    require_root!();
    use std::os::unix::fs::PermissionsExt as _;
    let u = test_user();
    let ws = Workspace::new(As::User);
    let git = |args: &[&str]| {
        let mut cmd = Command::new("git");
        sbx_integration_tests::as_test_user(cmd.args(args).current_dir(ws.path()).env("HOME", &u.home).env("GIT_CONFIG_NOSYSTEM", "1"));
        cmd.output().unwrap()
    };
    assert!(git(&["init", "-q", "."]).status.success());
    // A 300 KiB program in a directory of the user's PATH, inside the workspace.
    let tool = ws.write("bin/tool", &format!("#!/bin/sh\necho original\n#{}\n", "x".repeat(300 * 1024)));
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Root's files that a symlinked .git would name.
    let victim = tempfile::Builder::new().prefix("sbx-it-victim").tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(victim.path().join("hooks")).unwrap();
    std::fs::write(victim.path().join("config"), "root's\n").unwrap();
    let script = format!(
        "old=$(stat -c %y bin/tool); printf '#!/bin/sh\\necho evil   \\n' | dd of=bin/tool conv=notrunc status=none; touch -d \"$old\" bin/tool; \
         mv .git .git-old && ln -s {} .git; echo done",
        victim.path().display()
    );
    let path = format!("{}:/usr/bin:/bin", ws.path().join("bin").display());
    let out = Command::new(sbx_integration_tests::sbx_bin())
        .args(["run", "--memory", "off", "--user", u.name, "--no-namespaces", "--", "sh", "-c", &script])
        .current_dir(ws.path())
        .env("PATH", &path)
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{}", text(&out));
    // The rewritten program is not where the host runs it.
    let now = std::fs::read_to_string(&tool).unwrap_or_default();
    assert!(!now.contains("evil"), "the rewritten program stayed: {}", text(&out));
    // root's files are where they were, and .git is the repository again.
    assert_eq!(std::fs::read_to_string(victim.path().join("config")).unwrap(), "root's\n", "{}", text(&out));
    assert!(victim.path().join("hooks").is_dir());
    assert!(ws.path().join(".git").is_dir() && !ws.path().join(".git").is_symlink(), "{}", text(&out));
}

/// Issue 13, without namespaces: a hidden file that the host replaces while the command
/// runs stays unreadable, with no watch at all (Landlock grants reads on the files that
/// were beside it at start; the new one is not one of them).
#[test]
fn no_namespaces_a_hidden_file_the_host_replaces_stays_unreadable() {
    require_root!();
    let ws = Workspace::new_in(As::User, "/var/tmp");
    let dir = tempfile::Builder::new().prefix("sbx-it-secrets").tempdir_in("/var/tmp").unwrap();
    let u = test_user();
    for (name, body) in [("secret", "secret-1\n"), ("public", "public\n")] {
        std::fs::write(dir.path().join(name), body).unwrap();
        chown(&dir.path().join(name), u.uid, u.gid);
    }
    chown(dir.path(), u.uid, u.gid);
    ws.write("sbx.jsonc", &format!(r#"{{ "filesystem": {{ "denyRead": ["{}/secret"] }} }}"#, dir.path().display()));
    let d = dir.path().display();
    let script = format!("touch ready; until [ -e go ]; do sleep 0.02; done; cat {d}/secret; cat {d}/public; echo end");
    let child = ws
        .sbx(["run", "--memory", "off", "--no-namespaces", "--", "sh", "-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..1000 {
        if ws.path().join("ready").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(dir.path().join("secret.new"), "secret-2\n").unwrap();
    chown(&dir.path().join("secret.new"), u.uid, u.gid);
    std::fs::rename(dir.path().join("secret.new"), dir.path().join("secret")).unwrap();
    ws.write("go", "");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "public\nend\n", "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret: Permission denied"), "{}", text(&out));
}
