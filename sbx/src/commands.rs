//! The subcommands, from flags and files to what runs: the policy (files, template,
//! flags, this host's `$PATH` and memory), the session's options, the file that
//! additions go to, and the refusals before anything starts. `main` only dispatches.

use std::{ffi::OsString, io::Write as _, path::PathBuf, process::ExitCode};

use crate::{
    cli::{Layer, LearnArgs, MonitorArgs, PolicyArgs, RunArgs, SuggestArgs},
    config, doctor,
    launch::{self, LaunchError},
    monitor,
    policy::Policy,
    session,
};

/// `sbx run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    sandboxed(args, None, None)
}

/// `sbx monitor`: the dashboard on a terminal, or `--no-tui`.
pub fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    if let Some(log) = &args.replay {
        return replay(log, &args);
    }
    let dashboard = !args.no_tui;
    if dashboard && !crate::sys::is_tty(&std::io::stdout()) {
        anyhow::bail!("the dashboard needs a terminal on stdout: run `sbx monitor --no-tui --log FILE -- CMD` instead");
    }
    let ask = args.ask.then_some(std::time::Duration::from_secs(args.ask_timeout));
    let start = if args.zoom { crate::tui::Start::Zoom } else { crate::tui::Start::Dashboard };
    sandboxed(args.run, Some((session::Trace::IfPossible, args.ring_bytes, dashboard, start)), ask)
}

/// `sbx monitor --replay LOG`: the dashboard over a recorded log; no command runs.
fn replay(log: &std::path::Path, args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    if args.run.command.shell.is_some() || !args.run.command.argv.is_empty() {
        anyhow::bail!("--replay shows a recorded log and runs no command: give either --replay LOG or a command after --, not both");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(crate::tui::replay(log))?;
    Ok(ExitCode::SUCCESS)
}

/// `sbx doctor`.
pub fn doctor(json: bool) -> anyhow::Result<ExitCode> {
    let report = doctor::run();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        // Host facts (kernel strings, paths): escaped line by line.
        write!(out, "{}", crate::termtext::escape_lines(&report.render_text()))?;
    }
    Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// `sbx config show`.
pub fn config_show(policy: &PolicyArgs) -> anyhow::Result<ExitCode> {
    let run_as = crate::identity::resolve(policy.user.as_deref())?;
    let (loaded, _) = load_policy(policy, &Default::default(), run_as.as_ref())?;
    // Paths and entries of policy files (which a command may have written): escaped
    // line by line.
    print!("{}", crate::termtext::escape_lines(&config::render_show(&loaded)));
    Ok(ExitCode::SUCCESS)
}

/// `sbx config init`.
pub fn config_init(path: &std::path::Path, force: bool) -> anyhow::Result<ExitCode> {
    if path.symlink_metadata().is_ok() && !force {
        anyhow::bail!("{} already exists; pass --force to overwrite it", crate::termtext::path(path));
    }
    if force {
        crate::fsio::replace(path, config::STARTER.as_bytes(), 0o644)?;
    } else {
        crate::fsio::create_new(path, 0o644)?
            .write_all(config::STARTER.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", crate::termtext::path(path)))?;
    }
    eprintln!("sbx: wrote {}", crate::termtext::path(path));
    Ok(ExitCode::SUCCESS)
}

/// `sbx policy suggest`: additions go to the file `sbx run` here would read (as for
/// `learn` and `--ask`), or a new `sbx.jsonc` when none is.
pub fn suggest(args: &SuggestArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot resolve the working directory: {e}"))?;
    // Under sudo, the home of the user who ran it.
    let (home, xdg) = home_and_xdg_for(crate::identity::resolve(None)?.as_ref());
    // `-s FILE` is the file to edit, even one that does not exist yet.
    let target = match &args.settings {
        Some(file) => crate::suggest::Target::open(file, &cwd, xdg.as_deref())?,
        None => {
            let loaded = config::load(&config::Request { file: None, template: None, cwd: &cwd, xdg_config_home: xdg.as_deref() })?;
            let mut target = crate::suggest::Target::open(&loaded.edit_target(&cwd), &cwd, xdg.as_deref())?;
            target.merged = loaded.config.clone();
            target
        }
    };
    let request = crate::suggest::SuggestRequest {
        log: &args.from,
        target,
        write: args.write,
        accept_risky: args.accept_risky,
        include_protected: args.include_protected,
        home: home.map(|h| h.canonicalize().unwrap_or(h)),
        workspace: cwd,
        trust: if args.unverified { crate::suggest::Trust::Unverified } else { crate::suggest::Trust::Verified },
    };
    crate::suggest::suggest_command(request, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

/// `sbx log verify`.
pub fn log_verify(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = crate::fsio::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read the log: {e}"))?;
    let keys = crate::seal::keys_dir()?;
    let shown = crate::termtext::path(file);
    match crate::seal::verify(&text, &keys) {
        Ok(v) => {
            println!("{shown}: verified: {} line{} from {} writer{}", v.lines, if v.lines == 1 { "" } else { "s" }, v.segments, if v.segments == 1 { "" } else { "s" });
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{shown}: fails verification at {}", crate::termtext::escape(&e.to_string()));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `sbx import --claude`: Claude Code's settings as a policy, printed or written.
pub fn import(args: &crate::cli::ImportArgs) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().map_err(|e| anyhow::anyhow!("cannot resolve the working directory: {e}"))?;
    if config::template(&args.extends).is_none() {
        anyhow::bail!("--extends {}: no such template (see `sbx templates`)", crate::termtext::escape(&args.extends));
    }
    let (home, _) = home_and_xdg_for(crate::identity::resolve(None)?.as_ref());
    let defaults = || -> Vec<PathBuf> {
        home.iter()
            .map(|h| h.join(".claude/settings.json"))
            .chain([cwd.join(".claude/settings.json"), cwd.join(".claude/settings.local.json")])
            .filter(|p| p.exists())
            .collect()
    };
    let files = if args.files.is_empty() { defaults() } else { args.files.iter().map(|f| cwd.join(f)).collect() };
    if files.is_empty() {
        anyhow::bail!("no Claude Code settings found (~/.claude/settings.json, ./.claude/settings.json, ./.claude/settings.local.json); name one with -f FILE");
    }
    let sources = files
        .into_iter()
        .map(|path| {
            let text = crate::fsio::read_policy(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", crate::termtext::path(&path)))?;
            Ok(crate::import::Source { path, text })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = crate::import::claude(&sources, &args.extends, &cwd, home.as_deref())?;
    let target = match (&args.output, args.write) {
        (Some(out), _) => Some(cwd.join(out)),
        (None, true) => Some(cwd.join("sbx.jsonc")),
        (None, false) => None,
    };
    match target {
        None => print!("{}", crate::termtext::escape_lines(&policy)),
        Some(path) => {
            let mut file = crate::fsio::create_new(&path, 0o644).map_err(|e| anyhow::anyhow!("cannot create {}: {e} (an existing file is never overwritten)", crate::termtext::path(&path)))?;
            file.write_all(policy.as_bytes()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", crate::termtext::path(&path)))?;
            eprintln!("sbx: wrote {}", crate::termtext::path(&path));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sbx completions SHELL`.
pub fn completions(shell: crate::cli::Shell) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(&crate::docs::completions(shell))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `sbx man [--out-dir DIR]`: the page on stdout, or every page written into DIR.
pub fn man(out_dir: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    match out_dir {
        None => {
            let mut page = Vec::new();
            crate::docs::man_page(&mut page)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)?;
            out.flush()?;
        }
        Some(dir) => {
            let written = crate::docs::write_man_pages(dir).map_err(|e| anyhow::anyhow!("cannot write the man pages into {}: {e}", crate::termtext::path(dir)))?;
            eprintln!("sbx: wrote {} man pages into {}", written.len(), crate::termtext::path(dir));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sbx templates`.
pub fn templates() -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    for t in config::templates() {
        writeln!(out, "{:<18} {}", t.name, t.summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// $HOME and the directory user configs live in ($XDG_CONFIG_HOME or ~/.config).
fn home_and_xdg() -> (Option<PathBuf>, Option<PathBuf>) {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    (home, xdg)
}

/// The home and config directory of the user the command runs as: `run_as`'s from the
/// user database (root's environment says nothing about them), else sbx's own.
fn home_and_xdg_for(run_as: Option<&crate::identity::RunAs>) -> (Option<PathBuf>, Option<PathBuf>) {
    match run_as {
        Some(who) => (Some(who.home.clone()), Some(who.home.join(".config"))),
        None => home_and_xdg(),
    }
}

/// Finds, parses and validates the policy for the working directory.
fn load_policy(args: &PolicyArgs, limit_flags: &crate::limits::LimitsConfig, run_as: Option<&crate::identity::RunAs>) -> anyhow::Result<(config::Loaded, Policy)> {
    let workspace = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .map_err(|e| anyhow::anyhow!("cannot resolve the working directory: {e}"))?;
    let (home, xdg) = home_and_xdg_for(run_as);
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
            crate::termtext::path(&key.file),
            key.line,
            crate::termtext::escape(&key.key)
        );
    }
    let home = home.map(|h| h.canonicalize().unwrap_or(h));
    let mut policy = Policy::from_config(&loaded.config, workspace, home)?;
    // The flags over the files' limits, with the defaults that depend on this host.
    let mut limits = loaded.config.limits;
    limits.merge_from(limit_flags);
    policy.limits = crate::limits::Limits::resolve(&limits, crate::limits::host_memory());
    // $PATH as the host resolves it: a symlinked entry is protected where it leads.
    let path_env = std::env::var_os("PATH").unwrap_or_default();
    let resolved = std::env::join_paths(std::env::split_paths(&path_env).map(|d| d.canonicalize().unwrap_or(d))).unwrap_or(path_env);
    policy.set_path_dirs(&resolved);
    Ok((loaded, policy))
}

fn sandboxed(args: RunArgs, monitor: Option<(session::Trace, u32, bool, crate::tui::Start)>, ask: Option<std::time::Duration>) -> anyhow::Result<ExitCode> {
    let command = command_of(args.command, "run")?;
    let run_as = crate::identity::resolve(args.policy.user.as_deref())?;
    let (loaded, mut policy) = load_policy(&args.policy, &args.limits.as_config(), run_as.as_ref())?;
    check_workspace(&policy, args.unsafe_workspace)?;
    check_policy_files(&loaded, &policy)?;
    policy.net.inbound_ports = args.ports.iter().map(|p| p.port).collect();
    if let Some(p) = args.ports.iter().find(|p| policy.net.allow_local_outbound_ports.contains(&p.port)) {
        // Inside, that port is the relay to the host's port, where -p listens: a loop.
        anyhow::bail!(
            "-p {}: port {} is also in network.allowLocalOutboundPorts, whose relay inside the sandbox would lead back to it",
            p.port,
            p.port
        );
    }
    check_required(&args.require)?;
    let direct = args.no_namespaces.then_some(if args.unfiltered_network { launch::direct::Network::Unfiltered } else { launch::direct::Network::None });
    if direct.is_some() {
        launch::direct::check_user(run_as.is_none() && nix::unistd::geteuid().is_root())?;
        if args.require.contains(&Layer::Netns) {
            return Err(LaunchError::Required("netns", "--no-namespaces runs without a network namespace").into());
        }
        if let Some(p) = args.ports.first() {
            anyhow::bail!("-p {}: --no-namespaces has no loopback of the sandbox's own to expose", p.port);
        }
    }
    // `sbx run --log` traces too: a log without the kernel's denials would
    // mislead whoever reads it. `sbx monitor` always traces.
    let (trace, ring_bytes, summary, dashboard, dashboard_start) = match monitor {
        Some((t, ring, dashboard, start)) => (t, ring, true, dashboard, start),
        None if args.log.is_some() => (session::Trace::IfPossible, monitor::tracer::DEFAULT_RING_BYTES, true, false, crate::tui::Start::Dashboard),
        None => (session::Trace::Off, monitor::tracer::DEFAULT_RING_BYTES, false, false, crate::tui::Start::Dashboard),
    };
    let options = session::Options {
        trace,
        log: args.log,
        launch: launch::Options {
            require_landlock: args.require.contains(&Layer::Landlock),
            // Whenever events are kept, blocked syscalls are reported with
            // their arguments by the seccomp supervisor.
            notify: summary,
            run_as,
            direct,
            ..launch::Options::default()
        },
        sources: loaded.chain.iter().map(|part| part.origin.label()).collect(),
        ring_bytes,
        summary,
        // The same -p twice is one (the second would collide with the first on the host).
        inbound: args.ports.iter().map(|p| std::net::SocketAddr::new(p.addr, p.port)).collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
        dashboard,
        dashboard_start,
        keep_agent_config: args.keep_agent_config,
        ask: ask.map(|timeout| session::AskOptions { config: loaded.edit_target(&policy.workspace), timeout }),
        repositories: None,
    };
    // A policy file the command creates or changes in the workspace is read by a later
    // run: every one (and every file of the chain) is compared after the session, in
    // every mode. (`--ask` writes its own answers to `ask_config`.) The walk for them
    // finds the workspace's repositories for the session too: the workspace is read once.
    let ask_config = options.ask.as_ref().map(|a| a.config.clone());
    let chain_files = chain_files(&loaded);
    // When the glob rules walk from the workspace (-t code's **/.env), that walk, which
    // finds the repositories, carries the search for policy files instead (it is the
    // session's: made here, before the session, as its snapshot is).
    let fs = &policy.fs;
    let rules: Vec<PathBuf> = [&fs.allow_read, &fs.allow_execute, &fs.deny_read, &fs.allow_write, &fs.deny_write].into_iter().flatten().cloned().collect();
    let (files, repositories, walked) = if launch::glob::walks_from(&rules, &policy.workspace) {
        let mut walked = launch::glob::Walked::walk_with(&rules, &policy.workspace, Some(crate::snapshot::policy_search()));
        let files = match walked.names() {
            Some(found) => crate::snapshot::policy_files_with(&policy.workspace, found),
            None => crate::snapshot::policy_files(&policy.workspace),
        };
        (files, None, Some(walked))
    } else {
        let (files, repositories) = crate::snapshot::policy_files_and_repositories(&policy.workspace, Some(launch::git::Search::default()));
        (files, repositories, None)
    };
    let watched = crate::snapshot::Snapshot::take(files.into_iter().chain(chain_files.clone()));
    let ended = session::run(&policy, command, session::Options { repositories, ..options }, walked)?;
    report_policy_files(&watched, &policy.workspace, ended.policy_files, ask_config.as_ref());
    Ok(ExitCode::from(ended.code))
}

/// The files of the policy chain, as the walk for policy files spells them (so that one
/// file is one entry).
fn chain_files(loaded: &config::Loaded) -> Vec<PathBuf> {
    loaded
        .chain
        .iter()
        .filter_map(|part| match &part.origin {
            config::Origin::File(f) => Some(f.canonicalize().unwrap_or_else(|_| f.clone())),
            _ => None,
        })
        .collect()
}

/// A warning for each policy file of `workspace` (or of the chain) created, changed or
/// removed since `before`: a later run reads it. `now`: the workspace's policy files now,
/// when the session's exit checks found them; else they are looked for here.
fn report_policy_files(before: &crate::snapshot::Snapshot, workspace: &std::path::Path, now: Option<Vec<PathBuf>>, ask_config: Option<&PathBuf>) {
    for (file, change) in before.changes(now.unwrap_or_else(|| crate::snapshot::policy_files(workspace))) {
        let dir = file.parent().unwrap_or(workspace);
        let reader = if dir == workspace { "the next sbx run here reads it".to_string() } else { format!("an sbx run in {} reads it", crate::termtext::path(dir)) };
        let note = if Some(&file) == ask_config { " (your --ask answers are written there too)" } else { "" };
        let advice = match change {
            crate::snapshot::Change::Removed => String::new(),
            _ => format!(": {reader} as the policy; review it or delete it"),
        };
        eprintln!("sbx: warning: the policy file {} was {} during the session{note}{advice}", crate::termtext::path(&file), change.as_str());
    }
}

/// `sbx learn`: sessions with the tracer on (denials) and the usual
/// reporting off; the learning loop is `crate::learn`.
pub fn learn(args: LearnArgs) -> anyhow::Result<ExitCode> {
    let command = command_of(args.command, "learn")?;
    let run_as = crate::identity::resolve(args.policy.user.as_deref())?;
    let (loaded, policy) = load_policy(&args.policy, &Default::default(), run_as.as_ref())?;
    check_workspace(&policy, args.unsafe_workspace)?;
    check_policy_files(&loaded, &policy)?;
    if !nix::unistd::geteuid().is_root() {
        eprintln!("sbx learn: not root: the kernel tracer is off, so only network destinations and blocked syscalls are learnt, not file access");
    }
    let cwd = policy.workspace.clone();
    let (_, xdg) = home_and_xdg_for(run_as.as_ref());
    // A template or the default starts a new file (which then holds only the additions).
    let file = loaded.edit_target(&cwd);
    let mut target = crate::suggest::Target::open(&file, &cwd, xdg.as_deref())?;
    target.merged = loaded.config.clone();
    let sources: Vec<String> = loaded.chain.iter().map(|part| part.origin.label()).collect();
    // learn rebuilds the policy for every run: the PATH directories carry over.
    let path_dirs = policy.path_dirs.clone();
    let chain = chain_files(&loaded);
    let mut run_one = |policy: &Policy, log: &std::path::Path| -> anyhow::Result<u8> {
        let mut policy = policy.clone();
        policy.path_dirs = path_dirs.clone();
        // A policy file the command creates or changes is reported after each run (learn
        // writes its own result only after the last).
        let watched = crate::snapshot::Snapshot::take(crate::snapshot::policy_files(&policy.workspace).into_iter().chain(chain.clone()));
        let options = session::Options {
            trace: session::Trace::IfPossible,
            log: Some(log.to_path_buf()),
            launch: launch::Options { notify: true, run_as: run_as.clone(), ..launch::Options::default() },
            sources: sources.clone(),
            ring_bytes: monitor::tracer::DEFAULT_RING_BYTES,
            summary: false,
            inbound: Vec::new(),
            dashboard: false,
            dashboard_start: crate::tui::Start::Dashboard,
            ask: None,
            keep_agent_config: false,
            repositories: None,
        };
        let ended = session::run(&policy, command.clone(), options, None)?;
        report_policy_files(&watched, &policy.workspace, ended.policy_files, None);
        Ok(ended.code)
    };
    let learned = crate::learn::learn(crate::learn::Request {
        command: command.clone(),
        target,
        workspace: policy.workspace.clone(),
        home: policy.home.clone(),
        log: args.log.as_deref(),
        output: args.output.as_deref(),
        trust: if args.unverified { crate::suggest::Trust::Unverified } else { crate::suggest::Trust::Verified },
        max_runs: args.max_runs,
        run: &mut run_one,
    })?;
    Ok(ExitCode::from(if learned.converged { learned.last_exit } else { 1.max(learned.last_exit) }))
}

/// Refuses `/`, the home directory, a parent of it and system directories as the
/// workspace unless `--unsafe-workspace` accepts them.
fn check_workspace(policy: &Policy, accepted: bool) -> anyhow::Result<()> {
    match crate::policy::unsafe_workspace(&policy.workspace, policy.home.as_deref()) {
        Some(refusal) if !accepted => Err(refusal.into()),
        _ => Ok(()),
    }
}

/// Refuses to start when a file of the policy's chain could be changed by the command.
fn check_policy_files(loaded: &config::Loaded, policy: &Policy) -> anyhow::Result<()> {
    Ok(policy.check_policy_files(chain_files(loaded).iter().map(PathBuf::as_path))?)
}

/// The command from `-c 'SHELL CMD'` or the words after `--`.
fn command_of(args: crate::cli::CommandArgs, verb: &str) -> anyhow::Result<Vec<OsString>> {
    let command = match args.shell {
        Some(shell) => vec!["/bin/sh".into(), "-c".into(), shell],
        None => args.argv,
    };
    if command.is_empty() {
        anyhow::bail!("no command given: put it after `--` (sbx {verb} -- CMD ARGS) or use -c 'SHELL CMD'");
    }
    Ok(command)
}

/// `--require`: refuse before anything starts when this host cannot
/// provide a layer. (Stage-2 checks Landlock again, as enforced.)
fn check_required(require: &[Layer]) -> Result<(), LaunchError> {
    for layer in require {
        match layer {
            Layer::Landlock if crate::sys::landlock_abi() == 0 => {
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
