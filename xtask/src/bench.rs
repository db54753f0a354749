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

const SUITES: &[&str] = &["startup", "monitor"];

pub fn run(root: &Path, sbx: &Path, suite: Option<&str>, runs: usize) -> Result<()> {
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
            "monitor" => monitor(root, sbx, runs)?,
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
        println!("{:<28} {:>10} {:>10} {:>10}", "contender", "median ms", "p10 ms", "p90 ms");
        for c in &self.contenders {
            println!("{:<28} {:>10.3} {:>10.3} {:>10.3}", c.name, c.median_ms, c.p10_ms, c.p90_ms);
        }
        for r in &self.ratios {
            println!("{} / {}: {:.2}x (+{:.3} ms)", r.of, r.against, r.ratio, r.added_ms);
        }
        for (name, value) in &self.figures {
            println!("{name}: {value:.3}");
        }
    }
}

/// One command to time: its name, argv and working directory.
struct Subject {
    name: String,
    argv: Vec<OsString>,
    cwd: Option<std::path::PathBuf>,
}

impl Subject {
    fn new(name: impl Into<String>, argv: Vec<OsString>) -> Self {
        Self { name: name.into(), argv, cwd: None }
    }
    fn in_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }
}

fn time_once(s: &Subject) -> Result<Duration> {
    let argv = &s.argv;
    let started = Instant::now();
    let mut cmd = Command::new(&argv[0]);
    if let Some(dir) = &s.cwd {
        cmd.current_dir(dir);
    }
    let status = cmd
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("starting {argv:?}"))?;
    let elapsed = started.elapsed();
    if !status.success() {
        // Run again with stderr visible so the failure explains itself.
        let _ = Command::new(&argv[0]).args(&argv[1..]).status();
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
    let contenders: Vec<Contender> = subjects
        .iter()
        .zip(samples.iter_mut())
        .map(|(s, v)| {
            v.sort_by(f64::total_cmp);
            Contender {
                name: s.name.clone(),
                command: s.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
                median_ms: percentile(v, 0.5),
                p10_ms: percentile(v, 0.1),
                p90_ms: percentile(v, 0.9),
                mean_ms: v.iter().sum::<f64>() / v.len() as f64,
            }
        })
        .collect();
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
    Ok(Report { suite, runs, contenders, ratios, figures: Vec::new() })
}

fn which(program: &str) -> Result<OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(Into::into)
        .with_context(|| format!("{program} is not on PATH"))
}

fn startup(sbx: &Path, runs: usize) -> Result<Report> {
    let truth = which("true")?;
    let bwrap = which("bwrap")?;
    let os = |s: &str| OsString::from(s);
    let subjects = [
        Subject::new("sbx run -- true", vec![sbx.into(), os("run"), os("--"), truth.clone()]),
        Subject::new("bwrap --unshare-all true", vec![bwrap, os("--ro-bind"), os("/"), os("/"), os("--unshare-all"), os("--"), truth.clone()]),
        Subject::new("true", vec![truth]),
    ];
    measure("startup", &subjects, runs)
}

/// The C programs of the monitor suite: a syscall-heavy loop, and a burst
/// of denied opens to measure the tracer's throughput.
const STAT_LOOP_C: &str = r#"#include <sys/stat.h>
#include <fcntl.h>
int main(void) {
    struct stat st;
    for (int i = 0; i < 200000; i++) stat("/etc/passwd", &st);
    for (int i = 0; i < 1000; i++) open("/etc/sbx-bench-denied", O_WRONLY | O_CREAT, 0644);
    return 0;
}
"#;
const DENIALS: u64 = 200_000;
const DENIAL_BURST_C: &str = r#"#include <fcntl.h>
int main(void) {
    for (int i = 0; i < 200000; i++) open("/etc/sbx-bench-denied", O_WRONLY | O_CREAT, 0644);
    return 0;
}
"#;

fn check(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// A work directory with the workloads: the C programs and a git
/// repository of 4,000 files for `git status`.
fn monitor_workdir(root: &Path) -> Result<std::path::PathBuf> {
    let dir = root.join("target/bench/monitor-work");
    if dir.join(".ready").exists() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("repo"))?;
    std::fs::write(dir.join("stat_loop.c"), STAT_LOOP_C)?;
    std::fs::write(dir.join("denial_burst.c"), DENIAL_BURST_C)?;
    for prog in ["stat_loop", "denial_burst"] {
        check(Command::new("cc").args(["-O2", "-o", prog, &format!("{prog}.c")]).current_dir(&dir))?;
    }
    let repo = dir.join("repo");
    for d in 0..40 {
        let sub = repo.join(format!("src{d}"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..100 {
            std::fs::write(sub.join(format!("f{f}.txt")), format!("file {d}/{f}\n"))?;
        }
    }
    check(Command::new("git").args(["init", "-q", "."]).current_dir(&repo))?;
    check(Command::new("git").args(["add", "."]).current_dir(&repo))?;
    check(
        Command::new("git")
            .args(["-c", "user.email=bench@example.invalid", "-c", "user.name=bench", "commit", "-q", "-m", "bench"])
            .current_dir(&repo),
    )?;
    std::fs::write(dir.join(".ready"), "")?;
    Ok(dir)
}

/// The kernel tracer side by side with what a user would reach for:
/// `sbx run` (no tracer), `sbx monitor --no-tui`, `strace -f -e
/// status=failed` and the bare command; then fence's approach (bpftrace on
/// sys_exit tracepoints), which slows every process on the host while
/// attached and so runs in a phase of its own; then monitor start-up and
/// the tracer's denial throughput.
fn monitor(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
    let work = monitor_workdir(root)?;
    let runs = runs.clamp(5, 30);
    let os = |s: &str| OsString::from(s);
    let strace = which("strace")?;
    let git = which("git")?;
    let mut all = Vec::new();
    let mut figures = Vec::new();
    for (label, dir, workload) in [
        ("stat loop", work.clone(), vec![work.join("stat_loop").into_os_string()]),
        ("git status", work.join("repo"), vec![git.clone(), os("status"), os("--porcelain")]),
    ] {
        let with = |prefix: Vec<OsString>| -> Vec<OsString> { prefix.into_iter().chain(workload.iter().cloned()).collect() };
        let subjects = [
            Subject::new(format!("{label}: sbx monitor --no-tui"), with(vec![sbx.into(), os("monitor"), os("--no-tui"), os("--")])).in_dir(&dir),
            Subject::new(format!("{label}: sbx run"), with(vec![sbx.into(), os("run"), os("--")])).in_dir(&dir),
            Subject::new(format!("{label}: strace -f -e status=failed"), with(vec![strace.clone(), os("-f"), os("-qq"), os("-e"), os("status=failed"), os("-o"), os("/dev/null")])).in_dir(&dir),
            Subject::new(format!("{label}: bare"), workload.clone()).in_dir(&dir),
        ];
        let report = measure("monitor", &subjects, runs)?;
        let med = |i: usize| report.contenders[i].median_ms;
        let monitor_overhead = med(0) / med(1) - 1.0;
        let strace_overhead = med(2) / med(3) - 1.0;
        figures.push((format!("{label}: monitor overhead over sbx run (%)"), monitor_overhead * 100.0));
        figures.push((format!("{label}: strace overhead over bare (%)"), strace_overhead * 100.0));
        if monitor_overhead > 0.0 {
            figures.push((format!("{label}: strace overhead / monitor overhead"), strace_overhead / monitor_overhead));
        }
        if let Some(bpftrace) = fence_bpftrace(&dir, &workload, runs)? {
            figures.push((format!("{label}: bare under fence's bpftrace median ms"), bpftrace));
            figures.push((format!("{label}: fence's bpftrace overhead over bare (%)"), (bpftrace / med(3) - 1.0) * 100.0));
        }
        all.extend(report.contenders);
    }

    // Start-up of the tracer: monitor against run on `true`.
    let truth = which("true")?;
    let subjects = [
        Subject::new("true: sbx monitor --no-tui", vec![sbx.into(), os("monitor"), os("--no-tui"), os("--"), truth.clone()]),
        Subject::new("true: sbx run", vec![sbx.into(), os("run"), os("--"), truth]),
    ];
    let startup = measure("monitor", &subjects, runs)?;
    figures.push(("monitor start-up: load+attach+detach ms (monitor - run, medians)".into(), startup.contenders[0].median_ms - startup.contenders[1].median_ms));
    all.extend(startup.contenders);

    // Throughput: 200,000 denials as fast as one process can make them.
    let log = work.join("burst.jsonl");
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let status = Command::new(sbx)
        .args(["monitor", "--no-tui", "--log"])
        .arg(&log)
        .args(["--", "./denial_burst"])
        .current_dir(&work)
        .stderr(Stdio::null())
        .status()?;
    let elapsed = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("the denial burst failed: {status}");
    }
    let text = std::fs::read_to_string(&log)?;
    let end: serde_json::Value = serde_json::from_str(text.lines().last().context("empty burst log")?)?;
    let lost = end["lost"].as_u64().unwrap_or(u64::MAX);
    let denials = end["denials"].as_object().map_or(0, |m| m.values().filter_map(|v| v.as_u64()).sum::<u64>());
    figures.push(("burst: denials logged".into(), denials as f64));
    figures.push(("burst: events lost".into(), lost as f64));
    figures.push(("burst: denials per second (whole session, log written)".into(), DENIALS as f64 / elapsed));

    let first = &all[0];
    let ratios = all[1..]
        .iter()
        .filter(|c| c.name.split(':').next() == first.name.split(':').next())
        .map(|c| Ratio { of: first.name.clone(), against: c.name.clone(), ratio: first.median_ms / c.median_ms, added_ms: first.median_ms - c.median_ms })
        .collect();
    Ok(Report { suite: "monitor", runs, contenders: all, ratios, figures })
}

/// fence's monitor: bpftrace on the sys_exit tracepoints of the syscalls it
/// watches, printing each failure with EACCES or EPERM. Returns the median
/// of the bare workload while it is attached, or None (loudly) when
/// bpftrace cannot run here.
fn fence_bpftrace(dir: &Path, workload: &[OsString], runs: usize) -> Result<Option<f64>> {
    let Ok(bpftrace) = which("bpftrace") else {
        eprintln!("xtask: bench: bpftrace is not installed; fence's approach is not measured");
        return Ok(None);
    };
    let script = "tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_open, tracepoint:syscalls:sys_exit_unlinkat, \
                  tracepoint:syscalls:sys_exit_mkdirat /args->ret == -13 || args->ret == -1/ { printf(\"%d %s %d\\n\", pid, comm, args->ret); }";
    let mut child = Command::new(bpftrace)
        .args(["-e", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // bpftrace prints "Attaching N probes..." once attached.
    let mut out = std::io::BufReader::new(child.stdout.take().context("bpftrace stdout")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line)?;
    if !line.starts_with("Attaching") {
        let _ = child.kill();
        eprintln!("xtask: bench: bpftrace did not attach ({line:?}); fence's approach is not measured");
        return Ok(None);
    }
    let drain = std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let subject = Subject::new("bare under bpftrace", workload.to_vec()).in_dir(dir);
    let mut samples = Vec::new();
    time_once(&subject)?;
    for _ in 0..runs {
        samples.push(time_once(&subject)?.as_secs_f64() * 1e3);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = drain.join();
    samples.sort_by(f64::total_cmp);
    Ok(Some(percentile(&samples, 0.5)))
}
