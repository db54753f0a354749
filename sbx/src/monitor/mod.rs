//! Observation of the sandboxed command: the eBPF tracer (kernel programs
//! embedded from `sbx-ebpf`).

pub mod ebpf;
pub mod tracer;
