//! Applying suggestions to a policy file ([`Target`]), the report printed, the `policy`
//! events recorded, and `sbx policy suggest` itself.

use super::*;

/// The policy file that suggestions are written into.
pub struct Target {
    pub file: PathBuf,
    /// Its text now; empty when it does not exist yet.
    pub text: String,
    pub exists: bool,
    /// Its own entries, without `extends`.
    pub own: Config,
    /// The merged config it gives (with `extends`), or the default.
    pub merged: Config,
}

impl Target {
    /// Reads `file` (which may not exist yet).
    pub fn open(file: &Path, cwd: &Path, xdg_config_home: Option<&Path>) -> anyhow::Result<Target> {
        let file = crate::policy::normalize(&cwd.join(file));
        let (text, exists) = match crate::fsio::read_policy(&file) {
            Ok(t) => (t, true),
            Err(e) if e.is_not_found() => (String::new(), false),
            Err(e) => anyhow::bail!("cannot read the policy file: {e}"),
        };
        let own = crate::config::parse_str(&text, &file)?.config;
        let merged = if exists {
            crate::config::load(&crate::config::Request { file: Some(&file), template: None, cwd, xdg_config_home })?.config
        } else {
            Config::default()
        };
        Ok(Target { file, text, exists, own, merged })
    }

    /// The file's text with `proposals` applied, each added entry with a
    /// comment saying where it came from; checked by parsing it again.
    pub fn edited(&self, proposals: &[&Proposal], denials: &[Observed], origin: &str) -> anyhow::Result<String> {
        let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let today = &today[..10];
        let changes: Vec<Change> = proposals
            .iter()
            .map(|p| {
                let n = p.answers.len();
                let mut comms: Vec<&str> = p.answers.iter().filter_map(|&i| denials.get(i).and_then(|d| d.comm.as_deref())).collect();
                comms.sort_unstable();
                comms.dedup();
                let by = if comms.is_empty() { String::new() } else { format!(" by {}", comms.iter().take(3).copied().collect::<Vec<_>>().join(", ")) };
                let review = if p.hold { format!("; review: {}", p.risk.join(", ")) } else { String::new() };
                p.change(Some(format!("{origin} {today}: {n} denial{}{by}{review}", if n == 1 { "" } else { "s" })))
            })
            .collect();
        let base = if self.exists || !self.text.is_empty() { self.text.clone() } else { format!("// sbx policy, started by `sbx {origin}` on {today}.\n// Field names are fence's; see `sbx config init` for every key.\n{{\n}}\n") };
        self.changed(&base, &changes)
    }

    /// Appends one entry to the list `key` and writes the file (`--ask`'s
    /// "always" answers).
    pub fn append(&self, key: &str, entry: &str, comment: String) -> anyhow::Result<()> {
        let change = Change::Append { key: key.split('.').map(String::from).collect(), items: vec![(entry.to_string(), Some(comment))] };
        self.write(&self.changed(&self.text, &[change])?)
    }

    /// `base` with `changes` applied, checked by parsing it as a policy file.
    pub(super) fn changed(&self, base: &str, changes: &[Change]) -> anyhow::Result<String> {
        let out = crate::config::edit::apply(base, changes).map_err(|e| anyhow::anyhow!("{}: {e}", self.file.display()))?;
        crate::config::parse_str(&out, &self.file).map_err(|e| anyhow::anyhow!("sbx produced an invalid policy file, nothing was written: {e}"))?;
        Ok(out)
    }

    /// A unified diff from the file's text to `new`.
    pub fn diff(&self, new: &str) -> String {
        let name = self.file.display().to_string();
        let old_name = if self.exists { name.clone() } else { "/dev/null".into() };
        let new_name = name;
        similar::TextDiff::from_lines(self.text.as_str(), new).unified_diff().context_radius(3).header(&old_name, &new_name).to_string()
    }

    /// Replaces the file with `new` (`fsio::replace`: a temporary file in
    /// sbx's private directory, then a rename that replaces a symlink rather
    /// than following it; its permissions are kept), so that no reader sees
    /// half a file.
    pub fn write(&self, new: &str) -> anyhow::Result<()> {
        crate::fsio::replace(&self.file, new.as_bytes(), 0o644)?;
        Ok(())
    }
}

/// The report printed before the diff: each proposal with what it answers
/// and its flags, then what no change answers.
pub fn render_report(s: &Suggestions, denials: &[Observed], held: &dyn Fn(&Proposal) -> bool) -> String {
    let mut out = String::new();
    for (n, p) in s.proposals.iter().enumerate() {
        let sign = match p.op {
            "remove" => "-=",
            "set" => "=",
            _ => "+=",
        };
        let value = if p.op == "set" { crate::termtext::escape(&p.value).into_owned() } else { format!("\"{}\"", crate::termtext::escape(&p.value)) };
        let _ = writeln!(out, "{}. {} {sign} {value}", n + 1, p.key);
        let _ = writeln!(out, "   answers {}", crate::termtext::escape(&explain(denials, &p.answers)));
        for r in &p.risk {
            let _ = writeln!(out, "   ! {}: {}", if p.hold { "risky" } else { "note" }, crate::termtext::escape(r));
        }
        if let Some(dir) = &p.create_dir {
            let _ = writeln!(out, "   {} does not exist yet: it is created when this is applied", crate::termtext::path(dir));
        }
        if held(p) {
            let _ = writeln!(out, "   held back: pass --accept-risky to apply it");
        }
    }
    if !s.unanswered.is_empty() {
        let _ = writeln!(out, "Not proposed:");
        for u in &s.unanswered {
            let n = u.answers.len();
            let _ = writeln!(out, "   - {n} denial{}: {}: {}", if n == 1 { "" } else { "s" }, crate::termtext::escape(&u.what), crate::termtext::escape(&u.why));
        }
    }
    if !s.already.is_empty() {
        let _ = writeln!(out, "{} denial{} already allowed by the current policy (the log predates it).", s.already.len(), if s.already.len() == 1 { " is" } else { "s are" });
    }
    out
}

/// The `policy` events for `proposals`.
pub fn events(s: &Suggestions, origin: crate::report::PolicyOrigin, config: &Path, applied: &dyn Fn(&Proposal) -> crate::report::PolicyAction) -> Vec<crate::report::Event> {
    s.proposals
        .iter()
        .map(|p| {
            crate::report::Event::Policy(crate::report::PolicyEvent {
                origin,
                action: applied(p),
                key: p.key.to_string(),
                change: crate::report::PolicyChange::of(p.op),
                value: p.value.clone(),
                config: Some(config.to_path_buf()),
                risk: p.risk.clone(),
                answers: Some(p.answers.len() as u64),
                host: None,
                port: None,
            })
        })
        .collect()
}

/// `sbx policy suggest`.
pub struct SuggestRequest<'a> {
    pub log: &'a Path,
    pub target: Target,
    pub write: bool,
    pub accept_risky: bool,
    pub include_protected: bool,
    pub home: Option<PathBuf>,
    pub workspace: PathBuf,
    /// `--unverified`: read a log that fails verification.
    pub trust: Trust,
}

/// Runs `sbx policy suggest`: prints the report and the diff to `out`,
/// writes the file with `write`, and appends `policy` events to the log.
pub fn suggest_command(req: SuggestRequest, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let (recorded, verified) = read_log(req.log, req.trust)?;
    let workspace = recorded.workspace.clone().unwrap_or(req.workspace);
    let home = recorded.home.clone().or(req.home);
    let policy = Policy::from_config(&req.target.merged, workspace, home)?;
    let exists = |p: &Path| p.exists();
    let ctx = Context { policy: &policy, own: &req.target.own, include_protected: req.include_protected, exists: &exists };
    let mut s = ctx.suggest(&recorded.denials);
    if !verified {
        distrust(&mut s);
    }
    let held = |p: &Proposal| p.hold && !req.accept_risky;
    writeln!(
        out,
        "sbx policy suggest: {} denial{} in {} ({} session{}); policy file {}{}",
        recorded.denials.len(),
        if recorded.denials.len() == 1 { "" } else { "s" },
        crate::termtext::path(req.log),
        recorded.sessions,
        if recorded.sessions == 1 { "" } else { "s" },
        crate::termtext::path(&req.target.file),
        if req.target.exists { "" } else { " (new)" }
    )?;
    if let Some(why) = recorded.unobserved.first() {
        writeln!(
            out,
            "The log has no kernel denials (file access) from {} of its sessions: {}; the proposals cover what the proxy and the seccomp supervisor saw.",
            recorded.unobserved.len(),
            crate::termtext::escape(why)
        )?;
    }
    write!(out, "{}", render_report(&s, &recorded.denials, &held))?;
    let apply: Vec<&Proposal> = s.proposals.iter().filter(|p| !held(p)).collect();
    if s.proposals.is_empty() {
        writeln!(out, "Nothing to propose.")?;
    }
    let mut written = false;
    if !apply.is_empty() {
        let new = req.target.edited(&apply, &recorded.denials, "policy suggest")?;
        write!(out, "\n{}", crate::termtext::escape_lines(&req.target.diff(&new)))?;
        if req.write {
            for dir in apply.iter().filter_map(|p| p.create_dir.as_ref()) {
                std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", crate::termtext::path(dir)))?;
            }
            req.target.write(&new)?;
            written = true;
            writeln!(out, "\nWrote {} change{} to {}.", apply.len(), if apply.len() == 1 { "" } else { "s" }, crate::termtext::path(&req.target.file))?;
        } else {
            writeln!(out, "\nNothing written: pass --write to apply the {} change{} above.", apply.len(), if apply.len() == 1 { "" } else { "s" })?;
        }
    }
    let held_n = s.proposals.iter().filter(|p| held(p)).count();
    if held_n > 0 {
        writeln!(out, "{held_n} risky proposal{} held back (--accept-risky applies them after you have read them).", if held_n == 1 { " is" } else { "s are" })?;
    }
    // The reviewer's record: what was proposed, applied and held, by whom.
    let action = |p: &Proposal| {
        use crate::report::PolicyAction;
        if held(p) {
            PolicyAction::Held
        } else if written {
            PolicyAction::Applied
        } else {
            PolicyAction::Proposed
        }
    };
    match crate::report::Log::append_at(req.log, recorded.next_seq) {
        Ok(mut log) => {
            for e in events(&s, crate::report::PolicyOrigin::Suggest, &req.target.file, &action) {
                log.write(&e)?;
            }
            log.flush()?;
        }
        Err(e) => eprintln!("sbx: warning: cannot record the suggestions in {}: {}", crate::termtext::path(req.log), crate::termtext::escape(&e.to_string())),
    }
    Ok(())
}
