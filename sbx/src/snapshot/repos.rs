//! Repositories the command created (`git init`, `git clone`): checked at exit like the
//! protected names they hold, since none of them existed for the mounts to protect.
//!
//! In a repository that existed at start, `.git/config`, `hooks`, `commondir` and
//! `config.worktree` are read-only for the whole session. A repository made during the
//! session had no such mounts: git must write its configuration to create it. So that the
//! outcome is the same (nothing the host's git runs later comes from the command), at exit
//! a new repository keeps only what runs nothing: its hooks other than git's `*.sample`
//! files, `commondir` and `config.worktree` go to the quarantine, and a `config` with any
//! key outside [`SAFE_KEYS`] goes there too, replaced by its safe keys (`tamper` events;
//! the config's has action `stripped` and the keys left out as its `diff`).
//! An allow list, not a deny list of `core.hooksPath`, `core.fsmonitor`, aliases, filters,
//! `include*`, `credential.*` ...: git gains keys that run commands faster than any list
//! of them is kept up to date.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use super::{Quarantine, State, settle};
use crate::report::{Change, TamperAction};

/// The keys a new repository's configuration keeps: `section.key` or `section.*.key` (any
/// subsection), lower case. Identity, remotes (URLs and refspecs; transports such as
/// `ext::` stay refused by git's own `protocol.allow` default), branch tracking, and what
/// `git init` writes.
pub const SAFE_KEYS: &[&str] = &[
    "core.repositoryformatversion",
    "core.filemode",
    "core.bare",
    "core.logallrefupdates",
    "core.ignorecase",
    "core.precomposeunicode",
    "core.symlinks",
    "user.name",
    "user.email",
    "remote.*.url",
    "remote.*.pushurl",
    "remote.*.fetch",
    "remote.*.push",
    "remote.*.tagopt",
    "remote.*.prune",
    "branch.*.remote",
    "branch.*.merge",
    "branch.*.rebase",
    "branch.*.pushremote",
    "init.defaultbranch",
    "extensions.objectformat",
];

/// The repositories of the workspace at start, derived from their administrative paths
/// (`launch::git::admin_paths` lists every repository's, existing or not), so that no
/// second walk is needed at start.
#[derive(Debug, Clone)]
pub struct NewRepositories {
    workspace: PathBuf,
    before: BTreeSet<PathBuf>,
    /// allowGitConfig: configuration is the command's to write, in new repositories too.
    config_allowed: bool,
    /// The gitdirs that existed at start (the repositories' and their submodules'), by
    /// their real paths: guarded as protected paths, never stripped as new ones.
    known_gitdirs: Vec<PathBuf>,
    /// The start's walk saw every repository. When it was cut short by its bounds, the
    /// repositories beyond them had no mounts: the exit walk goes further
    /// (`git::EXIT_MAX_DEPTH`, `git::EXIT_MAX_ENTRIES`), and in one that existed at start
    /// what changed during the session is checked as a new repository's would be.
    start_complete: bool,
    /// When the session started, by the clock the filesystems stamp files with (coarse).
    since: std::time::SystemTime,
}

impl NewRepositories {
    pub fn take(workspace: &Path, git_paths: &[PathBuf], config_allowed: bool, start_complete: bool) -> NewRepositories {
        let before = git_paths
            .iter()
            .filter_map(|p| p.ancestors().find(|a| a.file_name().is_some_and(|n| n == ".git")).and_then(Path::parent).map(Path::to_path_buf))
            .collect();
        let known_gitdirs = git_paths
            .iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "config" || n == "hooks" || n == "commondir"))
            .filter_map(|p| p.parent())
            .filter_map(|d| d.canonicalize().ok())
            .collect();
        NewRepositories { workspace: workspace.to_path_buf(), before, config_allowed, known_gitdirs, start_complete, since: coarse_now() }
    }

    /// The new repositories' runnable parts, moved to the quarantine; with the workspace's
    /// policy files as they are now (`super::policy_files`), found by the same walk.
    pub fn verify_into(&self, quarantine: &mut Quarantine) -> (Vec<crate::report::Tamper>, Vec<PathBuf>) {
        let mut out = Vec::new();
        use crate::launch::git;
        let search = match self.start_complete {
            true => git::Search::default(),
            false => git::Search::bounded(git::EXIT_MAX_DEPTH, git::EXIT_MAX_ENTRIES),
        };
        let (policy_files, walk) = super::policy_files_and_repositories(&self.workspace, Some(search));
        let walk = walk.unwrap_or_default();
        for repo in walk.found {
            if self.before.contains(&repo) {
                continue;
            }
            let dotgit = repo.join(".git");
            let Ok(meta) = std::fs::symlink_metadata(&dotgit) else { continue };
            // A repository the start's walk did not reach, older than the session: only
            // what changed during it is the command's (a hook the user had stays).
            let old = !self.start_complete && meta.created().is_ok_and(|born| born < self.since);
            let changed = |p: &Path| !old || changed_since(p, self.since);
            // A gitlink (`gitdir: PATH`) the command wrote: the gitdir it names is checked
            // as a new repository's own (git reads that configuration and runs those hooks
            // for this work tree). A `.git` that is neither (a symlink, say) goes.
            let gitdir = if meta.is_dir() {
                dotgit
            } else if let Some(target) = meta.is_file().then(|| gitlink_target(&dotgit)).flatten() {
                if self.known_gitdirs.contains(&target) {
                    continue;
                }
                target
            } else {
                out.push(quarantined(&dotgit, &State::Missing, Change::Created, Vec::new(), quarantine));
                continue;
            };
            let mut created: Vec<PathBuf> =
                ["commondir", "config.worktree"].iter().map(|f| gitdir.join(f)).filter(|p| p.symlink_metadata().is_ok() && changed(p)).collect();
            if let Ok(hooks) = std::fs::read_dir(gitdir.join("hooks")) {
                created.extend(hooks.flatten().map(|e| e.path()).filter(|p| p.extension().is_none_or(|x| x != "sample") && changed(p)));
            }
            created.sort();
            for path in created {
                out.push(quarantined(&path, &State::Missing, Change::Created, Vec::new(), quarantine));
            }
            let config = gitdir.join("config");
            if self.config_allowed || !changed(&config) {
                continue;
            }
            // A config that is not a plain file (a symlink to a file of the command's
            // choosing, read through by git) goes whole.
            match std::fs::symlink_metadata(&config) {
                Err(_) => continue,
                Ok(m) if !m.is_file() => {
                    out.push(quarantined(&config, &State::Missing, Change::Created, Vec::new(), quarantine));
                    continue;
                }
                Ok(_) => {}
            }
            let Some(text) = super::read_no_follow(&config).map(|b| String::from_utf8_lossy(&b).into_owned()) else { continue };
            let (safe, dropped) = safe_config(&text);
            if !dropped.is_empty() {
                let before = State::File { dev: 0, ino: 0, mode: 0o644, len: 0, mtime_ns: 0, ctime_ns: 0, nlink: 1, content: Some(safe.into_bytes()) };
                let mut t = quarantined(&config, &before, Change::Changed, dropped.into_iter().map(|k| format!("- {k}")).collect(), quarantine);
                if t.action == TamperAction::Restored {
                    t.action = TamperAction::Stripped;
                }
                out.push(t);
            }
        }
        (out, policy_files)
    }
}

/// Now, by the coarse clock that stamps files (`CLOCK_REALTIME_COARSE`): a file changed
/// after this call has a ctime no earlier.
fn coarse_now() -> std::time::SystemTime {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
        .ok()
        .and_then(|t| std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(u64::try_from(t.tv_sec()).ok()?, u32::try_from(t.tv_nsec()).ok()?)))
        .unwrap_or_else(std::time::SystemTime::now)
}

/// `path` (not followed) was made or changed at `since` or later (its ctime).
fn changed_since(path: &Path, since: std::time::SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(m) = std::fs::symlink_metadata(path) else { return false };
    let ctime = u64::try_from(m.ctime()).ok().and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(s, u32::try_from(m.ctime_nsec()).unwrap_or(0))));
    ctime.is_none_or(|c| c >= since)
}

/// The gitdir a gitlink file names (`gitdir: PATH`, relative to the file's directory), as
/// a real path; none when the file says nothing of the kind or names nothing there.
fn gitlink_target(file: &Path) -> Option<PathBuf> {
    let text = String::from_utf8(super::read_no_follow(file)?).ok()?;
    let named = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    file.parent()?.join(named).canonicalize().ok().filter(|p| p.is_dir())
}

fn quarantined(path: &Path, before: &State, change: Change, diff: Vec<String>, quarantine: &mut Quarantine) -> crate::report::Tamper {
    let (action, moved, error) = match quarantine.dir() {
        Err(e) => (TamperAction::Reported, None, Some(e)),
        Ok(q) => settle(path, before, &q),
    };
    crate::report::Tamper { path: path.to_path_buf(), change, action, quarantine: moved, error, diff }
}

/// The configuration with only [`SAFE_KEYS`], and the keys (or lines) left out. A line
/// this reading does not understand (a continuation, a header of another form) is left
/// out too.
pub fn safe_config(text: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut dropped = Vec::new();
    // The current section as `section` or `section.*`, and its header line, written
    // before its first kept key.
    let mut section: Option<(String, String)> = None;
    let mut header_written = false;
    // The previous line ended in a backslash: this one is the rest of its value.
    let mut continuation = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if continuation {
            continuation = trimmed.ends_with('\\');
            dropped.push(trimmed.to_string());
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[') {
            section = inner.strip_suffix(']').and_then(|h| {
                let (name, sub) = match h.split_once(' ') {
                    Some((n, s)) if s.trim().starts_with('"') && s.trim().ends_with('"') => (n, true),
                    Some(_) => return None,
                    None => (h, false),
                };
                let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                ok.then(|| (format!("{}{}", name.to_ascii_lowercase(), if sub { ".*" } else { "" }), line.to_string()))
            });
            if section.is_none() {
                dropped.push(trimmed.to_string());
            }
            header_written = false;
            continue;
        }
        let key = trimmed.split(['=', ' ', '\t']).next().unwrap_or("").to_ascii_lowercase();
        let full = section.as_ref().map(|(s, _)| format!("{s}.{key}"));
        let continued = trimmed.ends_with('\\');
        continuation = continued;
        match full {
            Some(full) if !continued && SAFE_KEYS.contains(&full.as_str()) => {
                if !header_written {
                    out.push_str(&section.as_ref().map(|(_, h)| h.clone()).unwrap_or_default());
                    out.push('\n');
                    header_written = true;
                }
                out.push_str(line);
                out.push('\n');
            }
            Some(full) => dropped.push(full),
            None => dropped.push(trimmed.to_string()),
        }
    }
    (out, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_repositorys_config_keeps_only_keys_that_run_nothing() {
        let text = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tfsmonitor = ./evil\n\thooksPath = x\n\
                    [user]\n\temail = t@example.invalid\n[alias]\n\tst = !sh evil\n[include]\n\tpath = ../x\n\
                    [remote \"origin\"]\n\turl = https://example.invalid/r.git\n\tuploadpack = evil\n\
                    [filter \"lfs\"]\n\tclean = evil %f\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n\
                    [credential]\n\thelper = evil\n";
        let (safe, dropped) = safe_config(text);
        assert_eq!(
            safe,
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n[user]\n\temail = t@example.invalid\n\
             [remote \"origin\"]\n\turl = https://example.invalid/r.git\n[branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n"
        );
        assert_eq!(
            dropped,
            ["core.fsmonitor", "core.hookspath", "alias.st", "include.path", "remote.*.uploadpack", "filter.*.clean", "credential.helper"]
        );
        // What `git init` writes is kept whole.
        let init = "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n";
        assert_eq!(safe_config(init), (init.to_string(), vec![]));
        // A continued value and an odd header are left out.
        let (safe, dropped) = safe_config("[user]\n\tname = a \\\n\tb\n[core.x]\n\tbare = true\n");
        assert_eq!(safe, "");
        assert_eq!(dropped, ["user.name", "b", "[core.x]", "bare = true"]);
    }

    /// Beyond the start's walk (here: past its entries, a large directory first), a
    /// repository had no mounts: at exit the walk goes further, and in one older than the
    /// session only what changed during it goes (the user's own hook stays); a new one
    /// there is checked whole.
    #[test]
    fn repositories_beyond_the_start_walk_are_checked_at_exit_for_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(w.join("many")).unwrap();
        for i in 0..=crate::launch::git::MAX_ENTRIES {
            std::fs::File::create(w.join(format!("many/{i}"))).unwrap();
        }
        let deep = w.join("a/b/old");
        std::fs::create_dir_all(deep.join(".git/hooks")).unwrap();
        std::fs::write(deep.join(".git/hooks/post-commit"), "the user's own").unwrap();
        std::fs::write(deep.join(".git/config"), "[core]\n\tbare = false\n\teditor = vim\n").unwrap();
        let walk = crate::launch::git::repositories(&w);
        let (paths, complete) = (crate::launch::git::admin_paths_of(&w, &walk.found, true), walk.complete);
        assert!(!complete && !paths.iter().any(|p| p.starts_with(&deep)), "the start's walk stops before it");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let guard = NewRepositories::take(&w, &paths, false, complete);
        // During the session.
        std::fs::write(deep.join(".git/hooks/pre-commit"), "evil").unwrap();
        std::fs::write(deep.join(".git/config"), "[core]\n\tbare = false\n\tfsmonitor = evil\n").unwrap();
        let new = w.join("a/b/new");
        std::fs::create_dir_all(new.join(".git/hooks")).unwrap();
        std::fs::write(new.join(".git/hooks/post-checkout"), "evil").unwrap();
        let mut q = Quarantine::new(Some(w.join("q")));
        let (got, _) = guard.verify_into(&mut q);
        let summary: Vec<_> = got.iter().map(|t| (t.path.strip_prefix(&w).unwrap().to_path_buf(), t.change, t.action)).collect();
        assert_eq!(
            summary,
            [
                (PathBuf::from("a/b/new/.git/hooks/post-checkout"), Change::Created, TamperAction::Quarantined),
                (PathBuf::from("a/b/old/.git/hooks/pre-commit"), Change::Created, TamperAction::Quarantined),
                (PathBuf::from("a/b/old/.git/config"), Change::Changed, TamperAction::Stripped),
            ]
        );
        assert_eq!(std::fs::read_to_string(deep.join(".git/hooks/post-commit")).unwrap(), "the user's own");
        assert_eq!(std::fs::read_to_string(deep.join(".git/config")).unwrap(), "[core]\n\tbare = false\n");
    }

    #[test]
    fn hooks_and_unsafe_config_of_a_new_repository_are_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(w.join("old/.git/hooks")).unwrap();
        let old = crate::launch::git::admin_paths(&w, true);
        let guard = NewRepositories::take(&w, &old, false, true);
        // During the session: the old repository gets a hook (its mounts would refuse
        // that; here only the new one is the check's business), a new one is made.
        std::fs::create_dir_all(w.join(".git/hooks")).unwrap();
        std::fs::write(w.join(".git/hooks/pre-commit.sample"), "sample").unwrap();
        std::fs::write(w.join(".git/hooks/pre-commit"), "evil").unwrap();
        std::fs::write(w.join(".git/config"), "[core]\n\tbare = false\n\tfsmonitor = evil\n").unwrap();
        std::fs::write(w.join("old/.git/hooks/post-checkout"), "left to the mounts").unwrap();
        let mut q = Quarantine::new(Some(w.join("q")));
        let (got, _) = guard.verify_into(&mut q);
        let summary: Vec<_> = got.iter().map(|t| (t.path.strip_prefix(&w).unwrap().to_path_buf(), t.change, t.action, t.diff.clone())).collect();
        assert_eq!(
            summary,
            [
                (PathBuf::from(".git/hooks/pre-commit"), Change::Created, TamperAction::Quarantined, vec![]),
                (PathBuf::from(".git/config"), Change::Changed, TamperAction::Stripped, vec!["- core.fsmonitor".to_string()]),
            ]
        );
        assert_eq!(std::fs::read_to_string(w.join(".git/config")).unwrap(), "[core]\n\tbare = false\n");
        assert!(w.join(".git/hooks/pre-commit.sample").exists() && !w.join(".git/hooks/pre-commit").exists());
        assert!(w.join("old/.git/hooks/post-checkout").exists());
    }
}
