//! Protected names that do not exist when the session starts.
//!
//! A read-only mount needs something to be mounted on, so a protected name that is
//! missing at start (the `hooks` directory of a repository cloned without one,
//! `~/.local/bin` before anything was installed there, `.git/commondir`, a project's
//! `.mcp.json`) would be open to the command. Two answers, by kind:
//!
//! * **Directories**: sbx creates an empty placeholder before the sandbox is built, with
//!   its parent's owner; the plan then mounts it read-only and pins it like any other
//!   protected directory, so nothing can be created in it, and it cannot be renamed or
//!   replaced. It is removed at the end when it is still empty, and the placeholders of a
//!   session that was killed are removed by the next one (a list in sbx's runtime
//!   directory). An empty directory where one can be is harmless to every tool that reads
//!   it (git, shells, ssh, editors), so even a crash leaves nothing that breaks them.
//! * **Files**: a placeholder file would not be harmless (an empty `.bash_profile` hides
//!   `.profile` from bash; an empty `commondir` breaks every git command), so sbx watches
//!   their directories with inotify from before the command starts: a protected name that
//!   appears (created, linked, renamed in, a symlink, a FIFO) is moved to the quarantine at
//!   once and reported as a `tamper` event; a second one stops the command, so a loop that
//!   keeps creating one gains nothing. Between the creation and the move (well under a
//!   millisecond) the name exists: the exit check (`snapshot::Guard`) is the last layer.
//!
//! A name whose parent directory does not exist either, and is not a placeholder, is left
//! to the exit check.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::policy::{PROTECTED_FILES, Policy};

/// The file names among [`crate::policy::HOME_PROTECTED`] (the rest are directories).
const HOME_PROTECTED_FILES: &[&str] = &[".xprofile", ".xsessionrc", ".pam_environment", ".claude/.config.json"];
/// The names of git's administrative files (`launch::git`); its other paths (`hooks`,
/// the directory `core.hooksPath` names) are directories.
const GIT_FILES: &[&str] = &["config", "commondir", "config.worktree", ".git"];

/// What a protected path is when it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Whether the protected path `path` is a directory or a file when it exists.
pub fn kind_of(policy: &Policy, git_paths: &[PathBuf], path: &Path) -> Kind {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if git_paths.iter().any(|g| g == path) {
        return if GIT_FILES.contains(&name) { Kind::File } else { Kind::Dir };
    }
    let home_file = policy.home.as_ref().is_some_and(|h| HOME_PROTECTED_FILES.iter().any(|f| h.join(f) == path));
    let protected_file = path.parent().is_some_and(|p| p == policy.workspace || policy.home.as_deref() == Some(p)) && PROTECTED_FILES.contains(&name);
    // A denyWrite path that does not exist: what it would be is unknown; watched.
    if home_file || protected_file || policy.fs.deny_write.iter().any(|d| d == path) || (name == "config" && path.parent().is_some_and(|p| p.ends_with(".git"))) {
        Kind::File
    } else {
        Kind::Dir
    }
}

/// The placeholders one session made, removed (when still empty and still theirs) when
/// dropped.
#[derive(Debug, Default)]
pub struct Placeholders {
    /// Outermost first.
    made: Vec<(PathBuf, u64, u64)>,
    /// The list in the runtime directory, for the next session if this one is killed.
    list: Option<PathBuf>,
}

impl Placeholders {
    /// Creates an empty directory at each path of `dirs` that does not exist and whose
    /// nearest existing ancestor is inside one of `writable` (elsewhere the command cannot
    /// create it either), with the directories missing on the way.
    pub fn make(dirs: &[PathBuf], writable: &[PathBuf]) -> Placeholders {
        let mut out = Placeholders::default();
        let _lock = lock();
        let others = listed_by_others();
        for dir in dirs {
            // Another session's placeholder, which that session mounts: this one keeps it
            // too, so that the first to end does not remove what the other relies on
            // (removing a directory detaches the mounts on it in every namespace).
            if let Ok(m) = std::fs::symlink_metadata(dir)
                && m.is_dir()
                && others.contains(&(m.dev(), m.ino()))
            {
                out.made.push((dir.clone(), m.dev(), m.ino()));
                continue;
            }
            let Some(existing) = dir.ancestors().find(|a| std::fs::symlink_metadata(a).is_ok()) else { continue };
            if existing == dir.as_path() {
                continue;
            }
            // Inside a writable root, and never through a symlink below it: one there may
            // be the command's (`~/.config -> /etc`), and sbx would make the placeholder, as
            // root maybe, wherever it leads.
            let Some(root) = writable.iter().find(|w| existing.starts_with(w)) else { continue };
            let plain = root.canonicalize().ok().zip(existing.canonicalize().ok()).is_some_and(|(r, e)| existing.strip_prefix(root).is_ok_and(|rest| r.join(rest) == e));
            if !existing.is_dir() || !plain {
                continue;
            }
            // Never a `.git` directory: an empty one where there was no repository would
            // be a stray (the command's own `git init` makes a repository sbx does not
            // watch; see ARCHITECTURE.md).
            if dir.ancestors().take_while(|a| *a != existing).any(|d| d.file_name().is_some_and(|n| n == ".git")) {
                continue;
            }
            // The owner of what it sits in (root's sbx in a user's tree), never wider than
            // 0755; `.ssh` 0700 like ssh wants it.
            let (made, result) = crate::fsio::mkdir_owned(dir, |d, parent| if d.file_name().is_some_and(|n| n == ".ssh") { 0o700 } else { parent & 0o755 });
            for d in made {
                if let Ok(m) = std::fs::symlink_metadata(&d) {
                    out.made.push((d, m.dev(), m.ino()));
                }
            }
            if let Err((d, e)) = result {
                // Refused by the file system: the command, no more privileged than sbx,
                // cannot create it either (a workspace the user may only read).
                match e.raw_os_error() {
                    Some(libc::EACCES | libc::EPERM | libc::EROFS) => tracing::debug!("no placeholder {}: {e}", d.display()),
                    _ => tracing::warn!("could not create the placeholder {}: {e}", d.display()),
                }
            }
        }
        // Written before the lock is let go: a session ending meanwhile sees it.
        if !out.made.is_empty() {
            out.list = crate::state::session_file("placeholders", "").ok();
            if let Some(list) = &out.list {
                let text: String = out.made.iter().map(|(p, dev, ino)| format!("{dev} {ino} {}\n", p.display())).collect();
                if let Err(e) = crate::fsio::create_new(list, 0o600).and_then(|mut f| {
                    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|source| crate::fsio::FsError::Io { op: "write", path: list.clone(), source })
                }) {
                    tracing::warn!("could not record the placeholders: {e}");
                }
            }
        }
        out
    }

    /// The placeholders made, outermost first.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.made.iter().map(|(p, _, _)| p.as_path())
    }
}

impl Drop for Placeholders {
    fn drop(&mut self) {
        if self.made.is_empty() {
            return;
        }
        let _lock = lock();
        remove(&self.made);
        if let Some(list) = &self.list {
            let _ = std::fs::remove_file(list);
        }
    }
}

/// Serialises making, adopting and removing placeholders among the user's sessions: a
/// lock on sbx's runtime directory itself (no file is left there).
fn lock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = crate::state::runtime_dir().ok()?;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(dir).ok()?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
}

/// The placeholders (device, inode) that the user's other running sessions made or keep.
fn listed_by_others() -> BTreeSet<(u64, u64)> {
    crate::state::session_files_of_others("placeholders", true).iter().flat_map(|l| read_list(l)).map(|(_, dev, ino)| (dev, ino)).collect()
}

fn read_list(list: &Path) -> Vec<(PathBuf, u64, u64)> {
    let Ok(text) = crate::fsio::read_to_string(list) else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ' ');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?))
        })
        .map(|(dev, ino, p): (u64, u64, &str)| (PathBuf::from(p), dev, ino))
        .collect()
}

/// Removes the directories of `made` (innermost first) that are still empty, still the
/// ones made (device and inode) and kept by no other running session.
fn remove(made: &[(PathBuf, u64, u64)]) {
    let others = listed_by_others();
    for (path, dev, ino) in made.iter().rev() {
        if others.contains(&(*dev, *ino)) {
            continue;
        }
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && (m.dev(), m.ino()) == (*dev, *ino)) {
            // Fails, as it should, when something is in it.
            let _ = std::fs::remove_dir(path);
        }
    }
}

/// Removes the placeholders in a list left by a session that was killed.
pub fn remove_listed(list: &Path) {
    let _lock = lock();
    remove(&read_list(list));
}

/// Removes the placeholders, and their lists, of the user's sessions that were killed.
pub fn remove_stale() {
    for list in crate::state::session_files_of_others("placeholders", false) {
        remove_listed(&list);
        let _ = std::fs::remove_file(&list);
    }
}

/// The inotify watch over the directories of protected file names missing at start (and
/// of hidden paths, which the host may replace: `launch::remask`).
#[derive(Debug)]
pub struct Watch {
    inotify: nix::sys::inotify::Inotify,
    /// Watch descriptor → the directory and the names watched in it.
    dirs: std::cell::RefCell<BTreeMap<nix::sys::inotify::WatchDescriptor, (PathBuf, BTreeSet<std::ffi::OsString>)>>,
    /// A watch of chains ([`Watch::chains`]): each watched path, and the directory its
    /// chain is watched from.
    chains: Vec<(PathBuf, PathBuf)>,
    /// Each watched directory's path → its watch: the directory that was at a path before
    /// (moved away, removed) is no longer watched once another is there.
    paths: std::cell::RefCell<BTreeMap<PathBuf, nix::sys::inotify::WatchDescriptor>>,
}

impl Watch {
    /// Watches the parent directory of each path of `files` that does not exist and whose
    /// parent does; `None` when there is none (or inotify cannot be had, which the exit
    /// check then covers: a warning).
    pub fn start(files: &[PathBuf]) -> Option<Watch> {
        let missing: Vec<PathBuf> = files.iter().filter(|f| std::fs::symlink_metadata(f).is_err()).cloned().collect();
        Self::names(&missing, "protected names created during the session", "checked at exit only")
    }

    /// Watches the parent directory of each of `paths` (those whose parent exists) for
    /// that name being created or renamed onto; `None` when there is none, or when inotify
    /// cannot be had (a warning: the watch is for `what`, and without it, `otherwise`).
    pub fn names(paths: &[PathBuf], what: &str, otherwise: &str) -> Option<Watch> {
        // Each name in its directory's real path (a directory reached through a symlink is
        // watched where it is).
        let paths: Vec<(PathBuf, &std::ffi::OsStr)> =
            paths.iter().filter_map(|f| Some((std::fs::canonicalize(f.parent()?).ok().filter(|d| d.is_dir())?, f.file_name()?))).collect();
        if paths.is_empty() {
            return None;
        }
        let watch = Watch::new(Vec::new(), what, otherwise)?;
        for (parent, name) in paths {
            if let Err(e) = watch.add(&parent, name) {
                eprintln!("sbx: warning: cannot watch {} for {what} (inotify: {e}); {otherwise}", crate::termtext::path(&parent));
            }
        }
        Some(watch)
    }

    /// Watches each of `paths` (real paths: their directories' symlinks resolved) and
    /// every directory on its way down from the deepest of
    /// `roots` above it: a path is reported (by [`Watch::created`]) when it is created or
    /// renamed onto, and also when a directory on its way is, since a directory renamed
    /// away takes its watch along (then the new chain is watched). For paths that must be
    /// followed while the directories above them can be renamed (the hidden paths inside
    /// a writable tree, `launch::remask`). `None` as for [`Watch::names`].
    pub fn chains(paths: &[PathBuf], roots: &[PathBuf], what: &str, otherwise: &str) -> Option<Watch> {
        let roots: Vec<PathBuf> = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect();
        // The paths as given (real paths, found before the command ran): resolving them
        // again now would follow a symlink the command left on the way meanwhile, and watch
        // where it leads instead.
        let chains: Vec<(PathBuf, PathBuf)> = paths
            .iter()
            .map(|real| {
                let top = roots.iter().filter(|r| real.starts_with(r) && *real != **r).max_by_key(|r| r.components().count()).cloned();
                (real.clone(), top.unwrap_or_else(|| real.parent().unwrap_or(real).to_path_buf()))
            })
            .collect();
        if chains.is_empty() {
            return None;
        }
        let watch = Watch::new(chains, what, otherwise)?;
        for (path, top) in &watch.chains {
            if let Err((dir, e)) = watch.arm(path, top) {
                eprintln!("sbx: warning: cannot watch {} for {what} (inotify: {e}); {otherwise}", crate::termtext::path(&dir));
            }
        }
        Some(watch)
    }

    /// An inotify instance watching nothing yet; `None` (a warning) when none can be had.
    fn new(chains: Vec<(PathBuf, PathBuf)>, what: &str, otherwise: &str) -> Option<Watch> {
        use nix::sys::inotify::{InitFlags, Inotify};
        match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
            Ok(inotify) => Some(Watch { inotify, dirs: Default::default(), chains, paths: Default::default() }),
            Err(e) => {
                eprintln!("sbx: warning: cannot watch for {what} (inotify: {e}); {otherwise}");
                None
            }
        }
    }

    /// Watches `dir` for `name` being created or renamed onto.
    fn add(&self, dir: &Path, name: &std::ffi::OsStr) -> nix::Result<()> {
        use nix::sys::inotify::AddWatchFlags;
        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR | AddWatchFlags::IN_DONT_FOLLOW;
        let wd = self.inotify.add_watch(dir, flags)?;
        let (mut dirs, mut paths) = (self.dirs.borrow_mut(), self.paths.borrow_mut());
        // A directory watched under another name was moved here: it is this path's now
        // (events in it are about the names below `dir`), and no longer the old path's,
        // whose chain has its own directories.
        let entry = dirs.entry(wd).or_insert_with(|| (dir.to_path_buf(), BTreeSet::new()));
        if entry.0 != dir {
            if paths.get(&entry.0) == Some(&wd) {
                paths.remove(&entry.0);
            }
            *entry = (dir.to_path_buf(), BTreeSet::new());
        }
        entry.1.insert(name.to_os_string());
        // The directory that was at this path before (moved away, removed) is watched no
        // more: a command renaming directories in a loop would otherwise leave a watch on
        // each (charged to sbx's user, root's being the whole host's).
        if let Some(before) = paths.insert(dir.to_path_buf(), wd)
            && before != wd
        {
            let _ = self.inotify.rm_watch(before);
            dirs.remove(&before);
        }
        Ok(())
    }

    /// Forgets a watch the kernel removed (its directory was deleted, or `add` removed it).
    fn forget(&self, wd: nix::sys::inotify::WatchDescriptor) {
        if let Some((dir, _)) = self.dirs.borrow_mut().remove(&wd) {
            let mut paths = self.paths.borrow_mut();
            if paths.get(&dir) == Some(&wd) {
                paths.remove(&dir);
            }
        }
    }

    /// Watches the directories from `top` down to `path`'s, as far as they exist (real
    /// directories, not links), each for the next name on the way.
    fn arm(&self, path: &Path, top: &Path) -> Result<(), (PathBuf, nix::Error)> {
        let Ok(below) = path.strip_prefix(top) else { return Ok(()) };
        let mut dir = top.to_path_buf();
        for name in below.iter() {
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                break;
            }
            self.add(&dir, name).map_err(|e| (dir.clone(), e))?;
            dir.push(name);
        }
        Ok(())
    }

    /// The protected paths that exist now, from the events queued so far (after an
    /// overflow, from every watched name).
    pub fn created(&self) -> Vec<PathBuf> {
        use nix::sys::inotify::AddWatchFlags;
        let mut out = BTreeSet::new();
        let mut rescan = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => {
                    for e in events {
                        if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                            rescan = true;
                        }
                        if e.mask.contains(AddWatchFlags::IN_IGNORED) {
                            self.forget(e.wd);
                            continue;
                        }
                        let seen = self.dirs.borrow().get(&e.wd).zip(e.name).filter(|((_, names), name)| names.contains(name)).map(|((dir, _), name)| dir.join(name));
                        if let Some(seen) = seen {
                            // A directory on the way of a chain: the paths below it are
                            // watched again along the new one, and looked at.
                            for (path, top) in self.chains.iter().filter(|(p, _)| p.starts_with(&seen) && *p != seen) {
                                let _ = self.arm(path, top);
                                out.insert(path.clone());
                            }
                            out.insert(seen);
                        }
                    }
                }
                _ => break,
            }
        }
        if rescan {
            for (path, top) in &self.chains {
                let _ = self.arm(path, top);
            }
            for (dir, names) in self.dirs.borrow().values() {
                out.extend(names.iter().map(|n| dir.join(n)));
            }
            out.extend(self.chains.iter().map(|(p, _)| p.clone()));
        }
        // Only the watched paths themselves, as they are now.
        let watched = |p: &PathBuf| self.chains.is_empty() || self.chains.iter().any(|(c, _)| c == p);
        out.into_iter().filter(|p| watched(p) && std::fs::symlink_metadata(p).is_ok()).collect()
    }
}

impl Watch {
    /// Removes every watch. Closing an inotify instance waits for the kernel to free its
    /// marks (an SRCU grace period, ~8 ms here); removing them first lets that happen in
    /// the background while the session does its exit checks, and the close is then short.
    pub fn stop(&self) {
        for wd in self.dirs.borrow().keys() {
            let _ = self.inotify.rm_watch(*wd);
        }
    }

    /// A second descriptor of the same inotify instance, to wait on (`created` reads).
    pub fn fd(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd as _;
        self.inotify.as_fd().try_clone_to_owned()
    }
}

/// Creates the allowWrite directories that are missing (`FsPolicy::create_dirs`: written
/// with a trailing `/`, inside the home), with the directories missing above them, mode
/// 0700 and the owner of the directory each is made in (the user's, under their home).
/// Nothing is made through a symlink: the deepest existing directory above must be its
/// own real path. Returns a warning for each that could not be made.
pub fn create_write_dirs(policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    for dir in &policy.fs.create_dirs {
        if let Err(why) = make_missing_dir(dir) {
            warnings.push(format!("the allowWrite directory {} was not created: {why}", crate::termtext::path(dir)));
        }
    }
    warnings
}

/// Makes `dir` (and what is missing above it, with `snapshot::mkdir_owned`) when nothing is
/// there; the reason, for a warning, when the directory it would be made in is not a plain
/// directory (a symlink a command could have planted) or the making fails.
fn make_missing_dir(dir: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(dir).is_ok() {
        return Ok(());
    }
    let Some(existing) = dir.ancestors().find(|a| std::fs::symlink_metadata(a).is_ok()) else { return Ok(()) };
    if existing.canonicalize().ok().as_deref() != Some(existing) || !existing.is_dir() {
        return Err(format!("{} is not a plain directory", crate::termtext::path(existing)));
    }
    crate::snapshot::mkdir_owned(dir).map_err(|e| crate::termtext::escape(&e).into_owned())
}

/// The `privateWrite` directories (`Policy::private_dirs`) that exist, or that are to be
/// created (written with a trailing `/`: the directory itself is made as the mount point):
/// sbx's store for each is made (mode 0700, the user's). Returns the warnings.
pub fn create_private_dirs(policy: &Policy) -> Vec<String> {
    let mut warnings = Vec::new();
    for (dir, store) in policy.private_dirs() {
        if std::fs::symlink_metadata(&dir).is_err() && !policy.fs.create_dirs.contains(&dir) {
            continue;
        }
        for (what, path) in [("its store", &store), ("it", &dir)] {
            if let Err(failed) = make_missing_dir(path) {
                warnings.push(format!("the privateWrite directory {} is not writable: {what} could not be created ({failed})", crate::termtext::path(&dir)));
                break;
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_made_where_the_command_could_create_them_and_removed_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("ws");
        std::fs::create_dir_all(w.join(".git")).unwrap();
        let outside = dir.path().join("outside/.local/bin");
        let wanted = [w.join(".git/hooks"), w.join("a/b/.vscode"), outside.clone(), w.join("sub/.git/hooks")];
        let p = Placeholders::make(&wanted, std::slice::from_ref(&w));
        assert!(w.join(".git/hooks").is_dir() && w.join("a/b/.vscode").is_dir());
        assert!(!dir.path().join("outside").exists(), "not writable: nothing made");
        assert!(!w.join("sub").exists(), "no .git directory where there was no repository");
        assert_eq!(p.paths().count(), 4, "hooks, a, a/b, a/b/.vscode");
        // One was filled meanwhile (by the user, on the host): it and its parents stay.
        std::fs::write(w.join("a/b/.vscode/settings.json"), "{}").unwrap();
        drop(p);
        assert!(!w.join(".git/hooks").exists());
        assert!(w.join("a/b/.vscode/settings.json").exists());
    }

    #[test]
    fn a_killed_sessions_list_removes_its_empty_placeholders_only() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let m = |p: &Path| std::fs::metadata(p).unwrap();
        let list = dir.path().join("list");
        // b was replaced by another directory since: not ours any more.
        std::fs::write(&list, format!("{} {} {}\n{} {} {}\n", m(&a).dev(), m(&a).ino(), a.display(), m(&b).dev(), m(&b).ino() + 1, b.display())).unwrap();
        remove_listed(&list);
        assert!(!a.exists() && b.exists());
    }

    /// A chain is followed down from its top: a directory on the way moved away and made
    /// again is watched in its new form, and the path in it is reported when it appears
    /// (or is there already); other names are not.
    #[test]
    fn a_chain_follows_its_path_through_directories_moved_and_made_again() {
        let top = tempfile::tempdir().unwrap();
        let t = std::fs::canonicalize(top.path()).unwrap();
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/b/.env"), "1").unwrap();
        let watch = Watch::chains(&[t.join("a/b/.env")], std::slice::from_ref(&t), "test", "test").unwrap();
        assert_eq!(watch.created(), Vec::<PathBuf>::new());
        std::fs::rename(t.join("a"), t.join("moved")).unwrap();
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        assert_eq!(watch.created(), Vec::<PathBuf>::new(), "nothing at the path yet");
        std::fs::write(t.join("a/b/other"), "").unwrap();
        std::fs::write(t.join("a/b/.env"), "2").unwrap();
        assert_eq!(watch.created(), vec![t.join("a/b/.env")]);
        // Made again with the file already in it: reported when the directory appears.
        std::fs::rename(t.join("a"), t.join("moved2")).unwrap();
        std::fs::create_dir_all(t.join("staging/b")).unwrap();
        std::fs::write(t.join("staging/b/.env"), "3").unwrap();
        std::fs::rename(t.join("staging"), t.join("a")).unwrap();
        assert_eq!(watch.created(), vec![t.join("a/b/.env")]);
    }

    #[test]
    fn a_created_protected_name_is_seen_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let watch = Watch::start(&[d.join("commondir"), d.join(".mcp.json")]).unwrap();
        std::fs::write(d.join("other"), "").unwrap();
        assert_eq!(watch.created(), Vec::<PathBuf>::new());
        std::fs::write(d.join("tmp"), "").unwrap();
        std::fs::rename(d.join("tmp"), d.join("commondir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.join(".mcp.json")).unwrap();
        assert_eq!(watch.created(), vec![d.join(".mcp.json"), d.join("commondir")]);
    }
}
