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
