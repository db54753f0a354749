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

const SUITES: &[&str] = &["startup"];

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
    }
}

/// One command to time: its name and argv.
struct Subject {
    name: String,
    argv: Vec<OsString>,
}

fn time_once(argv: &[OsString]) -> Result<Duration> {
    let started = Instant::now();
    let status = Command::new(&argv[0])
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
        time_once(&s.argv)?;
    }
    for _ in 0..runs {
        for (i, s) in subjects.iter().enumerate() {
            samples[i].push(time_once(&s.argv)?.as_secs_f64() * 1e3);
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
    Ok(Report { suite, runs, contenders, ratios })
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
        Subject {
            name: "sbx run -- true".into(),
            argv: vec![sbx.into(), os("run"), os("--"), truth.clone()],
        },
        Subject {
            name: "bwrap --unshare-all true".into(),
            argv: vec![bwrap, os("--ro-bind"), os("/"), os("/"), os("--unshare-all"), os("--"), truth.clone()],
        },
        Subject { name: "true".into(), argv: vec![truth] },
    ];
    measure("startup", &subjects, runs)
}
