//! The embedded eBPF object and its loader.

use std::time::{Duration, Instant};

use aya::{
    Btf, Ebpf,
    maps::Array,
    programs::{BtfTracePoint, FExit},
};
use sbx_common::probe;
use thiserror::Error;

/// The kernel programs of `sbx-ebpf`, built by build.rs for bpfel.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sbx-ebpf"));

#[derive(Debug, Error)]
pub enum EbpfError {
    #[error("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    BtfRead(#[source] std::io::Error),
    #[error("cannot parse the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[source] aya::BtfError),
    #[error("cannot read the kernel's BTF (/sys/kernel/btf/vmlinux): {0}")]
    KernelBtf(#[source] super::btf::BtfError),
    #[error("the kernel's BTF has no tracepoint {hook} (for {name})")]
    MissingHook { name: &'static str, hook: &'static str },
    #[error("cannot load the eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the eBPF object has no program {0:?}")]
    MissingProgram(&'static str),
    #[error("the eBPF object has no map {0:?}")]
    MissingMap(&'static str),
    #[error("cannot load or attach program {name} ({hook}): {source}")]
    Program {
        name: &'static str,
        hook: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot read map {0}: {1}")]
    Map(&'static str, #[source] aya::maps::MapError),
    #[error("cannot poll the ring buffer: {0}")]
    Poll(#[source] std::io::Error),
    #[error("cannot create the session's ring buffer: {0}")]
    Ring(#[source] std::io::Error),
    #[error("cannot use the tracer's pins at {}: {source}", path.display())]
    Pins {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a directory of root's with mode 0700: the tracer will not use pins others could have placed or can reach; remove it", .0.display())]
    UnsafePins(std::path::PathBuf),
    #[error("cannot register the session with the pinned tracer: {source}")]
    Register {
        #[source]
        source: std::io::Error,
    },
    #[error("cannot attach program {name} ({hook}): {source}")]
    Attach {
        name: &'static str,
        hook: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl EbpfError {
    /// Why the kernel tracer cannot run, in one sentence for the user (the exit summary,
    /// `session_start.observation`): what the kernel refused, not aya's wording.
    pub fn reason(&self) -> String {
        // The system error underneath, when there is one ("Operation not permitted").
        let os = {
            let mut source = std::error::Error::source(self);
            let mut found = None;
            while let Some(e) = source {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    found = Some(io.to_string());
                }
                source = e.source();
            }
            found.map(|e| format!(" ({e})")).unwrap_or_default()
        };
        match self {
            EbpfError::BtfRead(_) | EbpfError::Btf(_) | EbpfError::KernelBtf(_) => {
                "this kernel has no readable BTF (/sys/kernel/btf/vmlinux), which the tracer's programs need".into()
            }
            EbpfError::MissingHook { hook, .. } => format!("this kernel has no tracepoint {hook}, which the tracer attaches to"),
            EbpfError::Load(e) if e.to_string().contains("map") => format!("the kernel refused to create the tracer's eBPF maps{os}"),
            EbpfError::Load(_) => format!("the kernel refused to load the tracer's eBPF programs{os}"),
            EbpfError::Attach { hook, source, .. } => {
                format!("the kernel refused to attach the tracer's program to {hook} ({source}; attach cookies of tp_btf programs need Linux 6.10 or later)")
            }
            EbpfError::Program { hook, .. } => {
                format!("the kernel refused the tracer's program for {hook}{os} (its tp_btf programs use bpf_loop and attach cookies: Linux 6.10 or later)")
            }
            other => other.to_string(),
        }
    }
}

/// What the doctor's attach check found.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// Times the tp_btf probe on sched_process_fork ran while attached.
    pub fork_hits: u64,
    /// The fexit probe on security_file_open: how often it ran, or why it
    /// could not load. Some kernels refuse trampoline programs (fentry,
    /// fexit, BPF LSM) outright; the tracer does not depend on them.
    pub fexit: Result<u64, EbpfError>,
    /// Load, attach, trigger and detach, in total.
    pub elapsed: Duration,
}

/// Loads the embedded object, attaches the tp_btf probe (the program type
/// the tracer relies on) and tries the fexit probe, makes them fire by
/// starting a process that opens a file, reads their counters, and detaches
/// everything.
pub fn probe_attach() -> Result<ProbeOutcome, EbpfError> {
    let started = Instant::now();
    let btf = Btf::from_sys_fs().map_err(EbpfError::Btf)?;
    let mut ebpf = Ebpf::load(OBJECT).map_err(EbpfError::Load)?;

    let name = "sbx_probe_fork";
    let hook = "tp_btf/sched_process_fork";
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or(EbpfError::MissingProgram(name))?
        .try_into()
        .map_err(|source| EbpfError::Program { name, hook, source })?;
    program
        .load("sched_process_fork", &btf)
        .and_then(|()| program.attach().map(drop))
        .map_err(|source| EbpfError::Program { name, hook, source })?;

    let name = "sbx_probe_file_open";
    let hook = "fexit/security_file_open";
    let fexit = ebpf
        .program_mut(name)
        .ok_or(EbpfError::MissingProgram(name))
        .and_then(|p| {
            let program: &mut FExit = p.try_into().map_err(|source| EbpfError::Program { name, hook, source })?;
            program
                .load("security_file_open", &btf)
                .and_then(|()| program.attach().map(drop))
                .map_err(|source| EbpfError::Program { name, hook, source })
        });

    // A fork and an open, so that both probes have something to see.
    let _ = std::process::Command::new("/bin/true").status();
    let _ = std::fs::read("/proc/self/stat");

    let map = ebpf.map("PROBE_HITS").ok_or(EbpfError::MissingMap("PROBE_HITS"))?;
    let hits: Array<_, u64> = Array::try_from(map).map_err(|e| EbpfError::Map("PROBE_HITS", e))?;
    let fork_hits = hits.get(&probe::FORK, 0).map_err(|e| EbpfError::Map("PROBE_HITS", e))?;
    let fexit = match fexit {
        Ok(()) => Ok(hits.get(&probe::FILE_OPEN, 0).map_err(|e| EbpfError::Map("PROBE_HITS", e))?),
        Err(e) => Err(e),
    };
    // Dropping the Ebpf detaches and unloads every program.
    drop(ebpf);
    Ok(ProbeOutcome { fork_hits, fexit, elapsed: started.elapsed() })
}
