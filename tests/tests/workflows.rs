//! Issue 18: real toolchains under the `code` template, as root (with the kernel tracer,
//! so file denials are seen) and as the unprivileged test user (whose home has no `~/.npm`
//! or `~/.cache` at first): each workflow succeeds and its log holds no denial but the
//! ones the test names as protections. The package registries are reached through sbx's
//! proxy; one that cannot be reached fails the test under `CI=true`.

use std::path::Path;

use sbx_integration_tests::{As, Workspace, read_log, require_root, require_tool, skip, text};

const WHO: [As; 2] = [As::Root, As::User];
/// The test user cannot reach root's toolchains (`~/.cargo`, pyenv): system paths only.
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs `script` under `-t code` (plus the workspace's sbx.jsonc, when written) with a log;
/// returns the output and the log's denials.
fn session(ws: &Workspace, who: As, script: &str) -> (std::process::Output, Vec<serde_json::Value>) {
    let log = ws.path().join(format!("audit-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let has_file = ws.path().join("sbx.jsonc").exists();
    let mut cmd = ws.sbx(["run", "--log"]);
    cmd.arg(&log);
    if !has_file {
        cmd.args(["-t", "code"]);
    }
    cmd.args(["--", "/bin/sh", "-c", script]);
    if who == As::User {
        cmd.env("PATH", USER_PATH);
    }
    let out = cmd.output().expect("start sbx");
    let denials = read_log(&log).into_iter().filter(|e| e["type"] == "denial").collect();
    std::fs::remove_file(&log).ok();
    (out, denials)
}

/// A registry that does not answer from here is a loud skip (a failure under CI).
fn require_registry(host: &str) {
    use std::net::ToSocketAddrs;
    if (host, 443).to_socket_addrs().map(|mut a| a.next().is_none()).unwrap_or(true) {
        skip!("the registry {host} cannot be resolved from this machine");
    }
}

/// The run succeeded and every denial is a read of one of `protected` (paths hidden by the
/// template's denyRead: credentials the tool looks for and does not need).
fn assert_clean(who: As, what: &str, out: &std::process::Output, denials: &[serde_json::Value], protected: &[&Path]) {
    assert!(out.status.success(), "{who:?} {what}: {}", text(out));
    let other: Vec<_> = denials
        .iter()
        .filter(|d| !(d["source"] == "mount" && d["operation"] == "read" && protected.iter().any(|p| d["path"] == p.to_str().unwrap())))
        .collect();
    assert!(other.is_empty(), "{who:?} {what}: denials that are no protection: {other:#?}\n{}", text(out));
}

/// The home sbx gives the command when `who` runs it.
fn home(who: As) -> std::path::PathBuf {
    match who {
        As::Root => std::env::var_os("HOME").map_or_else(|| "/root".into(), std::path::PathBuf::from),
        As::User => sbx_integration_tests::test_user().home.clone(),
    }
}

#[test]
fn git_init_commit_branch_switch_and_a_refused_config_write() {
    require_root!();
    require_tool("git");
    for who in WHO {
        let ws = Workspace::new(who);
        let (out, denials) = session(
            &ws,
            who,
            "set -e; git init -q -b main .; echo a > a; git add a; \
             git -c user.email=t@example.invalid -c user.name=t commit -q -m one; \
             git branch topic; git switch -q topic; echo b > b; git add b; \
             git -c user.email=t@example.invalid -c user.name=t commit -q -m two; git switch -q main; git log --oneline --all | wc -l",
        );
        assert_clean(who, "git", &out, &denials, &[]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2", "{who:?}: {}", text(&out));
        // The repository now exists: its config is protected in the next session, and a
        // write fails closed with a denial that names the key (seen with the tracer).
        let (out, denials) = session(&ws, who, "git config user.email t@example.invalid");
        assert!(!out.status.success(), "{who:?}: {}", text(&out));
        if who == As::Root {
            let config = ws.path().join(".git/config");
            assert!(
                denials.len() == 1 && denials[0]["path"] == config.to_str().unwrap() && denials[0]["detail"]["hint"].as_str().unwrap().contains("allowGitConfig"),
                "{denials:#?}"
            );
        }
    }
}

#[test]
fn npm_install_and_a_server_on_port_0() {
    require_root!();
    require_tool("npm");
    require_registry("registry.npmjs.org");
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("package.json", r#"{ "name": "t", "version": "1.0.0", "scripts": { "test": "node server-test.js" } }"#);
        ws.write(
            "server-test.js",
            "const http = require('http'); const isNumber = require('is-number');\n\
             const s = http.createServer((q, r) => r.end(String(isNumber(5))));\n\
             s.listen(0, '127.0.0.1', () => http.get({ host: '127.0.0.1', port: s.address().port }, r => {\n\
               let b = ''; r.on('data', d => b += d); r.on('end', () => { console.log('served ' + b); s.close(); });\n\
             }));\n",
        );
        if who == As::User {
            // A fresh user's first install: sbx makes ~/.npm (code's "~/.npm/").
            let npm = home(who).join(".npm");
            if npm.exists() {
                std::fs::remove_dir_all(&npm).unwrap();
            }
        }
        let (out, denials) = session(&ws, who, "npm install --no-audit --no-fund is-number@7 >/dev/null 2>&1 && npm test --silent");
        // npm reads ~/.npmrc (registry tokens), which code hides: a protection.
        assert_clean(who, "npm", &out, &denials, &[&home(who).join(".npmrc")]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "served true", "{who:?}: {}", text(&out));
        if who == As::User {
            let m = std::fs::metadata(home(who).join(".npm")).unwrap();
            use std::os::unix::fs::MetadataExt as _;
            assert_eq!((m.uid(), m.mode() & 0o777), (sbx_integration_tests::test_user().uid, 0o700));
        }
    }
}

#[test]
fn python_venv_pip_install_and_servers_on_loopback_port_0() {
    require_root!();
    require_tool("python3");
    require_registry("pypi.org");
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write(
            "serve_test.py",
            "import socket, iniconfig\n\
             for host in ('127.0.0.1', 'localhost'):\n\
             \x20   s = socket.create_server((host, 0))\n\
             \x20   c = socket.create_connection((host, s.getsockname()[1]), timeout=5)\n\
             \x20   a, _ = s.accept(); a.sendall(b'ok'); print(host, c.recv(2).decode())\n",
        );
        let (out, denials) = session(
            &ws,
            who,
            "/usr/bin/python3 -m venv .venv && .venv/bin/pip install -q --disable-pip-version-check iniconfig >/dev/null && .venv/bin/python serve_test.py",
        );
        assert_clean(who, "python", &out, &denials, &[]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "127.0.0.1 ok\nlocalhost ok\n", "{who:?}: {}", text(&out));
    }
}

#[test]
fn make_builds_a_c_program() {
    require_root!();
    require_tool("make");
    require_tool("cc");
    for who in WHO {
        let ws = Workspace::new(who);
        ws.write("hello.c", "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n");
        ws.write("Makefile", "hello: hello.c\n\tcc -O1 -o hello hello.c\n");
        let (out, denials) = session(&ws, who, "make -s && ./hello");
        assert_clean(who, "make", &out, &denials, &[]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n", "{who:?}: {}", text(&out));
    }
}

/// Root only: the toolchain is root's (rustup under /root, which the sandbox shows only
/// where allowRead names it); the test user has none.
#[test]
fn cargo_new_with_a_crates_io_dependency_builds() {
    require_root!();
    let cargo = require_tool("cargo");
    require_registry("index.crates.io");
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from).unwrap_or_else(|| "/root".into());
    let ws = Workspace::new(As::Root);
    let cargo_home = home.join(".cargo");
    if !cargo.starts_with(&cargo_home) && !cargo.starts_with("/usr") {
        skip!("cargo at {} is neither rustup's nor the system's", cargo.display());
    }
    ws.write(
        "sbx.jsonc",
        r#"{ "extends": "code", "filesystem": { "allowRead": ["~/.rustup", "~/.cargo"] } }"#,
    );
    let (out, denials) = session(
        &ws,
        As::Root,
        "set -e; cargo new -q --vcs none demo; cd demo; printf 'itoa = \"1\"\\n' >> Cargo.toml; \
         printf 'fn main() { println!(\"{}\", itoa::Buffer::new().format(42)); }\\n' > src/main.rs; \
         cargo build -q 2>&1; ./target/debug/demo",
    );
    // cargo records when it last used each crate in ~/.cargo/.global-cache, an SQLite file
    // that stays read-only: the host's cargo deletes the paths it names when it cleans its
    // caches (a planted row would delete any file of the user's), and the sandbox's registry
    // is its own (privateWrite). cargo then skips the record and builds on: that refusal
    // (the database, or the rollback journal SQLite creates beside it, in ~/.cargo) is a
    // protection, and the only one.
    let tracker = [home.join(".cargo/.global-cache"), home.join(".cargo/.global-cache-journal")];
    let denials: Vec<_> = denials.into_iter().filter(|d| !(d["errno"] == "EROFS" && tracker.iter().any(|t| d["path"] == t.to_str().unwrap()))).collect();
    assert_clean(As::Root, "cargo", &out, &denials, &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end().lines().last(), Some("42"), "{}", text(&out));
    assert!(Path::new(&ws.path().join("demo/Cargo.lock")).exists());
}
