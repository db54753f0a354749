//! The session's cgroups: where the sandbox's whole process tree lives, so that the kernel
//! tracer reports only its tasks and the resource limits (`limits`) bound it.
//!
//! Every process of the command, through any fork, double fork or thread, is inside before
//! the command starts. bubblewrap starts inside the v1 cgroups: the forked child writes `0`
//! to each one's `tasks` before it execs (`launch::run`), which moves only the calling thread
//! and so skips the global lock that a `cgroup.procs` write takes (an RCU grace period,
//! about 10 ms here). v2 has no such move for a domain cgroup, so the sandbox is moved into
//! the unified cgroup through its `cgroup.procs` while bubblewrap builds it, and stage-2
//! waits for that before it execs the command.
//!
//! * The unified (v2) hierarchy always gets a cgroup when it is mounted: its inode is the id
//!   `bpf_get_current_cgroup_id()` returns, which scopes the tracer. The limits go there too
//!   when v2 has the controllers (`memory.max` with `memory.swap.max` 0, `pids.max`,
//!   `cpu.max`), enabled in the parent's `cgroup.subtree_control`.
//! * On hybrid hosts (this project's CI machine among them) the memory, pids and cpu
//!   controllers are bound to v1 hierarchies and v2 has none: the limits then go to a cgroup
//!   of the same name in each v1 hierarchy (`memory.limit_in_bytes` and, with swap
//!   accounting, `memory.memsw.limit_in_bytes`; `pids.max`; `cpu.cfs_quota_us`).
//! * Root creates them at the top of each hierarchy. An unprivileged user can only use a
//!   subtree delegated to them (a systemd user manager's, or one an administrator made
//!   with `cgcreate -a -t`): sbx tries beside its own cgroup (the parent, when the user may
//!   write it), then inside it, in v2 and in each v1 hierarchy, and otherwise says which
//!   limits are not enforced and why.
//!
//! Each cgroup is named `sbx-<pid>-<nanos>` and removed at the end; ones left by a session
//! that was killed are removed by the next (rmdir succeeds only on an empty cgroup).

use std::{
    fs::File,
    io,
    os::fd::{AsRawFd as _, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use crate::limits::{Kind, Limits};

/// One cgroup directory and the file a process joins it through, open for writing:
/// `cgroup.procs` in the unified hierarchy, `tasks` in a v1 one.
#[derive(Debug)]
struct Dir {
    path: PathBuf,
    join: File,
}

impl Dir {
    fn create(parent: &Path, name: &str, join: &str) -> io::Result<Dir> {
        remove_stale(parent);
        let path = parent.join(name);
        std::fs::create_dir(&path)?;
        match std::fs::OpenOptions::new().write(true).open(path.join(join)) {
            Ok(join) => Ok(Dir { path, join }),
            Err(e) => {
                let _ = std::fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        std::fs::write(self.path.join(file), value)
    }

    fn has(&self, file: &str) -> bool {
        self.path.join(file).exists()
    }

    /// The value of `key` in a flat-keyed file (`memory.events`, `pids.events`).
    fn counter(&self, file: &str, key: &str) -> u64 {
        std::fs::read_to_string(self.path.join(file))
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()))
            .unwrap_or(0)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        // The sandbox's pid 1 takes every process with it when it exits;
        // the last ones may still be on their way out.
        for _ in 0..50 {
            match std::fs::remove_dir(&self.path) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => std::thread::sleep(Duration::from_millis(2)),
                _ => return,
            }
        }
        tracing::warn!("could not remove the session cgroup {}", self.path.display());
    }
}

/// A resource controller sbx uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    fn limit(self) -> Kind {
        match self {
            Controller::Memory => Kind::Memory,
            Controller::Pids => Kind::Pids,
            Controller::Cpu => Kind::Cpu,
        }
    }
}

/// What the kernel counted against the limits so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Processes the OOM killer killed because of `limits.memory`.
    pub oom_kills: u64,
    /// fork/clone calls refused because of `limits.pids`.
    pub pids_refused: u64,
}

/// The session's cgroups, removed when dropped.
#[derive(Debug)]
pub struct SessionCgroup {
    unified: Option<Dir>,
    /// The v1 cgroups, one per controller that v2 does not have here.
    legacy: Vec<(Controller, Dir)>,
    /// The controllers whose limits the unified cgroup holds.
    limits_in_unified: Vec<Controller>,
    id: Option<u64>,
    /// Limits that could not be enforced, with the reason.
    unenforced: Vec<(Kind, String)>,
}

/// Why a limit is not enforced for a user who may not create cgroups.
const NOT_DELEGATED: &str = "no cgroup is delegated to this user (a systemd user session with cgroup v2 delegates one)";

/// The session's cgroups for `limits` (see [`SessionCgroup::create`]; `None` when none can be
/// had) and the limits left unenforced, with the reason. `limits.pids` is never one of them:
/// without a cgroup for it, it is the command's `RLIMIT_NPROC`, which the kernel counts in
/// the sandbox's own user namespace (enforced, but not reported).
pub fn for_session(limits: &Limits, for_tracer: bool) -> (Option<SessionCgroup>, Vec<(Kind, String)>) {
    let wanted: Vec<Kind> = [(Kind::Memory, limits.memory.is_some()), (Kind::Cpu, limits.cpu.is_some())]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect();
    if wanted.is_empty() && limits.pids.is_none() && !for_tracer {
        return (None, Vec::new());
    }
    let (cgroup, unenforced) = match SessionCgroup::create(limits, for_tracer) {
        Ok(c) => {
            let u = c.unenforced.clone();
            (Some(c), u)
        }
        Err(e) => {
            let why = match &e {
                CgroupError::Create { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => NOT_DELEGATED.to_string(),
                other => other.to_string(),
            };
            (None, wanted.iter().map(|k| (*k, why.clone())).collect())
        }
    };
    (cgroup, unenforced.into_iter().filter(|(k, _)| *k != Kind::Pids).collect())
}

/// Why the session has no cgroup at all.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup filesystem is mounted")]
    NoHierarchy,
    #[error("cannot create a cgroup under {}: {source}", .parent.display())]
    Create { parent: PathBuf, source: io::Error },
}

impl SessionCgroup {
    /// Creates the session's cgroups and applies `limits` (memory, pids, cpu); with
    /// `for_tracer`, always one in the unified hierarchy (the tracer's scope), otherwise only
    /// where a limit needs one. Fails only when no cgroup at all can be created; a limit that
    /// cannot be applied is listed in [`SessionCgroup::unenforced`].
    pub fn create(limits: &Limits, for_tracer: bool) -> Result<SessionCgroup, CgroupError> {
        let name = format!(
            "sbx-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
        );
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let wanted: Vec<(Controller, String)> = [
            (Controller::Memory, limits.memory.map(|m| m.to_string())),
            (Controller::Pids, limits.pids.map(|p| p.to_string())),
            (Controller::Cpu, limits.cpu.map(|c| c.to_string())),
        ]
        .into_iter()
        .filter_map(|(c, v)| v.map(|v| (c, v)))
        .collect();

        let mut first_error = None;
        let mut unified = None;
        let mut v2_controllers = Vec::new();
        let unified_root = unified_mount(&mounts).filter(|root| {
            let controllers = read_words(&root.join("cgroup.controllers"));
            for_tracer || wanted.iter().any(|(c, _)| controllers.iter().any(|n| n == c.name()))
        });
        if let Some(root) = unified_root {
            for parent in candidate_parents(&root, None) {
                match Dir::create(&parent, &name, "cgroup.procs") {
                    Ok(dir) => {
                        v2_controllers = read_words(&parent.join("cgroup.controllers"));
                        unified = Some((parent, dir));
                        break;
                    }
                    Err(source) => {
                        first_error.get_or_insert(CgroupError::Create { parent, source });
                    }
                }
            }
        }
        let mut cgroup = SessionCgroup {
            id: unified.as_ref().and_then(|(_, d)| inode(&d.path)),
            unified: None,
            legacy: Vec::new(),
            limits_in_unified: Vec::new(),
            unenforced: Vec::new(),
        };
        let unified_parent = unified.as_ref().map(|(p, _)| p.clone());
        cgroup.unified = unified.map(|(_, d)| d);

        for (controller, value) in wanted {
            let applied = if v2_controllers.iter().any(|c| c == controller.name()) {
                let (Some(parent), Some(dir)) = (&unified_parent, &cgroup.unified) else { continue };
                enable(parent, controller).and_then(|()| apply_v2(dir, controller, &value)).map(|()| cgroup.limits_in_unified.push(controller))
            } else if let Some(hierarchy) = legacy_mount(&mounts, controller) {
                let mut made = Err(io::Error::from(io::ErrorKind::NotFound));
                for parent in candidate_parents(&hierarchy, Some(controller)) {
                    made = Dir::create(&parent, &name, "tasks");
                    if let Err(e) = &made {
                        first_error.get_or_insert(CgroupError::Create { parent, source: io::Error::from(e.kind()) });
                    } else {
                        break;
                    }
                }
                made.and_then(|dir| apply_v1(&dir, controller, &value).map(|()| cgroup.legacy.push((controller, dir))))
            } else {
                Err(io::Error::new(io::ErrorKind::NotFound, format!("this host has no {} cgroup controller", controller.name())))
            };
            if let Err(e) = applied {
                let why = if e.kind() == io::ErrorKind::PermissionDenied { NOT_DELEGATED.to_string() } else { e.to_string() };
                cgroup.unenforced.push((controller.limit(), why));
            }
        }
        if cgroup.unified.is_none() && cgroup.legacy.is_empty() {
            return Err(first_error.unwrap_or(CgroupError::NoHierarchy));
        }
        Ok(cgroup)
    }

    /// Whether `limits.pids` is in force in a cgroup here.
    pub fn enforces_pids(&self) -> bool {
        self.dir_of(Controller::Pids).is_some()
    }

    /// The unified cgroup's id (its inode), for the tracer; `None` without one.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The unified cgroup's directory, for messages.
    pub fn path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|d| d.path.as_path())
    }

    /// The unified cgroup's `cgroup.procs`, which the sandbox's pids are written to while
    /// bubblewrap builds it (`launch::run`).
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.unified.iter().map(|d| d.join.as_raw_fd()).collect()
    }

    /// The v1 cgroups' `tasks`, which bubblewrap's process writes `0` to before it execs
    /// (`sys::join_own_cgroup`).
    pub fn tasks_fds(&self) -> Vec<RawFd> {
        self.legacy.iter().map(|(_, d)| d.join.as_raw_fd()).collect()
    }

    fn dir_of(&self, controller: Controller) -> Option<(&Dir, bool)> {
        if self.limits_in_unified.contains(&controller) {
            return self.unified.as_ref().map(|d| (d, true));
        }
        self.legacy.iter().find(|(c, _)| *c == controller).map(|(_, d)| (d, false))
    }

    /// What the kernel counted against the limits so far.
    pub fn counters(&self) -> Counters {
        let oom_kills = match self.dir_of(Controller::Memory) {
            Some((d, true)) => d.counter("memory.events", "oom_kill"),
            Some((d, false)) => d.counter("memory.oom_control", "oom_kill"),
            None => 0,
        };
        let pids_refused = self.dir_of(Controller::Pids).map_or(0, |(d, _)| d.counter("pids.events", "max"));
        Counters { oom_kills, pids_refused }
    }
}

/// Where a new cgroup may be created in the hierarchy mounted at `root` (`controller`: a
/// v1 hierarchy's, `None` for the unified one): its top for root. Anyone else can only use
/// a subtree delegated to them (a systemd user manager's, or one made with `cgcreate -a
/// -t`): the parent of the cgroup sbx is in when they may write it (a sibling of a
/// cgroup that holds processes can get controllers; the cgroup itself cannot, in v2),
/// then that cgroup, then the top (which fails with a clear reason).
fn candidate_parents(root: &Path, controller: Option<Controller>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !nix::unistd::geteuid().is_root()
        && let Some(own) = own_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default(), controller)
    {
        let own = root.join(own.trim_start_matches('/'));
        let writable = |d: &Path| nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok();
        if let Some(parent) = own.parent().filter(|p| p.starts_with(root) && *p != root && writable(p)) {
            out.push(parent.to_path_buf());
        }
        if own != root && writable(&own) {
            out.push(own);
        }
    }
    out.push(root.to_path_buf());
    out
}

/// The path of the cgroup this process is in, in the unified hierarchy (`None`) or the v1
/// hierarchy of `controller`, from `/proc/self/cgroup`.
fn own_cgroup(proc_cgroup: &str, controller: Option<Controller>) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        let hit = match controller {
            None => controllers.is_empty(),
            Some(c) => controllers.split(',').any(|n| n == c.name()),
        };
        hit.then(|| path.to_owned())
    })
}

fn enable(parent: &Path, controller: Controller) -> io::Result<()> {
    let control = parent.join("cgroup.subtree_control");
    if read_words(&control).iter().any(|c| c == controller.name()) {
        return Ok(());
    }
    std::fs::write(control, format!("+{}", controller.name()))
}

fn apply_v2(dir: &Dir, controller: Controller, value: &str) -> io::Result<()> {
    match controller {
        Controller::Memory => {
            dir.write("memory.max", value)?;
            if dir.has("memory.swap.max") {
                dir.write("memory.swap.max", "0")?;
            }
            Ok(())
        }
        Controller::Pids => dir.write("pids.max", value),
        Controller::Cpu => dir.write("cpu.max", &format!("{} {CPU_PERIOD_US}", cpu_quota_us(value))),
    }
}

fn apply_v1(dir: &Dir, controller: Controller, value: &str) -> io::Result<()> {
    match controller {
        Controller::Memory => {
            dir.write("memory.limit_in_bytes", value)?;
            // With swap accounting, memory and swap together stay under the same bound.
            if dir.has("memory.memsw.limit_in_bytes") {
                dir.write("memory.memsw.limit_in_bytes", value)?;
            }
            Ok(())
        }
        Controller::Pids => dir.write("pids.max", value),
        Controller::Cpu => {
            dir.write("cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            dir.write("cpu.cfs_quota_us", &cpu_quota_us(value).to_string())
        }
    }
}

/// The CFS period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// Thousandths of a CPU as a quota per [`CPU_PERIOD_US`].
fn cpu_quota_us(millicpus: &str) -> u64 {
    millicpus.parse::<u64>().unwrap_or(1000) * CPU_PERIOD_US / 1000
}

fn read_words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().map(str::to_owned).collect()
}

fn inode(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Where the cgroup2 hierarchy is mounted (the unified one on hybrid hosts).
fn unified_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// Where the v1 hierarchy that has `controller` is mounted.
fn legacy_mount(mounts: &str, controller: Controller) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split(' ');
        let (_, dir, fstype, options) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (fstype == "cgroup" && options.split(',').any(|o| o == controller.name())).then(|| PathBuf::from(dir))
    })
}

/// Where the cgroup2 hierarchy is mounted, for `sbx doctor`.
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    unified_mount(&mounts).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no cgroup2 filesystem is mounted"))
}

/// Which limits this host cannot enforce for the calling user, and why, for `sbx doctor`:
/// [`for_session`] with every limit, its cgroups removed at once.
pub fn probe() -> Vec<(Kind, String)> {
    let limits = Limits { memory: Some(1 << 30), pids: Some(1024), cpu: Some(1000), ..Limits::default() };
    for_session(&limits, false).1
}

/// Removes `sbx-<pid>-*` cgroups whose sbx process is gone (rmdir only
/// succeeds on an empty cgroup, so a live session is never touched).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("sbx-")).and_then(|n| n.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_cgroup_is_read_per_hierarchy() {
        let text = "9:name=systemd:/\n8:pids:/user/shell\n4:memory:/user/shell\n1:cpu,cpuacct:/a\n0::/user.slice/app.slice/t.scope\n";
        assert_eq!(own_cgroup(text, None).as_deref(), Some("/user.slice/app.slice/t.scope"));
        assert_eq!(own_cgroup(text, Some(Controller::Memory)).as_deref(), Some("/user/shell"));
        assert_eq!(own_cgroup(text, Some(Controller::Cpu)).as_deref(), Some("/a"));
        assert_eq!(own_cgroup("0::/\n", Some(Controller::Pids)), None);
    }

    const HYBRID: &str = "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n\
        cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
        cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n\
        cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n\
        cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";

    #[test]
    fn mounts_are_found_by_type_and_controller() {
        assert_eq!(unified_mount(HYBRID), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(legacy_mount(HYBRID, Controller::Memory), Some(PathBuf::from("/sys/fs/cgroup/memory")));
        // "cpu" is not "cpuacct".
        assert_eq!(legacy_mount(HYBRID, Controller::Cpu), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
        assert_eq!(legacy_mount("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", Controller::Pids), None);
        assert_eq!(cpu_quota_us("1500"), 150_000);
    }
}
