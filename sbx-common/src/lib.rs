//! Types shared by sbx's kernel programs (`sbx-ebpf`) and user space (`sbx`).
//!
//! Every type that crosses the boundary is `#[repr(C)]`, `Copy`, has explicit
//! padding and no `bool` or Rust enum, and a `const` assertion pins its size,
//! so that both sides agree byte for byte.
#![no_std]

/// Slots of the `PROBE_HITS` array used by `sbx doctor`'s attach check.
pub mod probe {
    /// Number of slots in `PROBE_HITS`.
    pub const SLOTS: u32 = 2;
    /// Bumped by the tp_btf probe on `sched_process_fork`.
    pub const FORK: u32 = 0;
    /// Bumped by the fexit probe on `security_file_open`.
    pub const FILE_OPEN: u32 = 1;
}

/// Bytes of a path argument copied from the traced program's memory.
pub const PATH_LEN: usize = 256;
/// Bytes of a task's comm.
pub const COMM_LEN: usize = 16;

/// `RawEvent::kind`: a syscall of the traced tree failed with EACCES, EPERM
/// or EROFS.
pub const KIND_DENIAL: u32 = 1;
/// `RawEvent::kind`: a process of the tree exec'd.
pub const KIND_EXEC: u32 = 2;
/// `RawEvent::kind`: a process (thread group) of the tree exited.
pub const KIND_EXIT: u32 = 3;

/// `RawEvent::flags`: `path` holds the path argument (possibly truncated).
pub const FLAG_PATH: u32 = 2;
/// `RawEvent::flags`: `path2` holds a second path argument (rename, link).
pub const FLAG_PATH2: u32 = 4;

/// `RawEvent::flags`: `cwd` holds the directory a relative `path` was
/// resolved from (the working directory, or the dirfd's), complete up to
/// the sandbox's root.
pub const FLAG_BASE: u32 = 8;

/// `RawEvent::flags`: `path` holds the first bytes of a socket address
/// (`struct sockaddr`, at most [`ADDR_LEN`]) that connect, bind, sendto,
/// sendmsg or sendmmsg was given; its length is in `args` (connect, bind:
/// args[2]; the sends: args[5], which for sendmsg and sendmmsg the tracer
/// sets to the msghdr's `msg_namelen`).
pub const FLAG_ADDR: u32 = 16;

/// Bytes of a socket address the tracer copies: a `sockaddr_un` with its
/// whole path (the inet ones are shorter).
pub const ADDR_LEN: usize = 110;

/// Steps of the base-directory walk, one slot each: a component, or an
/// empty slot where the walk crossed a mount.
pub const BASE_PARTS: usize = 16;
/// Bytes per component (a longer name is truncated: user space then
/// treats the base as unknown).
pub const BASE_PART_LEN: usize = 32;

/// Slots of the `CONFIG` array, written by user space before attaching.
/// Besides the cgroup, the byte offsets of the kernel struct members the
/// base-directory walk follows, read from the kernel's BTF at load time
/// (Rust eBPF has no CO-RE relocations).
pub mod config {
    /// Slot 0 is unused (it held the traced cgroup's id before each
    /// session had links of its own, with the cgroup id as their cookie).
    pub const UNUSED: u32 = 0;
    /// `task_struct.fs`
    pub const TASK_FS: u32 = 1;
    /// `fs_struct.pwd`
    pub const FS_PWD: u32 = 2;
    /// `path.mnt`
    pub const PATH_MNT: u32 = 3;
    /// `path.dentry`
    pub const PATH_DENTRY: u32 = 4;
    /// `dentry.d_parent`
    pub const DENTRY_PARENT: u32 = 5;
    /// `dentry.d_name` + `qstr.name`
    pub const DENTRY_NAME: u32 = 6;
    /// `mount.mnt` (the embedded `struct vfsmount`)
    pub const MOUNT_MNT: u32 = 7;
    /// `mount.mnt_parent`
    pub const MOUNT_PARENT: u32 = 8;
    /// `mount.mnt_mountpoint`
    pub const MOUNT_MOUNTPOINT: u32 = 9;
    /// `vfsmount.mnt_root`
    pub const VFSMOUNT_ROOT: u32 = 10;
    /// `task_struct.files`
    pub const TASK_FILES: u32 = 11;
    /// `files_struct.fdt`
    pub const FILES_FDT: u32 = 12;
    /// `fdtable.fd`
    pub const FDTABLE_FD: u32 = 13;
    /// `fdtable.max_fds`
    pub const FDTABLE_MAX_FDS: u32 = 14;
    /// `file.f_path`
    pub const FILE_PATH: u32 = 15;
    /// Non-zero once the offsets above are set.
    pub const OFFSETS_SET: u32 = 16;
    /// `task_struct.real_parent`
    pub const TASK_REAL_PARENT: u32 = 17;
    /// `task_struct.tgid`
    pub const TASK_TGID: u32 = 18;
    /// Number of slots.
    pub const SLOTS: u32 = 19;
}

/// One event in the ring buffer. A record holds only the prefix it needs
/// (see [`RECORD_SHORT`], [`RECORD_PATH2`]): the parts that are rarely
/// used (a second path, the base directory) come last.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawEvent {
    pub kind: u32,
    /// The CPU whose sequence `seq` belongs to.
    pub cpu: u32,
    /// Per-CPU sequence number, taken before the record is written to the
    /// ring buffer: a gap means events were lost.
    pub seq: u64,
    pub ktime_ns: u64,
    /// Thread group id (the process).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub syscall_nr: i64,
    pub ret: i64,
    /// The syscall's six arguments, from the saved user registers.
    pub args: [u64; 6],
    pub flags: u32,
    /// Slots of `base` in use (with FLAG_BASE).
    pub base_len: u32,
    pub comm: [u8; COMM_LEN],
    /// For KIND_EXEC: the parent's thread group id (0 when unknown).
    pub ppid: u32,
    pub _pad: u32,
    /// The cgroup id of the session the record is for: a ring buffer kept
    /// for reuse may still hold records of the session before, which user
    /// space drops by this.
    pub session: u64,
    pub path: [u8; PATH_LEN],
    pub path2: [u8; PATH_LEN],
    /// The base directory of a relative `path`, innermost component first
    /// (`/a/b/c` is `["c", "b", "a"]`), in `base_len` slots; an empty slot
    /// is a mount crossing.
    pub base: [[u8; BASE_PART_LEN]; BASE_PARTS],
}

const _: () = assert!(
    core::mem::size_of::<RawEvent>()
        == 4 + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 48 + 4 + 4 + 16 + 8 + 8 + 2 * PATH_LEN + BASE_PARTS * BASE_PART_LEN
);

/// Bytes of a record without `path2` and `base` (no FLAG_PATH2, no FLAG_BASE).
pub const RECORD_SHORT: usize = core::mem::offset_of!(RawEvent, path2);
/// Bytes of a record with `path2` but without `base`.
pub const RECORD_PATH2: usize = core::mem::offset_of!(RawEvent, base);
/// Bytes of a whole record.
pub const RECORD_FULL: usize = core::mem::size_of::<RawEvent>();

/// Sessions that can be traced at once: the slots of `SLOTS`, `RINGS` and
/// `STATS`. A session's links carry its slot as their cookie.
pub const MAX_SESSIONS: u32 = 1024;

/// A slot's per-CPU counters in `STATS`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SessionStats {
    /// The next event's sequence number on this CPU.
    pub seq: u64,
    /// Records the session's ring buffer had no room for on this CPU.
    pub lost: u64,
}

const _: () = assert!(core::mem::size_of::<SessionStats>() == 16);

/// The kernel program wakes user space when this many bytes wait in the
/// ring buffer; user space also drains it every [`DRAIN_INTERVAL_MS`].
pub const WAKE_BYTES: u64 = 256 * 1024;
/// How often user space drains the ring buffer without being woken.
pub const DRAIN_INTERVAL_MS: u64 = 10;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are plain #[repr(C)] data with explicit padding, valid
    // for any bit pattern.
    unsafe impl aya::Pod for super::RawEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SessionStats {}
}
