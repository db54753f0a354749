//! Resource limits of a sandbox, as vocabulary: the settings of the policy file's `limits`
//! section and of the `--memory`, `--pids`, `--cpu`, `--tmp-size` and `--timeout` flags,
//! their parsing, their defaults and how they are shown. Pure: `cgroup` enforces memory,
//! pids and cpu, `launch::plan` sizes the tmpfs mounts, `session` keeps the timeout.
//!
//! Defaults, chosen so that an agent's build is never the thing that is stopped while a
//! runaway one is:
//!
//! * `memory`: half of the host's RAM. A large build (rustc, a linker, a bundler) peaks at a
//!   few GiB; the host keeps the other half. The sandbox's tmpfs pages (`/tmp`, `/dev/shm`)
//!   count against it, and swap is off for the sandbox (`memory.swap.max` 0), so the bound
//!   is real memory.
//! * `pids`: 4096 tasks (processes and threads). `make -j`, cargo and test runners use a
//!   few hundred; a fork bomb is stopped within a second. Without a cgroup for it (an
//!   unprivileged user without delegation) it is the command's `RLIMIT_NPROC`, which the
//!   kernel counts per user namespace (Linux 5.14+), so it bounds the sandbox's tasks only.
//! * `cpu`: unlimited. Builds should use every core; a CPU hog harms nothing the kernel's
//!   scheduler does not already share.
//! * `tmpSize`: 2 GiB each for `/tmp` and `/dev/shm`: the only memory bound on those when
//!   no cgroup can be had (an unprivileged user without delegation).
//! * `timeout`: none. An agent's session runs as long as the person watching it wants.

use std::fmt;
use std::time::Duration;

/// A limit as written: off, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting<T> {
    Off,
    Value(T),
}

impl<T: Copy> Setting<T> {
    pub fn value(self) -> Option<T> {
        match self {
            Setting::Off => None,
            Setting::Value(v) => Some(v),
        }
    }
}

/// The `limits` section of a policy file: each key unset (the default applies), `"off"`, or
/// a value. A file later in the `extends` chain overrides the keys it sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Bytes.
    pub memory: Option<Setting<u64>>,
    /// Tasks.
    pub pids: Option<Setting<u64>>,
    /// Thousandths of a CPU.
    pub cpu: Option<Setting<u32>>,
    /// Bytes, for `/tmp` and for `/dev/shm`.
    pub tmp_size: Option<Setting<u64>>,
    pub timeout: Option<Setting<Duration>>,
}

impl LimitsConfig {
    /// `child`'s keys over `self`'s.
    pub fn merge_from(&mut self, child: &LimitsConfig) {
        self.memory = child.memory.or(self.memory);
        self.pids = child.pids.or(self.pids);
        self.cpu = child.cpu.or(self.cpu);
        self.tmp_size = child.tmp_size.or(self.tmp_size);
        self.timeout = child.timeout.or(self.timeout);
    }

    /// `sbx config show`: each key set, as it would be written.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        fn show<T: Copy>(s: Option<Setting<T>>, f: impl Fn(T) -> String) -> Option<String> {
            s.map(|s| s.value().map_or_else(|| "off".to_string(), f))
        }
        [
            ("memory", show(self.memory, format_size)),
            ("pids", show(self.pids, |v| v.to_string())),
            ("cpu", show(self.cpu, format_cpu)),
            ("tmpSize", show(self.tmp_size, format_size)),
            ("timeout", show(self.timeout, |d| humantime::format_duration(d).to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// The limits in force for one session, defaults applied; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu: Option<u32>,
    pub tmp_size: Option<u64>,
    pub timeout: Option<Duration>,
}

/// The default `pids`.
pub const DEFAULT_PIDS: u64 = 4096;
/// The default `tmpSize`.
pub const DEFAULT_TMP_SIZE: u64 = 2 << 30;
/// After the timeout's SIGTERM, how long the command has before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// The exit status of a command stopped by the timeout, as `timeout(1)`.
pub const EXIT_TIMEOUT: u8 = 124;

impl Limits {
    /// The configured limits, with the defaults for keys that are not set; `mem_total` is the
    /// host's RAM in bytes (no memory default when unknown).
    pub fn resolve(config: &LimitsConfig, mem_total: Option<u64>) -> Limits {
        let pick = |s: Option<Setting<u64>>, default: Option<u64>| match s {
            None => default,
            Some(s) => s.value(),
        };
        Limits {
            memory: pick(config.memory, mem_total.map(|m| m / 2)),
            pids: pick(config.pids, Some(DEFAULT_PIDS)),
            cpu: config.cpu.and_then(Setting::value),
            tmp_size: pick(config.tmp_size, Some(DEFAULT_TMP_SIZE)),
            timeout: config.timeout.and_then(Setting::value),
        }
    }
}

/// Which limit, for events and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Memory,
    Pids,
    Cpu,
    TmpSize,
    Timeout,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Memory, Kind::Pids, Kind::Cpu, Kind::TmpSize, Kind::Timeout];

    /// The key under `limits` in the policy file.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Memory => "memory",
            Kind::Pids => "pids",
            Kind::Cpu => "cpu",
            Kind::TmpSize => "tmpSize",
            Kind::Timeout => "timeout",
        }
    }

    /// The flag that sets it.
    pub fn flag(self) -> &'static str {
        match self {
            Kind::Memory => "--memory",
            Kind::Pids => "--pids",
            Kind::Cpu => "--cpu",
            Kind::TmpSize => "--tmp-size",
            Kind::Timeout => "--timeout",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "limits.{}", self.key())
    }
}

/// Whether a value means "no limit".
fn is_off(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "off" | "none" | "unlimited" | "max")
}

/// A size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024; `KiB`, `MB`... are
/// read the same), or `off`.
pub fn parse_size(s: &str) -> Result<Setting<u64>, String> {
    if is_off(s) {
        return Ok(Setting::Off);
    }
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?} is not a size (a number of bytes, or with K, M, G or T, e.g. \"512M\"; or \"off\")")),
    };
    let value: f64 = number.parse().map_err(|_| format!("{s:?} is not a size (e.g. \"512M\", \"4G\" or \"off\")"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("{s:?} is not a size greater than zero"));
    }
    let bytes = bytes as u64;
    // Below a page nothing can run; say so rather than fail obscurely.
    if bytes < 1 << 20 {
        return Err(format!("{s:?} is less than 1M, too little for any program"));
    }
    Ok(Setting::Value(bytes))
}

/// A count of tasks, or `off`.
pub fn parse_count(s: &str) -> Result<Setting<u64>, String> {
    if is_off(s) {
        return Ok(Setting::Off);
    }
    match s.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Setting::Value(n)),
        _ => Err(format!("{s:?} is not a number of processes (1 or more, or \"off\")")),
    }
}

/// CPUs: `1.5` (cores), `150%`, or `off`; as thousandths of a CPU.
pub fn parse_cpu(s: &str) -> Result<Setting<u32>, String> {
    if is_off(s) {
        return Ok(Setting::Off);
    }
    let t = s.trim();
    let (number, scale) = match t.strip_suffix('%') {
        Some(n) => (n, 10.0),
        None => (t, 1000.0),
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v * scale >= 10.0 && v * scale <= 1_000_000.0 => Ok(Setting::Value((v * scale).round() as u32)),
        _ => Err(format!("{s:?} is not a CPU share (cores such as \"1.5\", a percentage such as \"150%\", at least 1%; or \"off\")")),
    }
}

/// A duration: `90s`, `10m`, `1h 30m`, a number of seconds, or `off`.
pub fn parse_duration(s: &str) -> Result<Setting<Duration>, String> {
    if is_off(s) {
        return Ok(Setting::Off);
    }
    let t = s.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(t).map_err(|_| format!("{s:?} is not a duration (e.g. \"90s\", \"10m\", \"1h\"; or \"off\")"))?,
    };
    if d.is_zero() {
        return Err(format!("{s:?} is not a duration greater than zero"));
    }
    Ok(Setting::Value(d))
}

/// `64 MiB`, `2 GiB`, `1536 KiB`: the largest unit that shows the size exactly, else one
/// decimal.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        let scale = 1u64 << shift;
        if bytes >= scale {
            return if bytes.is_multiple_of(scale) { format!("{} {unit}", bytes / scale) } else { format!("{:.1} {unit}", bytes as f64 / scale as f64) };
        }
    }
    format!("{bytes} B")
}

/// `1.5 CPUs`, `1 CPU`, `0.25 CPUs`.
pub fn format_cpu(millis: u32) -> String {
    let cores = f64::from(millis) / 1000.0;
    if millis == 1000 { "1 CPU".to_string() } else { format!("{} CPUs", (cores * 1000.0).round() / 1000.0) }
}

/// A limit's value as shown to people.
pub fn format_value(kind: Kind, limits: &Limits) -> Option<String> {
    Some(match kind {
        Kind::Memory => format_size(limits.memory?),
        Kind::Pids => limits.pids?.to_string(),
        Kind::Cpu => format_cpu(limits.cpu?),
        Kind::TmpSize => format_size(limits.tmp_size?),
        Kind::Timeout => humantime::format_duration(limits.timeout?).to_string(),
    })
}

/// The host's RAM in bytes, from `/proc/meminfo`.
pub fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_show() {
        assert_eq!(parse_size("512M"), Ok(Setting::Value(512 << 20)));
        assert_eq!(parse_size("4G"), Ok(Setting::Value(4 << 30)));
        assert_eq!(parse_size("1.5GiB"), Ok(Setting::Value(3 << 29)));
        assert_eq!(parse_size("64mb"), Ok(Setting::Value(64 << 20)));
        assert_eq!(parse_size("2097152"), Ok(Setting::Value(2 << 20)));
        assert_eq!(parse_size("off"), Ok(Setting::Off));
        assert_eq!(parse_size(" unlimited "), Ok(Setting::Off));
        assert!(parse_size("12X").unwrap_err().contains("not a size"));
        assert!(parse_size("100K").unwrap_err().contains("less than 1M"));
        assert!(parse_size("0").is_err());
        assert!(parse_size("-1G").is_err());
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(512), "512 B");
    }

    #[test]
    fn counts_cpus_and_durations_parse() {
        assert_eq!(parse_count("4096"), Ok(Setting::Value(4096)));
        assert_eq!(parse_count("off"), Ok(Setting::Off));
        assert!(parse_count("0").is_err());
        assert!(parse_count("many").is_err());
        assert_eq!(parse_cpu("1.5"), Ok(Setting::Value(1500)));
        assert_eq!(parse_cpu("50%"), Ok(Setting::Value(500)));
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("0.001").is_err());
        assert_eq!(format_cpu(1500), "1.5 CPUs");
        assert_eq!(format_cpu(1000), "1 CPU");
        assert_eq!(parse_duration("90s"), Ok(Setting::Value(Duration::from_secs(90))));
        assert_eq!(parse_duration("1h 30m"), Ok(Setting::Value(Duration::from_secs(5400))));
        assert_eq!(parse_duration("10"), Ok(Setting::Value(Duration::from_secs(10))));
        assert_eq!(parse_duration("500ms"), Ok(Setting::Value(Duration::from_millis(500))));
        assert_eq!(parse_duration("off"), Ok(Setting::Off));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn defaults_apply_to_unset_keys_only() {
        let none = Limits::resolve(&LimitsConfig::default(), Some(24 << 30));
        assert_eq!(none, Limits { memory: Some(12 << 30), pids: Some(DEFAULT_PIDS), cpu: None, tmp_size: Some(DEFAULT_TMP_SIZE), timeout: None });
        let cfg = LimitsConfig { memory: Some(Setting::Off), pids: Some(Setting::Value(64)), timeout: Some(Setting::Value(Duration::from_secs(5))), ..LimitsConfig::default() };
        let l = Limits::resolve(&cfg, Some(24 << 30));
        assert_eq!((l.memory, l.pids, l.timeout), (None, Some(64), Some(Duration::from_secs(5))));
        let mut base = cfg;
        base.merge_from(&LimitsConfig { pids: Some(Setting::Off), ..LimitsConfig::default() });
        assert_eq!((base.pids, base.memory), (Some(Setting::Off), Some(Setting::Off)));
        assert_eq!(base.entries(), [("memory", "off".to_string()), ("pids", "off".to_string()), ("timeout", "5s".to_string())]);
    }
}
