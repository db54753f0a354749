//! Starting the sandbox and running it to its end: bwrap spawned with its descriptors,
//! stage-2's report read, the cgroups joined, the proxy's sockets and the seccomp listener
//! received, signals relayed, the exit status returned.

use super::*;

/// What the caller learns once the command is starting.
#[derive(Debug, Default)]
pub struct Started {
    pub enforcement: Enforcement,
    /// CLOCK_MONOTONIC time just before stage-2 exec'd the command: kernel
    /// events before it belong to bwrap's and stage-2's own setup.
    pub exec_ns: u64,
    /// bwrap itself and the sandbox's pid 1 (bwrap's reaper), on the host:
    /// sbx's machinery, not the command.
    pub bwrap_pid: Option<u32>,
    pub sandbox_init: Option<i32>,
    /// Landlock's roots, as planned.
    pub read_roots: Vec<PathBuf>,
    /// The paths denyRead hides.
    pub hidden: Vec<PathBuf>,
    /// What each hidden path was on the host just before bwrap hid it (`remask`); empty
    /// without namespaces, where Landlock hides them.
    pub hidden_files: Vec<super::remask::Target>,
    /// The sandbox's network's no-route counters (`noroute`); none without namespaces.
    pub no_routes: Option<super::noroute::NoRoutes>,
    /// The host files the sandbox sees files of sbx's instead of (its `/etc/resolv.conf`
    /// and `/etc/hosts`), as they were just before, with what it sees.
    pub own_files: Vec<(super::remask::Target, &'static str)>,
    /// The read-only islands and their pins (`Plan::islands`, `Plan::pins`).
    pub islands: Vec<PathBuf>,
    pub pins: Vec<PathBuf>,
    pub write_roots: Vec<PathBuf>,
    pub seccomp: crate::syscalls::FilterOptions,
    /// The seccomp listener, when `Options::notify` asked for one.
    pub listener: Option<OwnedFd>,
    /// The listening sockets inside the sandbox, on 127.0.0.1 and (where the
    /// namespace has IPv6) ::1: the HTTP proxy's, the SOCKS proxy's and one
    /// per `net.local_ports` entry, told apart by their port.
    pub net_listeners: Vec<OwnedFd>,
    pub net: stage2::NetPlan,
    /// Transparent egress: sbx's DNS inside the sandbox, UDP then TCP (listening) on
    /// 127.0.0.1:53 (`inbound::dns_sockets`); empty without it.
    pub dns_sockets: Vec<OwnedFd>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The status to exit with: the command's own, 128+N for signal N, or
    /// 126/127 when it could not be executed.
    Exited(u8),
}

/// An empty file with mode 000 in sbx's runtime directory, bound over each
/// file denyRead hides; removed when the launch ends (the bind mounts keep
/// it alive inside).
pub(super) struct MaskedFile {
    pub(super) path: PathBuf,
}

impl MaskedFile {
    /// `for_other_user`: bubblewrap runs as another user (`identity`), who cannot reach
    /// root's runtime directory: the file goes to `/run/sbx`, a directory of root's that
    /// anyone may enter but no one else may write.
    fn create(for_other_user: bool) -> io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
        // In sbx's private runtime directory, never a predictable name in
        // /tmp; a killed session's file is removed by the next session.
        let path = if for_other_user {
            let dir = Path::new("/run/sbx");
            match std::fs::DirBuilder::new().mode(0o711).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            let meta = std::fs::symlink_metadata(dir)?;
            if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o022 != 0 {
                return Err(io::Error::other("/run/sbx is not a directory only root can write"));
            }
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
            dir.join(format!("hidden-{}-{}", std::process::id(), bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        } else {
            crate::state::session_file("hidden", "").map_err(io::Error::other)?
        };
        // create_new: never follow or reuse what someone else put there.
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o000).open(&path)?;
        Ok(Self { path })
    }
}

impl Drop for MaskedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The descriptors handed to bwrap, kept open until it has started.
pub(super) struct Handoff {
    pub(super) args: File,
    pub(super) exe: File,
    pub(super) plan: File,
    pub(super) report_w: OwnedFd,
    pub(super) status_w: OwnedFd,
    pub(super) control: OwnedFd,
}

/// The bubblewrap to execute: a fixed path only root can change (`trust`).
pub(super) fn find_bwrap() -> Result<PathBuf, LaunchError> {
    trust::find_bwrap().map(|t| t.path).map_err(|rejected| {
        LaunchError::BwrapMissing(rejected.iter().map(|r| r.why.as_str()).collect::<Vec<_>>().join("; "))
    })
}

/// How to launch, beyond the policy.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub require_landlock: bool,
    /// `cgroup.procs` of the session's unified cgroup: the sandbox is moved into it while
    /// bubblewrap builds it, before the command starts.
    pub cgroup_procs_fds: Vec<RawFd>,
    /// `tasks` of each of the session's v1 cgroups: bubblewrap's process joins them
    /// before it execs, so the whole sandbox starts inside.
    pub cgroup_tasks_fds: Vec<RawFd>,
    /// `limits.pids` as `RLIMIT_NPROC` inside (when no cgroup enforces it).
    pub max_tasks: Option<u64>,
    /// Run bubblewrap, and so the command, as this user (`identity`).
    pub run_as: Option<crate::identity::RunAs>,
    /// Blocked syscalls are notified to a supervisor instead of failing in
    /// the filter; `Started::listener` carries the listener.
    pub notify: bool,
    /// A terminal (the slave side of a pty) for the command's stdin, stdout
    /// and stderr, made its controlling terminal: the dashboard shows what
    /// the command writes and passes keys on.
    pub terminal: Option<std::sync::Arc<OwnedFd>>,
    /// Stage-2 execs the command only once this is notified (the kernel
    /// tracer loads while bubblewrap builds the sandbox); none: at once.
    pub start_gate: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// The git administrative paths of the workspace's repositories, when the caller
    /// found them already (`git::admin_paths`); none: found here.
    pub git_paths: Option<Vec<PathBuf>>,
    /// `--no-namespaces`: no bubblewrap; stage-2 is started directly and applies Landlock
    /// and seccomp alone (`direct`), with this network.
    pub direct: Option<direct::Network>,
    /// Variables set for the command (after sbx's own): Claude Code's `CLAUDE_CONFIG_DIR`
    /// when its state file is moved for the session (`agentconf::ClaudeState`).
    pub env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

/// A sandbox whose command is starting: what the layers enforced, and bwrap to wait for.
pub struct Running {
    /// Taken by the caller at will (`std::mem::take`): waiting needs none of it.
    pub started: Started,
    sandbox_init: Option<i32>,
    child: tokio::process::Child,
    signals: Signals,
    new_session: bool,
    /// bwrap's status pipe, stage-2's report pipe and the control socket stay open
    /// until the end: bwrap writes its exit status to the first (a closed pipe would
    /// kill it with SIGPIPE).
    _pipes: (BufReader<tokio::net::unix::pipe::Receiver>, BufReader<tokio::net::unix::pipe::Receiver>, std::os::unix::net::UnixStream),
    _masked: MaskedFile,
    _tmp: Option<SessionTmp>,
}

/// The session's temporary directory without namespaces (`TMPDIR`): made in the host's /tmp
/// with a name no one can guess, mode 0700, the command's; removed with everything in it.
struct SessionTmp(PathBuf);

impl SessionTmp {
    fn create(run_as: Option<&crate::identity::RunAs>) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
        let path = std::env::temp_dir().join(format!("sbx-tmp-{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()));
        // Fails if anything is there already: never someone else's directory.
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let tmp = Self(path);
        if let Some(who) = run_as {
            std::os::unix::fs::lchown(&tmp.0, Some(who.uid), Some(who.gid))?;
        }
        Ok(tmp)
    }
}

impl Drop for SessionTmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Running {
    /// Waits for the command, relaying INT, TERM and HUP to it; returns how it ended.
    pub async fn wait(mut self) -> Result<Outcome, LaunchError> {
        let status = relay_signals_until_exit(&mut self.child, self.signals, self.sandbox_init, self.new_session).await?;
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
            (None, None) => crate::EXIT_SETUP,
        };
        Ok(Outcome::Exited(code))
    }
}

/// Starts the sandbox: returns once stage-2 is about to exec the command (or failed
/// before), with what the layers enforced. Dropping the result kills bwrap, and so the
/// sandbox; [`Running::wait`] waits for the command.
pub async fn start(policy: &Policy, command: Vec<OsString>, options: &Options) -> Result<Running, LaunchError> {
    let bwrap_path = if options.direct.is_some() { PathBuf::from("/proc/self/exe") } else { find_bwrap()? };
    let tmp = match options.direct {
        Some(_) => Some(SessionTmp::create(options.run_as.as_ref()).map_err(io_err("create the session's temporary directory"))?),
        None => None,
    };
    let signals = Signals::catch()?;
    let masked = MaskedFile::create(options.run_as.is_some()).map_err(io_err("create the file that masks hidden files"))?;
    let exe = File::open("/proc/self/exe").map_err(io_err("open sbx's own executable"))?;
    let (report_r, report_w) = sys::pipe().map_err(io_err("create a pipe"))?;
    let (status_r, status_w) = sys::pipe().map_err(io_err("create a pipe"))?;
    // The proxy's sockets and the seccomp listener travel from stage-2 to
    // us over this pair.
    let (control_ours, control_theirs) = std::os::unix::net::UnixStream::pair().map_err(io_err("create a socket pair"))?;
    let control_theirs = OwnedFd::from(control_theirs);
    // The plan's descriptor numbers are needed before the plan exists; the
    // memfd for it is created with a placeholder and filled afterwards.
    let plan_file = sys::memfd_with(c"sbx-stage2-plan", b"").map_err(io_err("create a memfd"))?;
    // Transparent egress (always on: the sandbox has a network namespace of its own): the
    // sandbox's resolv.conf and hosts, read by bwrap from these.
    let resolv = sys::memfd_with(c"sbx-resolv.conf", RESOLV_CONF.as_bytes()).map_err(io_err("create a memfd"))?;
    let hosts = sys::memfd_with(c"sbx-hosts", HOSTS.as_bytes()).map_err(io_err("create a memfd"))?;
    let facts = HostFacts {
        stdin_is_tty: options.terminal.is_some() || sys::is_tty(&io::stdin()),
        own_terminal: options.terminal.is_some(),
        exe_fd: exe.as_raw_fd(),
        plan_fd: plan_file.as_raw_fd(),
        status_fd: status_w.as_raw_fd(),
        report_fd: report_w.as_raw_fd(),
        require_landlock: options.require_landlock,
        control_fd: Some(control_theirs.as_raw_fd()),
        notify: options.notify,
        probe: probe_path,
        expand: glob::expand,
        read_link: |p| std::fs::read_link(p).ok(),
        git_paths: options.git_paths.clone().unwrap_or_else(|| git::admin_paths(&policy.workspace, !policy.fs.allow_git_config)),
        masked_file: masked.path.clone(),
        // As another user (`identity`), the command cannot read root's files anyway.
        hide_host_secrets: nix::unistd::geteuid().is_root() && options.run_as.is_none(),
        max_tasks: options.max_tasks,
        canonical: |p| std::fs::canonicalize(p).ok(),
        run_as: options.run_as.as_ref().map(|r| {
            let own_home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute() && h != Path::new("/"));
            let path = std::env::var_os("PATH").unwrap_or_default();
            let kept = std::env::split_paths(&path).filter(|d| own_home.as_ref().is_none_or(|h| !d.starts_with(h)));
            (r.name.clone(), r.home.clone(), std::env::join_paths(kept).unwrap_or(path))
        }),
        name_files: Some((resolv.as_raw_fd(), hosts.as_raw_fd())),
    };
    let mut plan = match (options.direct, &tmp) {
        (Some(network), Some(tmp)) => {
            // The command's terminal: the dashboard's pty, or what sbx's stdio is.
            let fds: Vec<RawFd> = match &options.terminal {
                Some(t) => vec![t.as_raw_fd()],
                None => vec![0, 1, 2],
            };
            let terminals: Vec<PathBuf> = fds.into_iter().filter_map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()).collect();
            direct::plan(policy, command, &facts, network, &tmp.0, &terminals)?
        }
        _ => plan(policy, command, &facts),
    };
    plan.bwrap.args.extend(options.env.iter().map(|(k, v)| Arg::SetEnv(k.clone(), v.clone())));
    for w in &plan.warnings {
        eprintln!("sbx: warning: {w}");
    }
    for w in &plan.not_enforced {
        eprintln!("sbx: not enforced without namespaces: {w}");
    }
    {
        use std::io::{Seek as _, Write as _};
        let mut f = &plan_file;
        f.write_all(&plan.stage2.encode()).map_err(io_err("write the stage-2 plan"))?;
        f.seek(io::SeekFrom::Start(0)).map_err(io_err("write the stage-2 plan"))?;
    }
    let args = sys::memfd_with(c"sbx-bwrap-args", &plan.bwrap.encode_options()).map_err(io_err("create a memfd"))?;
    let handoff = Handoff { args, exe, plan: plan_file, report_w, status_w, control: control_theirs };

    let mut cmd = tokio::process::Command::new(&bwrap_path);
    if options.direct.is_some() {
        // sbx itself, as stage-2, with what bubblewrap would have set.
        cmd.arg(STAGE2_ARG).arg(handoff.plan.as_raw_fd().to_string());
        for arg in &plan.bwrap.args {
            match arg {
                Arg::Chdir(dir) => {
                    cmd.current_dir(dir);
                }
                Arg::SetEnv(name, value) => {
                    cmd.env(name, value);
                }
                Arg::UnsetEnv(name) => {
                    cmd.env_remove(name);
                }
                _ => {}
            }
        }
        if !(options.terminal.is_some() || sys::is_tty(&io::stdin())) {
            // bwrap's --new-session: a session of its own, away from sbx's terminal.
            // SAFETY: setsid is async-signal-safe.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
            }
        }
    } else {
        cmd.arg("--args").arg(handoff.args.as_raw_fd().to_string()).arg("--").args(&plan.bwrap.command);
    }
    let inherited: [RawFd; 8] = [
        resolv.as_raw_fd(),
        hosts.as_raw_fd(),
        handoff.args.as_raw_fd(),
        handoff.exe.as_raw_fd(),
        handoff.plan.as_raw_fd(),
        handoff.report_w.as_raw_fd(),
        handoff.status_w.as_raw_fd(),
        handoff.control.as_raw_fd(),
    ];
    // SAFETY: the closure runs between fork and exec; it only calls fcntl and
    // write on integers it captured (no allocation), all async-signal-safe.
    let tasks = options.cgroup_tasks_fds.clone();
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            for fd in inherited.into_iter().filter(|&fd| fd >= 0) {
                sys::inherit(fd)?;
            }
            for &fd in &tasks {
                sys::join_own_cgroup(fd)?;
            }
            // On a terminal sbx shares with the command, Ctrl-C reaches the whole job:
            // bubblewrap would die of it, and the sandbox with it, even when the command
            // handles SIGINT (a REPL). bwrap ignores it; stage-2 restores it.
            sys::ignore_interrupts(true)?;
            Ok(())
        });
    }
    if let Some(tty) = &options.terminal {
        let dup = |fd: &OwnedFd| fd.try_clone().map(std::process::Stdio::from).map_err(io_err("use the terminal"));
        cmd.stdout(dup(tty)?).stderr(dup(tty)?);
        // sbx's stdin when it is a pipe or a file (`echo data | sbx monitor -- cmd`): the
        // command reads it; the dashboard takes its keys from the terminal.
        if sys::is_tty(&io::stdin()) {
            cmd.stdin(dup(tty)?);
        }
        // SAFETY: the closure only makes setsid and ioctl calls, which are
        // async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(sys::take_controlling_terminal);
        }
    }
    // Last, once the cgroups are joined and the terminal taken: bwrap runs as the user
    // the command runs as (`identity`).
    if let Some(who) = &options.run_as {
        let (uid, gid, groups) = (who.uid, who.gid, who.groups.clone());
        // SAFETY: the closure makes three system calls on values prepared before the fork
        // (no allocation): async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || sys::become_user(uid, gid, &groups));
        }
    }
    cmd.kill_on_drop(true);
    // What bwrap is about to hide, for the session's watch on the host's replacing it: by
    // its real path now, before the command can plant a symlink on the way.
    let hidden_files = if options.direct.is_some() { Vec::new() } else { plan.hidden.iter().filter_map(|p| super::remask::Target::at_real(p)).collect() };
    let own_files: Vec<(super::remask::Target, &'static str)> = plan
        .bwrap
        .args
        .iter()
        .filter_map(|a| match a {
            bwrap::Arg::RoBindData { fd, dst } if *fd == resolv.as_raw_fd() => Some((dst, RESOLV_CONF)),
            bwrap::Arg::RoBindData { fd, dst } if *fd == hosts.as_raw_fd() => Some((dst, HOSTS)),
            _ => None,
        })
        .filter_map(|(dst, content)| Some((super::remask::Target::at(dst)?, content)))
        .collect();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(LaunchError::BwrapMissing(format!("{}: {e}", bwrap_path.display()))),
        Err(e) => return Err(LaunchError::Spawn(e)),
    };
    // Our copies of the write ends must go, or EOF never comes.
    drop(handoff);

    let mut status = BufReader::new(
        tokio::net::unix::pipe::Receiver::from_owned_fd(status_r).map_err(io_err("watch bwrap's status"))?,
    );
    let report = tokio::net::unix::pipe::Receiver::from_owned_fd(report_r).map_err(io_err("read stage-2's report"))?;

    // bwrap's first status document names the sandbox's pid 1 on the host; without
    // bubblewrap, stage-2's init is the child.
    let mut first = String::new();
    let sandbox_init = if options.direct.is_some() { child.id().map(|pid| pid as i32) } else { match status.read_line(&mut first).await {
        Ok(n) if n > 0 => serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v.get("child-pid").and_then(serde_json::Value::as_i64))
            .map(|pid| pid as i32),
        _ => None,
    } };
    // Its network's no-route counters, opened while it lives (they hold the namespace).
    let no_routes = if options.direct.is_some() { None } else { sandbox_init.and_then(super::noroute::NoRoutes::open) };
    // The sandbox joins the session's unified cgroup while bubblewrap builds
    // it: a move through cgroup.procs waits for an RCU grace period
    // (milliseconds), which would otherwise come before bwrap could start.
    // Stage-2 execs nothing before the gate below, so the command starts
    // inside it. (bwrap's process joined the v1 ones itself, before exec.)
    let joined = match (options.cgroup_procs_fds.is_empty(), child.id(), sandbox_init) {
        (true, _, _) => None,
        (false, Some(bwrap), Some(init)) => {
            let fds = options.cgroup_procs_fds.clone();
            Some(tokio::task::spawn_blocking(move || join_cgroups(&fds, bwrap, init)))
        }
        // bwrap failed before it made the sandbox: stage-2's report says so below.
        (false, _, _) => None,
    };
    // sbx's DNS inside, bound by a connector while bwrap builds the sandbox; before the
    // command starts.
    let dns = match (plan.stage2.seccomp.transparent_egress, sandbox_init) {
        (true, Some(init)) => Some(tokio::task::spawn_blocking(move || inbound::dns_sockets(init))),
        _ => None,
    };
    // Stage-2 waits for one byte before it execs the command: sent once the
    // gate opens (it sits in the socket until stage-2 gets there).
    if let Some(gate) = &options.start_gate {
        gate.notified().await;
    }
    let dns_sockets = match dns {
        Some(dns) => match dns.await.map_err(|e| io::Error::other(e.to_string())).and_then(|r| r) {
            Ok(fds) => fds,
            Err(source) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(LaunchError::Io { what: "bind sbx's DNS inside the sandbox", source });
            }
        },
        None => Vec::new(),
    };
    if let Some(joined) = joined {
        let joined = joined.await.map_err(|e| io::Error::other(e.to_string())).and_then(|r| r);
        if let Err(source) = joined {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(LaunchError::Io { what: "move the sandbox into its cgroup", source });
        }
    }
    let _ = std::io::Write::write_all(&mut &control_ours, &[1]);

    // Read stage-2's lines up to "exec" (or "failed"): bwrap keeps its own
    // copy of the pipe open for the sandbox's lifetime, so EOF comes only
    // when bwrap failed before stage-2 or everything has ended.
    let mut report = BufReader::new(report);
    // Execs are notified for command rules, not blocked: not counted.
    let blocked = crate::syscalls::FilterOptions { mediate_exec: false, ..plan.stage2.seccomp };
    let mut enforcement = Enforcement { blocked_syscalls: blocked.entries().count(), ..Enforcement::default() };
    let mut reached_exec = None;
    let mut stage2_failed = false;
    let mut line = String::new();
    loop {
        line.clear();
        if report.read_line(&mut line).await.map_err(io_err("read stage-2's report"))? == 0 {
            break;
        }
        match stage2::Report::parse_all(&line).first() {
            Some(stage2::Report::Landlock(l)) => enforcement.landlock = Some(*l),
            Some(stage2::Report::Seccomp) => enforcement.seccomp = true,
            Some(stage2::Report::Exec(ns)) => {
                reached_exec = Some(*ns);
                break;
            }
            Some(stage2::Report::Failed) => {
                stage2_failed = true;
                break;
            }
            None => {}
        }
    }
    // Stage-2 runs only once bwrap has created every namespace it was asked
    // for, --unshare-net included.
    enforcement.netns = enforcement.landlock.is_some() && options.direct.is_none();
    enforcement.not_enforced = plan.not_enforced.clone();

    let Some(exec_ns) = reached_exec else {
        let _ = child.wait().await;
        return Err(if stage2_failed { LaunchError::Stage2Failed } else { LaunchError::SetupFailed });
    };
    // Stage-2 sent the proxy's sockets, then the seccomp listener, before
    // it said "exec": both are queued on the control socket.
    let net_listeners = sys::recv_all_fds(&control_ours).map_err(io_err("receive the proxy's sockets"))?;
    // The filter has a listener when events are kept, and always when it mediates connects.
    let listener = if options.notify || plan.stage2.seccomp.notifies() {
        Some(sys::recv_listener(&control_ours).map_err(|e| LaunchError::Io {
            what: "receive the seccomp listener",
            source: io::Error::other(e.to_string()),
        })?)
    } else {
        None
    };
    let started = Started {
        listener,
        net_listeners,
        dns_sockets,
        net: plan.stage2.net.clone(),
        enforcement,
        exec_ns,
        bwrap_pid: child.id(),
        sandbox_init,
        read_roots: plan.stage2.read.clone(),
        hidden: plan.hidden.clone(),
        hidden_files,
        own_files,
        no_routes,
        islands: plan.islands.clone(),
        pins: plan.pins.clone(),
        write_roots: plan.stage2.write.clone(),
        seccomp: plan.stage2.seccomp,
    };
    let new_session = !(options.terminal.is_some() || sys::is_tty(&io::stdin()));
    Ok(Running { started, sandbox_init, child, signals, new_session, _pipes: (status, report, control_ours), _masked: masked, _tmp: tmp })
}

/// Waits for bwrap, passing INT, TERM, HUP and QUIT on to the command (bwrap's
/// pid 1 in the sandbox would ignore them).
pub(super) async fn relay_signals_until_exit(
    child: &mut tokio::process::Child,
    signals: Signals,
    sandbox_init: Option<i32>,
    new_session: bool,
) -> Result<std::process::ExitStatus, LaunchError> {
    let Signals { mut int, mut term, mut hup, mut quit } = signals;
    loop {
        let sig = tokio::select! {
            status = child.wait() => return status.map_err(io_err("wait for bwrap")),
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = hup.recv() => nix::sys::signal::Signal::SIGHUP,
            _ = quit.recv() => nix::sys::signal::Signal::SIGQUIT,
        };
        // On a terminal, Ctrl-C and Ctrl-\ already reached the command's process group:
        // relaying them again would deliver them twice. (sbx catches them so that neither
        // kills it before its exit checks: a command can remap the keys with tcsetattr.)
        if matches!(sig, nix::sys::signal::Signal::SIGINT | nix::sys::signal::Signal::SIGQUIT) && !new_session {
            continue;
        }
        if let Some(pid) = sandbox_init.and_then(command_pid) {
            let pid = nix::unistd::Pid::from_raw(pid);
            // In its own session the command shares a process group with
            // the sandbox's pid 1 (bwrap calls setsid there); signal the
            // group, as a terminal would, so its children hear it too.
            let target = match nix::unistd::getpgid(Some(pid)) {
                Ok(group) if new_session => nix::unistd::Pid::from_raw(-group.as_raw()),
                _ => pid,
            };
            let _ = nix::sys::signal::kill(target, sig);
        }
    }
}

/// The signals sbx relays, caught from before bwrap starts so that none is
/// lost (or kills sbx without its cleanup) during setup.
pub(super) struct Signals {
    pub(super) int: tokio::signal::unix::Signal,
    pub(super) term: tokio::signal::unix::Signal,
    pub(super) hup: tokio::signal::unix::Signal,
    pub(super) quit: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> Result<Self, LaunchError> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind| signal(kind).map_err(io_err("install a signal handler"));
        Ok(Self { int: catch(SignalKind::interrupt())?, term: catch(SignalKind::terminate())?, hup: catch(SignalKind::hangup())?, quit: catch(SignalKind::quit())? })
    }
}

/// Moves the sandbox into each cgroup whose `cgroup.procs` is open as one of `fds`: bwrap,
/// the sandbox's pid 1, then pid 1's children. A child forked before pid 1 moved is in its
/// list once the move returns (fork and migration exclude each other); one forked after is
/// born inside. Stage-2, the one child, forks nothing before the start gate.
pub(super) fn join_cgroups(fds: &[RawFd], bwrap: u32, init: i32) -> io::Result<()> {
    let write = |pid: i64| -> io::Result<()> {
        for &fd in fds {
            // `fd` stays open for the launch (the session owns the cgroup).
            sys::write_all_raw(fd, pid.to_string().as_bytes())?;
        }
        Ok(())
    };
    write(i64::from(init))?;
    write(i64::from(bwrap))?;
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse::<i64>().ok()) {
        match write(child) {
            // Gone already (bwrap failed): nothing to confine.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Every process below the sandbox's pid 1 (the command and its children, however deep),
/// read from `/proc/PID/task/*/children`, parents first.
pub fn descendants(init: i32) -> Vec<i32> {
    let mut out = Vec::new();
    // A pid reused while the tree is read must not send the walk round in circles.
    let mut seen = std::collections::HashSet::new();
    let mut queue = vec![init];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
            for child in children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
                if out.len() < 1 << 16 && seen.insert(child) {
                    out.push(child);
                    queue.push(child);
                }
            }
        }
    }
    out
}

/// The command's host pid: the one child of the sandbox's pid 1.
pub(super) fn command_pid(init: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}
