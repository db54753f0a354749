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

/// Slots of the `CONFIG` array, written by user space before attaching.
pub mod config {
    /// The id of the cgroup (v2) whose tasks are traced.
    pub const CGROUP_ID: u32 = 0;
    /// Number of slots.
    pub const SLOTS: u32 = 1;
}

/// One event in the ring buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawEvent {
    pub kind: u32,
    /// The CPU whose sequence `seq` belongs to.
    pub cpu: u32,
    /// Per-CPU sequence number, taken before the ring-buffer reservation:
    /// a gap means events were lost.
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
    pub _pad: u32,
    pub comm: [u8; COMM_LEN],
    pub path: [u8; PATH_LEN],
    pub path2: [u8; PATH_LEN],
}

const _: () = assert!(core::mem::size_of::<RawEvent>() == 4 + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 48 + 4 + 4 + 16 + 2 * PATH_LEN);

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are plain #[repr(C)] data with explicit padding, valid
    // for any bit pattern.
    unsafe impl aya::Pod for super::RawEvent {}
}
