//! The tracer's programs, loaded once and shared by every session.
//!
//! Loading (the verifier) is most of a tracer's start-up, attaching is not.
//! So the first monitored session after boot (or after sbx or the kernel
//! changed) loads the programs and pins them, with the maps every session
//! shares, under [`PIN_ROOT`]`/<key>`, where the key names this sbx's
//! version, the eBPF object's hash and the kernel's release: a new sbx or
//! kernel never picks up programs it did not load, and the load that finds
//! another key removes it (sessions still running on it keep their
//! descriptors, so the old programs live until they end).
//!
//! A session then takes a *slot* ([`Session::claim`]): the first slot whose
//! lock file (`/run/sbx/tracer-slots/<n>`, root's tmpfs) it can `flock`.
//! The slot's entries in the shared maps are its own while it holds the
//! lock: `SLOTS[n]` its cgroup id, `RINGS[n]` its ring buffer, `STATS[n]`
//! its counters. It attaches the programs through links of its own whose
//! cookie is the slot ([`Session::attach`]): a program run reports only for
//! the task's session, into its ring.
//!
//! A slot's ring buffer is kept for the next session that takes the slot
//! (emptied first), because creating one and putting it in the map of maps
//! costs ~20 ms (the kernel waits for an RCU grace period on every update of
//! a map of maps). So a session normally changes plain array entries only,
//! and nothing grows: the slots in use at once are bounded by the sessions
//! that ran at once, and a killed session's slot, lock and entries are simply
//! the next one's.
//!
//! The links are held by the session's descriptors only, never pinned: when
//! the last session ends, or is killed, the kernel detaches the programs,
//! so with no session running no process on the host pays for them. The
//! cost while several sessions run is one more program run per syscall exit
//! per session (each returns after comparing the result).
//!
//! The first load is serialised by a `flock` on the pin root; [`PIN_ROOT`]
//! is root's, mode 0700, checked on every use, and bpffs is mounted at
//! [`BPFFS`] (mode 0700) when it is not.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    },
    path::{Path, PathBuf},
};

use sbx_common::{MAX_SESSIONS, SessionStats};

use super::ebpf::EbpfError;
use crate::sys::bpf;

/// Where bpffs is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// sbx's pins: a directory per key.
pub const PIN_ROOT: &str = "/sys/fs/bpf/sbx";
/// bpffs's `f_type`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The tracer's programs and the tracepoints they attach to.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("sbx_sys_exit", "sys_exit"),
    ("sbx_exec", "sched_process_exec"),
    ("sbx_exit", "sched_process_exit"),
];
/// The maps a session uses, pinned beside the programs.
pub const SHARED_MAPS: &[&str] = &["RINGS", "SLOTS", "STATS"];
/// The slots' lock files.
const SLOT_LOCKS: &str = "/run/sbx/tracer-slots";

/// The eBPF object's SHA-256, from build.rs.
const OBJECT_SHA256: &str = include_str!(concat!(env!("OUT_DIR"), "/ebpf_sha256"));

/// This build's directory under [`PIN_ROOT`]: `tracer-<sbx version>-<first
/// 16 hex digits of the object's SHA-256>-<kernel release>`, with every
/// character but letters, digits, `-` and `+` as `_` (bpffs refuses dots in
/// names).
pub fn key() -> String {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let key = format!("tracer-{}-{}-{release}", env!("CARGO_PKG_VERSION"), &OBJECT_SHA256.trim()[..16]);
    key.chars().map(|c| if c.is_ascii_alphanumeric() || "-+".contains(c) { c } else { '_' }).collect()
}

/// The pinned programs and shared maps, open.
pub struct Pinned {
    pub dir: PathBuf,
    /// In [`PROGRAMS`] order.
    progs: Vec<OwnedFd>,
    rings: OwnedFd,
    slots: OwnedFd,
    stats: OwnedFd,
}

fn pin_path(dir: &Path, name: &str) -> CString {
    CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap_or_default()
}

impl Pinned {
    /// Opens this build's pins, when every one of them is there.
    fn open(dir: &Path) -> io::Result<Self> {
        let progs = PROGRAMS.iter().map(|(name, _)| bpf::obj_get(&pin_path(dir, name))).collect::<io::Result<Vec<_>>>()?;
        let map = |name| bpf::obj_get(&pin_path(dir, name));
        Ok(Self { dir: dir.to_path_buf(), progs, rings: map("RINGS")?, slots: map("SLOTS")?, stats: map("STATS")? })
    }

    /// This build's pins, loaded by `load` (given the empty directory to pin
    /// into) when they are not there yet; whether this call loaded them is
    /// the second value. `reload` drops the pins found first (they did not
    /// work).
    pub fn open_or_load(reload: bool, load: impl FnOnce(&Path) -> Result<(), EbpfError>) -> Result<(Self, bool), EbpfError> {
        let root = Path::new(PIN_ROOT);
        let dir = root.join(key());
        if !reload && check_root(root).is_ok() && let Ok(p) = Self::open(&dir) {
            return Ok((p, false));
        }
        let pin_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EbpfError::Pins { path, source }
        };
        ensure_root(root)?;
        // The first load of each key happens once: the others wait here,
        // then find the pins.
        let lock = std::fs::File::open(root).map_err(pin_err(root))?;
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| EbpfError::Pins { path: root.to_path_buf(), source: e.into() })?;
        if !reload && let Ok(p) = Self::open(&dir) {
            return Ok((p, false));
        }
        // Other keys (another sbx, another kernel) and a partial or broken
        // load of ours.
        if let Ok(entries) = std::fs::read_dir(root) {
            for entry in entries.flatten() {
                remove_pins(&entry.path());
            }
        }
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(pin_err(&dir))?;
        if let Err(e) = load(&dir) {
            remove_pins(&dir);
            return Err(e);
        }
        Ok((Self::open(&dir).map_err(pin_err(&dir))?, true))
    }
}

/// Removes a directory of pins (the pins are unlinked: programs and maps
/// stay alive while a descriptor holds them).
fn remove_pins(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Whether `path` is on bpffs.
fn on_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::FsType(BPF_FS_MAGIC as _))
}

/// Checks that `root` is a directory of root's with mode 0700 (no symlink).
fn check_root(root: &Path) -> Result<(), EbpfError> {
    let meta = std::fs::symlink_metadata(root).map_err(|source| EbpfError::Pins { path: root.to_path_buf(), source })?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(EbpfError::UnsafePins(root.to_path_buf()));
    }
    Ok(())
}

/// Mounts bpffs at [`BPFFS`] when it is not there, and creates [`PIN_ROOT`]
/// (0700) when absent; then [`check_root`].
fn ensure_root(root: &Path) -> Result<(), EbpfError> {
    let bpffs = Path::new(BPFFS);
    if !on_bpffs(bpffs) {
        // Two sessions mounting at once stack two mounts: the second hides
        // the first's pins, which the first still holds open, and all later
        // sessions use the top one.
        let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC;
        nix::mount::mount(Some("bpf"), bpffs, Some("bpf"), flags, Some("mode=0700"))
            .map_err(|e| EbpfError::Pins { path: bpffs.to_path_buf(), source: e.into() })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(root) {
        Ok(()) => {
            // The umask may have taken bits off, never added: set exactly.
            let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(EbpfError::Pins { path: root.to_path_buf(), source }),
    }
    check_root(root)
}

/// A session's slot with the pinned programs: its lock, its links (the
/// programs attached for it) and its entries in the shared maps, released
/// on drop (the ring buffer stays in the slot for the next session).
pub struct Session {
    /// Closed first on drop: the programs stop running for this session.
    links: Vec<OwnedFd>,
    progs: Vec<OwnedFd>,
    slots: OwnedFd,
    stats: OwnedFd,
    slot: u32,
    cpus: usize,
    /// Held for the session: the slot is ours while it is locked.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// `SessionStats` for every possible CPU, as a per-CPU map's value.
fn stats_bytes(cpus: usize) -> Vec<u8> {
    vec![0u8; cpus * std::mem::size_of::<SessionStats>()]
}

/// Takes the first free slot: the first lock file that can be locked.
fn lock_slot() -> Result<(u32, nix::fcntl::Flock<std::fs::File>), EbpfError> {
    let dir = Path::new(SLOT_LOCKS);
    let err = |source| EbpfError::Pins { path: dir.to_path_buf(), source };
    if let Err(e) = std::fs::DirBuilder::new().mode(0o700).recursive(true).create(dir) {
        return Err(err(e));
    }
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(EbpfError::UnsafePins(dir.to_path_buf()));
    }
    for slot in 0..MAX_SESSIONS {
        let path = dir.join(slot.to_string());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&path)
            .map_err(|source| EbpfError::Pins { path: path.clone(), source })?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok((slot, lock)),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
            Err((_, e)) => return Err(EbpfError::Pins { path, source: e.into() }),
        }
    }
    Err(EbpfError::Register { source: io::Error::other(format!("all {MAX_SESSIONS} tracer slots are in use")) })
}

impl Session {
    /// Takes a free slot for cgroup `cgroup_id` and returns it with the
    /// slot's ring buffer: the one a previous session left there when it has
    /// `ring_bytes`, else a new one put in its place. The programs are not
    /// attached yet: empty the ring of what a previous session left, then
    /// [`Session::attach`].
    pub fn claim(pinned: Pinned, cgroup_id: u64, ring_bytes: u32) -> Result<(Self, OwnedFd), EbpfError> {
        let (slot, lock) = lock_slot()?;
        let cpus = aya::util::nr_cpus().unwrap_or(1);
        let key = slot.to_ne_bytes();
        let reg = |source| EbpfError::Register { source };
        let mut id = [0u8; 4];
        let kept = bpf::map_lookup(pinned.rings.as_fd(), &key, &mut id)
            .ok()
            .and_then(|()| bpf::map_by_id(u32::from_ne_bytes(id)).ok())
            .filter(|ring| bpf::map_max_entries(ring.as_fd()).ok() == Some(ring_bytes));
        let ring = match kept {
            Some(ring) => ring,
            None => {
                let ring = bpf::ringbuf_create(ring_bytes, "sbx_events").map_err(EbpfError::Ring)?;
                let fd = (std::os::fd::AsRawFd::as_raw_fd(&ring) as u32).to_ne_bytes();
                bpf::map_update(pinned.rings.as_fd(), &key, &fd, bpf::BPF_ANY).map_err(reg)?;
                tracing::debug!("a new ring buffer of {ring_bytes} bytes in tracer slot {slot}");
                ring
            }
        };
        bpf::map_update(pinned.stats.as_fd(), &key, &stats_bytes(cpus), bpf::BPF_ANY).map_err(reg)?;
        bpf::map_update(pinned.slots.as_fd(), &key, &cgroup_id.to_ne_bytes(), bpf::BPF_ANY).map_err(reg)?;
        let session = Self { links: Vec::new(), progs: pinned.progs, slots: pinned.slots, stats: pinned.stats, slot, cpus, _lock: lock };
        Ok((session, ring))
    }

    /// Attaches the programs for this session; `attached` is called after
    /// each with the program's name, for timings.
    pub fn attach(&mut self, mut attached: impl FnMut(&str)) -> Result<(), EbpfError> {
        for (prog, &(name, hook)) in self.progs.iter().zip(PROGRAMS) {
            let link = bpf::attach_with_cookie(prog.as_fd(), u64::from(self.slot)).map_err(|source| EbpfError::Attach { name, hook, source })?;
            self.links.push(link);
            attached(name);
        }
        Ok(())
    }

    /// The slot this session holds.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Records this session's ring buffer had no room for, on all CPUs.
    pub fn lost(&self) -> u64 {
        let mut value = stats_bytes(self.cpus);
        if bpf::map_lookup(self.stats.as_fd(), &self.slot.to_ne_bytes(), &mut value).is_err() {
            return 0;
        }
        value.chunks_exact(16).map(|c| u64::from_ne_bytes(c[8..16].try_into().unwrap_or_default())).sum()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let started = std::time::Instant::now();
        self.links.clear();
        let _ = bpf::map_update(self.slots.as_fd(), &self.slot.to_ne_bytes(), &0u64.to_ne_bytes(), bpf::BPF_ANY);
        tracing::debug!("tracer slot {} detached and released in {:?}", self.slot, started.elapsed());
    }
}

/// What `sbx doctor` shows of the pins.
#[derive(Debug)]
pub struct Status {
    /// This build's key.
    pub key: String,
    /// bpffs is mounted at [`BPFFS`].
    pub bpffs: bool,
    /// [`PIN_ROOT`] exists; and whether it is root's and 0700.
    pub root: Option<bool>,
    /// This build's pins: the kernel's ids of the programs, the sessions
    /// running now (each attached through links of its own), and the ring
    /// buffers kept for reuse with their bytes.
    pub loaded: Option<Loaded>,
    /// Other keys found (another sbx or kernel; removed at the next load).
    pub others: Vec<String>,
}

#[derive(Debug)]
pub struct Loaded {
    pub program_ids: Vec<u32>,
    pub sessions: usize,
    pub rings: usize,
    pub ring_bytes: u64,
}

/// The pins' state, read without changing anything (a slot is in use when
/// its lock is held).
pub fn status() -> Status {
    let root = Path::new(PIN_ROOT);
    let key = key();
    let bpffs = on_bpffs(Path::new(BPFFS));
    let root_state = std::fs::symlink_metadata(root).ok().map(|_| check_root(root).is_ok());
    let loaded = Pinned::open(&root.join(&key)).ok().map(|p| {
        let program_ids = p.progs.iter().filter_map(|f| bpf::obj_id(f.as_fd()).ok()).collect();
        let (mut rings, mut ring_bytes) = (0, 0u64);
        for slot in 0..MAX_SESSIONS {
            let mut id = [0u8; 4];
            if bpf::map_lookup(p.rings.as_fd(), &slot.to_ne_bytes(), &mut id).is_ok()
                && let Ok(ring) = bpf::map_by_id(u32::from_ne_bytes(id))
            {
                rings += 1;
                ring_bytes += u64::from(bpf::map_max_entries(ring.as_fd()).unwrap_or(0));
            }
        }
        let sessions = std::fs::read_dir(SLOT_LOCKS)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| std::fs::File::open(e.path()).ok())
                    .filter(|f| {
                        let f = f.try_clone();
                        f.is_ok_and(|f| matches!(nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock), Err((_, nix::errno::Errno::EWOULDBLOCK))))
                    })
                    .count()
            })
            .unwrap_or(0);
        Loaded { program_ids, sessions, rings, ring_bytes }
    });
    let others = std::fs::read_dir(root)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| *n != key).collect())
        .unwrap_or_default();
    Status { key, bpffs, root: root_state, loaded, others }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_the_version_the_object_and_the_kernel() {
        let key = key();
        let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
        assert!(key.starts_with(&format!("tracer-{}-", env!("CARGO_PKG_VERSION").replace('.', "_"))), "{key}");
        assert!(key.contains(&OBJECT_SHA256.trim()[..16]), "{key}");
        assert!(key.ends_with(&release.replace('.', "_")), "{key}");
        assert!(!key.contains('/') && !key.contains('.'), "bpffs refuses dots: {key}");
    }

    #[test]
    fn only_a_private_directory_of_roots_is_used_for_the_pins() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::DirBuilder::new().mode(0o755).create(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(check_root(&open), Err(EbpfError::UnsafePins(_))), "group- and world-readable");
        let private = tmp.path().join("private");
        std::fs::DirBuilder::new().mode(0o700).create(&private).unwrap();
        let is_root = nix::unistd::geteuid().is_root();
        assert_eq!(check_root(&private).is_ok(), is_root, "0700, and ours: accepted only when we are root");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(matches!(check_root(&link), Err(EbpfError::UnsafePins(_))), "a symlink, even to a good directory");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(matches!(check_root(&file), Err(EbpfError::UnsafePins(_))));
    }
}
