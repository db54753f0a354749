//! The kernel tracer, user-space side: the session's slot with the programs
//! loaded once and pinned (`pins`), its own ring buffer, and draining it
//! with loss accounting.
//!
//! Scope: the sandbox's first process is moved into the session's cgroup
//! (`cgroup::SessionCgroup`, v2) before it execs bwrap, so the whole tree,
//! through any fork, double fork or thread, is in it, and the programs report
//! only tasks of that cgroup, into that session's ring.

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    Btf, EbpfLoader,
    maps::{Array, Map, MapData, RingBuf},
    programs::BtfTracePoint,
};
use sbx_common::{RECORD_FULL, RECORD_SHORT, RawEvent, config};
use tokio::io::unix::AsyncFd;

use super::{
    ebpf::{EbpfError, OBJECT},
    pins::{PROGRAMS, Pinned, SHARED_MAPS, Session},
};

/// Default ring-buffer size: 4 MiB holds 6,000 to 10,000 events (400 to
/// 700 bytes), 16 times the backlog at which user space is woken. Measured
/// here: a burst of 200,000 denials from one process loses none with 4 MiB
/// (tens of thousands with 1 or 2 MiB), and a session maps its ring in about
/// 0.5 ms instead of 2 ms for 16 MiB (the kernel maps every page at once,
/// twice), a cost every monitored session pays.
pub const DEFAULT_RING_BYTES: u32 = 4 * 1024 * 1024;

/// The attached tracer. Dropping it detaches this session's links and
/// releases its slot; the programs stay pinned, and the ring in the slot,
/// for the next session.
pub struct Tracer {
    /// First: dropped (detached, slot released) before the ring is unmapped.
    session: Session,
    ring: AsyncFd<RingBuf<MapData>>,
    /// The session's cgroup: records for another (left in a reused ring by
    /// the session before) are dropped.
    cgroup_id: u64,
    /// Records dropped so.
    stale: u64,
    /// Next expected per-CPU sequence number.
    expected: Vec<u64>,
    gaps: u64,
    /// Registration and attach time (with the load, when this session
    /// loaded the programs).
    pub startup: Duration,
    /// Whether this session loaded and pinned the programs.
    pub loaded: bool,
}

/// The kernel's own BTF.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

impl Tracer {
    /// Takes a slot with a ring buffer of `ring_bytes` for cgroup
    /// `cgroup_id` with the pinned programs, loading and pinning them first
    /// if this is the first session since boot (or since sbx or the kernel
    /// changed), and attaches them for the session; `attached` is called
    /// then, before the ring is mapped.
    pub fn start(cgroup_id: u64, ring_bytes: u32, attached: impl FnOnce()) -> Result<Self, EbpfError> {
        let started = Instant::now();
        // A power of two of whole pages, as the kernel wants.
        let ring_bytes = ring_bytes.max(4096).checked_next_power_of_two().unwrap_or(1 << 31);
        let (pinned, loaded) = Pinned::open_or_load(false, load_and_pin)?;
        tracing::debug!("pinned programs open after {:?} (loaded now: {loaded})", started.elapsed());
        let (session, ring) = match Self::attach(pinned, cgroup_id, ring_bytes, started) {
            Ok(s) => s,
            // Pins that do not work (left by a load that went wrong): load afresh, once.
            Err(e) if !loaded => {
                tracing::debug!("the pinned tracer failed ({e}); loading it again");
                let (pinned, _) = Pinned::open_or_load(true, load_and_pin)?;
                Self::attach(pinned, cgroup_id, ring_bytes, started)?
            }
            Err(e) => return Err(e),
        };
        // The kernel fills the ring from now on: the command may start while
        // user space maps it (~2 ms for 16 MiB: the kernel maps every page).
        attached();
        let ring = RingBuf::try_from(Map::RingBuf(MapData::from_fd(ring).map_err(|e| EbpfError::Map("ring buffer", e))?))
            .map_err(|e| EbpfError::Map("ring buffer", e))?;
        // SAFETY: the ring buffer owns its descriptor, which stays open and
        // the same for as long as the AsyncFd holds it.
        let ring = unsafe { AsyncFd::register(ring) }.map_err(|e| EbpfError::Poll(e.into_parts().1))?;
        tracing::debug!("ring buffer mapped after {:?}", started.elapsed());
        let cpus = aya::util::nr_cpus().unwrap_or(1);
        Ok(Self { session, ring, cgroup_id, expected: vec![0; cpus], gaps: 0, stale: 0, startup: started.elapsed(), loaded })
    }

    fn attach(pinned: Pinned, cgroup_id: u64, ring_bytes: u32, started: Instant) -> Result<(Session, std::os::fd::OwnedFd), EbpfError> {
        let (mut session, ring) = Session::claim(pinned, cgroup_id, ring_bytes)?;
        tracing::debug!("tracer slot {} claimed after {:?}", session.slot(), started.elapsed());
        session.attach(|name| tracing::debug!("{name} attached after {:?}", started.elapsed()))?;
        Ok((session, ring))
    }

    /// Waits for events and appends every available one to `out`: when the
    /// kernel program wakes us (a backlog of `WAKE_BYTES`), or after
    /// `DRAIN_INTERVAL_MS` at the latest, since it does not wake us for
    /// every record.
    pub async fn wait_batch(&mut self, out: &mut Vec<RawEvent>) -> io::Result<()> {
        let interval = std::time::Duration::from_millis(sbx_common::DRAIN_INTERVAL_MS);
        match tokio::time::timeout(interval, self.ring.readable_mut()).await {
            Ok(guard) => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), out, self.cgroup_id, &mut self.expected, &mut self.gaps, &mut self.stale);
                guard.clear_ready();
            }
            Err(_) => drain(self.ring.get_mut(), out, self.cgroup_id, &mut self.expected, &mut self.gaps, &mut self.stale),
        }
        Ok(())
    }

    /// Takes whatever is in the ring buffer now, without waiting.
    pub fn drain_now(&mut self, out: &mut Vec<RawEvent>) {
        drain(self.ring.get_mut(), out, self.cgroup_id, &mut self.expected, &mut self.gaps, &mut self.stale);
        if self.stale > 0 {
            tracing::debug!("dropped {} records of the slot's previous session", self.stale);
        }
    }

    /// Events lost so far: the larger of the sequence gaps seen and the
    /// kernel's count of failed reservations (they agree once drained).
    pub fn lost(&self) -> u64 {
        self.session.lost().max(self.gaps)
    }
}

/// Loads the object's tracer programs and pins them, with the maps the
/// sessions share, into `dir`; the kernel facts are written to `CONFIG`
/// first. With cached facts that do not work, reads them afresh once.
fn load_and_pin(dir: &Path) -> Result<(), EbpfError> {
    let started = Instant::now();
    // What the load needs from the kernel's BTF: the struct offsets the
    // walk follows and the ids of the three hooks' typedefs. Cached per
    // boot; else read from the BTF (6 MB) by our own small reader.
    let (facts, cached) = kernel_facts(false)?;
    match load_with(&facts, dir, started) {
        Err(e) if cached => {
            tracing::debug!("loading with the cached kernel facts failed ({e}); reading them again");
            let (facts, _) = kernel_facts(true)?;
            load_with(&facts, dir, started)
        }
        r => r,
    }
}

fn load_with(facts: &KernelFacts, dir: &Path, started: Instant) -> Result<(), EbpfError> {
    // aya's load looks up each hook's typedef by name in a parsed BTF:
    // given one with just those typedefs at the kernel's ids, it needs
    // no parse of the kernel's (~20 ms). Our object has no CO-RE
    // relocations, so the loader needs nothing else from it.
    let hooks = facts.hooks();
    let hooks: Vec<(&str, u32)> = hooks.iter().map(|(name, id)| (name.as_str(), *id)).collect();
    let btf = Btf::parse(&super::btf::typedefs_at(&hooks), aya::Endianness::default()).map_err(EbpfError::Btf)?;
    let mut loader = loader_without_btf();
    tracing::debug!("kernel facts ready after {:?}", started.elapsed());
    let mut ebpf = loader.btf(Some(&btf)).load(OBJECT).map_err(EbpfError::Load)?;
    {
        let map = ebpf.map_mut("CONFIG").ok_or(EbpfError::MissingMap("CONFIG"))?;
        let mut cfg: Array<_, u64> = Array::try_from(map).map_err(|e| EbpfError::Map("CONFIG", e))?;
        for &(slot, value) in &facts.offsets {
            cfg.set(slot, value, 0).map_err(|e| EbpfError::Map("CONFIG", e))?;
        }
        cfg.set(config::OFFSETS_SET, 1, 0).map_err(|e| EbpfError::Map("CONFIG", e))?;
    }
    tracing::debug!("object loaded after {:?}", started.elapsed());
    let pin_err = |path: PathBuf| move |e: aya::pin::PinError| EbpfError::Pins { path, source: io::Error::other(e.to_string()) };
    // Maps first, programs last: a session that finds every program pinned
    // finds the maps too.
    for &name in SHARED_MAPS {
        let map = ebpf.map(name).ok_or(EbpfError::MissingMap(name))?;
        let data: &MapData = match map {
            Map::ArrayOfMaps(d) | Map::Array(d) | Map::PerCpuArray(d) => d,
            _ => return Err(EbpfError::MissingMap(name)),
        };
        data.pin(dir.join(name)).map_err(pin_err(dir.join(name)))?;
    }
    for &(name, hook) in PROGRAMS {
        let program: &mut BtfTracePoint = ebpf
            .program_mut(name)
            .ok_or(EbpfError::MissingProgram(name))?
            .try_into()
            .map_err(|source| EbpfError::Program { name, hook, source })?;
        program.load(hook, &btf).map_err(|source| EbpfError::Program { name, hook, source })?;
        tracing::debug!("{name} verified after {:?}", started.elapsed());
        program.pin(dir.join(name)).map_err(pin_err(dir.join(name)))?;
    }
    Ok(())
}

/// aya 0.14's `EbpfLoader::new` parses the kernel's BTF itself (~20 ms of
/// the start-up) although the loader is then given ours. Built on a thread
/// of its own whose root directory is an empty, kernel-owned one, it finds
/// no BTF and skips that. Without CAP_SYS_CHROOT, the plain `new`.
fn loader_without_btf() -> EbpfLoader<'static> {
    std::thread::spawn(|| {
        // CLONE_FS: the root directory changes for this thread only.
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).is_ok() {
            let _ = nix::unistd::chroot("/proc/self/fdinfo");
        }
        EbpfLoader::new()
    })
    .join()
    .unwrap_or_else(|_| EbpfLoader::new())
}

/// What the tracer's load needs from the kernel's BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelFacts {
    /// `(CONFIG slot, byte offset)` for each struct member the walk follows.
    offsets: Vec<(u32, u64)>,
    /// The BTF ids of `btf_trace_<hook>`, in `PROGRAMS` order.
    hook_ids: Vec<u32>,
}

impl KernelFacts {
    fn hooks(&self) -> Vec<(String, u32)> {
        PROGRAMS.iter().zip(&self.hook_ids).map(|(&(_, hook), &id)| (format!("btf_trace_{hook}"), id)).collect()
    }

    fn from_btf(vmlinux: &[u8]) -> Result<Self, EbpfError> {
        let btf = super::btf::Btf::parse(vmlinux).map_err(EbpfError::KernelBtf)?;
        let offsets = kernel_offsets(&btf).map_err(EbpfError::KernelBtf)?;
        let hook_ids = PROGRAMS
            .iter()
            .map(|&(name, hook)| {
                btf.typedef_id(&format!("btf_trace_{hook}")).ok_or(EbpfError::MissingHook { name, hook })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { offsets, hook_ids })
    }

    /// `key`, then one `slot value` line per offset, then `hook id` lines.
    fn render(&self, key: &str) -> String {
        let mut out = format!("{key}\n");
        for (slot, value) in &self.offsets {
            out.push_str(&format!("{slot} {value}\n"));
        }
        for (i, id) in self.hook_ids.iter().enumerate() {
            out.push_str(&format!("hook{i} {id}\n"));
        }
        out
    }

    fn parse(text: &str, key: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()? != key {
            return None;
        }
        let (mut offsets, mut hook_ids) = (Vec::new(), Vec::new());
        for line in lines {
            let (a, b) = line.split_once(' ')?;
            match a.strip_prefix("hook") {
                Some(_) => hook_ids.push(b.parse().ok()?),
                None => offsets.push((a.parse().ok()?, b.parse().ok()?)),
            }
        }
        (offsets.len() == OFFSET_SLOTS && hook_ids.len() == PROGRAMS.len()).then_some(Self { offsets, hook_ids })
    }
}

/// Where [`KernelFacts`] are cached: root's tmpfs, emptied at boot, which
/// is the only time the kernel can change.
const FACTS_CACHE: &str = "/run/sbx/kernel-facts";

/// The kernel facts, from this boot's cache or read from the BTF and
/// cached (root only; a failure to cache is silent).
/// Whether they came from the cache is the second value; `fresh` skips it.
fn kernel_facts(fresh: bool) -> Result<(KernelFacts, bool), EbpfError> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let size = std::fs::metadata(VMLINUX_BTF).map_err(EbpfError::BtfRead)?.len();
    let key = format!("v1 {} {size}", boot.trim());
    let path = Path::new(FACTS_CACHE);
    if !fresh && let Some(facts) = std::fs::read_to_string(path).ok().and_then(|t| KernelFacts::parse(&t, &key)) {
        return Ok((facts, true));
    }
    let facts = KernelFacts::from_btf(&std::fs::read(VMLINUX_BTF).map_err(EbpfError::BtfRead)?)?;
    let _ = std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(path.parent().unwrap_or(path));
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, facts.render(&key)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
    Ok((facts, false))
}

/// How many offsets `kernel_offsets` gives.
const OFFSET_SLOTS: usize = 17;

/// The struct member offsets the base-directory walk follows, for
/// `sbx_common::config`.
fn kernel_offsets(btf: &super::btf::Btf) -> Result<Vec<(u32, u64)>, super::btf::BtfError> {
    let o = |s: &str, m: &str| btf.offset(s, m);
    Ok(vec![
        (config::TASK_FS, o("task_struct", "fs")?),
        (config::FS_PWD, o("fs_struct", "pwd")?),
        (config::PATH_MNT, o("path", "mnt")?),
        (config::PATH_DENTRY, o("path", "dentry")?),
        (config::DENTRY_PARENT, o("dentry", "d_parent")?),
        (config::DENTRY_NAME, o("dentry", "d_name")? + o("qstr", "name")?),
        (config::MOUNT_MNT, o("mount", "mnt")?),
        (config::MOUNT_PARENT, o("mount", "mnt_parent")?),
        (config::MOUNT_MOUNTPOINT, o("mount", "mnt_mountpoint")?),
        (config::VFSMOUNT_ROOT, o("vfsmount", "mnt_root")?),
        (config::TASK_FILES, o("task_struct", "files")?),
        (config::FILES_FDT, o("files_struct", "fdt")?),
        (config::FDTABLE_FD, o("fdtable", "fd")?),
        (config::FDTABLE_MAX_FDS, o("fdtable", "max_fds")?),
        (config::FILE_PATH, o("file", "f_path")?),
        (config::TASK_REAL_PARENT, o("task_struct", "real_parent")?),
        (config::TASK_TGID, o("task_struct", "tgid")?),
    ])
}

fn drain(ring: &mut RingBuf<MapData>, out: &mut Vec<RawEvent>, session: u64, expected: &mut [u64], gaps: &mut u64, stale: &mut u64) {
    while let Some(item) = ring.next() {
        // A record is a prefix of a RawEvent (RECORD_SHORT, RECORD_PATH2 or
        // all of it); the rest stays zero.
        if item.len() < RECORD_SHORT || item.len() > RECORD_FULL {
            continue;
        }
        // SAFETY: RawEvent is plain data, valid for any bit pattern (zero
        // included), and `item.len()` bytes fit in it.
        let ev: RawEvent = unsafe {
            let mut ev: RawEvent = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(item.as_ptr(), (&raw mut ev).cast::<u8>(), item.len());
            ev
        };
        if ev.session != session {
            *stale += 1;
            continue;
        }
        if let Some(next) = expected.get_mut(ev.cpu as usize) {
            if ev.seq > *next {
                *gaps += ev.seq - *next;
            }
            *next = ev.seq + 1;
        }
        out.push(ev);
    }
}

/// A NUL-terminated byte field as text.
pub fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// `/proc/PID/...` path for reading a traced process's state.
pub fn proc_path(pid: u32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_facts_are_complete_and_round_trip_through_the_cache_text() {
        let data = std::fs::read(VMLINUX_BTF).expect("this host has kernel BTF (see `sbx doctor`)");
        let facts = KernelFacts::from_btf(&data).unwrap();
        assert_eq!(facts.offsets.len(), OFFSET_SLOTS);
        assert!(facts.offsets.iter().all(|&(slot, _)| slot < config::SLOTS));
        assert_eq!(facts.hook_ids.len(), PROGRAMS.len());
        let text = facts.render("k");
        assert_eq!(KernelFacts::parse(&text, "k"), Some(facts.clone()));
        assert_eq!(KernelFacts::parse(&text, "other boot"), None);
        assert_eq!(KernelFacts::parse("k\n1 2\n", "k"), None, "an incomplete cache is not used");
    }
}
