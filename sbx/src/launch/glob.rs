//! Expansion of glob rules (`**/.env`, `~/.aws/*`) into the paths that exist
//! when the sandbox starts, with a bounded walk: fence hung on node_modules
//! by walking whole trees. The walk starts at the pattern's literal prefix,
//! skips dependency and VCS trees that a pattern does not name, and stops at
//! a fixed number of directory entries, saying so. A walk cut short cannot
//! cover a deny rule: [`check_deny_rules`] refuses to start then (a command
//! could otherwise plant files enough to push a secret beyond the cap).

use std::path::{Component, Path, PathBuf};

/// Directory entries examined per pattern before the walk gives up.
pub const MAX_ENTRIES: usize = 50_000;
/// Directory levels below the literal prefix.
pub const MAX_DEPTH: usize = 24;
/// Trees not entered unless the pattern names them.
pub const SKIPPED_DIRS: &[&str] = &["node_modules", ".git", "target", ".venv", "venv", "__pycache__", ".cache", ".cargo", ".rustup", ".npm"];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    pub matches: Vec<PathBuf>,
    /// The walk hit `MAX_ENTRIES`: some matches may be missing.
    pub truncated: bool,
    /// A `**` pattern met a directory deeper than `MAX_DEPTH`, not entered: matches
    /// there may be missing.
    pub too_deep: bool,
}

/// A deny rule whose walk could not cover the tree.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GlobError {
    #[error("the {key} rule {} cannot be applied in full: its walk stopped after {MAX_ENTRIES} entries, so a matching file could stay unprotected; narrow the rule or remove files under {}", .rule.display(), .base.display())]
    TooMany { key: &'static str, rule: PathBuf, base: PathBuf },
    #[error("the {key} rule {} cannot be applied in full: {} has directories more than {MAX_DEPTH} levels deep, which the walk does not enter; narrow the rule or flatten that tree", .rule.display(), .base.display())]
    TooDeep { key: &'static str, rule: PathBuf, base: PathBuf },
}

/// Walks every glob of `denyRead` and `denyWrite` before anything starts (before the
/// dashboard too) and refuses when a walk was cut short: a deny rule fails closed.
pub fn check_deny_rules(fs: &crate::policy::FsPolicy, expand: fn(&Path) -> Expansion) -> Result<(), GlobError> {
    let rules = fs.deny_read.iter().map(|r| ("denyRead", r)).chain(fs.deny_write.iter().map(|r| ("denyWrite", r)));
    for (key, rule) in rules.filter(|(_, r)| crate::policy::is_glob(r)) {
        let e = expand(rule);
        let base = literal_prefix(rule);
        if e.truncated {
            return Err(GlobError::TooMany { key, rule: rule.clone(), base });
        }
        if e.too_deep {
            return Err(GlobError::TooDeep { key, rule: rule.clone(), base });
        }
    }
    Ok(())
}

/// The literal directory a pattern starts from.
fn literal_prefix(pattern: &Path) -> PathBuf {
    let mut base = PathBuf::new();
    for c in pattern.components() {
        if crate::policy::is_glob(Path::new(c.as_os_str())) {
            break;
        }
        base.push(c);
    }
    base
}

pub fn expand(pattern: &Path) -> Expansion {
    let Some(text) = pattern.to_str() else {
        return Expansion::default();
    };
    let Ok(glob) = globset::GlobBuilder::new(text).literal_separator(true).build() else {
        return Expansion::default();
    };
    let matcher = glob.compile_matcher();
    let named: Vec<&str> = pattern
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let base = literal_prefix(pattern);
    // Only `**` reaches below the pattern's own number of components.
    let unbounded = named.contains(&"**");
    let mut out = Expansion::default();
    let mut seen = 0usize;
    let mut stack = vec![(base, 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                out.truncated = true;
                return out;
            }
            let path = entry.path();
            if matcher.is_match(&path) {
                out.matches.push(path.clone());
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if SKIPPED_DIRS.contains(&name.as_ref()) && !named.contains(&name.as_ref()) {
                    continue;
                }
                if depth < MAX_DEPTH {
                    stack.push((path, depth + 1));
                } else if unbounded {
                    out.too_deep = true;
                }
            }
        }
    }
    out.matches.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_double_star_and_skips_dependency_trees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["a/.env", "a/b/.env", "node_modules/x/.env", ".env", "a/.envrc"] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let got = expand(&root.join("**/.env"));
        assert_eq!(got.matches, [".env", "a/.env", "a/b/.env"].map(|p| root.join(p)));
        assert!(!got.truncated);
        let got = expand(&root.join("node_modules/*/.env"));
        assert_eq!(got.matches, [root.join("node_modules/x/.env")]);
    }

    /// Past the cap, or below the depth limit, a deny rule refuses to start with a
    /// sentence naming the rule; an allow rule only warns (see `plan`).
    #[test]
    fn a_deny_rule_whose_walk_is_cut_short_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("many")).unwrap();
        for i in 0..=MAX_ENTRIES {
            std::fs::File::create(root.join(format!("many/f{i}"))).unwrap();
        }
        let rule = root.join("**/.env");
        assert!(expand(&rule).truncated);
        let mut fs = crate::policy::FsPolicy { deny_read: vec![rule.clone()], ..Default::default() };
        let err = check_deny_rules(&fs, expand).unwrap_err();
        assert_eq!(err, GlobError::TooMany { key: "denyRead", rule: rule.clone(), base: root.to_path_buf() });
        assert!(err.to_string().starts_with(&format!("the denyRead rule {} cannot be applied in full: its walk stopped after 50000 entries", rule.display())));
        fs.deny_read.clear();
        fs.allow_read = vec![rule.clone()];
        assert_eq!(check_deny_rules(&fs, expand), Ok(()));

        let deep = tempfile::tempdir().unwrap();
        let mut d = deep.path().to_path_buf();
        for _ in 0..=MAX_DEPTH {
            d.push("d");
        }
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(".env"), "").unwrap();
        let rule = deep.path().join("**/.env");
        let fs = crate::policy::FsPolicy { deny_write: vec![rule.clone()], ..Default::default() };
        assert_eq!(check_deny_rules(&fs, expand), Err(GlobError::TooDeep { key: "denyWrite", rule, base: deep.path().to_path_buf() }));
        // A pattern without `**` never reaches that deep: nothing to miss.
        assert!(!expand(&deep.path().join("d/*")).too_deep);
    }

    #[test]
    fn single_star_does_not_cross_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("d/e")).unwrap();
        std::fs::write(root.join("d/k"), "").unwrap();
        std::fs::write(root.join("d/e/k"), "").unwrap();
        assert_eq!(expand(&root.join("d/*")).matches, [root.join("d/e"), root.join("d/k")]);
    }
}
