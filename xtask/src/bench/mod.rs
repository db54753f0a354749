//! `cargo xtask bench [SUITE]`: suites that time sbx side by side with the
//! alternative a user would pick, in the same run, interleaved so that noise
//! on this shared machine hits every contender alike. Results are printed as
//! medians and ratios and written as JSON under target/bench/.

use std::{
    ffi::OsString,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

const SUITES: &[&str] = &["startup", "monitor", "proxy", "notify", "commands", "tui"];

/// `cargo` is a `cargo` command in the workspace with the provisioned tools
/// on PATH (the `tui` suite builds and runs a unit benchmark).
pub fn run(root: &Path, sbx: &Path, cargo: &dyn Fn() -> Command, suite: Option<&str>, runs: usize) -> Result<()> {
    let suites: Vec<&str> = match suite {
        None => SUITES.to_vec(),
        Some(name) if SUITES.contains(&name) => vec![name],
        Some(name) => bail!("unknown bench suite {name:?}; known: {}", SUITES.join(", ")),
    };
    let out_dir = root.join("target/bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    for suite in suites {
        let report = match suite {
            "startup" => startup(sbx, runs)?,
            "monitor" => monitor::monitor(root, sbx, runs)?,
            "proxy" => proxy::proxy(root, sbx, runs)?,
            "notify" => notify::notify(root, sbx, runs)?,
            "commands" => monitor::commands(root, sbx, runs)?,
            "tui" => tui::tui(cargo)?,
            _ => unreachable!("checked against SUITES above"),
        };
        report.print();
        let path = out_dir.join(format!("{suite}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct Report {
    suite: &'static str,
    runs: usize,
    contenders: Vec<Contender>,
    /// (name, ratio) of the first contender's median against each other's.
    ratios: Vec<Ratio>,
    /// Suite-specific figures, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    figures: Vec<(String, f64)>,
    /// Verdicts against the suite's goals, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

#[derive(Serialize)]
struct Contender {
    name: String,
    command: Vec<String>,
    median_ms: f64,
    p10_ms: f64,
    p90_ms: f64,
    mean_ms: f64,
}

#[derive(Serialize)]
struct Ratio {
    of: String,
    against: String,
    ratio: f64,
    added_ms: f64,
}

impl Report {
    fn print(&self) {
        println!("\n== bench {} ({} runs each, interleaved) ==", self.suite, self.runs);
        println!("{:<46} {:>10} {:>10} {:>10}", "contender", "median ms", "p10 ms", "p90 ms");
        for c in &self.contenders {
            println!("{:<46} {:>10.3} {:>10.3} {:>10.3}", c.name, c.median_ms, c.p10_ms, c.p90_ms);
        }
        for r in &self.ratios {
            println!("{} / {}: {:.2}x (+{:.3} ms)", r.of, r.against, r.ratio, r.added_ms);
        }
        for (name, value) in &self.figures {
            println!("{name}: {value:.3}");
        }
        for note in &self.notes {
            println!("{note}");
        }
    }
}

/// One command to time: its name, argv, working directory and environment additions.
struct Subject {
    name: String,
    argv: Vec<OsString>,
    cwd: Option<std::path::PathBuf>,
    env: Vec<(OsString, OsString)>,
}

impl Subject {
    fn new(name: impl Into<String>, argv: Vec<OsString>) -> Self {
        Self { name: name.into(), argv, cwd: None, env: Vec::new() }
    }
    fn in_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }
    fn with_env(mut self, var: &str, value: impl Into<OsString>) -> Self {
        self.env.push((var.into(), value.into()));
        self
    }
    /// The command, with its directory and environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.args(&self.argv[1..]).envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

fn time_once(s: &Subject) -> Result<Duration> {
    let argv = &s.argv;
    let started = Instant::now();
    let status = s
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {argv:?}"))?;
    let elapsed = started.elapsed();
    if !status.success() {
        // Run again with stderr visible so the failure explains itself.
        let _ = s.command().status();
        bail!("{argv:?} failed: {status}");
    }
    Ok(elapsed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// Times every subject `runs` times, round-robin, after a warm-up run each.
fn measure(suite: &'static str, subjects: &[Subject], runs: usize) -> Result<Report> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); subjects.len()];
    for s in subjects {
        time_once(s)?;
    }
    for _ in 0..runs {
        for (i, s) in subjects.iter().enumerate() {
            samples[i].push(time_once(s)?.as_secs_f64() * 1e3);
        }
    }
    let contenders: Vec<Contender> = subjects.iter().zip(samples).map(|(s, v)| contender(s, v)).collect();
    let first = &contenders[0];
    let ratios = contenders[1..]
        .iter()
        .map(|c| Ratio {
            of: first.name.clone(),
            against: c.name.clone(),
            ratio: first.median_ms / c.median_ms,
            added_ms: first.median_ms - c.median_ms,
        })
        .collect();
    Ok(Report { suite, runs, contenders, ratios, figures: Vec::new(), notes: Vec::new() })
}

/// Median, p10, p90 and mean of one subject's samples (milliseconds).
fn contender(s: &Subject, mut v: Vec<f64>) -> Contender {
    v.sort_by(f64::total_cmp);
    Contender {
        name: s.name.clone(),
        command: s.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        median_ms: percentile(&v, 0.5),
        p10_ms: percentile(&v, 0.1),
        p90_ms: percentile(&v, 0.9),
        mean_ms: v.iter().sum::<f64>() / v.len() as f64,
    }
}

fn which(program: &str) -> Result<OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(Into::into)
        .with_context(|| format!("{program} is not on PATH"))
}

/// The reference of issue 22's goal (`sbx run -- true` within 1.3x of it): bubblewrap with
/// the namespaces and the few mounts any sandbox makes, nothing of sbx's.
const BARE_BWRAP: &[&str] = &["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--"];
/// The goal: `sbx run -- true`, with the default policy and with `-t code`, at most this
/// many times bare bubblewrap's median.
const STARTUP_GOAL: f64 = 1.3;
/// Issue 18's goal: `sbx run -t code -- true` in a home of 200,000 files ([`home`]) at most
/// this many times `sbx run -- true`'s median there.
const GLOB_GOAL: f64 = 1.5;

fn startup(sbx: &Path, runs: usize) -> Result<Report> {
    let truth = which("true")?;
    let bwrap = which("bwrap")?;
    let os = |s: &str| OsString::from(s);
    let bare: Vec<OsString> = std::iter::once(bwrap).chain(BARE_BWRAP.iter().map(|a| os(a))).chain([truth.clone()]).collect();
    // Issue 18's condition: a home of 200,000 files with the workspace, a git repository,
    // in it (the default policy's walks of the workspace, and `-t code`'s glob rules and
    // placeholders). The other subjects start where the bench runs, as they always did.
    let (home, workspace) = home::ensure()?;
    let in_home = |s: Subject| {
        let name = format!("{} [200k home]", s.name);
        Subject { name, ..s.in_dir(&workspace).with_env("HOME", &home) }
    };
    let default = |bin: &Path, prefix: &str| Subject::new(format!("{prefix}sbx run -- true"), vec![bin.into(), os("run"), os("--"), truth.clone()]);
    let code = |bin: &Path, prefix: &str| Subject::new(format!("{prefix}sbx run -t code -- true"), vec![bin.into(), os("run"), os("-t"), os("code"), os("--"), truth.clone()]);
    // Another build of sbx to compare with, in the same interleaved run (`SBX_BASELINE=PATH`,
    // for a change's before and after).
    let baseline = std::env::var_os("SBX_BASELINE").map(std::path::PathBuf::from);
    let baseline_subjects = baseline.iter().flat_map(|b| {
        let prefix = "baseline: ";
        [default(b, prefix), code(b, prefix), in_home(default(b, prefix)), in_home(code(b, prefix))]
    });
    let warnings = warnings_once(&in_home(code(sbx, "")))?;
    let subjects: Vec<Subject> = [
        default(sbx, ""),
        code(sbx, ""),
        // What the limits cost at start-up: the session's cgroups (created, joined, removed)
        // and the sized tmpfs mounts; the same run with every limit off.
        Subject::new(
            "sbx run (limits off) -- true",
            vec![sbx.into(), os("run"), os("--memory"), os("off"), os("--pids"), os("off"), os("--tmp-size"), os("off"), os("--"), truth.clone()],
        ),
        in_home(default(sbx, "")),
        in_home(code(sbx, "")),
        Subject::new("bwrap (bare) true", bare),
        // The exec of sbx's binary alone: paid by sbx, and by stage-2 when it is sbx again.
        Subject::new("sbx --version", vec![sbx.into(), os("--version")]),
        Subject::new("true", vec![truth.clone()]),
    ]
    .into_iter()
    .chain(baseline_subjects)
    .collect();
    let mut report = measure("startup", &subjects, runs)?;
    let median = |name: &str| report.contenders.iter().find(|c| c.name == name).map(|c| c.median_ms).context("a startup contender");
    let bare = median("bwrap (bare) true")?;
    let mut against_bare = vec!["sbx run -t code -- true", "sbx run (limits off) -- true"];
    if baseline.is_some() {
        against_bare.extend(["baseline: sbx run -- true", "baseline: sbx run -t code -- true"]);
    }
    let against_bare: Vec<(&str, f64)> = against_bare.into_iter().map(|n| Ok((n, median(n)?))).collect::<Result<_>>()?;
    let goals = [("sbx run -- true", median("sbx run -- true")?), ("sbx run -t code -- true", median("sbx run -t code -- true")?)];
    for (name, of) in against_bare {
        report.ratios.push(Ratio { of: name.into(), against: "bwrap (bare) true".into(), ratio: of / bare, added_ms: of - bare });
    }
    for (name, of) in goals {
        let ratio = of / bare;
        let verdict = if ratio <= STARTUP_GOAL { "meets" } else { "misses" };
        report.notes.push(format!("{name}: {ratio:.2}x bare bwrap, {verdict} the goal of {STARTUP_GOAL}x"));
    }
    // Issue 18: the glob rules of `-t code` against the default policy, in the same home.
    let mut pairs = vec![""];
    if baseline.is_some() {
        pairs.push("baseline: ");
    }
    for prefix in pairs {
        let (of, against) = (format!("{prefix}sbx run -t code -- true [200k home]"), format!("{prefix}sbx run -- true [200k home]"));
        let (o, a) = (median(&of)?, median(&against)?);
        let verdict = if o / a <= GLOB_GOAL { "meets" } else { "misses" };
        report.notes.push(format!("{of} / {against}: {:.2}x, {verdict} issue 18's goal of {GLOB_GOAL}x", o / a));
        report.ratios.push(Ratio { of, against, ratio: o / a, added_ms: o - a });
    }
    report.notes.push(warnings);
    Ok(report)
}

/// Runs `s` once and says whether each of its warnings was printed once (issue 18), quoting
/// them.
fn warnings_once(s: &Subject) -> Result<String> {
    let out = s.command().stdin(Stdio::null()).output().with_context(|| format!("starting {:?}", s.argv))?;
    if !out.status.success() {
        bail!("{:?} failed: {}\n{}", s.argv, out.status, String::from_utf8_lossy(&out.stderr));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    let mut twice: Vec<&str> = warnings.iter().copied().filter(|w| warnings.iter().filter(|o| *o == w).count() > 1).collect();
    twice.dedup();
    let mut text = match (warnings.len(), twice.is_empty()) {
        (0, _) => format!("{}: no warning", s.name),
        (n, true) => format!("{}: {n} warnings, each printed once", s.name),
        (n, false) => format!("{}: {n} warnings, {} of them printed more than once (misses issue 18's goal)", s.name, twice.len()),
    };
    for w in warnings {
        text.push_str(&format!("\n  {w}"));
    }
    Ok(text)
}

fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Runs a subject and returns its stdout; a failure carries its stderr.
fn output_once(s: &Subject) -> Result<String> {
    let out = s
        .command()
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {:?}", s.argv))?;
    if !out.status.success() {
        bail!("{:?} failed: {}\n{}", s.argv, out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs every subject `runs` times, round-robin, after a warm-up run each,
/// and turns each run's stdout into one sample with `parse`.
fn sample(subjects: &[Subject], runs: usize, parse: impl Fn(&str) -> Result<f64>) -> Result<Vec<Vec<f64>>> {
    let one = |s: &Subject| -> Result<f64> {
        let out = output_once(s)?;
        parse(&out).with_context(|| format!("{}: unexpected output {out:?}", s.name))
    };
    for s in subjects {
        one(s)?;
    }
    let mut samples = vec![Vec::with_capacity(runs); subjects.len()];
    for _ in 0..runs {
        for (i, s) in subjects.iter().enumerate() {
            samples[i].push(one(s)?);
        }
    }
    Ok(samples)
}

/// Whitespace-separated numbers of one output line.
fn numbers(out: &str) -> Result<Vec<f64>> {
    out.split_whitespace().map(|w| w.parse::<f64>().with_context(|| format!("{w:?} is not a number"))).collect()
}

mod home;
mod monitor;
mod notify;
mod proxy;
mod tui;
