//! The git administrative files of the repositories in the workspace: what
//! a later `git status` or `git commit` on the host reads and runs. Found by
//! a bounded walk at start: the workspace's repository, nested repositories
//! (a `.git` directory or gitlink file anywhere below, dependency trees
//! skipped), their submodules (`.git/modules/*`, nested), linked worktrees'
//! per-worktree configuration, and the directory each repository's
//! `core.hooksPath` names. `plan` makes the existing ones read-only and pins
//! the directories above them (see `plan`, step 4).

use std::path::{Path, PathBuf};

/// Directory levels below the workspace searched for nested repositories.
pub const MAX_DEPTH: usize = 24;
/// Directory entries examined in that search (breadth first: the shallow repositories
/// are found first when a large tree stops it).
pub const MAX_ENTRIES: usize = 20_000;
/// Levels of `.git/modules/*/modules/*` followed.
const MAX_MODULE_DEPTH: usize = 4;

/// What a gitdir holds that runs code or redirects git: hooks, configuration (which
/// sets `core.fsmonitor`, `core.hooksPath`, filters, aliases...), `commondir` (which
/// moves the configuration elsewhere) and per-worktree configuration.
const GITDIR_FILES: &[&str] = &["hooks", "config", "commondir", "config.worktree"];

/// The administrative paths of every repository under `root` (`root`'s own included),
/// existing or not: `plan` protects those that exist, the snapshot watches them all.
/// Without `protect_config`, the `config` files are left out (`allowGitConfig`).
pub fn admin_paths(root: &Path, protect_config: bool) -> Vec<PathBuf> {
    admin_paths_of(root, &repositories(root).found, protect_config)
}

/// [`admin_paths`] of the repositories `repos` found under `root` (by [`repositories`], or
/// by a glob walk that carried a [`Search`] from `root`).
pub fn admin_paths_of(root: &Path, repos: &[PathBuf], protect_config: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for repo in repos {
        let dotgit = repo.join(".git");
        let gitdir = match std::fs::symlink_metadata(&dotgit) {
            Ok(m) if m.is_dir() => Some(dotgit.clone()),
            // A gitlink (`gitdir: PATH`): itself, and its gitdir when it lies inside `root`.
            Ok(m) if m.is_file() => {
                out.push(dotgit.clone());
                gitlink_target(&dotgit).filter(|g| g.starts_with(root))
            }
            _ => None,
        };
        if let Some(g) = gitdir {
            gitdir_paths(&g, repo, protect_config, 0, &mut out);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| seen.insert(p.clone()));
    out
}

/// The bounds of the exit check's walk (`snapshot::NewRepositories`) when the start's walk
/// was cut short: the glob walk's (`glob`).
pub const EXIT_MAX_DEPTH: usize = 24;
pub const EXIT_MAX_ENTRIES: usize = 300_000;

/// The repositories a search found, and whether it saw the whole tree (dependency trees
/// aside) or was cut short by its bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    pub found: Vec<PathBuf>,
    pub complete: bool,
}

/// The repositories under `root` (`root` included), within the start's bounds.
pub fn repositories(root: &Path) -> Walk {
    walk(root, Search::default())
}

/// The directories under `root` (`root` included) that hold a `.git` entry, within
/// `search`'s bounds, breadth first.
pub fn walk(root: &Path, mut search: Search) -> Walk {
    let mut queue = std::collections::VecDeque::from([(root.to_path_buf(), 0usize)]);
    'walk: while let Some((dir, depth)) = queue.pop_front() {
        search.enter(&dir);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match search.entry(&entry, depth) {
                None => break 'walk,
                Some(true) => queue.push_back((entry.path(), depth + 1)),
                Some(false) => {}
            }
        }
    }
    search.finish()
}

/// The search for repositories of [`repositories`], one directory at a time, so that a
/// walk of the same tree in the same order (breadth first: the glob rules' walk from the
/// workspace, `glob::Walked`) can carry it and the workspace is read once: it enters the
/// directories this one says, at the depth it says, and stops feeding it when it is
/// capped. Breadth first, the shallow repositories are found first when a large tree
/// stops it.
#[derive(Debug)]
pub struct Search {
    found: Vec<PathBuf>,
    seen: usize,
    max_depth: usize,
    max_entries: usize,
    capped: bool,
    /// A directory was left out for its depth.
    too_deep: bool,
}

impl Default for Search {
    /// The start's bounds: [`MAX_DEPTH`], [`MAX_ENTRIES`].
    fn default() -> Self {
        Search::bounded(MAX_DEPTH, MAX_ENTRIES)
    }
}

impl Search {
    /// A search to `max_depth` levels and `max_entries` entries.
    pub fn bounded(max_depth: usize, max_entries: usize) -> Self {
        Search { found: Vec::new(), seen: 0, max_depth, max_entries, capped: false, too_deep: false }
    }

    /// A directory of the search, before its entries: a repository when it holds a `.git`.
    pub fn enter(&mut self, dir: &Path) {
        if std::fs::symlink_metadata(dir.join(".git")).is_ok() {
            self.found.push(dir.to_path_buf());
        }
    }

    /// One entry of a directory of the search at `depth`: whether the search enters it
    /// (at `depth + 1`), or `None` when the search is over (its entries reached).
    pub fn entry(&mut self, entry: &std::fs::DirEntry, depth: usize) -> Option<bool> {
        self.seen += 1;
        if self.seen > self.max_entries {
            self.capped = true;
            return None;
        }
        let name = entry.file_name();
        let skipped = name.to_str().is_none_or(|n| super::glob::SKIPPED_DIRS.contains(&n));
        let dir = !skipped && entry.file_type().is_ok_and(|t| t.is_dir());
        if dir && depth >= self.max_depth {
            self.too_deep = true;
        }
        Some(dir && depth < self.max_depth)
    }

    /// The search stopped at its entries: nothing more is to be fed to it.
    pub fn capped(&self) -> bool {
        self.capped
    }

    /// The repositories found, sorted, and whether the search saw the whole tree.
    pub fn finish(mut self) -> Walk {
        self.found.sort();
        Walk { complete: !self.capped && !self.too_deep, found: self.found }
    }
}

/// The administrative paths of one gitdir, its submodules' and its worktrees'.
fn gitdir_paths(gitdir: &Path, worktree: &Path, protect_config: bool, depth: usize, out: &mut Vec<PathBuf>) {
    for name in GITDIR_FILES.iter().filter(|n| protect_config || !n.starts_with("config")) {
        out.push(gitdir.join(name));
    }
    if let Some(hooks) = hooks_path(&gitdir.join("config"), worktree) {
        out.push(hooks);
    }
    if let Ok(worktrees) = std::fs::read_dir(gitdir.join("worktrees")) {
        for w in worktrees.flatten() {
            for name in ["commondir", "config.worktree"].iter().filter(|n| protect_config || **n == "commondir") {
                out.push(w.path().join(name));
            }
        }
    }
    if depth < MAX_MODULE_DEPTH
        && let Ok(modules) = std::fs::read_dir(gitdir.join("modules"))
    {
        for m in modules.flatten().filter(|m| m.file_type().is_ok_and(|t| t.is_dir())) {
            // A submodule's hooksPath is relative to its own work tree, which is not
            // known here: the gitdir's parent stands in (nothing is lost: the hooks
            // directory itself is protected).
            gitdir_paths(&m.path(), &m.path(), protect_config, depth + 1, out);
        }
    }
}

/// The gitdir a gitlink file names, absolute.
fn gitlink_target(file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let target = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    let base = file.parent()?;
    Some(crate::policy::normalize(&base.join(target)))
}

/// The directory `core.hooksPath` names in a git config file, resolved like git does
/// for a work tree (relative to its top; `~/` to the home is left out: outside the
/// workspace, the home's protections apply).
fn hooks_path(config: &Path, worktree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let mut in_core = false;
    let mut found = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_core = line.trim_start_matches('[').trim_end_matches(']').trim().eq_ignore_ascii_case("core");
            continue;
        }
        if !in_core {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("hookspath")
        {
            let value = value.trim().trim_matches('"');
            if !value.is_empty() && !value.starts_with('~') {
                found = Some(crate::policy::normalize(&worktree.join(value)));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_repositories_submodules_worktrees_and_hooks_path_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        for d in [".git/hooks", ".git/modules/sub/hooks", ".git/worktrees/wt", "vendor/lib/.git/hooks", "node_modules/x/.git/hooks", "sub", ".husky"] {
            std::fs::create_dir_all(w.join(d)).unwrap();
        }
        std::fs::write(w.join(".git/config"), "[core]\n\tbare = false\n[Core]\n    hooksPath = .husky\n").unwrap();
        std::fs::write(w.join("sub/.git"), "gitdir: ../.git/modules/sub\n").unwrap();
        let got = admin_paths(w, true);
        let rel: Vec<String> = got.iter().map(|p| p.strip_prefix(w).unwrap().display().to_string()).collect();
        assert_eq!(
            rel,
            [
                ".git/hooks",
                ".git/config",
                ".git/commondir",
                ".git/config.worktree",
                ".husky",
                ".git/worktrees/wt/commondir",
                ".git/worktrees/wt/config.worktree",
                ".git/modules/sub/hooks",
                ".git/modules/sub/config",
                ".git/modules/sub/commondir",
                ".git/modules/sub/config.worktree",
                "sub/.git",
                "vendor/lib/.git/hooks",
                "vendor/lib/.git/config",
                "vendor/lib/.git/commondir",
                "vendor/lib/.git/config.worktree",
            ]
        );
        // allowGitConfig: hooks and commondir stay, configuration goes.
        let got = admin_paths(w, false);
        assert!(got.contains(&w.join(".git/hooks")) && got.contains(&w.join(".git/commondir")));
        assert!(!got.iter().any(|p| p.ends_with("config") || p.ends_with("config.worktree")));
    }
}
