//! Command-line flags, as clap types only. Validation into a policy happens in
//! `config` and `policy`; nothing here touches the host.

use std::{ffi::OsString, path::PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::limits::{LimitsConfig, Setting};

/// `sbx --version`: the version, then one line each for the git commit, the embedded eBPF
/// object's hash and the kernel features its programs use (written by build.rs; static, so
/// `--version` costs nothing at run time). `-V` prints the version alone.
pub const LONG_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/long_version"));

#[derive(Debug, Parser)]
#[command(
    name = "sbx",
    version,
    long_version = LONG_VERSION,
    about = "Run an untrusted command in a sandbox: bubblewrap, Landlock and seccomp, a filtering proxy, and a kernel tracer that reports every denial.",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in the sandbox.
    Run(RunArgs),
    /// Run a command in the sandbox and watch what it tried and what was refused.
    Monitor(MonitorArgs),
    /// Report what this host can enforce and observe, with the reason for each verdict.
    Doctor(DoctorArgs),
    /// Show, or start, the policy file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the built-in policy templates.
    Templates,
    /// Turn observed denials into a reviewed policy change.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run a command until it is refused nothing more, then print the policy
    /// that lets it run. The command gets the whole network and, in later
    /// runs, every path it was refused before: only for code you trust.
    Learn(LearnArgs),
    /// Audit logs.
    #[command(subcommand)]
    Log(LogCommand),
    /// Turn another tool's permission rules into an sbx policy (Claude Code's).
    Import(ImportArgs),
    /// Print a completion script for bash, zsh or fish (e.g. `sbx completions bash >
    /// ~/.local/share/bash-completion/completions/sbx`).
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page sbx(1) (roff: `sbx man | man -l -`), or write it and a page for
    /// each subcommand into a directory.
    Man {
        /// Write sbx.1, sbx-run.1, ... into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

/// A shell `sbx completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Import Claude Code's permission rules: ~/.claude/settings.json,
    /// ./.claude/settings.json and ./.claude/settings.local.json, those that exist.
    #[arg(long, required = true)]
    pub claude: bool,
    /// A settings file to read instead (repeatable, in order).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The template the policy extends.
    #[arg(long, value_name = "TEMPLATE", default_value = "code")]
    pub extends: String,
    /// Write the policy to FILE (which must not exist) instead of printing it.
    #[arg(short = 'o', long = "output", value_name = "FILE", conflicts_with = "write")]
    pub output: Option<PathBuf>,
    /// Write the policy to ./sbx.jsonc (which must not exist).
    #[arg(long)]
    pub write: bool,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Check that an audit log is what sbx wrote: every line's MAC, in
    /// order, none missing at the end; names the first line that fails.
    Verify {
        /// The audit log.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct LearnArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Also append every run's events, and the proposals, to FILE.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Write the policy to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Use a run's events even when they fail verification (the command
    /// edited the log); every proposal is then marked for review.
    #[arg(long)]
    pub unverified: bool,
    /// Stop after this many runs.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub max_runs: u32,
    /// Accept `/`, the home directory, a parent of it or a system directory as the
    /// workspace (the mandatory protections of the home still apply).
    #[arg(long)]
    pub unsafe_workspace: bool,
    #[command(flatten)]
    pub command: CommandArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Propose config changes that answer the denials in an audit log,
    /// explained and shown as a diff; nothing is written without --write.
    Suggest(SuggestArgs),
}

#[derive(Debug, Args)]
pub struct SuggestArgs {
    /// The audit log (JSON Lines from `--log`); the suggestions are
    /// recorded in it as `policy` events.
    #[arg(long = "from", value_name = "LOG")]
    pub from: PathBuf,
    /// The policy file to change (default: the one `sbx run` reads here:
    /// the nearest sbx.jsonc, else the user config, else a new ./sbx.jsonc).
    #[arg(short = 's', long = "settings", value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// Edit the file in place (comments and layout are kept).
    #[arg(long)]
    pub write: bool,
    /// Also apply the proposals flagged as risky.
    #[arg(long)]
    pub accept_risky: bool,
    /// Also propose the switches that weaken a mandatory protection or the
    /// seccomp deny list (filesystem.allowGitConfig, network.allowAllUnixSockets).
    #[arg(long)]
    pub include_protected: bool,
    /// Read a log that fails `sbx log verify` (edited, truncated, written
    /// elsewhere); every proposal is then held as risky.
    #[arg(long)]
    pub unverified: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Append the session's events to FILE as JSON Lines (schema: `sbx::report`);
    /// with root, the kernel tracer records every denial.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Exit 125 before running anything unless these layers are enforced
    /// (landlock, seccomp, netns); without it a degraded layer is a warning.
    #[arg(long, value_name = "LAYERS", value_delimiter = ',')]
    pub require: Vec<Layer>,
    /// Expose port PORT of the sandbox's loopback on the host at ADDR:PORT
    /// (default 127.0.0.1); the command may bind that port. Repeatable.
    #[arg(short = 'p', long = "port", value_name = "[ADDR:]PORT", value_parser = parse_port_spec)]
    pub ports: Vec<PortSpec>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Where no namespace can be created (a container, another sandbox): run with Landlock
    /// and seccomp only, and no network. What is not enforced is said at start and in the log.
    #[arg(long)]
    pub no_namespaces: bool,
    /// With --no-namespaces: the host's network, unfiltered (no domain rule applies).
    #[arg(long, requires = "no_namespaces")]
    pub unfiltered_network: bool,
    /// Accept `/`, the home directory, a parent of it or a system directory as the
    /// workspace (the mandatory protections of the home still apply).
    #[arg(long)]
    pub unsafe_workspace: bool,
    /// Keep the command's changes to agent configuration that runs commands
    /// (hooks, MCP servers, permission rules in ~/.claude.json, .claude/settings.json,
    /// ~/.codex/config.toml, ...); they are still reported. Default: reverted.
    #[arg(long)]
    pub keep_agent_config: bool,
    #[command(flatten)]
    pub command: CommandArgs,
}

/// Resource limits; each overrides the policy file's `limits` key of the same name, and
/// `off` lifts it.
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Memory of the whole sandbox, its /tmp and /dev/shm included (e.g. 4G) [default: half the RAM]
    #[arg(long, value_name = "SIZE", value_parser = crate::limits::parse_size)]
    pub memory: Option<Setting<u64>>,
    /// Processes and threads at once [default: 4096]
    #[arg(long, value_name = "N", value_parser = crate::limits::parse_count)]
    pub pids: Option<Setting<u64>>,
    /// CPU time, in CPUs (e.g. 1.5 or 150%) [default: off]
    #[arg(long, value_name = "CPUS", value_parser = crate::limits::parse_cpu)]
    pub cpu: Option<Setting<u32>>,
    /// Size of each of /tmp and /dev/shm [default: 2G]
    #[arg(long = "tmp-size", value_name = "SIZE", value_parser = crate::limits::parse_size)]
    pub tmp_size: Option<Setting<u64>>,
    /// Stop the command after DURATION (SIGTERM, SIGKILL 5 s later; exit 124), e.g. 90s, 10m [default: off]
    #[arg(long, value_name = "DURATION", value_parser = crate::limits::parse_duration)]
    pub timeout: Option<Setting<std::time::Duration>>,
}

impl LimitArgs {
    /// The flags as a `limits` section, to layer over the policy file's.
    pub fn as_config(&self) -> LimitsConfig {
        LimitsConfig { memory: self.memory, pids: self.pids, cpu: self.cpu, tmp_size: self.tmp_size, timeout: self.timeout }
    }
}

/// The command to run: `-c 'SHELL CMD'` or the words after `--`.
#[derive(Debug, Args)]
pub struct CommandArgs {
    /// Run this shell command with /bin/sh -c.
    #[arg(short = 'c', value_name = "SHELL CMD", conflicts_with = "argv")]
    pub shell: Option<OsString>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub argv: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// No dashboard: events go to --log, a summary to stderr at exit.
    #[arg(long)]
    pub no_tui: bool,
    /// Hold each connection that no rule allows or denies and ask at the
    /// dashboard: allow once, allow always (written to the policy file),
    /// deny once, deny always. Unanswered requests are denied.
    #[arg(long, conflicts_with = "no_tui")]
    pub ask: bool,
    /// Start zoomed: the command has the whole terminal but a status line
    /// (denials, held --ask prompts) and every key but Ctrl-], which shows
    /// the dashboard.
    #[arg(long, conflicts_with = "no_tui")]
    pub zoom: bool,
    /// Show the dashboard over a recorded log (`--log`) instead of running a command:
    /// step and seek through the session (← →, [ ], { }, :); the header says whether
    /// the log's seal holds.
    #[arg(long, value_name = "LOG", conflicts_with_all = ["no_tui", "ask", "zoom", "log"])]
    pub replay: Option<PathBuf>,
    /// Seconds a held connection waits for an answer before it is denied.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, requires = "ask", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ask_timeout: u64,
    /// Size of the kernel tracer's ring buffer in bytes (a power of two,
    /// at least a page).
    #[arg(long, value_name = "BYTES", default_value_t = crate::monitor::tracer::DEFAULT_RING_BYTES, hide = true)]
    pub ring_bytes: u32,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Policy file (JSON or JSONC, fence's field names).
    #[arg(short = 's', long = "settings", value_name = "FILE", conflicts_with = "template")]
    pub settings: Option<PathBuf>,
    /// Built-in policy template (see `sbx templates`).
    #[arg(short = 't', long = "template", value_name = "NAME")]
    pub template: Option<String>,
    /// Run the command as this user (root only; under sudo or doas, the user who ran it is
    /// the default): their uid, groups, HOME, and `~` in the policy.
    #[arg(long = "user", value_name = "NAME")]
    pub user: Option<String>,
}

/// `-p [ADDR:]PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub addr: std::net::IpAddr,
    pub port: u16,
}

fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    let (addr, port) = match s.rsplit_once(':') {
        Some((a, p)) => (a.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| format!("{a:?} is not an IP address"))?, p),
        None => (std::net::IpAddr::from([127, 0, 0, 1]), s),
    };
    let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(|| format!("{port:?} is not a port number 1-65535"))?;
    let port = crate::sandbox::ReservedPort::check(port).map_err(|reserved| reserved.to_string())?;
    Ok(PortSpec { addr, port })
}

/// A layer of enforcement that `--require` can insist on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layer {
    Landlock,
    Seccomp,
    Netns,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the checks as one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the merged policy and where each part came from.
    Show {
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Write a commented starter policy file (default: ./sbx.jsonc).
    Init {
        /// Where to write it.
        #[arg(default_value = "sbx.jsonc")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use sha2::Digest as _;

    use super::LONG_VERSION;

    #[test]
    fn long_version_hashes_the_embedded_ebpf_object() {
        let hex = sha2::Sha256::digest(crate::monitor::ebpf::OBJECT).iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let lines: Vec<&str> = LONG_VERSION.lines().collect();
        assert_eq!(lines.len(), 4, "{LONG_VERSION}");
        assert_eq!(lines[0], env!("CARGO_PKG_VERSION"));
        assert!(lines[1].starts_with("commit: "), "{LONG_VERSION}");
        assert_eq!(lines[2], format!("ebpf: sha256 {hex}"));
        assert!(lines[3].starts_with("kernel: ") && lines[3].ends_with("; Linux 6.10 or later"), "{LONG_VERSION}");
    }
}
