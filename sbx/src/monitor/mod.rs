//! Observation of the sandboxed command: the eBPF tracer (kernel programs
//! embedded from `sbx-ebpf`, loaded once and pinned by `pins`, attached per
//! session by `tracer`), the decoding of what it sees into
//! events (`decode`), and the supervisor of seccomp user notifications
//! (`notify`, which mediates connect(2) for `allowUnixSockets` with
//! `connect`).

pub mod btf;
pub mod connect;
pub mod decode;
pub mod ebpf;
pub mod exec;
pub mod notify;
pub mod pins;
// The ring buffer's records are read as RawEvent; the ring's fd is registered with tokio.
#[allow(unsafe_code)]
pub mod tracer;
