//! Issue 13: nothing the sandboxed command writes may run on the host later.
//! Each test plants what an attacker would and checks the host's state
//! afterwards, as root and as an unprivileged user.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use sbx_integration_tests::{As, Workspace, chown, require_root, test_user, text};

const WHO: [As; 2] = [As::Root, As::User];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A directory owned by whoever runs sbx, outside the workspace.
fn own_dir(who: As) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if who == As::User {
        let u = test_user();
        chown(dir.path(), u.uid, u.gid);
    }
    dir
}

/// Writes an executable script owned by whoever runs sbx.
fn script(who: As, path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    if who == As::User {
        let u = test_user();
        chown(path, u.uid, u.gid);
    }
}

/// Reproduction 5: a `bwrap` planted in a directory that comes first on PATH is never
/// executed, by `sbx run` or by `sbx doctor`, which names the one it uses.
#[test]
fn a_bwrap_planted_first_on_path_is_never_run() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        let bin = own_dir(who);
        let canary = bin.path().join("canary");
        script(who, &bin.path().join("bwrap"), &format!("#!/bin/sh\ntouch {}\nexec /usr/bin/bwrap \"$@\"\n", canary.display()));
        let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
        let out = ws.sbx(["run", "--", "/bin/sh", "-c", "echo ran"]).env("PATH", &path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n", "{who:?}");
        assert!(!canary.exists(), "{who:?}: sbx run executed the bwrap found on PATH");
        let out = ws.sbx(["doctor", "--json"]).env("PATH", &path).output().unwrap();
        assert!(!canary.exists(), "{who:?}: sbx doctor executed the bwrap found on PATH");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        let check = report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "bubblewrap").unwrap();
        assert_eq!(check["verdict"], "ok", "{check}");
        let detail = check["detail"].as_str().unwrap();
        assert!(
            detail.contains("/usr/bin/bwrap: it and every directory above it are owned by root and writable by no one else (sbx never takes bwrap from $PATH)"),
            "{detail}"
        );
    }
}

/// Reproduction 6: `/`, the home directory, a parent of it and system directories are
/// refused as the workspace, in one sentence naming the flag that accepts them.
#[test]
fn unsafe_workspaces_are_refused_in_one_sentence() {
    require_root!();
    let user = test_user();
    let home = user.home.canonicalize().unwrap();
    let cases: [(As, PathBuf, &str); 5] = [
        (As::Root, "/".into(), "the root directory"),
        (As::Root, "/etc".into(), "a system directory"),
        (As::User, home.clone(), "your home directory"),
        (As::User, home.parent().unwrap().to_path_buf(), "a parent of your home directory"),
        (As::User, "/usr/bin".into(), "a system directory"),
    ];
    for (who, dir, why) in cases {
        let ws = Workspace::new(who);
        let canary = ws.path().join("canary");
        for verb in ["run", "monitor"] {
            let mut args = vec![verb];
            if verb == "monitor" {
                args.push("--no-tui");
            }
            let script = format!("touch {}", canary.display());
            args.extend(["--", "/bin/sh", "-c", &script]);
            let out = ws.sbx(&args).current_dir(&dir).output().unwrap();
            assert_eq!(out.status.code(), Some(125), "{who:?} {}: {}", dir.display(), text(&out));
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                format!(
                    "sbx: the workspace {} is {why}, where a command could change what runs outside the sandbox later; run sbx from a project directory, or pass --unsafe-workspace to accept it\n",
                    dir.display()
                )
            );
            assert!(!canary.exists(), "{who:?} {}: the command ran", dir.display());
        }
    }
}

/// With `--unsafe-workspace` the home is the workspace, and its protections still hold.
#[test]
fn an_accepted_home_workspace_keeps_the_home_protections() {
    require_root!();
    let user = test_user();
    let ws = Workspace::new(As::User);
    let bashrc = user.home.join(".bashrc");
    std::fs::write(&bashrc, "original\n").unwrap();
    chown(&bashrc, user.uid, user.gid);
    let note = user.home.join("sbx-unsafe-note");
    let out = ws
        .sbx(["run", "--unsafe-workspace", "--", "/bin/sh", "-c", "echo evil >> .bashrc; echo ok > sbx-unsafe-note"])
        .current_dir(&user.home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(read(&note), "ok\n");
    assert_eq!(read(&bashrc), "original\n", "{}", text(&out));
    std::fs::remove_file(note).unwrap();
}

/// Gives `path` and everything below it to whoever runs sbx.
fn give(who: As, path: &Path) {
    if who != As::User {
        return;
    }
    let u = test_user();
    chown(path, u.uid, u.gid);
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            give(who, &entry.path());
        }
    }
}

/// Creates `rel` under `root` (a directory when it ends with `/`), owned by `who`.
fn plant(who: As, root: &Path, rel: &str, contents: &str) -> PathBuf {
    let path = root.join(rel);
    if rel.ends_with('/') {
        std::fs::create_dir_all(&path).unwrap();
    } else {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
    }
    give(who, root);
    path
}

/// Reproduction 3: with the whole home writable (`allowWrite: ["~"]`), its startup files,
/// ssh, autostart, systemd units and PATH directories (the usual ones and those of the
/// user's own $PATH) stay read-only, and renaming their parents does not carry the
/// protection away; a path named exactly in allowWrite is writable.
#[test]
fn home_startup_files_and_path_directories_stay_read_only() {
    require_root!();
    for who in WHO {
        let home_dir = own_dir(who);
        let home = home_dir.path();
        for (rel, contents) in [
            (".zshenv", "original\n"),
            (".bash_login", "original\n"),
            (".ssh/authorized_keys", "original\n"),
            (".ssh/rc", "original\n"),
            (".config/autostart/", ""),
            (".config/systemd/user/", ""),
            (".config/fish/config.fish", "original\n"),
            (".config/git/config", "original\n"),
            (".local/bin/", ""),
            (".bun/bin/", ""),
            (".bun/install/cache/", ""),
            (".cargo/bin/", ""),
            ("tools/bin/", ""),
        ] {
            plant(who, home, rel, contents);
        }
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", r#"{ "filesystem": { "allowWrite": ["~", "~/.cargo/bin"] } }"#);
        let script = "cd ~; echo evil >> .zshenv; echo evil >> .bash_login; echo evil >> .ssh/authorized_keys; echo evil > .ssh/rc;
            echo evil > .config/autostart/x.desktop; echo evil > .config/systemd/user/x.service; echo evil >> .config/fish/config.fish;
            echo evil >> .config/git/config; echo evil > .local/bin/ls; echo evil > .bun/bin/bwrap; echo evil > tools/bin/git;
            mv .config .config-moved && mkdir -p .config/autostart && echo evil > .config/autostart/y.desktop;
            mv .local .local-moved; mv .ssh .ssh-moved; mv .bun/bin .bun/bin-moved;
            echo ok > .bun/install/cache/pkg; echo ok > .cargo/bin/tool; echo ok > note; true";
        let out = ws
            .sbx(["run", "--", "/bin/sh", "-c", script])
            .env("HOME", home)
            .env("PATH", format!("{}:/usr/bin:/bin", home.join("tools/bin").display()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        for f in [".zshenv", ".bash_login", ".ssh/authorized_keys", ".ssh/rc", ".config/fish/config.fish", ".config/git/config"] {
            assert_eq!(read(&home.join(f)), "original\n", "{who:?}: {f} was changed: {}", text(&out));
        }
        for f in [
            ".config/autostart/x.desktop",
            ".config/autostart/y.desktop",
            ".config/systemd/user/x.service",
            ".local/bin/ls",
            ".bun/bin/bwrap",
            "tools/bin/git",
            ".config-moved",
            ".local-moved",
            ".ssh-moved",
            ".bun/bin-moved",
        ] {
            assert!(!home.join(f).exists(), "{who:?}: {f} exists: {}", text(&out));
        }
        for f in [".bun/install/cache/pkg", ".cargo/bin/tool", "note"] {
            assert_eq!(read(&home.join(f)), "ok\n", "{who:?}: {f}: {}", text(&out));
        }
    }
}

/// Reproduction 7: a policy file reached through `extends` (or given with `-s`) that the
/// command could write makes sbx refuse to start, in one sentence.
#[test]
fn a_policy_file_the_command_could_write_is_refused() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        let canary = ws.path().join("canary");
        ws.write("policies/base.jsonc", "{}\n");
        ws.write("sbx.jsonc", r#"{ "extends": "./policies/base.jsonc" }"#);
        ws.write("sub/p.jsonc", "{}\n");
        let base = ws.path().canonicalize().unwrap().join("policies/base.jsonc");
        let given = ws.path().canonicalize().unwrap().join("sub/p.jsonc");
        for (args, file) in [(vec!["run"], &base), (vec!["monitor", "--no-tui"], &base), (vec!["run", "-s", "sub/p.jsonc"], &given)] {
            let mut args = args.clone();
            args.extend(["--", "/usr/bin/touch", "canary"]);
            let out = ws.sbx(&args).output().unwrap();
            assert_eq!(out.status.code(), Some(125), "{who:?} {args:?}: {}", text(&out));
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                format!(
                    "sbx: the policy file {} could be changed by the command it confines (it is inside the writable {}); move it out of the workspace and the allowWrite paths, or make it the workspace's own sbx.jsonc, which is read-only in the sandbox\n",
                    file.display(),
                    ws.path().canonicalize().unwrap().display()
                ),
                "{who:?} {args:?}"
            );
            assert!(!canary.exists(), "{who:?} {args:?}: the command ran");
        }
    }
}

/// Reproduction 7: a policy file the command creates or changes anywhere in the workspace
/// (the next run from there reads it) is reported at exit, under `run` and `monitor`.
#[test]
fn policy_files_created_or_changed_in_the_workspace_are_reported() {
    require_root!();
    for who in WHO {
        let learned_dir = own_dir(who);
        let learned = learned_dir.path().join("learned.jsonc");
        for verb in [vec!["run"], vec!["monitor", "--no-tui"], vec!["learn", "--max-runs", "1", "-o", learned.to_str().unwrap()]] {
            let ws = Workspace::new(who);
            ws.write("old/sbx.json", "{}\n");
            let mut args = verb.clone();
            args.extend(["--", "/bin/sh", "-c", "mkdir -p new/deep && echo '{\"filesystem\":{\"allowWrite\":[\"~\"]}}' > new/deep/sbx.jsonc; echo '{\"extends\":\"code-relaxed\"}' > old/sbx.json"]);
            let out = ws.sbx(&args).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{who:?} {verb:?}: {}", text(&out));
            let root = ws.path().canonicalize().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            for (file, change) in [("new/deep/sbx.jsonc", "created"), ("old/sbx.json", "changed")] {
                let path = root.join(file);
                let line = format!(
                    "sbx: warning: the policy file {} was {change} during the session: an sbx run in {} reads it as the policy; review it or delete it\n",
                    path.display(),
                    path.parent().unwrap().display()
                );
                assert!(stderr.contains(&line), "{who:?} {verb:?}: no {line:?} in {stderr}");
            }
        }
    }
}

/// Reproduction 8: a deny glob whose walk is cut short by planted files refuses to run,
/// before the command starts, in one sentence with the rule and the count.
#[test]
fn a_deny_glob_cut_short_by_planted_files_refuses_to_run() {
    require_root!();
    let ws = Workspace::new(As::Root);
    ws.write("config/.env", "TOPSECRET\n");
    ws.write("sbx.jsonc", r#"{ "filesystem": { "denyRead": ["**/.env"] } }"#);
    let many = ws.path().join("aaa-planted");
    std::fs::create_dir(&many).unwrap();
    // More than the walk's cap (launch::glob::MAX_ENTRIES, 300,000 entries).
    for i in 0..300_001 {
        std::fs::File::create(many.join(format!("f{i}"))).unwrap();
    }
    let root = ws.path().canonicalize().unwrap();
    for verb in [vec!["run"], vec!["monitor", "--no-tui"]] {
        let mut args = verb.clone();
        args.extend(["--", "/bin/cat", "config/.env"]);
        let out = ws.sbx(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{verb:?}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("TOPSECRET"), "{verb:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "sbx: the denyRead rule {}/**/.env cannot be applied in full: its walk stopped after 300000 entries, so a matching file could stay unprotected; narrow the rule or remove files under {}\n",
                root.display(),
                root.display()
            ),
            "{verb:?}"
        );
    }
}

/// A host command run as `who` (git refuses repositories of another owner).
fn host(who: As, program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).current_dir(dir).stdin(std::process::Stdio::null()).env("GIT_CONFIG_NOSYSTEM", "1");
    if who == As::User {
        cmd.env("HOME", &test_user().home);
        sbx_integration_tests::as_test_user(&mut cmd);
    }
    cmd.output().unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn git(who: As, dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"];
    all.extend_from_slice(args);
    host(who, "git", &all, dir)
}

/// The workspace of the git tests: a repository with a hooks path (.husky), two
/// submodules (separate gitdirs under .git/modules), a nested repository two levels down
/// and one that the attack moves.
fn repositories(who: As) -> Workspace {
    let ws = Workspace::new(who);
    let w = ws.path();
    let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
    for dir in ["", "vendor/lib", "sub"] {
        plant(who, w, &format!("{dir}/x/"), "");
        ok(git(who, &w.join(dir), &["init", "-q", "."]));
    }
    plant(who, w, ".git/modules/", "");
    for m in ["m", "n"] {
        ok(git(who, w, &["init", "-q", "--separate-git-dir", &format!(".git/modules/{m}"), m]));
    }
    plant(who, w, ".husky/pre-commit", "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(w.join(".husky/pre-commit"), std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(git(who, w, &["config", "core.hooksPath", ".husky"]));
    ws
}

/// Each way in of reproductions 1 and 2, by the name of the canary its code touches.
const VECTORS: [&str; 9] = ["root-config", "husky", "sub-hook", "sub-config", "vendor-hook", "vendor-config", "m-hook", "m-config", "n-gitlink"];

/// The attack of reproductions 1 and 2: rename `.git` and directories holding nested
/// repositories away and copy them back (on main the read-only mounts moved with the
/// originals), then plant pre-commit hooks and core.fsmonitor commands where git looks:
/// the workspace's repository (its hooks live in .husky, core.hooksPath), a moved nested
/// one, a nested one two levels down, a submodule's gitdir, and a submodule's gitlink
/// pointed at a gitdir of the command's. Each touches its own canary in `dir`.
fn attack(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"hook() {{ printf '#!/bin/sh\ntouch {d}/%s\n' "$2" > "$1/pre-commit"; chmod +x "$1/pre-commit"; }}
fsm() {{ printf '[core]\n\tfsmonitor = touch {d}/%s\n' "$2" >> "$1"; }}
mv .git .git-moved && cp -a .git-moved .git && rm -rf .git-moved
mv sub sub2 && cp -a sub2 sub && rm -rf sub2
mv vendor vendor2 && cp -a vendor2 vendor && rm -rf vendor2
fsm .git/config root-config
hook .husky husky
hook sub/.git/hooks sub-hook; fsm sub/.git/config sub-config
hook vendor/lib/.git/hooks vendor-hook; fsm vendor/lib/.git/config vendor-config
hook .git/modules/m/hooks m-hook; fsm .git/modules/m/config m-config
mkdir -p evil && cp -a .git/modules/n/. evil/ && fsm evil/config n-gitlink && printf 'gitdir: ../evil\n' > n/.git
true"#
    )
}

/// After the attack, the host's own `git status` and `git commit` in every repository;
/// returns the canaries that appeared.
fn host_git_canaries(who: As, w: &Path, dir: &Path) -> Vec<&'static str> {
    for repo in ["", "sub", "vendor/lib", "m", "n"] {
        git(who, &w.join(repo), &["status", "--short"]);
        git(who, &w.join(repo), &["commit", "-q", "--allow-empty", "-m", "x"]);
    }
    VECTORS.into_iter().filter(|v| dir.join(v).exists()).collect()
}

/// Reproductions 1 and 2: no rename, copy or write makes a git administrative file of the
/// workspace's repository, a nested repository, a submodule or the core.hooksPath
/// directory run the command's code in the host's later `git status` or `git commit`.
/// The same attack run outside the sandbox proves that every canary would appear.
#[test]
fn git_administrative_files_cannot_be_moved_or_rewritten() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    for who in WHO {
        let control_dir = own_dir(who);
        let control = repositories(who);
        let out = host(who, "/bin/sh", &["-c", &attack(control_dir.path())], control.path());
        assert!(out.status.success(), "{who:?}: the control attack failed: {}", text(&out));
        assert_eq!(host_git_canaries(who, control.path(), control_dir.path()), VECTORS, "{who:?}: the control attack did not reach the host's git");

        // The default policy, and `-t code`, whose glob rules' walk of the workspace is the one
        // that finds the repositories (`glob::Walked`).
        for template in [&[][..], &["-t", "code"]] {
            let dir = own_dir(who);
            let home = own_dir(who);
            let ws = repositories(who);
            let out = ws.sbx(["run"].iter().chain(template).chain(&["--", "/bin/sh", "-c", &attack(dir.path())])).env("HOME", home.path()).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{who:?} {template:?}: {}", text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("Device or resource busy"), "{who:?} {template:?}: the renames were not refused: {stderr}");
            assert_eq!(host_git_canaries(who, ws.path(), dir.path()), Vec::<&str>::new(), "{who:?} {template:?}: the host's git ran the command's code: {}", text(&out));
            for repo in ["", "sub", "vendor/lib", "m", "n"] {
                let out = git(who, &ws.path().join(repo), &["status", "--short"]);
                assert!(out.status.success(), "{who:?} {template:?}: git status in {repo:?} fails after the session: {}", text(&out));
            }
            // The first layer, not only the exit check: while the command runs, the nested
            // repository's and the submodule's administrative files are read-only.
            let write = "for f in vendor/lib/.git/config vendor/lib/.git/hooks/x .git/modules/m/config sub/.git/hooks/x; do (echo >> $f) 2>/dev/null && echo WROTE $f; done; true";
            let out = ws.sbx(["run"].iter().chain(template).chain(&["--", "/bin/sh", "-c", write])).env("HOME", home.path()).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{who:?} {template:?}: {}", text(&out));
        }
    }
}

/// A repository beyond the start's bounded walk (here behind a directory of more entries
/// than it examines) has no mounts, so the command can plant a hook and a `core.fsmonitor`
/// there; at exit the walk goes further and what changed during the session goes (the hook
/// to the quarantine, the config stripped), while the user's own hook stays. Afterwards
/// the host's git in it runs nothing of the command's.
#[test]
fn a_repository_beyond_the_start_walk_is_checked_at_exit() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    for who in WHO {
        let dir = own_dir(who);
        let ws = Workspace::new(who);
        let w = ws.path();
        let deep = w.join("a/b/g");
        std::fs::create_dir_all(w.join("many")).unwrap();
        for i in 0..=20_000 {
            std::fs::File::create(w.join(format!("many/{i}"))).unwrap();
        }
        plant(who, w, "a/b/g/x/", "");
        let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
        ok(git(who, w, &["init", "-q", "."]));
        ok(git(who, &deep, &["init", "-q", "."]));
        script(who, &deep.join(".git/hooks/post-commit"), &format!("#!/bin/sh\ntouch {}/users-own\n", dir.path().display()));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let d = dir.path().display();
        let attack = format!(
            "cd a/b/g && printf '#!/bin/sh\ntouch {d}/hook\n' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit && printf '[core]\n\tfsmonitor = touch {d}/fsmonitor\n' >> .git/config"
        );
        let out = ws.sbx(["run", "--", "/bin/sh", "-c", &attack]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{}/.git/hooks/pre-commit", deep.display())), "{who:?}: {stderr}");
        assert!(stderr.contains(&format!("{}/.git/config, in a repository without read-only mounts (made in the session, or beyond the start's walk), has keys that run commands", deep.display())), "{who:?}: {stderr}");
        ok(git(who, &deep, &["status", "--short"]));
        ok(git(who, &deep, &["commit", "-q", "--allow-empty", "-m", "x"]));
        assert!(!dir.path().join("hook").exists() && !dir.path().join("fsmonitor").exists(), "{who:?}: the host's git ran the command's code");
        assert!(dir.path().join("users-own").exists(), "{who:?}: the user's own hook was taken away");
    }
}

/// The exit verification, second layer: a protected name the mounts could not cover
/// (`.git/commondir` did not exist, reproduction 2) is moved to the quarantine, and a
/// protected file changed through a hard link made before the session is put back; each
/// is a `tamper` event and a line on stderr, and the host's git runs nothing afterwards.
#[test]
fn tampered_protected_paths_are_reported_quarantined_and_restored() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    for who in WHO {
        let canaries = own_dir(who);
        let canary = canaries.path().join("canary");
        let state = own_dir(who);
        let ws = Workspace::new(who);
        let w = ws.path().canonicalize().unwrap();
        let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
        ok(git(who, &w, &["init", "-q", "."]));
        let original = read(&w.join(".git/config"));
        std::fs::hard_link(w.join(".git/config"), w.join("config-link")).unwrap();
        let log = canaries.path().join("audit.jsonl");
        let script = format!(
            "mkdir -p evil && cp -a .git/. evil/ && printf '[core]\\n\\tfsmonitor = touch {c}\\n' >> evil/config && echo ../evil > .git/commondir;
             printf '[core]\\n\\tfsmonitor = touch {c}\\n' >> config-link",
            c = canary.display()
        );
        let out = ws
            .sbx(["run", "--log", log.to_str().unwrap(), "--", "/bin/sh", "-c", &script])
            .env("XDG_STATE_HOME", state.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        let quarantine = state.path().join("sbx/quarantine");
        let session = std::fs::read_dir(&quarantine).unwrap().next().unwrap().unwrap().path();
        let inq = |p: &str| session.join(w.join(p).strip_prefix("/").unwrap());
        let stderr = String::from_utf8_lossy(&out.stderr);
        for line in [
            format!("sbx: tamper: the protected path {} was changed during the session; the original was put back; what the command left is in {}\n", w.join(".git/config").display(), inq(".git/config").display()),
            format!("sbx: tamper: the protected path {} was created during the session; moved to {}\n", w.join(".git/commondir").display(), inq(".git/commondir").display()),
        ] {
            assert!(stderr.contains(&line), "{who:?}: no {line:?} in {stderr}");
        }
        assert_eq!(read(&w.join(".git/config")), original, "{who:?}");
        assert!(!w.join(".git/commondir").exists(), "{who:?}");
        assert_eq!(read(&inq(".git/commondir")), "../evil\n", "{who:?}");
        assert!(read(&inq(".git/config")).contains("fsmonitor"), "{who:?}");
        let tamper: Vec<(String, String, String)> = sbx_integration_tests::read_log(&log)
            .iter()
            .filter(|e| e["type"] == "tamper")
            .map(|e| (e["path"].as_str().unwrap().to_string(), e["change"].as_str().unwrap().to_string(), e["action"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            tamper,
            [
                (w.join(".git/commondir").display().to_string(), "created".into(), "quarantined".into()),
                (w.join(".git/config").display().to_string(), "changed".into(), "restored".into()),
            ],
            "{who:?}"
        );
        ok(git(who, &w, &["status", "--short"]));
        assert!(!canary.exists(), "{who:?}: the host's git ran the command's code");
    }
}

/// Reproduction 7 under `monitor --ask` (the dashboard): a policy file the command
/// creates is reported at exit there too.
#[test]
fn a_policy_file_created_under_ask_is_reported() {
    require_root!();
    sbx_integration_tests::require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let out_dir = own_dir(As::Root);
    let stderr = out_dir.path().join("stderr");
    let done = out_dir.path().join("done");
    let shell = format!(
        "cd {} && {} monitor --ask -- sh -c 'mkdir -p sub && echo {{}} > sub/sbx.jsonc' 2> {}; touch {}; sleep 30",
        ws.path().display(),
        sbx_integration_tests::sbx_bin().display(),
        stderr.display(),
        done.display()
    );
    let session = format!("sbx-ask-policy-{}", std::process::id());
    let tmux = |args: &[&str]| std::process::Command::new("tmux").args(args).output().expect("tmux");
    assert!(tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "40", &shell]).status.success());
    // The command ends at once; the dashboard stays until `q`.
    let mut quit = false;
    for _ in 0..300 {
        if done.exists() {
            break;
        }
        let screen = String::from_utf8_lossy(&tmux(&["capture-pane", "-t", &session, "-p"]).stdout).into_owned();
        if !quit && screen.contains("exited 0") {
            tmux(&["send-keys", "-t", &session, "q"]);
            quit = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(done.exists(), "sbx monitor --ask did not end");
    let file = ws.path().canonicalize().unwrap().join("sub/sbx.jsonc");
    let text = read(&stderr);
    let line = format!(
        "sbx: warning: the policy file {} was created during the session: an sbx run in {} reads it as the policy; review it or delete it\n",
        file.display(),
        file.parent().unwrap().display()
    );
    assert!(text.contains(&line), "no {line:?} in {text}");
}

/// Protected directories missing at start (a repository without `hooks`, a project
/// without `.vscode`, a writable home without `~/.local/bin` or `~/.config/autostart`)
/// get a placeholder: read-only and pinned while the command runs (no create, rename,
/// removal or symlink in its place), gone after it; the host's git commits without
/// running anything of the command's.
#[test]
fn protected_directories_missing_at_start_cannot_be_created() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    for who in WHO {
        let home_dir = own_dir(who);
        let home = home_dir.path();
        plant(who, home, ".config/", "");
        let canaries = own_dir(who);
        let canary = canaries.path().join("canary");
        let ws = Workspace::new(who);
        let w = ws.path().canonicalize().unwrap();
        let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
        ok(git(who, &w, &["init", "-q", "."]));
        std::fs::remove_dir_all(w.join(".git/hooks")).unwrap();
        ws.write("sbx.jsonc", r#"{ "filesystem": { "allowWrite": ["~"] } }"#);
        let script = format!(
            "mkdir -p .git/hooks; printf '#!/bin/sh\\ntouch {c}\\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit;
             mv .git/hooks .git/hooks-moved; rmdir .git/hooks; rm -rf .git/hooks; mkdir evil; ln -sfn ../evil .git/hooks;
             mkdir -p .vscode; echo '{{}}' > .vscode/tasks.json;
             cd ~; mkdir -p .local/bin; echo evil > .local/bin/ls; mkdir -p .config/autostart; echo evil > .config/autostart/x.desktop; cd -;
             for f in .git/hooks/pre-commit .vscode/tasks.json ~/.local/bin/ls ~/.config/autostart/x.desktop; do test -e $f && echo PLANTED $f; done; true",
            c = canary.display()
        );
        let out = ws.sbx(["run", "--", "/bin/sh", "-c", &script]).env("HOME", home).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("PLANTED"), "{who:?}: planted while the session ran: {}", text(&out));
        // A symlink a previous run left where a placeholder would go through
        // (`~/.config -> elsewhere`): sbx makes nothing where it leads.
        let elsewhere = own_dir(who);
        std::fs::rename(home.join(".config"), home.join(".config-real")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), home.join(".config")).unwrap();
        let out2 = ws.sbx(["run", "--", "ls", "-A"]).arg(elsewhere.path()).env("HOME", home).output().unwrap();
        assert_eq!(out2.status.code(), Some(0), "{who:?}: {}", text(&out2));
        assert_eq!(String::from_utf8_lossy(&out2.stdout), "", "{who:?}: placeholders made through a planted symlink while the session ran");
        let made: Vec<_> = std::fs::read_dir(elsewhere.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(made.is_empty(), "{who:?}: left through a planted symlink: {made:?}");
        std::fs::remove_file(home.join(".config")).unwrap();
        std::fs::rename(home.join(".config-real"), home.join(".config")).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Read-only file system") && stderr.contains("Device or resource busy"), "{who:?}: {stderr}");
        for p in [w.join(".git/hooks"), w.join(".git/hooks-moved"), w.join(".vscode"), home.join(".local/bin"), home.join(".config/autostart")] {
            assert!(std::fs::symlink_metadata(&p).is_err(), "{who:?}: {} exists after the session: {}", p.display(), text(&out));
        }
        ok(git(who, &w, &["commit", "-q", "--allow-empty", "-m", "after"]));
        assert!(!canary.exists(), "{who:?}: the host's git ran the command's hook");
    }
}

/// A protected file missing at start (`.git/commondir`, reproduction 2) that the command
/// creates is moved to the quarantine at once, while the command still runs: the host's
/// git, run meanwhile as from another terminal, runs nothing. Creating one again stops
/// the command; so does a loop that keeps creating one.
#[test]
fn protected_files_created_during_the_session_are_moved_away_at_once_and_a_second_stops_the_command() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    for who in WHO {
        let canaries = own_dir(who);
        let canary = canaries.path().join("canary");
        let ws = Workspace::new(who);
        let w = ws.path().canonicalize().unwrap();
        let ok = |out: std::process::Output| assert!(out.status.success(), "{}", text(&out));
        ok(git(who, &w, &["init", "-q", "."]));
        let plant = "echo ../evil > .git/commondir";
        let script = format!(
            "mkdir -p evil && cp -a .git/. evil/ && printf '[core]\\n\\tfsmonitor = touch {c}\\n' >> evil/config && {plant} && touch planted;
             while [ ! -e go ]; do sleep 0.05; done; {plant}; sleep 10; echo survived",
            c = canary.display()
        );
        let child = ws.sbx(["run", "--", "/bin/sh", "-c", &script]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        // A failed assertion below must not leave the session waiting for `go`.
        let _go = Go(w.join("go"));
        let waited = std::time::Instant::now();
        while !w.join("planted").exists() && waited.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(w.join("planted").exists(), "{who:?}: the command did not start");
        // The user's git in another terminal while the command runs.
        let out = git(who, &w, &["status", "--short"]);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert!(!canary.exists(), "{who:?}: the host's git ran the command's code during the session");
        assert!(!w.join(".git/commondir").exists(), "{who:?}: the planted commondir is still there");
        std::fs::write(w.join("go"), "").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(137), "{who:?}: the second plant did not stop the command: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("sbx: stopped the command: it created protected names that were missing at start, twice"), "{who:?}: {stderr}");
        assert_eq!(stderr.matches(&format!("sbx: tamper: the protected path {} was created during the session; moved to", w.join(".git/commondir").display())).count(), 2, "{who:?}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("survived"), "{who:?}");
        ok(git(who, &w, &["status", "--short"]));
        assert!(!canary.exists(), "{who:?}: the host's git ran the command's code");
    }
    // A loop that keeps planting it is stopped as soon.
    let canaries = own_dir(As::Root);
    let canary = canaries.path().join("canary");
    let ws = Workspace::new(As::Root);
    let w = ws.path().canonicalize().unwrap();
    assert!(git(As::Root, &w, &["init", "-q", "."]).status.success());
    let script = format!(
        "mkdir -p evil && cp -a .git/. evil/ && printf '[core]\\n\\tfsmonitor = touch {c}\\n' >> evil/config; while :; do echo ../evil > .git/commondir; done",
        c = canary.display()
    );
    let out = ws.sbx(["run", "--timeout", "60s", "--", "/bin/sh", "-c", &script]).output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    assert!(git(As::Root, &w, &["status", "--short"]).status.success());
    assert!(!canary.exists(), "the host's git ran the command's code");
}

/// Writes its file when dropped: the signal a waiting command goes on with, also when the
/// test fails before it would have sent it.
struct Go(PathBuf);

impl Drop for Go {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// Every process below `pid`, from /proc's parent links.
fn descendants(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let me: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((me, ppid))
        })
        .collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out.remove(0);
    out
}

/// SIGKILLs its processes when dropped.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill with a pid and a signal number.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A session killed with SIGKILL leaves its placeholders (empty directories, harmless to
/// git); the next session removes them.
#[test]
fn a_killed_sessions_placeholders_are_removed_by_the_next_one() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    let ws = Workspace::new(As::Root);
    let w = ws.path().canonicalize().unwrap();
    assert!(git(As::Root, &w, &["init", "-q", "."]).status.success());
    std::fs::remove_dir_all(w.join(".git/hooks")).unwrap();
    let mut child = ws.sbx(["run", "--", "sleep", "30"]).spawn().unwrap();
    let waited = std::time::Instant::now();
    while !w.join(".git/hooks").exists() && waited.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(w.join(".git/hooks").is_dir(), "no placeholder was made");
    // The sandbox outlives a SIGKILLed sbx (its pid 1 is nobody's child any more): this
    // test cleans it up itself once done, so it waits for the command to run first (the
    // placeholder is made before bwrap starts; killed earlier, the sandbox would be missed).
    let is_sleep = |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep");
    while !descendants(child.id() as i32).iter().any(is_sleep) && waited.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let orphans = descendants(child.id() as i32);
    assert!(orphans.iter().any(is_sleep), "the command did not start");
    child.kill().unwrap();
    child.wait().unwrap();
    let _reap = KillOnDrop(orphans);
    assert!(w.join(".git/hooks").is_dir(), "the killed session removed its placeholder");
    assert!(git(As::Root, &w, &["status", "--short"]).status.success(), "an empty hooks directory broke git");
    let out = ws.sbx(["run", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!w.join(".git/hooks").exists(), "the next session left the killed one's placeholder");
}

/// The watch on protected file names, attacked: a hard link and a FIFO made at protected
/// names are moved away like a file written there, and a flood of creations that
/// overflows the kernel's event queue does not hide one (sbx then looks at every name).
#[test]
fn protected_file_names_made_by_link_fifo_or_behind_a_flood_are_moved_away() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    let ws = Workspace::new(As::Root);
    let w = ws.path().canonicalize().unwrap();
    assert!(git(As::Root, &w, &["init", "-q", "."]).status.success());
    // A hard link first, then (the second) a FIFO: the second stops the command.
    let script = "echo ../evil > .git/planted && ln .git/planted .git/commondir && echo LINKED; sleep 0.5; test -e .git/commondir && echo LINK-STAYED; mkfifo .mcp.json; sleep 10; echo survived";
    let out = ws.sbx(["run", "--", "/bin/sh", "-c", script]).output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("LINKED") && !stdout.contains("LINK-STAYED") && !stdout.contains("survived"), "{}", text(&out));
    assert!(std::fs::symlink_metadata(w.join(".git/commondir")).is_err() && std::fs::symlink_metadata(w.join(".mcp.json")).is_err());
    // More events than the queue holds (16,384), then the name.
    let ws = Workspace::new(As::Root);
    let w = ws.path().canonicalize().unwrap();
    assert!(git(As::Root, &w, &["init", "-q", "."]).status.success());
    let script = "mkdir -p flood && i=0; while [ $i -lt 20000 ]; do : > f$i; i=$((i+1)); done; echo ../evil > .git/commondir; sleep 1; test -e .git/commondir && echo STAYED; true";
    let out = ws.sbx(["run", "--", "/bin/sh", "-c", script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("STAYED"), "a flood hid the protected name: {}", text(&out));
    assert!(std::fs::symlink_metadata(w.join(".git/commondir")).is_err());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("sbx: tamper: the protected path {} was created during the session", w.join(".git/commondir").display())), "{}", text(&out));
}

/// Two sessions in one repository without hooks: the first to end must not remove the
/// placeholder the other still has mounted (removing a directory detaches the mounts on it
/// in every namespace), or the second could then create `.git/hooks`.
#[test]
fn a_placeholder_outlives_the_first_of_two_sessions() {
    require_root!();
    sbx_integration_tests::require_tool("git");
    let ws = Workspace::new(As::Root);
    let w = ws.path().canonicalize().unwrap();
    assert!(git(As::Root, &w, &["init", "-q", "."]).status.success());
    std::fs::remove_dir_all(w.join(".git/hooks")).unwrap();
    let mut first = ws.sbx(["run", "--", "sleep", "1"]).spawn().unwrap();
    let waited = std::time::Instant::now();
    while !w.join(".git/hooks").exists() && waited.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _reap = KillOnDrop(vec![first.id() as i32]);
    // The second starts while the first runs, and plants once the first has ended.
    let script = "sleep 2.5; mkdir -p .git/hooks && printf '#!/bin/sh\\n' > .git/hooks/pre-commit && echo PLANTED; true";
    let out = ws.sbx(["run", "--", "/bin/sh", "-c", script]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PLANTED"), "the second session planted a hook: {}", text(&out));
    assert!(first.wait().unwrap().success());
    assert!(!w.join(".git/hooks").exists(), "a placeholder was left");
}

/// Package caches (issue 13's class of files the host runs later): under `-t code` the
/// command writes `~/.cache`, `~/.npm` and cargo's registry in copies of the sandboxes' own
/// (`privateWrite`), never the host's, so a host tool that trusts its cache (a pip wheel,
/// a crate's build.rs) never runs what the command put there. The copy persists for the
/// user's next sandbox, and sbx's store itself is out of the command's sight.
#[test]
fn package_caches_are_the_sandboxes_own_never_the_hosts() {
    require_root!();
    for who in WHO {
        let home_dir = own_dir(who);
        let home = home_dir.path();
        plant(who, home, ".cache/pip/wheels/original.whl", "host's\n");
        let build_rs = plant(who, home, ".cargo/registry/src/index/foo-1.0/build.rs", "fn main() {}\n");
        let ws = Workspace::new(who);
        let poison = "cat ~/.cache/pip/wheels/original.whl 2>/dev/null || echo no-host-wheel
            mkdir -p ~/.cache/pip/wheels && echo evil > ~/.cache/pip/wheels/evil.whl
            mkdir -p ~/.cargo/registry/src/index/foo-1.0 && echo 'fn main() { evil() }' > ~/.cargo/registry/src/index/foo-1.0/build.rs
            mkdir -p ~/.npm/_cacache && echo evil > ~/.npm/_cacache/x
            ls ~/.local/state/sbx/private 2>/dev/null && echo LEAK-store
            echo done";
        let run = |script: &str| ws.sbx(["run", "-t", "code", "--", "/bin/sh", "-c", script]).env("HOME", home).output().unwrap();
        let out = run(poison);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "no-host-wheel\ndone\n", "{who:?}: {}", text(&out));
        // The host's caches are as they were.
        assert_eq!(read(&home.join(".cache/pip/wheels/original.whl")), "host's\n", "{who:?}");
        assert_eq!(read(&build_rs), "fn main() {}\n", "{who:?}");
        for f in [".cache/pip/wheels/evil.whl", ".npm/_cacache"] {
            assert!(!home.join(f).exists(), "{who:?}: {f} is on the host: {}", text(&out));
        }
        // ~/.npm (written "~/.npm/") was made as the mount point, empty.
        assert_eq!(std::fs::read_dir(home.join(".npm")).unwrap().count(), 0, "{who:?}");
        // The user's next sandbox finds its own copy.
        let out = run("cat ~/.cache/pip/wheels/evil.whl ~/.npm/_cacache/x");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "evil\nevil\n", "{who:?}: {}", text(&out));
    }
}

/// A repository the command makes runs nothing on the host, however it is reached: a
/// gitlink `.git` file naming a bare gitdir the command configured (core.fsmonitor), and a
/// new repository whose config is a symlink to a file of the command's. Both found by an
/// attacker's pass; the host's `git status` in each runs no canary afterwards.
#[test]
fn new_repositories_reached_through_gitlinks_or_symlinked_configs_run_nothing() {
    require_root!();
    // The default policy, and `-t code`, whose glob rules' walk found the repositories at
    // start: the search at the end walks anew and finds the new ones.
    for (who, template) in WHO.into_iter().flat_map(|w| [(w, &[][..]), (w, &["-t", "code"][..])]) {
        let ws = Workspace::new(who);
        git(who, ws.path(), &["init", "-q", "."]);
        let home = own_dir(who);
        let canaries = own_dir(who);
        let c = canaries.path();
        let script = format!(
            "set -e; git init -q --bare vendor/.lib.git; git --git-dir=vendor/.lib.git config core.fsmonitor 'touch {c}/gitlink'; \
             git --git-dir=vendor/.lib.git config core.worktree ../lib; mkdir -p vendor/lib; printf 'gitdir: ../.lib.git\\n' > vendor/lib/.git; \
             git init -q sub; printf '[core]\\n\\tfsmonitor = touch {c}/symlinked\\n' > notes.txt; rm sub/.git/config; ln -s ../../notes.txt sub/.git/config; echo done",
            c = c.display()
        );
        let out = ws.sbx(["run"].iter().chain(template).chain(&["--", "/bin/sh", "-c", &script])).env("HOME", home.path()).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{who:?} {template:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("vendor/.lib.git/config") && err.contains("sub/.git/config"), "{who:?} {template:?}: {}", text(&out));
        for repo in ["vendor/lib", "sub"] {
            git(who, &ws.path().join(repo), &["status", "--short"]);
        }
        let fired: Vec<_> = ["gitlink", "symlinked"].into_iter().filter(|f| c.join(f).exists()).collect();
        assert!(fired.is_empty(), "{who:?} {template:?}: {fired:?} ran on the host: {}", text(&out));
    }
}

/// privateWrite never follows a symlink planted where the cache is: a `~/.cache` that is a
/// link to another directory is not bound (a warning says why), so nothing the command
/// writes lands where the link leads.
#[test]
fn a_private_cache_that_is_a_symlink_is_never_bound_through() {
    require_root!();
    for who in WHO {
        let home_dir = own_dir(who);
        let home = home_dir.path();
        let victim = own_dir(who);
        std::os::unix::fs::symlink(victim.path(), home.join(".cache")).unwrap();
        let ws = Workspace::new(who);
        let out = ws.sbx(["run", "-t", "code", "--", "/bin/sh", "-c", "echo evil > ~/.cache/planted; echo done"]).env("HOME", home).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{who:?}: {}", text(&out));
        assert!(!victim.path().join("planted").exists(), "{who:?}: written through the link: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("privateWrite directory"), "{who:?}: {}", text(&out));
    }
}

/// Issue 18: each warning of `-t code` is printed once. A home whose agent and cache
/// directories are symlinks (a dotfile manager's, or planted) gets one sentence for each
/// entry that is not made writable, and no sentence twice (both plans and the glob rules'
/// walk used to repeat some).
#[test]
fn each_warning_of_the_code_template_is_printed_once() {
    require_root!();
    for who in WHO {
        let home_dir = own_dir(who);
        let home = home_dir.path();
        let real = own_dir(who);
        for name in [".npm", ".claude", ".config", ".cache", ".codex"] {
            plant(who, real.path(), &format!("{name}/"), "");
            std::os::unix::fs::symlink(real.path().join(name), home.join(name)).unwrap();
        }
        let ws = Workspace::new(who);
        git(who, ws.path(), &["init", "-q", "."]);
        ws.write(".env", "TOKEN=x\n");
        let out = ws.sbx(["run", "-t", "code", "--", "true"]).env("HOME", home).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{who:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("sbx: warning: ")).collect();
        let h = home.display();
        let expected = [
            format!("the allowWrite directory {h}/.config/opencode was not created"),
            format!("the allowWrite entry {h}/.claude is or goes through a symbolic link"),
            format!("the allowWrite entry {h}/.codex is or goes through a symbolic link"),
            format!("the privateWrite directory {h}/.cache is not writable"),
            format!("the privateWrite directory {h}/.npm is not writable"),
        ];
        for e in &expected {
            assert_eq!(warnings.iter().filter(|w| w.contains(e.as_str())).count(), 1, "{who:?}: {e:?} not printed exactly once: {stderr}");
        }
        let mut unique = warnings.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), warnings.len(), "{who:?}: a warning printed twice: {stderr}");
        // As a user without a delegated cgroup, the limits say they are not enforced (once).
        let limits = |w: &str| who == As::User && w.contains("is not enforced: no cgroup is delegated");
        let others = warnings.iter().filter(|w| !(expected.iter().any(|e| w.contains(e.as_str())) || limits(w)));
        assert_eq!(others.count(), 0, "{who:?}: warnings besides the expected ones: {stderr}");
    }
}
