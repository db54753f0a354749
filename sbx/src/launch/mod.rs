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
pub mod direct;
pub mod git;
pub mod glob;
// Spawns with pre_exec, and takes the socket passed by number on its argv.
#[allow(unsafe_code)]
mod helper;
pub mod noroute;
pub mod inbound;
pub mod remask;
mod run;
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
pub use run::{Options, Outcome, Running, Started, descendants, start};

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
    #[error("{0}")]
    NoNamespaces(String),
    #[error("the sandbox's stage-2 could not confine the command (its message is above)")]
    Stage2Failed,
    #[error("--require {0}: {1}")]
    Required(&'static str, &'static str),
    #[error(transparent)]
    Glob(#[from] glob::GlobError),
}

/// When this process cannot create the namespaces a sandbox needs, the sentence that says
/// why and what to do; `None` when it can. Tried (a fork) only where something confines sbx
/// already (a seccomp filter, a user namespace of its own): a plain host pays two small
/// reads of /proc.
pub fn namespaces_refused() -> Option<String> {
    let c = sys::confinement();
    if !c.seccomp_filter && c.initial_userns {
        return None;
    }
    let errno = sys::try_userns().err()?;
    let context = match (c.seccomp_filter, c.initial_userns) {
        (true, false) => "sbx runs inside another sandbox or container (a seccomp filter is applied and this is a user namespace of its own: sbx inside sbx, bwrap --disable-userns, a rootless container)",
        (true, true) => "a seccomp filter applied to sbx (a container's profile, such as Docker's default) refuses them",
        _ => "sbx runs in a user namespace that may not create more (bwrap --disable-userns, user.max_user_namespaces)",
    };
    Some(format!(
        "cannot create the namespaces a sandbox needs here (unshare: {}): {context}; run sbx outside it, or let this environment create user namespaces (for Docker, a seccomp profile that allows unshare and clone with namespace flags), or accept Landlock and seccomp alone with --no-namespaces",
        errno.desc()
    ))
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
    /// The terminal is the command's alone (the dashboard's pty): stage-2
    /// makes the command its foreground process group
    /// (`stage2::Plan::foreground`).
    pub own_terminal: bool,
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
    /// The command runs as another user than sbx (`identity`): their name and home, for
    /// `USER`, `LOGNAME` and `HOME`, and `PATH` without the directories of sbx's own home
    /// (root's, out of their reach).
    pub run_as: Option<(String, PathBuf, OsString)>,
    /// Transparent egress: descriptors holding the sandbox's `/etc/resolv.conf` (sbx's DNS
    /// at 127.0.0.1) and `/etc/hosts` (loopback names only, so that every other name is
    /// asked of sbx's DNS), bound over the host's ([`RESOLV_CONF`], [`HOSTS`]).
    pub name_files: Option<(RawFd, RawFd)>,
}

/// The sandbox's `/etc/resolv.conf` under transparent egress: sbx's DNS, inside.
pub const RESOLV_CONF: &str = "# sbx: names are resolved by sbx, under the sandbox's network policy\nnameserver 127.0.0.1\n";
/// The sandbox's `/etc/hosts` under transparent egress: loopback names only.
pub const HOSTS: &str = "# sbx: other names are resolved by sbx's DNS (127.0.0.1)\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";

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
    /// The read-only islands inside the writable paths, by their real paths: each a mount
    /// point (a rename onto it is EBUSY, a link or rename across it EXDEV).
    pub islands: Vec<PathBuf>,
    /// The directories bound onto themselves between a writable root and an island.
    pub pins: Vec<PathBuf>,
    /// What this sandbox does not enforce (without namespaces, `direct::not_enforced`).
    pub not_enforced: Vec<String>,
}

/// The network plan. `own_netns`: the sandbox gets a network namespace of its own (bwrap's
/// `--unshare-net`), whose only interface is its loopback, which nothing outside reaches but
/// `-p`. Binding there endangers nothing, so TCP binds are allowed whatever
/// `allowLocalBinding` says; the key still rules binds in a sandbox that shares the host's
/// network, where a listening port would be the host's.
fn net_plan(policy: &Policy, own_netns: bool) -> stage2::NetPlan {
    stage2::NetPlan {
        http_port: HTTP_PROXY_PORT,
        socks_port: SOCKS_PROXY_PORT,
        local_ports: policy.net.allow_local_outbound_ports.clone(),
        allow_local_binding: policy.net.allow_local_binding || own_netns,
        bind_ports: policy.net.inbound_ports.clone(),
    }
}

/// The paths `list`'s rules name on this host now: a glob rule expanded (a warning when its
/// expansion was cut short), any other as it is.
fn expand_rules(list: &[PathBuf], facts: &HostFacts, warnings: &mut Vec<String>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in list {
        if crate::policy::is_glob(path) {
            let e = (facts.expand)(path);
            if e.truncated {
                warnings.push(format!("the rule {} matched more than {} entries deep; only the first part of the tree is covered", path.display(), glob::MAX_ENTRIES));
            }
            out.extend(e.matches);
        } else {
            out.push(path.clone());
        }
    }
    out
}

/// The warning for an allowWrite entry that is or goes through a symlink, which is not made
/// writable: a bind (or a Landlock rule) would follow it to wherever an earlier run pointed it.
fn through_a_symlink(path: &Path) -> String {
    format!(
        "the allowWrite entry {} is or goes through a symbolic link, so it is not made writable (a command could have planted the link); name the real path instead",
        crate::termtext::path(path)
    )
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
    let mut expand = |list: &[PathBuf]| expand_rules(list, facts, &mut warnings);
    let allow_read = expand(&policy.fs.allow_read);
    let allow_execute = expand(&policy.fs.allow_execute);
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
        // A name /etc/hosts resolves: programs look their own host name up (git for its
        // default identity, Java's getLocalHost, Python's getfqdn), and any other name
        // would be a DNS query, which the network namespace refuses (a denial).
        Arg::Hostname("localhost".into()),
    ];
    if !facts.stdin_is_tty {
        args.push(Arg::NewSession);
    }

    // 1. The root view.
    let mut readable: Vec<PathBuf> = Vec::new();
    let mut executable: Vec<PathBuf> = Vec::new();
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
        // allowExecute: in the view, runnable and readable as files, not listable (stage-2).
        for path in &allow_execute {
            if matches!(probe(path), PathKind::Dir | PathKind::File) && !readable.iter().any(|r| path.starts_with(r)) {
                args.push(Arg::RoBind { src: path.clone(), dst: path.clone() });
                executable.push(path.clone());
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
            warnings.push(through_a_symlink(&path));
            continue;
        }
        args.push(Arg::Bind { src: path.clone(), dst: path.clone() });
        writable.push(path);
    }

    // 3b. privateWrite: the store sbx keeps for the sandboxes of this user, bound where the
    // command expects the directory, so that what it writes there (a package cache) is never
    // what the host's tools read. Both must be plain directories (made by
    // `missing::create_private_dirs`).
    for (dir, store) in policy.private_dirs() {
        let ready = |p: &Path| probe(p) == PathKind::Dir && plain(p);
        if probe(&dir) == PathKind::Missing {
            // Not on this host, and not to be made (no trailing `/`): nothing to bind.
            continue;
        }
        if ready(&dir) && ready(&store) {
            args.push(Arg::Bind { src: store, dst: dir.clone() });
            writable.push(dir);
        } else {
            warnings.push(format!("the privateWrite directory {} is not writable: it or its store is not a plain directory", crate::termtext::path(&dir)));
        }
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
    let pins: Vec<PathBuf> = pins.into_iter().filter(|d| probe(d) == PathKind::Dir && plain(d)).collect();
    for dir in &pins {
        args.push(Arg::Bind { src: dir.clone(), dst: dir.clone() });
    }
    for path in &islands {
        args.push(Arg::RoBind { src: path.clone(), dst: path.clone() });
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

    // Names: sbx's DNS inside (transparent egress). A file that is a symlink on the host
    // is replaced where it leads, when that is a file.
    if let Some((resolv, hosts)) = facts.name_files {
        for (fd, path) in [(resolv, "/etc/resolv.conf"), (hosts, "/etc/hosts")] {
            let path = Path::new(path);
            let dst = match probe(path) {
                PathKind::File => Some(path.to_path_buf()),
                PathKind::Symlink => (facts.canonical)(path).filter(|p| probe(p) == PathKind::File),
                _ => None,
            };
            if let Some(dst) = dst {
                args.push(Arg::RoBindData { fd, dst });
            }
        }
    }
    environment(&mut args, policy, facts, true);
    // The sandbox's temporary directory is its private /tmp. Without TMPDIR, SQLite
    // (Codex's state, Python's sqlite3) tries /var/tmp first, read-only here: a refused
    // write check on every start for what /tmp would have served.
    args.push(Arg::SetEnv("TMPDIR".into(), "/tmp".into()));
    args.push(Arg::JsonStatusFd(facts.status_fd));

    let own_netns = args.contains(&Arg::UnshareNet);
    let bwrap = Invocation {
        args,
        command: vec![
            format!("/proc/self/fd/{}", facts.exe_fd).into(),
            STAGE2_ARG.into(),
            facts.plan_fd.to_string().into(),
        ],
    };
    let stage2 = stage2::Plan { read: readable, list: Vec::new(), execute: executable, write: writable, command, report_fd: Some(facts.report_fd),
        require_landlock: facts.require_landlock,
        seccomp: crate::syscalls::FilterOptions { mediate_exec: policy.commands.active(), ..crate::syscalls::FilterOptions::for_network(&policy.net) },
        control_fd: facts.control_fd,
        notify: facts.notify,
        net: net_plan(policy, own_netns),
        max_tasks: facts.max_tasks,
        foreground: facts.own_terminal,
        direct: false,
    };
    Plan { bwrap, stage2, warnings, hidden, islands, pins, not_enforced: Vec::new() }
}

/// The command's working directory and environment, as bubblewrap arguments (`--chdir`,
/// `--setenv`, `--unsetenv`; without namespaces, sbx applies them itself): the workspace,
/// no variable of [`UNSAFE_ENV`], `SBX_SANDBOX=1`, the identity of the user it runs as, and
/// with `proxy` the proxy's variables.
fn environment(args: &mut Vec<Arg>, policy: &Policy, facts: &HostFacts, proxy: bool) {
    args.push(Arg::Chdir(policy.workspace.clone()));
    for var in UNSAFE_ENV {
        args.push(Arg::UnsetEnv((*var).into()));
    }
    args.push(Arg::SetEnv("SBX_SANDBOX".into(), "1".into()));
    if let Some((name, home, path)) = &facts.run_as {
        for var in ["USER", "LOGNAME"] {
            args.push(Arg::SetEnv(var.into(), name.into()));
        }
        args.push(Arg::SetEnv("HOME".into(), home.into()));
        args.push(Arg::SetEnv("PATH".into(), path.clone()));
        // The command is that user's, not a sudo session's.
        for var in ["SUDO_USER", "SUDO_UID", "SUDO_GID", "SUDO_COMMAND", "SUDO_HOME", "DOAS_USER", "MAIL"] {
            args.push(Arg::UnsetEnv(var.into()));
        }
    }
    if !proxy {
        return;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(probe: fn(&Path) -> PathKind) -> HostFacts {
        HostFacts { stdin_is_tty: false, own_terminal: false, exe_fd: 10, plan_fd: 11, status_fd: 12, report_fd: 13, require_landlock: false, control_fd: None, notify: false, probe, expand: |_| glob::Expansion::default(), read_link: |_| None, git_paths: Vec::new(), masked_file: "/masked".into(), hide_host_secrets: false, max_tasks: None, canonical: |p| Some(p.to_path_buf()), run_as: None, name_files: None }
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
            "--hostname", "localhost", "--new-session",
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
        expected.extend(["--setenv", "TMPDIR", "/tmp"].iter().map(Into::into));
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

    /// privateWrite: the store is bound where the command expects the directory, after the
    /// writable binds (so that it wins over an allowWrite of the same path), and is a write
    /// root; a directory or store that is missing or a symlink is not bound, with a warning.
    #[test]
    fn private_write_binds_the_store_over_the_directory() {
        let mut policy = Policy::builtin("/w".into(), Some("/h".into()));
        policy.fs.private_write = vec!["/h/.cache".into(), "/h/.npm".into()];
        policy.fs.allow_write = vec!["/h/.cache".into()];
        let pairs = policy.private_dirs();
        let mut f = facts(|p| if p.starts_with("/h") || p == Path::new("/w") { PathKind::Dir } else { PathKind::Missing });
        f.canonical = |p| (!p.ends_with(".npm")).then(|| p.to_path_buf());
        let plan = plan(&policy, vec!["true".into()], &f);
        let store = pairs[0].1.display().to_string();
        assert_eq!(mounts_after_tmp(&plan)[..9], ["--bind", "/w", "/w", "--bind", "/h/.cache", "/h/.cache", "--bind", store.as_str(), "/h/.cache"]);
        assert!(plan.stage2.write.contains(&PathBuf::from("/h/.cache")) && !plan.stage2.write.contains(&PathBuf::from("/h/.npm")));
        assert_eq!(plan.warnings, ["the privateWrite directory /h/.npm is not writable: it or its store is not a plain directory"]);
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
