//! The tuning loop, end to end with real sandboxes: a workload is denied
//! under the default policy, `sbx policy suggest --write` (or `sbx learn`)
//! produces a config, and the same workload then runs with zero denials
//! while an unrelated forbidden action is still denied.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sbx_integration_tests::{FETCH_PY, http_server, read_log, require_root, require_tool, sbx_bin, text};

struct Loop {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    home: PathBuf,
    ws: PathBuf,
}

impl Loop {
    fn new() -> Self {
        // The home must be outside /tmp: the sandbox has a private /tmp.
        let home_dir = tempfile::Builder::new().prefix("sbx-it-home").tempdir_in("/var/tmp").unwrap();
        let ws_dir = tempfile::Builder::new().prefix("sbx-it-ws").tempdir().unwrap();
        let home = home_dir.path().to_path_buf();
        std::fs::create_dir_all(home.join(".cache")).unwrap();
        std::fs::write(home.join(".bashrc"), "# rc\n").unwrap();
        let ws = ws_dir.path().to_path_buf();
        std::fs::write(ws.join("fetch.py"), FETCH_PY).unwrap();
        Loop { _dirs: (home_dir, ws_dir), home, ws }
    }

    fn sbx(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sbx_bin());
        c.current_dir(&self.ws).env("HOME", &self.home).env_remove("XDG_CONFIG_HOME").env_remove("XDG_RUNTIME_DIR").env_remove("XDG_STATE_HOME").args(args);
        c
    }

    fn monitor(&self, log: &Path, script: &str) -> Output {
        self.sbx(&["monitor", "--no-tui", "--log", log.to_str().unwrap(), "--", "/bin/sh", "-c", script]).output().unwrap()
    }
}

fn denials(log: &Path) -> Vec<serde_json::Value> {
    read_log(log).into_iter().filter(|e| e["type"] == "denial").collect()
}

/// The workload: a build cache under ~/.cache and a download through the
/// proxy; its exit status counts the steps that failed.
fn workload(port: u16) -> String {
    format!(
        "f=0; mkdir -p ~/.cache/sbx-e2e/objects && echo ok > ~/.cache/sbx-e2e/objects/a.o || f=$((f+1)); \
         /usr/bin/python3 fetch.py http://127.0.0.1:{port}/ 2>/dev/null || f=$((f+1)); exit $f"
    )
}

#[test]
fn suggest_write_turns_a_denied_workload_into_one_with_zero_denials() {
    require_root!();
    require_tool("/usr/bin/python3");
    let (port, hits) = http_server();
    let l = Loop::new();
    let log1 = l.ws.join("first.jsonl");
    let out = l.monitor(&log1, &workload(port));
    assert_eq!(out.status.code(), Some(2), "both steps must be denied first: {}", text(&out));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the server saw a connection before it was allowed");
    let first = denials(&log1);
    assert!(first.iter().any(|d| d["source"] == "mount" && d["path"].as_str().is_some_and(|p| p.ends_with(".cache/sbx-e2e"))), "{first:?}");
    assert!(first.iter().any(|d| d["source"] == "proxy" && d["host"] == "127.0.0.1"), "{first:?}");

    // An IP address is a risky proposal: it takes --accept-risky.
    let out = l.sbx(&["policy", "suggest", "--from", log1.to_str().unwrap(), "--write", "--accept-risky"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let config = std::fs::read_to_string(l.ws.join("sbx.jsonc")).unwrap();
    assert!(config.contains("\"~/.cache/sbx-e2e\"") && config.contains(&format!("\"127.0.0.1:{port}\"")), "{config}");

    let log2 = l.ws.join("second.jsonl");
    let out = l.monitor(&log2, &workload(port));
    assert_eq!(out.status.code(), Some(0), "{}\n{config}", text(&out));
    assert_eq!(denials(&log2), Vec::<serde_json::Value>::new());
    assert_eq!(std::fs::read_to_string(l.home.join(".cache/sbx-e2e/objects/a.o")).unwrap(), "ok\n");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The policy grew by exactly that: the rest of home, the protected
    // dotfiles and other destinations are still refused.
    let log3 = l.ws.join("third.jsonl");
    let out = l.monitor(&log3, "echo x > ~/other; echo x >> ~/.bashrc; /usr/bin/python3 fetch.py http://127.0.0.2:1/ 2>/dev/null; true");
    assert!(out.status.success(), "{}", text(&out));
    let third = denials(&log3);
    let paths: Vec<&str> = third.iter().filter_map(|d| d["path"].as_str()).collect();
    assert!(paths.iter().any(|p| p.ends_with("/other")), "{third:?}");
    assert!(paths.iter().any(|p| p.ends_with("/.bashrc")), "{third:?}");
    assert!(third.iter().any(|d| d["source"] == "proxy" && d["host"] == "127.0.0.2"), "{third:?}");
    assert_eq!(std::fs::read_to_string(l.home.join(".bashrc")).unwrap(), "# rc\n");
}

#[test]
fn learn_prints_a_policy_under_which_the_workload_runs_with_zero_denials() {
    require_root!();
    require_tool("/usr/bin/python3");
    let (port, hits) = http_server();
    let l = Loop::new();
    let learnt = l.ws.join("learnt.jsonc");
    let out = l.sbx(&["learn", "-o", learnt.to_str().unwrap(), "-c", &workload(port)]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sbx learn: 2 runs; the last one was refused nothing a policy change answers (exit 0)"), "{err}");
    // Learning reaches every *name*; an IP address is refused in the first
    // run like any unlisted destination and allowed in the second.
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let config = std::fs::read_to_string(&learnt).unwrap();
    assert!(config.contains("\"~/.cache/sbx-e2e\" // learn "), "{config}");
    assert!(config.contains(&format!("\"127.0.0.1:{port}\" // learn ")) && config.contains("review: an IP address"), "{config}");
    assert!(!config.contains("\"*\""), "learning's allow-everything leaked into the result: {config}");
    // The scratch log is gone, and so are the keys that sealed it; nothing
    // of learn's is left in sbx's directories.
    let state = l.home.join(".local/state/sbx");
    let left: Vec<_> = ["keys", "run"].iter().flat_map(|d| std::fs::read_dir(state.join(d)).into_iter().flatten().filter_map(|e| e.ok()).map(|e| e.path())).collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Under enforcement with the learnt policy: zero denials.
    std::fs::rename(&learnt, l.ws.join("sbx.jsonc")).unwrap();
    std::fs::remove_dir_all(l.home.join(".cache/sbx-e2e")).unwrap();
    std::fs::create_dir(l.home.join(".cache/sbx-e2e")).unwrap();
    let log = l.ws.join("enforced.jsonl");
    let out = l.monitor(&log, &workload(port));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(denials(&log), Vec::<serde_json::Value>::new());
    let log = l.ws.join("unrelated.jsonl");
    let out = l.monitor(&log, "echo x > ~/.cache/elsewhere; /usr/bin/python3 fetch.py http://127.0.0.2:1/ 2>/dev/null; true");
    assert!(out.status.success(), "{}", text(&out));
    let unrelated = denials(&log);
    assert!(unrelated.iter().any(|d| d["path"].as_str().is_some_and(|p| p.ends_with(".cache/elsewhere"))), "{unrelated:?}");
    assert!(unrelated.iter().any(|d| d["source"] == "proxy" && d["host"] == "127.0.0.2"), "{unrelated:?}");
}
