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
            "monitor" => monitor(root, sbx, runs)?,
            "proxy" => proxy(root, sbx, runs)?,
            "notify" => notify(root, sbx, runs)?,
            "commands" => commands(root, sbx, runs)?,
            "tui" => tui(cargo)?,
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
        for note in &self.notes {
            println!("{note}");
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

fn startup(sbx: &Path, runs: usize) -> Result<Report> {
    let truth = which("true")?;
    let bwrap = which("bwrap")?;
    let os = |s: &str| OsString::from(s);
    let subjects = [
        Subject::new("sbx run -- true", vec![sbx.into(), os("run"), os("--"), truth.clone()]),
        // What the limits cost at start-up: the session's cgroups (created, joined, removed)
        // and the sized tmpfs mounts; the same run with every limit off.
        Subject::new(
            "sbx run (limits off) -- true",
            vec![sbx.into(), os("run"), os("--memory"), os("off"), os("--pids"), os("off"), os("--tmp-size"), os("off"), os("--"), truth.clone()],
        ),
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
    if dir.join(".ready-v2").exists() {
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
    // A small C project: 24 files, built with make (the realistic workload).
    let proj = dir.join("cproj");
    std::fs::create_dir_all(&proj)?;
    let mut objs = Vec::new();
    for f in 0..24 {
        let mut src = String::from("#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n");
        for g in 0..40 {
            src.push_str(&format!(
                "int f{f}_{g}(const char *s) {{ char b[64]; snprintf(b, sizeof b, \"%s-{g}\", s); return (int)strlen(b) * {g}; }}\n"
            ));
        }
        std::fs::write(proj.join(format!("m{f}.c")), src)?;
        objs.push(format!("m{f}.o"));
    }
    std::fs::write(proj.join("main.c"), "int main(void) { return 0; }\n")?;
    std::fs::write(
        proj.join("Makefile"),
        format!("prog: main.o {objs}\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O1 -c -o $@ $<\n", objs = objs.join(" ")),
    )?;
    check(Command::new("git").args(["init", "-q", "."]).current_dir(&repo))?;
    check(Command::new("git").args(["add", "."]).current_dir(&repo))?;
    check(
        Command::new("git")
            .args(["-c", "user.email=bench@example.invalid", "-c", "user.name=bench", "commit", "-q", "-m", "bench"])
            .current_dir(&repo),
    )?;
    std::fs::write(dir.join(".ready-v2"), "")?;
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
    let make = which("make")?;
    for (label, dir, workload) in [
        ("stat loop", work.clone(), vec![work.join("stat_loop").into_os_string()]),
        ("git status", work.join("repo"), vec![git.clone(), os("status"), os("--porcelain")]),
        ("C build", work.join("cproj"), vec![make.clone(), os("-s"), os("-B"), os("-j2")]),
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
    Ok(Report { suite: "monitor", runs, contenders: all, ratios, figures, notes: Vec::new() })
}

/// Command rules (`command.deny`), which make every exec a round trip to the supervisor:
/// the C build and a loop of 500 execs of `true`, each under `sbx run` with rules and
/// without, interleaved; the cost per exec is the loop's difference over 500.
fn commands(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
    let work = monitor_workdir(root)?;
    let runs = runs.clamp(5, 30);
    let os = |s: &str| OsString::from(s);
    // Outside the workspaces (cproj, the work dir's own runs use cproj): a policy file the
    // command could write is refused.
    let policies = root.join("target/bench/commands-policies");
    std::fs::create_dir_all(&policies)?;
    let on = policies.join("rules.jsonc");
    let off = policies.join("none.jsonc");
    std::fs::write(&on, r#"{ "command": { "deny": ["git push", "npm publish"] } }"#)?;
    std::fs::write(&off, "{}")?;
    let make = which("make")?;
    let sh = which("sh")?;
    const EXECS: usize = 500;
    let mut all = Vec::new();
    let mut figures = Vec::new();
    for (label, dir, workload) in [
        ("C build", work.join("cproj"), vec![make, os("-s"), os("-B"), os("-j2")]),
        ("500 execs", work.join("cproj"), vec![sh, os("-c"), os(&format!("i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done"))]),
    ] {
        let with = |policy: &Path| -> Vec<OsString> {
            [sbx.into(), os("run"), os("-s"), policy.into(), os("--")].into_iter().chain(workload.iter().cloned()).collect()
        };
        let subjects = [
            Subject::new(format!("{label}: sbx run, command rules"), with(&on)).in_dir(&dir),
            Subject::new(format!("{label}: sbx run, no rules"), with(&off)).in_dir(&dir),
            Subject::new(format!("{label}: bare"), workload.clone()).in_dir(&dir),
        ];
        let report = measure("commands", &subjects, runs)?;
        let med = |i: usize| report.contenders[i].median_ms;
        figures.push((format!("{label}: command rules overhead over no rules (%)"), (med(0) / med(1) - 1.0) * 100.0));
        if label == "500 execs" {
            figures.push(("cost per exec of the command check (us)".into(), (med(0) - med(1)) * 1000.0 / EXECS as f64));
        }
        all.extend(report.contenders);
    }
    let ratios = all
        .chunks(3)
        .map(|c| Ratio { of: c[0].name.clone(), against: c[1].name.clone(), ratio: c[0].median_ms / c[1].median_ms, added_ms: c[0].median_ms - c[1].median_ms })
        .collect();
    Ok(Report { suite: "commands", runs, contenders: all, ratios, figures, notes: Vec::new() })
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

/// Runs a subject and returns its stdout; a failure carries its stderr.
fn output_once(s: &Subject) -> Result<String> {
    let mut cmd = Command::new(&s.argv[0]);
    if let Some(dir) = &s.cwd {
        cmd.current_dir(dir);
    }
    let out = cmd
        .args(&s.argv[1..])
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

/// Bytes of the large download of the proxy suite.
const PROXY_BIG: u64 = 256 << 20;
/// Short requests per run of the connection-rate half of the proxy suite.
const PROXY_CONNS: usize = 500;

/// A minimal HTTP/1.1 server on 127.0.0.1 for the proxy suite: `GET /big`
/// streams [`PROXY_BIG`] bytes, anything else gets an empty 200; every
/// response closes its connection, so each request is a new connection.
fn loopback_server() -> Result<u16> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the bench server on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    let serve = |mut s: std::net::TcpStream| -> std::io::Result<()> {
        static CHUNK: [u8; 256 << 10] = [b'x'; 256 << 10];
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf)?;
            if n == 0 || head.len() > 64 << 10 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let len = if head.starts_with(b"GET /big ") { PROXY_BIG } else { 0 };
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK.len() as u64) as usize;
            s.write_all(&CHUNK[..n])?;
            left -= n as u64;
        }
        // The request was read whole, so closing sends a FIN after the data.
        s.shutdown(std::net::Shutdown::Write)
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(port)
}

/// The floor of any relay that terminates TCP, for the proxy suite: a
/// listener on 127.0.0.1 that connects each client to `target` on 127.0.0.1
/// and moves the bytes with splice(2) through a 256 KiB pipe per direction,
/// one blocking thread per direction: no policy, no sandbox, no async
/// runtime. What sbx's proxy loses against this is sbx's own cost; what
/// this loses against bare loopback is the second TCP connection's.
fn splice_relay(target: u16) -> Result<u16> {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are new descriptors that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int; a refusal only leaves the default size.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 256 << 10) };
        Ok((r, w))
    }
    fn splice(from: i32, to: i32, len: usize) -> std::io::Result<usize> {
        // SAFETY: plain descriptors and null offsets (sockets and pipes have none).
        let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }
    // One direction until EOF, then half-close the other side.
    fn pump(from: &TcpStream, to: &TcpStream) -> std::io::Result<()> {
        let (r, w) = pipe()?;
        loop {
            let mut left = splice(from.as_raw_fd(), w.as_raw_fd(), 256 << 10)?;
            if left == 0 {
                return to.shutdown(Shutdown::Write);
            }
            while left > 0 {
                left -= splice(r.as_raw_fd(), to.as_raw_fd(), left)?;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the bench relay on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else { continue };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else { continue };
            std::thread::spawn(move || pump(&client, &upstream));
            std::thread::spawn(move || pump(&u2, &c2));
        }
    });
    Ok(port)
}

/// The egress proxy against direct loopback, in one run: (a) the throughput
/// of a 256 MiB download, (b) the cost of a connection (500 short requests,
/// each on its own connection). Every client is curl; the sandboxed ones run
/// inside `sbx run`, direct through the forwarded port
/// (`allowLocalOutboundPorts`) or through the proxy (absolute-URI HTTP,
/// CONNECT, SOCKS5), and the baselines are bare curl on the host's loopback
/// and bare curl through [`splice_relay`], the least any relay costs here.
fn proxy(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
    let work = root.join("target/bench/proxy-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let port = loopback_server()?;
    let relay = splice_relay(port)?;
    // The bench's policy: the server's IP literal and its forwarded port.
    std::fs::write(
        work.join("sbx.jsonc"),
        format!(
            "// Temporary policy of `cargo xtask bench proxy`.\n{{ \"network\": {{ \"allowedDomains\": [\"127.0.0.1:{port}\"], \"allowLocalOutboundPorts\": [{port}] }} }}\n"
        ),
    )?;
    let runs = runs.clamp(5, 15);
    let os = |s: &str| OsString::from(s);
    // (name, inside sbx, how curl reaches the server)
    let routes: [(&str, bool, &str); 6] = [
        ("bare curl, host loopback", false, "--noproxy '*'"),
        ("bare curl, minimal splice relay", false, "--noproxy '*' --connect-to ::127.0.0.1:RELAY"),
        ("sbx run, forwarded port", true, "--noproxy '*'"),
        ("sbx run, HTTP proxy", true, r#"--noproxy '' -x "$HTTP_PROXY""#),
        ("sbx run, HTTP CONNECT", true, r#"--noproxy '' -p -x "$HTTP_PROXY""#),
        ("sbx run, SOCKS5", true, r#"--noproxy '' -x "$ALL_PROXY""#),
    ];
    let subjects = |label: &str, script: &dyn Fn(&str) -> String| -> Vec<Subject> {
        routes
            .iter()
            .map(|(name, in_sbx, how)| {
                let mut argv: Vec<OsString> = if *in_sbx { vec![sbx.into(), os("run"), os("--")] } else { Vec::new() };
                let how = how.replace("RELAY", &relay.to_string());
                argv.extend([os("/bin/sh"), os("-c"), OsString::from(script(&how))]);
                Subject::new(format!("{label}: {name}"), argv).in_dir(&work)
            })
            .collect()
    };

    // (a) Throughput: curl's own transfer time, so sandbox start-up is not in it.
    let big = subjects("256 MiB", &|how| {
        format!("exec curl -sS {how} -o /dev/null -w '%{{size_download}} %{{time_total}} %{{http_code}}' http://127.0.0.1:{port}/big")
    });
    let samples = sample(&big, runs, |out| match numbers(out)?[..] {
        [size, secs, code] if size as u64 == PROXY_BIG && code == 200.0 => Ok(secs * 1e3),
        _ => bail!("expected {PROXY_BIG} bytes with status 200"),
    })?;
    let mut contenders: Vec<Contender> = big.iter().zip(samples).map(|(s, v)| contender(s, v)).collect();

    // (b) Connections: 500 requests in one curl (URL globbing), timed inside.
    let small = subjects("500 connections", &|how| {
        format!(
            "t0=$(date +%s%N); n=$(curl -sS {how} -w '%{{http_code}}\\n' 'http://127.0.0.1:{port}/small/[1-{PROXY_CONNS}]' | grep -c '^200$'); t1=$(date +%s%N); echo \"$n $((t1 - t0))\""
        )
    });
    let samples = sample(&small, runs, |out| match numbers(out)?[..] {
        [n, ns] if n as usize == PROXY_CONNS => Ok(ns / 1e6 / PROXY_CONNS as f64),
        _ => bail!("expected {PROXY_CONNS} responses with status 200"),
    })?;
    contenders.extend(small.iter().zip(samples).map(|(s, v)| contender(s, v)));
    let _ = std::fs::remove_dir_all(&work);

    let n = routes.len();
    let mut ratios = Vec::new();
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let mbps = |c: &Contender| PROXY_BIG as f64 / 1e6 / (c.median_ms / 1e3);
    for c in &contenders[..n] {
        figures.push((format!("{}: MB/s", c.name), mbps(c)));
    }
    for (half, offset) in [("throughput", 0), ("connections", n)] {
        let [bare, relay, forwarded] = [0, 1, 2].map(|i| &contenders[offset + i]);
        for proxied in &contenders[offset + 1..offset + n] {
            let route = proxied.name.split(": ").nth(1).unwrap_or_default();
            // The relay against bare only; everything in the sandbox against all three.
            let against = if proxied.name == relay.name { &[bare][..] } else { &[bare, relay, forwarded][..] };
            for direct in against.iter().filter(|d| d.name != proxied.name) {
                ratios.push(Ratio {
                    of: proxied.name.clone(),
                    against: direct.name.clone(),
                    ratio: proxied.median_ms / direct.median_ms,
                    added_ms: proxied.median_ms - direct.median_ms,
                });
                let against_route = direct.name.split(": ").nth(1).unwrap_or_default();
                figures.push(if half == "throughput" {
                    (format!("throughput: {route} / {against_route} (%)"), mbps(proxied) / mbps(direct) * 100.0)
                } else {
                    (
                        format!("connections: {route}: added ms per connection over {against_route}"),
                        proxied.median_ms - direct.median_ms,
                    )
                });
            }
            if proxied.name == relay.name || proxied.name == forwarded.name {
                continue;
            }
            if half == "throughput" {
                let of_bare = mbps(proxied) / mbps(bare) * 100.0;
                let verdict = if of_bare >= 80.0 { "met" } else { "NOT met" };
                notes.push(format!("goal >= 80% of direct loopback throughput: {route} {of_bare:.0}% of bare: {verdict}"));
            } else {
                let added = proxied.median_ms - bare.median_ms;
                let verdict = if added < 1.0 { "met" } else { "NOT met" };
                notes.push(format!("goal < 1 ms added per connection: {route} +{added:.3} ms over bare: {verdict}"));
            }
        }
    }
    let floor = mbps(&contenders[1]) / mbps(&contenders[0]) * 100.0;
    notes.push(format!("the floor of a relay that terminates TCP (splice and nothing else) here: {floor:.0}% of bare"));
    Ok(Report { suite: "proxy", runs, contenders, ratios, figures, notes })
}

/// The notify suite's program: N blocked `unshare(CLONE_NEWUSER)` calls
/// timed with clock_gettime, by one process or split over P processes;
/// prints ns per blocked call (wall time over all calls), ns per allowed
/// call (`getppid`, for reference) and how many calls failed with EPERM.
const BLOCKED_LOOP_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static long blocked(long n) {
    long eperm = 0;
    for (long i = 0; i < n; i++)
        if (unshare(CLONE_NEWUSER) == -1 && errno == EPERM) eperm++;
    return eperm;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int procs = argc > 2 ? atoi(argv[2]) : 1;
    double t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getppid);
    double allowed = (now() - t0) / n;
    long per = n / procs, total = per * procs, eperm = 0;
    t0 = now();
    if (procs <= 1) {
        eperm = blocked(total);
    } else {
        for (int p = 0; p < procs; p++)
            if (fork() == 0) _exit(blocked(per) == per ? 0 : 1);
        int st, ok = 1;
        while (wait(&st) > 0)
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
        eperm = ok ? total : 0;
    }
    double elapsed = now() - t0;
    printf("%.1f %.1f %ld\n", elapsed / total, allowed, eperm);
    return eperm == total ? 0 : 1;
}
"#;
/// The floor of the mechanism on this host: a minimal supervisor thread
/// (RECV, SEND EPERM, nothing else) for the main thread's blocked
/// `unshare(CLONE_NEWUSER)` calls, outside any sandbox. Prints ns per call,
/// 0 (no allowed-call reference) and the number of EPERMs, like blocked_loop.
const NOTIF_FLOOR_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int listener = -1;
static int use_poll = 0;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *supervise(void *arg) {
    (void)arg;
    while (__atomic_load_n(&listener, __ATOMIC_ACQUIRE) < 0) sched_yield();
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    for (;;) {
        if (use_poll) {
            struct pollfd p = { .fd = listener, .events = POLLIN };
            if (poll(&p, 1, -1) < 0 || (p.revents & POLLHUP)) return NULL;
        }
        memset(&req, 0, sizeof req);
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
            if (errno == EINTR || errno == ENOENT) continue;
            return NULL;
        }
        memset(&resp, 0, sizeof resp);
        resp.id = req.id;
        resp.error = -EPERM;
        ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    use_poll = argc > 2 && strcmp(argv[2], "poll") == 0;
    pthread_t t;
    pthread_create(&t, NULL, supervise, NULL);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = 4, .filter = f };
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (fd < 0) { perror("seccomp"); return 1; }
    __atomic_store_n(&listener, fd, __ATOMIC_RELEASE);
    long eperm = 0;
    double t0 = now();
    for (long i = 0; i < n; i++)
        if (unshare(CLONE_NEWUSER) == -1 && errno == EPERM) eperm++;
    printf("%.1f 0 %ld\n", (now() - t0) / n, eperm);
    return eperm == n ? 0 : 1;
}
"#;
const NOTIFY_CALLS: u64 = 100_000;
const NOTIFY_PROCS: u64 = 4;

/// What one session's log says about the seccomp events: denials written,
/// the session_end's `lost`, and the sum of the `loss` events' counts.
#[derive(Default, Clone, Copy)]
struct LogTally {
    seccomp_denials: u64,
    lost: u64,
    loss_events: u64,
}

fn tally_log(path: &Path) -> Result<LogTally> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut t = LogTally::default();
    let mut ended = false;
    for line in text.lines() {
        // Most lines are denials: a substring test keeps 100,000 of them cheap.
        if line.contains(r#""type":"denial""#) {
            if line.contains(r#""source":"seccomp""#) {
                t.seccomp_denials += 1;
            }
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("bad log line {line:?}"))?;
        match v["type"].as_str() {
            Some("loss") => t.loss_events += v["count"].as_u64().unwrap_or(0),
            Some("session_end") => {
                t.lost = v["lost"].as_u64().context("session_end without lost")?;
                ended = true;
            }
            _ => {}
        }
    }
    if !ended {
        bail!("{} has no session_end", path.display());
    }
    Ok(t)
}

/// The cost of a blocked syscall when the seccomp supervisor answers it
/// (USER_NOTIF: `sbx monitor --no-tui --log`, `sbx run --log`) against the
/// plain ERRNO filter (`sbx run`), timed inside the sandbox by a C program;
/// then the sustained rate of the supervisor with several callers, and
/// whether events were dropped on the way to the log.
fn notify(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
    let work = root.join("target/bench/notify-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    std::fs::write(work.join("blocked_loop.c"), BLOCKED_LOOP_C)?;
    std::fs::write(work.join("notif_floor.c"), NOTIF_FLOOR_C)?;
    check(Command::new("cc").args(["-O2", "-o", "blocked_loop", "blocked_loop.c"]).current_dir(&work))?;
    check(Command::new("cc").args(["-O2", "-pthread", "-o", "notif_floor", "notif_floor.c"]).current_dir(&work))?;
    let runs = runs.clamp(5, 9);
    let os = |s: &str| OsString::from(s);
    let calls = NOTIFY_CALLS.to_string();
    let procs = NOTIFY_PROCS.to_string();
    let prog = |procs: &str| vec![os("--"), os("./blocked_loop"), os(&calls), os(procs)];
    let with = |prefix: Vec<OsString>, procs: &str| -> Vec<OsString> { prefix.into_iter().chain(prog(procs)).collect() };
    let log = |name: &str| work.join(name).into_os_string();
    // (subject, its log): the logs are removed before each run (sbx appends).
    let cases: Vec<(Subject, Option<OsString>)> = vec![
        (
            Subject::new("1 caller: sbx monitor --no-tui --log (USER_NOTIF)", with(vec![sbx.into(), os("monitor"), os("--no-tui"), os("--log"), log("monitor.jsonl")], "1")),
            Some(log("monitor.jsonl")),
        ),
        (
            Subject::new("1 caller: sbx run --log (USER_NOTIF)", with(vec![sbx.into(), os("run"), os("--log"), log("run.jsonl")], "1")),
            Some(log("run.jsonl")),
        ),
        (Subject::new("1 caller: sbx run (ERRNO)", with(vec![sbx.into(), os("run")], "1")), None),
        (
            Subject::new(format!("{procs} callers: sbx monitor --no-tui --log (USER_NOTIF)"), with(vec![sbx.into(), os("monitor"), os("--no-tui"), os("--log"), log("monitor-par.jsonl")], &procs)),
            Some(log("monitor-par.jsonl")),
        ),
        (Subject::new(format!("{procs} callers: sbx run (ERRNO)"), with(vec![sbx.into(), os("run")], &procs)), None),
        (Subject::new("1 caller: minimal C supervisor, no sandbox (USER_NOTIF floor)", vec![os("./notif_floor"), os(&calls)]), None),
    ];
    let cases: Vec<(Subject, Option<OsString>)> = cases.into_iter().map(|(s, l)| (s.in_dir(&work), l)).collect();

    // Samples: ms for all the calls of a run (the program's own clock), and
    // the allowed call's ns, and per notified case the log's tally.
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut allowed_ns = Vec::new();
    let mut tallies: Vec<Vec<LogTally>> = vec![Vec::new(); cases.len()];
    for round in 0..=runs {
        for (i, (subject, log)) in cases.iter().enumerate() {
            if let Some(log) = log {
                let _ = std::fs::remove_file(log);
            }
            let out = output_once(subject)?;
            let [per_call, allowed, eperm] = numbers(&out)?[..] else {
                bail!("{}: unexpected output {out:?}", subject.name);
            };
            // NOTIFY_CALLS is a multiple of NOTIFY_PROCS: every case makes them all.
            if eperm as u64 != NOTIFY_CALLS {
                bail!("{}: {eperm} of the calls failed with EPERM", subject.name);
            }
            if round == 0 {
                continue; // warm-up
            }
            ms[i].push(per_call * NOTIFY_CALLS as f64 / 1e6);
            if allowed > 0.0 {
                allowed_ns.push(allowed);
            }
            if let Some(log) = log {
                tallies[i].push(tally_log(Path::new(log))?);
            }
        }
    }
    for log in cases.iter().filter_map(|(_, l)| l.as_ref()) {
        let _ = std::fs::remove_file(log);
    }
    let contenders: Vec<Contender> = cases.iter().zip(ms).map(|((s, _), v)| contender(s, v)).collect();
    let ns = |i: usize| contenders[i].median_ms * 1e6 / NOTIFY_CALLS as f64;
    let mut figures = Vec::new();
    for (i, c) in contenders.iter().enumerate() {
        figures.push((format!("{}: ns per blocked call", c.name), ns(i)));
    }
    allowed_ns.sort_by(f64::total_cmp);
    figures.push(("allowed getppid(), for reference: ns per call".into(), percentile(&allowed_ns, 0.5)));
    figures.push(("1 caller: notified / errno ns per call (monitor)".into(), ns(0) / ns(2)));
    figures.push(("1 caller: notified / errno ns per call (run --log)".into(), ns(1) / ns(2)));
    figures.push(("1 caller: added us per blocked call (monitor - errno)".into(), (ns(0) - ns(2)) / 1e3));
    figures.push(("1 caller: supervisor calls/s (monitor)".into(), 1e9 / ns(0)));
    figures.push(("1 caller: sbx's supervisor over the USER_NOTIF floor, us per call (monitor - floor)".into(), (ns(0) - ns(5)) / 1e3));
    figures.push((format!("{procs} callers: supervisor calls/s (monitor, sustained)"), 1e9 / ns(3)));
    figures.push((format!("{procs} callers: errno calls/s"), 1e9 / ns(4)));
    let mut notes = Vec::new();
    for (i, (subject, _)) in cases.iter().enumerate() {
        let t = &tallies[i];
        if t.is_empty() {
            continue;
        }
        let expected = NOTIFY_CALLS * t.len() as u64;
        let logged: u64 = t.iter().map(|x| x.seccomp_denials).sum();
        let lost: u64 = t.iter().map(|x| x.lost).sum();
        let loss_events: u64 = t.iter().map(|x| x.loss_events).sum();
        let worst = t.iter().map(|x| x.lost).max().unwrap_or(0);
        figures.push((format!("{}: events lost per run (max)", subject.name), worst as f64));
        notes.push(format!(
            "{}: {} runs, {logged} of {expected} blocked calls logged as seccomp denials; session_end lost {lost} in total, loss events {loss_events}; unaccounted {}",
            subject.name,
            t.len(),
            expected.saturating_sub(logged + lost),
        ));
    }
    let ratios = [(0, 2), (1, 2), (3, 4), (0, 5)]
        .into_iter()
        .map(|(a, b)| Ratio {
            of: contenders[a].name.clone(),
            against: contenders[b].name.clone(),
            ratio: contenders[a].median_ms / contenders[b].median_ms,
            added_ms: contenders[a].median_ms - contenders[b].median_ms,
        })
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    Ok(Report { suite: "notify", runs, contenders, ratios, figures, notes })
}

/// The dashboard, in process: `tui::tests::bench_figures` in a release build,
/// at full size (`SBX_BENCH_FIGURES`), prints `figure NAME VALUE` lines: frames of a
/// full screen of the command's output through the emulator (zoomed at
/// 200x50, in the pane at 120x40), the emulator's throughput, the memory of
/// the 10,000 rows of scroll-back. Measured once: each figure is already an
/// average over many frames.
fn tui(cargo: &dyn Fn() -> Command) -> Result<Report> {
    let out = cargo()
        .args(["test", "--release", "--package", "sbx", "--lib", "--", "tui::tests::bench_figures", "--exact", "--nocapture", "--test-threads=1"])
        .env("SBX_BENCH_FIGURES", "1")
        .output()
        .context("running the dashboard's benchmark")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the dashboard's benchmark failed: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let mut figures = Vec::new();
    for line in stdout.lines() {
        // libtest may print its own "test ... " before the first line.
        let Some((_, rest)) = line.split_once("figure ") else { continue };
        let (name, value) = rest.split_once(' ').with_context(|| format!("a figure line without a value: {line}"))?;
        figures.push((name.to_string(), value.parse::<f64>().with_context(|| format!("not a number: {line}"))?));
    }
    if figures.is_empty() {
        bail!("the dashboard's benchmark printed no figure:\n{stdout}");
    }
    let frame = figures.iter().find(|(n, _)| n == "frame_zoomed_200x50_new_full_screen_ms").map(|(_, v)| *v);
    let notes = frame.map(|ms| format!("a full screen of new output, zoomed at 200x50, costs {ms:.2} ms a frame: {:.0}% of the 50 ms between two frames at 20 fps", ms / 50.0 * 100.0)).into_iter().collect();
    Ok(Report { suite: "tui", runs: 1, contenders: Vec::new(), ratios: Vec::new(), figures, notes })
}
