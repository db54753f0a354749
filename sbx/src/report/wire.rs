//! Schema v1 on the wire: one struct per event type, the one codec for the audit log. The
//! log writer (`report::Log`) and the dashboard's export serialise these; `sbx policy
//! suggest` and `sbx learn` deserialise them ([`Line::parse`]). Fields are declared in the
//! order they appear on a line (sorted by name, as schema v1 has always written them), so a
//! line read and written again is the same bytes. A field that is absent stays absent;
//! fields and types this version does not know are ignored when reading.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ProcessAction, Source};

/// The `type` of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    SessionStart,
    Denial,
    Net,
    Process,
    Loss,
    SessionEnd,
    Policy,
    Tamper,
}

/// A proxy decision (`net.decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    Denied,
}

/// One line of the log, typed by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Line {
    SessionStart(Box<SessionStartLine>),
    Denial(DenialLine),
    Net(NetLine),
    Process(ProcessLine),
    Loss(LossLine),
    SessionEnd(SessionEndLine),
    Policy(PolicyLine),
    Tamper(TamperLine),
}

/// What every line has (`v`, `type`, `seq`), read first to tell lines apart.
#[derive(Debug, Clone, Deserialize)]
pub struct Head {
    #[serde(default)]
    pub v: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub seq: Option<u64>,
}

/// Why a line cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a JSON event ({0})")]
    Json(#[source] serde_json::Error),
    #[error("not an sbx event of schema version 1 (\"v\" is {0})")]
    Version(String),
    #[error("an event without \"type\"")]
    NoType,
    #[error("not a valid {kind} event ({source})")]
    Fields {
        kind: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A line as read: its head, and the typed line when its type is one this version knows.
#[derive(Debug, Clone)]
pub struct Read {
    pub head: Head,
    pub line: Option<Line>,
}

impl Line {
    /// Reads one line of schema v1. A type this version does not know gives `line: None`.
    pub fn parse(text: &str) -> Result<Read, ReadError> {
        match Self::parse_typed(text) {
            Some(read) => Ok(read),
            None => Self::parse_two_passes(text),
        }
    }

    /// The head first (which names the type and checks the version), then the typed line.
    fn parse_two_passes(text: &str) -> Result<Read, ReadError> {
        let head: Head = serde_json::from_str(text).map_err(ReadError::Json)?;
        if head.v.as_ref().and_then(serde_json::Value::as_u64) != Some(u64::from(super::SCHEMA_VERSION)) {
            return Err(ReadError::Version(head.v.as_ref().map_or("missing".into(), serde_json::Value::to_string)));
        }
        let Some(kind) = head.kind.clone() else { return Err(ReadError::NoType) };
        let fields = |source| ReadError::Fields { kind: kind.clone(), source };
        let line = match kind.as_str() {
            "session_start" => Some(Line::SessionStart(Box::new(serde_json::from_str(text).map_err(fields)?))),
            "denial" => Some(Line::Denial(serde_json::from_str(text).map_err(fields)?)),
            "net" => Some(Line::Net(serde_json::from_str(text).map_err(fields)?)),
            "process" => Some(Line::Process(serde_json::from_str(text).map_err(fields)?)),
            "loss" => Some(Line::Loss(serde_json::from_str(text).map_err(fields)?)),
            "session_end" => Some(Line::SessionEnd(serde_json::from_str(text).map_err(fields)?)),
            "policy" => Some(Line::Policy(serde_json::from_str(text).map_err(fields)?)),
            "tamper" => Some(Line::Tamper(serde_json::from_str(text).map_err(fields)?)),
            _ => None,
        };
        Ok(Read { head, line })
    }
}

impl Line {
    /// [`Line::parse`] in one pass for a line as sbx writes it: the type read from the
    /// text (the last `"type":"`: fields are sorted, and no field after `type` holds an
    /// object), the line parsed as that type, and kept only when its own `type` and `v`
    /// agree. `None` sends the line through the two passes, which also name what is wrong.
    fn parse_typed(text: &str) -> Option<Read> {
        const KEY: &str = "\"type\":\"";
        let at = text.rfind(KEY)? + KEY.len();
        let kind = &text[at..at + text[at..].find('"')?];
        macro_rules! typed {
            ($variant:ident, $wrap:expr) => {{
                let l = serde_json::from_str::<$variant>(text).ok()?;
                (l.kind, l.v, l.seq, $wrap(l))
            }};
        }
        let (read_kind, v, seq, line) = match kind {
            "session_start" => {
                let l = serde_json::from_str::<SessionStartLine>(text).ok()?;
                (l.kind, l.v, l.seq, Line::SessionStart(Box::new(l)))
            }
            "denial" => typed!(DenialLine, Line::Denial),
            "net" => typed!(NetLine, Line::Net),
            "process" => typed!(ProcessLine, Line::Process),
            "loss" => typed!(LossLine, Line::Loss),
            "session_end" => typed!(SessionEndLine, Line::SessionEnd),
            "policy" => typed!(PolicyLine, Line::Policy),
            "tamper" => typed!(TamperLine, Line::Tamper),
            _ => return None,
        };
        let named = serde_json::to_value(read_kind).ok()?;
        (named.as_str() == Some(kind) && v == super::SCHEMA_VERSION)
            .then(|| Read { head: Head { v: Some(v.into()), kind: Some(kind.to_owned()), seq }, line: Some(line) })
    }
}

/// `session_start`. Its parts are optional when read (a reader takes what it needs);
/// `report::encode` writes them all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStartLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<EnforcementWire>,
    /// Written as `null` when the user has no home.
    pub home: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<ObservationWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbx_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// `session_start.observation`: whether the kernel tracer ran; `reason` says why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservationWire {
    pub kernel_tracer: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `session_start.enforcement`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnforcementWire {
    pub bwrap: Enforced,
    pub landlock: LandlockWire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, LimitWire>>,
    pub netns: Enforced,
    /// What is not enforced (without namespaces); absent when everything is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_enforced: Vec<String>,
    pub seccomp: SeccompWire,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enforced {
    pub enforced: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandlockWire {
    pub abi: u32,
    /// `full`, `partial` or `none`.
    pub enforced: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeccompWire {
    pub blocked_syscalls: usize,
    pub enforced: bool,
}

/// One limit in force: its value (one of the unit fields) and whether it is enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    pub enforced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// `session_start.policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyWire {
    /// Absent when empty (and in logs of earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_execute: Vec<String>,
    pub allow_git_config: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_private_resolution: Option<Vec<String>>,
    pub allow_read: Vec<String>,
    pub allow_write: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub default_deny_read: bool,
    pub denied_domains: Vec<String>,
    pub deny_read: Vec<String>,
    pub deny_write: Vec<String>,
    pub sources: Vec<String>,
}

/// `denial`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenialLine {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Sorted by key; of equal keys the last one given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<super::Operation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// `other` when absent.
    #[serde(default)]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
}

impl DenialLine {
    /// A field of `detail`.
    pub fn detail(&self, key: &str) -> Option<&str> {
        self.detail.as_ref().and_then(|d| d.get(key)).map(String::as_str)
    }
}

/// `net`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetLine {
    pub client: String,
    pub decision: Decision,
    pub host: String,
    pub port: u16,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// `process`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessLine {
    pub action: ProcessAction,
    /// Exec only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    pub comm: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
}

/// `loss`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossLine {
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
}

/// `session_end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionEndLine {
    pub counts: BTreeMap<String, u64>,
    pub denials: BTreeMap<String, u64>,
    pub duration_ms: u64,
    pub exit_code: u8,
    pub lost: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
}

/// `policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyLine {
    pub action: super::PolicyAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<u64>,
    pub change: super::PolicyChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub key: String,
    pub origin: super::PolicyOrigin,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub user: String,
    pub v: u32,
    pub value: String,
}

/// `tamper`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TamperLine {
    pub action: String,
    pub change: String,
    /// Agent configuration (`agentconf`): what changed, as `- old` / `+ new` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub v: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of the logs kept under tests/golden/suggest (real sessions' logs, written
    /// by earlier versions) reads into its typed line and writes back as the same bytes.
    /// (`monitor_denials.jsonl` is not a log: its volatile fields are removed.)
    #[test]
    fn golden_logs_round_trip_byte_for_byte() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir.join("suggest")).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".log.jsonl") {
                files.push(path);
            }
        }
        let mut lines = 0;
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                let read = Line::parse(line).unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1));
                let typed = read.line.unwrap_or_else(|| panic!("{}:{}: unknown type", file.display(), i + 1));
                assert_eq!(serde_json::to_string(&typed).unwrap(), line, "{}:{}", file.display(), i + 1);
                lines += 1;
            }
        }
        assert!(lines > 200, "{lines} lines");
    }

    /// The one-pass reading keeps only what the two passes would read: a nested `type`
    /// after the top-level one, or a `v` of another version, goes the long way.
    #[test]
    fn the_one_pass_reading_agrees_with_the_two_passes() {
        let denial = r#"{"comm":"sh","source":"landlock","time":"2023-11-14T22:13:20.123456Z","type":"denial","v":1}"#;
        assert!(Line::parse_typed(denial).is_some());
        let read = Line::parse(denial).unwrap();
        assert_eq!((read.head.kind.as_deref(), read.head.seq), (Some("denial"), None));
        // A hand-made line whose last "type" is not the top-level one.
        let nested = r#"{"v":1,"type":"loss","count":1,"source":"ebpf","x":{"type":"denial"}}"#;
        assert!(Line::parse_typed(nested).is_none());
        assert!(matches!(Line::parse(nested).unwrap().line, Some(Line::Loss(_))));
        let v2 = r#"{"count":1,"source":"ebpf","type":"loss","v":2}"#;
        assert!(Line::parse_typed(v2).is_none());
        assert!(Line::parse(v2).is_err());
    }

    const DENIAL: &str = r#"{"comm":"sh","detail":{"reason":"why","type":"x"},"errno":"EACCES","operation":"write","path":"/etc/x","pid":42,"seq":7,"source":"landlock","syscall":"openat","time":"2023-11-14T22:13:20.123456Z","type":"denial","v":1}"#;

    proptest::proptest! {
        /// A line of sbx's with one byte changed (a log is untrusted input): the one pass
        /// reads it only as the two passes do, and nothing panics.
        #[test]
        fn an_edited_line_reads_in_one_pass_only_as_in_two(pos in 0usize..1000, byte in proptest::prelude::any::<u8>()) {
            let mut bytes = DENIAL.as_bytes().to_vec();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let slow = Line::parse_two_passes(text);
                if let Some(fast) = Line::parse_typed(text) {
                    let slow = slow.expect("the two passes read it too");
                    proptest::prop_assert_eq!(&fast.line, &slow.line);
                    proptest::prop_assert_eq!((fast.head.seq, fast.head.kind.clone()), (slow.head.seq, slow.head.kind.clone()));
                }
                if let Ok(Read { line: Some(line), .. }) = Line::parse(text) {
                    let _ = line.into_event();
                }
            }
        }

        #[test]
        fn any_text_reads_or_is_refused(text in "\\PC{0,300}") {
            if let Ok(Read { line: Some(line), .. }) = Line::parse(&text) {
                let _ = line.into_event();
            }
        }
    }

    #[test]
    fn unknown_types_and_fields_are_ignored_and_bad_lines_named() {
        let read = Line::parse(r#"{"v":1,"type":"future","seq":3}"#).unwrap();
        assert!(read.line.is_none());
        assert_eq!(read.head.seq, Some(3));
        let read = Line::parse(r#"{"count":2,"new":true,"source":"ebpf","type":"loss","v":1}"#).unwrap();
        assert_eq!(serde_json::to_string(&read.line.unwrap()).unwrap(), r#"{"count":2,"source":"ebpf","type":"loss","v":1}"#);
        assert_eq!(Line::parse(r#"{"v":2,"type":"loss"}"#).unwrap_err().to_string(), "not an sbx event of schema version 1 (\"v\" is 2)");
        assert_eq!(Line::parse(r#"{"v":1}"#).unwrap_err().to_string(), "an event without \"type\"");
        assert!(Line::parse(r#"{"v":1,"type":"net","port":"x"}"#).unwrap_err().to_string().starts_with("not a valid net event"));
    }
}
