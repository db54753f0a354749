//! Expansion of glob rules (`**/.env`, `~/.aws/*`) into the paths that exist
//! when the sandbox starts, with a bounded walk: fence hung on node_modules
//! by walking whole trees. The walk starts at the pattern's literal prefix,
//! skips dependency and VCS trees that a pattern does not name, and stops at
//! a fixed number of directory entries, saying so.

use std::path::{Component, Path, PathBuf};

/// Directory entries examined per pattern before the walk gives up.
pub const MAX_ENTRIES: usize = 50_000;
/// Directory levels below the literal prefix.
pub const MAX_DEPTH: usize = 16;
/// Trees not entered unless the pattern names them.
const SKIPPED_DIRS: &[&str] = &["node_modules", ".git", "target", ".venv", "venv", "__pycache__", ".cache", ".cargo", ".rustup", ".npm"];

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    pub matches: Vec<PathBuf>,
    /// The walk hit `MAX_ENTRIES`: some matches may be missing.
    pub truncated: bool,
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
            if is_dir && depth < MAX_DEPTH {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if SKIPPED_DIRS.contains(&name.as_ref()) && !named.contains(&name.as_ref()) {
                    continue;
                }
                stack.push((path, depth + 1));
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
