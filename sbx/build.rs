//! Builds the kernel programs of `sbx-ebpf` with the nightly toolchain for
//! bpfel-unknown-none (via aya-build) and leaves the object in OUT_DIR, where
//! `src/monitor/ebpf.rs` embeds it with `include_bytes_aligned!`.

use std::process::Command;

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    // bpf-linker is an undeclared dependency of the inner build. Give a clear
    // sentence instead of the inner cargo's wall of errors when it is missing.
    let found = Command::new("bpf-linker").arg("--version").output();
    match found {
        Ok(out) if out.status.success() => {}
        _ => {
            return Err(anyhow!(
                "bpf-linker is not on PATH (or does not start); build through `cargo xtask build`, \
                 which provisions it, or put a bpf-linker built for the nightly's LLVM on PATH"
            ));
        }
    }
    let package = aya_build::Package {
        name: "sbx-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../sbx-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .context("building the eBPF programs of sbx-ebpf")
}
