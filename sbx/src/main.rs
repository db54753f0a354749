//! The `sbx` binary: parses flags, dispatches, and maps every failure to one
//! sentence on stderr and exit status 125. When started as
//! `sbx __sbx_stage2 FD` inside a sandbox it is stage-2 instead.

#![deny(unsafe_code)]

use std::{ffi::OsString, process::ExitCode};

use clap::Parser as _;
use sbx::{
    EXIT_SETUP,
    cli::{Cli, Command, ConfigCommand, LogCommand, PolicyCommand},
    commands, launch,
};

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    match args.nth(1) {
        Some(a) if a == launch::STAGE2_ARG => stage2_main(args.next().unwrap_or_default()),
        Some(a) if a == launch::inbound::CONNECTOR_ARG => {
            let init = args.next().unwrap_or_default();
            launch::inbound::main(&init, &args.next().unwrap_or_default())
        }
        Some(a) if a == launch::remask::MASKER_ARG => {
            let init = args.next().unwrap_or_default();
            launch::remask::main(&init, &args.next().unwrap_or_default())
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
            eprintln!("sbx: {} (see `sbx --help`)", sbx::termtext::escape(first));
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
            // Paths, hosts and argv in a message may be the command's
            // choice: escaped before they reach the terminal.
            eprintln!("sbx: {}", sbx::termtext::escape(&one_line(&e)));
            ExitCode::from(EXIT_SETUP)
        }
    }
}

/// The error and its causes in one line, each cause once: most of sbx's
/// messages already end with their cause (`cannot open X: No such file or
/// directory`), which `{:#}` would repeat.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line
}

fn stage2_main(plan_fd: OsString) -> ! {
    sbx::launch::stage2::main(&plan_fd)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => commands::run(args),
        Command::Monitor(args) => commands::monitor(args),
        Command::Doctor(args) => commands::doctor(args.json),
        Command::Config(ConfigCommand::Show { policy }) => commands::config_show(&policy),
        Command::Config(ConfigCommand::Init { path, force }) => commands::config_init(&path, force),
        Command::Policy(PolicyCommand::Suggest(args)) => commands::suggest(&args),
        Command::Learn(args) => commands::learn(args),
        Command::Log(LogCommand::Verify { file }) => commands::log_verify(&file),
        Command::Templates => commands::templates(),
        Command::Import(args) => commands::import(&args),
        Command::Completions { shell } => commands::completions(shell),
        Command::Man { out_dir } => commands::man(out_dir.as_deref()),
    }
}
