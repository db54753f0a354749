//! sbx's kernel programs. Built by `sbx/build.rs` for bpfel-unknown-none and
//! embedded in the `sbx` binary.
//!
//! The probes (`sbx_probe_*`) exist for `sbx doctor`: it loads and attaches
//! them for a moment to prove, on this host, that the program type the tracer
//! relies on (tp_btf) really loads and fires, and to report whether fexit
//! (trampoline) programs are allowed, which some kernels refuse.
#![no_std]
#![no_main]

use aya_ebpf::{
    macros::{btf_tracepoint, fexit, map},
    maps::Array,
    programs::{BtfTracePointContext, FExitContext},
};
use sbx_common::probe;

/// Hit counters of the doctor's probes, indexed by `sbx_common::probe::*`.
#[map]
static PROBE_HITS: Array<u64> = Array::with_max_entries(probe::SLOTS, 0);

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sbx_probe_fork(_ctx: BtfTracePointContext) -> i32 {
    bump(probe::FORK);
    0
}

#[fexit(function = "security_file_open")]
pub fn sbx_probe_file_open(_ctx: FExitContext) -> i32 {
    bump(probe::FILE_OPEN);
    0
}

fn bump(slot: u32) {
    if let Some(ptr) = PROBE_HITS.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from the kernel's map lookup and stays
        // valid for the program run. A lost increment under a race is
        // harmless: the doctor only asks whether the counter moved.
        unsafe { *ptr = (*ptr).wrapping_add(1) };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible so that GPL-only helpers (bpf_d_path) are available.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
