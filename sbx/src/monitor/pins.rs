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
//! Each session then ([`Session::register`]):
//! - creates a ring buffer of its own and registers it in the pinned
//!   `SESSIONS` map of maps under its cgroup id, with its counters in
//!   `STATS`;
//! - removes the entries of sessions whose cgroup is gone (a session that
//!   crashed), so nothing grows;
//! - attaches the programs through links of its own whose cookie is its
//!   cgroup id: a program run reports only for the task's session, into its
//!   ring.
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
        unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
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
pub const SHARED_MAPS: &[&str] = &["SESSIONS", "STATS"];

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
    sessions: OwnedFd,
    stats: OwnedFd,
}

fn pin_path(dir: &Path, name: &str) -> CString {
    CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap_or_default()
}

impl Pinned {
    /// Opens this build's pins, when every one of them is there.
    fn open(dir: &Path) -> io::Result<Self> {
        let progs = PROGRAMS.iter().map(|(name, _)| bpf::obj_get(&pin_path(dir, name))).collect::<io::Result<Vec<_>>>()?;
        let sessions = bpf::obj_get(&pin_path(dir, "SESSIONS"))?;
        let stats = bpf::obj_get(&pin_path(dir, "STATS"))?;
        Ok(Self { dir: dir.to_path_buf(), progs, sessions, stats })
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

/// Checks that `root` is a root-owned directory of mode 0700 on bpffs.
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
    let on_bpffs = |p: &Path| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC);
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

/// A session registered with the pinned programs: its links (the programs
/// attached for its cgroup) and its entries in the shared maps, all
/// released on drop.
pub struct Session {
    /// Closed first on drop: the programs stop running for this session.
    links: Vec<OwnedFd>,
    sessions: OwnedFd,
    stats: OwnedFd,
    id: u64,
    cpus: usize,
}

/// `SessionStats` for every possible CPU, as a per-CPU map's value.
fn stats_bytes(cpus: usize) -> Vec<u8> {
    vec![0u8; cpus * std::mem::size_of::<SessionStats>()]
}

impl Session {
    /// Registers `ring` for cgroup `id` (its directory `cgroup`, whose
    /// parent is on the cgroup2 mount the dead sessions' ids are looked up
    /// in), removes the entries of sessions whose cgroup is gone, and
    /// attaches the programs for this session. `attached` is called after
    /// each attach with the program's name, for timings.
    pub fn register(pinned: Pinned, id: u64, cgroup: &Path, ring: &OwnedFd, mut attached: impl FnMut(&str)) -> Result<Self, EbpfError> {
        let cpus = aya::util::nr_cpus().unwrap_or(1);
        let key = id.to_ne_bytes();
        let reg = |source| EbpfError::Register { source };
        bpf::map_update(pinned.stats.as_fd(), &key, &stats_bytes(cpus), bpf::BPF_ANY).map_err(reg)?;
        let mut session = Self { links: Vec::new(), sessions: pinned.sessions, stats: pinned.stats, id, cpus };
        let fd = (std::os::fd::AsRawFd::as_raw_fd(ring) as u32).to_ne_bytes();
        bpf::map_update(session.sessions.as_fd(), &key, &fd, bpf::BPF_ANY).map_err(reg)?;
        if let Some(mount) = cgroup.parent().and_then(|p| std::fs::File::open(p).ok()) {
            session.reap(OwnedFd::from(mount));
        }
        for (prog, &(name, hook)) in pinned.progs.iter().zip(PROGRAMS) {
            let link = bpf::attach_with_cookie(prog.as_fd(), id).map_err(|source| EbpfError::Attach { name, hook, source })?;
            session.links.push(link);
            attached(name);
        }
        Ok(session)
    }

    /// Removes the entries of other sessions whose cgroup no longer exists.
    fn reap(&self, mount: OwnedFd) {
        let limit = MAX_SESSIONS as usize * 2;
        for map in [&self.sessions, &self.stats] {
            for other in bpf::map_keys_u64(map.as_fd(), limit).unwrap_or_default() {
                if other != self.id && bpf::cgroup_exists(mount.as_fd(), other) == Some(false) {
                    tracing::debug!("removing the tracer's entry of cgroup {other}, which is gone");
                    let _ = bpf::map_delete(map.as_fd(), &other.to_ne_bytes());
                }
            }
        }
    }

    /// Records this session's ring buffer had no room for, on all CPUs.
    pub fn lost(&self) -> u64 {
        let mut value = stats_bytes(self.cpus);
        if bpf::map_lookup(self.stats.as_fd(), &self.id.to_ne_bytes(), &mut value).is_err() {
            return 0;
        }
        value.chunks_exact(16).map(|c| u64::from_ne_bytes(c[8..16].try_into().unwrap_or_default())).sum()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.links.clear();
        let key = self.id.to_ne_bytes();
        let _ = bpf::map_delete(self.sessions.as_fd(), &key);
        let _ = bpf::map_delete(self.stats.as_fd(), &key);
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
    /// This build's pins: the kernel's ids of the programs, and the
    /// sessions registered now (each attached through links of its own).
    pub loaded: Option<(Vec<u32>, usize)>,
    /// Other keys found (another sbx or kernel; removed at the next load).
    pub others: Vec<String>,
}

/// The pins' state, read without changing anything.
pub fn status() -> Status {
    let root = Path::new(PIN_ROOT);
    let key = key();
    let bpffs = nix::sys::statfs::statfs(BPFFS).is_ok_and(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC);
    let root_state = std::fs::symlink_metadata(root).ok().map(|_| check_root(root).is_ok());
    let loaded = Pinned::open(&root.join(&key)).ok().map(|p| {
        let ids = p.progs.iter().filter_map(|f| bpf::obj_id(f.as_fd()).ok()).collect();
        let sessions = bpf::map_keys_u64(p.sessions.as_fd(), MAX_SESSIONS as usize * 2).map(|k| k.len()).unwrap_or(0);
        (ids, sessions)
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
