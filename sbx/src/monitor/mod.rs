//! Observation of the sandboxed command: the eBPF tracer (kernel programs
//! embedded from `sbx-ebpf`, `tracer`) and the decoding of what it sees into
//! events (`decode`).

pub mod decode;
pub mod ebpf;
pub mod tracer;
