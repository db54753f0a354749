//! A sandboxed session: the launch, the event sources that watch it (the
//! kernel tracer today), and the one sink they all feed: the audit log and
//! the exit summary. `sbx run` and `sbx monitor --no-tui` are both sessions.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    ffi::OsString,
    io,
    path::PathBuf,
};

use crate::{
    cgroup::{self, SessionCgroup},
    launch::{self, LaunchError, Outcome, Started},
    limits::{self, Limits},
    monitor::{
        decode::{self, Attribution},
        notify::{self, SeccompDenial},
        tracer::Tracer,
    },
    policy::Policy,
    proxy::{self, NetEvent, Proxy, ProxyConfig},
    report::{self, Denial, Event, Log},
    tui,
};
use sbx_common::{KIND_DENIAL, RawEvent};


mod protect;
mod pumps;
mod sink;
mod tracer;

use protect::*;
use pumps::*;
use sink::*;
use tracer::*;

/// Whether the kernel tracer watches the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    Off,
    /// Trace when this host and these privileges allow it; otherwise say
    /// so in one line and go on without.
    IfPossible,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub trace: Trace,
    pub log: Option<PathBuf>,
    pub launch: launch::Options,
    /// Where each part of the policy came from, for session_start.
    pub sources: Vec<String>,
    pub ring_bytes: u32,
    /// Print the human summary of denials on stderr at exit.
    pub summary: bool,
    /// `-p`: host addresses whose connections go to the same port on the
    /// sandbox's loopback.
    pub inbound: Vec<std::net::SocketAddr>,
    /// Show the live dashboard (`sbx monitor` on a terminal): the command
    /// runs on a pty of its own and the dashboard owns sbx's terminal.
    pub dashboard: bool,
    /// `sbx monitor --zoom`: the dashboard starts zoomed.
    pub dashboard_start: tui::Start,
    /// `sbx monitor --ask` (with the dashboard): connections that no rule
    /// decides are held while the dashboard asks.
    pub ask: Option<AskOptions>,
    /// `--keep-agent-config`: changes to agent configuration that runs commands
    /// (`agentconf`) are reported and kept instead of reverted.
    pub keep_agent_config: bool,
    /// The workspace's git repositories, when the caller's walk of it found them just
    /// before (`snapshot::policy_files_and_repositories`): not walked for again.
    pub repositories: Option<launch::git::Walk>,
}

/// Where `--ask`'s "always" answers are written, and how long a held
/// connection waits for an answer before it is denied.
#[derive(Debug, Clone)]
pub struct AskOptions {
    pub config: PathBuf,
    pub timeout: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot open the log file {} (--log): {detail}", crate::termtext::path(path))]
    Log { path: PathBuf, detail: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("{0}")]
    Proxy(#[from] proxy::ProxyError),
    #[error("cannot start the event loop: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot open a pty for the command: {0}")]
    Pty(#[source] io::Error),
    #[error("cannot listen on {addr} (--port): {source}")]
    Inbound { addr: std::net::SocketAddr, source: io::Error },
}

/// How a session ended.
#[derive(Debug)]
pub struct Ended {
    /// The status to exit with.
    pub code: u8,
    /// The workspace's policy files at the end (`snapshot::policy_files`), when the exit
    /// checks walked the workspace for them.
    pub policy_files: Option<Vec<PathBuf>>,
}

/// Runs `command` in the sandbox under `policy`; returns the exit status. `walked`: the
/// glob rules' walk, when the caller made it already (with a search of its own).
pub fn run(policy: &Policy, command: Vec<OsString>, opts: Options, walked: Option<launch::glob::Walked>) -> Result<Ended, SessionError> {
    // Inside another sandbox or a container that forbids namespaces: one sentence, before
    // anything is made.
    if opts.launch.direct.is_none()
        && let Some(why) = launch::namespaces_refused()
    {
        return Err(LaunchError::NoNamespaces(why).into());
    }
    let (policy, walked) = prepare(policy, &opts, walked)?;
    let policy = &policy;
    let protections = Protections::take(policy, opts.launch.direct.is_some(), walked.repositories(&policy.workspace).or_else(|| opts.repositories.clone()));
    let log = match &opts.log {
        Some(path) => Some(LogWriter::spawn(Log::create(path).map_err(|e| SessionError::Log { path: path.clone(), detail: e.detail() })?)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(SessionError::Runtime)?;
    // `-p`: the host's side listens before anything starts, so a port in use is an
    // error up front.
    let inbound: Vec<std::net::TcpListener> = opts
        .inbound
        .iter()
        .map(|&addr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| SessionError::Inbound { addr, source })
        })
        .collect::<Result<_, _>>()?;
    let (net_tx, net_rx) = tokio::sync::mpsc::channel::<NetEvent>(4096);
    // `--ask` holds undecided connections while the dashboard asks.
    let (ask_tx, ask_rx) = match (&opts.ask, opts.dashboard) {
        (Some(_), true) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<proxy::ask::AskRequest>(64);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    // The proxy's rules are checked before anything starts.
    let proxy = Proxy::new(
        &ProxyConfig {
            allowed_domains: policy.net.allowed_domains.clone(),
            denied_domains: policy.net.denied_domains.clone(),
            allow_private_resolution: policy.net.allow_private_resolution.clone(),
            allow_local_outbound_ports: policy.net.allow_local_outbound_ports.clone(),
            limits: proxy::Limits::default(),
            // The proxy's own bound is the prompt's plus a margin, in case the dashboard
            // is gone without answering.
            ask: ask_tx.zip(opts.ask.as_ref()).map(|(requests, a)| proxy::ask::Asker { requests, wait: a.timeout + std::time::Duration::from_secs(5) }),
        },
        std::sync::Arc::new(proxy::SystemResolver),
        net_tx,
    )?;
    let _entered = runtime.enter();
    let direct = opts.launch.direct.is_some();
    let (cgroup, unenforced) = session_cgroup(&policy.limits, opts.trace != Trace::Off, direct);
    // Why the kernel tracer did not run, once known (`start_tracer`).
    let not_observed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let traced = match opts.trace {
        Trace::Off => {
            *not_observed.lock().unwrap_or_else(|e| e.into_inner()) = Some("the kernel tracer is off (sbx run without --log)".into());
            None
        }
        Trace::IfPossible => start_tracer(cgroup.as_ref(), opts.ring_bytes, runtime.handle().clone(), not_observed.clone()),
    };
    let mut launch_opts = opts.launch.clone();
    launch_opts.git_paths = Some(protections.git_paths.clone());
    if let Some(dir) = protections.claude_config_dir() {
        launch_opts.env.push(("CLAUDE_CONFIG_DIR".into(), dir.into()));
    }
    launch_opts.cgroup_procs_fds = cgroup.as_ref().map(SessionCgroup::procs_fds).unwrap_or_default();
    launch_opts.cgroup_tasks_fds = cgroup.as_ref().map(SessionCgroup::tasks_fds).unwrap_or_default();
    launch_opts.max_tasks = policy.limits.pids.filter(|_| !direct && !cgroup.as_ref().is_some_and(SessionCgroup::enforces_pids));
    launch_opts.start_gate = traced.as_ref().map(|load| load.gate.clone());
    let tracer_rx = traced.map(|load| load.tracer);
    let limits_state = LimitsState { limits: policy.limits, unenforced, counted: std::cell::Cell::new(cgroup::Counters::default()), timed_out: std::cell::Cell::new(false) };

    let sink = RefCell::new(Sink::new(log));
    // Seccomp denials: the supervisor (spawned once the listener arrives) sends them
    // here; bounded, it drops and counts when the sink lags.
    let (seccomp_tx, seccomp_rx) = tokio::sync::mpsc::channel::<SeccompDenial>(4096);
    // The dashboard: the command gets a pty of its own; the dashboard owns sbx's
    // terminal, and stderr goes to a file while it does. It answers its question about
    // agent configuration on `review`.
    let dashboard_stderr = crate::state::session_file("monitor", ".stderr")?;
    let (ui_tx, ui_rx) = tokio::sync::mpsc::channel::<tui::Msg>(8192);
    let (review_tx, mut review_rx) = tokio::sync::mpsc::channel::<bool>(1);
    let (ui_tx, pty_master) = match opts.dashboard {
        true => (Some(ui_tx), Some(open_pty(&mut launch_opts, opts.dashboard_start)?)),
        false => (None, None),
    };
    sink.borrow_mut().ui = ui_tx.clone();
    let sandbox = SandboxPids::default();
    let (done_tx, done) = Done::new();
    let (outcome, lost, summary, tampered, tracer_end) = runtime.block_on(async {
        let launch = async {
            let mut supervisor = None;
            let outcome = async {
                let mut running = launch::start(policy, command.clone(), &launch_opts).await?;
                let started = &mut running.started;
                sandbox.set(started);
                protections.arm_hidden(started);
                serve_network(&proxy, std::mem::take(&mut started.net_listeners), &started.net);
                // Transparent egress: sbx's DNS inside, and the supervisor's direct connects.
                let egress = serve_dns(&proxy, std::mem::take(&mut started.dns_sockets));
                serve_inbound(inbound, started.sandbox_init, &proxy);
                if let Some(listener) = started.listener.take() {
                    // Unless allowAllUnixSockets, the filter notifies connect(2), which the
                    // supervisor then decides (monitor::connect); with command rules, every
                    // exec (monitor::exec).
                    let mediation = notify::Mediation {
                        unix: started.seccomp.mediate_unix_connect.then(|| notify::UnixSocketPolicy { allowed: policy.net.allow_unix_sockets.clone() }),
                        commands: started.seccomp.mediate_exec.then(|| policy.commands.clone()),
                        egress: egress.filter(|_| started.seccomp.transparent_egress),
                    };
                    match notify::Supervisor::spawn_mediating(listener, seccomp_tx, notify::Limits::default(), mediation) {
                        Ok(s) => {
                            supervisor = Some(s);
                            sink.borrow_mut().supervised = true;
                        }
                        Err(e) => eprintln!("sbx: warning: the seccomp supervisor did not start ({e}); blocked syscalls fail with ENOSYS"),
                    }
                }
                // The tracer has loaded or failed by now (the gate waited for it).
                let reason = not_observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let observation = crate::sandbox::Observation { kernel_tracer: opts.trace != Trace::Off && reason.is_none(), reason };
                sink.borrow_mut().start(std::mem::take(started), &command, policy, &opts.sources, &limits_state.unenforced, observation);
                running.wait().await
            }
            .await;
            // If the supervisor never started, its channel is closed by now.
            let _ = done_tx.send(true);
            (outcome, supervisor)
        };
        let session = async {
            let ((outcome, supervisor), (ebpf_lost, tracer_end), (), (), (), (), (), (), ()) = tokio::join!(
                launch,
                kernel_events(tracer_rx, &sink, done.clone()),
                seccomp_events(seccomp_rx, &sink),
                net_events(net_rx, &sink, done.clone()),
                pty_output(pty_master.as_ref(), ui_tx.as_ref(), done.clone()),
                limits_watch(cgroup.as_ref(), &limits_state, &sink, done.clone()),
                timer(&limits_state, &sink, &sandbox, done.clone()),
                protections.watch_created(&sink, &sandbox, done.clone()),
                protections.watch_hidden(&sandbox, done.clone()),
            );
            let mut seccomp_dropped = 0;
            if let Some(s) = supervisor {
                match s.wait().await {
                    Ok(stats) => seccomp_dropped = stats.events_dropped,
                    Err(e) => tracing::warn!("the seccomp supervisor failed: {e}"),
                }
            }
            let code = limits_state.exit_code(&outcome);
            // Every process of the sandbox is gone before anything is checked.
            sandbox.ended(std::time::Duration::from_secs(1)).await;
            let review = ui_tx.as_ref().map(|ui| Review { ui, answer: &mut review_rx });
            let tampered = protections.verify(opts.keep_agent_config, review).await;
            let losses = [("ebpf", ebpf_lost), ("seccomp", seccomp_dropped), ("proxy", proxy.dropped_events())];
            let summary = sink.borrow_mut().end(&tampered, losses, code);
            if let Some(ui) = &ui_tx {
                let _ = ui.send(tui::Msg::Exited(code)).await;
            }
            (outcome, losses.iter().map(|(_, n)| n).sum::<u64>(), summary, tampered, tracer_end)
        };
        let dashboard = async {
            let Some(master) = pty_master.as_ref() else { return };
            let dashboard = Dashboard {
                rx: ui_rx,
                master,
                command: &command,
                stderr_to: dashboard_stderr.clone(),
                ask: opts.ask.as_ref(),
                ask_rx,
                review: Some(review_tx),
                start: opts.dashboard_start,
            };
            dashboard.run(&sink, ui_tx.as_ref(), &sandbox).await;
        };
        tokio::join!(session, dashboard).0
    });

    // The tracer is detached before its cgroup goes, and the sandbox is gone.
    if let Some(end) = tracer_end {
        let _ = end.join();
    }
    drop(cgroup);
    let findings = protections.finish(tampered);
    let mut sink = sink.into_inner();
    let log_error = sink.log.as_mut().and_then(LogWriter::finish);
    if opts.dashboard {
        if let Ok(text) = crate::fsio::read_to_string(&dashboard_stderr) {
            // sbx's own messages, which quote paths and hosts: escaped, line by line.
            eprint!("{}", crate::termtext::escape_lines(&text));
        }
        let _ = std::fs::remove_file(&dashboard_stderr);
    }
    if let (true, Some(summary)) = (opts.summary, summary) {
        eprintln!("{}", summary_line(&summary, lost));
    }
    if let Some(line) = limits_state.exit_line(&outcome) {
        eprintln!("sbx: {line}");
    }
    findings.print(opts.keep_agent_config);
    let policy_files = findings.policy_files;
    if let (Some(e), Some(log)) = (&log_error, &sink.log) {
        eprintln!("sbx: warning: could not write the log {}: {}", crate::termtext::path(&log.path), crate::termtext::escape(&e.to_string()));
    }
    let code = limits_state.exit_code(&outcome);
    outcome?;
    Ok(Ended { code, policy_files })
}

/// The host made ready for a session, before anything is taken or started: sbx's private
/// directories (created first, so that the sandbox's view hides them; files a killed
/// session left there go now), the glob walk's check of the deny rules, the `allowWrite`
/// directories to make. Returns the policy with sbx's own directories hidden, and the glob
/// rules' walk, which the plan reads while it lives.
fn prepare(policy: &Policy, opts: &Options, walked: Option<launch::glob::Walked>) -> Result<(Policy, launch::glob::Walked), SessionError> {
    crate::state::state_dir()?;
    crate::state::runtime_dir()?;
    crate::state::remove_stale();
    crate::missing::remove_stale();
    let mut policy = policy.clone();
    // As another user (`identity`), root's directories are out of the command's reach,
    // and bubblewrap (that user) could not mount over them; that user's own sbx directory
    // (their logs' keys, their quarantine, the privateWrite store) is hidden instead.
    let own_dirs = match &opts.launch.run_as {
        Some(_) => crate::snapshot::quarantine_root(policy.home.as_deref()).and_then(|q| q.parent().map(std::path::Path::to_path_buf)).filter(|d| d.is_dir()).into_iter().collect(),
        None => crate::state::hidden_in_sandbox(),
    };
    for dir in own_dirs {
        // Already hidden by the policy's own denyRead (`~/.local`, say): a mask inside
        // that empty, read-only directory could not be made.
        if !policy.fs.deny_read.iter().any(|d| dir.starts_with(d)) {
            policy.fs.deny_read.push(dir);
        }
    }
    // Every glob rule walked once (the patterns of one directory together); a deny rule the
    // walk cannot cover refuses before anything starts (the dashboard too).
    let fs = &policy.fs;
    let rules: Vec<PathBuf> = [&fs.allow_read, &fs.allow_execute, &fs.deny_read, &fs.allow_write, &fs.deny_write].into_iter().flatten().cloned().collect();
    let walked = walked.unwrap_or_else(|| launch::glob::Walked::walk(&rules, &policy.workspace));
    launch::glob::check_deny_rules(&policy.fs, launch::glob::expand).map_err(LaunchError::from)?;
    // allowWrite directories written `~/x/` that are missing: made now, so that the
    // plan binds them.
    for warning in crate::missing::create_write_dirs(&policy) {
        eprintln!("sbx: warning: {warning}");
    }
    // privateWrite: sbx's store for each, and the mount point, made now (not without
    // namespaces, where nothing is mounted and they stay read-only).
    if opts.launch.direct.is_none() {
        for warning in crate::missing::create_private_dirs(&policy) {
            eprintln!("sbx: warning: {warning}");
        }
    }
    Ok((policy, walked))
}

/// The tracer's cgroup mount, for `sbx doctor`.
pub fn cgroup2_available() -> io::Result<PathBuf> {
    cgroup::cgroup2_mount()
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt as _;

    use proptest::prelude::*;

    use super::*;

    fn sink() -> Sink {
        Sink { observation: crate::sandbox::Observation { kernel_tracer: true, reason: None }, ..Sink::new(None) }
    }

    fn denial(source: report::Source, path: Option<Vec<u8>>, host: Option<String>, call: Option<String>) -> Denial {
        Denial {
            syscall: Some("openat".into()),
            operation: Some("create".into()),
            path: path.map(|p| PathBuf::from(OsString::from_vec(p))),
            host,
            port: Some(443),
            detail: call.map(|c| vec![("call".to_string(), c)]).unwrap_or_default(),
            ..Denial::of(source)
        }
    }

    /// The reproduction: a file name that fakes "no denials" and hides the
    /// rest of the line.
    #[test]
    fn the_exit_summary_shows_a_hostile_file_name_escaped() {
        let mut s = sink();
        s.note(&denial(report::Source::Mount, Some(b"/etc/x\x1b[2K\rsbx: no denials\n\x1b[8m".to_vec()), None, None));
        assert_eq!(summary_line(&s.summary(), 0), "sbx: 1 denial: 1 mount (create /etc/x\\x1b[2K\\rsbx: no denials\\n\\x1b[8m)");
    }

    proptest! {
        #[test]
        fn no_summary_holds_a_control_byte(
            path in proptest::collection::vec(any::<u8>(), 0..40),
            host in any::<String>(),
            call in any::<String>(),
        ) {
            let mut s = sink();
            s.note(&denial(report::Source::Landlock, Some(path), None, None));
            s.note(&denial(report::Source::Proxy, None, Some(host), None));
            s.note(&denial(report::Source::Seccomp, None, None, Some(call)));
            let line = summary_line(&s.summary(), 3);
            prop_assert!(line.bytes().all(|b| b >= 0x20 && b != 0x7f), "{line:?}");
            prop_assert!(crate::termtext::is_inert(&line));
        }
    }
}
