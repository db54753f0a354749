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


mod pumps;
mod sink;
mod tracer;

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

/// Runs `command` in the sandbox under `policy`; returns the exit status.
pub fn run(policy: &Policy, command: Vec<OsString>, opts: Options) -> Result<u8, SessionError> {
    // Inside another sandbox or a container that forbids namespaces: one sentence, before
    // anything is made.
    if let Some(why) = launch::namespaces_refused() {
        return Err(LaunchError::NoNamespaces(why).into());
    }
    // sbx's private directories: created first, so that the sandbox's view
    // hides them (the logs' keys, sbx's temporary files); files a killed
    // session left there go now.
    crate::state::state_dir()?;
    crate::state::runtime_dir()?;
    crate::state::remove_stale();
    crate::missing::remove_stale();
    let mut policy = policy.clone();
    // As another user (`identity`), root's directories are out of the command's reach,
    // and bubblewrap (that user) could not mount over them.
    let own_dirs = if opts.launch.run_as.is_some() { Vec::new() } else { crate::state::hidden_in_sandbox() };
    for dir in own_dirs {
        // Already hidden by the policy's own denyRead (`~/.local`, say): a
        // mask inside that empty, read-only directory could not be made.
        if !policy.fs.deny_read.iter().any(|d| dir.starts_with(d)) {
            policy.fs.deny_read.push(dir);
        }
    }
    let policy = &policy;
    // A deny rule the glob walk cannot cover refuses before anything starts (the dashboard too).
    launch::glob::check_deny_rules(&policy.fs, launch::glob::expand).map_err(LaunchError::from)?;
    // allowWrite directories written `~/x/` that are missing: made now, so that the plan binds them.
    for warning in crate::missing::create_write_dirs(policy) {
        eprintln!("sbx: warning: {warning}");
    }
    // The protected paths as they are before the command: verified after it (tamper).
    let git_paths = launch::git::admin_paths(&policy.workspace, !policy.fs.allow_git_config);
    // Protected names missing at start: directories get a placeholder (which the plan
    // then mounts read-only), files a watch for the session (`missing`).
    let protected = launch::protected_paths(policy, &git_paths);
    let (protected_dirs, protected_files): (Vec<PathBuf>, Vec<PathBuf>) =
        protected.iter().cloned().partition(|p| crate::missing::kind_of(policy, &git_paths, p) == crate::missing::Kind::Dir);
    // `.config/sbx` matters in the home only: no `.config` appears in a project for it.
    let ws_config = (policy.home.as_ref() != Some(&policy.workspace)).then(|| policy.workspace.join(".config/sbx"));
    let protected_dirs: Vec<PathBuf> = protected_dirs.into_iter().filter(|p| Some(p) != ws_config.as_ref()).collect();
    let placeholders = crate::missing::Placeholders::make(&protected_dirs, &policy.writable());
    // Policy files are left to the policy-file report (`--ask` writes one itself).
    let is_policy_file = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| crate::config::FILE_NAMES.contains(&n));
    let created_watch = RefCell::new(crate::missing::Watch::start(&protected_files.into_iter().filter(|p| !is_policy_file(p)).collect::<Vec<_>>()));
    let new_repos = crate::snapshot::NewRepositories::take(&policy.workspace, &git_paths, policy.fs.allow_git_config);
    let guard = crate::snapshot::Guard::take(protected, crate::snapshot::quarantine_root(policy.home.as_deref()));
    let quarantine = RefCell::new(crate::snapshot::Quarantine::new(guard.quarantine_root()));
    // Protected names the command created while it ran, each moved away at once; the
    // second stops the command.
    let created_live = RefCell::new(Vec::<report::Tamper>::new());
    let stopped_for = RefCell::new(None::<String>);
    let agent_config = crate::agentconf::AgentConfig::take(policy.home.as_deref(), &policy.workspace, &policy.writable());
    let tampered = RefCell::new(Vec::<report::Tamper>::new());
    let log = match &opts.log {
        Some(path) => Some(LogWriter::spawn(Log::create(path).map_err(|e| SessionError::Log { path: path.clone(), detail: e.detail() })?)?),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(SessionError::Runtime)?;
    // `-p`: the host's side listens before anything starts, so a port in
    // use is an error up front.
    let inbound: Vec<std::net::TcpListener> = opts
        .inbound
        .iter()
        .map(|&addr| {
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| SessionError::Inbound { addr, source })
        })
        .collect::<Result<_, _>>()?;
    let inbound = RefCell::new(inbound);
    // The proxy's rules are checked before anything starts.
    let (net_tx, mut net_rx) = tokio::sync::mpsc::channel::<NetEvent>(4096);
    let (ask_tx, ask_rx) = match (&opts.ask, opts.dashboard) {
        (Some(_), true) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<proxy::ask::AskRequest>(64);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let proxy = Proxy::new(
        &ProxyConfig {
            allowed_domains: policy.net.allowed_domains.clone(),
            denied_domains: policy.net.denied_domains.clone(),
            allow_private_resolution: policy.net.allow_private_resolution.clone(),
            allow_local_outbound_ports: policy.net.allow_local_outbound_ports.clone(),
            limits: proxy::Limits::default(),
            // The proxy's own bound is the prompt's plus a margin, in case
            // the dashboard is gone without answering.
            ask: ask_tx.zip(opts.ask.as_ref()).map(|(requests, a)| proxy::ask::Asker { requests, wait: a.timeout + std::time::Duration::from_secs(5) }),
        },
        std::sync::Arc::new(proxy::SystemResolver),
        net_tx,
    )?;
    let _entered = runtime.enter();
    let (cgroup, unenforced) = session_cgroup(&policy.limits, opts.trace != Trace::Off);
    // Why the kernel tracer did not run, once known (`start_tracer`).
    let not_observed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let tracing_on = opts.trace != Trace::Off;
    if !tracing_on {
        *not_observed.lock().unwrap_or_else(|e| e.into_inner()) = Some("the kernel tracer is off (sbx run without --log)".into());
    }
    let traced = match opts.trace {
        Trace::Off => None,
        Trace::IfPossible => start_tracer(cgroup.as_ref(), opts.ring_bytes, runtime.handle().clone(), not_observed.clone()),
    };
    let mut launch_opts = opts.launch.clone();
    launch_opts.git_paths = Some(git_paths);
    launch_opts.cgroup_procs_fds = cgroup.as_ref().map(SessionCgroup::procs_fds).unwrap_or_default();
    launch_opts.cgroup_tasks_fds = cgroup.as_ref().map(SessionCgroup::tasks_fds).unwrap_or_default();
    launch_opts.max_tasks = policy.limits.pids.filter(|_| !cgroup.as_ref().is_some_and(SessionCgroup::enforces_pids));
    launch_opts.start_gate = traced.as_ref().map(|load| load.gate.clone());
    let tracer_rx = traced.map(|load| load.tracer);
    let limits_state = LimitsState { limits: policy.limits, unenforced, counted: std::cell::Cell::new(cgroup::Counters::default()), timed_out: std::cell::Cell::new(false) };

    let sink = RefCell::new(Sink::new(log));
    let done = tokio::sync::Notify::new();
    let done_net = tokio::sync::Notify::new();
    // Seccomp denials: the supervisor (spawned once the listener arrives)
    // sends them here; bounded, it drops and counts when the sink lags.
    let (seccomp_tx, mut seccomp_rx) = tokio::sync::mpsc::channel::<SeccompDenial>(4096);
    let seccomp_tx = RefCell::new(Some(seccomp_tx));
    let supervisor = RefCell::new(None);
    // The dashboard: the command gets a pty of its own; the dashboard owns
    // sbx's terminal, and stderr goes to a file while it does.
    let (ui_tx, ui_rx) = match opts.dashboard {
        true => {
            let (tx, rx) = tokio::sync::mpsc::channel::<tui::Msg>(8192);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    sink.borrow_mut().ui = ui_tx.clone();
    // The dashboard's answer to its question about agent configuration.
    let (review_tx, mut review_rx) = match opts.dashboard {
        true => {
            let (tx, rx) = tokio::sync::mpsc::channel::<bool>(1);
            (Some(tx), Some(rx))
        }
        false => (None, None),
    };
    let dashboard_stderr = crate::state::session_file("monitor", ".stderr")?;
    let pty_master = match opts.dashboard {
        true => {
            let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
            let size = tui::initial_pty_size(cols, rows, opts.dashboard_start);
            let winsize = nix::pty::Winsize { ws_row: size.1, ws_col: size.0, ws_xpixel: 0, ws_ypixel: 0 };
            let pty = nix::pty::openpty(Some(&winsize), None).map_err(|e| SessionError::Pty(e.into()))?;
            nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK))
                .map_err(|e| SessionError::Pty(e.into()))?;
            launch_opts.terminal = Some(std::sync::Arc::new(pty.slave));
            // SAFETY: the master descriptor is owned by the AsyncFd for as
            // long as it is registered.
            Some(unsafe { tokio::io::unix::AsyncFd::register(pty.master) }.map_err(|e| SessionError::Pty(e.into_parts().1))?)
        }
        false => None,
    };
    let done_output = tokio::sync::Notify::new();
    let done_limits = tokio::sync::Notify::new();
    let done_created = tokio::sync::Notify::new();
    let done_timer = tokio::sync::Notify::new();
    let bwrap_pid = std::cell::Cell::new(None::<u32>);
    let sandbox_init = std::cell::Cell::new(None::<i32>);
    let (outcome, lost, summary) = runtime.block_on(async {
        let launch = async {
            let r = launch::run(policy, command.clone(), &launch_opts, |mut started| {
                bwrap_pid.set(started.bwrap_pid);
                sandbox_init.set(started.sandbox_init);
                serve_network(&proxy, std::mem::take(&mut started.net_listeners), &started.net);
                serve_inbound(std::mem::take(&mut *inbound.borrow_mut()), started.sandbox_init, &proxy);
                let tx = seccomp_tx.borrow_mut().take();
                if let (Some(listener), Some(tx)) = (started.listener.take(), tx) {
                    // Unless allowAllUnixSockets, the filter notifies connect(2), which the
                    // supervisor then decides (monitor::connect).
                    let unix = started
                        .seccomp
                        .mediate_unix_connect
                        .then(|| notify::UnixSocketPolicy { allowed: policy.net.allow_unix_sockets.clone() });
                    match notify::Supervisor::spawn_with(listener, tx, notify::Limits::default(), unix) {
                        Ok(s) => {
                            *supervisor.borrow_mut() = Some(s);
                            sink.borrow_mut().supervised = true;
                        }
                        Err(e) => eprintln!("sbx: warning: the seccomp supervisor did not start ({e}); blocked syscalls fail with ENOSYS"),
                    }
                }
                // The tracer has loaded or failed by now (the gate waited for it).
                let reason = not_observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let observation = crate::sandbox::Observation { kernel_tracer: tracing_on && reason.is_none(), reason };
                sink.borrow_mut().start(started, &command, policy, &opts.sources, &limits_state.unenforced, observation)
            })
            .await;
            // If the supervisor never started, its channel closes here.
            seccomp_tx.borrow_mut().take();
            done.notify_one();
            done_net.notify_one();
            done_output.notify_one();
            done_limits.notify_one();
            done_created.notify_one();
            done_timer.notify_one();
            r
        };
        // What the kernel counted against the limits, as it happens (every
        // quarter second) and once more at the end.
        let limits_watch = async {
            let Some(cgroup) = cgroup.as_ref() else { return };
            loop {
                tokio::select! {
                    biased;
                    _ = done_limits.notified() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => limits_state.observe(cgroup, &sink),
                }
            }
            limits_state.observe(cgroup, &sink);
        };
        // A protected name that was missing at start and appears: moved to the quarantine
        // at once and reported; the second stops the command (`missing`).
        let created_names = async {
            let Some(w) = created_watch.borrow_mut().take() else { return };
            let fd = match w.fd().and_then(|fd| crate::sys::async_fd(fd, tokio::io::Interest::READABLE)) {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::warn!("cannot watch for protected names: {e}");
                    return;
                }
            };
            let settle = |paths: Vec<PathBuf>| {
                for path in paths {
                    let (action, moved, error) = match quarantine.borrow_mut().dir() {
                        Err(e) => (report::TamperAction::Reported, None, Some(e)),
                        Ok(q) => crate::snapshot::settle(&path, &crate::snapshot::State::Missing, &q),
                    };
                    let t = report::Tamper { path, change: report::Change::Created, action, quarantine: moved, error, diff: Vec::new() };
                    sink.borrow_mut().emit(&Event::Tamper(t.clone()));
                    created_live.borrow_mut().push(t);
                    if created_live.borrow().len() >= 2 && stopped_for.borrow().is_none() {
                        let names: std::collections::BTreeSet<String> = created_live.borrow().iter().map(|t| crate::termtext::path(&t.path).to_string()).collect();
                        let names: Vec<String> = names.into_iter().collect();
                        *stopped_for.borrow_mut() = Some(names.join(", "));
                        kill_sandbox(sandbox_init.get(), bwrap_pid.get());
                    }
                }
            };
            loop {
                tokio::select! {
                    biased;
                    _ = done_created.notified() => break,
                    ready = fd.readable() => {
                        if let Ok(mut ready) = ready {
                            ready.clear_ready();
                        }
                        settle(w.created());
                    }
                }
            }
            settle(w.created());
            w.stop();
            // The close waits for the kernel to free the marks: on a thread of its own, so
            // that it overlaps the exit checks.
            let _ = std::thread::Builder::new().name("sbx-inotify-close".into()).spawn(move || drop((fd, w)));
        };
        // limits.timeout: SIGTERM to every process of the command, then
        // SIGKILL to the whole sandbox after the grace period.
        let timer = async {
            let Some(timeout) = policy.limits.timeout else { return };
            tokio::select! {
                _ = done_timer.notified() => return,
                _ = tokio::time::sleep(timeout) => {}
            }
            limits_state.timed_out.set(true);
            sink.borrow_mut().limit(limits::Kind::Timeout, &policy.limits, 1, format!(
                "the command ran longer than {}: stopped (SIGTERM, then SIGKILL after {})",
                humantime::format_duration(timeout),
                humantime::format_duration(limits::TERM_GRACE)
            ));
            if let Some(init) = sandbox_init.get() {
                for pid in launch::descendants(init) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                }
            }
            tokio::select! {
                _ = done_timer.notified() => return,
                _ = tokio::time::sleep(limits::TERM_GRACE) => {}
            }
            kill_sandbox(sandbox_init.get(), bwrap_pid.get());
        };
        let seccomp_events = async {
            // Ends when the supervisor ends: at POLLHUP, when every process
            // under the filter has exited.
            while let Some(d) = seccomp_rx.recv().await {
                sink.borrow_mut().seccomp(d);
            }
        };
        let net_events = async {
            // The proxy lives as long as the runtime; its decisions are
            // taken until the command has ended, then drained.
            loop {
                tokio::select! {
                    biased;
                    Some(n) = net_rx.recv() => sink.borrow_mut().net(n),
                    _ = done_net.notified() => break,
                }
            }
            while let Ok(n) = net_rx.try_recv() {
                sink.borrow_mut().net(n);
            }
        };
        let watch = async {
            let Some(rx) = tracer_rx else { return 0 };
            let Ok(Some(mut tracer)) = rx.await else { return 0 };
            let mut batch = Vec::new();
            loop {
                tokio::select! {
                    biased;
                    _ = done.notified() => break,
                    r = tracer.wait_batch(&mut batch) => {
                        if let Err(e) = r {
                            tracing::warn!("the tracer's ring buffer failed: {e}");
                            break;
                        }
                        if !batch.is_empty() {
                            sink.borrow_mut().kernel(&batch);
                            batch.clear();
                        }
                    }
                }
            }
            tracer.drain_now(&mut batch);
            sink.borrow_mut().kernel(&batch);
            // Detached here, before the cgroup goes.
            tracer.lost()
        };
        let output = async {
            let Some(master) = pty_master.as_ref() else { return };
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    biased;
                    r = read_pty(master, &mut buf) => match r {
                        Ok(n) if n > 0 => {
                            if let Some(ui) = &ui_tx {
                                let _ = ui.send(tui::Msg::Output(buf[..n].to_vec())).await;
                            }
                        }
                        _ => break,
                    },
                    _ = done_output.notified() => break,
                }
            }
        };
        let session = async {
            let (outcome, ebpf_lost, (), (), (), (), (), ()) = tokio::join!(launch, watch, seccomp_events, net_events, output, limits_watch, timer, created_names);
            let supervisor = supervisor.borrow_mut().take();
            let mut seccomp_dropped = 0;
            if let Some(s) = supervisor {
                match s.wait().await {
                    Ok(stats) => seccomp_dropped = stats.events_dropped,
                    Err(e) => tracing::warn!("the seccomp supervisor failed: {e}"),
                }
            }
            let code = match &outcome {
                Ok(_) if limits_state.timed_out.get() => limits::EXIT_TIMEOUT,
                Ok(Outcome::Exited(code)) => *code,
                Err(_) => crate::EXIT_SETUP,
            };
            let proxy_dropped = proxy.dropped_events();
            let lost = ebpf_lost + seccomp_dropped + proxy_dropped;
            // Every process of the sandbox is gone (its pid namespace ended with bwrap).
            let mut tampers = guard.verify_into(&mut quarantine.borrow_mut());
            tampers.extend(new_repos.verify_into(&mut quarantine.borrow_mut()));
            let agent_changes = agent_config.changes();
            // Reverted unless kept by the flag or, on the dashboard, by the user; a
            // dashboard that is gone (quit, failed) keeps nothing.
            let keep = match (&ui_tx, review_rx.as_mut()) {
                (Some(ui), Some(answer)) if !agent_changes.is_empty() && !opts.keep_agent_config => {
                    let files = agent_changes.iter().map(|c| tui::ReviewFile { path: c.path.display().to_string(), diff: c.diff.clone() }).collect();
                    ui.send(tui::Msg::Review(files)).await.is_ok() && answer.recv().await.unwrap_or(false)
                }
                _ => opts.keep_agent_config,
            };
            tampers.extend(agent_changes.iter().map(|c| crate::agentconf::settle(c, keep, &mut quarantine.borrow_mut())));
            *tampered.borrow_mut() = tampers;
            let summary = {
                let mut sink = sink.borrow_mut();
                if sink.started.is_some() {
                    for t in tampered.borrow().iter() {
                        sink.emit(&Event::Tamper(t.clone()));
                    }
                    for (source, count) in [("ebpf", ebpf_lost), ("seccomp", seccomp_dropped), ("proxy", proxy_dropped)] {
                        if count > 0 {
                            sink.emit(&Event::Loss(report::Loss { source, count }));
                        }
                    }
                    sink.emit(&Event::SessionEnd(report::SessionEnd { exit_code: code, lost }));
                }
                sink.started.is_some().then(|| sink.summary())
            };
            if let Some(ui) = &ui_tx {
                let _ = ui.send(tui::Msg::Exited(code)).await;
            }
            (outcome, lost, summary)
        };
        let dashboard = async {
            let Some(rx) = ui_rx else { return };
            let Some(master) = pty_master.as_ref() else { return };
            let app = tui::App::new(&command, std::time::Instant::now()).start(opts.dashboard_start);
            let (input_tx, mut input_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
            let (answer_tx, answer_rx) = tokio::sync::mpsc::channel::<(u64, proxy::ask::Answer)>(64);
            let asker = ask_loop(ask_rx, answer_rx, opts.ask.as_ref(), &sink, ui_tx.as_ref());
            let writer = async {
                while let Some(bytes) = input_rx.recv().await {
                    if write_pty(master, &bytes).await.is_err() {
                        break;
                    }
                }
            };
            let ui = async {
                let to_command = move |to| match to {
                    tui::ToCommand::Input(bytes) => drop(input_tx.try_send(bytes)),
                    // The kernel sends the command SIGWINCH; a pty whose command
                    // has gone may refuse, which changes nothing.
                    tui::ToCommand::Resize { cols, rows } => drop(crate::sys::set_window_size(master.get_ref(), cols, rows)),
                };
                let action = tui::run(app, rx, to_command, tui::RunOptions {
                    fps: 20,
                    stderr_to: Some(dashboard_stderr.clone()),
                    answers: Some(answer_tx),
                    review: review_tx,
                })
                .await;
                if matches!(action, Ok(tui::Action::KillAndQuit) | Err(_)) {
                    kill_sandbox(sandbox_init.get(), bwrap_pid.get());
                }
                if let Err(e) = action {
                    eprintln!("sbx: the dashboard failed: {e}");
                }
            };
            tokio::join!(writer, ui, asker);
        };
        let (result, ()) = tokio::join!(session, dashboard);
        result
    });

    drop(cgroup);
    // Every process of the sandbox is gone: the placeholders (still empty) go too.
    drop(placeholders);
    let mut sink = sink.into_inner();
    let log_error = sink.log.as_mut().and_then(LogWriter::finish);
    if opts.dashboard {
        if let Ok(text) = crate::fsio::read_to_string(&dashboard_stderr) {
            // sbx's own messages, which quote paths and hosts: escaped,
            // line by line.
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
    if let Some(names) = stopped_for.borrow().as_ref() {
        eprintln!("sbx: stopped the command: it created protected names that were missing at start, twice ({}); see the tamper lines", crate::termtext::escape(names));
    }
    let keep_flag = opts.keep_agent_config;
    for t in created_live.borrow().iter().chain(tampered.borrow().iter()) {
        let q = |q: &Option<PathBuf>| q.as_ref().map_or_else(String::new, |q| q.display().to_string());
        if t.action == report::TamperAction::Stripped {
            eprintln!("sbx: tamper: {} of a repository the command created had keys that run commands; they were removed (the whole file is in {}):", crate::termtext::path(&t.path), q(&t.quarantine));
            for line in &t.diff {
                eprintln!("sbx:   {}", crate::termtext::escape(line));
            }
            continue;
        }
        if !t.diff.is_empty() {
            let done = match t.action {
                report::TamperAction::Reverted => format!("reverted; what the command wrote is in {}", q(&t.quarantine)),
                report::TamperAction::Kept if keep_flag => "kept (--keep-agent-config)".to_string(),
                report::TamperAction::Kept => "kept (you kept it at the dashboard)".to_string(),
                _ => format!("left in place: {}", t.error.as_deref().unwrap_or("?")),
            };
            eprintln!("sbx: tamper: the command {} {}, agent configuration that runs commands outside the sandbox; {}", t.change.as_str(), crate::termtext::path(&t.path), crate::termtext::escape(&done));
            for line in &t.diff {
                eprintln!("sbx:   {}", crate::termtext::escape(line));
            }
            continue;
        }
        let done = match t.action {
            report::TamperAction::Restored if t.quarantine.is_some() => format!("the original was put back; what the command left is in {}", q(&t.quarantine)),
            report::TamperAction::Restored => "the original was put back".to_string(),
            report::TamperAction::Quarantined => format!("moved to {}", q(&t.quarantine)),
            _ => format!("left in place: {}", t.error.as_deref().unwrap_or("?")),
        };
        eprintln!("sbx: tamper: the protected path {} was {} during the session; {}", crate::termtext::path(&t.path), t.change.as_str(), crate::termtext::escape(&done));
    }
    if let (Some(e), Some(log)) = (&log_error, &sink.log) {
        eprintln!("sbx: warning: could not write the log {}: {}", crate::termtext::path(&log.path), crate::termtext::escape(&e.to_string()));
    }
    let code = match outcome {
        Ok(_) if limits_state.timed_out.get() => limits::EXIT_TIMEOUT,
        Ok(Outcome::Exited(code)) => code,
        Err(e) => return Err(e.into()),
    };
    Ok(code)
}

/// Kills the whole sandbox: its pid 1 (`init`), whose death makes the kernel kill every
/// process of its pid namespace before bwrap, which waits for it, exits; so when the
/// launch ends, nothing of the command runs any more (the exit checks rely on it). bwrap
/// itself when pid 1 is not known yet (--die-with-parent takes the rest).
fn kill_sandbox(init: Option<i32>, bwrap: Option<u32>) {
    let target = init.or(bwrap.map(|b| b as i32));
    if let Some(pid) = target {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
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
            source,
            syscall: Some("openat".into()),
            errno: None,
            operation: Some("create".into()),
            pid: None,
            tid: None,
            comm: None,
            path: path.map(|p| PathBuf::from(OsString::from_vec(p))),
            requested_path: None,
            host,
            port: Some(443),
            detail: call.map(|c| vec![("call".to_string(), c)]).unwrap_or_default(),
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
