//! Turns observed denials into proposed policy changes: `sbx policy suggest`
//! reads them from an audit log, `sbx learn` from its own run.
//!
//! Each denial is first classified against the current policy (what would
//! answer it, or why nothing may), then the answers are generalised and
//! merged into [`Proposal`]s:
//!
//! * Paths: files under the home directory collapse into the directory that
//!   owns them (`~/.npm`, `~/.cache/pip`, `~/.local/share/x`), files created
//!   elsewhere into their directory when several share it; paths are written
//!   as `~/...` under the home directory and relative under the workspace.
//! * Names: three or more subdomains of one domain become `*.domain`
//!   (flagged); a port other than 80 and 443 is kept as `name:port`.
//! * Risky proposals are flagged and held back unless accepted: credentials
//!   (`~/.ssh`, `~/.aws`, `.env` files, keys, ...), writes outside the
//!   workspace, system paths, wildcard names, IP addresses, and removing an
//!   explicit deny rule.
//! * The seccomp deny list and the mandatory protections are never proposed
//!   without `include_protected`, and then only where a policy key exists
//!   (`allowGitConfig`, `allowAllUnixSockets`); the rest is reported as
//!   unanswerable, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::report::wire::Line;

mod apply;
mod classify;

pub use apply::{SuggestRequest, Target, events, render_report, suggest_command};
pub use classify::{domain_entry, explain};

use crate::config::{Config, edit::Change};
use crate::policy::{PROTECTED_DIRS, PROTECTED_FILES, Policy};
use crate::proxy::rules::{Host, NO_RULE, Rules};

/// One denial read from a log (or observed by `learn`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// 1-based line in the log (0 when not from a log).
    pub line: usize,
    pub source: String,
    pub syscall: Option<String>,
    pub operation: Option<crate::report::Operation>,
    pub errno: Option<String>,
    pub path: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub comm: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    /// A refused exec's command line, as a rule would be written (source `command`).
    pub argv: Option<String>,
    pub call: Option<String>,
    pub domain: Option<String>,
}

/// What an audit log holds for suggestions.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub denials: Vec<Observed>,
    /// The last session's workspace and home.
    pub workspace: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub sessions: usize,
    /// The `seq` the next event appended to the log gets.
    pub next_seq: u64,
    /// Sessions whose kernel tracer did not run (no file denials recorded), with the
    /// reason each gave.
    pub unobserved: Vec<String>,
}

/// Whether a log must pass `sbx log verify` before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A log that fails verification is refused.
    Verified,
    /// `--unverified`: read it anyway; every proposal is then held as risky.
    Unverified,
}

/// The risk note every proposal from an unverified log carries.
pub const UNVERIFIED_RISK: &str = "from a log that was not verified (--unverified): the sandboxed command could have written it";

/// Reads an sbx audit log (JSON Lines, schema v1), checking its seal unless
/// `trust` is `Unverified`. Returns whether it verified.
pub fn read_log(path: &Path, trust: Trust) -> anyhow::Result<(Recorded, bool)> {
    let text = crate::fsio::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read the log: {e}"))?;
    let verified = match crate::seal::keys_dir().map_err(|e| e.to_string()).and_then(|keys| crate::seal::verify(&text, &keys).map_err(|e| e.to_string())) {
        Ok(_) => true,
        Err(why) if trust == Trust::Unverified => {
            eprintln!("sbx: warning: the log {} fails verification ({}); read anyway (--unverified), every proposal is held as risky", crate::termtext::path(path), crate::termtext::escape(&why));
            false
        }
        Err(why) => {
            anyhow::bail!(
                "the log {} fails verification: {}; it may have been edited by a sandboxed command, so it is not used (`sbx log verify` checks it; --unverified reads it anyway, with every proposal held as risky)",
                crate::termtext::path(path),
                crate::termtext::escape(&why)
            )
        }
    };
    Ok((parse_log(&text, path)?, verified))
}

/// Holds every proposal as risky (a log that was not verified).
pub fn distrust(s: &mut Suggestions) {
    for p in &mut s.proposals {
        if !p.risk.iter().any(|r| r == UNVERIFIED_RISK) {
            p.risk.push(UNVERIFIED_RISK.to_string());
        }
        p.hold = true;
    }
}

/// Parses the text of an audit log; `path` names it in errors.
pub fn parse_log(text: &str, path: &Path) -> anyhow::Result<Recorded> {
    let mut out = Recorded::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let read = Line::parse(line).map_err(|e| anyhow::anyhow!("{}:{n}: {e}", path.display()))?;
        if let Some(seq) = read.head.seq {
            out.next_seq = seq + 1;
        }
        match read.line {
            Some(Line::SessionStart(s)) => {
                out.sessions += 1;
                out.workspace = s.workspace.as_ref().map(PathBuf::from);
                out.home = s.home.as_ref().map(PathBuf::from);
                if let Some(o) = s.observation.as_ref().filter(|o| !o.kernel_tracer) {
                    out.unobserved.push(o.reason.clone().unwrap_or_else(|| "the kernel tracer did not run".into()));
                }
            }
            Some(Line::Denial(d)) => out.denials.push(Observed {
                line: n,
                source: d.source.as_str().to_owned(),
                syscall: d.syscall.clone(),
                operation: d.operation,
                errno: d.errno.clone(),
                path: d.path.as_ref().map(PathBuf::from),
                host: d.host.clone(),
                port: d.port,
                comm: d.comm.clone(),
                reason: d.detail("reason").map(String::from),
                rule: d.detail("rule").map(String::from),
                argv: d.detail("argv").map(String::from),
                call: d.detail("call").map(String::from),
                domain: d.detail("domain").map(String::from),
            }),
            _ => {}
        }
    }
    if out.sessions == 0 {
        anyhow::bail!("{} holds no session_start event: it is not an sbx audit log (write one with `sbx monitor --no-tui --log FILE -- CMD`)", path.display());
    }
    Ok(out)
}

/// What the suggestions are made against.
pub struct Context<'a> {
    /// The policy the config file gives now, for the log's workspace.
    pub policy: &'a Policy,
    /// The target file's own entries (removals can only touch these).
    pub own: &'a Config,
    /// Propose the switches that weaken a mandatory protection or the
    /// seccomp deny list (`allowGitConfig`, `allowAllUnixSockets`).
    pub include_protected: bool,
    /// Whether a path exists on this host.
    pub exists: &'a dyn Fn(&Path) -> bool,
}

/// One proposed change to the policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Dotted key, e.g. `filesystem.allowWrite`.
    pub key: &'static str,
    /// `add`, `remove` or `set`.
    pub op: &'static str,
    /// The entry as written in the file.
    pub value: String,
    /// Indexes of the denials it answers.
    pub answers: Vec<usize>,
    /// Why it is flagged; empty when it is not.
    pub risk: Vec<String>,
    /// Flagged as risky: held back unless accepted. A proposal can be
    /// flagged without being held (a write into the home directory's
    /// tool directories is outside the workspace, but ordinary).
    pub hold: bool,
    /// A directory to create so that the entry can take effect.
    pub create_dir: Option<PathBuf>,
}

impl Proposal {
    pub fn change(&self, comment: Option<String>) -> Change {
        let key: Vec<String> = self.key.split('.').map(String::from).collect();
        match self.op {
            "remove" => Change::Remove { key, item: self.value.clone() },
            "set" => Change::SetBool { key, value: self.value == "true" },
            _ => Change::Append { key, items: vec![(self.value.clone(), comment)] },
        }
    }
}

/// Denials that no policy change answers, grouped by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub why: String,
    pub what: String,
    pub answers: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Suggestions {
    pub proposals: Vec<Proposal>,
    pub unanswered: Vec<Unanswered>,
    /// Denials the current policy already allows (the log predates it).
    pub already: Vec<usize>,
}

#[cfg(test)]
mod tests;
