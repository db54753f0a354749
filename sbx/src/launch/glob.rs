//! Expansion of glob rules (`**/.env`, `~/.aws/*`) into the paths that exist
//! when the sandbox starts, with a bounded walk: fence hung on node_modules
//! by walking whole trees. The walk starts at the pattern's literal prefix,
//! skips dependency and VCS trees that a pattern does not name, and stops at
//! a fixed number of directory entries, saying so. A walk cut short cannot
//! cover a deny rule: [`check_deny_rules`] refuses to start then (a command
//! could otherwise plant files enough to push a secret beyond the cap).

use std::path::{Component, Path, PathBuf};

/// Directory entries examined per walk before it gives up: a project of 200,000 files is
/// walked in about 0.15 s warm (0.3 s cold) on this machine, once for every pattern that
/// starts from it.
pub const MAX_ENTRIES: usize = 300_000;
/// Directory levels below the literal prefix.
pub const MAX_DEPTH: usize = 24;
/// Trees not entered unless the pattern names them.
pub const SKIPPED_DIRS: &[&str] = &["node_modules", ".git", "target", ".venv", "venv", "__pycache__", ".cache", ".cargo", ".rustup", ".npm"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// The expansion of one pattern: the session's walk when it made one (`Walked`), else a
/// walk of its own.
pub fn expand(pattern: &Path) -> Expansion {
    if let Some(done) = WALKED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(pattern)) {
        return done.clone();
    }
    expand_all(&[pattern]).pop().unwrap_or_default()
}

/// The expansions of a session's glob rules, walked once before anything starts (one walk per
/// literal directory, whatever the number of patterns from it) and read by [`expand`] (the
/// deny rules' check, then the plan) until this is dropped.
pub struct Walked {
    /// The workspace and its repositories as they were at start, when the walk from the
    /// workspace carried the search for them (`git::Search`).
    repositories: Option<(PathBuf, super::git::Walk)>,
    /// What a [`NameSearch`] carried by the walk from the workspace found, when it was
    /// given one and the walk went as far as the search's own bounds.
    names: Option<Vec<PathBuf>>,
}

/// A search for files of given names below a directory, carried by a walk of it (the
/// policy files, `snapshot::policy_files`): at depths 1 to `max_depth` (the directory's
/// own entries left out), within `max_entries` entries, dependency trees
/// ([`SKIPPED_DIRS`]) skipped.
#[derive(Debug)]
pub struct NameSearch {
    names: &'static [&'static str],
    max_depth: usize,
    max_entries: usize,
    seen: usize,
    over: bool,
    found: Vec<PathBuf>,
}

impl NameSearch {
    pub fn new(names: &'static [&'static str], max_depth: usize, max_entries: usize) -> Self {
        NameSearch { names, max_depth, max_entries, seen: 0, over: false, found: Vec::new() }
    }

    /// One entry of a directory at `depth` (0: the walk's own): whether the search enters
    /// it.
    pub fn entry(&mut self, entry: &std::fs::DirEntry, depth: usize) -> bool {
        if self.over {
            return false;
        }
        self.seen += 1;
        if self.seen > self.max_entries {
            self.over = true;
            return false;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { return false };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            return depth < self.max_depth && !SKIPPED_DIRS.contains(&name);
        }
        if depth > 0 && self.names.contains(&name) {
            self.found.push(entry.path());
        }
        false
    }

    /// The search reached its entries: nothing more is to be fed to it.
    pub fn over(&self) -> bool {
        self.over
    }

    /// The files found, in the order of the walk.
    pub fn finish(self) -> Vec<PathBuf> {
        self.found
    }
}

static WALKED: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, Expansion>>> = std::sync::Mutex::new(None);

/// Whether the glob rules' walk ([`Walked::walk`]) of `rules` starts from `workspace`, and
/// so finds its git repositories.
pub fn walks_from<'a>(rules: impl IntoIterator<Item = &'a PathBuf>, workspace: &Path) -> bool {
    rules.into_iter().any(|p| crate::policy::is_glob(p) && literal_prefix(p) == workspace)
}

impl Walked {
    /// Walks `patterns`' globs; the walk that starts from `workspace`, when a pattern starts
    /// there (`**/.env`), also looks for its git repositories, so that the workspace is read
    /// once for both.
    pub fn walk(patterns: &[PathBuf], workspace: &Path) -> Walked {
        Self::walk_with(patterns, workspace, None)
    }

    /// [`Walked::walk`], the walk from the workspace carrying `names` too (found by
    /// [`Walked::names`]).
    pub fn walk_with(patterns: &[PathBuf], workspace: &Path, names: Option<NameSearch>) -> Walked {
        let globs: Vec<&Path> = patterns.iter().map(PathBuf::as_path).filter(|p| crate::policy::is_glob(p)).collect();
        let (expansions, repositories, names) = expand_all_with(&globs, Some(workspace), names);
        let map = globs.iter().map(|p| p.to_path_buf()).zip(expansions).collect();
        *WALKED.lock().unwrap_or_else(|e| e.into_inner()) = Some(map);
        Walked { repositories: repositories.map(|r| (workspace.to_path_buf(), r)), names }
    }

    /// What the [`NameSearch`] given to [`Walked::walk_with`] found, when the walk from the
    /// workspace carried it to its end (taken once).
    pub fn names(&mut self) -> Option<Vec<PathBuf>> {
        self.names.take()
    }

    /// The repositories under `root` at the time of the walk (`git::repositories`), when the
    /// walk found them; a search made later (the new repositories at the end of a session)
    /// walks again.
    pub fn repositories(&self, root: &Path) -> Option<super::git::Walk> {
        self.repositories.as_ref().filter(|(w, _)| w == root).map(|(_, r)| r.clone())
    }
}

impl Drop for Walked {
    fn drop(&mut self) {
        *WALKED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// One pattern of a walk.
struct Pattern<'a> {
    /// Its literal components: a skipped tree it names is entered for it.
    named: Vec<&'a str>,
    /// Only `**` reaches below the pattern's own number of components.
    unbounded: bool,
}

/// The part of `pattern` below its literal directory `base`, as glob text (`**/.env` of
/// `/w/**/.env`): what a path relative to `base` is matched against. `None` when it is not
/// UTF-8 (such a pattern matches nothing, as before).
fn relative_glob(pattern: &Path, base: &Path) -> Option<String> {
    let below: Vec<&str> = pattern.components().skip(base.components().count()).map(|c| c.as_os_str().to_str()).collect::<Option<_>>()?;
    Some(below.join("/"))
}

/// Expands `patterns`, in order: the patterns that start from the same literal directory share
/// one walk (and its [`MAX_ENTRIES`]), and one matcher: a path relative to that directory,
/// matched once against all of them (a name or an extension is a lookup, not a regex).
pub fn expand_all(patterns: &[&Path]) -> Vec<Expansion> {
    expand_all_with(patterns, None, None).0
}

/// [`expand_all`], and, when a pattern starts from `repositories_of`, the git repositories
/// below it (`git::repositories`, found by the same walk).
/// With `names`, the search carried by the same walk (its finds, when the walk went as far
/// as the search's bounds).
fn expand_all_with(patterns: &[&Path], repositories_of: Option<&Path>, mut names: Option<NameSearch>) -> (Vec<Expansion>, Option<super::git::Walk>, Option<Vec<PathBuf>>) {
    let mut repositories = None;
    let mut named = None;
    let mut out: Vec<Expansion> = patterns.iter().map(|_| Expansion::default()).collect();
    let mut bases: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for (i, p) in patterns.iter().enumerate() {
        let base = literal_prefix(p);
        match bases.iter_mut().find(|(b, _)| *b == base) {
            Some((_, members)) => members.push(i),
            None => bases.push((base, vec![i])),
        }
    }
    for (base, members) in bases {
        let mut set = globset::GlobSetBuilder::new();
        // The set's index of each glob → the member it is for.
        let mut of_glob = Vec::new();
        let compiled: Vec<Pattern> = members
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let p = patterns[i];
                if let Some(glob) = relative_glob(p, &base).and_then(|t| globset::GlobBuilder::new(&t).literal_separator(true).build().ok()) {
                    set.add(glob);
                    of_glob.push(k);
                }
                let named: Vec<&str> = p.components().filter_map(|c| match c {
                    Component::Normal(s) => s.to_str(),
                    _ => None,
                }).collect();
                let unbounded = named.contains(&"**");
                Pattern { named, unbounded }
            })
            .collect();
        // Each glob was built alone above: the set of them builds.
        let set = set.build().unwrap_or_else(|_| globset::GlobSet::empty());
        let from_workspace = repositories_of == Some(base.as_path());
        let mut search = from_workspace.then(super::git::Search::default);
        let mut files = names.take_if(|_| from_workspace);
        let whole = walk(&base, &compiled, &set, &of_glob, search.as_mut(), files.as_mut(), |k, e| match e {
            Found::Match(path) => out[members[k]].matches.push(path),
            Found::Truncated => out[members[k]].truncated = true,
            Found::TooDeep => out[members[k]].too_deep = true,
        });
        // A walk cut short before the search was done leaves it to a walk of its own.
        if let Some(s) = search.filter(|s| whole || s.capped()) {
            repositories = Some(s.finish());
        }
        if let Some(f) = files.filter(|f| whole || f.over()) {
            named = Some(f.finish());
        }
    }
    for e in &mut out {
        e.matches.sort();
    }
    (out, repositories, named)
}

enum Found {
    Match(PathBuf),
    Truncated,
    TooDeep,
}

/// One bounded walk from `base` for `patterns`, whose globs (relative to `base`) are `set`,
/// glob `g` being the pattern `of_glob[g]`; each directory carries the patterns it was
/// entered for (a skipped tree only for those that name it), and whether `search` (a
/// search for git repositories from `base`) entered it. Returns false when the walk was
/// cut short ([`MAX_ENTRIES`]).
///
/// The search sees the directories it enters in the order of a walk of its own: this walk
/// enters every one of them (they are never skipped trees, and never deeper than this walk
/// goes), and the directories it enters for the patterns alone hold none of them.
#[allow(clippy::too_many_arguments)]
fn walk(
    base: &Path,
    patterns: &[Pattern],
    set: &globset::GlobSet,
    of_glob: &[usize],
    mut search: Option<&mut super::git::Search>,
    mut names: Option<&mut NameSearch>,
    mut found: impl FnMut(usize, Found),
) -> bool {
    let all: Vec<usize> = (0..patterns.len()).collect();
    let mut seen = 0usize;
    let mut hits = Vec::new();
    // Breadth first, as the search for repositories goes on its own.
    let mut queue = std::collections::VecDeque::from([(base.to_path_buf(), PathBuf::new(), 0usize, all, search.is_some(), names.is_some())]);
    while let Some((dir, rel, depth, active, searched, named)) = queue.pop_front() {
        let searched = searched && search.as_ref().is_some_and(|s| !s.capped());
        let named = named && names.as_ref().is_some_and(|n| !n.over());
        if searched && let Some(s) = search.as_mut() {
            s.enter(&dir);
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                for k in 0..patterns.len() {
                    found(k, Found::Truncated);
                }
                return false;
            }
            // The search's bounds are its own: past its cap it is over.
            let search_enters = searched && search.as_mut().and_then(|s| if s.capped() { None } else { s.entry(&entry, depth) }).unwrap_or(false);
            let names_enter = named && names.as_mut().is_some_and(|n| n.entry(&entry, depth));
            let name = entry.file_name();
            let rel = rel.join(&name);
            set.matches_candidate_into(&globset::Candidate::new(&rel), &mut hits);
            for &g in &hits {
                if active.contains(&of_glob[g]) {
                    found(of_glob[g], Found::Match(entry.path()));
                }
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = name.to_string_lossy();
            let skipped = SKIPPED_DIRS.contains(&name.as_ref());
            let below: Vec<usize> = active.iter().copied().filter(|&k| !skipped || patterns[k].named.contains(&name.as_ref())).collect();
            if below.is_empty() && !search_enters && !names_enter {
                continue;
            }
            if depth < MAX_DEPTH {
                queue.push_back((entry.path(), rel, depth + 1, below, search_enters, names_enter));
            } else {
                for k in below.into_iter().filter(|&k| patterns[k].unbounded) {
                    found(k, Found::TooDeep);
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_from_the_workspace_carries_a_search_for_names_within_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["a/sbx.jsonc", "a/b/c/d/e/f/g/h/i/sbx.jsonc", "node_modules/sbx.jsonc", "sbx.jsonc", "x/.env"] {
            std::fs::create_dir_all(root.join(f).parent().unwrap()).unwrap();
            std::fs::write(root.join(f), "").unwrap();
        }
        let mut walked = Walked::walk_with(&[root.join("**/.env")], root, Some(NameSearch::new(&["sbx.jsonc"], 8, 1000)));
        assert_eq!(walked.names(), Some(vec![root.join("a/sbx.jsonc")]), "not in the root itself, not 9 levels down, not in node_modules");
        assert_eq!(walked.names(), None, "taken once");
        let mut other = Walked::walk_with(&[root.join("x/*.env")], root, Some(NameSearch::new(&["sbx.jsonc"], 8, 1000)));
        assert_eq!(other.names(), None, "no walk from the workspace carried it");
        let mut short = Walked::walk_with(&[root.join("**/.env")], root, Some(NameSearch::new(&["sbx.jsonc"], 8, 2)));
        assert_eq!(short.names(), Some(Vec::new()), "over after its 2 entries");
    }

    #[test]
    fn the_walk_from_the_workspace_is_known_from_the_rules() {
        let w = Path::new("/w");
        assert!(walks_from(&[PathBuf::from("/w/**/.env"), PathBuf::from("/etc/x")], w));
        assert!(!walks_from(&[PathBuf::from("/w/src/*.rs")], w), "from /w/src");
        assert!(!walks_from(&[PathBuf::from("/w/.env")], w), "not a glob");
        assert!(!walks_from(&[PathBuf::from("/v/**/.env")], w));
    }

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
        assert!(err.to_string().starts_with(&format!("the denyRead rule {} cannot be applied in full: its walk stopped after {MAX_ENTRIES} entries", rule.display())));
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

    /// The matcher of a directory's patterns, relative to it, matches what each whole
    /// pattern matches against whole paths (the walk's skipped trees aside): names,
    /// extensions, prefixes, classes, alternates, `*` against `/`, `**` at each place.
    #[test]
    fn relative_matching_agrees_with_whole_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let files = [
            ".env", "a/.env", "a/.env.local", "a/.envrc", "a/b/k.pem", "a/b/c/x.key", "a/b/c/.env", "ab/x", "ab/y/x", "b/a/b.txt",
            "a/q/r/b/z.txt", "node_modules/m/.env", "node_modules/m/k.pem", ".git/hooks/pre-commit", "w/.git/hooks/x", "w/.git/objects/aa/bb",
            "sub/sub/f", "d/e/k", "d/k", "[x]/.env", "e f/g h.pem",
        ];
        for p in files {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let patterns = [
            "**/.env", "**/.env.*", "**/*.pem", "**/*.key", "**/.git/hooks", "d/*", "d/*/k", "**/sub/**", "a/**/b/*.txt", "{a,b}/**/.env",
            "**/[ab]*.key", "**", "*", "node_modules/**/*.pem", "a?/x", "**/b", "a/*/*", "**/.git/**", "**/?.pem", "**/*.{pem,key}", "**/g h.pem",
        ];
        // Every entry below the root, and whether a skipped tree not named by the pattern
        // lies on its way (the walk does not enter those).
        let mut all = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
                all.push(e.path());
            }
        }
        for p in patterns {
            let pattern = root.join(p);
            let whole = globset::GlobBuilder::new(pattern.to_str().unwrap()).literal_separator(true).build().unwrap().compile_matcher();
            let base = literal_prefix(&pattern);
            let mut want: Vec<PathBuf> = all
                .iter()
                .filter(|path| path.starts_with(&base) && *path != &base)
                .filter(|path| {
                    let rel = path.strip_prefix(&base).unwrap();
                    let parents: Vec<_> = rel.parent().into_iter().flat_map(|r| r.components()).collect();
                    parents.iter().all(|c| !SKIPPED_DIRS.contains(&c.as_os_str().to_str().unwrap()) || p.split('/').any(|n| n == c.as_os_str()))
                })
                .filter(|path| whole.is_match(path))
                .cloned()
                .collect();
            want.sort();
            assert_eq!(expand(&pattern).matches, want, "{p}");
        }
    }

    /// The walk from the workspace finds the repositories a search of its own finds, in the
    /// same order, with the same bounds: nested and linked ones (seven levels down too),
    /// none in skipped trees, and the same cut past its cap of entries. Without a
    /// pattern from the workspace, it finds none (the search walks on its own then).
    #[test]
    fn the_walk_from_the_workspace_finds_its_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [".git/hooks", ".git/objects/aa", "vendor/lib/.git/hooks", "node_modules/x/.git", "a/b/c/d/e/.git", "a/b/c/d/e/f/.git", "a/b/c/d/e/f/g/.git", "p/q/.git", "z/.git"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/.git"), "gitdir: ../.git/modules/sub\n").unwrap();
        std::fs::write(root.join(".env"), "").unwrap();
        let patterns = [root.join("**/.env"), root.join("**/.git/hooks"), root.join("**/*.pem")];
        let walked = Walked::walk(&patterns, root);
        let own = crate::launch::git::repositories(root);
        let rel = |w: &crate::launch::git::Walk| w.found.iter().map(|r| r.strip_prefix(root).unwrap().to_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(rel(&own), ["", "a/b/c/d/e", "a/b/c/d/e/f", "a/b/c/d/e/f/g", "p/q", "sub", "vendor/lib", "z"]);
        assert!(own.complete);
        assert_eq!(walked.repositories(root), Some(own));
        assert_eq!(walked.repositories(&root.join("a")), None, "another directory's search is its own");
        drop(walked);
        // Past the search's cap: the same repositories, cut at the same place.
        for i in 0..crate::launch::git::MAX_ENTRIES {
            std::fs::write(root.join(format!("p/f{i}")), "").unwrap();
        }
        let own = crate::launch::git::repositories(root);
        assert!(own.found.len() < 8 && !own.complete, "{own:?}");
        assert_eq!(Walked::walk(&patterns, root).repositories(root), Some(own));
        // No pattern starts from the workspace: no search was made.
        assert_eq!(Walked::walk(&[root.join("p/*.pem")], root).repositories(root), None);
    }

    /// Patterns from one directory share a walk and still get what each would alone: a
    /// skipped tree is entered only for the pattern that names it.
    #[test]
    fn patterns_of_one_directory_share_a_walk_with_their_own_results() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for p in ["a/.env", "a/k.pem", "node_modules/x/.env", "node_modules/x/y.pem", ".git/hooks/pre-commit", "b/.env.local"] {
            let p = root.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
        }
        let patterns = [root.join("**/.env"), root.join("**/*.pem"), root.join("node_modules/**/*.pem"), root.join("**/.git/hooks"), root.join("**/.env.*")];
        let refs: Vec<&Path> = patterns.iter().map(PathBuf::as_path).collect();
        let together = expand_all(&refs);
        for (p, got) in patterns.iter().zip(&together) {
            assert_eq!(*got, expand(p), "{}", p.display());
        }
        assert_eq!(together[0].matches, [root.join("a/.env")]);
        assert_eq!(together[2].matches, [root.join("node_modules/x/y.pem")]);
        assert_eq!(together[3].matches, [root.join(".git/hooks")]);
        // The session's walk is what `expand` reads while it lives, and only then.
        let walked = Walked::walk(&patterns, root);
        std::fs::write(root.join("a/late.pem"), "").unwrap();
        assert_eq!(expand(&patterns[1]).matches, [root.join("a/k.pem")]);
        drop(walked);
        assert_eq!(expand(&patterns[1]).matches, [root.join("a/k.pem"), root.join("a/late.pem")]);
    }
}
