//! Enforcement: real sandboxes, as root and as an unprivileged user; every
//! attack is checked from the host side, and legitimate work must succeed.

use std::{os::unix::fs::PermissionsExt as _, path::Path, process::Command};

use sbx_integration_tests::{As, Workspace, chown, read_log, require_root, require_tool, test_user, text};

const WHO: [As; 2] = [As::Root, As::User];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn writes_outside_the_workspace_have_no_effect() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        let outside = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let target = outside.path().join("escape");
        let out = ws.run_sh(&format!(
            "echo x > {t}; echo x > /etc/sbx-escape; mkdir /usr/sbx-escape; echo inside > ./inside; echo tmp > /tmp/t && cat /tmp/t",
            t = target.display()
        ));
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        assert!(!target.exists(), "{who:?}: wrote outside the workspace");
        assert!(!Path::new("/etc/sbx-escape").exists());
        assert!(!Path::new("/usr/sbx-escape").exists());
        assert_eq!(read(&ws.path().join("inside")), "inside\n", "{who:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "tmp\n", "{who:?}: /tmp is writable");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Read-only file system") || stderr.contains("Permission denied"), "{stderr}");
    }
}

#[test]
fn the_private_tmp_is_not_the_hosts() {
    require_root!();
    let marker = tempfile::Builder::new().prefix("sbx-host-marker").tempfile().unwrap();
    let ws = Workspace::new_in(As::Root, "/var/tmp");
    let out = ws.run_sh(&format!("test -e {} && echo visible || echo hidden", marker.path().display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hidden\n", "{}", text(&out));
}

#[test]
fn protected_dotfiles_and_git_hooks_are_read_only() {
    require_root!();
    require_tool("git");
    for who in WHO {
        let ws = Workspace::new(who);
        for f in [".bashrc", ".profile", ".gitconfig", ".mcp.json", ".vscode/settings.json", ".idea/workspace.xml"] {
            ws.write(f, "original\n");
        }
        ws.write(".git/hooks/pre-commit", "original\n");
        ws.write(".git/config", "original\n");
        ws.write("sbx.jsonc", "{}\n");
        let script = "echo '{\"network\":{\"allowedDomains\":[\"*\"]}}' > sbx.jsonc; echo '{}' > sbx.json; for f in .bashrc .profile .gitconfig .mcp.json .vscode/settings.json .idea/workspace.xml .git/hooks/pre-commit .git/config; do
                echo evil >> $f; done; rm -f .bashrc; mv .profile moved; echo evil > .vscode/tasks.json; echo evil > .git/hooks/post-checkout; true";
        let out = ws.run_sh(script);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        for f in [".bashrc", ".profile", ".gitconfig", ".mcp.json", ".vscode/settings.json", ".idea/workspace.xml", ".git/hooks/pre-commit", ".git/config"] {
            assert_eq!(read(&ws.path().join(f)), "original\n", "{who:?}: {f} was changed");
        }
        assert_eq!(read(&ws.path().join("sbx.jsonc")), "{}\n", "{who:?}: the policy file was changed");
        let created = ws.path().join("sbx.json");
        assert!(text(&out).contains(&format!("sbx: warning: the policy file {} was created during the session: the next sbx run here reads it as the policy; review it or delete it", created.display())), "{}", text(&out));
        assert!(!ws.path().join("moved").exists());
        assert!(!ws.path().join(".vscode/tasks.json").exists(), "{who:?}: created a file in .vscode");
        assert!(!ws.path().join(".git/hooks/post-checkout").exists(), "{who:?}: created a git hook");
    }
}

#[test]
fn allow_git_config_makes_git_config_writable_but_not_hooks() {
    require_root!();
    let ws = Workspace::new(As::Root);
    ws.write(".git/config", "original\n");
    ws.write(".git/hooks/pre-commit", "original\n");
    ws.write("sbx.jsonc", r#"{ "filesystem": { "allowGitConfig": true } }"#);
    let out = ws.run_sh("echo changed > .git/config; echo evil > .git/hooks/pre-commit; true");
    assert_eq!(read(&ws.path().join(".git/config")), "changed\n", "{}", text(&out));
    assert_eq!(read(&ws.path().join(".git/hooks/pre-commit")), "original\n");
}

#[test]
fn home_dotfiles_stay_read_only_when_home_is_writable() {
    require_root!();
    let user = test_user();
    let ws = Workspace::new_in(As::User, &user.home);
    let bashrc = user.home.join(".bashrc");
    std::fs::write(&bashrc, "original\n").unwrap();
    chown(&bashrc, user.uid, user.gid);
    ws.write("sbx.jsonc", r#"{ "filesystem": { "allowWrite": ["~"] } }"#);
    let out = ws.run_sh("echo evil >> ~/.bashrc; echo ok > ~/sbx-note && cat ~/sbx-note");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{}", text(&out));
    assert_eq!(read(&bashrc), "original\n");
    std::fs::remove_file(user.home.join("sbx-note")).unwrap();
}

#[test]
fn symlinks_and_hard_links_do_not_escape() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        let outside = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "original\n").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o666)).unwrap();
        std::os::unix::fs::symlink(&victim, ws.path().join("file-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("dir-link")).unwrap();
        let out = ws.run_sh(&format!(
            "echo evil >> file-link; echo evil > dir-link/new; ln {v} hard; echo evil >> hard; ln -s /etc/passwd pw; echo evil >> pw; true",
            v = victim.display()
        ));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert_eq!(read(&victim), "original\n", "{who:?}: wrote through a link: {}", text(&out));
        assert!(!outside.path().join("new").exists(), "{who:?}: created a file through a directory symlink");
        assert!(!read(Path::new("/etc/passwd")).contains("evil"));
    }
}

#[test]
fn deny_read_hides_by_every_route() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        let secrets = tempfile::tempdir_in("/var/tmp").unwrap();
        std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let secret_file = secrets.path().join("token");
        std::fs::write(&secret_file, "TOPSECRET\n").unwrap();
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let lone = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        std::fs::write(lone.path(), "TOPSECRET\n").unwrap();
        std::fs::set_permissions(lone.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        ws.write(".env", "TOPSECRET\n");
        ws.write("sub/.env", "TOPSECRET\n");
        ws.write(
            "sbx.jsonc",
            &format!(r#"{{ "filesystem": {{ "denyRead": ["{}", "{}", "**/.env"] }} }}"#, secrets.path().display(), lone.path().display()),
        );
        std::os::unix::fs::symlink(&secret_file, ws.path().join("via-symlink")).unwrap();
        let script = format!(
            "cat {f} {l} .env sub/.env via-symlink /proc/self/root{f} /proc/1/root{l} 2>/dev/null; ls {d}; ln {l} hard 2>/dev/null && cat hard; cp {f} copy 2>/dev/null && cat copy; true",
            f = secret_file.display(),
            l = lone.path().display(),
            d = secrets.path().display()
        );
        let out = ws.run_sh(&script);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("TOPSECRET"), "{who:?}: a denied file was read: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("token"), "{who:?}: a denied directory was listed");
    }
}

/// The processes whose argv holds `mark` and that live in another mount namespace than
/// ours: the sandbox's.
fn sandboxed_pids(mark: &str) -> Vec<u32> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(mark)))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns != ours))
        .collect()
}

/// A command of the re-hiding tests, marked so that its processes can be found: it runs
/// `script` after `: MARK;` under `sbx run`, its output piped; every wait is bounded by one
/// deadline.
struct Marked<'a> {
    ws: &'a Workspace,
    who: As,
    mark: String,
    /// Taken by `finish`; killed on drop otherwise (a test that failed leaves nothing
    /// waiting for a `go` that never comes).
    child: Option<std::process::Child>,
    deadline: std::time::Instant,
}

impl<'a> Marked<'a> {
    fn start(ws: &'a Workspace, who: As, name: &str, script: &str) -> Self {
        let mark = format!("sbx-remask-{name}-{}-{who:?}", std::process::id());
        let script = format!(": {mark}; {script}");
        let child = ws.sbx(["run", "--", "/bin/sh", "-c", &script]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        Marked { ws, who, mark, child: Some(child), deadline: std::time::Instant::now() + std::time::Duration::from_secs(20) }
    }

    /// Waits until the command has made `file` in the workspace.
    fn wait_for(&self, file: &str) {
        while !self.ws.path().join(file).exists() {
            assert!(std::time::Instant::now() < self.deadline, "{:?}: no {file}", self.who);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `rel` in the workspace as the sandbox sees it (through a process of its own).
    fn inside(&self, rel: &str) -> String {
        let pid = loop {
            if let Some(pid) = sandboxed_pids(&self.mark).first() {
                break *pid;
            }
            assert!(std::time::Instant::now() < self.deadline, "{:?}: no process of the sandbox found", self.who);
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        format!("/proc/{pid}/root{}/{rel}", self.ws.path().display())
    }

    /// Waits until every file of `rels` reads empty inside (hidden by a mask); panics
    /// after the deadline when `must`, else gives up after 3 s (and the command's own
    /// reads are the test).
    fn wait_hidden(&self, rels: &[&str], must: bool) {
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while !rels.iter().all(|r| std::fs::read_to_string(self.inside(r)).is_ok_and(|s| s.is_empty())) {
            if must {
                assert!(std::time::Instant::now() < self.deadline, "{:?}: the files the host wrote are visible inside the sandbox", self.who);
            } else if std::time::Instant::now() > give_up {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Lets the command go on (`go`) and returns its output.
    fn finish(mut self) -> std::process::Output {
        self.ws.write("go", "");
        self.child.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `until [ -e FILE ]` in the command's script.
fn until(file: &str) -> String {
    format!("until [ -e {file} ]; do sleep 0.02; done")
}

/// Issue 13: a denyRead file is hidden by a mount over it, which the kernel detaches when
/// a program on the host replaces the file. Each way editors and tools replace one is
/// tried while the command runs (vim: the old one moved aside and a new one written; a
/// new file renamed over it; a directory moved aside and made again); the sandbox's own
/// view (through /proc/PID/root) must hide each again, and the command, reading only
/// then, gets none of the new secrets. It fails on a build without `launch::remask`.
#[test]
fn a_hidden_file_the_host_replaces_during_the_session_stays_hidden() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write(".env", "secret-1\n");
        ws.write("config/.env", "secret-1\n");
        ws.write("keys/old", "key-1\n");
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyRead":[".env","config/.env","keys"]}}"#);
        let script = format!("touch ready; {}; cat .env; cat .env.orig; cat config/.env; ls keys; cat keys/new; cat keys.old/old; echo end", until("go"));
        let cmd = Marked::start(&ws, who, "replaced", &script);
        cmd.wait_for("ready");
        // The host replaces them while the command runs.
        std::fs::rename(ws.path().join(".env"), ws.path().join(".env.orig")).unwrap();
        ws.write(".env", "secret-2\n");
        ws.write("config/.env.tmp", "secret-3\n");
        std::fs::rename(ws.path().join("config/.env.tmp"), ws.path().join("config/.env")).unwrap();
        std::fs::rename(ws.path().join("keys"), ws.path().join("keys.old")).unwrap();
        ws.write("keys/new", "key-2\n");
        // What the sandbox sees now, read as root through its own mount namespace.
        cmd.wait_hidden(&[".env", "config/.env"], true);
        while !std::fs::read_dir(cmd.inside("keys")).is_ok_and(|mut d| d.next().is_none()) {
            assert!(std::time::Instant::now() < cmd.deadline, "{who:?}: the replaced directory is still visible inside the sandbox");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = cmd.finish();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.ends_with("end\n"), "{who:?}: {}", text(&out));
        for secret in ["secret", "key"] {
            assert!(!stdout.contains(secret), "{who:?}: the sandbox read a hidden file: {}", text(&out));
        }
        assert_eq!(stderr.matches("Permission denied").count(), 6, "{who:?}: {}", text(&out));
        for path in [".env", "config/.env", "keys"] {
            let line = format!("replaced the hidden path {}/{path} during the session; it was hidden again", ws.path().display());
            assert!(stderr.contains(&line), "{who:?}: {path}: {}", text(&out));
        }
    }
}

/// As an attacker, against the re-hiding: the command moves a hidden file's directory
/// away and leaves a symlink in its place, so that the host's next save of the secret goes
/// through the link. sbx hides the file the host wrote, wherever the link leads, and mounts
/// nothing on any other file: the command reads none of the new secret, and what it can
/// read is unchanged.
#[test]
fn a_symlink_planted_above_a_hidden_file_leads_the_re_hiding_nowhere_else() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("config/.env", "secret-1\n");
        ws.write("decoy", "decoy\n");
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyRead":["config/.env"]}}"#);
        let script = format!("mv config moved && ln -s moved config && touch ready; {}; cat config/.env; cat moved/.env; cat decoy; echo end", until("go"));
        let cmd = Marked::start(&ws, who, "link", &script);
        cmd.wait_for("ready");
        // The host saves the secret by its old path, through the command's link.
        ws.write("config/.env.tmp", "secret-2\n");
        std::fs::rename(ws.path().join("config/.env.tmp"), ws.path().join("config/.env")).unwrap();
        // The sandbox's own view, read as root, until the new file is hidden there.
        cmd.wait_hidden(&["moved/.env"], true);
        let out = cmd.finish();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.ends_with("decoy\nend\n"), "{who:?}: {}", text(&out));
        assert!(!stdout.contains("secret"), "{who:?}: the sandbox read a hidden file: {}", text(&out));
        assert_eq!(read(&ws.path().join("moved/.env")), "secret-2\n", "{who:?}: the host's file is its own");
    }
}

/// As an attacker, against the re-hiding: once the watch runs, the command moves a hidden
/// file's directory away (one level up, and two) and makes it again, empty, so that the
/// host's next save of the secret lands in a directory the watch never saw. sbx follows
/// the path, not the directory: the new files are hidden inside, the command reads none of
/// them, and the moved masks still hide the old ones.
#[test]
fn a_hidden_files_directory_moved_away_and_made_again_is_still_watched() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("config/.env", "secret-1\n");
        ws.write("deep/er/.env", "secret-1\n");
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyRead":["config/.env","deep/er/.env"]}}"#);
        let script = format!(
            "touch ready; {}; mv config moved && mkdir config && mv deep deep2 && mkdir -p deep/er && touch remade; {}; cat config/.env; cat moved/.env; cat deep/er/.env; cat deep2/er/.env; echo end",
            until("armed"),
            until("go")
        );
        let cmd = Marked::start(&ws, who, "moved", &script);
        cmd.wait_for("ready");
        // Past the moment the hidden paths are watched (100 ms into the command).
        std::thread::sleep(std::time::Duration::from_millis(500));
        ws.write("armed", "");
        cmd.wait_for("remade");
        // The host saves the secrets at their paths, in the directories the command made.
        ws.write("config/.env", "secret-2\n");
        ws.write("deep/er/.env.tmp", "secret-2\n");
        std::fs::rename(ws.path().join("deep/er/.env.tmp"), ws.path().join("deep/er/.env")).unwrap();
        cmd.wait_hidden(&["config/.env", "deep/er/.env"], true);
        let out = cmd.finish();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.ends_with("end\n"), "{who:?}: {}", text(&out));
        assert!(!stdout.contains("secret"), "{who:?}: the sandbox read a hidden file: {}", text(&out));
        assert_eq!(read(&ws.path().join("config/.env")), "secret-2\n", "{who:?}: the host's file is its own");
    }
}

/// As an attacker, against the re-hiding's chains: two hidden files in two directories;
/// the command moves the second's directory aside and the first's directory into its place.
/// The watched directory now on the second path is the one watched for the first: sbx must
/// follow it under its new name, and hide the file the host then saves at the second path
/// (it must not look for it at the first path, where nothing is any more).
#[test]
fn a_watched_directory_moved_onto_another_hidden_files_path_is_followed_there() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("a/.env", "secret-a\n");
        ws.write("b/.env", "secret-b\n");
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyRead":["a/.env","b/.env"]}}"#);
        let script = format!("touch ready; {}; mv b b-old && mv a b && touch remade; {}; cat b/.env; echo end", until("armed"), until("go"));
        let cmd = Marked::start(&ws, who, "swap", &script);
        cmd.wait_for("ready");
        std::thread::sleep(std::time::Duration::from_millis(500));
        ws.write("armed", "");
        cmd.wait_for("remade");
        std::thread::sleep(std::time::Duration::from_millis(200));
        // The host saves the second secret at its path, by a rename, as editors do.
        ws.write("b/.env.tmp", "secret-2\n");
        std::fs::rename(ws.path().join("b/.env.tmp"), ws.path().join("b/.env")).unwrap();
        cmd.wait_hidden(&["b/.env"], false);
        let out = cmd.finish();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.ends_with("end\n"), "{who:?}: {}", text(&out));
        assert!(!stdout.contains("secret"), "{who:?}: the sandbox read the file the host saved at a hidden path: {}", text(&out));
    }
}

/// As an attacker, against the re-hiding's start: before the watch starts (the command's
/// first 100 ms), the command moves a hidden file's directory aside and leaves a symlink to
/// it at its name, then, once the watch runs, puts the directory back. The watch must
/// follow the hidden path as it was at the launch, not where a symlink of the command's
/// led when the watch started: the file the host then saves at the path is hidden.
#[test]
fn a_symlink_left_at_a_hidden_files_directory_before_the_watch_starts_misleads_nothing() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("config/.env", "secret-1\n");
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyRead":["config/.env"]}}"#);
        let script = format!(
            "mv config config-moved && ln -s config-moved config && touch ready; {}; rm config && mv config-moved config && touch remade; {}; cat config/.env; echo end",
            until("armed"),
            until("go")
        );
        let cmd = Marked::start(&ws, who, "early", &script);
        cmd.wait_for("ready");
        std::thread::sleep(std::time::Duration::from_millis(500));
        ws.write("armed", "");
        cmd.wait_for("remade");
        std::thread::sleep(std::time::Duration::from_millis(200));
        ws.write("config/.env.tmp", "secret-2\n");
        std::fs::rename(ws.path().join("config/.env.tmp"), ws.path().join("config/.env")).unwrap();
        cmd.wait_hidden(&["config/.env"], false);
        let out = cmd.finish();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.ends_with("end\n"), "{who:?}: {}", text(&out));
        assert!(!stdout.contains("secret"), "{who:?}: the sandbox read the file the host saved at a hidden path: {}", text(&out));
    }
}

/// The inotify watches (`inotify wd:` lines of their fdinfo) that sbx's processes for the
/// command marked `mark` hold.
fn sbx_inotify_watches(mark: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(mark)))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e.file_name().is_some_and(|n| n.to_string_lossy().starts_with("sbx"))))
        .flat_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fdinfo")).into_iter().flatten().flatten())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|info| info.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

/// As an attacker, against the re-hiding's chains: the command renames a hidden file's
/// directory away and makes it again, thousands of times, keeping every old one. sbx
/// watches each new directory (it is on the hidden path's way); a watch it left on every
/// old one would grow without bound, in the kernel and charged to sbx's user (root's
/// inotify watches are the whole host's: `fs.inotify.max_user_watches`), and once that
/// limit is reached the next directory could not be watched at all. The directories that
/// left the path are no longer watched: sbx's watches stay few.
#[test]
fn renaming_a_hidden_files_directory_away_in_a_loop_leaves_no_watch_behind() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("sub/.env", "secret-1\n");
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyRead":["sub/.env"]}}"#);
        let mark = format!("sbx-remask-loop-{}-{who:?}", std::process::id());
        let loop_py = "import os, time\nfor i in range(2000):\n    os.rename('sub', f'old/{i}')\n    os.mkdir('sub')\n    time.sleep(0.001)\nopen('looped', 'w').close()\n";
        ws.write("loop.py", loop_py);
        let wait = |f: &str| format!("until [ -e {f} ]; do sleep 0.02; done");
        let script = format!(": {mark}; mkdir old; sleep 0.5; python3 loop.py; {}; echo end", wait("go"));
        let child = ws.sbx(["run", "--", "/bin/sh", "-c", &script]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !ws.path().join("looped").exists() {
            assert!(std::time::Instant::now() < deadline, "{who:?}: the loop did not end");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
        let watches = sbx_inotify_watches(&mark);
        ws.write("go", "");
        let out = child.wait_with_output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("end\n"), "{who:?}: {}", text(&out));
        assert!(watches > 0, "{who:?}: no watch of sbx's found");
        assert!(watches < 100, "{who:?}: sbx holds {watches} inotify watches after 2000 renames");
    }
}

/// A `denyWrite` path that does not exist at start cannot be mounted read-only: it is
/// watched like the protected names (moved away the moment it appears, a second stops
/// the command), for a file and for a directory, and nothing of it is left on the host.
#[test]
fn deny_write_on_a_missing_path_keeps_it_from_being_made() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", r#"{"filesystem":{"denyWrite":["out.txt","gen"]}}"#);
        let script = "echo x > out.txt; for i in $(seq 100); do test -e out.txt || break; sleep 0.05; done; test -e out.txt && echo still-there; mkdir gen && echo y > gen/a; sleep 20; echo survived";
        let out = ws.run_sh(script);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(137), "{who:?}: {}", text(&out));
        assert!(!stdout.contains("still-there") && !stdout.contains("survived"), "{who:?}: {}", text(&out));
        assert!(stderr.contains("sbx: stopped the command: it created protected names that were missing at start, twice"), "{who:?}: {stderr}");
        for name in ["out.txt", "gen"] {
            assert!(!ws.path().join(name).exists(), "{who:?}: {name} is on the host");
            assert!(stderr.contains(&format!("sbx: tamper: the protected path {} was created during the session; moved to", ws.path().join(name).display())), "{who:?}: {stderr}");
        }
    }
}

#[test]
fn default_deny_read_leaves_system_paths_and_the_workspace() {
    require_root!();
    let ws = Workspace::new_in(As::Root, "/var/tmp");
    ws.write("mine", "mine\n");
    let other = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(other.path().join("theirs"), "theirs\n").unwrap();
    ws.write("sbx.jsonc", r#"{ "filesystem": { "defaultDenyRead": true } }"#);
    let out = ws.run_sh(&format!("cat mine; cat {}/theirs; ls /root; head -c 4 /etc/os-release; echo", other.path().display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("mine\n"), "{}", text(&out));
    assert!(!stdout.contains("theirs"), "{}", text(&out));
    assert!(stdout.contains("PRET"), "system paths stay readable: {}", text(&out));
}

#[test]
fn host_processes_are_invisible_and_unsignalable() {
    require_root!();
    let mut victim = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = victim.id();
    for who in WHO {
        let ws = Workspace::new(who);
        let out = ws.run_sh(&format!("kill -9 {pid}; ls /proc | grep -c '^[0-9]'; test -e /proc/{pid} && echo visible || echo invisible"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("invisible"), "{who:?}: {}", text(&out));
        assert!(victim.try_wait().unwrap().is_none(), "{who:?}: the host process was killed");
        let procs: usize = stdout.lines().next().unwrap().trim().parse().unwrap();
        assert!(procs <= 4, "{who:?}: the sandbox sees {procs} processes");
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
}

#[test]
fn every_blocked_syscall_fails_inside() {
    require_root!();
    require_tool("cc");
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("blocked.c", include_str!("../fixtures/blocked.c"));
        let out = ws.run_sh("cc -O0 -o blocked blocked.c && ./blocked");
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let seen = sbx_integration_tests::assert_blocked_calls(&stdout, who);
        assert_eq!(seen, 44, "{who:?}: every call must report: {stdout}");
    }
}

#[test]
fn no_raw_disks_or_host_devices() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        let out = ws.run_sh("ls /dev; for d in /dev/vda /dev/sda /dev/nvme0n1 /dev/mem /dev/kmsg; do head -c1 $d >/dev/null 2>&1 && echo READ $d; done; true");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("READ"), "{who:?}: {}", text(&out));
        for line in stdout.lines().filter(|l| !l.starts_with("READ")) {
            assert!(
                ["core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"]
                    .contains(&line),
                "{who:?}: unexpected device {line}"
            );
        }
    }
}

#[test]
fn the_environment_is_sanitised() {
    require_root!();
    let ws = Workspace::new(As::Root);
    let out = ws
        .sbx(["run", "--", "/bin/sh", "-c", "echo \"[$LD_PRELOAD][$LD_LIBRARY_PATH][$BASH_ENV][$SBX_SANDBOX][$KEEP]\""])
        .env("LD_PRELOAD", "/evil.so")
        .env("LD_LIBRARY_PATH", "/evil")
        .env("BASH_ENV", "/evil.sh")
        .env("KEEP", "kept")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[][][][1][kept]\n", "{}", text(&out));
}

#[test]
fn legitimate_work_succeeds() {
    require_root!();
    for tool in ["git", "cc", "python3"] {
        require_tool(tool);
    }
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("hello.c", "#include <stdio.h>\nint main(void){puts(\"compiled\");return 0;}\n");
        let script = "set -e
            git init -q . && git -c user.email=t@example.invalid -c user.name=t add hello.c
            git -c user.email=t@example.invalid -c user.name=t commit -q -m init && git log --oneline | wc -l
            cc -o hello hello.c && ./hello
            python3 -c 'import json,sys; print(json.dumps({\"py\": sys.version_info[0]}))'
            mkdir -p build/out && echo data > build/out/f && cat build/out/f
            echo t > /tmp/scratch && cat /tmp/scratch";
        let out = ws.run_sh(script);
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\ncompiled\n{\"py\": 3}\ndata\nt\n", "{who:?}");
        assert!(ws.path().join(".git/objects").is_dir());
    }
}

#[test]
fn stage2_works_wherever_sbx_is_installed() {
    require_root!();
    let user = test_user();
    // Under the user's home, as ~/.cargo/bin would be, run from a workspace
    // under that home and from one under /tmp.
    let bin_dir = user.home.join(".cargo/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    chown(&user.home.join(".cargo"), user.uid, user.gid);
    chown(&bin_dir, user.uid, user.gid);
    let bin = bin_dir.join("sbx");
    std::fs::copy(sbx_integration_tests::sbx_bin(), &bin).unwrap();
    chown(&bin, user.uid, user.gid);
    for ws in [Workspace::new_in(As::User, &user.home), Workspace::new(As::User)] {
        let out = ws.sbx_at(&bin, ["run", "--", "/bin/sh", "-c", "pwd; echo ok > f && cat f"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\nok\n", ws.path().display()), "{}", text(&out));
    }
}

/// Regression: socketpair(AF_UNIX, SOCK_DGRAM) was allowed, and a datagram socket sends to any
/// path named in sendto(2), so a sandboxed process reached host datagram sockets (/dev/log,
/// the journal) although socket(AF_UNIX) was refused.
#[test]
fn host_datagram_sockets_are_unreachable_through_socketpairs() {
    require_root!();
    require_tool("python3");
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let path = dir.path().join("host-dgram.sock");
    let host = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    host.set_nonblocking(true).unwrap();
    let script = format!(
        "python3 -c 'import socket,sys\na,b=socket.socketpair(socket.AF_UNIX,socket.SOCK_DGRAM)\na.sendto(b\"from the sandbox\",sys.argv[1])\nprint(\"sent\")' {} 2>&1; \
         python3 -c 'import socket\na,b=socket.socketpair()\na.send(b\"x\")\nprint(\"stream pair\", b.recv(1))'",
        path.display()
    );
    let ws = Workspace::new(As::Root);
    let out = ws.run_sh(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("sent"), "{}", text(&out));
    assert!(stdout.contains("Operation not permitted"), "{}", text(&out));
    // Stream pairs (pipes between the command's own processes) still work.
    assert!(stdout.contains("stream pair b'x'"), "{}", text(&out));
    let mut buf = [0u8; 64];
    assert!(host.recv(&mut buf).is_err(), "the host socket received a datagram");
    ws.write("sbx.jsonc", r#"{ "network": { "allowAllUnixSockets": true } }"#);
    let out = ws.run_sh(&script);
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent"), "{}", text(&out));
    assert_eq!(host.recv(&mut buf).map(|n| buf[..n].to_vec()).ok(), Some(b"from the sandbox".to_vec()));
}

#[test]
fn host_unix_sockets_are_unreachable_unless_allowed() {
    require_root!();
    require_tool("python3");
    // A listening socket on the host, in a directory the sandbox can see.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let path = dir.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let script = format!(
        "python3 -c 'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(\"connected\")' {} 2>&1; true",
        path.display()
    );
    let ws = Workspace::new(As::Root);
    let out = ws.run_sh(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("connected"), "{}", text(&out));
    assert!(stdout.contains("Operation not permitted"), "{}", text(&out));
    assert!(listener.accept().is_err(), "the host socket saw a connection");
    ws.write("sbx.jsonc", r#"{ "network": { "allowAllUnixSockets": true } }"#);
    let out = ws.run_sh(&script);
    assert!(String::from_utf8_lossy(&out.stdout).contains("connected"), "{}", text(&out));
}

/// `allowUnixSockets`: the listed host socket is reachable (by its path, a relative path and a
/// symlink in the workspace), another socket file and an abstract socket are not and their
/// servers see no connection, datagram Unix sockets stay refused, TCP connects (mediated too)
/// still work, and each refusal is a seccomp denial naming the path in the log.
#[test]
fn allow_unix_sockets_reaches_only_the_listed_socket() {
    use std::io::Read as _;
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixListener};
    require_root!();
    require_tool("python3");
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let allowed = dir.path().join("allowed.sock");
    let other = dir.path().join("other.sock");
    let listen = |p: &Path| {
        let l = UnixListener::bind(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        l.set_nonblocking(true).unwrap();
        l
    };
    let (allowed_l, other_l) = (listen(&allowed), listen(&other));
    let abstract_name = format!("sbx-test-abstract-{}", std::process::id());
    let abstract_l = UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap()).unwrap();
    abstract_l.set_nonblocking(true).unwrap();
    let script = r#"
import os, socket, sys
def attempt(label, addr):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(addr)
        s.sendall(label.encode())
        print(label, "connected")
    except OSError as e:
        print(label, "errno", e.errno)
    s.close()
attempt("allowed", sys.argv[1])
attempt("other", sys.argv[2])
attempt("abstract", "\0" + sys.argv[3])
attempt("symlink", "link.sock")
os.chdir(os.path.dirname(sys.argv[1]))
attempt("relative", "allowed.sock")
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    print("dgram created")
except OSError as e:
    print("dgram errno", e.errno)
t = socket.create_connection(("127.0.0.1", 3128))
print("tcp connected")
import select
n = socket.socket()
n.setblocking(False)
print("nonblocking tcp", n.connect_ex(("127.0.0.1", 3128)) in (0, 115), select.select([], [n], [], 10)[1] == [n], n.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
"#;
    let expected = "allowed connected\nother errno 1\nabstract errno 1\nsymlink connected\nrelative connected\ndgram errno 1\ntcp connected\nnonblocking tcp True True 0\n";
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowUnixSockets": ["{}"] }} }}"#, allowed.display()));
        ws.write("probe.py", script);
        std::os::unix::fs::symlink(&allowed, ws.path().join("link.sock")).unwrap();
        let log = ws.path().join("audit.jsonl");
        // Plain `sbx run` (the filter's deny action is ERRNO, connect alone is notified), then
        // with a log (every blocked call notified).
        for with_log in [false, true] {
            let mut cmd = ws.sbx(["run"]);
            if with_log {
                cmd.arg("--log").arg(&log);
            }
            let args = ["--", "python3", "probe.py", &allowed.to_string_lossy(), &other.to_string_lossy(), &abstract_name];
            let out = cmd.args(args).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{who:?}, log {with_log}: {}", text(&out));
            let mut seen = Vec::new();
            while let Ok((mut s, _)) = allowed_l.accept() {
                s.set_nonblocking(false).unwrap();
                let mut label = String::new();
                s.read_to_string(&mut label).unwrap();
                seen.push(label);
            }
            assert_eq!(seen, ["allowed", "symlink", "relative"], "{who:?}, log {with_log}");
            assert!(other_l.accept().is_err(), "{who:?}: the other socket saw a connection");
            assert!(abstract_l.accept().is_err(), "{who:?}: the abstract socket saw a connection");
        }
        let events = sbx_integration_tests::read_log(&log);
        let refused: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "denial" && e["source"] == "seccomp" && e["syscall"] == "connect")
            .map(|e| (e["path"].as_str().unwrap_or("").to_owned(), e["detail"]["call"].as_str().unwrap_or("").to_owned()))
            .collect();
        let other_call = format!("connect(3, {{AF_UNIX, {:?}}}, {})", other.display().to_string(), other.as_os_str().len() + 3);
        let abstract_call = format!("connect(3, {{AF_UNIX, @{abstract_name:?}}}, {})", abstract_name.len() + 3);
        assert_eq!(
            refused,
            [(other.display().to_string(), other_call), (String::new(), abstract_call)],
            "{who:?}: {events:?}"
        );
    }
}

/// Issue 18, point 5: `git config user.email` in a repository that existed at start fails
/// closed (git renames `config.lock` onto the read-only `.git/config`: EBUSY), and the log
/// holds that refusal as a denial with the protected path, the layer and a hint naming
/// `allowGitConfig`; a hard link of a protected file (EXDEV) is one too. With allowGitConfig
/// the same command works and leaves no denial.
#[test]
fn refused_renames_and_links_of_protected_files_are_hinted_denials() {
    require_root!();
    require_tool("git");
    for who in WHO {
        let ws = Workspace::new(who);
        let init = std::process::Command::new("git").args(["init", "-q"]).arg(ws.path()).output().unwrap();
        assert!(init.status.success(), "{}", text(&init));
        if who == As::User {
            let u = test_user();
            let owned = std::process::Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", u.uid, u.gid))
                .arg(ws.path().join(".git"))
                .status()
                .unwrap();
            assert!(owned.success());
        }
        ws.write(".bashrc", "original\n");
        let log = ws.path().join("audit.jsonl");
        let out = ws
            .sbx(["monitor", "--no-tui", "--log"])
            .arg(&log)
            .args([
                "--",
                "/bin/sh",
                "-c",
                "git config user.email t@example.invalid; echo config=$?; ln .bashrc copy; echo link=$?",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("config=") && !stdout.contains("config=0") && stdout.contains("link=1"),
            "{who:?}: {}",
            text(&out)
        );
        let config = ws.path().join(".git/config");
        assert!(!read(&config).contains("t@example.invalid"), "{who:?}: {}", text(&out));
        // An unprivileged sbx has no kernel tracer, so no file denial to check (it says so).
        let denials: Vec<_> = read_log(&log).into_iter().filter(|e| e["type"] == "denial").collect();
        if who == As::User {
            assert!(denials.is_empty() && text(&out).contains("not observed"), "{who:?}: {}", text(&out));
        }
        let on = |path: &Path, errno: &str| {
            denials
                .iter()
                .find(|d| d["path"] == path.to_str().unwrap() && d["errno"] == errno)
                .unwrap_or_else(|| panic!("{who:?}: no {errno} denial of {}: {denials:#?}", path.display()))
        };
        if who == As::Root {
            let d = on(&config, "EBUSY");
            assert_eq!((d["source"].as_str(), d["operation"].as_str()), (Some("mount"), Some("rename")), "{d}");
            assert!(d["detail"]["hint"].as_str().unwrap().contains("filesystem.allowGitConfig"), "{d}");
            let d = on(&ws.path().join(".bashrc"), "EXDEV");
            assert_eq!(d["source"], "mount", "{d}");
            assert!(text(&out).contains("denials"), "the summary names them: {}", text(&out));
        }
        ws.write("sbx.jsonc", r#"{ "filesystem": { "allowGitConfig": true } }"#);
        let log = ws.path().join("allowed.jsonl");
        let out = ws
            .sbx(["monitor", "--no-tui", "--log"])
            .arg(&log)
            .args(["--", "git", "config", "user.email", "t@example.invalid"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let denials: Vec<_> = read_log(&log).into_iter().filter(|e| e["type"] == "denial").collect();
        assert!(denials.is_empty(), "{who:?}: {denials:#?}");
        assert!(read(&config).contains("t@example.invalid"));
    }
}

/// Issue 18, point 5: a repository made during the session had no read-only mounts (git
/// must write its configuration to create it), so at exit it keeps only what runs nothing:
/// safe keys stay (user, remotes, branches), a key that runs something, a hook and the
/// config's unsafe keys go to the quarantine. A plain `git init` and commit loses nothing.
#[test]
fn a_repository_made_in_the_session_keeps_only_what_runs_nothing() {
    require_root!();
    require_tool("git");
    for who in WHO {
        let ws = Workspace::new(who);
        let out = ws.run_sh(
            "git init -q -b main . && git config user.email t@example.invalid && git config user.name t && \
             echo x > f && git add f && git commit -q -m one && git config core.fsmonitor 'touch /tmp/evil' && \
             printf '#!/bin/sh\\ntouch evil\\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && echo done",
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{who:?}: {}", text(&out));
        let config = read(&ws.path().join(".git/config"));
        assert!(config.contains("email = t@example.invalid") && !config.contains("fsmonitor"), "{who:?}: {config}");
        assert!(!ws.path().join(".git/hooks/pre-commit").exists(), "{who:?}: the hook stayed");
        assert!(ws.path().join(".git/hooks/pre-commit.sample").exists());
        let log = std::process::Command::new("git").arg("-C").arg(ws.path()).args(["-c", "safe.directory=*", "log", "--format=%s"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&log.stdout), "one\n", "{}", text(&log));
        // A plain repository: nothing to take away.
        let ws = Workspace::new(who);
        let out = ws.run_sh("git init -q . && git -c user.email=t@example.invalid -c user.name=t commit -q --allow-empty -m one && echo done");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{who:?}: {}", text(&out));
        assert!(!text(&out).contains("quarantine"), "{who:?}: {}", text(&out));
    }
}
