//! The one sink every source of a session feeds: the audit log (written on a thread of its
//! own), the dashboard's channel and the exit summary.

use super::*;

/// Denials remembered per source for the exit summary.
pub(super) const SUMMARY_EXAMPLES: usize = 3;

/// One source's denials: count, first distinct examples, more distinct ones.
pub(super) type Tally = (u64, Vec<String>, bool);

/// The audit log, written on a thread of its own: the runtime thread
/// serves the proxy and the seccomp supervisor and does no file I/O. Events
/// go over a bounded channel: when a burst outruns the disk, the sender
/// waits for room (as it waited for the write itself before), so memory
/// stays bounded and no line is dropped; the file is a regular file
/// (`fsio`), so the writer always makes progress. The thread ends, having
/// written everything, when the writer is finished.
pub(super) struct LogWriter {
    pub(super) tx: Option<std::sync::mpsc::SyncSender<LogMsg>>,
    pub(super) thread: Option<std::thread::JoinHandle<Option<io::Error>>>,
    pub(super) path: PathBuf,
}

/// Events waiting for the log's writer, at most.
pub(super) const LOG_QUEUE: usize = 16 * 1024;

pub(super) enum LogMsg {
    Event(Box<Event>),
    /// The end of a batch: buffered lines go to the file.
    Flush,
}

impl LogWriter {
    pub(super) fn spawn(mut log: Log) -> Result<Self, SessionError> {
        let path = log.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::sync_channel::<LogMsg>(LOG_QUEUE);
        let thread = std::thread::Builder::new()
            .name("sbx-log".into())
            .spawn(move || {
                let mut error = None;
                for msg in rx {
                    let r = match msg {
                        LogMsg::Event(e) => log.write(&e),
                        LogMsg::Flush => log.flush(),
                    };
                    if let Err(e) = r {
                        error.get_or_insert(e);
                    }
                }
                if let Err(e) = log.flush() {
                    error.get_or_insert(e);
                }
                error
            })
            .map_err(SessionError::Runtime)?;
        Ok(Self { tx: Some(tx), thread: Some(thread), path })
    }

    pub(super) fn send(&self, msg: LogMsg) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
        }
    }

    /// Waits until every event is in the file; the first error, if any.
    pub(super) fn finish(&mut self) -> Option<io::Error> {
        self.tx.take();
        self.thread.take().and_then(|t| t.join().unwrap_or_else(|_| Some(io::Error::other("the log's writer panicked"))))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        // Every path out of a session leaves a complete log.
        let _ = self.finish();
    }
}

/// Where every event goes.
pub(super) struct Sink {
    pub(super) log: Option<LogWriter>,
    pub(super) started: Option<Started>,
    pub(super) attribution: Attribution,
    /// Kernel events that arrived before the session was known to have
    /// started; sorted out once it has.
    pub(super) early: Vec<RawEvent>,
    /// Per source: count, the first few distinct examples, and whether
    /// there were more distinct ones.
    pub(super) by_source: BTreeMap<&'static str, Tally>,
    /// The seccomp supervisor reports blocked syscalls; the tracer's view
    /// of the same EPERM is then a duplicate.
    pub(super) supervised: bool,
    /// The dashboard's channel; events it had no room for are counted and
    /// reported to it as a `tui` loss when there is room again.
    pub(super) ui: Option<tokio::sync::mpsc::Sender<tui::Msg>>,
    pub(super) ui_dropped: u64,
    /// Whether the kernel tracer ran; known at the session's start.
    pub(super) observation: crate::sandbox::Observation,
}

impl Sink {
    /// A sink writing to `log` (and later to the dashboard, once `ui` is set), before the
    /// session has started.
    pub(super) fn new(log: Option<LogWriter>) -> Sink {
        Sink {
            log,
            started: None,
            attribution: Attribution::default(),
            early: Vec::new(),
            by_source: BTreeMap::new(),
            supervised: false,
            ui: None,
            ui_dropped: 0,
            observation: crate::sandbox::Observation::default(),
        }
    }

    pub(super) fn emit(&mut self, event: &Event) {
        if let Event::Denial(d) = event {
            self.note(d);
        }
        if let Some(ui) = &self.ui {
            if self.ui_dropped > 0 {
                let loss = Event::Loss(report::Loss { source: "tui", count: self.ui_dropped });
                if ui.try_send(tui::Msg::Event(loss, std::time::SystemTime::now())).is_ok() {
                    self.ui_dropped = 0;
                }
            }
            if ui.try_send(tui::Msg::Event(event.clone(), std::time::SystemTime::now())).is_err() {
                self.ui_dropped += 1;
            }
        }
        if let Some(log) = &self.log {
            log.send(LogMsg::Event(Box::new(event.clone())));
        }
    }

    /// Writes the log's buffered lines (after each batch of events).
    pub(super) fn flush(&mut self) {
        if let Some(log) = &self.log {
            log.send(LogMsg::Flush);
        }
    }

    pub(super) fn note(&mut self, d: &Denial) {
        let entry = self.by_source.entry(d.source.as_str()).or_default();
        entry.0 += 1;
        let short = d.short();
        if !entry.1.contains(&short) {
            if entry.1.len() < SUMMARY_EXAMPLES {
                entry.1.push(short);
            } else {
                entry.2 = true;
            }
        }
    }

    pub(super) fn kernel(&mut self, raw: &[RawEvent]) {
        let Some(started) = &self.started else {
            self.early.extend_from_slice(raw);
            return;
        };
        let (exec_ns, init, bwrap) = (started.exec_ns, started.sandbox_init, started.bwrap_pid);
        for ev in raw {
            // bwrap's and stage-2's own setup, bwrap and its reaper.
            if ev.ktime_ns < exec_ns || init.is_some_and(|p| p as u32 == ev.pid) || bwrap == Some(ev.pid) {
                continue;
            }
            let event = if ev.kind == KIND_DENIAL {
                let Some(denial) = decode::denial(ev, &self.attribution) else { continue };
                if self.supervised && denial.source == report::Source::Seccomp {
                    continue;
                }
                Event::Denial(denial)
            } else {
                Event::Process(decode::process(ev))
            };
            self.emit(&event);
        }
        self.flush();
    }

    /// A limit was reached: `count` times, with this effect.
    pub(super) fn limit(&mut self, kind: limits::Kind, limits: &Limits, count: u64, effect: String) {
        let value = limits::format_value(kind, limits).unwrap_or_default();
        self.emit(&Event::Denial(of_session(
            report::Source::Limit,
            None,
            report::Operation::Limit(kind),
            vec![
                ("limit".to_string(), kind.to_string()),
                ("value".to_string(), value),
                ("count".to_string(), count.to_string()),
                ("effect".to_string(), effect),
            ],
        )));
        self.flush();
    }

    pub(super) fn seccomp(&mut self, d: SeccompDenial) {
        // A refused exec (command rules) is a denial of its own source; every other
        // notification is a blocked syscall, shown as the call it was.
        let (source, operation, detail) = match d.command {
            Some(refused) => {
                use crate::command_rules::List;
                let how = match refused.list {
                    List::Deny => "a command.deny rule refuses it",
                    List::Defaults => "fence's default list of dangerous commands refuses it (command.useDefaults: false turns the list off)",
                    List::SshDeniedHost => "ssh.deniedHosts refuses the host",
                    List::SshAllowedHosts => "ssh.allowedHosts does not list the host",
                    List::SshDeniedCommand => "ssh.deniedCommands refuses the remote command",
                    List::SshInherited => "ssh.inheritDeny applies command.deny to the remote command",
                    List::SshAllowedCommands => "ssh.allowedCommands does not allow a part of the remote command",
                    List::SshUnchecked => "the ssh rules cannot check this ssh run, so it is refused",
                    List::Unresolved => "command rules apply and sbx cannot tell which program this is, so it is refused",
                };
                let exception = if matches!(refused.list, List::Deny | List::Defaults) { "; command.allow can make an exception" } else { "" };
                let detail = vec![
                    ("rule".to_string(), format!("{}: {}", refused.list.key(), refused.rule)),
                    ("argv".to_string(), crate::command_rules::join_words(&refused.argv)),
                    ("ancestry".to_string(), refused.ancestry),
                    ("reason".to_string(), format!("{how}{exception}")),
                ];
                (report::Source::Command, Some(report::Operation::Exec), detail)
            }
            None => {
                let mut detail = vec![("call".to_string(), d.summary)];
                detail.extend(d.detail.into_iter().map(|(k, v)| (k.to_string(), v)));
                (report::Source::Seccomp, None, detail)
            }
        };
        self.emit(&Event::Denial(Denial {
            source,
            syscall: Some(d.syscall.to_string()),
            errno: Some("EPERM".to_string()),
            operation,
            pid: (d.pid != 0).then_some(d.pid),
            tid: None,
            comm: d.comm,
            path: d.path,
            requested_path: d.requested_path,
            host: None,
            port: None,
            detail,
        }));
        self.flush();
    }

    pub(super) fn net(&mut self, n: NetEvent) {
        let protocol = n.protocol.as_str();
        if n.protocol == crate::proxy::Protocol::Dns {
            // sbx's DNS reports its refusals only: a denial of its own source.
            if !n.allowed {
                self.emit(&Event::Denial(Denial {
                    host: Some(n.host),
                    detail: vec![("qtype".to_string(), n.dns_type.unwrap_or_default()), ("rule".to_string(), n.rule), ("client".to_string(), n.client)],
                    ..Denial::of(report::Source::Dns)
                }));
                self.flush();
            }
            return;
        }
        let event = report::Net {
            protocol,
            via: n.protocol.via(),
            host: n.host,
            port: n.port,
            allowed: n.allowed,
            rule: n.rule,
            resolved: n.resolved,
            client: n.client,
        };
        self.emit(&Event::Net(event.clone()));
        if !event.allowed {
            self.emit(&Event::Denial(Denial {
                operation: Some(report::Operation::Connect),
                host: Some(event.host),
                port: Some(event.port),
                detail: vec![("rule".to_string(), event.rule), ("protocol".to_string(), protocol.to_string())],
                ..Denial::of(report::Source::Proxy)
            }));
        }
        self.flush();
    }

    pub(super) fn start(&mut self, started: Started, command: &[OsString], policy: &Policy, sources: &[String], unenforced_limits: &[(limits::Kind, String)], observation: crate::sandbox::Observation) {
        self.observation = observation.clone();
        self.attribution = Attribution {
            landlock: started.enforcement.landlock.is_some_and(|l| l.status != crate::sandbox::LandlockStatus::None),
            read_roots: started.read_roots.clone(),
            write_roots: started.write_roots.clone(),
            hidden: started.hidden.clone(),
            seccomp: started.seccomp,
            islands: started.islands.clone(),
            pins: started.pins.clone(),
        };
        self.emit(&Event::SessionStart(Box::new(report::SessionStart {
            command: command.to_vec(),
            policy: policy.clone(),
            sources: sources.to_vec(),
            enforcement: started.enforcement.clone(),
            unenforced_limits: unenforced_limits.to_vec(),
            observation,
        })));
        self.started = Some(started);
        let early = std::mem::take(&mut self.early);
        self.kernel(&early);
    }

    /// "3 denials: 2 landlock (write /etc/x, ...), 1 proxy (evil.example)"
    /// The session's last events (the tampers found after it, what each source lost,
    /// the end) and the exit summary; nothing when the command never started.
    pub(super) fn end(&mut self, tampers: &[report::Tamper], losses: [(&'static str, u64); 3], exit_code: u8) -> Option<String> {
        let started = self.started.as_mut()?;
        // Without the kernel tracer, which names each, what the sandbox's network could not
        // route (UDP other than sbx's DNS, ICMP) is one denial with the count.
        let no_route = started.no_routes.as_mut().map_or(0, launch::noroute::NoRoutes::since_start);
        if !self.observation.kernel_tracer && no_route > 0 {
            let reason = format!(
                "{no_route} packet{} to addresses outside the sandbox had no route (UDP other than sbx's DNS, ICMP): the sandbox's network has only loopback; the kernel tracer (sbx monitor, or sudo) names each destination",
                if no_route == 1 { "" } else { "s" }
            );
            let detail = vec![("count".to_string(), no_route.to_string()), ("reason".to_string(), reason)];
            self.emit(&Event::Denial(of_session(report::Source::Netns, Some("ENETUNREACH"), report::Operation::Send, detail)));
        }
        for t in tampers {
            self.emit(&Event::Tamper(t.clone()));
        }
        for (source, count) in losses {
            if count > 0 {
                self.emit(&Event::Loss(report::Loss { source, count }));
            }
        }
        let lost = losses.iter().map(|(_, n)| n).sum();
        self.emit(&Event::SessionEnd(report::SessionEnd { exit_code, lost }));
        Some(self.summary())
    }

    pub(super) fn summary(&self) -> String {
        let total: u64 = self.by_source.values().map(|(n, _, _)| n).sum();
        // Never "no denials" when file denials could not be seen.
        let unseen = match (&self.observation.kernel_tracer, &self.observation.reason) {
            (false, Some(why)) => format!("; file denials were not observed: {why}"),
            (false, None) => "; file denials were not observed".to_string(),
            _ => String::new(),
        };
        if total == 0 {
            return if unseen.is_empty() { "no denials".to_string() } else { format!("0 denials seen{unseen}") };
        }
        let mut parts: Vec<(&str, &Tally)> = self.by_source.iter().map(|(k, v)| (*k, v)).collect();
        parts.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        let parts: Vec<String> = parts
            .into_iter()
            .map(|(source, (n, examples, more))| {
                let more = if *more { ", ..." } else { "" };
                format!("{n} {source} ({}{more})", examples.join(", "))
            })
            .collect();
        format!("{total} denial{}: {}{unseen}", if total == 1 { "" } else { "s" }, parts.join(", "))
    }
}

/// A denial of the whole session, counted rather than seen in one process: a limit
/// reached, what the sandbox's network could not route.
fn of_session(source: report::Source, errno: Option<&str>, operation: report::Operation, detail: Vec<(String, String)>) -> Denial {
    Denial { errno: errno.map(str::to_string), operation: Some(operation), detail, ..Denial::of(source) }
}

/// The exit summary's line: every example is the command's choice (paths,
/// hosts, calls), so the whole line is escaped for the terminal.
pub(super) fn summary_line(summary: &str, lost: u64) -> String {
    let lost_note = if lost > 0 { format!(" ({lost} events lost)") } else { String::new() };
    format!("sbx: {}{lost_note}", crate::termtext::escape(summary))
}

