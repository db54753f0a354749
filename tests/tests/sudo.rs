//! Issue 17, 2: `sudo sbx monitor -- cmd`, the obvious way to get the kernel tracer, runs
//! the command as the user who ran sudo, not as root; `--user NAME` does the same for root.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use sbx_integration_tests::{As, SudoRule, Workspace, public_sbx, read_log, require_root, require_tool, test_user, text};

/// The tests here share the test user's real home (sudo resets HOME to it): one at a time.
static HOME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Files a test adds outside its own directories, removed when it ends.
struct Planted(Vec<PathBuf>);

impl Drop for Planted {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
    }
}

/// The user's private key, in their real home (created for the test when missing).
fn plant_key(planted: &mut Planted) -> PathBuf {
    let u = test_user();
    let ssh = u.home.join(".ssh");
    if !ssh.exists() {
        std::fs::create_dir(&ssh).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
        sbx_integration_tests::chown(&ssh, u.uid, u.gid);
        planted.0.push(ssh.clone());
    }
    let key = ssh.join("id_sbx_it");
    std::fs::write(&key, "PRIVATE KEY\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    sbx_integration_tests::chown(&key, u.uid, u.gid);
    planted.0.push(key.clone());
    key
}

/// What the command says of itself, and what it leaves behind, for `run` started by `cmd`.
fn check(cmd: &mut Command, ws: &Workspace, key: &Path, log: &Path, how: &str) {
    let u = test_user();
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{how}: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some(u.uid.to_string().as_str()), "{how}: the command's uid: {}", text(&out));
    assert_eq!(lines.get(1).copied(), Some(u.gid.to_string().as_str()), "{how}: the command's gid: {}", text(&out));
    assert_eq!(lines.get(2).copied(), Some(u.home.to_str().unwrap()), "{how}: the command's HOME: {}", text(&out));
    assert_eq!(lines.get(3).copied(), Some(u.name), "{how}: the command's USER: {}", text(&out));
    assert!(!stdout.contains("PRIVATE"), "{how}: the user's ~/.ssh was readable under -t code: {}", text(&out));
    let created = std::fs::metadata(ws.path().join("created")).unwrap();
    assert_eq!((created.uid(), created.gid()), (u.uid, u.gid), "{how}: the command's file is not the user's");
    assert!(key.exists());
    // The kernel tracer (root's) saw the user's command refused.
    let events = read_log(log);
    assert!(
        events.iter().any(|e| e["type"] == "denial" && e["path"] == "/etc/z"),
        "{how}: no denial of /etc/z in the log: {events:?}"
    );
}

const SCRIPT: &str = "id -u; id -g; echo $HOME; echo $USER; touch created; cat ~/.ssh/id_sbx_it 2>/dev/null; echo > /etc/z 2>/dev/null; true";

#[test]
fn sudo_runs_the_command_as_the_user_who_ran_it() {
    require_root!();
    let _home = HOME.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("sudo");
    require_tool("runuser");
    let u = test_user();
    let sbx = public_sbx();
    let mut planted = Planted(Vec::new());
    // The test user may run this sbx as root, without a password.
    let _sudo = SudoRule::allow(&sbx);
    let key = plant_key(&mut planted);

    let ws = Workspace::new(As::User);
    let log = ws.path().join("audit.jsonl");
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", u.name, "--", "sudo", "-n"]).arg(&sbx).args(["run", "-t", "code", "--log"]).arg(&log).args(["--", "sh", "-c", SCRIPT]).current_dir(ws.path());
    check(&mut cmd, &ws, &key, &log, "sudo");

    // --user from a root shell, the same.
    let ws = Workspace::new(As::User);
    let log = ws.path().join("audit.jsonl");
    let mut cmd = Command::new(&sbx);
    cmd.args(["run", "--user", u.name, "-t", "code", "--log"]).arg(&log).args(["--", "sh", "-c", SCRIPT]).current_dir(ws.path()).env_remove("SUDO_UID");
    check(&mut cmd, &ws, &key, &log, "--user");
}

/// `--user` is root's: anyone else gets one sentence and exit 125; an unknown user, too.
#[test]
fn user_flag_refusals_are_one_sentence() {
    require_root!();
    let ws = Workspace::new(As::User);
    let out = ws.sbx(["run", "--user", "root", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "sbx: --user root: only root can run the command as another user (sbx already runs it as you)\n");
    let ws = Workspace::new(As::Root);
    let out = ws.sbx(["run", "--user", "no-such-user-sbx", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "sbx: --user names no-such-user-sbx, which is not a user of this system\n");
}

/// Under sudo, what sbx writes in the user's home stays theirs: an agent setting it
/// reverts, the quarantine with the command's version; and the user's own sbx runs
/// afterwards still find their state directory private to them.
#[test]
fn under_sudo_what_sbx_writes_in_the_users_home_stays_theirs() {
    require_root!();
    let _home = HOME.lock().unwrap_or_else(|e| e.into_inner());
    require_tool("sudo");
    require_tool("runuser");
    let u = test_user();
    let sbx = public_sbx();
    let mut planted = Planted(Vec::new());
    let _sudo = SudoRule::allow(&sbx);
    let claude = u.home.join(".claude");
    // `-t code` makes the agents' state directories, empty, in the home of whoever runs it
    // (the other tests' runs as this user): such a one is not the user's state.
    let _ = std::fs::remove_dir(&claude);
    assert!(!claude.exists(), "the test user has a ~/.claude already");
    std::fs::create_dir(&claude).unwrap();
    sbx_integration_tests::chown(&claude, u.uid, u.gid);
    let settings = claude.join("settings.json");
    std::fs::write(&settings, "{\"model\": \"a\"}\n").unwrap();
    sbx_integration_tests::chown(&settings, u.uid, u.gid);
    planted.0.extend([claude.clone(), settings.clone()]);

    let ws = Workspace::new(As::User);
    let script = r#"printf '{"model": "a", "hooks": {"Stop": []}}' > ~/.claude/settings.json"#;
    let out = Command::new("runuser")
        .args(["-u", u.name, "--", "sudo", "-n"])
        .arg(&sbx)
        .args(["run", "-t", "code", "--", "sh", "-c", script])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reverted; what the command wrote is in "), "{stderr}");
    let meta = std::fs::metadata(&settings).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (u.uid, u.gid), "the reverted settings became root's");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{\n  \"model\": \"a\"\n}\n");
    let kept = stderr.split("reverted; what the command wrote is in ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    let mut p = PathBuf::from(&kept);
    while p != u.home {
        let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(m.uid(), u.uid, "{} is not the user's", p.display());
        assert!(p.pop());
    }
    let quarantine_session = Path::new(&kept).ancestors().find(|a| a.parent().is_some_and(|q| q.ends_with("sbx/quarantine"))).unwrap().to_path_buf();
    // The user's own sbx, afterwards: its state directory is still theirs alone.
    let out = ws.sbx(["run", "--", "true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let _ = std::fs::remove_dir_all(quarantine_session);
}

/// Under `--user` (or sudo) sbx is root and the command is not: a Unix socket the mediator
/// connects for the command is connected with the command's identity, not root's. A
/// root-only socket listed in allowUnixSockets stays out of reach (EACCES, as without sbx),
/// and the server of a socket the user may use sees the user as its peer, not root (an
/// attacker's pass found root there: D-Bus would have taken the command for root).
#[test]
fn mediated_unix_connects_carry_the_users_identity_not_roots() {
    require_root!();
    use std::os::unix::fs::PermissionsExt as _;
    let u = test_user();
    // In /var/tmp: the sandbox's /tmp is its own.
    let dir = tempfile::Builder::new().prefix("sbx-it-sockets").tempdir_in("/var/tmp").unwrap();
    let root_only = dir.path().join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    std::fs::set_permissions(&root_only, std::fs::Permissions::from_mode(0o700)).unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (root_sock, user_sock) = (root_only.join("s"), open.join("s"));
    let peers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u32>::new()));
    for path in [&root_sock, &user_sock] {
        let l = std::os::unix::net::UnixListener::bind(path).unwrap();
        let mode = if path == &user_sock { 0o777 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        let peers = peers.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
                let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
                // SAFETY: getsockopt writes at most `len` bytes into `cred`.
                unsafe { libc::getsockopt(std::os::fd::AsRawFd::as_raw_fd(&conn), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
                peers.lock().unwrap().push(cred.uid);
            }
        });
    }
    let ws = Workspace::new(As::User);
    ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowUnixSockets": ["{}", "{}"] }} }}"#, root_sock.display(), user_sock.display()));
    let script = format!(
        "import socket\nfor p in ['{}', '{}']:\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p); print('connected')\n    except OSError as e: print('refused', e.errno)\n",
        root_sock.display(),
        user_sock.display()
    );
    let out = Command::new(public_sbx()).args(["run", "--user", u.name, "--", "python3", "-c", &script]).current_dir(ws.path()).env_remove("SUDO_UID").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("refused {}\nconnected\n", libc::EACCES), "{}", text(&out));
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(*peers.lock().unwrap(), [u.uid], "the server's peers");
}

/// Under `--user` (and sudo) the user's own sbx directory (their logs' sealing keys, their
/// quarantine) is hidden from the command, as root's is from a command of root's.
#[test]
fn the_users_own_sbx_directory_is_hidden_under_user() {
    require_root!();
    let u = test_user();
    let state = u.home.join(".local/state/sbx");
    std::fs::create_dir_all(&state).unwrap();
    for d in [u.home.join(".local"), u.home.join(".local/state"), state.clone()] {
        sbx_integration_tests::chown(&d, u.uid, u.gid);
    }
    let ws = Workspace::new(As::User);
    let out = Command::new(public_sbx())
        .args(["run", "--user", u.name, "--", "sh", "-c"])
        .arg(format!("ls {} >/dev/null 2>&1 && echo LEAK || echo hidden", state.display()))
        .current_dir(ws.path())
        .env_remove("SUDO_UID")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hidden\n", "{}", text(&out));
}
