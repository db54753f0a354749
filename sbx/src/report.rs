//! The audit log: sbx's events and their one wire format, JSON Lines,
//! schema version 1. This module is the only place that knows JSON for
//! events; the rest of sbx produces plain Rust values.
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
//! | `policy` | object | `sources` (where each part of the policy came from), `default_deny_read`, `allow_read`, `deny_read`, `allow_write`, `deny_write` (as given, resolved to absolute paths), `allow_git_config`, `allowed_domains`, `denied_domains`, `allow_private_resolution` |
//! | `enforcement` | object | one entry per layer: `landlock` {`enforced`: `"full"`, `"partial"` or `"none"`, `abi`}, `seccomp` {`enforced`: bool, `blocked_syscalls`: number}, `netns` {`enforced`: bool}, `bwrap` {`enforced`: bool} |
//!
//! ## `denial`
//! Something the sandbox refused. Fields other than `source` are present
//! when known.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `source` | string | the layer that most likely refused it: `landlock`, `seccomp`, `proxy`, `mount` (a read-only or hidden part of the sandbox's view), `dac` (file permissions), `netns` (the sandbox's network namespace: a connection or datagram to an address other than loopback, which only the proxy reaches; a DNS query is one, to port 53), `other` |
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
//! One decision of sbx's proxy (allowed or denied). A denial is also a
//! `denial` event with source `proxy`.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `protocol` | string | `http` (absolute-URI forwarding), `connect` (HTTP CONNECT tunnel), `socks5`, `forward` (allowLocalOutboundPorts) |
//! | `host`, `port` | string, number | the destination as requested |
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
//! | `change` | string | `add`, `remove` or `set` |
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
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `path` | string | the protected path |
//! | `change` | string | `created`, `removed`, `replaced` (another file is there) or `changed` (other content) |
//! | `action` | string | `quarantined` (moved to `quarantine`), `restored` (the original put back; what was there moved to `quarantine`), `reported` (nothing could be done) |
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

use serde_json::{Value, json};

use crate::{policy::Policy, sandbox::Enforcement, seal::Sealer};

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

/// A protected path found changed after the session, and what sbx did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    pub path: PathBuf,
    /// `created`, `removed`, `replaced`, `changed`.
    pub change: &'static str,
    /// `quarantined`, `restored`, `reported`.
    pub action: &'static str,
    pub quarantine: Option<PathBuf>,
    pub error: Option<String>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
            Source::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub source: Source,
    pub syscall: Option<String>,
    pub errno: Option<String>,
    pub operation: Option<String>,
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
    /// A few words for the exit summary: "write /etc/x", "mount", "evil.example",
    /// "connect 10.0.0.1:443".
    pub fn short(&self) -> String {
        if self.source == Source::Limit {
            let detail = |key: &str| self.detail.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str());
            return format!("{} {}: {}", self.operation.as_deref().unwrap_or("?"), detail("value"), detail("effect"));
        }
        if let Some(host) = &self.host {
            return match (self.source, self.port) {
                (Source::Proxy, _) | (_, None) => host.clone(),
                (_, Some(port)) => {
                    let call = self.operation.as_deref().or(self.syscall.as_deref()).unwrap_or("connect");
                    format!("{call} {}", host_port(host, port))
                }
            };
        }
        if let Some((_, call)) = self.detail.iter().find(|(k, _)| k == "call") {
            return call.clone();
        }
        let object = self.path.as_ref().map(|p| p.to_string_lossy().into_owned()).or_else(|| self.requested_path.clone());
        match (self.operation.as_deref(), object, self.syscall.as_deref()) {
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
    pub host: String,
    pub port: u16,
    pub allowed: bool,
    pub rule: String,
    pub resolved: Option<std::net::IpAddr>,
    pub client: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A policy change proposed, applied, held or decided (see the schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEvent {
    pub origin: &'static str,
    pub action: &'static str,
    pub key: String,
    pub change: &'static str,
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
}

#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub exit_code: u8,
    /// Events lost in total.
    pub lost: u64,
}

/// Writes events to a JSON Lines file, flushing each line so that the file
/// is complete whenever sbx stops. Each line is sealed (`crate::seal`): the
/// first one names the key, every one carries its MAC.
pub struct Log {
    out: BufWriter<File>,
    path: PathBuf,
    seq: u64,
    counts: Counts,
    started: Instant,
    sealer: Sealer,
    /// The line being built (reused).
    line: Vec<u8>,
}

/// Why a log cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    File(#[from] crate::fsio::FsError),
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
}

impl LogError {
    /// The cause, for a message that names the log already.
    pub fn detail(&self) -> String {
        match self {
            LogError::File(e) => e.detail(),
            LogError::Seal(e) => e.to_string(),
        }
    }
}

/// Events written so far, by type and (denials) by source.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub by_type: BTreeMap<&'static str, u64>,
    pub denials: BTreeMap<&'static str, u64>,
}

impl Log {
    /// Opens `path` for appending (a log may hold several sessions).
    pub fn create(path: &Path) -> Result<Self, LogError> {
        Self::append_at(path, 0)
    }

    /// Opens `path` for appending events numbered from `seq` (events written
    /// after a session, such as `sbx policy suggest`'s, continue its numbers).
    /// The file is opened as `fsio::append` does (never through a symlink,
    /// only a regular file of the user's), with a fresh key.
    pub fn append_at(path: &Path, seq: u64) -> Result<Self, LogError> {
        Self::open(path, seq, Sealer::new()?)
    }

    /// [`Log::append_at`] with the given sealer (tests keep keys apart).
    pub fn open(path: &Path, seq: u64, sealer: Sealer) -> Result<Self, LogError> {
        let file = crate::fsio::append(path)?;
        Ok(Self { out: BufWriter::new(file), path: path.to_path_buf(), seq, counts: Counts::default(), started: Instant::now(), sealer, line: Vec::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        if matches!(event, Event::SessionStart(_)) {
            self.started = Instant::now();
        }
        *self.counts.by_type.entry(event.type_name()).or_default() += 1;
        if let Event::Denial(d) = event {
            *self.counts.denials.entry(d.source.as_str()).or_default() += 1;
        }
        // Denials are the bulk of a busy session: written straight to the
        // line, without building a `Value` (same bytes, see the test).
        self.line.clear();
        match event {
            Event::Denial(d) => write_denial(&mut self.line, self.seq, SystemTime::now(), d)?,
            _ => serde_json::to_writer(&mut self.line, &render(self.seq, SystemTime::now(), event, &self.counts, self.started))?,
        }
        self.sealer.seal(&mut self.line);
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.seq += 1;
        // Lifecycle events reach the file at once; the others at the end
        // of each batch (`flush`), so that a burst is not a write per line.
        if matches!(event, Event::SessionStart(_) | Event::SessionEnd(_) | Event::Loss(_) | Event::Policy(_) | Event::Tamper(_)) {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered lines to the file, then records them with the key.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.sealer.record()
    }
}

/// A denial's line, keys in the order `render`'s sorted map gives them.
fn write_denial(out: &mut impl io::Write, seq: u64, time: SystemTime, d: &Denial) -> io::Result<()> {
    use serde::ser::{SerializeMap as _, Serializer as _};
    /// `detail` as `render` writes it: sorted by key, the last of equal keys.
    struct Detail<'a>(&'a [(String, String)]);
    impl serde::Serialize for Detail<'_> {
        fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
            let mut items: Vec<&(String, String)> = self.0.iter().collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let mut m = ser.serialize_map(None)?;
            for (i, (k, v)) in items.iter().map(|kv| (&kv.0, &kv.1)).enumerate() {
                if items.get(i + 1).is_none_or(|next| &next.0 != k) {
                    m.serialize_entry(k, v)?;
                }
            }
            m.end()
        }
    }
    let mut ser = serde_json::Serializer::new(out);
    let mut m = ser.serialize_map(None)?;
    if let Some(v) = &d.comm {
        m.serialize_entry("comm", v)?;
    }
    if !d.detail.is_empty() {
        m.serialize_entry("detail", &Detail(&d.detail))?;
    }
    if let Some(v) = &d.errno {
        m.serialize_entry("errno", v)?;
    }
    if let Some(v) = &d.host {
        m.serialize_entry("host", v)?;
    }
    if let Some(v) = &d.operation {
        m.serialize_entry("operation", v)?;
    }
    if let Some(v) = &d.path {
        m.serialize_entry("path", &v.to_string_lossy())?;
    }
    if let Some(v) = d.pid {
        m.serialize_entry("pid", &v)?;
    }
    if let Some(v) = d.port {
        m.serialize_entry("port", &v)?;
    }
    if let Some(v) = &d.requested_path {
        m.serialize_entry("requested_path", v)?;
    }
    m.serialize_entry("seq", &seq)?;
    m.serialize_entry("source", d.source.as_str())?;
    if let Some(v) = &d.syscall {
        m.serialize_entry("syscall", v)?;
    }
    if let Some(v) = d.tid {
        m.serialize_entry("tid", &v)?;
    }
    m.serialize_entry("time", &format_args!("{}", humantime::format_rfc3339_micros(time)))?;
    m.serialize_entry("type", "denial")?;
    m.serialize_entry("v", &SCHEMA_VERSION)?;
    m.end().map_err(io::Error::from)
}

/// session_start's `enforcement.limits`: each limit in force, its value and
/// whether it is enforced (with the reason when not).
fn limits_json(l: &crate::limits::Limits, unenforced: &[(crate::limits::Kind, String)]) -> Value {
    use crate::limits::Kind;
    let mut o = serde_json::Map::new();
    let values: [(Kind, Option<Value>); 5] = [
        (Kind::Memory, l.memory.map(|b| json!({ "bytes": b }))),
        (Kind::Pids, l.pids.map(|n| json!({ "max": n }))),
        (Kind::Cpu, l.cpu.map(|m| json!({ "cpus": f64::from(m) / 1000.0 }))),
        (Kind::TmpSize, l.tmp_size.map(|b| json!({ "bytes": b }))),
        (Kind::Timeout, l.timeout.map(|t| json!({ "seconds": t.as_secs_f64() }))),
    ];
    for (kind, value) in values {
        let Some(Value::Object(mut entry)) = value else { continue };
        match unenforced.iter().find(|(k, _)| *k == kind) {
            Some((_, why)) => {
                entry.insert("enforced".into(), false.into());
                entry.insert("why".into(), why.clone().into());
            }
            None => {
                entry.insert("enforced".into(), true.into());
            }
        }
        o.insert(kind.key().to_string(), Value::Object(entry));
    }
    Value::Object(o)
}

fn lossy(items: &[PathBuf]) -> Vec<String> {
    items.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// The JSON object for one event.
pub fn render(seq: u64, time: SystemTime, event: &Event, counts: &Counts, started: Instant) -> Value {
    let mut obj = json!({
        "v": SCHEMA_VERSION,
        "type": event.type_name(),
        "seq": seq,
        "time": humantime::format_rfc3339_micros(time).to_string(),
    });
    let fields = match event {
        Event::SessionStart(s) => {
            let p = &s.policy;
            let e = &s.enforcement;
            json!({
                "sbx_version": env!("CARGO_PKG_VERSION"),
                "command": s.command.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>(),
                "workspace": p.workspace.to_string_lossy(),
                "home": p.home.as_ref().map(|h| h.to_string_lossy().into_owned()),
                "policy": {
                    "sources": s.sources,
                    "default_deny_read": p.fs.default_deny_read,
                    "allow_read": lossy(&p.fs.allow_read),
                    "deny_read": lossy(&p.fs.deny_read),
                    "allow_write": lossy(&p.fs.allow_write),
                    "deny_write": lossy(&p.fs.deny_write),
                    "allow_git_config": p.fs.allow_git_config,
                    "allowed_domains": p.net.allowed_domains,
                    "denied_domains": p.net.denied_domains,
                    "allow_private_resolution": p.net.allow_private_resolution,
                },
                "enforcement": {
                    "bwrap": { "enforced": true },
                    "landlock": {
                        "enforced": e.landlock.map_or("none", |l| l.status.as_str()),
                        "abi": e.landlock.map_or(0, |l| l.abi),
                    },
                    "seccomp": {
                        "enforced": e.seccomp,
                        "blocked_syscalls": e.blocked_syscalls,
                    },
                    "netns": { "enforced": e.netns },
                    "limits": limits_json(&p.limits, &s.unenforced_limits),
                },
            })
        }
        Event::Denial(d) => {
            let mut o = serde_json::Map::new();
            o.insert("source".into(), d.source.as_str().into());
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    o.insert(k.into(), v);
                }
            };
            put("syscall", d.syscall.clone().map(Value::from));
            put("errno", d.errno.clone().map(Value::from));
            put("operation", d.operation.clone().map(Value::from));
            put("pid", d.pid.map(Value::from));
            put("tid", d.tid.map(Value::from));
            put("comm", d.comm.clone().map(Value::from));
            put("path", d.path.as_ref().map(|p| p.to_string_lossy().into_owned().into()));
            put("requested_path", d.requested_path.clone().map(Value::from));
            put("host", d.host.clone().map(Value::from));
            put("port", d.port.map(Value::from));
            if !d.detail.is_empty() {
                let detail: serde_json::Map<String, Value> = d.detail.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
                o.insert("detail".into(), Value::Object(detail));
            }
            Value::Object(o)
        }
        Event::Process(p) => {
            let mut v = json!({
                "action": match p.action { ProcessAction::Exec => "exec", ProcessAction::Exit => "exit" },
                "pid": p.pid,
                "comm": p.comm,
            });
            if p.action == ProcessAction::Exec {
                if let Some(ppid) = p.ppid {
                    v["ppid"] = ppid.into();
                }
                v["argv"] = json!(p.argv);
                if let Some(exe) = &p.exe {
                    v["exe"] = exe.to_string_lossy().into_owned().into();
                }
            }
            v
        }
        Event::Loss(l) => json!({ "source": l.source, "count": l.count }),
        Event::Net(n) => {
            let mut v = json!({
                "protocol": n.protocol,
                "host": n.host,
                "port": n.port,
                "decision": if n.allowed { "allowed" } else { "denied" },
                "rule": n.rule,
                "client": n.client,
            });
            if let Some(ip) = n.resolved {
                v["resolved"] = ip.to_string().into();
            }
            v
        }
        Event::Policy(p) => {
            let mut v = json!({
                "origin": p.origin,
                "action": p.action,
                "key": p.key,
                "change": p.change,
                "value": p.value,
                "user": current_user(),
            });
            if let Some(c) = &p.config {
                v["config"] = c.to_string_lossy().into_owned().into();
            }
            if !p.risk.is_empty() {
                v["risk"] = json!(p.risk);
            }
            if let Some(n) = p.answers {
                v["answers"] = n.into();
            }
            if let Some(h) = &p.host {
                v["host"] = h.clone().into();
            }
            if let Some(port) = p.port {
                v["port"] = port.into();
            }
            v
        }
        Event::Tamper(t) => {
            let mut v = json!({ "path": t.path.to_string_lossy(), "change": t.change, "action": t.action });
            if let Some(q) = &t.quarantine {
                v["quarantine"] = q.to_string_lossy().into_owned().into();
            }
            if let Some(e) = &t.error {
                v["error"] = e.clone().into();
            }
            v
        }
        Event::SessionEnd(end) => json!({
            "exit_code": end.exit_code,
            "duration_ms": started.elapsed().as_millis() as u64,
            "counts": counts.by_type,
            "denials": counts.denials,
            "lost": end.lost,
        }),
    };
    if let (Value::Object(obj), Value::Object(fields)) = (&mut obj, fields) {
        obj.extend(fields);
    }
    obj
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
        let v = limits_json(&l, &[(Kind::Memory, "no cgroup".into())]);
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
            enforcement: Enforcement { landlock: Some(LandlockReport { abi: 7, status: LandlockStatus::Full }), seccomp: true, blocked_syscalls: 52, netns: true },
            unenforced_limits: Vec::new(),
        }));
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = render(0, time, &event, &Counts::default(), Instant::now());
        let blocked = 52;
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            format!(
                concat!(
                    r#"{{"command":["true"],"enforcement":{{"bwrap":{{"enforced":true}},"landlock":{{"abi":7,"enforced":"full"}},"limits":{{}},"#,
                    r#""netns":{{"enforced":true}},"seccomp":{{"blocked_syscalls":{},"enforced":true}}}},"home":"/h","#,
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
    fn denial_lines_are_the_bytes_render_gives() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let full = Denial {
            source: Source::Landlock,
            syscall: Some("openat".into()),
            errno: Some("EACCES".into()),
            operation: Some("write".into()),
            pid: Some(42),
            tid: Some(43),
            comm: Some("s\"h\u{1}é".into()),
            path: Some("/etc/x y".into()),
            requested_path: Some("x y".into()),
            host: Some("evil.example".into()),
            port: Some(443),
            detail: vec![("reason".into(), "why".into()), ("call".into(), "open(\"x\")".into()), ("reason".into(), "last wins".into())],
        };
        let bare = Denial { source: Source::Proxy, syscall: None, errno: None, operation: None, pid: None, tid: None, comm: None, path: None, requested_path: None, host: None, port: None, detail: Vec::new() };
        for d in [full, bare] {
            let mut fast = Vec::new();
            write_denial(&mut fast, 7, time, &d).unwrap();
            let slow = serde_json::to_vec(&render(7, time, &Event::Denial(d), &Counts::default(), Instant::now())).unwrap();
            assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }
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
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["seq"], 0);
        assert_eq!(lines[1]["seq"], 1);
        assert_eq!(lines[1]["exit_code"], 4);
        assert_eq!(lines[1]["counts"]["session_end"], 2);
        assert_eq!(lines[1]["lost"], 2);
    }
}
