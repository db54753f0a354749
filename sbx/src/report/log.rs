//! The sealed writer of the audit log (`Log`) and the one encoding of an [`Event`] as a
//! schema v1 line (`encode`).

use super::*;

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
        self.line.clear();
        serde_json::to_writer(&mut self.line, &encode(self.seq, SystemTime::now(), event, &self.counts, self.started))?;
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

/// session_start's `enforcement.limits`: each limit in force, its value and
/// whether it is enforced (with the reason when not).
pub(super) fn limits_wire(l: &crate::limits::Limits, unenforced: &[(crate::limits::Kind, String)]) -> BTreeMap<String, LimitWire> {
    use crate::limits::Kind;
    let none = LimitWire { bytes: None, cpus: None, enforced: true, max: None, seconds: None, why: None };
    let values: [(Kind, Option<LimitWire>); 5] = [
        (Kind::Memory, l.memory.map(|b| LimitWire { bytes: Some(b), ..none.clone() })),
        (Kind::Pids, l.pids.map(|n| LimitWire { max: Some(n), ..none.clone() })),
        (Kind::Cpu, l.cpu.map(|m| LimitWire { cpus: Some(f64::from(m) / 1000.0), ..none.clone() })),
        (Kind::TmpSize, l.tmp_size.map(|b| LimitWire { bytes: Some(b), ..none.clone() })),
        (Kind::Timeout, l.timeout.map(|t| LimitWire { seconds: Some(t.as_secs_f64()), ..none.clone() })),
    ];
    let mut out = BTreeMap::new();
    for (kind, value) in values {
        let Some(mut entry) = value else { continue };
        if let Some((_, why)) = unenforced.iter().find(|(k, _)| *k == kind) {
            entry.enforced = false;
            entry.why = Some(why.clone());
        }
        out.insert(kind.key().to_string(), entry);
    }
    out
}

fn lossy(items: &[PathBuf]) -> Vec<String> {
    items.iter().map(|p| p.to_string_lossy().into_owned()).collect()
}

fn lossy_path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The line for one event: the one encoder of schema v1 (the log, the dashboard's export).
/// `session_end` takes its counts from `counts` and its duration from `started`.
pub fn encode(seq: u64, time: SystemTime, event: &Event, counts: &Counts, started: Instant) -> Line {
    let (seq, time, v) = (Some(seq), Some(humantime::format_rfc3339_micros(time).to_string()), SCHEMA_VERSION);
    match event {
        Event::SessionStart(s) => {
            let p = &s.policy;
            let e = &s.enforcement;
            Line::SessionStart(Box::new(SessionStartLine {
                command: Some(s.command.iter().map(|a| a.to_string_lossy().into_owned()).collect()),
                enforcement: Some(EnforcementWire {
                    bwrap: Enforced { enforced: e.not_enforced.is_empty() },
                    landlock: LandlockWire { abi: e.landlock.map_or(0, |l| l.abi), enforced: e.landlock.map_or("none", |l| l.status.as_str()).to_owned() },
                    limits: Some(limits_wire(&p.limits, &s.unenforced_limits)),
                    netns: Enforced { enforced: e.netns },
                    not_enforced: e.not_enforced.clone(),
                    seccomp: SeccompWire { blocked_syscalls: e.blocked_syscalls, enforced: e.seccomp },
                }),
                home: p.home.as_deref().map(lossy_path),
                observation: Some(ObservationWire { kernel_tracer: s.observation.kernel_tracer, reason: s.observation.reason.clone() }),
                policy: Some(PolicyWire {
                    allow_git_config: p.fs.allow_git_config,
                    allow_private_resolution: Some(p.net.allow_private_resolution.clone()),
                    allow_read: lossy(&p.fs.allow_read),
                    allow_execute: lossy(&p.fs.allow_execute),
                    allow_write: lossy(&p.fs.allow_write),
                    allowed_domains: p.net.allowed_domains.clone(),
                    default_deny_read: p.fs.default_deny_read,
                    denied_domains: p.net.denied_domains.clone(),
                    deny_read: lossy(&p.fs.deny_read),
                    deny_write: lossy(&p.fs.deny_write),
                    sources: s.sources.clone(),
                }),
                sbx_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
                seq,
                time,
                kind: EventType::SessionStart,
                v,
                workspace: Some(lossy_path(&p.workspace)),
            }))
        }
        Event::Denial(d) => Line::Denial(DenialLine {
            comm: d.comm.clone(),
            detail: (!d.detail.is_empty()).then(|| d.detail.iter().cloned().collect()),
            errno: d.errno.clone(),
            host: d.host.clone(),
            operation: d.operation,
            path: d.path.as_deref().map(lossy_path),
            pid: d.pid,
            port: d.port,
            requested_path: d.requested_path.clone(),
            seq,
            source: d.source,
            syscall: d.syscall.clone(),
            tid: d.tid,
            time,
            kind: EventType::Denial,
            v,
        }),
        Event::Process(p) => {
            let exec = p.action == ProcessAction::Exec;
            Line::Process(ProcessLine {
                action: p.action,
                argv: exec.then(|| p.argv.clone()),
                comm: p.comm.clone(),
                exe: p.exe.as_deref().filter(|_| exec).map(lossy_path),
                pid: p.pid,
                ppid: p.ppid.filter(|_| exec),
                seq,
                time,
                kind: EventType::Process,
                v,
            })
        }
        Event::Loss(l) => Line::Loss(LossLine { count: l.count, seq, source: l.source.to_owned(), time, kind: EventType::Loss, v }),
        Event::Net(n) => Line::Net(NetLine {
            client: n.client.clone(),
            decision: if n.allowed { Decision::Allowed } else { Decision::Denied },
            host: n.host.clone(),
            port: n.port,
            protocol: n.protocol.to_owned(),
            resolved: n.resolved.map(|ip| ip.to_string()),
            rule: n.rule.clone(),
            seq,
            time,
            kind: EventType::Net,
            v,
            via: n.via.map(str::to_owned),
        }),
        Event::Policy(p) => Line::Policy(PolicyLine {
            action: p.action,
            answers: p.answers,
            change: p.change,
            config: p.config.as_deref().map(lossy_path),
            host: p.host.clone(),
            key: p.key.clone(),
            origin: p.origin,
            port: p.port,
            risk: (!p.risk.is_empty()).then(|| p.risk.clone()),
            seq,
            time,
            kind: EventType::Policy,
            user: current_user(),
            v,
            value: p.value.clone(),
        }),
        Event::Tamper(t) => Line::Tamper(TamperLine {
            action: t.action.as_str().to_owned(),
            change: t.change.as_str().to_owned(),
            error: t.error.clone(),
            path: lossy_path(&t.path),
            quarantine: t.quarantine.as_deref().map(lossy_path),
            diff: (!t.diff.is_empty()).then(|| t.diff.clone()),
            seq,
            time,
            kind: EventType::Tamper,
            v,
        }),
        Event::SessionEnd(end) => Line::SessionEnd(SessionEndLine {
            counts: counts.by_type.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            denials: counts.denials.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect(),
            duration_ms: started.elapsed().as_millis() as u64,
            exit_code: end.exit_code,
            lost: end.lost,
            seq,
            time,
            kind: EventType::SessionEnd,
            v,
        }),
    }
}
