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
//! | `policy` | object | `sources` (where each part of the policy came from), `default_deny_read`, `allow_read`, `deny_read`, `allow_write`, `deny_write` (as given, resolved to absolute paths), `allow_git_config`, `allowed_domains`, `denied_domains` |
//! | `enforcement` | object | one entry per layer: `landlock` {`enforced`: `"full"`, `"partial"` or `"none"`, `abi`}, `seccomp` {`enforced`: bool, `blocked_syscalls`: number}, `netns` {`enforced`: bool}, `bwrap` {`enforced`: bool} |
//!
//! ## `session_end`
//! Written when the command has ended, on every exit path sbx controls.
//!
//! | field | type | meaning |
//! |-------|------|---------|
//! | `exit_code` | number | sbx's exit status: the command's own, 128+N for signal N |
//! | `duration_ms` | number | from session_start |
//! | `counts` | object | events written, by type |
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

use crate::{launch::Enforcement, policy::Policy};

/// The schema version written in every event's `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// An event, before it gets its sequence number and time.
#[derive(Debug, Clone)]
pub enum Event {
    SessionStart(SessionStart),
    SessionEnd(SessionEnd),
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::SessionStart(_) => "session_start",
            Event::SessionEnd(_) => "session_end",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionStart {
    pub command: Vec<OsString>,
    pub policy: Policy,
    /// Human labels of where each part of the policy came from.
    pub sources: Vec<String>,
    pub enforcement: Enforcement,
}

#[derive(Debug, Clone)]
pub struct SessionEnd {
    pub exit_code: u8,
}

/// Writes events to a JSON Lines file, flushing each line so that the file
/// is complete whenever sbx stops.
pub struct Log {
    out: BufWriter<File>,
    path: PathBuf,
    seq: u64,
    counts: BTreeMap<&'static str, u64>,
    started: Instant,
}

impl Log {
    /// Opens `path` for appending (a log may hold several sessions).
    pub fn create(path: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { out: BufWriter::new(file), path: path.to_path_buf(), seq: 0, counts: BTreeMap::new(), started: Instant::now() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        if matches!(event, Event::SessionStart(_)) {
            self.started = Instant::now();
        }
        *self.counts.entry(event.type_name()).or_default() += 1;
        let line = render(self.seq, SystemTime::now(), event, &self.counts, self.started);
        self.seq += 1;
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }
}

fn lossy(items: &[PathBuf]) -> Vec<String> {
    items.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

/// The JSON object for one event.
pub fn render(seq: u64, time: SystemTime, event: &Event, counts: &BTreeMap<&'static str, u64>, started: Instant) -> Value {
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
                },
                "enforcement": {
                    "bwrap": { "enforced": true },
                    "landlock": {
                        "enforced": e.landlock.map_or("none", |l| l.status.as_str()),
                        "abi": e.landlock.map_or(0, |l| l.abi),
                    },
                    "seccomp": {
                        "enforced": e.seccomp,
                        "blocked_syscalls": crate::launch::seccomp::FilterOptions { block_unix_sockets: !p.net.allow_all_unix_sockets }.entries().count(),
                    },
                    "netns": { "enforced": e.netns },
                },
            })
        }
        Event::SessionEnd(end) => json!({
            "exit_code": end.exit_code,
            "duration_ms": started.elapsed().as_millis() as u64,
            "counts": counts,
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
    use crate::launch::stage2::{LandlockReport, LandlockStatus};

    #[test]
    fn session_start_line_is_exact() {
        let policy = Policy::builtin("/w".into(), Some("/h".into()));
        let event = Event::SessionStart(SessionStart {
            command: vec!["true".into()],
            policy,
            sources: vec!["built-in default".into()],
            enforcement: Enforcement { landlock: Some(LandlockReport { abi: 7, status: LandlockStatus::Full }), seccomp: true, netns: true },
        });
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let v = render(0, time, &event, &BTreeMap::new(), Instant::now());
        let blocked = crate::launch::seccomp::blocked().len() + 1;
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            format!(
                concat!(
                    r#"{{"command":["true"],"enforcement":{{"bwrap":{{"enforced":true}},"landlock":{{"abi":7,"enforced":"full"}},"#,
                    r#""netns":{{"enforced":true}},"seccomp":{{"blocked_syscalls":{},"enforced":true}}}},"#,
                    r#""policy":{{"allow_git_config":false,"allow_read":[],"allow_write":[],"allowed_domains":[],"default_deny_read":false,"#,
                    r#""denied_domains":[],"deny_read":[],"deny_write":[],"sources":["built-in default"]}},"sbx_version":"{}","seq":0,"#,
                    r#""time":"2023-11-14T22:13:20.000000Z","type":"session_start","v":1,"workspace":"/w"}}"#
                ),
                blocked,
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn log_lines_have_gapless_seq_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let mut log = Log::create(&path).unwrap();
        log.write(&Event::SessionEnd(SessionEnd { exit_code: 3 })).unwrap();
        log.write(&Event::SessionEnd(SessionEnd { exit_code: 4 })).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["seq"], 0);
        assert_eq!(lines[1]["seq"], 1);
        assert_eq!(lines[1]["exit_code"], 4);
        assert_eq!(lines[1]["counts"]["session_end"], 2);
    }
}
