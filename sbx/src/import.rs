//! `sbx import --claude`: Claude Code's permission rules as an sbx policy, with fence's
//! mapping, one comment per imported rule naming where it came from.
//!
//! | Claude Code (`permissions.*`) | sbx |
//! |---|---|
//! | `allow` `Bash(git status)`, `Bash(git diff:*)`, `Bash(npm run *)` | `command.allow` (`git status`, `git diff`, `npm run`) |
//! | `deny` `Bash(...)` | `command.deny` |
//! | `deny` `Read(path)` | `filesystem.denyRead` |
//! | `allow` `Read(path)` | `filesystem.allowRead` |
//! | `allow` `Edit(path)`, `Write(path)` | `filesystem.allowWrite` |
//! | `deny` `Edit(path)`, `Write(path)` | `filesystem.denyWrite` |
//! | `allow` / `deny` `WebFetch(domain:NAME)` | `network.allowedDomains` / `network.deniedDomains` |
//! | `ask` (any of the above) | as `deny`, noted: a sandbox cannot ask per call |
//!
//! sbx's command rules are prefixes, so `Bash(x)` (exact in Claude Code) becomes the prefix
//! `x`: a deny gets broader, an allow too (noted). In Claude Code a deny beats an allow, in
//! sbx an allow beats a deny (fence's order): a `Bash` allow rule that overlaps a deny rule
//! (one is a prefix of the other) is not imported, and said so. Paths: `//abs` is `/abs`, `~/x` stays,
//! `/x` is relative to the directory that holds `.claude` (the project, or the home for the
//! user's settings), `./x` and `x` to the project. Other rules (a tool with no argument,
//! `mcp__...`, `Glob`, ...) are listed as not imported.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One settings file: where it is, and its text.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Where an entry goes, and the comment on it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: (&'static str, &'static str),
    value: String,
    comment: String,
    /// The rule and where it was: `Bash(git:*) (permissions.allow in FILE)`.
    origin: String,
}

/// The policy text: `extends` the template, with every rule of `sources` that maps.
pub fn claude(sources: &[Source], extends: &str, project: &Path, home: Option<&Path>) -> anyhow::Result<String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut shown: Vec<String> = Vec::new();
    for source in sources {
        let label = display(&source.path, home);
        shown.push(label.clone());
        let json: serde_json::Value = serde_json::from_str(&source.text)
            .map_err(|e| anyhow::anyhow!("{}: not JSON ({e})", crate::termtext::path(&source.path)))?;
        // The directory that holds `.claude`: `/x` in this file's rules is relative to it.
        let root = source.path.parent().and_then(Path::parent).map_or_else(|| project.to_path_buf(), Path::to_path_buf);
        for list in ["allow", "deny", "ask"] {
            let Some(rules) = json.pointer(&format!("/permissions/{list}")) else { continue };
            let Some(rules) = rules.as_array() else {
                anyhow::bail!("{}: permissions.{list} is not a list", crate::termtext::path(&source.path));
            };
            for rule in rules.iter().filter_map(serde_json::Value::as_str) {
                match map(list, rule, &root, project, home) {
                    Some((key, value, note)) => {
                        let mut comment = format!("{rule}: permissions.{list} in {label}");
                        if let Some(note) = note {
                            let _ = write!(comment, "; {note}");
                        }
                        if !entries.iter().any(|e| e.key == key && e.value == value) {
                            let origin = format!("{rule} (permissions.{list} in {label})");
                            entries.push(Entry { key, value, comment, origin });
                        }
                    }
                    None => skipped.push(format!("{rule} (permissions.{list} in {label})")),
                }
            }
        }
    }
    // An allow that overlaps a deny would override it here (fence's order), not in Claude Code.
    let denied: Vec<crate::command_rules::Rule> =
        entries.iter().filter(|e| e.key == ("command", "deny")).filter_map(|e| crate::command_rules::Rule::parse(&e.value).ok()).collect();
    entries.retain(|e| {
        if e.key != ("command", "allow") {
            return true;
        }
        let Ok(allow) = crate::command_rules::Rule::parse(&e.value) else { return true };
        match denied.iter().find(|d| d.overlaps(&allow)) {
            Some(d) => {
                skipped.push(format!("{}: it overlaps the deny rule {:?} (in Claude Code the deny wins, in sbx the allow would)", e.origin, d.text));
                false
            }
            None => true,
        }
    });
    entries.sort_by_key(|e| e.key);
    let mut out = String::new();
    let _ = writeln!(out, "// sbx policy imported from Claude Code's permission rules by `sbx import --claude`.");
    let _ = writeln!(out, "// From: {}.", if shown.is_empty() { "no settings file".to_string() } else { shown.join(", ") });
    out.push_str("{\n");
    let _ = write!(out, "  \"extends\": {}", json_string(extends));
    for section in ["command", "filesystem", "network"] {
        let in_section: Vec<&Entry> = entries.iter().filter(|e| e.key.0 == section).collect();
        if in_section.is_empty() {
            continue;
        }
        let _ = write!(out, ",\n  \"{section}\": {{");
        let mut keys: Vec<&str> = in_section.iter().map(|e| e.key.1).collect();
        keys.dedup(); // sorted above
        for (k, key) in keys.iter().enumerate() {
            let _ = write!(out, "{}\n    \"{key}\": [", if k == 0 { "" } else { "," });
            let items: Vec<&&Entry> = in_section.iter().filter(|e| e.key.1 == *key).collect();
            for (i, e) in items.iter().enumerate() {
                let comma = if i + 1 < items.len() { "," } else { "" };
                let _ = write!(out, "\n      {}{comma} // {}", json_string(&e.value), crate::termtext::escape(&e.comment).replace('\n', " "));
            }
            out.push_str("\n    ]");
        }
        out.push_str("\n  }");
    }
    out.push_str("\n}\n");
    for s in &skipped {
        let _ = writeln!(out, "// Not imported: {}", crate::termtext::escape(s).replace('\n', " "));
    }
    // What is written must be a policy sbx reads.
    crate::config::parse_str(&out, Path::new("imported policy")).map_err(|e| anyhow::anyhow!("the imported policy does not parse ({e}); please report this"))?;
    Ok(out)
}

/// The sbx key, value and note for one Claude Code rule; `None` when it does not map.
fn map(list: &str, rule: &str, root: &Path, project: &Path, home: Option<&Path>) -> Option<((&'static str, &'static str), String, Option<String>)> {
    let (tool, arg) = rule.split_once('(')?;
    let arg = arg.strip_suffix(')')?.trim();
    if arg.is_empty() {
        return None;
    }
    let deny = list != "allow";
    let ask = (list == "ask").then(|| "ask in Claude Code; a sandbox cannot ask per call, so it is denied".to_string());
    match tool.trim() {
        "Bash" => {
            let (prefix, exact) = match arg.strip_suffix(":*").or_else(|| arg.strip_suffix(" *")) {
                Some(p) => (p.trim(), false),
                None => (arg, true),
            };
            crate::command_rules::Rule::parse(prefix).ok()?;
            let note = match (exact, deny) {
                (true, false) => Some("exact in Claude Code, a prefix here: longer command lines are allowed too".to_string()),
                _ => None,
            };
            Some((("command", if deny { "deny" } else { "allow" }), prefix.to_string(), ask.or(note)))
        }
        "Read" => Some((("filesystem", if deny { "denyRead" } else { "allowRead" }), path(arg, root, project, home), ask)),
        "Edit" | "Write" | "MultiEdit" | "NotebookEdit" => {
            Some((("filesystem", if deny { "denyWrite" } else { "allowWrite" }), path(arg, root, project, home), ask))
        }
        "WebFetch" => {
            let domain = arg.strip_prefix("domain:")?.trim();
            crate::proxy::rules::Host::parse(domain.trim_start_matches("*.")).ok()?;
            Some((("network", if deny { "deniedDomains" } else { "allowedDomains" }), domain.to_string(), ask))
        }
        _ => None,
    }
}

/// A Claude Code path rule as an sbx path.
fn path(arg: &str, root: &Path, project: &Path, home: Option<&Path>) -> String {
    if let Some(abs) = arg.strip_prefix("//") {
        return format!("/{abs}");
    }
    if arg.starts_with("~/") || arg == "~" {
        return arg.to_string();
    }
    let joined = match arg.strip_prefix('/') {
        Some(rel) => root.join(rel),
        None => project.join(arg.strip_prefix("./").unwrap_or(arg)),
    };
    // Inside the project: relative to it, as a policy in the project writes it.
    match joined.strip_prefix(project) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".into(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => display(&joined, home),
    }
}

/// `~/...` for a path in the home.
fn display(p: &Path, home: Option<&Path>) -> String {
    match home.and_then(|h| p.strip_prefix(h).ok()) {
        Some(rel) => format!("~/{}", rel.display()),
        None => p.display().to_string(),
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_codes_rules_map_as_fence_does() {
        let home = Path::new("/home/u");
        let project = Path::new("/home/u/proj");
        let user = Source {
            path: home.join(".claude/settings.json"),
            text: r#"{"permissions": {"allow": ["Bash(git status)", "Bash(npm run test:*)", "WebFetch(domain:docs.rs)", "Read(~/.cargo/registry/**)"],
                      "deny": ["Bash(git push:*)", "Read(~/.ssh/**)", "Read(//etc/shadow)", "mcp__github", "WebFetch"],
                      "ask": ["Bash(npm publish *)"]}, "model": "opus"}"#
                .into(),
        };
        let proj = Source {
            path: project.join(".claude/settings.json"),
            text: r#"{"permissions": {"allow": ["Edit(/src/**)", "Write(./build)", "Bash(git status)", "Bash(git:*)", "Bash(git push origin docs)"], "deny": ["Read(.env)", "Edit(/.git/**)"]}}"#.into(),
        };
        let out = claude(&[user, proj], "code", project, Some(home)).unwrap();
        let config = crate::config::parse_str(&out, Path::new("x")).unwrap().config;
        // `git` and `git push origin docs` overlap the deny rule `git push`: not imported.
        assert_eq!(config.command.allow, ["git status", "npm run test"]);
        assert!(out.contains("// Not imported: Bash(git:*) (permissions.allow in ~/proj/.claude/settings.json): it overlaps the deny rule \"git push\""), "{out}");
        assert_eq!(config.command.deny, ["git push", "npm publish"]);
        assert_eq!(config.filesystem.deny_read, ["~/.ssh/**", "/etc/shadow", ".env"]);
        assert_eq!(config.filesystem.allow_read, ["~/.cargo/registry/**"]);
        assert_eq!(config.filesystem.allow_write, ["src/**", "build"]);
        assert_eq!(config.filesystem.deny_write, [".git/**"]);
        assert_eq!(config.network.allowed_domains, ["docs.rs"]);
        assert!(out.contains("// Bash(npm publish *): permissions.ask in ~/.claude/settings.json; ask in Claude Code"), "{out}");
        assert!(out.contains("exact in Claude Code, a prefix here"), "{out}");
        assert!(out.contains("// Not imported: mcp__github (permissions.deny in ~/.claude/settings.json)"), "{out}");
        assert!(out.contains("\"extends\": \"code\""), "{out}");
    }

    #[test]
    fn a_settings_file_that_is_not_json_is_one_sentence() {
        let bad = Source { path: "/p/.claude/settings.json".into(), text: "{ nope".into() };
        let err = claude(&[bad], "code", Path::new("/p"), None).unwrap_err().to_string();
        assert!(err.starts_with("/p/.claude/settings.json: not JSON"), "{err}");
    }
}
