//! The `sbx` binary: parses flags, dispatches, and maps every failure to one
//! sentence on stderr and exit status 125. When started as
//! `sbx __sbx_stage2 FD` inside a sandbox it is stage-2 instead.

use std::{ffi::OsString, io::Write as _, path::PathBuf, process::ExitCode};

use clap::Parser as _;
use sbx::{
    EXIT_SETUP,
    cli::{Cli, Command, ConfigCommand, Layer, PolicyArgs, RunArgs},
    config, doctor,
    launch::{self, LaunchError},
    monitor,
    policy::Policy,
    session,
};

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    match args.nth(1) {
        Some(a) if a == launch::STAGE2_ARG => stage2_main(args.next().unwrap_or_default()),
        Some(a) if a == launch::inbound::CONNECTOR_ARG => {
            let init = args.next().unwrap_or_default();
            launch::inbound::main(&init, &args.next().unwrap_or_default())
        }
        _ => {}
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's first line is the sentence that matters; its usage block
            // follows on request.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
            eprintln!("sbx: {first} (see `sbx --help`)");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SBX_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sbx: {e:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

fn stage2_main(plan_fd: OsString) -> ! {
    sbx::launch::stage2::main(&plan_fd)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run(args, None),
        Command::Monitor(args) => {
            let dashboard = !args.no_tui;
            if dashboard && !sbx::sys::is_tty(&std::io::stdout()) {
                anyhow::bail!("the dashboard needs a terminal on stdout: run `sbx monitor --no-tui --log FILE -- CMD` instead");
            }
            run(args.run, Some((session::Trace::IfPossible, args.ring_bytes, dashboard)))
        }
        Command::Doctor(args) => {
            let report = doctor::run();
            let mut out = std::io::stdout().lock();
            if args.json {
                serde_json::to_writer_pretty(&mut out, &report)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", report.render_text())?;
            }
            Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Config(ConfigCommand::Show { policy }) => {
            let (loaded, _) = load_policy(&policy)?;
            print!("{}", config::render_show(&loaded));
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Init { path, force }) => {
            if path.exists() && !force {
                anyhow::bail!("{} already exists; pass --force to overwrite it", path.display());
            }
            std::fs::write(&path, config::STARTER).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            eprintln!("sbx: wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Templates => {
            let mut out = std::io::stdout().lock();
            for t in config::templates() {
                writeln!(out, "{:<18} {}", t.name, t.summary)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Finds, parses and validates the policy for the working directory.
fn load_policy(args: &PolicyArgs) -> anyhow::Result<(config::Loaded, Policy)> {
    let workspace = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .map_err(|e| anyhow::anyhow!("cannot resolve the working directory: {e}"))?;
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let request = config::Request {
        file: args.settings.as_deref(),
        template: args.template.as_deref(),
        cwd: &workspace,
        xdg_config_home: xdg.as_deref(),
    };
    let loaded = config::load(&request)?;
    for key in &loaded.unsupported {
        eprintln!(
            "sbx: warning: {}:{}: \"{}\" is a fence setting that sbx does not enforce; it is ignored",
            key.file.display(),
            key.line,
            key.key
        );
    }
    let home = home.map(|h| h.canonicalize().unwrap_or(h));
    let policy = Policy::from_config(&loaded.config, workspace, home)?;
    Ok((loaded, policy))
}

fn run(args: RunArgs, monitor: Option<(session::Trace, u32, bool)>) -> anyhow::Result<ExitCode> {
    let command: Vec<OsString> = match args.shell {
        Some(shell) => vec!["/bin/sh".into(), "-c".into(), shell],
        None => args.argv,
    };
    if command.is_empty() {
        anyhow::bail!("no command given: put it after `--` (sbx run -- CMD ARGS) or use -c 'SHELL CMD'");
    }
    let (loaded, mut policy) = load_policy(&args.policy)?;
    policy.net.inbound_ports = args.ports.iter().map(|p| p.port).collect();
    check_required(&args.require)?;
    // `sbx run --log` traces too: a log without the kernel's denials would
    // mislead whoever reads it. `sbx monitor` always traces.
    let (trace, ring_bytes, summary, dashboard) = match monitor {
        Some((t, ring, dashboard)) => (t, ring, true, dashboard),
        None if args.log.is_some() => (session::Trace::IfPossible, monitor::tracer::DEFAULT_RING_BYTES, true, false),
        None => (session::Trace::Off, monitor::tracer::DEFAULT_RING_BYTES, false, false),
    };
    let options = session::Options {
        trace,
        log: args.log,
        launch: launch::Options {
            require_landlock: args.require.contains(&Layer::Landlock),
            cgroup_procs_fd: None,
            // Whenever events are kept, blocked syscalls are reported with
            // their arguments by the seccomp supervisor.
            notify: summary,
            terminal: None,
        },
        sources: loaded.chain.iter().map(|part| part.origin.label()).collect(),
        ring_bytes,
        summary,
        inbound: args.ports.iter().map(|p| std::net::SocketAddr::new(p.addr, p.port)).collect(),
        dashboard,
    };
    let code = session::run(&policy, command, options)?;
    Ok(ExitCode::from(code))
}

/// `--require`: refuse before anything starts when this host cannot
/// provide a layer. (Stage-2 checks Landlock again, as enforced.)
fn check_required(require: &[Layer]) -> Result<(), LaunchError> {
    for layer in require {
        match layer {
            Layer::Landlock if sbx::sys::landlock_abi() == 0 => {
                return Err(LaunchError::Required("landlock", "this kernel offers no Landlock (see `sbx doctor`)"));
            }
            Layer::Seccomp if !std::path::Path::new("/proc/sys/kernel/seccomp/actions_avail").exists() => {
                return Err(LaunchError::Required("seccomp", "this kernel has no seccomp filter mode (see `sbx doctor`)"));
            }
            // bwrap fails the launch if it cannot create the network
            // namespace, so a running sandbox always has one.
            _ => {}
        }
    }
    Ok(())
}
