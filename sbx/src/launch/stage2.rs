//! Stage-2: sbx re-executed inside the sandbox (as `/proc/self/fd/N
//! __sbx_stage2 PLANFD`), after bubblewrap has built the filesystem view and
//! the namespaces. It applies Landlock (the highest ABI this kernel offers),
//! sets no_new_privs, installs the seccomp filter, reports what was enforced
//! on a pipe to the sbx process outside, and execs the command.
//!
//! The plan arrives on a file descriptor in a small length-prefixed binary
//! form, so paths are passed as raw bytes and nothing is parsed as text.

use std::{
    ffi::{CString, OsStr, OsString},
    fs::File,
    io::{Read as _, Write as _},
    os::{
        fd::{FromRawFd as _, RawFd},
        unix::ffi::{OsStrExt as _, OsStringExt as _},
    },
    path::PathBuf,
};

use landlock::{
    ABI, Access, AccessFs, CompatLevel, Compatible as _, PathBeneath, PathFd, Ruleset,
    RulesetAttr as _, RulesetCreatedAttr as _, RulesetStatus, Scope,
};

use super::seccomp;
use crate::sandbox::{LandlockReport, LandlockStatus};

/// What stage-2 must do inside the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Hierarchies the command may read (and execute from).
    pub read: Vec<PathBuf>,
    /// Directories the command may list, not read (the way to a hidden path, `launch::direct`).
    pub list: Vec<PathBuf>,
    /// Hierarchies whose files the command may run and read, without listing a directory
    /// (`allowExecute`).
    pub execute: Vec<PathBuf>,
    /// Hierarchies the command may write.
    pub write: Vec<PathBuf>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
    /// Where to report what was enforced (a pipe to sbx outside).
    pub report_fd: Option<RawFd>,
    /// Refuse to exec unless Landlock is fully enforced (`--require landlock`).
    pub require_landlock: bool,
    /// The policy-dependent parts of the seccomp filter.
    pub seccomp: crate::syscalls::FilterOptions,
    /// A Unix socket to sbx outside: the proxy's listening sockets go
    /// there, and the seccomp listener when `notify` is set.
    pub control_fd: Option<RawFd>,
    /// Blocked syscalls are notified (USER_NOTIF) to sbx's supervisor
    /// instead of failing with EPERM in the filter itself.
    pub notify: bool,
    /// The sandbox's side of the network.
    pub net: NetPlan,
    /// `RLIMIT_NPROC` for the command: `limits.pids` where no cgroup enforces it. The
    /// sandbox has a user namespace of its own, and since Linux 5.14 the kernel counts
    /// processes per user namespace, so this bounds the sandbox's tasks, not the user's.
    pub max_tasks: Option<u64>,
    /// The command gets a process group of its own, the foreground one of its
    /// terminal. Set when the terminal is the command's alone (the
    /// dashboard's pty): the terminal's Ctrl-C then reaches the command, as
    /// it would under a shell, and not bwrap, which would die of it and end
    /// the session whatever the command does with SIGINT.
    pub foreground: bool,
    /// No namespaces (`--no-namespaces`): stage-2 was started by sbx itself, not by
    /// bubblewrap. It drops every capability, and forks: the parent stays as the sandbox's
    /// init (a subreaper that outlives nothing of the command, see [`reap`]), the child
    /// confines itself and execs the command.
    pub direct: bool,
}

/// The ports stage-2 listens on inside the sandbox's network namespace; sbx
/// outside serves the listening sockets, so nothing of sbx runs inside and
/// the ports are ready before the command starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPlan {
    /// The HTTP proxy (CONNECT and absolute-URI requests).
    pub http_port: u16,
    /// The SOCKS5 proxy.
    pub socks_port: u16,
    /// allowLocalOutboundPorts: relayed to the same port of the host's loopback.
    pub local_ports: Vec<u16>,
    /// TCP binds allowed: the sandbox has a network namespace of its own, or allowLocalBinding
    /// is set; otherwise Landlock refuses every TCP bind.
    pub allow_local_binding: bool,
    /// Ports the command may bind even without allowLocalBinding (`-p`).
    pub bind_ports: Vec<u16>,
}

const TAG_READ: u8 = 1;
const TAG_WRITE: u8 = 2;
const TAG_ARG: u8 = 3;
const TAG_REPORT_FD: u8 = 4;
const TAG_REQUIRE_LANDLOCK: u8 = 5;
const TAG_BLOCK_UNIX_SOCKETS: u8 = 6;
const TAG_CONTROL_FD: u8 = 7;
const TAG_NOTIFY: u8 = 8;
const TAG_HTTP_PORT: u8 = 9;
const TAG_SOCKS_PORT: u8 = 10;
const TAG_LOCAL_PORT: u8 = 11;
const TAG_ALLOW_LOCAL_BINDING: u8 = 12;
const TAG_BIND_PORT: u8 = 13;
const TAG_MEDIATE_UNIX_CONNECT: u8 = 14;
const TAG_MAX_TASKS: u8 = 15;
const TAG_MEDIATE_EXEC: u8 = 16;
const TAG_EXECUTE: u8 = 17;
const TAG_FOREGROUND: u8 = 18;
const TAG_DIRECT: u8 = 19;
const TAG_SHARED_HOST: u8 = 20;
const TAG_NO_IP: u8 = 21;
const TAG_LIST: u8 = 22;
const TAG_TRANSPARENT_EGRESS: u8 = 23;

impl Plan {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |tag: u8, bytes: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        for p in &self.read {
            put(TAG_READ, p.as_os_str().as_bytes());
        }
        for p in &self.write {
            put(TAG_WRITE, p.as_os_str().as_bytes());
        }
        for p in &self.execute {
            put(TAG_EXECUTE, p.as_os_str().as_bytes());
        }
        for p in &self.list {
            put(TAG_LIST, p.as_os_str().as_bytes());
        }
        for a in &self.command {
            put(TAG_ARG, a.as_bytes());
        }
        if let Some(fd) = self.report_fd {
            put(TAG_REPORT_FD, fd.to_string().as_bytes());
        }
        if self.require_landlock {
            put(TAG_REQUIRE_LANDLOCK, b"");
        }
        if self.seccomp.block_unix_sockets {
            put(TAG_BLOCK_UNIX_SOCKETS, b"");
        }
        if self.seccomp.mediate_unix_connect {
            put(TAG_MEDIATE_UNIX_CONNECT, b"");
        }
        if self.seccomp.mediate_exec {
            put(TAG_MEDIATE_EXEC, b"");
        }
        if self.seccomp.shared_host {
            put(TAG_SHARED_HOST, b"");
        }
        if self.seccomp.no_ip {
            put(TAG_NO_IP, b"");
        }
        if self.direct {
            put(TAG_DIRECT, b"");
        }
        if self.seccomp.transparent_egress {
            put(TAG_TRANSPARENT_EGRESS, b"");
        }
        if let Some(fd) = self.control_fd {
            put(TAG_CONTROL_FD, fd.to_string().as_bytes());
        }
        if self.foreground {
            put(TAG_FOREGROUND, b"");
        }
        if self.notify {
            put(TAG_NOTIFY, b"");
        }
        put(TAG_HTTP_PORT, &self.net.http_port.to_le_bytes());
        put(TAG_SOCKS_PORT, &self.net.socks_port.to_le_bytes());
        for port in &self.net.local_ports {
            put(TAG_LOCAL_PORT, &port.to_le_bytes());
        }
        if self.net.allow_local_binding {
            put(TAG_ALLOW_LOCAL_BINDING, b"");
        }
        for port in &self.net.bind_ports {
            put(TAG_BIND_PORT, &port.to_le_bytes());
        }
        if let Some(n) = self.max_tasks {
            put(TAG_MAX_TASKS, &n.to_le_bytes());
        }
        out
    }

    pub fn decode(mut bytes: &[u8]) -> Result<Self, String> {
        let mut plan = Plan::default();
        while !bytes.is_empty() {
            if bytes.len() < 5 {
                return Err("truncated record header".into());
            }
            let tag = bytes[0];
            let len = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            let body = bytes.get(5..5 + len).ok_or("truncated record")?;
            bytes = &bytes[5 + len..];
            let os = || OsString::from_vec(body.to_vec());
            match tag {
                TAG_READ => plan.read.push(os().into()),
                TAG_EXECUTE => plan.execute.push(os().into()),
                TAG_LIST => plan.list.push(os().into()),
                TAG_WRITE => plan.write.push(os().into()),
                TAG_ARG => plan.command.push(os()),
                TAG_REPORT_FD => {
                    let fd = parse_fd(body).ok_or("bad report fd")?;
                    plan.report_fd = Some(fd);
                }
                TAG_REQUIRE_LANDLOCK => plan.require_landlock = true,
                TAG_BLOCK_UNIX_SOCKETS => plan.seccomp.block_unix_sockets = true,
                TAG_MEDIATE_UNIX_CONNECT => plan.seccomp.mediate_unix_connect = true,
                TAG_MEDIATE_EXEC => plan.seccomp.mediate_exec = true,
                TAG_SHARED_HOST => plan.seccomp.shared_host = true,
                TAG_NO_IP => plan.seccomp.no_ip = true,
                TAG_DIRECT => plan.direct = true,
                TAG_TRANSPARENT_EGRESS => plan.seccomp.transparent_egress = true,
                TAG_CONTROL_FD => {
                    let fd = parse_fd(body).ok_or("bad control fd")?;
                    plan.control_fd = Some(fd);
                }
                TAG_NOTIFY => plan.notify = true,
                TAG_FOREGROUND => plan.foreground = true,
                TAG_MAX_TASKS => plan.max_tasks = Some(u64::from_le_bytes(body.try_into().map_err(|_| "bad task limit")?)),
                TAG_HTTP_PORT | TAG_SOCKS_PORT | TAG_LOCAL_PORT | TAG_BIND_PORT => {
                    let port = u16::from_le_bytes(body.try_into().map_err(|_| "bad port")?);
                    match tag {
                        TAG_HTTP_PORT => plan.net.http_port = port,
                        TAG_SOCKS_PORT => plan.net.socks_port = port,
                        TAG_LOCAL_PORT => plan.net.local_ports.push(port),
                        _ => plan.net.bind_ports.push(port),
                    }
                }
                TAG_ALLOW_LOCAL_BINDING => plan.net.allow_local_binding = true,
                other => return Err(format!("unknown record tag {other}")),
            }
        }
        Ok(plan)
    }
}

/// A descriptor number written in decimal.
fn parse_fd(body: &[u8]) -> Option<RawFd> {
    std::str::from_utf8(body).ok()?.parse().ok()
}

/// One line stage-2 writes to sbx outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Landlock(LandlockReport),
    Seccomp,
    /// Everything is in place; the next step is execve, at this
    /// CLOCK_MONOTONIC time (the clock of bpf_ktime_get_ns).
    Exec(u64),
    /// Stage-2 failed before exec and has said why on stderr.
    Failed,
}

impl Report {
    fn line(&self) -> String {
        match self {
            Report::Landlock(l) => format!("landlock {} {}\n", l.abi, l.status.as_str()),
            Report::Seccomp => "seccomp\n".into(),
            Report::Exec(ns) => format!("exec {ns}\n"),
            Report::Failed => "failed\n".into(),
        }
    }

    pub fn parse_all(text: &str) -> Vec<Report> {
        text.lines()
            .filter_map(|line| {
                let mut words = line.split(' ');
                match words.next()? {
                    "landlock" => {
                        let abi = words.next()?.parse().ok()?;
                        let status = match words.next()? {
                            "full" => LandlockStatus::Full,
                            "partial" => LandlockStatus::Partial,
                            _ => LandlockStatus::None,
                        };
                        Some(Report::Landlock(LandlockReport { abi, status }))
                    }
                    "seccomp" => Some(Report::Seccomp),
                    "exec" => Some(Report::Exec(words.next()?.parse().ok()?)),
                    "failed" => Some(Report::Failed),
                    _ => None,
                }
            })
            .collect()
    }
}

/// Stage-2's entry point. Never returns: it execs the command or exits.
pub fn main(plan_fd: &OsStr) -> ! {
    let code = match run(plan_fd) {
        Ok(never) => match never {},
        Err((code, msg)) => {
            eprintln!("sbx: {msg}");
            code
        }
    };
    std::process::exit(i32::from(code))
}

enum Never {}

fn run(plan_fd: &OsStr) -> Result<Never, (u8, String)> {
    let setup = |msg: String| (crate::EXIT_SETUP, msg);
    let fd: RawFd = plan_fd
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| setup(format!("stage-2: bad plan descriptor {plan_fd:?}")))?;
    // SAFETY: sbx outside passed this descriptor for us alone; we own it now.
    let mut file = unsafe { File::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| setup(format!("stage-2: cannot read the plan: {e}")))?;
    drop(file);
    let plan = Plan::decode(&bytes).map_err(|e| setup(format!("stage-2: bad plan: {e}")))?;
    // Nothing sbx holds may leak into the command: every descriptor above
    // stdio closes at exec (the report pipe included, which is how sbx
    // outside learns that exec happened).
    crate::sys::cloexec_from(3).map_err(|e| setup(format!("stage-2: close_range: {e}")))?;
    let mut report = plan.report_fd.map(|fd| {
        // SAFETY: as for the plan descriptor.
        unsafe { File::from_raw_fd(fd) }
    });
    let control = plan.control_fd.map(|fd| {
        // SAFETY: sbx outside passed this socket for us alone.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    });
    if plan.direct {
        // No user namespace to lose them in: every capability goes (root's too), before
        // anything else, in the init and the command alike.
        let direct = crate::sys::drop_capabilities()
            .map_err(|e| format!("cannot drop the capabilities: {e}"))
            .and_then(|()| init(&mut report, control.as_ref()));
        if let Err(e) = direct {
            if let Some(f) = report.as_mut() {
                let _ = f.write_all(Report::Failed.line().as_bytes());
            }
            return Err(setup(e));
        }
    }
    let mut say = |r: Report| {
        if let Some(f) = report.as_mut() {
            let _ = f.write_all(r.line().as_bytes());
        }
    };
    let result = (|| {
        // The proxy's ports, bound before Landlock can refuse TCP binds, and
        // handed to sbx outside, which serves them. Without namespaces there is no
        // loopback of the sandbox's own, so no proxy.
        if let Some(control) = &control {
            let listeners = if plan.direct { Vec::new() } else { open_listeners(&plan.net).map_err(setup)? };
            let fds: Vec<RawFd> = listeners.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
            crate::sys::send_all_fds(control, &fds).map_err(|e| setup(format!("cannot hand the proxy's sockets to sbx: {e}")))?;
        }
        let landlock = apply_landlock(&plan).map_err(|e| setup(format!("cannot apply Landlock: {e}")))?;
        say(Report::Landlock(landlock));
        // Said here, before the command runs, in one line.
        if landlock.status != LandlockStatus::Full {
            let what = format!("Landlock is {} enforced on this host (kernel ABI {})", landlock.status.as_str(), landlock.abi);
            if plan.require_landlock {
                return Err(setup(format!("{what}, and --require landlock was given")));
            }
            eprintln!("sbx: warning: {what}; bubblewrap's filesystem view still applies");
        }
        if let Some(n) = plan.max_tasks {
            let limit = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit reads one rlimit.
            if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) } != 0 {
                return Err(setup(format!("cannot set RLIMIT_NPROC for limits.pids: {}", std::io::Error::last_os_error())));
            }
        }
        // Not fatal: the command runs all the same, with Ctrl-C ending the session.
        if plan.foreground
            && let Err(e) = take_foreground()
        {
            eprintln!("sbx: warning: the command is not its terminal's foreground process group ({e}): Ctrl-C ends the sandbox");
        }
        let (action, listener) = match (plan.notify, plan.seccomp.notifies(), &control) {
            (true, _, Some(_)) => (seccomp::DenyAction::UserNotif, seccomp::Listener::New),
            // connect(2) and exec are notified whatever the deny action: the supervisor must run.
            (false, true, Some(_)) => (seccomp::DenyAction::Errno, seccomp::Listener::New),
            _ => (seccomp::DenyAction::Errno, seccomp::Listener::None),
        };
        let program = seccomp::compile_with(action, &plan.seccomp).map_err(|e| setup(format!("cannot build the seccomp filter: {e}")))?;
        let listener = seccomp::install(&program, listener).map_err(|e| setup(format!("cannot install the seccomp filter: {e}")))?;
        if let (Some(sock), Some(listener)) = (&control, listener) {
            // sendmsg is not in the filter, so the handover is never notified.
            crate::sys::send_listener(sock, listener).map_err(|e| setup(format!("cannot hand the seccomp listener to sbx: {e}")))?;
        }
        say(Report::Seccomp);
        // sbx outside says when the command may start (its kernel tracer
        // may still be loading): one byte on the control socket.
        if let Some(control) = &control {
            let mut go = [0u8; 1];
            loop {
                match nix::unistd::read(control, &mut go) {
                    Ok(1) => break,
                    Err(nix::errno::Errno::EINTR) => continue,
                    _ => return Err(setup("stage-2: sbx went away before the command could start".into())),
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        say(Report::Failed);
        return Err(e);
    }
    say(Report::Exec(monotonic_ns()));
    drop(report);
    // bwrap was started ignoring SIGINT and SIGQUIT (`launch::run`): the command gets the
    // default actions, as from a shell.
    if let Err(e) = crate::sys::ignore_interrupts(false) {
        eprintln!("sbx: warning: Ctrl-C may not reach the command: {e}");
    }
    exec(&plan.command)
}

/// Listening sockets on the sandbox's loopback for the HTTP proxy, the SOCKS
/// proxy and each local port: on 127.0.0.1, which must succeed, and on ::1,
/// which is skipped where the namespace has no IPv6 (a program may resolve
/// `localhost` to either). sbx tells them apart by their port.
fn open_listeners(net: &NetPlan) -> Result<Vec<std::os::fd::OwnedFd>, String> {
    let ports: Vec<u16> = [net.http_port, net.socks_port].into_iter().chain(net.local_ports.iter().copied()).collect();
    let mut out = Vec::with_capacity(ports.len() * 2);
    for &port in &ports {
        let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port} inside the sandbox: {e}"))?;
        out.push(l.into());
    }
    for &port in &ports {
        // std sets IPV6_V6ONLY for ::1 (it cannot be dual-stack anyway).
        if let Ok(l) = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, port)) {
            out.push(l.into());
        }
    }
    Ok(out)
}

/// Without namespaces (`Plan::direct`), the sandbox's init: forks; the child returns and
/// goes on to confine itself and exec the command; the parent never returns (see [`reap`]).
/// It is what bubblewrap's pid 1 is otherwise: sbx outside signals the command through it
/// (`launch::command_pid`) and waits for it.
fn init(report: &mut Option<File>, control: Option<&std::os::fd::OwnedFd>) -> Result<(), String> {
    use nix::unistd::{ForkResult, fork};
    // Orphans of the command (a double fork, a daemon) become ours, not the host's init's,
    // so that reap finds them.
    crate::sys::become_subreaper().map_err(|e| format!("cannot become the sandbox's subreaper: {e}"))?;
    // SAFETY: stage-2 is single-threaded (no runtime has started in this process), so the
    // child may run any code.
    match unsafe { fork() }.map_err(|e| format!("cannot fork the sandbox's init: {e}"))? {
        ForkResult::Child => Ok(()),
        ForkResult::Parent { child } => {
            // The command's pipe and socket are the child's: EOF must come when it execs.
            drop(report.take());
            if let Some(fd) = control {
                let _ = nix::unistd::close(std::os::fd::AsRawFd::as_raw_fd(fd));
            }
            reap(child)
        }
    }
}

/// The init's life: reaps whatever ends, and once the command itself has ended, kills and
/// reaps everything it left (as the end of a pid namespace would), then exits with the
/// command's status (128+N for a signal). Dies with sbx (`PR_SET_PDEATHSIG`).
fn reap(command: nix::unistd::Pid) -> ! {
    use nix::sys::wait::{WaitStatus, waitpid};
    // sbx gone, the init goes too (what its command left is then not stopped: said in
    // `direct::not_enforced`). Signals to the command's process group (sbx's relay, the
    // terminal's Ctrl-C) are not for it: it would die before the command, and what the
    // command left would be the host's init's.
    let _ = crate::sys::die_with_parent();
    let _ = crate::sys::ignore_job_signals();
    let mut code = None;
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, c)) if pid == command => code = Some(c),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => code = Some(128 + sig as i32),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // No child left.
            Err(_) => break,
        }
        if code.is_some() {
            for pid in super::descendants(std::process::id() as i32) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    std::process::exit(code.unwrap_or(i32::from(crate::EXIT_SETUP)))
}

/// Puts this process (the command, once it execs) in a process group of its
/// own and makes it the foreground group of its terminal (stdout: stdin is
/// a pipe with `echo data | sbx monitor`), as a shell does for a job.
fn take_foreground() -> nix::Result<()> {
    use nix::sys::signal::{SigHandler, Signal, signal};
    use nix::unistd::{Pid, getpgrp, setpgid, tcsetpgrp};
    setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    // A process of a background group that sets the foreground is stopped
    // by SIGTTOU unless it ignores it; the default comes back before exec.
    // SAFETY: SIG_IGN and the previous disposition (the default: stage-2
    // installs no handler) run no code of ours.
    let previous = unsafe { signal(Signal::SIGTTOU, SigHandler::SigIgn) }?;
    let result = tcsetpgrp(std::io::stdout(), getpgrp());
    // SAFETY: as above.
    unsafe { signal(Signal::SIGTTOU, previous) }?;
    result
}

/// Execs the command, searching PATH like a shell does: a directory the
/// command cannot enter is skipped (glibc's execvp would report EACCES for
/// the whole search); 127 when no candidate exists, 126 when one exists but
/// cannot be executed.
fn exec(command: &[OsString]) -> Result<Never, (u8, String)> {
    let Some(program) = command.first() else {
        return Err((crate::EXIT_SETUP, "no command to run".into()));
    };
    let args: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| (crate::EXIT_SETUP, "an argument contains a NUL byte".into()))?;
    let candidates: Vec<PathBuf> = if program.as_bytes().contains(&b'/') {
        vec![PathBuf::from(program)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path).map(|dir| dir.join(program)).collect()
    };
    let shown = program.to_string_lossy();
    let mut failure = None;
    for candidate in candidates {
        if std::fs::metadata(&candidate).is_err() {
            continue;
        }
        let Ok(path) = CString::new(candidate.as_os_str().as_bytes()) else { continue };
        match nix::unistd::execv(&path, &args) {
            Ok(never) => match never {},
            Err(err) => failure = failure.or(Some(err)),
        }
    }
    Err(match failure {
        None => (crate::EXIT_NOT_FOUND, format!("{shown}: command not found in the sandbox")),
        Some(err) => (crate::EXIT_NOT_EXECUTABLE, format!("{shown}: cannot execute: {}", err.desc())),
    })
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

fn abi_for(version: i64) -> Option<ABI> {
    Some(match version {
        ..=0 => return None,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        7 => ABI::V7,
        8 => ABI::V8,
        _ => ABI::V9,
    })
}

fn apply_landlock(plan: &Plan) -> Result<LandlockReport, landlock::RulesetError> {
    let kernel = crate::sys::landlock_abi();
    let Some(abi) = abi_for(kernel) else {
        return Ok(LandlockReport { abi: 0, status: LandlockStatus::None });
    };
    let rules = |paths: &[PathBuf], access: landlock::BitFlags<AccessFs>| -> Vec<PathBeneath<PathFd>> {
        paths
            .iter()
            .filter_map(|p| {
                let is_dir = std::fs::metadata(p).map(|m| m.is_dir()).ok()?;
                let fd = PathFd::new(p).ok()?;
                let access = if is_dir { access } else { access & AccessFs::from_file(abi) };
                Some(PathBeneath::new(fd, access))
            })
            .collect()
    };
    // Without allowLocalBinding in a sandbox sharing the host's network, every TCP bind is
    // refused (ABI 4+): the proxy's ports were bound before this point.
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::BestEffort).handle_access(AccessFs::from_all(abi))?;
    if plan.seccomp.no_ip {
        // No network (`--no-namespaces`): no TCP bind or connect at all (ABI 4+), beside
        // the seccomp filter's refusal of IP sockets.
        ruleset = ruleset.handle_access(landlock::AccessNet::BindTcp | landlock::AccessNet::ConnectTcp)?;
    } else if !plan.net.allow_local_binding {
        ruleset = ruleset.handle_access(landlock::AccessNet::BindTcp)?;
    }
    let status = ruleset
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(rules(&plan.read, AccessFs::from_read(abi)).into_iter().map(Ok::<_, landlock::RulesetError>))?
        .add_rules(rules(&plan.execute, AccessFs::Execute | AccessFs::ReadFile).into_iter().map(Ok::<_, landlock::RulesetError>))?
        .add_rules(rules(&plan.list, AccessFs::ReadDir.into()).into_iter().map(Ok::<_, landlock::RulesetError>))?
        .add_rules(rules(&plan.write, AccessFs::from_all(abi)).into_iter().map(Ok::<_, landlock::RulesetError>))?
        .add_rules(
            plan.net
                .bind_ports
                .iter()
                .filter(|_| !plan.net.allow_local_binding && !plan.seccomp.no_ip)
                .map(|&port| Ok::<_, landlock::RulesetError>(landlock::NetPort::new(port, landlock::AccessNet::BindTcp))),
        )?
        // Keep Landlock's audit records after the exec of the command (ABI 7).
        .log_new_exec(true)?
        .restrict_self()?;
    let status = match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::Full,
        RulesetStatus::PartiallyEnforced => LandlockStatus::Partial,
        RulesetStatus::NotEnforced => LandlockStatus::None,
    };
    Ok(LandlockReport { abi: kernel as u32, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_round_trips_raw_bytes() {
        let plan = Plan {
            read: vec!["/".into()],
            execute: vec!["/nix/store".into()],
            list: vec!["/home".into()],
            write: vec![OsString::from_vec(vec![b'/', 0xfe]).into(), "/w s".into()],
            command: vec!["sh".into(), "-c".into(), "echo 'a b'".into(), "".into()],
            report_fd: Some(9),
            require_landlock: true,
            seccomp: crate::syscalls::FilterOptions { block_unix_sockets: true, mediate_unix_connect: true, mediate_exec: true, shared_host: true, no_ip: true, transparent_egress: true },
            control_fd: Some(12),
            notify: true,
            net: NetPlan { http_port: 3128, socks_port: 1080, local_ports: vec![5432, 11434], allow_local_binding: true, bind_ports: vec![8000] },
            max_tasks: Some(4096),
            foreground: true,
            direct: true,
        };
        assert_eq!(Plan::decode(&plan.encode()).unwrap(), plan);
        assert!(Plan::decode(&[TAG_READ, 9, 0, 0, 0, b'/']).is_err());
    }

    #[test]
    fn reports_round_trip() {
        let all = [
            Report::Landlock(LandlockReport { abi: 7, status: LandlockStatus::Full }),
            Report::Seccomp,
            Report::Exec(42),
            Report::Failed,
        ];
        let text: String = all.iter().map(Report::line).collect();
        assert_eq!(text, "landlock 7 full\nseccomp\nexec 42\nfailed\n");
        assert_eq!(Report::parse_all(&text), all);
    }
}
