//! What a path was before the session and what it is after: existence, type,
//! inode and, for small files, the content itself. sbx takes a snapshot of
//! the files that decide its next run (every `sbx.jsonc`/`sbx.json` of the
//! workspace, found by a bounded walk, and the files the policy was read
//! from) before the command starts, and compares after it ends: a policy file
//! the command created or changed is reported in every mode.
//!
//! [`Guard`] does the same for the protected paths of a session (the mandatory
//! protections, the git administrative files, the PATH directories): the
//! second layer behind the read-only mounts, for what the mounts cannot
//! cover (a protected name that did not exist at start). Whatever differs is
//! a `tamper` event; what the command left is moved to a quarantine
//! directory outside the workspace, and a file whose content is known is put
//! back. [`NewRepositories`] does it for the repositories the command created.

mod repos;
pub use repos::{NewRepositories, SAFE_KEYS};

use crate::report::TamperAction;
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
    /// `ctime_ns` changes with every write, chmod and link, and no program can set it back
    /// (`touch -d` sets the mtime only); `nlink` tells a hard link made to the file.
    File { dev: u64, ino: u64, mode: u32, len: u64, mtime_ns: i128, ctime_ns: i128, nlink: u64, content: Option<Vec<u8>> },
    Dir { dev: u64, ino: u64, mode: u32 },
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
            State::Dir { dev, ino, mode: m.mode() & 0o7777 }
        } else if t.is_file() {
            let content = (m.len() <= MAX_CONTENT).then(|| read_no_follow(path)).flatten();
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            State::File { dev, ino, mode: m.mode() & 0o7777, len: m.len(), mtime_ns: ns(m.mtime(), m.mtime_nsec()), ctime_ns: ns(m.ctime(), m.ctime_nsec()), nlink: m.nlink(), content }
        } else {
            State::Other { dev, ino }
        }
    }

    fn identity(&self) -> Option<(u64, u64)> {
        match self {
            State::Missing => None,
            State::File { dev, ino, .. } | State::Dir { dev, ino, .. } | State::Symlink { dev, ino, .. } | State::Other { dev, ino } => Some((*dev, *ino)),
        }
    }
}

/// Reads a file without following a symlink put in its place meanwhile.
fn read_no_follow(path: &Path) -> Option<Vec<u8>> {
    crate::fsio::read_no_follow(path, MAX_CONTENT).ok()
}

/// How a path differs from its snapshot.
pub use crate::report::Change;

/// The difference between two states of one path, if any.
pub fn compare(before: &State, after: &State) -> Option<Change> {
    match (before, after) {
        (State::Missing, State::Missing) => None,
        (State::Missing, _) => Some(Change::Created),
        (_, State::Missing) => Some(Change::Removed),
        _ if before.identity() != after.identity() || std::mem::discriminant(before) != std::mem::discriminant(after) => Some(Change::Replaced),
        (
            State::File { mode: p1, len: l1, mtime_ns: m1, ctime_ns: t1, nlink: n1, content: c1, .. },
            State::File { mode: p2, len: l2, mtime_ns: m2, ctime_ns: t2, nlink: n2, content: c2, .. },
        ) => {
            // A large file rewritten in place with its mtime put back keeps its size: its
            // ctime moved. A hard link made to it is a second name to write it through.
            let same = p1 == p2
                && n1 == n2
                && match (c1, c2) {
                    (Some(a), Some(b)) => a == b,
                    _ => l1 == l2 && m1 == m2 && t1 == t2,
                };
            (!same).then_some(Change::Changed)
        }
        (State::Dir { mode: a, .. }, State::Dir { mode: b, .. }) => (a != b).then_some(Change::Changed),
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

/// The protected paths of one session and their states before it.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    snapshot: Snapshot,
    /// Directories watched with everything in them (`Guard::take_deep`): no mount keeps
    /// them read-only.
    deep: Vec<PathBuf>,
    /// Where a quarantine directory for this session is made when one is needed.
    quarantine_root: Option<PathBuf>,
}

impl Guard {
    /// Takes the snapshot of `paths` that exist, or whose directory exists (a name
    /// created inside a new tree, such as a fresh `git init`, is not watched). Policy
    /// files are left to the policy-file report (`--ask` writes one itself).
    pub fn take(paths: impl IntoIterator<Item = PathBuf>, quarantine_root: Option<PathBuf>) -> Self {
        let watched = paths.into_iter().filter(|p| {
            let named_policy = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| crate::config::FILE_NAMES.contains(&n));
            !named_policy && (std::fs::symlink_metadata(p).is_ok() || p.parent().is_some_and(Path::is_dir))
        });
        Self { snapshot: Snapshot::take(watched), deep: Vec::new(), quarantine_root }
    }

    /// [`Guard::take`], and every directory among `paths` (or that appears at one of them)
    /// is watched with everything in it (up to [`DEEP_ENTRIES`] entries), and each of
    /// `above` (the directories between a writable root and a protected path, `.git` say)
    /// for itself: for a sandbox without namespaces (`--no-namespaces`), where no read-only
    /// mount keeps them and no pin keeps a directory above one from being renamed.
    pub fn take_deep(paths: impl IntoIterator<Item = PathBuf>, above: impl IntoIterator<Item = PathBuf>, quarantine_root: Option<PathBuf>) -> Self {
        let paths: Vec<PathBuf> = paths.into_iter().collect();
        let mut guard = Self::take(paths.iter().cloned(), quarantine_root);
        guard.deep = paths.into_iter().filter(|p| guard.snapshot.states.contains_key(p)).collect();
        let mut inside = Vec::new();
        guard.deep.retain(|d| match entries_below(d) {
            Some(entries) => {
                inside.extend(entries);
                true
            }
            // Too many to watch one by one (not a hooks directory): the directory itself only.
            None => false,
        });
        guard.snapshot.states.extend(Snapshot::take(inside.into_iter().chain(above)).states);
        guard
    }

    /// Compares every watched path with its snapshot; quarantines what the command left
    /// and restores files whose content is known.
    pub fn verify(&self) -> Vec<crate::report::Tamper> {
        let mut quarantine = Quarantine::new(self.quarantine_root.clone());
        self.verify_into(&mut quarantine)
    }

    /// [`Guard::verify`], with the session's quarantine directory (made on first use).
    pub fn verify_into(&self, quarantine: &mut Quarantine) -> Vec<crate::report::Tamper> {
        let (mut out, put_back) = self.pass(quarantine);
        // A directory put back (its renamed original) is checked again, inside.
        if put_back {
            out.extend(self.pass(quarantine).0);
        }
        out
    }

    /// One comparison of every watched path, settling each difference; true when a
    /// directory was put back.
    fn pass(&self, quarantine: &mut Quarantine) -> (Vec<crate::report::Tamper>, bool) {
        let mut out = Vec::new();
        let mut moved: Vec<PathBuf> = Vec::new();
        let mut put_back = false;
        let mut found = Vec::new();
        for d in &self.deep {
            match entries_below(d) {
                Some(entries) if entries.iter().filter(|e| !self.snapshot.states.contains_key(*e)).count() <= FLOOD => found.extend(entries),
                // More new entries than are worth settling one by one (a flood to hide one
                // among them, or to make this check slow): the whole directory goes to the
                // quarantine, and what it held at start is put back.
                _ => {
                    let (action, moved_to, error) = match quarantine.dir() {
                        Err(e) => (TamperAction::Reported, None, Some(e)),
                        Ok(q) => settle(d, &State::Missing, &q),
                    };
                    let (action, error) = match (action, self.rebuild(d)) {
                        (TamperAction::Quarantined, Ok(())) => (TamperAction::Restored, error),
                        (action, Err(e)) => (action, error.or(Some(e))),
                        (action, Ok(())) => (action, error),
                    };
                    moved.push(d.clone());
                    out.push(crate::report::Tamper { path: d.clone(), change: Change::Replaced, action, quarantine: moved_to, error, diff: Vec::new() });
                }
            }
        }
        for (path, change) in self.snapshot.changes(found) {
            // Inside a directory moved to the quarantine already, with it.
            if moved.iter().any(|m| path.starts_with(m)) {
                continue;
            }
            let before = self.snapshot.states.get(&path).unwrap_or(&State::Missing);
            let (mut action, moved_to, mut error) = match quarantine.dir() {
                Err(e) => (TamperAction::Reported, None, Some(e)),
                Ok(q) => settle(&path, before, &q),
            };
            if action != TamperAction::Reported && matches!(change, Change::Created | Change::Replaced) {
                moved.push(path.clone());
            }
            // A directory renamed away (`mv .git .git-moved`, something else put in its
            // place) is put back once its place is free, found by its inode beside it.
            if let (State::Dir { dev, ino, .. }, Change::Replaced | Change::Removed) = (before, &change) {
                match put_back_dir(&path, (*dev, *ino)) {
                    Ok(true) => {
                        (action, error, put_back) = (TamperAction::Restored, None, true);
                        moved.push(path.clone());
                    }
                    Ok(false) => {}
                    Err(e) => error = Some(e),
                }
            }
            out.push(crate::report::Tamper { path, change, action, quarantine: moved_to, error, diff: Vec::new() });
        }
        (out, put_back)
    }

    /// Makes `dir` again as the snapshot had it: the directories with their modes and the
    /// files whose content is known (a larger one cannot be put back, and is said to be).
    fn rebuild(&self, dir: &Path) -> Result<(), String> {
        if std::fs::symlink_metadata(dir).is_ok() {
            return Err(format!("{} is there again", dir.display()));
        }
        let mut lost = 0;
        for (path, state) in self.snapshot.states.range(dir.to_path_buf()..).take_while(|(p, _)| p.starts_with(dir)) {
            let made = match state {
                State::Dir { mode, .. } => std::fs::create_dir(path).and_then(|()| crate::fsio::set_mode_no_follow(path, *mode)),
                State::File { content: Some(content), mode, .. } => restore(path, content, *mode),
                State::Missing => Ok(()),
                _ => Err(std::io::Error::other("not a small file")),
            };
            if made.is_err() {
                lost += 1;
            }
        }
        if lost > 0 { Err(format!("{lost} of the original entries could not be put back")) } else { Ok(()) }
    }

    /// Where this session's quarantine directory goes.
    pub fn quarantine_root(&self) -> Option<PathBuf> {
        self.quarantine_root.clone()
    }
}

/// New entries in a deep-watched directory beyond which it is settled whole
/// ([`Guard::take_deep`]).
pub const FLOOD: usize = 1_000;

/// Entries below a deep-watched directory ([`Guard::take_deep`]), at most this many each.
pub const DEEP_ENTRIES: usize = 200_000;

/// Every path below `dir` (not following symlinks), parents first; empty when `dir` is not
/// a directory, none when there are more than [`DEEP_ENTRIES`].
fn entries_below(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut queue = vec![dir.to_path_buf()];
    while let Some(d) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            if out.len() >= DEEP_ENTRIES {
                return None;
            }
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push(path.clone());
            }
            out.push(path);
        }
    }
    Some(out)
}

/// Renames the directory with inode `id` found beside `path` (in its parent) back to
/// `path`, once nothing is at `path`; true when it did.
fn put_back_dir(path: &Path, id: (u64, u64)) -> Result<bool, String> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    let Some(parent) = path.parent() else { return Ok(false) };
    let Ok(entries) = std::fs::read_dir(parent) else { return Ok(false) };
    for entry in entries.flatten() {
        let Ok(m) = std::fs::symlink_metadata(entry.path()) else { continue };
        if m.is_dir() && (m.dev(), m.ino()) == id {
            return std::fs::rename(entry.path(), path).map(|()| true).map_err(|e| format!("cannot rename {} back: {e}", entry.path().display()));
        }
    }
    Ok(false)
}

/// One session's quarantine directory, made the first time something goes there.
#[derive(Debug)]
pub struct Quarantine {
    root: Option<PathBuf>,
    made: Option<Result<PathBuf, String>>,
}

impl Quarantine {
    pub fn new(root: Option<PathBuf>) -> Quarantine {
        Quarantine { root, made: None }
    }

    /// The directory: a fresh one under the quarantine root, owned by the invoking
    /// user, mode 0700, reached through no symlink (the command may have written
    /// near it).
    pub fn dir(&mut self) -> Result<PathBuf, String> {
        let root = self.root.clone();
        self.made.get_or_insert_with(|| make_quarantine(root)).clone()
    }
}

fn make_quarantine(root: Option<PathBuf>) -> Result<PathBuf, String> {
    let root = root.ok_or("no quarantine directory: HOME is not set")?;
    mkdir_owned(&root)?;
    if root.canonicalize().ok().as_ref() != Some(&root) {
        return Err(format!("{} is reached through a symlink", root.display()));
    }
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "");
    let dir = root.join(format!("{stamp}-{}", std::process::id()));
    mkdir_owned(&dir)?;
    Ok(dir)
}

/// Creates `dir` and the directories missing above it, mode 0700, with the owner of the
/// directory each is made in when sbx is root (`fsio::mkdir_owned`).
pub(crate) fn mkdir_owned(dir: &Path) -> Result<(), String> {
    crate::fsio::mkdir_owned(dir, |_, _| 0o700).1.map_err(|(d, e)| format!("cannot create {}: {e}", d.display()))
}

/// The quarantine directory of `home`: `$XDG_STATE_HOME/sbx/quarantine`, else
/// `~/.local/state/sbx/quarantine`.
pub fn quarantine_root(home: Option<&Path>) -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = state.or_else(|| home.map(|h| h.join(".local/state")))?;
    Some(crate::policy::normalize(&state).join("sbx/quarantine"))
}

/// Moves what is at `path` now into the quarantine (keeping its absolute path below it)
/// and puts the original file back when its content is known.
pub(crate) fn settle(path: &Path, before: &State, quarantine: &Path) -> (TamperAction, Option<PathBuf>, Option<String>) {
    // A directory above it replaced by a symlink (possible without namespaces): moving or
    // writing would act where the link leads, on files of someone else's choosing.
    if let Some(parent) = path.parent()
        && parent.canonicalize().ok().as_deref() != Some(parent)
    {
        return (TamperAction::Reported, None, Some(format!("left in place: {} is no longer a plain directory", parent.display())));
    }
    let now = State::of(path);
    // Only its mode changed (`chmod 777 .git/hooks`): put back.
    if let (State::Dir { dev, ino, mode }, State::Dir { dev: d2, ino: i2, .. }) = (before, &now)
        && (dev, ino) == (d2, i2)
    {
        return match crate::fsio::set_mode_no_follow(path, *mode) {
            Ok(()) => (TamperAction::Restored, None, None),
            Err(e) => (TamperAction::Reported, None, Some(format!("cannot put its mode back: {e}"))),
        };
    }
    let mut moved = None;
    if now != State::Missing {
        // A second one at the same path (a command that kept making it) gets `.1`, `.2`, ...
        let unique = |first: PathBuf| {
            (0..)
                .map(|n| if n == 0 { first.clone() } else { PathBuf::from(format!("{}.{n}", first.display())) })
                .find(|d| std::fs::symlink_metadata(d).is_err())
                .unwrap_or(first)
        };
        let rel = path.strip_prefix("/").unwrap_or(path);
        let mut dest = unique(quarantine.join(rel));
        // A file quarantined earlier where a directory of this path would go (a `.git` file
        // that stood where `.git` was): this one goes flat, its path in its name.
        if dest.parent().is_some_and(|p| p.ancestors().any(|a| a.starts_with(quarantine) && std::fs::symlink_metadata(a).is_ok_and(|m| !m.is_dir()))) {
            dest = unique(quarantine.join("flat").join(rel.to_string_lossy().replace('/', "%")));
        }
        let result = dest.parent().map_or(Ok(()), |p| mkdir_owned(p).map_err(std::io::Error::other)).and_then(|()| move_path(path, &dest));
        match result {
            Ok(()) => moved = Some(dest),
            Err(e) => return (TamperAction::Reported, None, Some(format!("cannot move it to {}: {e}", dest.display()))),
        }
    }
    match before {
        State::File { content: Some(content), mode, .. } => match restore(path, content, *mode) {
            Ok(()) => (TamperAction::Restored, moved, None),
            // Nothing was moved (it was removed): nothing is in the quarantine to name.
            Err(e) if moved.is_none() => (TamperAction::Reported, None, Some(format!("cannot put the original back: {e}"))),
            Err(e) => (TamperAction::Quarantined, moved, Some(format!("cannot put the original back: {e}"))),
        },
        State::Missing => (TamperAction::Quarantined, moved, None),
        _ => (TamperAction::Quarantined, moved, Some("the original cannot be put back (not a small file)".into())),
    }
}

/// rename(2), or a copy and a removal across filesystems.
pub(crate) fn move_path(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            copy_tree(from, to)?;
            if std::fs::symlink_metadata(from)?.is_dir() { std::fs::remove_dir_all(from) } else { std::fs::remove_file(from) }
        }
        other => other,
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let m = std::fs::symlink_metadata(from)?;
    if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if m.is_dir() {
        std::fs::create_dir(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if m.is_file() {
        std::fs::copy(from, to).map(drop)
    } else {
        // A FIFO, socket or device: opening one to copy it could block for good (a FIFO
        // with no writer) or reach a device. It goes as an empty file with its name, noted.
        std::fs::write(to, format!("sbx: a {} was here; it was removed, not copied\n", kind_of(&m)))
    }
}

fn kind_of(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = m.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "device"
    }
}

/// Writes `content` as a new file at `path` with `mode`, refusing a directory reached
/// through a symlink.
fn restore(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    use std::{io::Write as _, os::unix::fs::PermissionsExt as _};
    let parent = path.parent().ok_or_else(|| std::io::Error::other("no directory"))?;
    if parent.canonicalize()? != parent {
        return Err(std::io::Error::other(format!("{} is reached through a symlink", parent.display())));
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(content)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// The policy files (`sbx.jsonc`, `sbx.json`) in `workspace` and its subdirectories down
/// to [`POLICY_DEPTH`] levels (at most [`POLICY_ENTRIES`] entries examined, breadth first,
/// skipping the dependency trees the glob walk skips), and the names where one would be
/// found from the workspace: in it and each of its parents.
pub fn policy_files(workspace: &Path) -> Vec<PathBuf> {
    policy_files_and_repositories(workspace, None).0
}

/// [`policy_files`], and, with `search` (a search for git repositories from `workspace`,
/// `launch::git::walk`), the repositories it finds: one walk of the workspace for both,
/// each within its own bounds. The search sees the directories it enters in the order of
/// a walk of its own (breadth first): the directories entered for the policy files alone
/// are never ones it would enter (they are shallower than its depth and not skipped, so
/// it enters them too while it goes on).
pub fn policy_files_and_repositories(workspace: &Path, mut search: Option<crate::launch::git::Search>) -> (Vec<PathBuf>, Option<crate::launch::git::Walk>) {
    let mut names = policy_search();
    // (directory, depth, entered for the search, entered for the policy files)
    let mut queue = std::collections::VecDeque::from([(workspace.to_path_buf(), 0usize, search.is_some(), true)]);
    while let Some((dir, depth, for_search, for_policy)) = queue.pop_front() {
        let for_search = for_search && search.as_ref().is_some_and(|s| !s.capped());
        let for_policy = for_policy && !names.over();
        if !for_search && !for_policy {
            continue;
        }
        if for_search && let Some(s) = search.as_mut() {
            s.enter(&dir);
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let search_enters = for_search && search.as_mut().and_then(|s| if s.capped() { None } else { s.entry(&entry, depth) }).unwrap_or(false);
            let policy_enters = for_policy && names.entry(&entry, depth);
            if search_enters || policy_enters {
                queue.push_back((entry.path(), depth + 1, search_enters, policy_enters));
            }
        }
    }
    (policy_files_with(workspace, names.finish()), search.map(crate::launch::git::Search::finish))
}

/// The search for policy files below a workspace, for a walk of it to carry
/// (`launch::glob::Walked::walk_with`): [`POLICY_DEPTH`] levels, [`POLICY_ENTRIES`]
/// entries.
pub fn policy_search() -> crate::launch::glob::NameSearch {
    crate::launch::glob::NameSearch::new(&crate::config::FILE_NAMES, POLICY_DEPTH, POLICY_ENTRIES)
}

/// [`policy_files`] of `workspace`, given what [`policy_search`] found below it: with the
/// names where one would be found from the workspace, in it and each of its parents.
pub fn policy_files_with(workspace: &Path, found: Vec<PathBuf>) -> Vec<PathBuf> {
    let names = crate::config::FILE_NAMES;
    workspace.ancestors().flat_map(|d| names.iter().map(move |n| d.join(n))).chain(found).collect()
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

    /// A created name is moved to the quarantine, a changed or removed small file is put
    /// back (what was there moved aside); a name in a directory that did not exist at
    /// start, and policy files, are not watched.
    #[test]
    fn the_guard_quarantines_what_was_created_and_restores_what_was_changed() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().canonicalize().unwrap();
        let q = w.join("q");
        std::fs::create_dir(w.join(".git")).unwrap();
        std::fs::write(w.join(".git/config"), "original\n").unwrap();
        std::fs::write(w.join(".profile"), "original\n").unwrap();
        std::fs::write(w.join(".bash_login"), "original\n").unwrap();
        std::fs::set_permissions(w.join(".bash_login"), std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let watched = [".git/config", ".git/commondir", ".profile", ".bash_login", ".vscode", "new/.git/hooks", "sbx.jsonc"].map(|p| w.join(p));
        let guard = Guard::take(watched, Some(q.clone()));
        assert_eq!(guard.verify(), []);
        std::fs::write(w.join(".git/config"), "[core]\n\tfsmonitor = evil\n").unwrap();
        std::fs::write(w.join(".git/commondir"), "../evil\n").unwrap();
        std::fs::remove_file(w.join(".profile")).unwrap();
        std::fs::write(w.join("other"), "original\n").unwrap();
        std::fs::rename(w.join("other"), w.join(".bash_login")).unwrap();
        std::fs::create_dir(w.join(".vscode")).unwrap();
        std::fs::write(w.join(".vscode/tasks.json"), "{}").unwrap();
        std::fs::create_dir_all(w.join("new/.git/hooks")).unwrap();
        std::fs::write(w.join("sbx.jsonc"), "{}").unwrap();
        let got = guard.verify();
        let session = got[0].quarantine.as_ref().unwrap().ancestors().find(|a| a.parent() == Some(q.as_path())).unwrap().to_path_buf();
        let inq = |p: &str| Some(session.join(w.join(p).strip_prefix("/").unwrap()));
        let t = |p: &str, change, action, quarantine| crate::report::Tamper { path: w.join(p), change, action, quarantine, error: None, diff: Vec::new() };
        assert_eq!(
            got,
            [
                t(".bash_login", Change::Replaced, TamperAction::Restored, inq(".bash_login")),
                t(".git/commondir", Change::Created, TamperAction::Quarantined, inq(".git/commondir")),
                t(".git/config", Change::Changed, TamperAction::Restored, inq(".git/config")),
                t(".profile", Change::Removed, TamperAction::Restored, None),
                t(".vscode", Change::Created, TamperAction::Quarantined, inq(".vscode")),
            ]
        );
        assert_eq!(std::fs::read_to_string(w.join(".git/config")).unwrap(), "original\n");
        assert_eq!(std::fs::read_to_string(w.join(".profile")).unwrap(), "original\n");
        assert_eq!(std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(w.join(".bash_login")).unwrap()) & 0o7777, 0o640);
        assert!(!w.join(".git/commondir").exists() && !w.join(".vscode").exists());
        assert_eq!(std::fs::read_to_string(session.join(w.join(".vscode/tasks.json").strip_prefix("/").unwrap())).unwrap(), "{}");
        assert!(w.join("new/.git/hooks").exists() && w.join("sbx.jsonc").exists());
    }

    #[test]
    fn one_walk_finds_the_policy_files_and_the_same_repositories_as_a_search_of_its_own() {
        use crate::launch::git;
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        for d in ["a/.git", "a/b/c/.git", "node_modules/x/.git", "d/e/f/g/h/i/j/k/l/.git", "m/.git"] {
            std::fs::create_dir_all(ws.join(d)).unwrap();
        }
        for f in ["a/sbx.jsonc", "a/b/c/sbx.json", "d/e/f/g/h/i/j/sbx.jsonc", "d/e/f/g/h/i/j/k/l/sbx.jsonc", "node_modules/x/sbx.jsonc"] {
            std::fs::write(ws.join(f), "{}").unwrap();
        }
        let (files, repos) = policy_files_and_repositories(ws, Some(git::Search::default()));
        assert_eq!(repos, Some(git::repositories(ws)), "the same repositories as the search alone");
        let repos = repos.unwrap();
        assert!(repos.complete);
        assert!(repos.found.contains(&ws.join("d/e/f/g/h/i/j/k/l")), "deeper than the policy files' depth: {:?}", repos.found);
        assert!(!repos.found.iter().any(|r| r.starts_with(ws.join("node_modules"))));
        let mut alone = policy_files(ws);
        let mut files = files;
        alone.sort();
        files.sort();
        assert_eq!(files, alone, "the same policy files as the walk for them alone");
        assert!(files.contains(&ws.join("a/sbx.jsonc")) && files.contains(&ws.join("a/b/c/sbx.json")) && files.contains(&ws.join("d/e/f/g/h/i/j/sbx.jsonc")));
        assert!(!files.contains(&ws.join("d/e/f/g/h/i/j/k/l/sbx.jsonc")), "below POLICY_DEPTH");
        // A search stopped by its bounds early: the policy files are still all found.
        let (capped_files, capped) = policy_files_and_repositories(ws, Some(git::Search::bounded(git::MAX_DEPTH, 3)));
        assert_eq!(capped, Some(git::walk(ws, git::Search::bounded(git::MAX_DEPTH, 3))));
        assert!(!capped.unwrap().complete);
        let mut capped_files = capped_files;
        capped_files.sort();
        assert_eq!(capped_files, files);
        // Carried by the glob rules' walk from the workspace instead: the same files.
        let mut walked = crate::launch::glob::Walked::walk_with(&[ws.join("**/.env")], ws, Some(policy_search()));
        let mut carried = policy_files_with(ws, walked.names().expect("the walk went to the search's end"));
        carried.sort();
        assert_eq!(carried, files);
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
