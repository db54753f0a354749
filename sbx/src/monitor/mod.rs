//! Observation of the sandboxed command: the eBPF tracer (kernel programs
//! embedded from `sbx-ebpf`, `tracer`), the decoding of what it sees into
//! events (`decode`), and the supervisor of seccomp user notifications
//! (`notify`, which mediates connect(2) for `allowUnixSockets` with
//! `connect`).

pub mod btf;
pub mod connect;
pub mod decode;
pub mod ebpf;
pub mod exec;
pub mod notify;
// The ring buffer's records are read as RawEvent; the ring's fd is registered with tokio.
#[allow(unsafe_code)]
pub mod tracer;
