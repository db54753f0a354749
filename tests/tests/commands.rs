//! Issue 19: fence's command rules, checked at every exec with the real argv (the seccomp
//! supervisor), as root and as the unprivileged user. Each form of running a denied command
//! that fence documents, and the ones a shell-line parser misses, is tried against a real
//! `git push` to a bare repository in the workspace; afterwards the host's copy of that
//! repository must not have the commit.

use std::path::Path;
use std::process::Output;

use sbx_integration_tests::{As, Workspace, read_log, require_root, require_tool, text};

const WHO: [As; 2] = [As::Root, As::User];
/// The test user cannot reach root's toolchains: system paths only.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A workspace with a repository (one commit) whose `origin` is a bare repository in the
/// workspace, and a policy with `rules` (JSON of the `command` section).
fn repo(who: As, rules: &str) -> Workspace {
    let ws = Workspace::new(who);
    ws.write("sbx.jsonc", &format!("{{ \"command\": {rules} }}"));
    ws.write("Makefile", "publish:\n\tgit push origin main\n");
    ws.write("push.py", "import subprocess, sys\nsys.exit(subprocess.run(['git', 'push', 'origin', 'main']).returncode)\n");
    ws.write("src/a.txt", "a\n");
    let setup = "git init -q --bare remote.git && git -C src init -q -b main && git -C src -c user.email=t@t -c user.name=t commit -q --allow-empty -m one \
                 && git -C src remote add origin ../remote.git";
    let out = run(&ws, setup);
    assert!(out.status.success(), "{who:?} setup: {}", text(&out));
    ws
}

fn run(ws: &Workspace, script: &str) -> Output {
    let mut cmd = ws.sbx(["run", "--", "/bin/sh", "-c", script]);
    cmd.env("PATH", PATH);
    cmd.output().expect("start sbx")
}

/// Whether the bare repository received the branch (the host's view, after the run).
fn pushed(ws: &Workspace) -> bool {
    ws.path().join("remote.git/refs/heads/main").exists()
}

#[test]
fn a_denied_command_is_refused_however_it_is_run() {
    require_root!();
    require_tool("git");
    require_tool("make");
    require_tool("python3");
    for who in WHO {
        let ws = repo(who, r#"{ "deny": ["git push", "npm publish"], "useDefaults": false }"#);
        // fence's forms (a shell line), and what a shell-line check cannot see.
        let forms = [
            "cd src && git push origin main",
            "cd src; git push origin main",
            "cd src && true | git push origin main",
            "cd src && bash -c 'git push origin main'",
            "cd src && sh -lc 'ls >/dev/null && git push origin main'",
            "cd src && make -f ../Makefile publish",
            "cd src && python3 ../push.py",
            "cd src && env git push origin main",
            "cd src && /usr/bin/git push origin main",
            "cd src && mkdir -p ../bin && cp /usr/bin/git ../bin/git && ../bin/git push origin main",
            "cd src && ln -sf /usr/bin/git ../g && ../g push origin main",
        ];
        for form in forms {
            let out = run(&ws, form);
            assert!(!out.status.success(), "{who:?} {form}: the push ran: {}", text(&out));
            assert!(!pushed(&ws), "{who:?} {form}: the remote has the commit");
            assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{who:?} {form}: {}", text(&out));
        }
        // The rest of git runs.
        let out = run(&ws, "cd src && git status --short && git log --oneline | wc -l");
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        // The command itself, as sbx's argument.
        let mut cmd = ws.sbx(["run", "--", "git", "push"]);
        let out = cmd.current_dir(ws.path().join("src")).env("PATH", PATH).output().unwrap();
        assert!(!out.status.success() && !pushed(&ws), "{who:?}: {}", text(&out));
    }
}

#[test]
fn allow_overrides_deny_and_the_push_it_allows_lands() {
    require_root!();
    require_tool("git");
    for who in WHO {
        let ws = repo(who, r#"{ "deny": ["git push"], "allow": ["git push origin main"] }"#);
        let out = run(&ws, "cd src && git push -q origin HEAD:other");
        assert!(!out.status.success(), "{who:?}: {}", text(&out));
        assert!(!ws.path().join("remote.git/refs/heads/other").exists(), "{who:?}");
        let out = run(&ws, "cd src && git push origin main");
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert!(pushed(&ws), "{who:?}: the allowed push did not land");
    }
}

#[test]
fn fences_default_list_applies_with_rules_or_when_asked() {
    require_root!();
    for who in WHO {
        let ws = Workspace::new(who);
        // No command rules: no list (the sandbox refuses what it guards against).
        ws.write("sbx.jsonc", "{}");
        let out = run(&ws, "dd if=/dev/zero of=zeros bs=1 count=1 2>/dev/null && rm zeros");
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        for policy in [r#"{ "command": { "deny": ["npm publish"] } }"#, r#"{ "command": { "useDefaults": true } }"#] {
            ws.write("sbx.jsonc", policy);
            let out = run(&ws, "dd if=/dev/zero of=zeros bs=1 count=1");
            assert!(!out.status.success() && !ws.path().join("zeros").exists(), "{who:?} {policy}: {}", text(&out));
        }
        // Another dd, not the default rule's `dd if=`.
        let out = run(&ws, "echo x | dd of=copy 2>/dev/null && cat copy");
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        ws.write("sbx.jsonc", r#"{ "command": { "deny": ["npm publish"], "useDefaults": false } }"#);
        let out = run(&ws, "dd if=/dev/zero of=zeros bs=1 count=1 2>/dev/null");
        assert!(out.status.success() && ws.path().join("zeros").exists(), "{who:?}: {}", text(&out));
    }
}

/// The refusal is an event of source `command` with the rule, the argv and the ancestry, and
/// a line of the exit summary.
#[test]
fn a_refusal_is_reported_with_rule_argv_and_ancestry() {
    require_root!();
    require_tool("make");
    for who in WHO {
        let ws = repo(who, r#"{ "deny": ["git push"] }"#);
        let log = ws.path().join("audit.jsonl");
        let mut cmd = ws.sbx(["run", "--log"]);
        cmd.arg(&log).args(["--", "/bin/sh", "-c", "cd src && make -s -f ../Makefile publish"]).env("PATH", PATH);
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{who:?}: {}", text(&out));
        let events = read_log(&log);
        let refusals: Vec<_> = events.iter().filter(|e| e["type"] == "denial" && e["source"] == "command").collect();
        assert!(!refusals.is_empty(), "{who:?}: no command denial in {events:#?}");
        let d = refusals[0];
        assert_eq!(d["detail"]["rule"], "command.deny: git push", "{who:?}: {d}");
        assert_eq!(d["detail"]["argv"], "git push origin main", "{who:?}: {d}");
        assert_eq!((d["operation"].as_str(), d["errno"].as_str(), d["syscall"].as_str()), (Some("exec"), Some("EPERM"), Some("execve")), "{who:?}: {d}");
        let ancestry = d["detail"]["ancestry"].as_str().unwrap();
        assert!(ancestry.contains("make (") && ancestry.contains("sh ("), "{who:?}: {ancestry}");
        assert!(Path::new(d["path"].as_str().unwrap()).ends_with("git"), "{who:?}: {d}");
        // Nothing else reports the same refusal (the kernel tracer leaves EPERM to the supervisor).
        let others: Vec<_> = events.iter().filter(|e| e["type"] == "denial" && e["source"] != "command").collect();
        assert!(others.is_empty(), "{who:?}: {others:#?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("command (exec ") && stderr.contains("git"), "{who:?}: {stderr}");
        // suggest proposes the exception, held as risky until accepted; applied, the push lands.
        let out = ws.sbx(["policy", "suggest", "--from", "audit.jsonl", "--write"]).output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(shown.contains("command.allow") && shown.contains("git push origin main") && shown.contains("an exception to a command rule"), "{who:?}: {}", text(&out));
        assert!(!std::fs::read_to_string(ws.path().join("sbx.jsonc")).unwrap().contains("allow"), "{who:?}: applied without --accept-risky");
        let out = ws.sbx(["policy", "suggest", "--from", "audit.jsonl", "--write", "--accept-risky"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let out = run(&ws, "cd src && make -s -f ../Makefile publish");
        assert!(out.status.success() && pushed(&ws), "{who:?}: {}", text(&out));
    }
}

/// fence's ssh rules at the exec of ssh (scp and git run ssh, so they are checked too). The
/// sandbox has no network but loopback, so no sshd is reached either way: an allowed run gets
/// as far as connecting to a closed port on the sandbox's loopback (ssh's own error), a
/// refused one never starts (EPERM, a `command` denial naming the ssh rule).
#[test]
fn ssh_rules_decide_hosts_and_remote_commands_at_exec() {
    require_root!();
    require_tool("ssh");
    require_tool("git");
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write(
            "sbx.jsonc",
            r#"{ "ssh": { "allowedHosts": ["127.0.0.*", "localhost"], "deniedHosts": ["127.0.0.9"],
                          "allowedCommands": ["ls", "git-upload-pack"] } }"#,
        );
        let ssh = "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=2 -p 1";
        let refused = |out: &Output| String::from_utf8_lossy(&out.stderr).contains("Operation not permitted");
        for (line, allowed) in [
            (format!("{ssh} 127.0.0.1 ls -la"), true),
            (format!("{ssh} user@127.0.0.1"), true),
            (format!("{ssh} 127.0.0.9 ls"), false),
            (format!("{ssh} 10.0.0.1 ls"), false),
            (format!("{ssh} 127.0.0.1 'ls && rm -rf /'"), false),
            (format!("{ssh} 127.0.0.1 cat /etc/passwd"), false),
            ("GIT_SSH_COMMAND='ssh -o BatchMode=yes -p 1' git ls-remote ssh://git@127.0.0.1/x.git".to_string(), true),
            ("GIT_SSH_COMMAND='ssh -o BatchMode=yes -p 1' git ls-remote ssh://git@127.0.0.9/x.git".to_string(), false),
        ] {
            let out = run(&ws, &line);
            assert!(!out.status.success(), "{who:?} {line}: {}", text(&out));
            assert_eq!(!refused(&out), allowed, "{who:?} {line}: {}", text(&out));
            if allowed {
                // ssh itself ran and met the closed port.
                assert!(String::from_utf8_lossy(&out.stderr).contains("refused"), "{who:?} {line}: {}", text(&out));
            }
        }
        let log = ws.path().join("audit.jsonl");
        let mut cmd = ws.sbx(["run", "--log"]);
        cmd.arg(&log).args(["--", "/bin/sh", "-c", &format!("{ssh} 127.0.0.9 ls")]).env("PATH", PATH);
        cmd.output().unwrap();
        let d: Vec<_> = read_log(&log).into_iter().filter(|e| e["source"] == "command").collect();
        // One per attempt: the shell tries /usr/bin/ssh, then /bin/ssh (the same file).
        assert!(!d.is_empty() && d.iter().all(|d| d["detail"]["rule"] == "ssh.deniedHosts: 127.0.0.9"), "{who:?}: {d:#?}");
    }
}

/// fence's `allowExecute` under defaultDenyRead: a file there runs and reads, its directory
/// cannot be listed, and what is beside it in no list stays unreadable.
#[test]
fn allow_execute_runs_and_reads_files_without_listing() {
    require_root!();
    for who in WHO {
        // Outside /tmp, which is the sandbox's own.
        let tools = tempfile::Builder::new().prefix("sbx-it-tools").tempdir_in("/var/tmp").unwrap();
        let bin = tools.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("hello"), "#!/bin/sh\necho hello from the tool\n").unwrap();
        std::fs::set_permissions(bin.join("hello"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(tools.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(tools.path().join("secret"), "not for the command\n").unwrap();
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", &format!(r#"{{ "filesystem": {{ "defaultDenyRead": true, "allowExecute": ["{}"] }} }}"#, bin.display()));
        let b = bin.display();
        let out = run(&ws, &format!("{b}/hello && head -c 9 {b}/hello && echo; ls {b} && echo listed; cat {}/secret && echo read-secret; true", tools.path().display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("hello from the tool") && stdout.contains("#!/bin/sh"), "{who:?}: {}", text(&out));
        assert!(!stdout.contains("listed") && !stdout.contains("read-secret"), "{who:?}: {}", text(&out));
    }
}

/// `sbx import --claude` on a sample of Claude Code's settings: the policy (golden), which
/// sbx then runs with: the imported deny refuses `git push`, the imported denyRead hides
/// `.env`, and an existing file is never overwritten.
#[test]
fn claude_code_settings_import_as_a_policy_sbx_enforces() {
    require_root!();
    require_tool("git");
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/import");
    for who in WHO {
        let ws = repo(who, "{}");
        std::fs::remove_file(ws.path().join("sbx.jsonc")).unwrap();
        ws.write(".claude/settings.json", &std::fs::read_to_string(golden.join("claude-settings.json")).unwrap());
        ws.write(".env", "TOKEN=secret\n");
        let out = ws.sbx(["import", "--claude"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let shown = String::from_utf8_lossy(&out.stdout).replace(&ws.path().display().to_string(), "@WS@");
        let expected_path = golden.join("claude-settings.jsonc");
        if std::env::var_os("SBX_BLESS").is_some() {
            std::fs::write(&expected_path, &shown).unwrap();
        }
        assert_eq!(shown, std::fs::read_to_string(&expected_path).unwrap(), "{who:?}: differs from {} (SBX_BLESS=1 rewrites it)", expected_path.display());
        // A symlink (or a FIFO) planted where the policy goes, by an earlier sandboxed run: never
        // written through, never waited on.
        let elsewhere = ws.path().join("elsewhere.jsonc");
        ws.write("elsewhere.jsonc", "{}\n");
        std::os::unix::fs::symlink(&elsewhere, ws.path().join("sbx.jsonc")).unwrap();
        let fifo = std::ffi::CString::new(ws.path().join("fifo.jsonc").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o666) }, 0);
        for args in [vec!["import", "--claude", "--write"], vec!["import", "--claude", "-o", "fifo.jsonc"]] {
            let out = ws.sbx(&args).output().unwrap();
            assert_eq!(out.status.code(), Some(125), "{who:?} {args:?}: {}", text(&out));
            assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{who:?} {args:?}: {}", text(&out));
        }
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "{}\n", "{who:?}: written through the symlink");
        std::fs::remove_file(ws.path().join("sbx.jsonc")).unwrap();
        let out = ws.sbx(["import", "--claude", "--write"]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let out = ws.sbx(["import", "--claude", "--write"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{who:?}: an existing sbx.jsonc was overwritten: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1, "{who:?}: {}", text(&out));
        let out = run(&ws, "cat .env; cd src && git push origin main");
        assert!(!out.status.success() && !pushed(&ws), "{who:?}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("TOKEN"), "{who:?}: {}", text(&out));
        let out = run(&ws, "cd src && git status --short >/dev/null && git diff --stat");
        assert!(out.status.success(), "{who:?}: {}", text(&out));
    }
}

/// An attacker's ways around a deny rule's program names (the review's, each a real git
/// push before): exec through a magic link (`/proc/self/fd/N`), fexecve of a copy in a memfd
/// (no path at all), `/dev/stdin` and a path that is not UTF-8 with another argv[0], a
/// script whose `#!` line is the denied command, and the dynamic loader running git.
#[test]
fn exec_through_a_descriptor_or_a_magic_link_is_still_checked() {
    require_root!();
    require_tool("python3");
    for who in WHO {
        let ws = repo(who, r#"{ "deny": ["git push"] }"#);
        let ld = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"].into_iter().find(|p| Path::new(p).exists()).expect("the dynamic loader");
        let scripts = [
            // /proc/self/fd/N of an open /usr/bin/git.
            "import os; fd = os.open('/usr/bin/git', os.O_RDONLY); os.chdir('src'); os.execv(f'/proc/self/fd/{fd}', ['git', 'push', 'origin', 'main'])".to_string(),
            // A copy in a memfd, run by descriptor (execveat with AT_EMPTY_PATH).
            "import os; fd = os.memfd_create('x', 0); os.write(fd, open('/usr/bin/git', 'rb').read()); os.chdir('src'); os.execve(fd, ['git', 'push', 'origin', 'main'], dict(os.environ))".to_string(),
            // /dev/stdin (a symlink into /proc/self, which sbx must not resolve as its own), argv[0] another name.
            "import os; fd = os.open('/usr/bin/git', os.O_RDONLY); os.dup2(fd, 0); os.chdir('src'); os.execv('/dev/stdin', ['ls', 'push', 'origin', 'main'])".to_string(),
            // A path that is not UTF-8, a symlink to git, argv[0] another name.
            "import os; os.symlink('/usr/bin/git', b'/tmp/\\xff'); os.chdir('src'); os.execv(b'/tmp/\\xff', [b'ls', b'push', b'origin', b'main'])".to_string(),
            // A script whose interpreter line is the denied command: the kernel runs git push.
            "import os; open('/tmp/origin', 'w').write('#!/usr/bin/git push\\n'); os.chmod('/tmp/origin', 0o755); os.chdir('src'); os.execv('/tmp/origin', ['x', 'main'])".to_string(),
            // The dynamic loader running git: no second exec.
            format!("import os; os.chdir('src'); os.execv('{ld}', ['{ld}', '/usr/bin/git', 'push', 'origin', 'main'])"),
        ];
        for script in &scripts {
            let out = run(&ws, &format!("python3 -c \"{script}\""));
            assert!(!out.status.success() && !pushed(&ws), "{who:?} {script}: {}", text(&out));
            assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{who:?} {script}: {}", text(&out));
        }
    }
}
