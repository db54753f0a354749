//! The audit log: sbx's events and their one wire format, JSON Lines,
//! schema version 1. This module is the only place that knows JSON for
//! events; the rest of sbx produces plain Rust values.
//!
//! [`encode`] turns an [`Event`] into its typed line ([`wire::Line`], one
//! struct per event type below); the same structs are what readers parse
//! ([`wire::Line::parse`]: `policy suggest`, `learn`), and
//! `Line::into_event` turns a line read back into its `Event`
//! (`sbx monitor --replay`).
//!
//! # Schema v1
//!
//! One JSON object per line. Every object has:
//!
//! | field  | type   | meaning |
//! |--------|--------|---------|
//! | `v`    | number | schema version, `1` |
//! | `type` | string | the event type, below |
//! | `seq`  | number | 0, 1, 2, ... per session, without gaps |
//! | `time` | string | RFC 3339, UTC, microseconds |
//!
//! ## `session_start`
//! Written once the sandbox is in place, before the command's first
//! instruction runs.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `sbx_version` | string | |
//! | `command` | [string] | argv (lossy UTF-8) |
//! | `workspace` | string | the writable project directory |
//! | `home` | string or null | the invoking user's home, as `~` in the policy |
//! | `policy` | object | `sources` (where each part of the policy came from), `default_deny_read`, `allow_read`, `allow_execute` (when not empty), `deny_read`, `allow_write`, `deny_write` (as given, resolved to absolute paths), `allow_git_config`, `allowed_domains`, `denied_domains`, `allow_private_resolution` |
//! | `enforcement` | object | one entry per layer: `landlock` {`enforced`: `"full"`, `"partial"` or `"none"`, `abi`}, `seccomp` {`enforced`: bool, `blocked_syscalls`: number}, `netns` {`enforced`: bool}, `bwrap` {`enforced`: bool}; without namespaces (`--no-namespaces`: `bwrap` not enforced), `not_enforced`: what is not, one phrase each |
//! | `observation` | object | `kernel_tracer`: whether sbx's kernel tracer ran (file denials with paths, processes); when it did not, `reason`, one sentence (not root; the kernel refused the tracer's maps or programs; ...). Without it, no file denial is in the log, whatever the command did. Absent in logs of earlier versions |
//!
//! ## `denial`
//! Something the sandbox refused. Fields other than `source` are present
//! when known.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `source` | string | the layer that most likely refused it: `landlock`, `seccomp`, `proxy`, `mount` (a read-only or hidden part of the sandbox's view), `dac` (file permissions), `netns` (the sandbox's network namespace: a datagram to an address other than loopback, or a connection the supervisor did not see; without the kernel tracer, one event at the end with `detail.count`, the packets its network could not route), `dns` (sbx's DNS in the sandbox refused a name: `host` is the name, `detail.qtype` the query type, `detail.rule` why), `command` (a command rule), `limit`, `other` |
//! | `syscall` | string | e.g. `openat` |
//! | `errno` | string | e.g. `EACCES`, `EPERM`, `EROFS`, `ENETUNREACH` |
//! | `operation` | string | `read`, `write`, `create`, `delete`, `rename`, `modify`, `exec`, `connect`, `send` (a datagram to an address) |
//! | `pid`, `tid` | number | host process and thread ids |
//! | `comm` | string | the process's command name |
//! | `path` | string | resolved, absolute (against the caller's cwd or dirfd) |
//! | `requested_path` | string | as the program passed it |
//! | `host`, `port` | string, number | for network denials (proxy: the name asked for; kernel: the IP address given to connect, bind, sendto, sendmsg or sendmmsg) |
//! | `detail` | object | source-specific fields: `reason` (why this layer); `path_unresolved` (a relative request); `second_path`, `second_requested_path` (rename, link); `address` (a Unix socket address given to connect, bind or a send; `@name` is abstract); for seccomp, `call` (the call in C-like form, e.g. `mount("tmpfs", "/mnt", "tmpfs", 0, NULL)`) and the decoded arguments by name |
//!
//! ## `net`
//! One decision of sbx's egress policy (allowed or denied), made by the
//! proxy or on a direct connect(2) (transparent egress). A denial is also a
//! `denial` event with source `proxy`.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `protocol` | string | `http` (absolute-URI forwarding), `connect` (HTTP CONNECT tunnel), `socks5`, `forward` (allowLocalOutboundPorts), `direct` (a connect(2) to an address, carried out on the host), `inbound` (`-p`) |
//! | `via` | string | `proxy` (through sbx's proxy) or `direct` (transparent egress: the program's socket is connected to the destination itself); absent for `inbound` and in logs of earlier versions |
//! | `host`, `port` | string, number | the destination as requested (`direct`: the name sbx's DNS gave the address for, or the address) |
//! | `decision` | string | `allowed` or `denied` |
//! | `rule` | string | the rule that decided, e.g. `allowedDomains: *.github.com`, `no rule allows it` |
//! | `resolved` | string | the address connected to, when allowed |
//! | `client` | string | the sandbox-side peer |
//!
//! ## `process`
//! | field | type | meaning |
//! |-------|------|---------|
//! | `action` | string | `exec` or `exit` |
//! | `pid` | number | host pid |
//! | `ppid` | number | exec only: the parent's host pid, when known |
//! | `comm` | string | |
//! | `argv` | [string] | exec only; read from /proc when the event arrives, empty if the process was already gone |
//! | `exe` | string | exec only, when known |
//!
//! ## `policy`
//! A change to the policy that was proposed, applied, held back or decided:
//! by `sbx policy suggest`, by `sbx learn`, or by the person at the
//! dashboard answering `sbx monitor --ask`. Written to the session's log
//! (`--ask`) or appended to the log that `suggest` read, so that a reviewer
//! sees who allowed what and when.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `origin` | string | `suggest`, `learn` or `ask` |
//! | `action` | string | suggest/learn: `proposed` (shown, not written), `applied` (written to the file), `held` (a risky proposal not applied); ask: `allow_once`, `allow_always`, `deny_once`, `deny_always`, `timeout` (no answer: denied) |
//! | `key` | string | the config key, e.g. `filesystem.allowWrite`, `network.allowedDomains` |
//! | `change` | string | `add`, `remove` or `set`; ask: `add` (allow_always, deny_always) or `none` (an answer for one connection) |
//! | `value` | string | the entry added or removed, or the value set |
//! | `config` | string | the policy file, when one is involved |
//! | `risk` | [string] | why the change was flagged, when it was |
//! | `answers` | number | how many denials it answers |
//! | `host`, `port` | string, number | ask: the destination asked about |
//! | `user` | string | who ran sbx: user name (uid) |
//!
//! ## `tamper`
//! A protected path (a mandatory protection, a git administrative file of a
//! repository in the workspace, a PATH directory) that differs after the
//! session from the snapshot sbx took before it: existence, type, inode,
//! and the content of files up to 256 KiB. A path that did not exist and
//! whose directory did not exist either is not watched. Written after the
//! command has ended, before `session_end`; each is also a line on stderr.
//! A protected file name that did not exist at start is also reported the
//! moment the command creates it (`missing`), while the command runs.
//! Agent configuration that runs commands (`agentconf`) is reported the
//! same way at the end, with a `diff`; so are the hooks, `commondir`,
//! `config.worktree` and configuration keys that run something of a
//! repository the command created (`snapshot::NewRepositories`).
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `path` | string | the protected path |
//! | `change` | string | `created`, `removed`, `replaced` (another file is there) or `changed` (other content) |
//! | `action` | string | `quarantined` (moved to `quarantine`), `restored` (the original put back; what was there moved to `quarantine`), `reported` (nothing could be done); for agent configuration `reverted` (the keys that run commands put back, a copy of what the command wrote in `quarantine`) or `kept` (`--keep-agent-config`, or kept at the dashboard); for a new repository's configuration `stripped` (only the keys that run nothing kept; the whole file in `quarantine`, the keys removed in `diff`) |
//! | `diff` | [string] | agent configuration only: what changed, `- key: old` / `+ key: new` (JSON files, by key) or `- line` / `+ line` |
//! | `quarantine` | string | where what the command left was moved, outside the workspace, when it was |
//! | `error` | string | why the path could not be restored or moved, when it could not |
//!
//! ## `loss`
//! Events that the kernel could not deliver (the ring buffer was full).
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `source` | string | `ebpf` (the kernel tracer's ring buffer was full) or `seccomp` (the supervisor's queue was full; the calls were still refused) |
//! | `count` | number | events lost |
//!
//! ## `session_end`
//! Written when the command has ended, on every exit path sbx controls.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `exit_code` | number | sbx's exit status: the command's own, 128+N for signal N |
//! | `duration_ms` | number | from session_start |
//! | `counts` | object | events written, by type |
//! | `denials` | object | denials written, by source |
//! | `lost` | number | events lost in total |
//!
//! ## Integrity: `mac_key` and `mac`
//! Every line written by this version also carries:
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `mac_key` | string | on the first line of each writer (a session, `policy suggest`'s or `learn`'s record, a dashboard export): the id (32 hex digits) of the key that seals the writer's lines, kept by sbx in `<state>/keys/<id>`, outside the sandbox's view |
//! | `mac` | string | the last field of every line: HMAC-SHA256 (64 hex digits) with that key over the previous line's MAC of the same writer (32 zero bytes for its first line) followed by the line's bytes without `,"mac":"..."` |
//!
//! `sbx log verify FILE` checks the chain, and that no line of a writer is
//! missing at its end (the key file records how many lines it wrote); `sbx
//! policy suggest` and `sbx learn` refuse a log that fails. The details are
//! in the `seal` module. These fields are an addition that readers of v1
//! ignore, so the schema stays version 1; a log written before them has no
//! `mac` and does not verify (`--unverified` reads it, with every proposal
//! held as risky).
//!
//! Later versions add event types; a reader must ignore types and fields it
//! does not know. A change that alters the meaning of an existing field
//! increments `v`.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs::File,
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

mod log;
mod read;
pub mod wire;

pub use log::{Counts, Log, LogError, encode};
#[cfg(test)]
use log::limits_wire;

use crate::{policy::Policy, sandbox::Enforcement, seal::Sealer};
use wire::{
    Decision, DenialLine, Enforced, EnforcementWire, EventType, LandlockWire, LimitWire, Line, LossLine, NetLine, ObservationWire, PolicyLine, PolicyWire, ProcessLine,
    SeccompWire, SessionEndLine, SessionStartLine, TamperLine,
};

/// The schema version written in every event's `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// An event, before it gets its sequence number and time.
#[derive(Debug, Clone)]
pub enum Event {
    /// Boxed: the policy makes it several times larger than every other event.
    SessionStart(Box<SessionStart>),
    Denial(Denial),
    Net(Net),
    Process(Process),
    Loss(Loss),
    SessionEnd(SessionEnd),
    Policy(PolicyEvent),
    Tamper(Tamper),
}

/// How a path differs from what it was before the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Removed,
    /// Another file (or another kind of file) is at the path now.
    Replaced,
    /// The same file, with other content.
    Changed,
}

impl Change {
    /// The wire text (`tamper.change`).
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Removed => "removed",
            Change::Replaced => "replaced",
            Change::Changed => "changed",
        }
    }
}

/// What sbx did about a tampered path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TamperAction {
    /// Moved to the quarantine.
    Quarantined,
    /// The original put back (what was there moved to the quarantine).
    Restored,
    /// Nothing could be done (`error` says why).
    Reported,
    /// Agent configuration: the keys that run commands put back.
    Reverted,
    /// Agent configuration: kept, by `--keep-agent-config` or at the dashboard.
    Kept,
    /// The configuration of a repository without read-only mounts (the command created
    /// it, or it lies beyond the start's walk): the keys that run something removed
    /// (listed in `diff`).
    Stripped,
}

impl TamperAction {
    /// The wire text (`tamper.action`).
    pub fn as_str(self) -> &'static str {
        match self {
            TamperAction::Quarantined => "quarantined",
            TamperAction::Restored => "restored",
            TamperAction::Reported => "reported",
            TamperAction::Reverted => "reverted",
            TamperAction::Kept => "kept",
            TamperAction::Stripped => "stripped",
        }
    }
}

/// A protected path found changed after the session, and what sbx did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    pub path: PathBuf,
    pub change: Change,
    pub action: TamperAction,
    pub quarantine: Option<PathBuf>,
    pub error: Option<String>,
    /// For agent configuration: what changed, as `- old` / `+ new` lines.
    pub diff: Vec<String>,
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::SessionStart(_) => "session_start",
            Event::Denial(_) => "denial",
            Event::Net(_) => "net",
            Event::Process(_) => "process",
            Event::Loss(_) => "loss",
            Event::SessionEnd(_) => "session_end",
            Event::Policy(_) => "policy",
            Event::Tamper(_) => "tamper",
        }
    }
}

/// The layer that refused something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Landlock,
    Seccomp,
    Proxy,
    Mount,
    Dac,
    /// The sandbox's network namespace: a connection to anything but loopback
    /// (only the proxy leads out).
    Netns,
    /// A resource limit (`limits.*`) was reached.
    Limit,
    /// A command rule (`command.deny`, fence's default list) refused an exec.
    Command,
    /// sbx's DNS in the sandbox refused a query (transparent egress).
    Dns,
    /// Also what a source this version does not know, or none, reads as.
    #[default]
    #[serde(other)]
    Other,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Landlock => "landlock",
            Source::Seccomp => "seccomp",
            Source::Proxy => "proxy",
            Source::Mount => "mount",
            Source::Dac => "dac",
            Source::Netns => "netns",
            Source::Limit => "limit",
            Source::Command => "command",
            Source::Dns => "dns",
            Source::Other => "other",
        }
    }
}

/// What a refused action tried to do: a denial's `operation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "&'static str", from = "String")]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Rename,
    Modify,
    Exec,
    Connect,
    /// A datagram to an address.
    Send,
    /// A resource limit reached (`limits.*`): the operation is the limit's key.
    Limit(crate::limits::Kind),
    /// What an operation this version does not know reads as.
    Other,
}

impl Operation {
    const NAMED: [Operation; 9] = [
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Rename,
        Operation::Modify,
        Operation::Exec,
        Operation::Connect,
        Operation::Send,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Rename => "rename",
            Operation::Modify => "modify",
            Operation::Exec => "exec",
            Operation::Connect => "connect",
            Operation::Send => "send",
            Operation::Limit(kind) => kind.key(),
            Operation::Other => "other",
        }
    }

    /// The wire text read back; what this version does not know is `Other`.
    pub fn parse(text: &str) -> Operation {
        Operation::NAMED
            .into_iter()
            .chain(crate::limits::Kind::ALL.map(Operation::Limit))
            .find(|op| op.as_str() == text)
            .unwrap_or(Operation::Other)
    }

    /// Whether it changes the file system.
    pub fn writes(self) -> bool {
        matches!(self, Operation::Write | Operation::Create | Operation::Delete | Operation::Rename | Operation::Modify)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Operation> for &'static str {
    fn from(op: Operation) -> &'static str {
        op.as_str()
    }
}

impl From<String> for Operation {
    fn from(text: String) -> Operation {
        Operation::parse(&text)
    }
}

impl From<&str> for Operation {
    fn from(text: &str) -> Operation {
        Operation::parse(text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub source: Source,
    pub syscall: Option<String>,
    pub errno: Option<String>,
    pub operation: Option<Operation>,
    pub pid: Option<u32>,
    pub tid: Option<u32>,
    pub comm: Option<String>,
    pub path: Option<PathBuf>,
    pub requested_path: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Source-specific fields, in order.
    pub detail: Vec<(String, String)>,
}

/// `host:port`, an IPv6 address in brackets (`[::1]:53`).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

impl Denial {
    /// A denial of `source` that says nothing else yet: the fields a source has are set
    /// over it (`Denial { host, ..Denial::of(source) }`).
    pub fn of(source: Source) -> Denial {
        Denial { source, syscall: None, errno: None, operation: None, pid: None, tid: None, comm: None, path: None, requested_path: None, host: None, port: None, detail: Vec::new() }
    }

    /// A few words for the exit summary: "write /etc/x", "mount", "evil.example",
    /// "connect 10.0.0.1:443".
    pub fn short(&self) -> String {
        if self.source == Source::Limit {
            let detail = |key: &str| self.detail.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str());
            return format!("{} {}: {}", self.operation.map_or("?", Operation::as_str), detail("value"), detail("effect"));
        }
        if let Some(host) = &self.host {
            return match (self.source, self.port) {
                (Source::Proxy, _) | (_, None) => host.clone(),
                (_, Some(port)) => {
                    let call = self.operation.map(Operation::as_str).or(self.syscall.as_deref()).unwrap_or("connect");
                    format!("{call} {}", host_port(host, port))
                }
            };
        }
        if let Some((_, call)) = self.detail.iter().find(|(k, _)| k == "call") {
            return call.clone();
        }
        // The sandbox's network's count of packets without a route (`launch::noroute`).
        if let (Source::Netns, Some((_, n))) = (self.source, self.detail.iter().find(|(k, _)| k == "count")) {
            return format!("{n} sent with no route");
        }
        let object = self.path.as_ref().map(|p| p.to_string_lossy().into_owned()).or_else(|| self.requested_path.clone());
        match (self.operation.map(Operation::as_str), object, self.syscall.as_deref()) {
            (Some(op), Some(obj), _) => format!("{op} {obj}"),
            (None, Some(obj), Some(sc)) => format!("{sc} {obj}"),
            (_, None, Some(sc)) => sc.to_string(),
            (_, Some(obj), None) => obj,
            _ => "?".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    pub protocol: &'static str,
    /// `proxy` or `direct` (transparent egress); none for inbound connections.
    pub via: Option<&'static str>,
    pub host: String,
    pub port: u16,
    pub allowed: bool,
    pub rule: String,
    pub resolved: Option<std::net::IpAddr>,
    pub client: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessAction {
    Exec,
    Exit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub action: ProcessAction,
    pub pid: u32,
    /// The parent process (exec only, when known).
    pub ppid: Option<u32>,
    pub comm: String,
    pub argv: Vec<String>,
    pub exe: Option<PathBuf>,
}

/// Who proposed or decided a policy change (`policy.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyOrigin {
    Suggest,
    Learn,
    Ask,
    /// What an origin this version does not know reads as.
    #[serde(other)]
    Other,
}

/// What became of a policy change (`policy.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    /// suggest/learn: shown, not written.
    Proposed,
    /// suggest/learn: written to the file.
    Applied,
    /// suggest/learn: a risky proposal not applied.
    Held,
    /// ask: the answers at the dashboard.
    AllowOnce,
    AllowAlways,
    DenyOnce,
    DenyAlways,
    /// ask: no answer in time (denied).
    Timeout,
    /// What an action this version does not know reads as.
    #[serde(other)]
    Other,
}

impl PolicyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Proposed => "proposed",
            PolicyAction::Applied => "applied",
            PolicyAction::Held => "held",
            PolicyAction::AllowOnce => "allow_once",
            PolicyAction::AllowAlways => "allow_always",
            PolicyAction::DenyOnce => "deny_once",
            PolicyAction::DenyAlways => "deny_always",
            PolicyAction::Timeout => "timeout",
            PolicyAction::Other => "other",
        }
    }
}

impl From<crate::proxy::ask::Answer> for PolicyAction {
    fn from(answer: crate::proxy::ask::Answer) -> PolicyAction {
        use crate::proxy::ask::Answer;
        match answer {
            Answer::AllowOnce => PolicyAction::AllowOnce,
            Answer::AllowAlways => PolicyAction::AllowAlways,
            Answer::DenyOnce => PolicyAction::DenyOnce,
            Answer::DenyAlways => PolicyAction::DenyAlways,
            Answer::Timeout => PolicyAction::Timeout,
        }
    }
}

/// How a policy change edits its key (`policy.change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyChange {
    Add,
    Remove,
    Set,
    /// ask: an answer for this connection only, which changes no file.
    None,
    /// What a change this version does not know reads as.
    #[serde(other)]
    Other,
}

impl PolicyChange {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyChange::Add => "add",
            PolicyChange::Remove => "remove",
            PolicyChange::Set => "set",
            PolicyChange::None => "none",
            PolicyChange::Other => "other",
        }
    }

    /// A proposal's operation (`suggest::Proposal::op`).
    pub fn of(op: &str) -> PolicyChange {
        [PolicyChange::Add, PolicyChange::Remove, PolicyChange::Set].into_iter().find(|c| c.as_str() == op).unwrap_or(PolicyChange::Other)
    }
}

/// A policy change proposed, applied, held or decided (see the schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEvent {
    pub origin: PolicyOrigin,
    pub action: PolicyAction,
    pub key: String,
    pub change: PolicyChange,
    pub value: String,
    pub config: Option<PathBuf>,
    pub risk: Vec<String>,
    pub answers: Option<u64>,
    pub host: Option<String>,
    pub port: Option<u16>,
}

/// "name (uid)" of the user running sbx, for `policy` events.
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    let name = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "?".into());
    format!("{name} ({uid})")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub source: &'static str,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct SessionStart {
    pub command: Vec<OsString>,
    pub policy: Policy,
    /// Human labels of where each part of the policy came from.
    pub sources: Vec<String>,
    pub enforcement: Enforcement,
    /// The limits (`policy.limits`) that could not be enforced, and why.
    pub unenforced_limits: Vec<(crate::limits::Kind, String)>,
    /// Whether the kernel tracer ran (and why not).
    pub observation: crate::sandbox::Observation,
}

#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub exit_code: u8,
    /// Events lost in total.
    pub lost: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sandbox::{LandlockReport, LandlockStatus};

    #[test]
    fn limits_say_their_value_and_whether_they_are_enforced() {
        use crate::limits::{Kind, Limits};
        let l = Limits { memory: Some(64 << 20), pids: Some(100), timeout: Some(Duration::from_millis(1500)), ..Limits::default() };
        let v = limits_wire(&l, &[(Kind::Memory, "no cgroup".into())]);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"memory":{"bytes":67108864,"enforced":false,"why":"no cgroup"},"pids":{"enforced":true,"max":100},"timeout":{"enforced":true,"seconds":1.5}}"#
        );
    }

    #[test]
    fn session_start_line_is_exact() {
        let policy = Policy::builtin("/w".into(), Some("/h".into()));
        let event = Event::SessionStart(Box::new(SessionStart {
            command: vec!["true".into()],
            policy,
            sources: vec!["built-in default".into()],
            enforcement: Enforcement { landlock: Some(LandlockReport { abi: 7, status: LandlockStatus::Full }), seccomp: true, blocked_syscalls: 52, netns: true, ..Enforcement::default() },
            unenforced_limits: Vec::new(),
            observation: crate::sandbox::Observation { kernel_tracer: false, reason: Some("the kernel tracer needs root".into()) },
        }));
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = encode(0, time, &event, &Counts::default(), Instant::now());
        let blocked = 52;
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            format!(
                concat!(
                    r#"{{"command":["true"],"enforcement":{{"bwrap":{{"enforced":true}},"landlock":{{"abi":7,"enforced":"full"}},"limits":{{}},"#,
                    r#""netns":{{"enforced":true}},"seccomp":{{"blocked_syscalls":{},"enforced":true}}}},"home":"/h","#,
                    r#""observation":{{"kernel_tracer":false,"reason":"the kernel tracer needs root"}},"#,
                    r#""policy":{{"allow_git_config":false,"allow_private_resolution":[],"allow_read":[],"allow_write":[],"allowed_domains":[],"default_deny_read":false,"#,
                    r#""denied_domains":[],"deny_read":[],"deny_write":[],"sources":["built-in default"]}},"sbx_version":"{}","seq":0,"#,
                    r#""time":"2023-11-14T22:13:20.000000Z","type":"session_start","v":1,"workspace":"/w"}}"#
                ),
                blocked,
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn denial_lines_are_exact() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let full = Denial {
            source: Source::Landlock,
            syscall: Some("openat".into()),
            errno: Some("EACCES".into()),
            operation: Some(Operation::Write),
            pid: Some(42),
            tid: Some(43),
            comm: Some("s\"h\u{1}é".into()),
            path: Some("/etc/x y".into()),
            requested_path: Some("x y".into()),
            host: Some("evil.example".into()),
            port: Some(443),
            detail: vec![("reason".into(), "why".into()), ("call".into(), "open(\"x\")".into()), ("reason".into(), "last wins".into())],
        };
        let bare = Denial::of(Source::Proxy);
        let line = |d| serde_json::to_string(&encode(7, time, &Event::Denial(d), &Counts::default(), Instant::now())).unwrap();
        assert_eq!(
            line(full),
            concat!(
                r#"{"comm":"s\"h\u0001é","detail":{"call":"open(\"x\")","reason":"last wins"},"errno":"EACCES","host":"evil.example","#,
                r#""operation":"write","path":"/etc/x y","pid":42,"port":443,"requested_path":"x y","seq":7,"source":"landlock","syscall":"openat","#,
                r#""tid":43,"time":"2023-11-14T22:13:20.123456Z","type":"denial","v":1}"#
            )
        );
        assert_eq!(line(bare), r#"{"seq":7,"source":"proxy","time":"2023-11-14T22:13:20.123456Z","type":"denial","v":1}"#);
    }

    #[test]
    fn a_log_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let victim = dir.path().join("bashrc");
        std::fs::write(&victim, "# rc\n").unwrap();
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let err = Log::open(&path, 0, Sealer::in_dir(keys.path()).unwrap()).err().unwrap();
        assert!(err.to_string().ends_with("is a symbolic link; sbx does not follow symbolic links in the files it reads and writes itself"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "# rc\n");
    }

    #[test]
    fn log_lines_have_gapless_seq_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let keys = tempfile::tempdir().unwrap();
        let mut log = Log::open(&path, 0, Sealer::in_dir(keys.path()).unwrap()).unwrap();
        log.write(&Event::SessionEnd(SessionEnd { exit_code: 3, lost: 0 })).unwrap();
        log.write(&Event::SessionEnd(SessionEnd { exit_code: 4, lost: 2 })).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(crate::seal::verify(&text, keys.path()), Ok(crate::seal::Verified { lines: 2, segments: 1 }));
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["seq"], 0);
        assert_eq!(lines[1]["seq"], 1);
        assert_eq!(lines[1]["exit_code"], 4);
        assert_eq!(lines[1]["counts"]["session_end"], 2);
        assert_eq!(lines[1]["lost"], 2);
    }
}
