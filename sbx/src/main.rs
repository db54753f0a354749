//! The `sbx` binary: parses flags, dispatches, and maps every failure to one
//! sentence on stderr and exit status 125. When started as
//! `sbx __sbx_stage2 FD` inside a sandbox it is stage-2 instead.

use std::{ffi::OsString, io::Write as _, path::PathBuf, process::ExitCode};

use clap::Parser as _;
use sbx::{
    EXIT_SETUP,
    cli::{Cli, Command, ConfigCommand, Layer, PolicyArgs, RunArgs},
    config, doctor,
    launch::{self, Enforcement, LaunchError, Outcome, stage2::LandlockStatus},
    policy::Policy,
};

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == launch::STAGE2_ARG) {
        stage2_main(args.next().unwrap_or_default());
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
        Command::Run(args) => run(args),
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

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let command: Vec<OsString> = match args.shell {
        Some(shell) => vec!["/bin/sh".into(), "-c".into(), shell],
        None => args.argv,
    };
    if command.is_empty() {
        anyhow::bail!("no command given: put it after `--` (sbx run -- CMD ARGS) or use -c 'SHELL CMD'");
    }
    let (_, policy) = load_policy(&args.policy)?;
    let require = args.require;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(launch::run(&policy, command, |enforced| check_layers(enforced, &require)));
    match outcome {
        Ok(Outcome::Exited(code)) => Ok(ExitCode::from(code)),
        Err(e) => Err(e.into()),
    }
}

/// Says, in one line each, which layers are degraded, and refuses to go on
/// when `--require` names one of them.
fn check_layers(enforced: &Enforcement, require: &[Layer]) -> Result<(), LaunchError> {
    let landlock = match enforced.landlock {
        Some(l) if l.status == LandlockStatus::Full => None,
        Some(l) => Some(format!("Landlock is {} enforced (kernel ABI {})", l.status.as_str(), l.abi)),
        None => Some("Landlock was not applied".to_string()),
    };
    if let Some(why) = &landlock {
        if require.contains(&Layer::Landlock) {
            return Err(LaunchError::Required("landlock", why.clone()));
        }
        eprintln!("sbx: warning: {why}; bubblewrap's filesystem view still applies");
    }
    if !enforced.seccomp && require.contains(&Layer::Seccomp) {
        return Err(LaunchError::Required("seccomp", "the filter was not installed".into()));
    }
    if !enforced.netns && require.contains(&Layer::Netns) {
        return Err(LaunchError::Required("netns", "no network namespace".into()));
    }
    Ok(())
}
