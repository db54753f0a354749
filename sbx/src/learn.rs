//! `sbx learn`: runs a command until it stops being refused, then prints the
//! policy that lets it run.
//!
//! Each run is a normal, enforced session, except that the proxy allows
//! every name (each destination is recorded) and the policy grows by what
//! the runs before were refused, generalised by [`crate::suggest`]; the
//! kernel tracer and the seccomp supervisor record the denials. Learning
//! stops when a run is refused nothing that a policy change could answer,
//! or after `max_runs`. The result is the starting policy file with the
//! proposals applied (comments kept), printed or written to a file.
//!
//! Learning gives the command wider access than the starting policy: the
//! whole network by name, and in later runs every path it asked for before,
//! credentials included. It is for code one trusts; the README says so.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::policy::Policy;
use crate::report::wire::{Decision, Line, Read};
use crate::suggest::{self, Context, Observed, Proposal, Suggestions, Target};

/// What `sbx learn` was asked to do.
pub struct Request<'a> {
    pub command: Vec<OsString>,
    pub target: Target,
    pub workspace: PathBuf,
    pub home: Option<PathBuf>,
    pub log: Option<&'a Path>,
    pub output: Option<&'a Path>,
    /// `--unverified`: use a run's events that fail verification.
    pub trust: suggest::Trust,
    pub max_runs: u32,
    /// Runs one session with this policy, appending its events to the log;
    /// returns the command's exit status.
    pub run: &'a mut dyn FnMut(&Policy, &Path) -> anyhow::Result<u8>,
}

/// The outcome, for the caller's exit status.
pub struct Learned {
    pub runs: u32,
    pub last_exit: u8,
    /// The last run was refused nothing a policy change answers.
    pub converged: bool,
}

/// Adds one proposal to a config (what the file edit does, on the struct).
fn apply(config: &mut Config, p: &Proposal) {
    if let Some(flag) = crate::config::flag_mut(config, p.key) {
        *flag = true;
        return;
    }
    let Some(list) = crate::config::strings_mut(config, p.key) else { return };
    match p.op {
        "remove" => list.retain(|e| e != &p.value),
        _ if !list.contains(&p.value) => list.push(p.value.clone()),
        _ => {}
    }
}

/// The events a run appended to the log after byte `from`, as observations:
/// its denials, and each destination the proxy let through (allowed only
/// because learning allows every name); and the `seq` an event appended
/// after them gets.
fn observe(log: &Path, from: u64, trust: suggest::Trust) -> anyhow::Result<(Vec<Observed>, u64, bool)> {
    let text = crate::fsio::read_to_string(log).map_err(|e| anyhow::anyhow!("cannot read the log: {e}"))?;
    // This run's lines: what it appended after `from` (the command runs
    // while they are written, and may write the log itself: they must be
    // the session's own, sealed).
    let text = text.get(usize::try_from(from).unwrap_or(usize::MAX)..).unwrap_or_default().to_string();
    let verified = match crate::seal::keys_dir().map_err(|e| e.to_string()).and_then(|k| crate::seal::verify(&text, &k).map_err(|e| e.to_string())) {
        Ok(_) => true,
        Err(why) if trust == suggest::Trust::Unverified => {
            eprintln!("sbx learn: warning: the run's log fails verification ({}); used anyway (--unverified), every proposal marked for review", crate::termtext::escape(&why));
            false
        }
        Err(why) => anyhow::bail!(
            "the run's log {} fails verification: {}; it may have been edited by the command, so learning stops (--unverified uses it anyway)",
            crate::termtext::path(log),
            crate::termtext::escape(&why)
        ),
    };
    let recorded = suggest::parse_log(&text, log)?;
    // Root whose tracer failed: said once per run (not root is said at the start).
    if let Some(why) = recorded.unobserved.first()
        && nix::unistd::geteuid().is_root()
    {
        eprintln!("sbx learn: this run's file access was not observed ({}): only network destinations and blocked syscalls are learnt", crate::termtext::escape(why));
    }
    let mut out = recorded.denials;
    for line in text.lines() {
        let Ok(Read { line: Some(Line::Net(n)), .. }) = Line::parse(line) else { continue };
        if n.decision == Decision::Allowed && n.rule == crate::proxy::rules::allowed_by("*") {
            out.push(Observed {
                source: "proxy".into(),
                host: Some(n.host),
                port: Some(n.port),
                operation: Some(crate::report::Operation::Connect),
                rule: Some(crate::proxy::rules::NO_RULE.into()),
                ..Observed::default()
            });
        }
    }
    Ok((out, recorded.next_seq, verified))
}


pub fn learn(req: Request) -> anyhow::Result<Learned> {
    let exists = |p: &Path| p.exists();
    let base = Policy::from_config(&req.target.merged, req.workspace.clone(), req.home.clone())?;
    let scratch;
    let log = match req.log {
        Some(l) => l.to_path_buf(),
        None => {
            scratch = ScratchLog(crate::state::session_file("learn", ".jsonl")?);
            scratch.0.clone()
        }
    };
    let mut seen: Vec<Observed> = Vec::new();
    let mut suggestions = Suggestions::default();
    let mut runs = 0;
    let mut last_exit = 0;
    let mut converged = false;
    let mut next_seq = 0;
    let mut trusted = true;
    while runs < req.max_runs {
        runs += 1;
        let mut config = req.target.merged.clone();
        for p in &suggestions.proposals {
            apply(&mut config, p);
        }
        // The learning run: the policy so far, and every name reachable.
        let mut policy = Policy::from_config(&config, req.workspace.clone(), req.home.clone())?;
        if !policy.net.allowed_domains.iter().any(|d| d == "*") {
            policy.net.allowed_domains.push("*".into());
        }
        for dir in suggestions.proposals.iter().filter_map(|p| p.create_dir.as_ref()) {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let from = std::fs::metadata(&log).map_or(0, |m| m.len());
        eprintln!("sbx learn: run {runs}: {}", crate::termtext::escape(&describe(&suggestions)));
        last_exit = (req.run)(&policy, &log)?;
        let (new, seq, verified) = observe(&log, from, req.trust)?;
        next_seq = seq;
        trusted &= verified;
        seen.extend(new.iter().cloned());
        let ctx = Context { policy: &base, own: &req.target.own, include_protected: false, exists: &exists };
        let mut next = ctx.suggest(&seen);
        if !trusted {
            suggest::distrust(&mut next);
        }
        // Done when this run was refused nothing a change answers that the
        // run did not already have.
        let grew = next.proposals.iter().any(|p| !suggestions.proposals.iter().any(|q| q.key == p.key && q.value == p.value && q.op == p.op));
        suggestions = next;
        if !grew {
            converged = true;
            break;
        }
    }

    let mut report = String::new();
    let held = |_: &Proposal| false;
    report.push_str(&suggest::render_report(&suggestions, &seen, &held));
    eprint!("{}", crate::termtext::escape_lines(&report));
    let all: Vec<&Proposal> = suggestions.proposals.iter().collect();
    let text = req.target.edited(&all, &seen, "learn")?;
    match req.output {
        Some(path) => {
            crate::fsio::replace(path, text.as_bytes(), 0o644)?;
            eprintln!("sbx learn: wrote the policy to {}", crate::termtext::path(path));
        }
        None => print!("{}", crate::termtext::escape_lines(&text)),
    }
    if converged {
        eprintln!("sbx learn: {runs} run{}; the last one was refused nothing a policy change answers (exit {last_exit})", if runs == 1 { "" } else { "s" });
    } else {
        eprintln!("sbx learn: stopped after {runs} runs; the last one was still refused something new: run it again with the result");
    }
    if req.log.is_some() {
        let mut out = crate::report::Log::append_at(&log, next_seq)?;
        for e in suggest::events(&suggestions, crate::report::PolicyOrigin::Learn, &req.target.file, &|_| crate::report::PolicyAction::Proposed) {
            out.write(&e)?;
        }
        out.flush()?;
    }
    Ok(Learned { runs, last_exit, converged })
}

fn describe(s: &Suggestions) -> String {
    if s.proposals.is_empty() {
        return "the starting policy, every name reachable".into();
    }
    let list: Vec<String> = s.proposals.iter().map(|p| format!("{} {}", p.key.rsplit('.').next().unwrap_or(p.key), p.value)).collect();
    format!("every name reachable, and {}", list.join(", "))
}

/// A temporary log removed when learning ends.
struct ScratchLog(PathBuf);

impl Drop for ScratchLog {
    /// Removes the log and the keys that sealed it (no one can verify a
    /// log that is gone).
    fn drop(&mut self) {
        if let (Ok(text), Ok(keys)) = (crate::fsio::read_to_string(&self.0), crate::seal::keys_dir()) {
            for id in text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?.get("mac_key")?.as_str().map(String::from)) {
                if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let _ = std::fs::remove_file(keys.join(id));
                }
            }
        }
        let _ = std::fs::remove_file(&self.0);
    }
}
