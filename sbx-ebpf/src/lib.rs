//! Empty on purpose: `sbx` build-depends on this crate so that cargo rebuilds
//! the embedded eBPF object when anything here changes. The programs are the
//! binary target (`src/main.rs`).
#![no_std]
