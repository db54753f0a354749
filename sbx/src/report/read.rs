//! Reading a log back: a typed line ([`Line`], from [`Line::parse`]) as the [`Event`] that
//! was written, for `sbx monitor --replay`. The inverse of `encode` for what the dashboard
//! shows; what a line does not hold (a policy's globs as given, the user of a `policy`
//! line) is left at its default.

use std::{net::IpAddr, time::SystemTime};

use super::*;
use crate::{
    limits::Kind,
    sandbox::{LandlockReport, LandlockStatus, Observation},
};

impl Line {
    /// The event of this line, and its `time` when the line has one that reads as RFC 3339.
    pub fn into_event(self) -> (Event, Option<SystemTime>) {
        let time = |t: &Option<String>| t.as_deref().and_then(|t| humantime::parse_rfc3339(t).ok());
        match self {
            Line::SessionStart(s) => (Event::SessionStart(Box::new(session_start(&s))), time(&s.time)),
            Line::Denial(d) => {
                let t = time(&d.time);
                let denial = Denial {
                    source: d.source,
                    syscall: d.syscall,
                    errno: d.errno,
                    operation: d.operation,
                    pid: d.pid,
                    tid: d.tid,
                    comm: d.comm,
                    path: d.path.map(PathBuf::from),
                    requested_path: d.requested_path,
                    host: d.host,
                    port: d.port,
                    detail: d.detail.map(|m| m.into_iter().collect()).unwrap_or_default(),
                };
                (Event::Denial(denial), t)
            }
            Line::Net(n) => {
                let t = time(&n.time);
                let net = Net {
                    protocol: known(&n.protocol, &["http", "connect", "socks5", "forward", "direct", "inbound"]),
                    via: n.via.as_deref().map(|v| known(v, &["proxy", "direct"])),
                    host: n.host,
                    port: n.port,
                    allowed: n.decision == Decision::Allowed,
                    rule: n.rule,
                    resolved: n.resolved.and_then(|r| r.parse::<IpAddr>().ok()),
                    client: n.client,
                };
                (Event::Net(net), t)
            }
            Line::Process(p) => {
                let t = time(&p.time);
                let process = Process { action: p.action, pid: p.pid, ppid: p.ppid, comm: p.comm, argv: p.argv.unwrap_or_default(), exe: p.exe.map(PathBuf::from) };
                (Event::Process(process), t)
            }
            Line::Loss(l) => (Event::Loss(Loss { source: known(&l.source, &["ebpf", "seccomp", "tui"]), count: l.count }), time(&l.time)),
            Line::SessionEnd(e) => (Event::SessionEnd(SessionEnd { exit_code: e.exit_code, lost: e.lost }), time(&e.time)),
            Line::Policy(p) => {
                let t = time(&p.time);
                let policy = PolicyEvent {
                    origin: p.origin,
                    action: p.action,
                    key: p.key,
                    change: p.change,
                    value: p.value,
                    config: p.config.map(PathBuf::from),
                    risk: p.risk.unwrap_or_default(),
                    answers: p.answers,
                    host: p.host,
                    port: p.port,
                };
                (Event::Policy(policy), t)
            }
            Line::Tamper(x) => {
                let t = time(&x.time);
                let change = [Change::Created, Change::Removed, Change::Replaced, Change::Changed].into_iter().find(|c| c.as_str() == x.change).unwrap_or(Change::Changed);
                let action = [TamperAction::Quarantined, TamperAction::Restored, TamperAction::Reported, TamperAction::Reverted, TamperAction::Kept, TamperAction::Stripped]
                    .into_iter()
                    .find(|a| a.as_str() == x.action)
                    .unwrap_or(TamperAction::Reported);
                let tamper = Tamper {
                    path: PathBuf::from(x.path),
                    change,
                    action,
                    quarantine: x.quarantine.map(PathBuf::from),
                    error: x.error,
                    diff: x.diff.unwrap_or_default(),
                };
                (Event::Tamper(tamper), t)
            }
        }
    }
}

/// `text` as one of the `names` sbx writes, else `"other"`.
fn known(text: &str, names: &[&'static str]) -> &'static str {
    names.iter().copied().find(|n| *n == text).unwrap_or("other")
}

fn paths(list: &[String]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn session_start(s: &SessionStartLine) -> SessionStart {
    let mut policy = Policy::builtin(s.workspace.as_deref().map(PathBuf::from).unwrap_or_default(), s.home.as_deref().map(PathBuf::from));
    let mut sources = Vec::new();
    if let Some(p) = &s.policy {
        policy.fs.default_deny_read = p.default_deny_read;
        policy.fs.allow_read = paths(&p.allow_read);
        policy.fs.allow_execute = paths(&p.allow_execute);
        policy.fs.deny_read = paths(&p.deny_read);
        policy.fs.allow_write = paths(&p.allow_write);
        policy.fs.deny_write = paths(&p.deny_write);
        policy.fs.allow_git_config = p.allow_git_config;
        policy.net.allowed_domains.clone_from(&p.allowed_domains);
        policy.net.denied_domains.clone_from(&p.denied_domains);
        policy.net.allow_private_resolution = p.allow_private_resolution.clone().unwrap_or_default();
        sources.clone_from(&p.sources);
    }
    let mut enforcement = Enforcement::default();
    let mut unenforced_limits = Vec::new();
    if let Some(e) = &s.enforcement {
        let status = [LandlockStatus::Full, LandlockStatus::Partial, LandlockStatus::None].into_iter().find(|st| st.as_str() == e.landlock.enforced).unwrap_or(LandlockStatus::None);
        enforcement.landlock = (e.landlock.abi > 0 || status != LandlockStatus::None).then_some(LandlockReport { abi: e.landlock.abi, status });
        enforcement.seccomp = e.seccomp.enforced;
        enforcement.blocked_syscalls = e.seccomp.blocked_syscalls;
        enforcement.netns = e.netns.enforced;
        enforcement.not_enforced = e.not_enforced.clone();
        for (key, limit) in e.limits.iter().flatten() {
            let Some(kind) = Kind::ALL.into_iter().find(|k| k.key() == key) else { continue };
            let l = &mut policy.limits;
            match kind {
                Kind::Memory => l.memory = limit.bytes,
                Kind::Pids => l.pids = limit.max,
                Kind::Cpu => l.cpu = limit.cpus.map(|c| (c * 1000.0).round() as u32),
                Kind::TmpSize => l.tmp_size = limit.bytes,
                Kind::Timeout => l.timeout = limit.seconds.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
            }
            if !limit.enforced {
                unenforced_limits.push((kind, limit.why.clone().unwrap_or_default()));
            }
        }
    }
    let observation = s.observation.as_ref().map_or(Observation { kernel_tracer: true, reason: None }, |o| Observation { kernel_tracer: o.kernel_tracer, reason: o.reason.clone() });
    SessionStart {
        command: s.command.iter().flatten().map(OsString::from).collect(),
        policy,
        sources,
        enforcement,
        unenforced_limits,
        observation,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::sandbox::LandlockReport;

    /// Every event type, encoded and read back, encodes again as the same line.
    #[test]
    fn events_read_back_encode_as_the_same_lines() {
        let mut policy = Policy::builtin("/w".into(), Some("/h".into()));
        policy.fs.allow_write = vec!["/w/out".into()];
        policy.net.allowed_domains = vec!["*.github.com".into()];
        policy.limits.pids = Some(100);
        policy.limits.memory = Some(1 << 30);
        let events = vec![
            Event::SessionStart(Box::new(SessionStart {
                command: vec!["sh".into(), "-c".into(), "x y".into()],
                policy,
                sources: vec!["built-in default".into()],
                enforcement: Enforcement { landlock: Some(LandlockReport { abi: 6, status: LandlockStatus::Partial }), seccomp: true, blocked_syscalls: 52, netns: true, ..Enforcement::default() },
                unenforced_limits: vec![(Kind::Memory, "no cgroup".into())],
                observation: Observation { kernel_tracer: false, reason: Some("not root".into()) },
            })),
            Event::Denial(Denial {
                source: Source::Landlock,
                syscall: Some("openat".into()),
                errno: Some("EACCES".into()),
                operation: Some(Operation::Write),
                pid: Some(42),
                tid: Some(43),
                comm: Some("sh".into()),
                path: Some("/etc/x".into()),
                requested_path: Some("x".into()),
                host: None,
                port: None,
                detail: vec![("a".into(), "1".into()), ("reason".into(), "why".into())],
            }),
            Event::Net(Net { protocol: "connect", via: Some("proxy"), host: "example.com".into(), port: 443, allowed: true, rule: "allowedDomains: example.com".into(), resolved: Some("93.184.216.34".parse().unwrap()), client: "10.0.0.2:4000".into() }),
            Event::Process(Process { action: ProcessAction::Exec, pid: 7, ppid: Some(1), comm: "cat".into(), argv: vec!["cat".into(), "f".into()], exe: Some("/usr/bin/cat".into()) }),
            Event::Process(Process { action: ProcessAction::Exit, pid: 7, ppid: None, comm: "cat".into(), argv: Vec::new(), exe: None }),
            Event::Loss(Loss { source: "ebpf", count: 3 }),
            Event::Policy(PolicyEvent {
                origin: PolicyOrigin::Ask,
                action: PolicyAction::AllowAlways,
                key: "network.allowedDomains".into(),
                change: PolicyChange::Add,
                value: "x.example".into(),
                config: Some("/w/sbx.jsonc".into()),
                risk: vec!["wide".into()],
                answers: Some(2),
                host: Some("x.example".into()),
                port: Some(443),
            }),
            Event::Tamper(Tamper {
                path: "/w/.git/hooks/pre-commit".into(),
                change: Change::Created,
                action: TamperAction::Quarantined,
                quarantine: Some("/q/1".into()),
                error: None,
                diff: vec!["+ x".into()],
            }),
            Event::SessionEnd(SessionEnd { exit_code: 3, lost: 3 }),
        ];
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let counts = Counts::default();
        let started = Instant::now();
        for (seq, event) in events.iter().enumerate() {
            let line = serde_json::to_string(&encode(seq as u64, time, event, &counts, started)).unwrap();
            let (read, t) = Line::parse(&line).unwrap().line.unwrap().into_event();
            assert_eq!(t, Some(time), "{line}");
            let again = serde_json::to_string(&encode(seq as u64, time, &read, &counts, started)).unwrap();
            // session_end's duration_ms is the time since `started`, read at each encoding:
            // it may have moved to the next millisecond between the two.
            let timeless = |l: &str| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("duration_ms");
                v
            };
            assert_eq!(timeless(&again), timeless(&line), "{line}");
        }
    }

    #[test]
    fn what_this_version_does_not_know_reads_as_other() {
        let line = r#"{"client":"c","decision":"denied","host":"h","port":1,"protocol":"quic","rule":"r","time":"bad","type":"net","v":1}"#;
        let (event, time) = Line::parse(line).unwrap().line.unwrap().into_event();
        assert_eq!(time, None);
        let Event::Net(n) = event else { panic!("{event:?}") };
        assert_eq!((n.protocol, n.allowed), ("other", false));
        let bare = r#"{"type":"session_start","v":1,"home":null}"#;
        let (event, _) = Line::parse(bare).unwrap().line.unwrap().into_event();
        let Event::SessionStart(s) = event else { panic!() };
        assert!(s.command.is_empty() && s.enforcement.landlock.is_none() && s.observation.kernel_tracer);
    }
}
