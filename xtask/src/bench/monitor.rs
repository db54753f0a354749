//! The kernel tracer's suite (`monitor`: a stat loop, `git status`, a C build, start-up, a
//! burst of denials) and command rules' (`commands`), on one prepared work directory.

use super::*;

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
/// The host's cost of the tracer outside any session: nanoseconds per getppid(2), the
/// cheapest syscall, over 2,000,000 calls.
const GETPPID_LOOP_C: &str = r#"#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < 2000000; i++) syscall(SYS_getppid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / 2e6);
    return 0;
}
"#;
const DENIAL_BURST_C: &str = r#"#include <fcntl.h>
int main(void) {
    for (int i = 0; i < 200000; i++) open("/etc/sbx-bench-denied", O_WRONLY | O_CREAT, 0644);
    return 0;
}
"#;

/// A work directory with the workloads: the C programs and a git
/// repository of 10,000 files for `git status`.
fn monitor_workdir(root: &Path) -> Result<std::path::PathBuf> {
    let dir = root.join("target/bench/monitor-work");
    if dir.join(".ready-v3").exists() {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("repo"))?;
    std::fs::write(dir.join("stat_loop.c"), STAT_LOOP_C)?;
    std::fs::write(dir.join("denial_burst.c"), DENIAL_BURST_C)?;
    std::fs::write(dir.join("getppid_loop.c"), GETPPID_LOOP_C)?;
    for prog in ["stat_loop", "denial_burst", "getppid_loop"] {
        check(Command::new("cc").args(["-O2", "-o", prog, &format!("{prog}.c")]).current_dir(&dir))?;
    }
    let repo = dir.join("repo");
    for d in 0..100 {
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
    std::fs::write(dir.join(".ready-v3"), "")?;
    Ok(dir)
}

/// The kernel tracer side by side with what a user would reach for:
/// `sbx run` (no tracer), `sbx monitor --no-tui`, `strace -f -e
/// status=failed` and the bare command; then fence's approach (bpftrace on
/// sys_exit tracepoints), which slows every process on the host while
/// attached and so runs in a phase of its own; then monitor start-up and
/// the tracer's denial throughput.
pub(super) fn monitor(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
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

    // The host's cost outside any session: nothing pinned, the pinned tracer idle (no
    // session), and while a session runs elsewhere (attached), interleaved round by round.
    let loop_ns = || -> Result<f64> {
        let out = Command::new(work.join("getppid_loop")).output()?;
        String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().context("getppid_loop's output")
    };
    let (mut none, mut idle, mut attached, mut first) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        unpin_tracer();
        none.push(loop_ns()?);
        // The first monitored session after boot (or a new sbx): it loads and pins.
        let started = Instant::now();
        check(Command::new(sbx).args(["monitor", "--no-tui", "--", "true"]).stderr(Stdio::null()))?;
        first.push(started.elapsed().as_secs_f64() * 1e3);
        idle.push(loop_ns()?);
        let mut session = Command::new(sbx)
            .args(["monitor", "--no-tui", "--", "sh", "-c", "echo ready; sleep 30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(session.stdout.take().context("session stdout")?), &mut line)?;
        attached.push(loop_ns()?);
        // SIGTERM: sbx stops the sandbox and ends the session.
        let _ = Command::new("kill").arg(session.id().to_string()).status();
        let _ = session.wait();
    }
    for v in [&mut none, &mut idle, &mut attached, &mut first] {
        v.sort_by(f64::total_cmp);
    }
    figures.push(("true: sbx monitor --no-tui, first session (loads and pins) median ms".into(), percentile(&first, 0.5)));
    let (none, idle, attached) = (percentile(&none, 0.5), percentile(&idle, 0.5), percentile(&attached, 0.5));
    figures.push(("getppid outside sessions: ns per call, no tracer pinned".into(), none));
    figures.push(("getppid outside sessions: ns per call, pinned tracer idle (no session)".into(), idle));
    figures.push(("getppid outside sessions: ns per call, while a session runs (attached)".into(), attached));
    figures.push(("getppid outside sessions: idle pinned / nothing pinned".into(), idle / none));
    figures.push(("getppid outside sessions: attached / nothing pinned".into(), attached / none));

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

/// Removes sbx's pinned tracer programs (the next monitored session loads them again).
fn unpin_tracer() {
    let Ok(dirs) = std::fs::read_dir("/sys/fs/bpf/sbx") else { return };
    for dir in dirs.flatten() {
        if let Ok(pins) = std::fs::read_dir(dir.path()) {
            for pin in pins.flatten() {
                let _ = std::fs::remove_file(pin.path());
            }
        }
        let _ = std::fs::remove_dir(dir.path());
    }
}

/// Command rules (`command.deny`), which make every exec a round trip to the supervisor:
/// the C build and a loop of 500 execs of `true`, each under `sbx run` with rules and
/// without, interleaved; the cost per exec is the loop's difference over 500.
pub(super) fn commands(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
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
