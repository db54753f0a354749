//! sbx: run an untrusted command so that it can work on the project and
//! nothing else. See ARCHITECTURE.md for the code map.
//!
//! Data flows one way: `cli` (flags) and `config` (files) -> `policy`
//! (validated, pure) -> `launch` (a plan resolved on this host: bwrap
//! arguments and the stage-2 plan) -> bubblewrap -> `launch::stage2` inside
//! the sandbox (Landlock, seccomp) -> the command.

#![deny(unsafe_code)]

pub mod agentconf;
pub mod cgroup;
pub mod cli;
pub mod command_rules;
pub mod commands;
pub mod config;
pub mod docs;
pub mod doctor;
pub mod fsio;
pub mod identity;
pub mod import;
pub mod launch;
pub mod learn;
pub mod limits;
pub mod missing;
pub mod monitor;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod sandbox;
pub mod seal;
pub mod session;
pub mod state;
pub mod snapshot;
pub mod suggest;
pub mod syscalls;
// The raw system calls, each block with its SAFETY comment.
#[allow(unsafe_code)]
pub mod sys;
pub mod termtext;
pub mod tui;

/// Exit status when sbx itself fails before or while setting up the sandbox
/// (bad flags, bad config, a missing tool): the convention of `env`, `nice`
/// and `timeout`, so it cannot be confused with the command's own status.
pub const EXIT_SETUP: u8 = 125;
/// The command was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;
