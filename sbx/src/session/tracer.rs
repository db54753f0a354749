//! The session's cgroups and the kernel tracer, loaded while bubblewrap builds the sandbox.

use super::*;

/// Creates the session's cgroups and applies the limits; says in one line
/// which limits are not enforced and why. `None` when no cgroup could be had.
pub(super) fn session_cgroup(limits: &Limits, for_tracer: bool, direct: bool) -> (Option<SessionCgroup>, Vec<(limits::Kind, String)>) {
    let (cgroup, mut unenforced) = cgroup::for_session(limits, for_tracer);
    if direct {
        // Without namespaces (`--no-namespaces`) there is no tmpfs to size, and RLIMIT_NPROC
        // would count the user's processes outside the sandbox too.
        if limits.tmp_size.is_some() {
            unenforced.push((limits::Kind::TmpSize, "without namespaces, TMPDIR is a directory on the host's disk, not a sized tmpfs".into()));
        }
        if limits.pids.is_some() && !cgroup.as_ref().is_some_and(SessionCgroup::enforces_pids) {
            unenforced.push((limits::Kind::Pids, "without namespaces and without a cgroup, no limit counts the sandbox's processes alone".into()));
        }
    }
    // One line per reason.
    let mut reasons: Vec<&str> = unenforced.iter().map(|(_, why)| why.as_str()).collect();
    reasons.dedup();
    for why in reasons {
        let kinds: Vec<limits::Kind> = unenforced.iter().filter(|(_, w)| w == why).map(|(k, _)| *k).collect();
        let names: Vec<String> = kinds.iter().map(|&k| format!("{k} ({})", limits::format_value(k, limits).unwrap_or_default())).collect();
        eprintln!(
            "sbx: warning: {} {} not enforced: {why}; set {} to off to silence this",
            names.join(" and "),
            if names.len() == 1 { "is" } else { "are" },
            kinds.iter().map(|k| k.flag()).collect::<Vec<_>>().join("/"),
        );
    }
    (cgroup, unenforced)
}

/// Starts loading the kernel tracer for the session's cgroup on a thread of
/// its own, so that it loads while bubblewrap builds the sandbox: the
/// tracer (or `None`, said in one line) arrives on the receiver, and the
/// gate opens when it is attached or has failed; the command starts only
/// then. `None` when there can be no tracer.
pub(super) fn start_tracer(cgroup: Option<&SessionCgroup>, ring_bytes: u32, runtime: tokio::runtime::Handle, not_observed: std::sync::Arc<std::sync::Mutex<Option<String>>>) -> Option<TracerLoad> {
    let Some((id, path)) = cgroup.and_then(|c| Some((c.id()?, c.path()?.to_path_buf()))) else {
        let why = if !nix::unistd::geteuid().is_root() {
            "the kernel tracer needs root: run sbx with sudo (the command still runs as you)".to_string()
        } else if !crate::sys::confinement().initial_userns {
            "the kernel tracer needs the host's root, and sbx is root only in a user namespace of its own".to_string()
        } else {
            "the kernel tracer needs a cgroup2 hierarchy to follow the sandbox's processes, and this host has none".to_string()
        };
        eprintln!("sbx: monitoring unavailable: {why}; the command runs without it");
        *not_observed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        return None;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let opens = OpenOnDrop(gate.clone());
    std::thread::spawn(move || {
        let opens = opens;
        // Registering the ring buffer with the reactor needs the runtime.
        let _entered = runtime.enter();
        // The gate opens once the programs are attached for the session: the
        // ring buffer is mapped while the command starts.
        let gate = opens.0.clone();
        let tracer = match Tracer::start(id, ring_bytes, move || gate.notify_one()) {
            Ok(t) => {
                tracing::debug!("tracer attached in {:?} for cgroup {} (programs loaded now: {})", t.startup, path.display(), t.loaded);
                Some(t)
            }
            Err(e) => {
                let why = e.reason();
                tracing::debug!("the tracer failed: {e}");
                eprintln!("sbx: monitoring unavailable: {why}; the command runs without it");
                // Set before the gate opens (when `opens` goes): session_start reads it after.
                // (A ring that cannot be mapped once the programs are attached, which has
                // opened the gate, is the one failure said after the start.)
                *not_observed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                None
            }
        };
        let _ = tx.send(tracer);
    });
    Some(TracerLoad { tracer: rx, gate })
}

/// A tracer being loaded: see [`start_tracer`].
pub(super) struct TracerLoad {
    pub(super) tracer: tokio::sync::oneshot::Receiver<Option<Tracer>>,
    pub(super) gate: std::sync::Arc<tokio::sync::Notify>,
}

/// Opens the gate when dropped, whatever happened (a panic included), so
/// that the launch never waits forever.
pub(super) struct OpenOnDrop(std::sync::Arc<tokio::sync::Notify>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// The session's limits: what is in force, what could not be, what the
/// kernel counted against them so far, and whether the timeout fired.
pub(super) struct LimitsState {
    pub(super) limits: Limits,
    pub(super) unenforced: Vec<(limits::Kind, String)>,
    pub(super) counted: std::cell::Cell<cgroup::Counters>,
    pub(super) timed_out: std::cell::Cell<bool>,
}

impl LimitsState {
    /// Reads the cgroup's counters and reports what grew as `limit` denials.
    pub(super) fn observe(&self, cgroup: &SessionCgroup, sink: &RefCell<Sink>) {
        let now = cgroup.counters();
        let before = self.counted.replace(now);
        if now.oom_kills > before.oom_kills {
            let n = now.oom_kills - before.oom_kills;
            let effect = format!("{n} process{} killed by the kernel's OOM killer", if n == 1 { "" } else { "es" });
            sink.borrow_mut().limit(limits::Kind::Memory, &self.limits, n, effect);
        }
        if now.pids_refused > before.pids_refused {
            let n = now.pids_refused - before.pids_refused;
            let effect = format!("{n} fork{} refused (EAGAIN)", if n == 1 { "" } else { "s" });
            sink.borrow_mut().limit(limits::Kind::Pids, &self.limits, n, effect);
        }
    }

    /// The status sbx exits with: the command's, or the timeout's, or setup's when the
    /// command never ran.
    pub(super) fn exit_code(&self, outcome: &Result<Outcome, LaunchError>) -> u8 {
        match outcome {
            Ok(_) if self.timed_out.get() => limits::EXIT_TIMEOUT,
            Ok(Outcome::Exited(code)) => *code,
            Err(_) => crate::EXIT_SETUP,
        }
    }

    /// The line for stderr at exit when a limit decided how the command
    /// ended: stopped by the timeout, or killed by the OOM killer (a bare
    /// 137 otherwise).
    pub(super) fn exit_line(&self, outcome: &Result<Outcome, LaunchError>) -> Option<String> {
        if self.timed_out.get() {
            let t = self.limits.timeout.map(|t| humantime::format_duration(t).to_string()).unwrap_or_default();
            return Some(format!("the command was stopped by limits.timeout ({t}); exit status {}", limits::EXIT_TIMEOUT));
        }
        let counted = self.counted.get();
        if counted.oom_kills > 0 {
            let m = limits::format_value(limits::Kind::Memory, &self.limits).unwrap_or_default();
            let who = match outcome {
                Ok(Outcome::Exited(137)) => "the command was killed by the kernel's OOM killer",
                _ => "a process of the sandbox was killed by the kernel's OOM killer",
            };
            return Some(format!("{who}: limits.memory ({m}) reached; raise it with --memory or limits.memory"));
        }
        if counted.pids_refused > 0 {
            let p = self.limits.pids.unwrap_or_default();
            return Some(format!("limits.pids ({p}) reached: {} fork{} refused; raise it with --pids or limits.pids", counted.pids_refused, if counted.pids_refused == 1 { " was" } else { "s were" }));
        }
        None
    }
}

