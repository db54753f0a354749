//! `sbx policy suggest` on audit logs recorded from real sessions on this
//! machine (`tests/golden/suggest/*.log.jsonl`: an npm install, a python
//! venv with pip, a git clone through the proxy, a make that writes to
//! ~/.cache, and a script that touches credentials and protected files).
//! The recorded home and workspace are the placeholders `@HOME@` and `@WS@`,
//! replaced by directories of each test; output is compared with golden
//! files (`SBX_BLESS=1` rewrites them).

use std::path::{Path, PathBuf};
use std::process::Command;

use sbx_integration_tests::{read_log, sbx_bin, seal_log, text};

struct Case {
    dir: tempfile::TempDir,
    home: PathBuf,
    ws: PathBuf,
    log: PathBuf,
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/suggest")
}

/// A home and a workspace, and the named log with their paths filled in.
fn case(name: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(home.join(".npm")).unwrap();
    std::fs::create_dir_all(home.join(".cache")).unwrap();
    std::fs::create_dir_all(&ws).unwrap();
    let raw = std::fs::read_to_string(golden_dir().join(format!("{name}.log.jsonl"))).unwrap();
    let log = dir.path().join("audit.jsonl");
    let raw = raw.replace("@HOME@", home.to_str().unwrap()).replace("@WS@", ws.to_str().unwrap());
    // Sealed as sbx would have, with the key where sbx looks for it (the
    // home suggest runs with): an unsealed log is refused.
    std::fs::write(&log, seal_log(&raw, &home.join(".local/state/sbx/keys"))).unwrap();
    Case { dir, home, ws, log }
}

impl Case {
    fn suggest(&self, extra: &[&str]) -> std::process::Output {
        Command::new(sbx_bin())
            .current_dir(&self.ws)
            .env("HOME", &self.home)
            .args(["policy", "suggest", "--from"])
            .arg(&self.log)
            .args(extra)
            .output()
            .unwrap()
    }

    /// Output with this case's directories and today's date (where sbx
    /// writes it) replaced.
    fn normalize(&self, s: &str) -> String {
        let today = String::from_utf8(Command::new("date").arg("-u").arg("+%Y-%m-%d").output().unwrap().stdout).unwrap();
        let today = today.trim();
        s.replace(self.ws.to_str().unwrap(), "@WS@")
            .replace(self.home.to_str().unwrap(), "@HOME@")
            .replace(self.dir.path().to_str().unwrap(), "@DIR@")
            .replace(&format!("suggest {today}"), "suggest @DATE@")
            .replace(&format!("on {today}."), "on @DATE@.")
    }
}

fn assert_golden_text(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("SBX_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden file {}: {e} (SBX_BLESS=1 writes it)", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

fn policy_events(log: &Path) -> Vec<serde_json::Value> {
    read_log(log).into_iter().filter(|e| e["type"] == "policy").collect()
}

#[test]
fn recorded_workloads_match_their_golden_suggestions() {
    for name in ["node-install", "python-venv", "git-clone", "build-cache"] {
        let c = case(name);
        let before = read_log(&c.log);
        let out = c.suggest(&[]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert_golden_text(&format!("{name}.out"), &c.normalize(&String::from_utf8_lossy(&out.stdout)));
        // Nothing written without --write, and every proposal is recorded,
        // numbered on from the session's last event.
        assert!(!c.ws.join("sbx.jsonc").exists(), "{name}: a file was written without --write");
        let events = policy_events(&c.log);
        assert!(!events.is_empty(), "{name}: no policy events");
        let last_seq = before.last().unwrap()["seq"].as_u64().unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["seq"].as_u64(), Some(last_seq + 1 + i as u64), "{name}: {e}");
            assert_eq!(e["origin"], "suggest");
            assert!(e["action"] == "proposed" || e["action"] == "held", "{name}: {e}");
            assert!(e["user"].as_str().unwrap().contains('('), "{name}: {e}");
        }
    }
}

#[test]
fn write_creates_the_file_and_the_directories_it_needs() {
    let c = case("build-cache");
    let out = c.suggest(&["--write"]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(c.ws.join("sbx.jsonc")).unwrap();
    assert_golden_text("build-cache.written.jsonc", &c.normalize(&written));
    assert!(c.home.join(".cache/demo-build").is_dir(), "the proposed directory was not created");
    let events = policy_events(&c.log);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], "applied");
    assert_eq!(events[0]["key"], "filesystem.allowWrite");
    assert_eq!(events[0]["value"], "~/.cache/demo-build");
    assert_eq!(events[0]["risk"][0], "write outside the workspace");
    // The file is a valid policy that sbx reads.
    let show = Command::new(sbx_bin()).current_dir(&c.ws).env("HOME", &c.home).args(["config", "show"]).output().unwrap();
    assert!(show.status.success(), "{}", text(&show));
}

#[test]
fn risky_proposals_are_flagged_held_and_applied_only_when_accepted() {
    let c = case("risky");
    let config = std::fs::read_to_string(golden_dir().join("risky.sbx.jsonc")).unwrap();
    std::fs::write(c.ws.join("sbx.jsonc"), &config).unwrap();
    let out = c.suggest(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_golden_text("risky.out", &c.normalize(&String::from_utf8_lossy(&out.stdout)));
    let out = c.suggest(&["--include-protected"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_golden_text("risky.protected.out", &c.normalize(&String::from_utf8_lossy(&out.stdout)));
    // --write without --accept-risky: everything here is risky, so the
    // file stays exactly as it was.
    let out = c.suggest(&["--write", "--include-protected"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(c.ws.join("sbx.jsonc")).unwrap(), config);
    // Accepted: applied in place, the file's comments kept.
    let out = c.suggest(&["--write", "--include-protected", "--accept-risky"]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(c.ws.join("sbx.jsonc")).unwrap();
    assert_golden_text("risky.written.jsonc", &c.normalize(&written));
    for comment in ["// The project's policy.", "// secrets stay out of reach", "// known bad"] {
        assert!(written.contains(comment), "comment {comment:?} lost:\n{written}");
    }
    let actions: Vec<String> = policy_events(&c.log).iter().map(|e| e["action"].as_str().unwrap().to_string()).collect();
    assert!(actions.iter().any(|a| a == "held") && actions.iter().any(|a| a == "applied"), "{actions:?}");
}

#[test]
fn a_bad_log_is_one_sentence_naming_the_line() {
    let c = case("git-clone");
    let mut raw = std::fs::read_to_string(&c.log).unwrap();
    raw.push_str("{\"v\":1,\"type\":\"denial\",\n");
    std::fs::write(&c.log, &raw).unwrap();
    // The added line fails verification first.
    let out = c.suggest(&[]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("sbx: the log {} fails verification: line 11: it carries no MAC", c.log.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_to_string(&c.log).unwrap(), raw, "the log was changed");
    // Read anyway, the line is a parse error naming it.
    let out = c.suggest(&["--unverified"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("sbx: {}:11: not a JSON event", c.log.display())), "{err}");
    assert_eq!(std::fs::read_to_string(&c.log).unwrap(), raw, "the log was changed");
}

/// `--write` edits the file `sbx run` would read here, as `learn` and `--ask` do: with
/// only a user config, that file (a new `sbx.jsonc` in the workspace would replace the
/// user config for every later run, dropping its rules).
#[test]
fn write_edits_the_user_config_when_that_is_the_policy_in_use() {
    let c = case("build-cache");
    let user = c.home.join(".config/sbx/sbx.jsonc");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "{\n  \"network\": { \"allowedDomains\": [\"example.com\"] }\n}\n").unwrap();
    let out = c.suggest(&["--write"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!c.ws.join("sbx.jsonc").exists(), "a new workspace file would hide the user config");
    let written = std::fs::read_to_string(&user).unwrap();
    assert!(written.contains("\"example.com\"") && written.contains("~/.cache/demo-build"), "{written}");
    assert_eq!(policy_events(&c.log)[0]["config"], user.to_str().unwrap());
    // Given with -s, a file that does not exist yet is the one created.
    let c = case("build-cache");
    let out = c.suggest(&["--write", "-s", "other.jsonc"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(std::fs::read_to_string(c.ws.join("other.jsonc")).unwrap().contains("~/.cache/demo-build"));
}
