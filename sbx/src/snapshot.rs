//! What a path was before the session and what it is after: existence, type,
//! inode and, for small files, the content itself. sbx takes a snapshot of
//! the files that decide its next run (every `sbx.jsonc`/`sbx.json` of the
//! workspace, found by a bounded walk, and the files the policy was read
//! from) before the command starts, and compares after it ends: a policy file
//! the command created or changed is reported in every mode.

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

/// Files up to this size are compared by content; larger ones by size and mtime.
pub const MAX_CONTENT: u64 = 256 * 1024;
/// Directory levels below the workspace searched for policy files.
pub const POLICY_DEPTH: usize = 8;
/// Directory entries examined per search for policy files.
pub const POLICY_ENTRIES: usize = 50_000;

/// One path's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Missing,
    File { dev: u64, ino: u64, len: u64, mtime_ns: i128, content: Option<Vec<u8>> },
    Dir { dev: u64, ino: u64 },
    Symlink { dev: u64, ino: u64, target: PathBuf },
    Other { dev: u64, ino: u64 },
}

impl State {
    /// The path's state now, without following a final symlink.
    pub fn of(path: &Path) -> State {
        let Ok(m) = std::fs::symlink_metadata(path) else { return State::Missing };
        let (dev, ino) = (m.dev(), m.ino());
        let t = m.file_type();
        if t.is_symlink() {
            State::Symlink { dev, ino, target: std::fs::read_link(path).unwrap_or_default() }
        } else if t.is_dir() {
            State::Dir { dev, ino }
        } else if t.is_file() {
            let content = (m.len() <= MAX_CONTENT).then(|| read_no_follow(path)).flatten();
            State::File { dev, ino, len: m.len(), mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()), content }
        } else {
            State::Other { dev, ino }
        }
    }

    fn identity(&self) -> Option<(u64, u64)> {
        match self {
            State::Missing => None,
            State::File { dev, ino, .. } | State::Dir { dev, ino } | State::Symlink { dev, ino, .. } | State::Other { dev, ino } => Some((*dev, *ino)),
        }
    }
}

/// Reads a file without following a symlink put in its place meanwhile.
fn read_no_follow(path: &Path) -> Option<Vec<u8>> {
    use std::{io::Read as _, os::unix::fs::OpenOptionsExt as _};
    let mut f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    let mut out = Vec::new();
    f.by_ref().take(MAX_CONTENT + 1).read_to_end(&mut out).ok()?;
    Some(out)
}

/// How a path differs from its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Removed,
    /// Another file (or another kind of file) is at the path now.
    Replaced,
    /// The same file, with other content.
    Changed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Removed => "removed",
            Change::Replaced => "replaced",
            Change::Changed => "changed",
        }
    }
}

/// The difference between two states of one path, if any.
pub fn compare(before: &State, after: &State) -> Option<Change> {
    match (before, after) {
        (State::Missing, State::Missing) => None,
        (State::Missing, _) => Some(Change::Created),
        (_, State::Missing) => Some(Change::Removed),
        _ if before.identity() != after.identity() || std::mem::discriminant(before) != std::mem::discriminant(after) => Some(Change::Replaced),
        (State::File { len: l1, mtime_ns: m1, content: c1, .. }, State::File { len: l2, mtime_ns: m2, content: c2, .. }) => {
            let same = match (c1, c2) {
                (Some(a), Some(b)) => a == b,
                _ => l1 == l2 && m1 == m2,
            };
            (!same).then_some(Change::Changed)
        }
        (State::Symlink { target: a, .. }, State::Symlink { target: b, .. }) => (a != b).then_some(Change::Changed),
        _ => None,
    }
}

/// The states of a set of paths at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub states: BTreeMap<PathBuf, State>,
}

impl Snapshot {
    pub fn take(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        Self { states: paths.into_iter().map(|p| (State::of(&p), p)).map(|(s, p)| (p, s)).collect() }
    }

    /// Every path of the snapshot, and every path of `also` (found since), that differs
    /// now, in path order.
    pub fn changes(&self, also: impl IntoIterator<Item = PathBuf>) -> Vec<(PathBuf, Change)> {
        let mut paths: Vec<PathBuf> = self.states.keys().cloned().collect();
        paths.extend(also);
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .filter_map(|p| {
                let before = self.states.get(&p).unwrap_or(&State::Missing);
                compare(before, &State::of(&p)).map(|c| (p, c))
            })
            .collect()
    }
}

/// The policy files (`sbx.jsonc`, `sbx.json`) in `workspace` and its subdirectories down
/// to [`POLICY_DEPTH`] levels (at most [`POLICY_ENTRIES`] entries examined, skipping the
/// dependency trees the glob walk skips), and the names where one would be found from the
/// workspace: in it and each of its parents.
pub fn policy_files(workspace: &Path) -> Vec<PathBuf> {
    let names = crate::config::FILE_NAMES;
    let mut out: Vec<PathBuf> = workspace.ancestors().flat_map(|d| names.iter().map(move |n| d.join(n))).collect();
    let mut seen = 0usize;
    let mut stack = vec![(workspace.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > POLICY_ENTRIES {
                return out;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && depth < POLICY_DEPTH && !crate::launch::glob::SKIPPED_DIRS.contains(&name) {
                stack.push((entry.path(), depth + 1));
            } else if !is_dir && names.contains(&name) && depth > 0 {
                out.push(entry.path());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_removed_replaced_and_changed_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("same"), "x").unwrap();
        std::fs::write(p("edited"), "x").unwrap();
        std::fs::write(p("gone"), "x").unwrap();
        std::fs::write(p("swapped"), "x").unwrap();
        let snap = Snapshot::take(["same", "edited", "gone", "swapped", "new"].map(p));
        std::fs::write(p("edited"), "y").unwrap();
        std::fs::remove_file(p("gone")).unwrap();
        std::fs::write(p("other"), "x").unwrap();
        std::fs::rename(p("other"), p("swapped")).unwrap();
        std::fs::write(p("new"), "").unwrap();
        std::fs::write(p("found-later"), "").unwrap();
        assert_eq!(
            snap.changes([p("found-later")]),
            [
                (p("edited"), Change::Changed),
                (p("found-later"), Change::Created),
                (p("gone"), Change::Removed),
                (p("new"), Change::Created),
                (p("swapped"), Change::Replaced),
            ]
        );
    }

    #[test]
    fn policy_files_are_found_below_the_workspace_but_not_in_dependency_trees() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        for f in ["sub/sbx.jsonc", "a/b/sbx.json", "node_modules/x/sbx.jsonc", "sub/other.jsonc"] {
            std::fs::create_dir_all(ws.join(f).parent().unwrap()).unwrap();
            std::fs::write(ws.join(f), "{}").unwrap();
        }
        let found = policy_files(ws);
        assert!(found.contains(&ws.join("sbx.jsonc")), "the workspace's own name is watched even when absent");
        assert!(found.contains(&ws.parent().unwrap().join("sbx.json")));
        assert!(found.contains(&ws.join("sub/sbx.jsonc")));
        assert!(found.contains(&ws.join("a/b/sbx.json")));
        assert!(!found.iter().any(|f| f.starts_with(ws.join("node_modules")) || f.ends_with("other.jsonc")));
    }
}
