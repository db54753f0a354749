//! From a validated `Policy` to a running sandbox: resolve the policy against
//! this host into a `Plan` (bwrap arguments and the stage-2 plan), start
//! bubblewrap, relay signals to the command and return its exit status.
//!
//! The mount order, which decides what covers what (later wins):
//! 1. the root view: `/` read-only, or under defaultDenyRead only the system
//!    paths, the workspace and allowRead;
//! 2. a minimal `/dev`, a fresh `/proc` (own pid namespace), a private `/tmp`;
//! 3. writable binds: the workspace, then allowWrite;
//! 4. read-only binds over the mandatory protections and denyWrite, so deny
//!    wins over allow for writes;
//! 5. denyRead masks (an empty read-only tmpfs over a directory, /dev/null
//!    over a file), last, so deny wins over allow for reads too.

pub mod bwrap;
pub mod git;
pub mod glob;
// The connector's entry takes its socket from a number on its argv, and spawns with pre_exec.
#[allow(unsafe_code)]
pub mod inbound;
// install: prctl and seccomp(2) with a pointer to the program; its tests fork.
#[allow(unsafe_code)]
pub mod seccomp;
// Takes the descriptors bwrap passed by number, and sets limits between fork and exec.
#[allow(unsafe_code)]
pub mod stage2;
pub mod trust;

use std::{
    ffi::OsString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd as _, OwnedFd, RawFd},
        unix::process::ExitStatusExt as _,
    },
    path::{Path, PathBuf},
};

use thiserror::Error;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::{
    policy::{HOST_SECRETS, Policy, ROOT_HOME, SYSTEM_READ, UNSAFE_ENV},
    sandbox::{Enforcement, HTTP_PROXY_PORT, SOCKS_PROXY_PORT},
    sys,
};
use bwrap::{Arg, Invocation};

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("no bubblewrap that only root can change was found ({0}): install it with `apt-get install bubblewrap` (sbx never runs a bwrap found through $PATH)")]
    BwrapMissing(String),
    #[error("cannot start bubblewrap: {0}")]
    Spawn(#[source] io::Error),
    #[error("cannot {what}: {source}")]
    Io { what: &'static str, source: io::Error },
    #[error("bubblewrap could not set up the sandbox (its message is above)")]
    SetupFailed,
    #[error("the sandbox's stage-2 could not confine the command (its message is above)")]
    Stage2Failed,
    #[error("--require {0}: {1}")]
    Required(&'static str, &'static str),
    #[error(transparent)]
    Glob(#[from] glob::GlobError),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> LaunchError {
    move |source| LaunchError::Io { what, source }
}

/// What the plan needs to know about the host, gathered once so that
/// `plan` stays pure and testable.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// The terminal stays the command's own when stdin is a TTY: no new
    /// session (TIOCSTI is refused by seccomp instead).
    pub stdin_is_tty: bool,
    /// Descriptor of sbx's own executable, inherited by bwrap: stage-2 is
    /// started as /proc/self/fd/N, so it works wherever sbx is installed,
    /// even under a /tmp that the sandbox replaces.
    pub exe_fd: RawFd,
    /// Descriptor of the stage-2 plan.
    pub plan_fd: RawFd,
    /// Where bwrap writes its JSON status.
    pub status_fd: RawFd,
    /// Where stage-2 reports what it enforced.
    pub report_fd: RawFd,
    /// `--require landlock`: stage-2 refuses to exec without it.
    pub require_landlock: bool,
    /// Stage-2's end of the control socket (proxy sockets, seccomp listener).
    pub control_fd: Option<RawFd>,
    /// Blocked syscalls are notified to sbx's supervisor.
    pub notify: bool,
    /// Which candidate paths exist on the host, and what kind they are.
    pub probe: fn(&Path) -> PathKind,
    /// The paths a glob rule matches on the host now.
    pub expand: fn(&Path) -> glob::Expansion,
    /// What a symlink points to (`readlink`), for the system paths that are symlinks.
    pub read_link: fn(&Path) -> Option<PathBuf>,
    /// The git administrative paths of the repositories in the workspace, found at start
    /// (`git::admin_paths`).
    pub git_paths: Vec<PathBuf>,
    /// An empty host file with mode 000, bound over each hidden file.
    pub masked_file: PathBuf,
    /// sbx runs as root, so the command is uid 0 (without capabilities, but still the owner
    /// of root's files): `HOST_SECRETS` and `/root` are hidden.
    pub hide_host_secrets: bool,
    /// `limits.pids` as the command's `RLIMIT_NPROC`, where no cgroup enforces it.
    pub max_tasks: Option<u64>,
    /// The path with every symlink resolved (`realpath`), `None` when it cannot be: a bind
    /// whose path is not its own real path would follow a symlink that a command may have
    /// planted in a writable directory.
    pub canonical: fn(&Path) -> Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Dir,
    File,
    Symlink,
}

/// What a path is on this host, without following a final symlink.
pub fn probe_path(path: &Path) -> PathKind {
    match std::fs::symlink_metadata(path) {
        Err(_) => PathKind::Missing,
        Ok(m) if m.file_type().is_symlink() => PathKind::Symlink,
        Ok(m) if m.is_dir() => PathKind::Dir,
        Ok(_) => PathKind::File,
    }
}

/// The whole launch, resolved for this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub bwrap: Invocation,
    pub stage2: stage2::Plan,
    /// Things the user should know before the command runs (a glob rule
    /// whose expansion was cut short).
    pub warnings: Vec<String>,
    /// The paths denyRead hides, as expanded on this host.
    pub hidden: Vec<PathBuf>,
}

fn net_plan(policy: &Policy) -> stage2::NetPlan {
    stage2::NetPlan {
        http_port: HTTP_PROXY_PORT,
        socks_port: SOCKS_PROXY_PORT,
        local_ports: policy.net.allow_local_outbound_ports.clone(),
        allow_local_binding: policy.net.allow_local_binding,
        bind_ports: policy.net.inbound_ports.clone(),
    }
}

/// The first argument that makes `sbx` run as stage-2.
pub const STAGE2_ARG: &str = "__sbx_stage2";

/// Resolves `policy` and `command` against the host into a plan.
pub fn plan(policy: &Policy, command: Vec<OsString>, facts: &HostFacts) -> Plan {
    let probe = facts.probe;
    let exists = |p: &Path| probe(p) != PathKind::Missing;
    let mut warnings = Vec::new();
    // Glob rules become the paths they match now. Files created later under
    // a glob are not covered by mounts; Landlock still confines writes.
    let mut expand = |list: &[PathBuf]| -> Vec<PathBuf> {
        let mut out = Vec::new();
        for path in list {
            if crate::policy::is_glob(path) {
                let e = (facts.expand)(path);
                if e.truncated {
                    warnings.push(format!(
                        "the rule {} matched more than {} entries deep; only the first part of the tree is covered",
                        path.display(),
                        glob::MAX_ENTRIES
                    ));
                }
                out.extend(e.matches);
            } else {
                out.push(path.clone());
            }
        }
        out
    };
    let allow_read = expand(&policy.fs.allow_read);
    let deny_read = expand(&policy.fs.deny_read);
    let mut policy = policy.clone();
    policy.fs.allow_write = expand(&policy.fs.allow_write);
    policy.fs.deny_write = expand(&policy.fs.deny_write);
    let policy = &policy;
    let mut args = vec![
        Arg::UnshareUser,
        Arg::DisableUserns,
        Arg::UnsharePid,
        Arg::UnshareIpc,
        Arg::UnshareUts,
        Arg::UnshareNet,
        Arg::UnshareCgroupTry,
        Arg::DieWithParent,
        Arg::CapDropAll,
        Arg::Hostname("sbx".into()),
    ];
    if !facts.stdin_is_tty {
        args.push(Arg::NewSession);
    }

    // 1. The root view.
    let mut readable: Vec<PathBuf> = Vec::new();
    if policy.fs.default_deny_read {
        for sys_path in SYSTEM_READ.iter().map(PathBuf::from).chain(allow_read.iter().cloned()) {
            match probe(&sys_path) {
                PathKind::Missing => {}
                PathKind::Symlink => {
                    if let Some(target) = (facts.read_link)(&sys_path) {
                        args.push(Arg::Symlink { target, dst: sys_path.clone() });
                    }
                }
                PathKind::Dir | PathKind::File => {
                    args.push(Arg::RoBind { src: sys_path.clone(), dst: sys_path.clone() });
                    readable.push(sys_path);
                }
            }
        }
        args.push(Arg::RoBind { src: policy.workspace.clone(), dst: policy.workspace.clone() });
        readable.push(policy.workspace.clone());
    } else {
        args.push(Arg::RoBind { src: "/".into(), dst: "/".into() });
        readable.push("/".into());
    }

    // 2. Kernel filesystems and a private /tmp. /tmp and /dev/shm are tmpfs
    // mounts of `limits.tmpSize` each (bwrap's own default is half the RAM);
    // /dev itself, another tmpfs, is made read-only after the last mount.
    args.push(Arg::Dev("/dev".into()));
    if let Some(size) = policy.limits.tmp_size {
        args.push(Arg::Size(size));
    }
    args.push(Arg::Tmpfs("/dev/shm".into()));
    args.push(Arg::Proc("/proc".into()));
    if let Some(size) = policy.limits.tmp_size {
        args.push(Arg::Size(size));
    }
    args.push(Arg::Tmpfs("/tmp".into()));
    readable.extend(["/dev", "/proc", "/tmp"].map(PathBuf::from));

    // 2b. Host secrets, when the command would own root's files: hidden like
    // denyRead, unless allowRead or allowWrite names the path exactly. root's
    // home becomes an empty tmpfs that can be crossed but not listed (mode
    // 0111), so that the workspace and the allowed paths inside it, bound
    // below, stay reachable; it is made read-only after the last mount.
    // The secret files and directories are masked after every bind (below),
    // so that no bind can land on one.
    let plain = |p: &Path| (facts.canonical)(p).as_deref() == Some(p);
    let mut hidden = Vec::new();
    let mut root_home_masked = false;
    let mut secret_masks = Vec::new();
    if facts.hide_host_secrets {
        let named = |p: &Path| allow_read.iter().chain(&policy.fs.allow_write).any(|a| a == p);
        for pattern in HOST_SECRETS.iter().map(PathBuf::from) {
            let paths = if crate::policy::is_glob(&pattern) { (facts.expand)(&pattern).matches } else { vec![pattern] };
            for path in paths.into_iter().filter(|p| !named(p)) {
                // A link (/var/spool/mail -> ../mail) is masked by its real path.
                let path = match probe(&path) {
                    PathKind::Symlink => match (facts.canonical)(&path) {
                        Some(real) => real,
                        None => continue,
                    },
                    _ => path,
                };
                if hidden.contains(&path) {
                    continue;
                }
                if mask(&mut secret_masks, probe(&path), &path, &facts.masked_file) {
                    hidden.push(path);
                }
            }
        }
        let root = Path::new(ROOT_HOME);
        if probe(root) == PathKind::Dir && !root.starts_with(&policy.workspace) && !named(root) {
            args.push(Arg::Perms(0o111));
            args.push(Arg::Tmpfs(root.to_path_buf()));
            for path in allow_read.iter().filter(|p| p.starts_with(root) && exists(p) && plain(p)) {
                args.push(Arg::RoBind { src: path.clone(), dst: path.clone() });
            }
            hidden.push(root.to_path_buf());
            root_home_masked = true;
        }
    }

    // 3. Writable binds. A bind's source is resolved in the host's view, so
    // a workspace under /tmp is the host's directory, not the new tmpfs.
    // bwrap follows symlinks on both sides of a bind, so an allowWrite entry
    // that is (or goes through) a symlink would make its target writable,
    // whatever the target: one planted by an earlier run (`mv a a.old; ln -s
    // /etc a`) gave the command /etc. Such an entry is not bound.
    let mut writable = vec![PathBuf::from("/tmp"), PathBuf::from("/dev")];
    for path in policy.writable() {
        if !exists(&path) {
            continue;
        }
        if !plain(&path) {
            warnings.push(format!(
                "the allowWrite entry {} is or goes through a symbolic link, so it is not made writable (a command could have planted the link); name the real path instead",
                crate::termtext::path(&path)
            ));
            continue;
        }
        args.push(Arg::Bind { src: path.clone(), dst: path.clone() });
        writable.push(path);
    }

    // 4. Read-only islands inside writable directories: the mandatory protections, the
    // git administrative files of the workspace's repositories, denyWrite. Every directory
    // between a writable root and an island is first bound onto itself: the kernel refuses
    // to rename or remove a mount point (EBUSY), so no rename of an ancestor can carry an
    // island away and leave a writable copy at its path (`mv .git .git-moved`). Each is
    // bound by its real path: bwrap follows symlinks, so a protected name that an earlier
    // run made a link protects its target when the target is writable, and one leading
    // outside the writable directories is left alone (binding it would bring the target, a
    // hidden secret say, into view).
    let mut islands = policy.read_only_within_writable();
    islands.extend(facts.git_paths.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    let islands: Vec<PathBuf> = islands
        .into_iter()
        .filter(|p| exists(p) && writable.iter().any(|w| p.starts_with(w)))
        .filter_map(|p| (facts.canonical)(&p))
        .filter(|real| writable.iter().any(|w| real.starts_with(w)) && seen.insert(real.clone()))
        .collect();
    let mut pins = std::collections::BTreeSet::new();
    for island in &islands {
        let Some(root) = writable.iter().filter(|r| island.starts_with(r)).max_by_key(|r| r.components().count()) else { continue };
        pins.extend(island.ancestors().skip(1).take_while(|a| a != root && a.starts_with(root)).map(Path::to_path_buf));
    }
    for dir in pins.into_iter().filter(|d| probe(d) == PathKind::Dir && plain(d)) {
        args.push(Arg::Bind { src: dir.clone(), dst: dir });
    }
    for path in islands {
        args.push(Arg::RoBind { src: path.clone(), dst: path });
    }

    // 5. Hidden paths: an empty, read-only directory or file with mode 000,
    // so that every attempt to read one fails with EACCES (and is reported)
    // instead of quietly reading nothing. Without capabilities, not even
    // the sandbox's root can read or chmod them.
    for path in &deny_read {
        if mask(&mut args, probe(path), path, &facts.masked_file) {
            hidden.push(path.clone());
        }
    }
    args.append(&mut secret_masks);
    if root_home_masked {
        args.push(Arg::RemountRo(ROOT_HOME.into()));
    }
    // Files written to /dev would take memory beyond limits.tmpSize; the
    // devices, /dev/pts and /dev/shm are mounts of their own and stay as they are.
    args.push(Arg::RemountRo("/dev".into()));

    args.push(Arg::Chdir(policy.workspace.clone()));
    for var in UNSAFE_ENV {
        args.push(Arg::UnsetEnv((*var).into()));
    }
    args.push(Arg::SetEnv("SBX_SANDBOX".into(), "1".into()));
    // The only way out is sbx's proxy; a program that ignores these has no
    // route and fails closed.
    let http = format!("http://127.0.0.1:{HTTP_PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{SOCKS_PROXY_PORT}");
    for (name, value) in [
        ("HTTP_PROXY", &http),
        ("HTTPS_PROXY", &http),
        ("http_proxy", &http),
        ("https_proxy", &http),
        ("ALL_PROXY", &socks),
        ("all_proxy", &socks),
        ("NO_PROXY", &"localhost,127.0.0.1,::1".to_string()),
        ("no_proxy", &"localhost,127.0.0.1,::1".to_string()),
    ] {
        args.push(Arg::SetEnv(name.into(), value.into()));
    }
    args.push(Arg::JsonStatusFd(facts.status_fd));

    let bwrap = Invocation {
        args,
        command: vec![
            format!("/proc/self/fd/{}", facts.exe_fd).into(),
            STAGE2_ARG.into(),
            facts.plan_fd.to_string().into(),
        ],
    };
    let stage2 = stage2::Plan { read: readable, write: writable, command, report_fd: Some(facts.report_fd),
        require_landlock: facts.require_landlock,
        seccomp: crate::syscalls::FilterOptions::for_network(&policy.net),
        control_fd: facts.control_fd,
        notify: facts.notify,
        net: net_plan(policy),
        max_tasks: facts.max_tasks,
    };
    Plan { bwrap, stage2, warnings, hidden }
}

/// Every path this session protects inside its writable paths, existing or not: the
/// mandatory protections, the PATH directories and the git administrative files of the
/// workspace's repositories (denyWrite, the user's own rules, aside). `snapshot::Guard`
/// verifies them after the session.
pub fn protected_paths(policy: &Policy, git_paths: &[PathBuf]) -> Vec<PathBuf> {
    let roots = policy.writable();
    let mut out: Vec<PathBuf> = policy.read_only_within_writable().into_iter().filter(|p| !policy.fs.deny_write.contains(p)).collect();
    out.extend(git_paths.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| roots.iter().any(|r| p.starts_with(r)) && seen.insert(p.clone()));
    out
}

/// Hides `path` (of kind `kind` on the host): an empty, read-only tmpfs with mode 000 over a
/// directory, the masked file over anything else. False when there is nothing to hide.
fn mask(args: &mut Vec<Arg>, kind: PathKind, path: &Path, masked_file: &Path) -> bool {
    match kind {
        PathKind::Missing => return false,
        PathKind::Dir => {
            args.push(Arg::Perms(0));
            args.push(Arg::Tmpfs(path.to_path_buf()));
            args.push(Arg::RemountRo(path.to_path_buf()));
        }
        PathKind::File | PathKind::Symlink => {
            args.push(Arg::RoBind { src: masked_file.to_path_buf(), dst: path.to_path_buf() });
        }
    }
    true
}

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
    pub write_roots: Vec<PathBuf>,
    pub seccomp: crate::syscalls::FilterOptions,
    /// The seccomp listener, when `Options::notify` asked for one.
    pub listener: Option<OwnedFd>,
    /// The listening sockets inside the sandbox, on 127.0.0.1 and (where the
    /// namespace has IPv6) ::1: the HTTP proxy's, the SOCKS proxy's and one
    /// per `net.local_ports` entry, told apart by their port.
    pub net_listeners: Vec<OwnedFd>,
    pub net: stage2::NetPlan,
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
struct MaskedFile {
    path: PathBuf,
}

impl MaskedFile {
    fn create() -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        // In sbx's private runtime directory, never a predictable name in
        // /tmp; a killed session's file is removed by the next session.
        let path = crate::state::session_file("hidden", "").map_err(io::Error::other)?;
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
struct Handoff {
    args: File,
    exe: File,
    plan: File,
    report_w: OwnedFd,
    status_w: OwnedFd,
    control: OwnedFd,
}

/// The bubblewrap to execute: a fixed path only root can change (`trust`).
fn find_bwrap() -> Result<PathBuf, LaunchError> {
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
}

/// Starts the sandbox and waits for the command. `on_started` learns what
/// the layers enforced as soon as stage-2 is about to exec the command.
pub async fn run(
    policy: &Policy,
    command: Vec<OsString>,
    options: &Options,
    on_started: impl FnOnce(Started),
) -> Result<Outcome, LaunchError> {
    let bwrap_path = find_bwrap()?;
    let signals = Signals::catch()?;
    let masked = MaskedFile::create().map_err(io_err("create the file that masks hidden files"))?;
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
    let facts = HostFacts {
        stdin_is_tty: options.terminal.is_some() || sys::is_tty(&io::stdin()),
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
        hide_host_secrets: nix::unistd::geteuid().is_root(),
        max_tasks: options.max_tasks,
        canonical: |p| std::fs::canonicalize(p).ok(),
    };
    let plan = plan(policy, command, &facts);
    for w in &plan.warnings {
        eprintln!("sbx: warning: {w}");
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
    cmd.arg("--args").arg(handoff.args.as_raw_fd().to_string()).arg("--").args(&plan.bwrap.command);
    let inherited: [RawFd; 6] = [
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
            Ok(())
        });
    }
    if let Some(tty) = &options.terminal {
        let dup = |fd: &OwnedFd| fd.try_clone().map(std::process::Stdio::from).map_err(io_err("use the terminal"));
        cmd.stdin(dup(tty)?).stdout(dup(tty)?).stderr(dup(tty)?);
        // SAFETY: the closure only makes setsid and ioctl calls, which are
        // async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(sys::take_controlling_terminal);
        }
    }
    cmd.kill_on_drop(true);
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

    // bwrap's first status document names the sandbox's pid 1 on the host.
    let mut first = String::new();
    let sandbox_init = match status.read_line(&mut first).await {
        Ok(n) if n > 0 => serde_json::from_str::<serde_json::Value>(&first)
            .ok()
            .and_then(|v| v.get("child-pid").and_then(serde_json::Value::as_i64))
            .map(|pid| pid as i32),
        _ => None,
    };
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
    // Stage-2 waits for one byte before it execs the command: sent once the
    // gate opens (it sits in the socket until stage-2 gets there).
    if let Some(gate) = &options.start_gate {
        gate.notified().await;
    }
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
    let mut enforcement = Enforcement { blocked_syscalls: plan.stage2.seccomp.entries().count(), ..Enforcement::default() };
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
    enforcement.netns = enforcement.landlock.is_some();

    let Some(exec_ns) = reached_exec else {
        let _ = child.wait().await;
        return Err(if stage2_failed { LaunchError::Stage2Failed } else { LaunchError::SetupFailed });
    };
    // Stage-2 sent the proxy's sockets, then the seccomp listener, before
    // it said "exec": both are queued on the control socket.
    let net_listeners = sys::recv_all_fds(&control_ours).map_err(io_err("receive the proxy's sockets"))?;
    // The filter has a listener when events are kept, and always when it mediates connects.
    let listener = if options.notify || plan.stage2.seccomp.mediate_unix_connect {
        Some(sys::recv_listener(&control_ours).map_err(|e| LaunchError::Io {
            what: "receive the seccomp listener",
            source: io::Error::other(e.to_string()),
        })?)
    } else {
        None
    };
    on_started(Started {
        listener,
        net_listeners,
        net: plan.stage2.net.clone(),
        enforcement,
        exec_ns,
        bwrap_pid: child.id(),
        sandbox_init,
        read_roots: plan.stage2.read.clone(),
        hidden: plan.hidden.clone(),
        write_roots: plan.stage2.write.clone(),
        seccomp: plan.stage2.seccomp,
    });

    let new_session = !(options.terminal.is_some() || sys::is_tty(&io::stdin()));
    let status = relay_signals_until_exit(&mut child, signals, sandbox_init, new_session).await?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => crate::EXIT_SETUP,
    };
    Ok(Outcome::Exited(code))
}

/// Waits for bwrap, passing INT, TERM and HUP on to the command (bwrap's
/// pid 1 in the sandbox would ignore them).
async fn relay_signals_until_exit(
    child: &mut tokio::process::Child,
    signals: Signals,
    sandbox_init: Option<i32>,
    new_session: bool,
) -> Result<std::process::ExitStatus, LaunchError> {
    let Signals { mut int, mut term, mut hup } = signals;
    loop {
        let sig = tokio::select! {
            status = child.wait() => return status.map_err(io_err("wait for bwrap")),
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = hup.recv() => nix::sys::signal::Signal::SIGHUP,
        };
        // On a terminal, Ctrl-C already reached the command's process group:
        // relaying SIGINT again would deliver it twice.
        if sig == nix::sys::signal::Signal::SIGINT && !new_session {
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
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> Result<Self, LaunchError> {
        use tokio::signal::unix::{SignalKind, signal};
        let catch = |kind| signal(kind).map_err(io_err("install a signal handler"));
        Ok(Self { int: catch(SignalKind::interrupt())?, term: catch(SignalKind::terminate())?, hup: catch(SignalKind::hangup())? })
    }
}

/// Moves the sandbox into each cgroup whose `cgroup.procs` is open as one of `fds`: bwrap,
/// the sandbox's pid 1, then pid 1's children. A child forked before pid 1 moved is in its
/// list once the move returns (fork and migration exclude each other); one forked after is
/// born inside. Stage-2, the one child, forks nothing before the start gate.
fn join_cgroups(fds: &[RawFd], bwrap: u32, init: i32) -> io::Result<()> {
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
fn command_pid(init: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(probe: fn(&Path) -> PathKind) -> HostFacts {
        HostFacts { stdin_is_tty: false, exe_fd: 10, plan_fd: 11, status_fd: 12, report_fd: 13, require_landlock: false, control_fd: None, notify: false, probe, expand: |_| glob::Expansion::default(), read_link: |_| None, git_paths: Vec::new(), masked_file: "/masked".into(), hide_host_secrets: false, max_tasks: None, canonical: |p| Some(p.to_path_buf()) }
    }

    fn fake_host(path: &Path) -> PathKind {
        match path.to_str().unwrap() {
            "/w" | "/w/.git" | "/w/.git/hooks" | "/h" | "/secrets" => PathKind::Dir,
            "/w/.bashrc" | "/h/.bashrc" | "/w/.env" => PathKind::File,
            _ => PathKind::Missing,
        }
    }

    #[test]
    fn default_policy_plan_is_exact() {
        let mut policy = Policy::builtin("/w".into(), Some("/h".into()));
        policy.fs.deny_read = vec!["/secrets".into(), "/w/.env".into()];
        let plan = plan(&policy, vec!["true".into()], &facts(fake_host));
        let mut expected: Vec<OsString> = [
            "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-net", "--unshare-cgroup-try", "--die-with-parent", "--cap-drop", "ALL",
            "--hostname", "sbx", "--new-session",
            "--ro-bind", "/", "/",
            "--dev", "/dev", "--tmpfs", "/dev/shm", "--proc", "/proc", "--tmpfs", "/tmp",
            "--bind", "/w", "/w",
            "--bind", "/w/.git", "/w/.git",
            "--ro-bind", "/w/.bashrc", "/w/.bashrc",
            "--ro-bind", "/w/.git/hooks", "/w/.git/hooks",
            "--perms", "0000", "--tmpfs", "/secrets", "--remount-ro", "/secrets",
            "--ro-bind", "/masked", "/w/.env",
            "--remount-ro", "/dev",
            "--chdir", "/w",
        ]
        .iter()
        .map(Into::into)
        .collect();
        for var in UNSAFE_ENV {
            expected.extend(["--unsetenv".into(), (*var).into()]);
        }
        expected.extend(["--setenv", "SBX_SANDBOX", "1"].iter().map(Into::into));
        for (k, v) in [
            ("HTTP_PROXY", "http://127.0.0.1:3128"),
            ("HTTPS_PROXY", "http://127.0.0.1:3128"),
            ("http_proxy", "http://127.0.0.1:3128"),
            ("https_proxy", "http://127.0.0.1:3128"),
            ("ALL_PROXY", "socks5h://127.0.0.1:1080"),
            ("all_proxy", "socks5h://127.0.0.1:1080"),
            ("NO_PROXY", "localhost,127.0.0.1,::1"),
            ("no_proxy", "localhost,127.0.0.1,::1"),
        ] {
            expected.extend(["--setenv".into(), k.into(), v.into()]);
        }
        expected.extend(["--json-status-fd", "12", "--", "/proc/self/fd/10", STAGE2_ARG, "11"].iter().map(Into::into));
        assert_eq!(plan.bwrap.argv(), expected);
        assert_eq!(plan.stage2.read, ["/", "/dev", "/proc", "/tmp"].map(PathBuf::from));
        assert_eq!(plan.stage2.write, ["/tmp", "/dev", "/w"].map(PathBuf::from));
        assert_eq!(plan.stage2.command, vec![OsString::from("true")]);
    }

    /// The bwrap arguments after the private /tmp, up to `--chdir`: the mounts a policy adds.
    fn mounts_after_tmp(plan: &Plan) -> Vec<String> {
        let argv: Vec<String> = plan.bwrap.argv().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let at = argv.iter().position(|a| a == "/tmp").unwrap() + 1;
        let end = argv.iter().position(|a| a == "--chdir").unwrap();
        argv[at..end].to_vec()
    }

    fn secrets_host(path: &Path) -> PathKind {
        match path.to_str().unwrap() {
            "/root" | "/root/ws" | "/root/.cargo" | "/etc/ssl/private" | "/var/lib/docker" => PathKind::Dir,
            "/etc/shadow" | "/etc/gshadow" => PathKind::File,
            _ => PathKind::Missing,
        }
    }

    /// As root: the host secrets that exist are hidden (files by the masked file, directories
    /// by a mode-000 tmpfs), except one allowRead names; /root becomes a crossable empty tmpfs
    /// with allowRead's paths bound back, the workspace inside it bound writable after it, and
    /// it is made read-only after every other mount.
    #[test]
    fn root_hides_host_secrets_and_roots_home() {
        let mut policy = Policy::builtin("/root/ws".into(), Some("/root".into()));
        policy.fs.allow_read = vec!["/root/.cargo".into(), "/var/lib/docker".into()];
        let mut f = facts(secrets_host);
        f.hide_host_secrets = true;
        let plan = plan(&policy, vec!["true".into()], &f);
        assert_eq!(
            mounts_after_tmp(&plan),
            [
                "--perms", "0111", "--tmpfs", "/root",
                "--ro-bind", "/root/.cargo", "/root/.cargo",
                "--bind", "/root/ws", "/root/ws",
                "--ro-bind", "/masked", "/etc/shadow",
                "--ro-bind", "/masked", "/etc/gshadow",
                "--perms", "0000", "--tmpfs", "/etc/ssl/private", "--remount-ro", "/etc/ssl/private",
                "--remount-ro", "/root",
                "--remount-ro", "/dev",
            ]
        );
        assert_eq!(plan.hidden, ["/etc/shadow", "/etc/gshadow", "/etc/ssl/private", "/root"].map(PathBuf::from));
        // Not as root, or with the workspace at /root itself: nothing of this.
        let plain = super::plan(&policy, vec!["true".into()], &facts(secrets_host));
        assert!(!plain.bwrap.argv().iter().any(|a| a == "/etc/shadow" || a == "/root"));
        let at_home = Policy::builtin("/root".into(), Some("/root".into()));
        let plan = super::plan(&at_home, vec!["true".into()], &f);
        assert!(!plan.bwrap.args.contains(&Arg::Tmpfs("/root".into())));
        assert!(plan.hidden.contains(&PathBuf::from("/etc/shadow")));
    }

    fn planted_host(path: &Path) -> PathKind {
        match path.to_str().unwrap() {
            "/w" | "/w/real" => PathKind::Dir,
            "/w/a/out" | "/w/.vscode" | "/w/.bashrc" | "/w/.idea" => PathKind::Symlink,
            _ => PathKind::Missing,
        }
    }

    fn nested_host(path: &Path) -> PathKind {
        match path.to_str().unwrap() {
            "/w" | "/w/.git" | "/w/.git/hooks" | "/w/vendor" | "/w/vendor/lib" | "/w/vendor/lib/.git" | "/w/vendor/lib/.git/hooks" | "/c" | "/c/.config" | "/c/.config/sbx" => PathKind::Dir,
            "/w/.git/config" | "/w/vendor/lib/.git/config" => PathKind::File,
            _ => PathKind::Missing,
        }
    }

    /// Symlinks an earlier run planted: `a/out -> /etc` (an allowWrite entry) is not bound
    /// (and says so), `.vscode -> /etc/shadow` (a protected name) is not bound over the
    /// secret's mask, `.bashrc -> real` (inside the workspace) protects its target by its
    /// real path, `.idea` (dangling) is left alone.
    #[test]
    fn planted_symlinks_are_never_bound_through() {
        let mut policy = Policy::builtin("/w".into(), None);
        policy.fs.allow_write = vec!["/w/a/out".into()];
        let mut f = facts(planted_host);
        f.canonical = |p| match p.to_str().unwrap() {
            "/w/a/out" => Some("/etc".into()),
            "/w/.vscode" => Some("/etc/shadow".into()),
            "/w/.bashrc" => Some("/w/real".into()),
            "/w/.idea" => None,
            other => Some(other.into()),
        };
        let plan = plan(&policy, vec!["true".into()], &f);
        assert_eq!(mounts_after_tmp(&plan), ["--bind", "/w", "/w", "--ro-bind", "/w/real", "/w/real", "--remount-ro", "/dev"]);
        assert_eq!(plan.warnings.len(), 1);
        assert!(plan.warnings[0].starts_with("the allowWrite entry /w/a/out is or goes through a symbolic link"), "{}", plan.warnings[0]);
        assert!(!plan.stage2.write.contains(&PathBuf::from("/w/a/out")));
    }

    /// limits.tmpSize sizes /dev/shm and /tmp; /dev itself is read-only in the end, so
    /// nothing written there escapes the bound.
    #[test]
    fn tmp_size_bounds_tmp_and_dev_shm() {
        let mut policy = Policy::builtin("/w".into(), None);
        policy.limits.tmp_size = Some(1 << 30);
        let argv: Vec<String> = plan(&policy, vec!["true".into()], &facts(fake_host)).bwrap.argv().iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let at = argv.iter().position(|a| a == "--dev").unwrap();
        assert_eq!(argv[at..at + 12], ["--dev", "/dev", "--size", "1073741824", "--tmpfs", "/dev/shm", "--proc", "/proc", "--size", "1073741824", "--tmpfs", "/tmp"]);
        let chdir = argv.iter().position(|a| a == "--chdir").unwrap();
        assert_eq!(argv[chdir - 2..chdir], ["--remount-ro", "/dev"]);
    }

    /// Every directory between a writable root and a read-only island is pinned (bound onto
    /// itself, so that no rename can move the island away) before the islands are bound.
    #[test]
    fn islands_are_pinned_by_every_directory_above_them() {
        let mut policy = Policy::builtin("/w".into(), None);
        policy.fs.allow_write = vec!["/c".into()];
        policy.fs.deny_write = vec!["/c/.config/sbx".into()];
        let mut f = facts(nested_host);
        f.git_paths = ["vendor/lib/.git/hooks", "vendor/lib/.git/config", "vendor/lib/.git/commondir", ".git/config"].iter().map(|p| Path::new("/w").join(p)).collect();
        let plan = plan(&policy, vec!["true".into()], &f);
        assert_eq!(
            mounts_after_tmp(&plan),
            [
                "--bind", "/w", "/w",
                "--bind", "/c", "/c",
                "--bind", "/c/.config", "/c/.config",
                "--bind", "/w/.git", "/w/.git",
                "--bind", "/w/vendor", "/w/vendor",
                "--bind", "/w/vendor/lib", "/w/vendor/lib",
                "--bind", "/w/vendor/lib/.git", "/w/vendor/lib/.git",
                "--ro-bind", "/w/.git/hooks", "/w/.git/hooks",
                "--ro-bind", "/w/.git/config", "/w/.git/config",
                "--ro-bind", "/c/.config/sbx", "/c/.config/sbx",
                "--ro-bind", "/w/vendor/lib/.git/hooks", "/w/vendor/lib/.git/hooks",
                "--ro-bind", "/w/vendor/lib/.git/config", "/w/vendor/lib/.git/config",
                "--remount-ro", "/dev",
            ]
        );
    }

    #[test]
    fn tty_keeps_the_session() {
        let policy = Policy::builtin("/w".into(), None);
        let mut f = facts(fake_host);
        f.stdin_is_tty = true;
        let plan = plan(&policy, vec!["sh".into()], &f);
        assert!(!plan.bwrap.args.contains(&Arg::NewSession));
    }
}
