//! What runs beside the command: the `--ask` loop, the dashboard's pty, the proxy's servers
//! inside the sandbox and `-p`'s inbound connections.

use super::*;

/// `--ask`: takes held connections from the proxy to the dashboard and
/// answers from the dashboard back to the proxy; denies those that wait
/// longer than the timeout; writes "always" answers to the policy file;
/// records every decision as a `policy` event. Ends when the dashboard
/// does (its answer channel closes); connections still held are then
/// denied by the proxy's own bound.
pub(super) async fn ask_loop(
    requests: Option<tokio::sync::mpsc::Receiver<proxy::ask::AskRequest>>,
    mut answers: tokio::sync::mpsc::Receiver<(u64, proxy::ask::Answer)>,
    opts: Option<&AskOptions>,
    sink: &RefCell<Sink>,
    ui: Option<&tokio::sync::mpsc::Sender<tui::Msg>>,
) {
    use proxy::ask::Answer;
    let (Some(mut requests), Some(opts), Some(ui)) = (requests, opts, ui) else { return };
    let mut pending: BTreeMap<u64, (proxy::ask::AskRequest, tokio::time::Instant)> = BTreeMap::new();
    let mut next_id = 0u64;
    let config_label = opts.config.display().to_string();
    // Answers one held connection and records it. An "always" answer is
    // written to the policy file on tokio's blocking pool: this thread
    // serves the proxy and the seccomp supervisor, and must never wait on
    // a file (`fsio` refuses FIFOs and devices; a slow disk stays off it too).
    let decide = |req: proxy::ask::AskRequest, answer: Answer| async move {
        let proxy::ask::AskRequest { host, port, reply, .. } = req;
        let entry = proxy::Host::parse(&host).map_or_else(|_| format!("{host}:{port}"), |h| crate::suggest::domain_entry(&h, port));
        let key = if answer.allows() { "network.allowedDomains" } else { "network.deniedDomains" };
        let always = matches!(answer, Answer::AllowAlways | Answer::DenyAlways);
        // The answer holds for the connection (and, "always", for the
        // session) whether or not the file can be written.
        let _ = reply.send(answer);
        let mut risk = Vec::new();
        if always {
            let (config, item) = (opts.config.clone(), entry.clone());
            let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let comment = format!("{} at the dashboard (sbx monitor --ask) {} by {}", if answer.allows() { "allowed" } else { "denied" }, &date[..10], report::current_user());
            let written = tokio::task::spawn_blocking(move || {
                let cwd = std::env::current_dir().unwrap_or_default();
                crate::suggest::Target::open(&config, &cwd, None).and_then(|t| t.append(key, &item, comment))
            })
            .await
            .unwrap_or_else(|e| Err(anyhow::anyhow!("the writer failed: {e}")));
            if let Err(e) = written {
                let why = crate::termtext::escape(&format!("{e:#}")).into_owned();
                eprintln!("sbx: warning: could not remember the answer for {}: {why}", crate::termtext::escape(&entry));
                risk.push(format!("not written to the policy file: {why}"));
            }
        }
        sink.borrow_mut().emit(&Event::Policy(report::PolicyEvent {
            origin: report::PolicyOrigin::Ask,
            action: answer.into(),
            key: key.to_string(),
            change: if always { report::PolicyChange::Add } else { report::PolicyChange::None },
            value: entry,
            config: always.then(|| opts.config.clone()),
            risk,
            answers: None,
            host: Some(host),
            port: Some(port),
        }));
    };
    loop {
        let next_deadline = pending.values().map(|(_, d)| *d).min();
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { break };
                next_id += 1;
                let deadline = tokio::time::Instant::now() + opts.timeout;
                let ask = tui::Ask { id: next_id, host: req.host.clone(), port: req.port, protocol: req.protocol.as_str(), config: config_label.clone(), deadline: deadline.into_std() };
                // A prompt the dashboard cannot take is denied at once.
                if ui.send(tui::Msg::Ask(ask)).await.is_err() {
                    decide(req, Answer::DenyOnce).await;
                    continue;
                }
                pending.insert(next_id, (req, deadline));
            }
            answer = answers.recv() => {
                let Some((id, answer)) = answer else { break };
                let Some((req, _)) = pending.remove(&id) else { continue };
                let same = (req.host.clone(), req.port);
                decide(req, answer).await;
                // "Always" settles every other connection to the same place.
                if matches!(answer, Answer::AllowAlways | Answer::DenyAlways) {
                    let others: Vec<u64> = pending.iter().filter(|(_, (r, _))| (r.host.as_str(), r.port) == (same.0.as_str(), same.1)).map(|(id, _)| *id).collect();
                    for id in others {
                        if let Some((req, _)) = pending.remove(&id) {
                            let _ = req.reply.send(if answer.allows() { Answer::AllowAlways } else { Answer::DenyAlways });
                            let _ = ui.try_send(tui::Msg::AskClosed(id));
                        }
                    }
                }
            }
            () = async { tokio::time::sleep_until(next_deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if next_deadline.is_some() => {
                let now = tokio::time::Instant::now();
                let expired: Vec<u64> = pending.iter().filter(|(_, (_, d))| *d <= now).map(|(id, _)| *id).collect();
                for id in expired {
                    if let Some((req, _)) = pending.remove(&id) {
                        decide(req, Answer::Timeout).await;
                        let _ = ui.try_send(tui::Msg::AskClosed(id));
                    }
                }
            }
        }
    }
}

/// Reads what the command wrote to its terminal.
pub(super) async fn read_pty(master: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = master.readable().await?;
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// Writes keys to the command's terminal.
pub(super) async fn write_pty(master: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = master.writable().await?;
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), bytes).map_err(io::Error::from)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

/// Serves the proxy on the listening sockets that stage-2 opened inside the
/// sandbox (on 127.0.0.1 and ::1), each by its port: the HTTP proxy, the
/// SOCKS proxy or a local port, for the runtime's lifetime.
pub(super) fn serve_network(proxy: &Proxy, listeners: Vec<std::os::fd::OwnedFd>, net: &launch::stage2::NetPlan) {
    for fd in listeners {
        let std = std::net::TcpListener::from(fd);
        let listener = std.local_addr().and_then(|a| {
            std.set_nonblocking(true)?;
            Ok((a, tokio::net::TcpListener::from_std(std)?))
        });
        match listener {
            Ok((a, l)) if a.port() == net.http_port => drop(tokio::spawn(proxy::serve_http(l, proxy.clone()))),
            Ok((a, l)) if a.port() == net.socks_port => drop(tokio::spawn(proxy::serve_socks5(l, proxy.clone()))),
            Ok((a, l)) if net.local_ports.contains(&a.port()) => {
                drop(tokio::spawn(proxy::serve_forward(l, proxy.clone(), a.port())));
            }
            Ok((a, _)) => eprintln!("sbx: warning: stage-2 sent a listening socket on {a}, which nothing serves"),
            Err(e) => eprintln!("sbx: warning: cannot serve a listening socket of the sandbox: {e}"),
        }
    }
}

/// Transparent egress: serves sbx's DNS on the sockets bound inside the sandbox (UDP, then
/// TCP), under the proxy's policy; the egress state the supervisor decides direct connects
/// with. None without the sockets.
pub(super) fn serve_dns(proxy: &Proxy, sockets: Vec<std::os::fd::OwnedFd>) -> Option<std::sync::Arc<proxy::egress::Egress>> {
    let mut sockets = sockets.into_iter();
    let (udp, tcp) = (sockets.next()?, sockets.next()?);
    let egress = proxy::egress::Egress::new(proxy);
    let udp = std::net::UdpSocket::from(udp);
    let tcp = std::net::TcpListener::from(tcp);
    let served = udp.set_nonblocking(true).and_then(|()| tcp.set_nonblocking(true)).and_then(|()| {
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        drop(tokio::spawn(proxy::egress::serve_dns_udp(udp, egress.clone())));
        drop(tokio::spawn(proxy::egress::serve_dns_tcp(tcp, egress.clone())));
        Ok(())
    });
    if let Err(e) = served {
        eprintln!("sbx: warning: sbx's DNS in the sandbox is not served: {e}");
    }
    Some(egress)
}

/// `-p`: relays each connection to a host listener to the same port on the
/// sandbox's loopback, through the connector process.
pub(super) fn serve_inbound(listeners: Vec<std::net::TcpListener>, sandbox_init: Option<i32>, proxy: &Proxy) {
    if listeners.is_empty() {
        return;
    }
    let Some(init) = sandbox_init else {
        eprintln!("sbx: warning: --port is unavailable: the sandbox's pid 1 is unknown");
        return;
    };
    let connector = match launch::inbound::Connector::spawn(init) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            eprintln!("sbx: warning: --port is unavailable: cannot start the connector: {e}");
            return;
        }
    };
    for listener in listeners {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { continue };
        let connector = connector.clone();
        let proxy = proxy.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut client, peer)) = listener.accept().await else { continue };
                let Ok(local) = listener.local_addr() else { continue };
                let port = local.port();
                let connector = connector.clone();
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let result = connector.connect(port).await;
                    proxy.report(proxy::NetEvent {
                        time: std::time::SystemTime::now(),
                        protocol: proxy::Protocol::Inbound,
                        host: local.ip().to_string(),
                        port,
                        allowed: result.is_ok(),
                        rule: match &result {
                            Ok(_) => format!("--port {local}"),
                            Err(e) => format!("--port {local}: {e}"),
                        },
                        resolved: None,
                        client: peer.to_string(),
                        dns_type: None,
                    });
                    if let Ok(mut inside) = result {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut inside).await;
                    }
                });
            }
        });
    }
}


/// The command has ended: every pump that runs until then stops (and drains).
#[derive(Clone)]
pub(super) struct Done(tokio::sync::watch::Receiver<bool>);

impl Done {
    pub(super) fn new() -> (tokio::sync::watch::Sender<bool>, Done) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Done(rx))
    }

    /// Returns once the command has ended (or the session is gone).
    pub(super) async fn wait(&mut self) {
        let _ = self.0.wait_for(|&done| done).await;
    }
}

/// The sandbox's processes on the host, once known.
#[derive(Default)]
pub(super) struct SandboxPids {
    bwrap: std::cell::Cell<Option<u32>>,
    init: std::cell::Cell<Option<i32>>,
    /// A pidfd of the sandbox's pid 1, opened while it lives ([`SandboxPids::ended`]).
    init_fd: RefCell<Option<std::os::fd::OwnedFd>>,
}

impl SandboxPids {
    pub(super) fn set(&self, started: &Started) {
        self.bwrap.set(started.bwrap_pid);
        self.init.set(started.sandbox_init);
        *self.init_fd.borrow_mut() = started.sandbox_init.and_then(|pid| crate::sys::pidfd_open(pid as u32).ok());
    }

    /// Waits until the sandbox's pid 1 is gone, and with it every process of its pid
    /// namespace: the kernel kills and reaps them all before pid 1's end is told. bwrap
    /// exits as soon as pid 1 has sent it the command's status, so the launch's end does
    /// not mean that: a process the command left behind runs until pid 1 has taken it down,
    /// and the exit checks must not start before (it could write after them). Pid 1 not
    /// gone within `bound` is killed, and waited for again.
    pub(super) async fn ended(&self, bound: std::time::Duration) {
        let Some(fd) = self.init_fd.borrow_mut().take() else { return };
        let fd = match crate::sys::async_fd(fd, tokio::io::Interest::READABLE) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("cannot wait for the sandbox's pid 1: {e}");
                return;
            }
        };
        if tokio::time::timeout(bound, fd.readable()).await.is_err() {
            self.kill();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fd.readable()).await;
        }
    }

    /// Kills the whole sandbox: its pid 1, whose death makes the kernel kill every
    /// process of its pid namespace (the exit checks wait for that: [`SandboxPids::ended`]).
    /// bwrap itself when pid 1 is not known yet (--die-with-parent takes the rest).
    /// Without namespaces (`--no-namespaces`) pid 1 is stage-2's init, whose death kills
    /// nothing: everything below it is killed first, a few passes in case of a fork in
    /// between.
    pub(super) fn kill(&self) {
        if let Some(init) = self.init.get() {
            for _ in 0..4 {
                let below = launch::descendants(init);
                if below.is_empty() {
                    break;
                }
                for pid in below {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        let target = self.init.get().or(self.bwrap.get().map(|b| b as i32));
        if let Some(pid) = target {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// What the kernel counted against the limits, as it happens (every quarter second) and
/// once more at the end.
pub(super) async fn limits_watch(cgroup: Option<&SessionCgroup>, state: &LimitsState, sink: &RefCell<Sink>, mut done: Done) {
    let Some(cgroup) = cgroup else { return };
    loop {
        tokio::select! {
            biased;
            () = done.wait() => break,
            () = tokio::time::sleep(std::time::Duration::from_millis(250)) => state.observe(cgroup, sink),
        }
    }
    state.observe(cgroup, sink);
}

/// limits.timeout: SIGTERM to every process of the command, then SIGKILL to the whole
/// sandbox after the grace period.
pub(super) async fn timer(state: &LimitsState, sink: &RefCell<Sink>, sandbox: &SandboxPids, mut done: Done) {
    let Some(timeout) = state.limits.timeout else { return };
    tokio::select! {
        () = done.wait() => return,
        () = tokio::time::sleep(timeout) => {}
    }
    state.timed_out.set(true);
    sink.borrow_mut().limit(limits::Kind::Timeout, &state.limits, 1, format!(
        "the command ran longer than {}: stopped (SIGTERM, then SIGKILL after {})",
        humantime::format_duration(timeout),
        humantime::format_duration(limits::TERM_GRACE)
    ));
    if let Some(init) = sandbox.init.get() {
        for pid in launch::descendants(init) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
    }
    tokio::select! {
        () = done.wait() => return,
        () = tokio::time::sleep(limits::TERM_GRACE) => {}
    }
    sandbox.kill();
}

/// Blocked syscalls, as the supervisor decodes them; ends when the supervisor does (at
/// POLLHUP, when every process under the filter has exited) or never started.
pub(super) async fn seccomp_events(mut rx: tokio::sync::mpsc::Receiver<SeccompDenial>, sink: &RefCell<Sink>) {
    while let Some(d) = rx.recv().await {
        sink.borrow_mut().seccomp(d);
    }
}

/// The proxy's decisions: taken until the command has ended, then drained (the proxy
/// lives as long as the runtime).
pub(super) async fn net_events(mut rx: tokio::sync::mpsc::Receiver<NetEvent>, sink: &RefCell<Sink>, mut done: Done) {
    loop {
        tokio::select! {
            biased;
            Some(n) = rx.recv() => sink.borrow_mut().net(n),
            () = done.wait() => break,
        }
    }
    while let Ok(n) = rx.try_recv() {
        sink.borrow_mut().net(n);
    }
}

/// The kernel tracer's events, in batches, until the command has ended, then drained.
/// Returns how many the ring buffer lost, and the tracer's release (its links closed, its
/// slot given back, its ring unmapped: most of a millisecond), begun on a thread of its
/// own so that it overlaps the exit checks: joined before the cgroup goes.
pub(super) async fn kernel_events(tracer: Option<tokio::sync::oneshot::Receiver<Option<Tracer>>>, sink: &RefCell<Sink>, mut done: Done) -> (u64, Option<std::thread::JoinHandle<()>>) {
    let Some(rx) = tracer else { return (0, None) };
    let Ok(Some(mut tracer)) = rx.await else { return (0, None) };
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = done.wait() => break,
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
    let lost = tracer.lost();
    (lost, std::thread::Builder::new().name("sbx-tracer-end".into()).spawn(move || drop(tracer)).ok())
}

/// What the command writes to its pty, to the dashboard.
pub(super) async fn pty_output(master: Option<&tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>, ui: Option<&tokio::sync::mpsc::Sender<tui::Msg>>, mut done: Done) {
    let (Some(master), Some(ui)) = (master, ui) else { return };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            biased;
            r = read_pty(master, &mut buf) => match r {
                Ok(n) if n > 0 => {
                    let _ = ui.send(tui::Msg::Output(buf[..n].to_vec())).await;
                }
                _ => break,
            },
            () = done.wait() => break,
        }
    }
}

/// Opens the command's pty, the size of its place on sbx's terminal, and gives its slave side to the
/// launch; returns the master side.
pub(super) fn open_pty(launch: &mut launch::Options, start: tui::Start) -> Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, SessionError> {
    let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
    // The size the command gets in the pane (or zoomed): the dashboard keeps it so.
    let size = tui::initial_pty_size(cols, rows, start);
    let winsize = nix::pty::Winsize { ws_row: size.1, ws_col: size.0, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(Some(&winsize), None).map_err(|e| SessionError::Pty(e.into()))?;
    nix::fcntl::fcntl(&pty.master, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).map_err(|e| SessionError::Pty(e.into()))?;
    launch.terminal = Some(std::sync::Arc::new(pty.slave));
    crate::sys::async_fd(pty.master, tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE).map_err(SessionError::Pty)
}

/// The dashboard's side of a session: the live view, the keys it passes to the
/// command's pty, and the `--ask` loop. Kills the sandbox when the user quits with
/// "kill" (or the dashboard fails).
pub(super) struct Dashboard<'a> {
    pub(super) rx: tokio::sync::mpsc::Receiver<tui::Msg>,
    pub(super) master: &'a tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    pub(super) command: &'a [OsString],
    pub(super) stderr_to: PathBuf,
    pub(super) ask: Option<&'a AskOptions>,
    pub(super) ask_rx: Option<tokio::sync::mpsc::Receiver<proxy::ask::AskRequest>>,
    pub(super) review: Option<tokio::sync::mpsc::Sender<bool>>,
    pub(super) start: tui::Start,
}

impl Dashboard<'_> {
    pub(super) async fn run(self, sink: &RefCell<Sink>, ui_tx: Option<&tokio::sync::mpsc::Sender<tui::Msg>>, sandbox: &SandboxPids) {
        let app = tui::App::new(self.command, std::time::Instant::now()).start(self.start);
        let (input_tx, mut input_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
        let (answer_tx, answer_rx) = tokio::sync::mpsc::channel::<(u64, proxy::ask::Answer)>(64);
        let asker = ask_loop(self.ask_rx, answer_rx, self.ask, sink, ui_tx);
        let master = self.master;
        let writer = async {
            while let Some(bytes) = input_rx.recv().await {
                if write_pty(master, &bytes).await.is_err() {
                    break;
                }
            }
        };
        let options = tui::RunOptions { fps: 20, stderr_to: Some(self.stderr_to), answers: Some(answer_tx), review: self.review };
        let ui = async {
            let to_command = move |to| match to {
                tui::ToCommand::Input(bytes) => drop(input_tx.try_send(bytes)),
                // The kernel sends the command SIGWINCH; a pty whose command has gone may
                // refuse, which changes nothing.
                tui::ToCommand::Resize { cols, rows } => drop(crate::sys::set_window_size(master.get_ref(), cols, rows)),
            };
            let action = tui::run(app, self.rx, to_command, options).await;
            if matches!(action, Ok(tui::Action::KillAndQuit) | Err(_)) {
                sandbox.kill();
            }
            if let Err(e) = action {
                eprintln!("sbx: the dashboard failed: {e}");
            }
        };
        tokio::join!(writer, ui, asker);
    }
}
