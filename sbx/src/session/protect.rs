//! The host-side protections of one session: what is taken before the command starts
//! (snapshots of the protected paths, placeholders and a watch for the missing ones, the
//! agent configuration), what happens while it runs (a protected name created is moved
//! away at once), and what is verified, settled and said after it.

use super::*;
use crate::{agentconf, missing, snapshot};

pub(super) struct Protections {
    /// The git administrative paths of the workspace's repositories (`launch::git`).
    pub(super) git_paths: Vec<PathBuf>,
    /// Empty read-only directories at protected names that were missing; removed at
    /// the end, once no process of the sandbox is left.
    placeholders: missing::Placeholders,
    created_watch: RefCell<Option<missing::Watch>>,
    new_repos: snapshot::NewRepositories,
    guard: snapshot::Guard,
    quarantine: RefCell<snapshot::Quarantine>,
    agent_config: agentconf::AgentConfig,
    /// Claude Code's state file, moved into `~/.claude` for the session (`agentconf`).
    claude: RefCell<Option<agentconf::ClaudeState>>,
    /// Protected names the command created while it ran, each moved away at once.
    created_live: RefCell<Vec<report::Tamper>>,
    /// Why the command was stopped (the second protected name it created).
    stopped_for: RefCell<Option<String>>,
    /// The watch over the hidden paths, for the host's replacing one (`launch::remask`):
    /// set once the sandbox has started (`arm_hidden`), then taken by `watch_hidden`.
    hidden: RefCell<Option<HiddenWatch>>,
    /// The writable roots, from which the hidden paths' directories are watched (the
    /// command can rename those).
    writable: Vec<PathBuf>,
    hidden_armed: tokio::sync::Notify,
    /// Hidden paths the host replaced while the command ran, each hidden again (how
    /// many times).
    rehidden: RefCell<BTreeMap<PathBuf, usize>>,
    /// The workspace's policy files at exit, found by the walk for new repositories
    /// (`verify`).
    policy_files: RefCell<Option<Vec<PathBuf>>>,
}

/// How long the command runs before the hidden paths are watched. An inotify instance
/// costs its close, which waits for the kernel to free its marks (about 8 ms here, paid at
/// exit): a command that ends before this pays nothing. One that runs on is checked at once
/// for what the host replaced meanwhile (by comparing inodes), then watched.
const HIDDEN_WATCH_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

struct HiddenWatch {
    /// The host's file at each hidden path that the sandbox does not see, and what the
    /// sandbox sees instead: nothing (a mask), or a file of sbx's (`Started::own_files`).
    known: BTreeMap<PathBuf, (launch::remask::Target, Option<&'static str>)>,
    /// The sandbox's pid 1 on the host (whose namespaces the masker joins).
    init: i32,
}

/// What the protections found, for the exit lines.
pub(super) struct Findings {
    created_live: Vec<report::Tamper>,
    tampered: Vec<report::Tamper>,
    stopped_for: Option<String>,
    rehidden: BTreeMap<PathBuf, usize>,
    /// The workspace's policy files at exit (`snapshot::policy_files`), when the exit
    /// checks walked the workspace.
    pub(super) policy_files: Option<Vec<PathBuf>>,
}

impl Protections {
    /// Takes every snapshot and makes every placeholder: before anything of the
    /// sandbox starts.
    /// `direct`: no namespaces (`--no-namespaces`), so no read-only mount: no placeholders,
    /// and the protected directories are watched with everything in them. `repositories`:
    /// the workspace's git repositories when a walk of it found them just before (the glob
    /// rules', `glob::Walked`, or the caller's for policy files); else they are looked for
    /// here.
    pub(super) fn take(policy: &Policy, direct: bool, repositories: Option<launch::git::Walk>) -> Self {
        let walk = repositories.unwrap_or_else(|| launch::git::repositories(&policy.workspace));
        let git_paths = launch::git::admin_paths_of(&policy.workspace, &walk.found, !policy.fs.allow_git_config);
        // Protected names missing at start: directories get a placeholder (which the plan
        // then mounts read-only), files a watch for the session (`missing`).
        let protected = launch::protected_paths(policy, &git_paths);
        let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
            protected.iter().cloned().partition(|p| missing::kind_of(policy, &git_paths, p) == missing::Kind::Dir);
        // `.config/sbx` matters in the home only: no `.config` appears in a project for it.
        let ws_config = (policy.home.as_ref() != Some(&policy.workspace)).then(|| policy.workspace.join(".config/sbx"));
        let dirs: Vec<PathBuf> = dirs.into_iter().filter(|p| Some(p) != ws_config.as_ref()).collect();
        let placeholders = missing::Placeholders::make(if direct { &[] } else { &dirs }, &policy.writable());
        // Policy files are left to the policy-file report (`--ask` writes one itself).
        let is_policy_file = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| crate::config::FILE_NAMES.contains(&n));
        let mut files: Vec<PathBuf> = files.into_iter().filter(|p| !is_policy_file(p)).collect();
        // The user's denyWrite paths that do not exist, inside the writable ones: nothing
        // can be mounted over them, so they are watched like protected names (what the
        // command creates there is moved away at once, a second stops it).
        let roots = policy.writable();
        let denied: Vec<PathBuf> =
            policy.fs.deny_write.iter().filter(|p| roots.iter().any(|r| p.starts_with(r)) && std::fs::symlink_metadata(p).is_err() && !files.contains(p)).cloned().collect();
        files.extend(denied);
        // Without a placeholder mounted over a missing directory, its name is watched too.
        if direct {
            files.extend(dirs.iter().cloned());
        }
        let created_watch = RefCell::new(missing::Watch::start(&files));
        let new_repos = snapshot::NewRepositories::take(&policy.workspace, &git_paths, policy.fs.allow_git_config, walk.complete);
        let quarantine_root = snapshot::quarantine_root(policy.home.as_deref());
        let guard = if direct {
            // The directories between a writable root and a protected path (`.git`): no pin
            // keeps them from being renamed or replaced here.
            let roots = policy.writable();
            let above: std::collections::BTreeSet<PathBuf> = protected
                .iter()
                .filter_map(|p| roots.iter().filter(|r| p.starts_with(r)).max_by_key(|r| r.components().count()).map(|r| (p, r)))
                .flat_map(|(p, r)| p.ancestors().skip(1).take_while(move |a| *a != r.as_path()).map(std::path::Path::to_path_buf))
                .collect();
            snapshot::Guard::take_deep(protected, above, quarantine_root)
        } else {
            snapshot::Guard::take(protected, quarantine_root)
        };
        let quarantine = RefCell::new(snapshot::Quarantine::new(guard.quarantine_root()));
        let claude = agentconf::ClaudeState::start(policy).unwrap_or_else(|e| {
            eprintln!("sbx: warning: {}", crate::termtext::escape(&e));
            None
        });
        // What the merge of Claude Code's state writes is compared like what the command writes.
        let watched: Vec<PathBuf> = policy.writable().into_iter().chain(claude.as_ref().map(|c| c.host().to_path_buf())).collect();
        let agent_config = agentconf::AgentConfig::take(policy.home.as_deref(), &policy.workspace, &watched);
        Self {
            git_paths,
            placeholders,
            created_watch,
            new_repos,
            guard,
            quarantine,
            agent_config,
            claude: RefCell::new(claude),
            created_live: RefCell::new(Vec::new()),
            stopped_for: RefCell::new(None),
            hidden: RefCell::new(None),
            writable: policy.writable(),
            hidden_armed: tokio::sync::Notify::new(),
            rehidden: RefCell::new(BTreeMap::new()),
            policy_files: RefCell::new(None),
        }
    }

    /// The command's `CLAUDE_CONFIG_DIR`, when Claude Code's state file is moved there.
    pub(super) fn claude_config_dir(&self) -> Option<PathBuf> {
        self.claude.borrow().as_ref().map(|c| c.dir().to_path_buf())
    }

    /// While the command runs: a protected name that was missing at start and appears
    /// is moved to the quarantine at once and reported; the second stops the command.
    pub(super) async fn watch_created(&self, sink: &RefCell<Sink>, sandbox: &SandboxPids, mut done: Done) {
        let Some(w) = self.created_watch.borrow_mut().take() else { return };
        let Some(fd) = watch_fd(&w, "protected names") else { return };
        let settle = |paths: Vec<PathBuf>| {
            for path in paths {
                let (action, moved, error) = match self.quarantine.borrow_mut().dir() {
                    Err(e) => (report::TamperAction::Reported, None, Some(e)),
                    Ok(q) => snapshot::settle(&path, &snapshot::State::Missing, &q),
                };
                let t = report::Tamper { path, change: report::Change::Created, action, quarantine: moved, error, diff: Vec::new() };
                sink.borrow_mut().emit(&Event::Tamper(t.clone()));
                let mut created = self.created_live.borrow_mut();
                created.push(t);
                if created.len() >= 2 && self.stopped_for.borrow().is_none() {
                    let names: std::collections::BTreeSet<String> = created.iter().map(|t| crate::termtext::path(&t.path).to_string()).collect();
                    *self.stopped_for.borrow_mut() = Some(names.into_iter().collect::<Vec<_>>().join(", "));
                    sandbox.kill();
                }
            }
        };
        follow(&w, &fd, &mut done, settle).await;
        settle(w.created());
        close(w, fd);
    }

    /// Once the sandbox has started: the hidden paths' directories watched, so that a file
    /// the host puts at one while the command runs is hidden again (`watch_hidden`).
    /// Without namespaces there is nothing to do: Landlock grants no read of a file that
    /// was not there at start.
    pub(super) fn arm_hidden(&self, started: &launch::Started) {
        // By the real path of their directory, as the watch reports them: the hidden files'
        // as the launch found it, before the command ran (resolved now, a symlink the
        // command planted on the way would be followed); sbx's own files are outside the
        // command's reach.
        let real = |p: &std::path::Path| p.parent().and_then(|d| std::fs::canonicalize(d).ok()).zip(p.file_name()).map_or_else(|| p.to_path_buf(), |(d, n)| d.join(n));
        let known: BTreeMap<PathBuf, (launch::remask::Target, Option<&'static str>)> = started
            .hidden_files
            .iter()
            .map(|t| (t.path.clone(), (t.clone(), None)))
            .chain(started.own_files.iter().map(|(t, content)| (real(&t.path), (launch::remask::Target { path: real(&t.path), ..t.clone() }, Some(*content)))))
            .collect();
        if let (false, Some(init)) = (known.is_empty(), started.sandbox_init) {
            *self.hidden.borrow_mut() = Some(HiddenWatch { known, init });
        }
        self.hidden_armed.notify_one();
    }

    /// While the command runs: a hidden path whose file the host replaces (a new file
    /// created or renamed onto it, which detaches the mask inside) is hidden again at once
    /// (`launch::remask`); one that cannot be stops the command. The watch starts once the
    /// command has run for [`HIDDEN_WATCH_AFTER`]; the files replaced before (since the
    /// launch's look) are found by comparing, first.
    pub(super) async fn watch_hidden(&self, sandbox: &SandboxPids, mut done: Done) {
        tokio::select! {
            biased;
            () = done.wait() => return,
            () = self.hidden_armed.notified() => {}
        }
        let Some(hw) = self.hidden.borrow_mut().take() else { return };
        tokio::select! {
            biased;
            () = done.wait() => return,
            () = tokio::time::sleep(HIDDEN_WATCH_AFTER) => {}
        }
        let paths: Vec<PathBuf> = hw.known.keys().cloned().collect();
        let watch = missing::Watch::chains(
            &paths,
            &self.writable,
            "hidden paths the host replaces during the session",
            "a hidden file that a program outside replaces becomes readable in the sandbox",
        );
        let Some(watch) = watch else { return };
        let Some(fd) = watch_fd(&watch, "the hidden paths") else { return };
        let mut masker: Option<launch::remask::Masker> = None;
        let HiddenWatch { mut known, init } = hw;
        let mut check = |paths: Vec<PathBuf>, known: &mut BTreeMap<PathBuf, (launch::remask::Target, Option<&'static str>)>| {
            for path in paths {
                let Some(now) = launch::remask::Target::at(&path) else { continue };
                let Some((before, text)) = known.get(&path).cloned() else { continue };
                if before.same_file(&now) {
                    continue;
                }
                let content = text.map(str::as_bytes);
                let hidden = match masker.as_mut() {
                    Some(m) => m.hide(&now, content),
                    None => launch::remask::Masker::spawn(init).and_then(|m| masker.insert(m).hide(&now, content)),
                };
                match hidden {
                    // The sandbox's own files are no news: the host's changes to them are its own.
                    Ok(launch::remask::Masked::Hidden) if content.is_some() => {}
                    Ok(launch::remask::Masked::Hidden) => *self.rehidden.borrow_mut().entry(path.clone()).or_default() += 1,
                    Ok(launch::remask::Masked::NotSeen) => {}
                    Err(e) => {
                        eprintln!(
                            "sbx: stopped the command: a program outside the sandbox replaced {}, which the sandbox must not see, and it could not be hidden again ({})",
                            crate::termtext::path(&path),
                            crate::termtext::escape(&e.to_string())
                        );
                        sandbox.kill();
                    }
                }
                known.insert(path, (now, text));
            }
        };
        let all: Vec<PathBuf> = known.keys().cloned().collect();
        check(all, &mut known);
        follow(&watch, &fd, &mut done, |paths| check(paths, &mut known)).await;
        close(watch, fd);
    }

    /// Once every process of the sandbox is gone: the protected paths verified (changes
    /// restored or quarantined), new repositories stripped, agent configuration
    /// reverted unless kept (by `keep`, or by the user on the dashboard when `review`
    /// asks there). Returns the tamper events to emit.
    pub(super) async fn verify(&self, keep: bool, review: Option<Review<'_>>) -> Vec<report::Tamper> {
        let mut tampers = {
            let mut quarantine = self.quarantine.borrow_mut();
            let mut tampers = self.guard.verify_into(&mut quarantine);
            let (new_repos, policy_files) = self.new_repos.verify_into(&mut quarantine);
            tampers.extend(new_repos);
            *self.policy_files.borrow_mut() = Some(policy_files);
            tampers
        };
        let rebased = match self.claude.borrow_mut().take().map(agentconf::ClaudeState::finish) {
            Some((rebased, error)) => {
                if let Some(e) = error {
                    eprintln!("sbx: warning: Claude Code's state was not merged: {}", crate::termtext::escape(&e));
                }
                rebased
            }
            None => None,
        };
        let changes = self.agent_config.changes(rebased.as_ref());
        // A dashboard that is gone (quit, failed) keeps nothing.
        let keep = match review {
            Some(Review { ui, answer }) if !changes.is_empty() && !keep => {
                let files = changes.iter().map(|c| tui::ReviewFile { path: c.path.display().to_string(), diff: c.diff.clone() }).collect();
                ui.send(tui::Msg::Review(files)).await.is_ok() && answer.recv().await.unwrap_or(false)
            }
            _ => keep,
        };
        let mut quarantine = self.quarantine.borrow_mut();
        tampers.extend(changes.iter().map(|c| agentconf::settle(c, keep, &mut quarantine)));
        tampers
    }

    /// The end: the placeholders go (the sandbox is gone, they are still empty).
    pub(super) fn finish(self, tampered: Vec<report::Tamper>) -> Findings {
        drop(self.placeholders);
        Findings { created_live: self.created_live.into_inner(), tampered, stopped_for: self.stopped_for.into_inner(), rehidden: self.rehidden.into_inner(), policy_files: self.policy_files.into_inner() }
    }
}

/// The watch's descriptor, registered with the session's reactor; none (a warning in the
/// log) when that fails.
fn watch_fd(w: &missing::Watch, what: &str) -> Option<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    match w.fd().and_then(|fd| crate::sys::async_fd(fd, tokio::io::Interest::READABLE)) {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!("cannot watch {what}: {e}");
            None
        }
    }
}

/// Calls `on_events` with the watched paths each wake-up found, until the command has ended.
async fn follow(w: &missing::Watch, fd: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, done: &mut Done, mut on_events: impl FnMut(Vec<PathBuf>)) {
    loop {
        tokio::select! {
            biased;
            () = done.wait() => break,
            ready = fd.readable() => {
                if let Ok(mut ready) = ready {
                    ready.clear_ready();
                }
                on_events(w.created());
            }
        }
    }
}

/// Removes the watch's marks and closes it. The close waits for the kernel to free the
/// marks: on a thread of its own, so that it overlaps the exit checks.
fn close(w: missing::Watch, fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>) {
    w.stop();
    let _ = std::thread::Builder::new().name("sbx-inotify-close".into()).spawn(move || drop((fd, w)));
}

/// The dashboard, asked whether to keep changes to agent configuration.
pub(super) struct Review<'a> {
    pub(super) ui: &'a tokio::sync::mpsc::Sender<tui::Msg>,
    pub(super) answer: &'a mut tokio::sync::mpsc::Receiver<bool>,
}

impl Findings {
    /// The exit lines on stderr: why the command was stopped, and one line per tamper
    /// with what was done about it (and the diff, for configuration).
    pub(super) fn print(&self, keep_flag: bool) {
        if let Some(names) = &self.stopped_for {
            eprintln!("sbx: stopped the command: it created protected names that were missing at start, twice ({}); see the tamper lines", crate::termtext::escape(names));
        }
        for (path, n) in &self.rehidden {
            let times = if *n > 1 { format!(" ({n} times)") } else { String::new() };
            eprintln!(
                "sbx: a program outside the sandbox replaced the hidden path {} during the session{times}; it was hidden again inside (a read in the sandbox at that moment could have seen it)",
                crate::termtext::path(path)
            );
        }
        for t in self.created_live.iter().chain(&self.tampered) {
            eprintln!("{}", tamper_line(t, keep_flag));
            for line in &t.diff {
                eprintln!("sbx:   {}", crate::termtext::escape(line));
            }
        }
    }
}

/// The one line about a tamper (its diff, if any, follows it).
fn tamper_line(t: &report::Tamper, keep_flag: bool) -> String {
    use report::TamperAction;
    let q = t.quarantine.as_ref().map_or_else(String::new, |q| q.display().to_string());
    let left = || format!("left in place: {}", t.error.as_deref().unwrap_or("?"));
    if t.action == TamperAction::Stripped {
        return format!(
            "sbx: tamper: {}, in a repository without read-only mounts (made in the session, or beyond the start's walk), has keys that run commands; they were removed (the whole file is in {q}):",
            crate::termtext::path(&t.path)
        );
    }
    if !t.diff.is_empty() {
        let done = match t.action {
            TamperAction::Reverted => format!("reverted; what the command wrote is in {q}"),
            TamperAction::Kept if keep_flag => "kept (--keep-agent-config)".to_string(),
            TamperAction::Kept => "kept (you kept it at the dashboard)".to_string(),
            _ => left(),
        };
        return format!(
            "sbx: tamper: the command {} {}, agent configuration that runs commands outside the sandbox; {}",
            t.change.as_str(),
            crate::termtext::path(&t.path),
            crate::termtext::escape(&done)
        );
    }
    let done = match t.action {
        TamperAction::Restored if t.quarantine.is_some() => format!("the original was put back; what the command left is in {q}"),
        TamperAction::Restored => "the original was put back".to_string(),
        TamperAction::Quarantined => format!("moved to {q}"),
        _ => left(),
    };
    format!(
        "sbx: tamper: the protected path {} was {} during the session; {}",
        crate::termtext::path(&t.path),
        t.change.as_str(),
        crate::termtext::escape(&done)
    )
}
