//! `sbx doctor`: what this host can enforce and observe. Each check has a
//! verdict and its reason, and when something is missing, the consequence
//! for sbx and the fix. The eBPF check proves itself by loading and attaching
//! the embedded probe programs, not by reading version numbers.

use std::{path::Path, process::Command};

use serde::Serialize;

use crate::{
    monitor::{ebpf, pins},
    sys,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was found, and how.
    pub detail: String,
    /// What a non-ok verdict means for sbx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consequence: Option<String>,
    /// How to make it ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, verdict: Verdict::Ok, detail: detail.into(), consequence: None, fix: None }
    }
    fn bad(name: &'static str, verdict: Verdict, detail: impl Into<String>, consequence: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, verdict, detail: detail.into(), consequence: Some(consequence.into()), fix: Some(fix.into()) }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    pub fn render_text(&self) -> String {
        let mut out = String::from("sbx doctor: what this host can enforce and observe\n");
        for c in &self.checks {
            let mark = match c.verdict {
                Verdict::Ok => "ok  ",
                Verdict::Warn => "WARN",
                Verdict::Fail => "FAIL",
            };
            out.push_str(&format!("  {mark}  {:<22} {}\n", c.name, c.detail));
            if let Some(consequence) = &c.consequence {
                out.push_str(&format!("        {:<22} -> {consequence}\n", ""));
            }
            if let Some(fix) = &c.fix {
                out.push_str(&format!("        {:<22}    fix: {fix}\n", ""));
            }
        }
        out
    }
}

pub fn run() -> Report {
    let privileged = is_privileged();
    let mut checks = vec![privileges(privileged)];
    let (bwrap, trusted) = bwrap_version();
    let have_bwrap = trusted.filter(|_| bwrap.verdict == Verdict::Ok);
    checks.push(bwrap);
    for (name, flag, consequence) in [
        ("user namespace", "--unshare-user", "unprivileged users cannot run sandboxes (bwrap is not setuid)"),
        ("pid namespace", "--unshare-pid", "host processes would be visible to the command"),
        ("net namespace", "--unshare-net", "the network cannot be confined to the proxy"),
    ] {
        checks.push(namespace(name, flag, consequence, have_bwrap.as_deref()));
    }
    checks.push(landlock());
    checks.push(seccomp());
    // Where no namespace can be made: whether --no-namespaces can confine the command.
    if crate::launch::namespaces_refused().is_some() {
        checks.push(no_namespaces());
    }
    checks.push(btf());
    checks.push(tracefs());
    checks.push(cgroup2());
    checks.push(limits());
    checks.extend(ebpf_attach(privileged));
    if privileged {
        checks.push(tracer_pins());
    }
    checks.push(unprivileged_userns());
    Report { checks }
}

/// Root of the host (uid 0 in the initial user namespace): what `run` needs for the kernel
/// tracer and the session's cgroups. Capabilities alone (setcap) are not enough: the
/// session's cgroup is made under the hierarchy's top, which only root may write.
fn is_privileged() -> bool {
    nix::unistd::geteuid().is_root() && sys::confinement().initial_userns
}

fn privileges(privileged: bool) -> Check {
    let name = "privileges";
    let uid = nix::unistd::geteuid();
    if privileged {
        Check::ok(name, "running as root")
    } else {
        let detail = if uid.is_root() { "uid 0 in a user namespace of its own, not the host's root".to_string() } else { format!("uid {uid}, not root") };
        Check::bad(
            name,
            Verdict::Warn,
            detail,
            "monitoring unavailable: the kernel tracer needs root (sandboxes still run; file denials are not observed)",
            "on the host, run `sudo sbx monitor -- CMD`: the command still runs as you, only sbx is root",
        )
    }
}

/// The bubblewrap `sbx run` executes (never one from `$PATH`), why it is trusted, and its version.
fn bwrap_version() -> (Check, Option<std::path::PathBuf>) {
    let name = "bubblewrap";
    let trusted = match crate::launch::trust::find_bwrap() {
        Ok(t) => t,
        Err(rejected) => {
            let why: Vec<String> = rejected.iter().map(|r| r.why.clone()).collect();
            let check = Check::bad(
                name,
                Verdict::Fail,
                format!("no bwrap that only root can change: {}", why.join("; ")),
                "sbx run cannot start sandboxes (a bwrap found through $PATH is never used)",
                "apt-get install bubblewrap",
            );
            return (check, None);
        }
    };
    let path = &trusted.path;
    let check = match Command::new(path).arg("--version").output() {
        Ok(out) if out.status.success() => Check::ok(name, format!("{}, {}", String::from_utf8_lossy(&out.stdout).trim(), trusted.why)),
        Ok(out) => Check::bad(
            name,
            Verdict::Fail,
            format!("`{} --version` failed: {}", path.display(), String::from_utf8_lossy(&out.stderr).trim()),
            "sbx run cannot start sandboxes",
            "reinstall bubblewrap: apt-get install --reinstall bubblewrap",
        ),
        Err(e) => Check::bad(name, Verdict::Fail, format!("cannot run {}: {e}", path.display()), "sbx run cannot start sandboxes", "apt-get install bubblewrap"),
    };
    (check, Some(trusted.path))
}

fn namespace(name: &'static str, flag: &str, consequence: &str, bwrap: Option<&Path>) -> Check {
    let Some(bwrap) = bwrap else {
        let fix = crate::launch::namespaces_refused().unwrap_or_else(|| "apt-get install bubblewrap".into());
        return Check::bad(name, Verdict::Fail, "not checked: no bubblewrap that only root can change", consequence, fix);
    };
    // As `run` asks for it: always inside a user namespace of the sandbox's own (a pid or
    // net namespace alone needs CAP_SYS_ADMIN, which containers drop).
    let mut args = vec!["--ro-bind", "/", "/", "--unshare-user"];
    if flag != "--unshare-user" {
        args.push(flag);
    }
    let shown = args[3..].join(" ");
    let out = Command::new(bwrap).args(&args).args(["--", "/bin/true"]).output();
    match out {
        Ok(out) if out.status.success() => Check::ok(name, format!("`bwrap {shown}` works")),
        Ok(out) => Check::bad(
            name,
            Verdict::Fail,
            format!("`bwrap {shown}` failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            consequence,
            crate::launch::namespaces_refused().unwrap_or_else(|| {
                "allow user namespaces (sysctl kernel.unprivileged_userns_clone=1; on Ubuntu 24.04, kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for bwrap)".into()
            }),
        ),
        Err(e) => Check::bad(name, Verdict::Fail, format!("cannot run bwrap: {e}"), consequence, "apt-get install bubblewrap"),
    }
}

/// `--no-namespaces`, where namespaces are refused: Landlock and seccomp alone (what it does
/// not enforce is `launch::direct::not_enforced`, said by `run` at start).
fn no_namespaces() -> Check {
    let name = "no-namespaces mode";
    match sys::landlock_abi() {
        0 => Check::bad(name, Verdict::Fail, "no Landlock: --no-namespaces would leave the filesystem to file permissions", "sbx cannot confine a command here", "run sbx where namespaces or Landlock work"),
        abi => Check::bad(
            name,
            Verdict::Warn,
            format!("`sbx run --no-namespaces` confines with Landlock ABI {abi} and seccomp alone"),
            "no pid, ipc or mount isolation, no private /tmp, no network but none or unfiltered; protected files are restored at exit, not read-only (sbx run says all of it at start)",
            "run sbx outside this sandbox or container for the full sandbox",
        ),
    }
}

fn landlock() -> Check {
    let name = "landlock";
    let abi = sys::landlock_abi();
    let fix = "boot a kernel with CONFIG_SECURITY_LANDLOCK=y and landlock in the lsm= list (Linux 6.15+ for ABI 7)";
    match abi {
        0 => Check::bad(name, Verdict::Fail, "not available", "filesystem rules rest on bubblewrap's mounts alone", fix),
        1..=6 => Check::bad(
            name,
            Verdict::Warn,
            format!("ABI {abi}"),
            match abi {
                1..=3 => "no TCP port rules, no signal/abstract-socket scoping, no audit records",
                4..=5 => "no signal/abstract-socket scoping, no audit records",
                _ => "no Landlock audit records",
            },
            fix,
        ),
        _ => Check::ok(name, format!("ABI {abi} (filesystem, TCP ports, scoping, audit)")),
    }
}

fn seccomp() -> Check {
    let name = "seccomp";
    match std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail") {
        Ok(actions) => {
            let actions = actions.trim();
            if actions.split_whitespace().any(|a| a == "user_notif") {
                Check::ok(name, format!("filter mode; actions: {actions} (user_notif available)"))
            } else {
                Check::bad(
                    name,
                    Verdict::Warn,
                    format!("actions: {actions}"),
                    "blocked syscalls fail with EPERM but cannot be reported with their arguments",
                    "use Linux 5.0 or newer (seccomp user notification)",
                )
            }
        }
        Err(e) => Check::bad(
            name,
            Verdict::Fail,
            format!("cannot read /proc/sys/kernel/seccomp/actions_avail: {e}"),
            "no syscall filter can be installed",
            "boot a kernel with CONFIG_SECCOMP_FILTER=y",
        ),
    }
}

fn btf() -> Check {
    let name = "btf";
    let path = Path::new("/sys/kernel/btf/vmlinux");
    match std::fs::metadata(path) {
        Ok(m) => Check::ok(name, format!("{} ({} KiB)", path.display(), m.len() / 1024)),
        Err(_) => Check::bad(
            name,
            Verdict::Fail,
            format!("{} is missing", path.display()),
            "monitoring unavailable: tp_btf and fexit programs need the kernel's BTF",
            "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ),
    }
}

fn tracefs() -> Check {
    let name = "tracefs";
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        Check::ok(name, "mounted at /sys/kernel/tracing")
    } else {
        Check::bad(
            name,
            Verdict::Warn,
            "not mounted at /sys/kernel/tracing",
            "sbx's tracer does not need it (tp_btf and fexit attach through BTF), but tracepoint-based tools do",
            "mount -t tracefs tracefs /sys/kernel/tracing",
        )
    }
}

fn cgroup2() -> Check {
    let name = "cgroup2";
    match crate::cgroup::cgroup2_mount() {
        Ok(dir) => Check::ok(name, format!("mounted at {} (the tracer scopes each session to a cgroup of its own)", dir.display())),
        Err(_) => Check::bad(
            name,
            Verdict::Fail,
            "no cgroup2 filesystem is mounted",
            "monitoring unavailable: the tracer follows the sandbox's processes by their cgroup",
            "mount -t cgroup2 none /sys/fs/cgroup (or /sys/fs/cgroup/unified on hybrid hosts)",
        ),
    }
}

/// Which resource limits this host can enforce for this user: a trial cgroup with every
/// limit, removed at once. /tmp's size and the timeout need no cgroup.
fn limits() -> Check {
    let name = "limits";
    let always = "limits.tmpSize and limits.timeout are enforced everywhere, limits.pids as RLIMIT_NPROC in the sandbox's user namespace where no cgroup holds it";
    let unenforced = crate::cgroup::probe();
    if unenforced.is_empty() {
        return Check::ok(name, format!("limits.memory, limits.pids and limits.cpu are enforced in the session's cgroup; {always}"));
    }
    let names: Vec<String> = unenforced.iter().map(|(k, _)| k.to_string()).collect();
    let why = unenforced.first().map(|(_, w)| w.clone()).unwrap_or_default();
    Check::bad(
        name,
        Verdict::Warn,
        format!("{} cannot be enforced: {why}; {always}", names.join(", ")),
        "a fork bomb or a memory hog in the sandbox is bounded only by the host's own limits",
        "run sbx as root, or from a systemd user session with cgroup v2 delegation (systemd-run --user --scope)",
    )
}

fn ebpf_attach(privileged: bool) -> Vec<Check> {
    let name = "ebpf load+attach";
    if !privileged {
        return vec![Check::bad(
            name,
            Verdict::Fail,
            "not tried: the kernel tracer needs the host's root",
            "monitoring unavailable: not root",
            "run `sudo sbx doctor` on the host",
        )];
    }
    match ebpf::probe_attach() {
        Ok(p) if p.fork_hits > 0 => {
            let fexit = match &p.fexit {
                Ok(hits) if *hits > 0 => Check::ok("ebpf fexit", format!("fexit/security_file_open loaded, attached and fired ({hits} hits)")),
                Ok(_) => Check::bad(
                    "ebpf fexit",
                    Verdict::Warn,
                    "fexit/security_file_open attached but did not fire",
                    "paths of denied opens come from the syscall's own argument",
                    "none needed; the tracer uses tp_btf",
                ),
                Err(e) => Check::bad(
                    "ebpf fexit",
                    Verdict::Warn,
                    e.to_string(),
                    "this kernel refuses trampoline programs (fentry/fexit/BPF LSM); paths of denied opens come from the syscall's own argument",
                    "none needed; the tracer uses tp_btf",
                ),
            };
            vec![
                Check::ok(
                    name,
                    format!(
                        "tp_btf/sched_process_fork loaded, attached, fired ({} hits) and detached in {} ms",
                        p.fork_hits,
                        p.elapsed.as_millis()
                    ),
                ),
                fexit,
            ]
        }
        Ok(p) => vec![Check::bad(
            name,
            Verdict::Fail,
            format!("attached, but the tp_btf probe did not fire ({} hits)", p.fork_hits),
            "monitoring unavailable: the kernel does not run sbx's programs",
            "report this with the output of `sbx doctor --json` and `uname -a`",
        )],
        Err(e) => vec![Check::bad(
            name,
            Verdict::Fail,
            e.to_string(),
            "monitoring unavailable: the tracer cannot run on this kernel",
            "use a kernel with BTF and tp_btf (Linux 5.5+), and kernel.unprivileged_bpf_disabled not blocking root",
        )],
    }
}

/// The tracer's programs, loaded once and pinned by the first monitored session
/// (`monitor::pins`): whether they are, for this sbx and kernel, and how many sessions use
/// them now.
fn tracer_pins() -> Check {
    let name = "tracer pins";
    let s = pins::status();
    let dir = format!("{}/{}", pins::PIN_ROOT, s.key);
    let others = if s.others.is_empty() {
        String::new()
    } else {
        format!("; {} other version{} pinned (removed at the next load): {}", s.others.len(), if s.others.len() == 1 { "" } else { "s" }, s.others.join(", "))
    };
    if s.root == Some(false) {
        return Check::bad(
            name,
            Verdict::Fail,
            format!("{} is not a directory of root's with mode 0700", pins::PIN_ROOT),
            "monitoring unavailable: the tracer refuses pins others could have placed or can reach",
            format!("remove {} (rm -r); the next monitored session recreates it", pins::PIN_ROOT),
        );
    }
    match s.loaded {
        Some(l) => {
            let ids: Vec<String> = l.program_ids.iter().map(u32::to_string).collect();
            let attached = match l.sessions {
                0 => "no session running, so nothing is attached (the host pays nothing)".to_string(),
                1 => "1 session running, attached for it".to_string(),
                n => format!("{n} sessions running, each attached through links of its own"),
            };
            let rings = format!("{} ring buffer{} kept for reuse ({} KiB)", l.rings, if l.rings == 1 { "" } else { "s" }, l.ring_bytes / 1024);
            Check::ok(name, format!("loaded and pinned at {dir} (program ids {}); {attached}; {rings}{others}", ids.join(", ")))
        }
        None if !s.bpffs => Check::ok(name, format!("not loaded since boot (bpffs is not mounted at {}: the first monitored session mounts it and pins the programs at {dir}){others}", pins::BPFFS)),
        None => Check::ok(name, format!("not loaded for this sbx and kernel: the first monitored session loads and pins them at {dir}{others}")),
    }
}

fn unprivileged_userns() -> Check {
    let name = "unprivileged userns";
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Check::bad(
            name,
            Verdict::Warn,
            "kernel.unprivileged_userns_clone=0",
            "users other than root cannot run sandboxes",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        );
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Check::bad(
            name,
            Verdict::Warn,
            "kernel.apparmor_restrict_unprivileged_userns=1 (Ubuntu 24.04's default)",
            "users other than root cannot run sandboxes unless bwrap has an AppArmor profile",
            "add an AppArmor profile for /usr/bin/bwrap with `userns,` or sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        );
    }
    let max = read("/proc/sys/user/max_user_namespaces").unwrap_or_else(|| "?".into());
    if max == "0" {
        return Check::bad(name, Verdict::Warn, "user.max_user_namespaces=0", "nobody can create user namespaces", "sysctl -w user.max_user_namespaces=15000");
    }
    // The settings allow them; whether this process may is tried (a container's seccomp
    // profile, or a sandbox around sbx, refuses them whatever the settings say).
    if let Err(e) = sys::try_userns() {
        return Check::bad(
            name,
            Verdict::Fail,
            format!("unshare(CLONE_NEWUSER) fails here: {}", e.desc()),
            "sbx cannot start sandboxes here",
            crate::launch::namespaces_refused().unwrap_or_else(|| "run sbx on the host, outside any sandbox or container".into()),
        );
    }
    Check::ok(name, format!("allowed, and this process may create one (user.max_user_namespaces={max})"))
}
