//! `cargo xtask`: what cargo alone cannot do for sbx: provision the host
//! (bubblewrap, the nightly's rust-src, bpf-linker), run every test in order
//! (unit, then the root-only integration tests) and run the benchmarks.

mod bench;
mod bpf_linker_cache;
mod dist;
mod layers;
mod provision;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Provision, build, test and benchmark sbx")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing sbx needs (idempotent).
    Provision,
    /// Provision, then build sbx (the eBPF object is built and embedded by sbx/build.rs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Provision, build, then run the sbx binary with the given arguments.
    Run {
        #[arg(long)]
        release: bool,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<OsString>,
    },
    /// Provision, then run every test: unit tests, then the integration tests (root).
    Test {
        /// Run only the unit tests.
        #[arg(long)]
        unit_only: bool,
        /// Extra arguments for the integration test binary (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        filter: Vec<OsString>,
    },
    /// Provision, build in release mode, and package sbx as a Debian package in target/debian
    /// (the binary, its man pages and completions; depends on bubblewrap).
    Dist,
    /// Check that no module of sbx imports from a layer above its own (also the first step of `test`).
    Layers,
    /// Provision, build in release mode, and run benchmark suites side by side.
    Bench {
        /// Suite to run (default: all). Known: startup, monitor, proxy, notify, tui.
        suite: Option<String>,
        /// Runs per measured command.
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.task {
        Task::Provision => {
            provision::host(&root, provision::Needs::Test)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Build { release } => {
            let tools = provision::host(&root, provision::Needs::Build)?;
            build_sbx(&root, &tools, release)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Run { release, args } => {
            let tools = provision::host(&root, provision::Needs::Build)?;
            let bin = build_sbx(&root, &tools, release)?;
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("running {}", bin.display()))?;
            Ok(ExitCode::from(status.code().map_or(1, |c| c as u8)))
        }
        Task::Dist => {
            let tools = provision::host(&root, provision::Needs::Dist)?;
            let bin = build_sbx(&root, &tools, true)?;
            let deb = dist::deb(&root, &bin)?;
            println!("{}", deb.display());
            Ok(ExitCode::SUCCESS)
        }
        Task::Layers => {
            layers::check(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Test { unit_only, filter } => {
            layers::check(&root)?;
            let tools = provision::host(&root, provision::Needs::Test)?;
            test(&root, &tools, unit_only, &filter)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Bench { suite, runs } => {
            let tools = provision::host(&root, provision::Needs::Bench)?;
            let bin = build_sbx(&root, &tools, true)?;
            bench::run(&root, &bin, &|| cargo(&root, &tools), suite.as_deref(), runs)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo` with the provisioned tools on PATH.
fn cargo(root: &Path, tools: &provision::Tools) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root).env("PATH", tools.path_env());
    cmd
}

fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn build_sbx(root: &Path, tools: &provision::Tools, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo(root, tools);
    cmd.args(["build", "--package", "sbx", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    check(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    Ok(root.join("target").join(profile).join("sbx"))
}

fn test(root: &Path, tools: &provision::Tools, unit_only: bool, filter: &[OsString]) -> Result<()> {
    eprintln!("xtask: unit tests (unprivileged, default members)");
    check(cargo(root, tools).args(["test", "--workspace", "--exclude", "sbx-ebpf", "--exclude", "sbx-integration-tests"]))?;
    if unit_only {
        return Ok(());
    }
    let bin = build_sbx(root, tools, false)?;
    if !nix_is_root() {
        if std::env::var_os("CI").is_some_and(|v| v == "true") {
            bail!("the integration tests need root (they load eBPF programs and run sandboxes as root and as another user); CI=true, so this is a failure");
        }
        eprintln!("xtask: SKIPPED the integration tests: they need root (run `sudo -E cargo xtask test`)");
        return Ok(());
    }
    // The Debian package, which a test installs, runs from /usr/bin and purges.
    let release = build_sbx(root, tools, true)?;
    let deb = dist::deb(root, &release)?;
    eprintln!("xtask: integration tests (root, real sandboxes) against {}", bin.display());
    let mut cmd = cargo(root, tools);
    cmd.args(["test", "--package", "sbx-integration-tests", "--"]).args(filter).env("SBX_BIN", &bin).env("SBX_DEB", &deb);
    if let Some(claude) = &tools.claude {
        cmd.env("SBX_TEST_CLAUDE", claude);
    }
    for (var, bin) in &tools.agents {
        cmd.env(var, bin);
    }
    check(&mut cmd)
}

fn nix_is_root() -> bool {
    // Reading our own effective uid from /proc avoids a libc dependency here.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
