//! The seccomp supervisor's suite: blocked calls reported through user notification
//! against the bare ERRNO filter.

use super::*;

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
pub(super) fn notify(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
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
