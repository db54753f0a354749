//! Turns observed denials into proposed policy changes: `sbx policy suggest`
//! reads them from an audit log, `sbx learn` from its own run.
//!
//! Each denial is first classified against the current policy (what would
//! answer it, or why nothing may), then the answers are generalised and
//! merged into [`Proposal`]s:
//!
//! * Paths: files under the home directory collapse into the directory that
//!   owns them (`~/.npm`, `~/.cache/pip`, `~/.local/share/x`), files created
//!   elsewhere into their directory when several share it; paths are written
//!   as `~/...` under the home directory and relative under the workspace.
//! * Names: three or more subdomains of one domain become `*.domain`
//!   (flagged); a port other than 80 and 443 is kept as `name:port`.
//! * Risky proposals are flagged and held back unless accepted: credentials
//!   (`~/.ssh`, `~/.aws`, `.env` files, keys, ...), writes outside the
//!   workspace, system paths, wildcard names, IP addresses, and removing an
//!   explicit deny rule.
//! * The seccomp deny list and the mandatory protections are never proposed
//!   without `include_protected`, and then only where a policy key exists
//!   (`allowGitConfig`, `allowAllUnixSockets`); the rest is reported as
//!   unanswerable, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::report::wire::Line;

use crate::config::{Config, edit::Change};
use crate::policy::{PROTECTED_DIRS, PROTECTED_FILES, Policy};
use crate::proxy::rules::{Host, NO_RULE, Rules};

/// One denial read from a log (or observed by `learn`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// 1-based line in the log (0 when not from a log).
    pub line: usize,
    pub source: String,
    pub syscall: Option<String>,
    pub operation: Option<String>,
    pub errno: Option<String>,
    pub path: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub comm: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub call: Option<String>,
    pub domain: Option<String>,
}

/// What an audit log holds for suggestions.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub denials: Vec<Observed>,
    /// The last session's workspace and home.
    pub workspace: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub sessions: usize,
    /// The `seq` the next event appended to the log gets.
    pub next_seq: u64,
}

/// Whether a log must pass `sbx log verify` before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A log that fails verification is refused.
    Verified,
    /// `--unverified`: read it anyway; every proposal is then held as risky.
    Unverified,
}

/// The risk note every proposal from an unverified log carries.
pub const UNVERIFIED_RISK: &str = "from a log that was not verified (--unverified): the sandboxed command could have written it";

/// Reads an sbx audit log (JSON Lines, schema v1), checking its seal unless
/// `trust` is `Unverified`. Returns whether it verified.
pub fn read_log(path: &Path, trust: Trust) -> anyhow::Result<(Recorded, bool)> {
    let text = crate::fsio::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read the log: {e}"))?;
    let verified = match crate::seal::keys_dir().map_err(|e| e.to_string()).and_then(|keys| crate::seal::verify(&text, &keys).map_err(|e| e.to_string())) {
        Ok(_) => true,
        Err(why) if trust == Trust::Unverified => {
            eprintln!("sbx: warning: the log {} fails verification ({}); read anyway (--unverified), every proposal is held as risky", crate::termtext::path(path), crate::termtext::escape(&why));
            false
        }
        Err(why) => {
            anyhow::bail!(
                "the log {} fails verification: {}; it may have been edited by a sandboxed command, so it is not used (`sbx log verify` checks it; --unverified reads it anyway, with every proposal held as risky)",
                crate::termtext::path(path),
                crate::termtext::escape(&why)
            )
        }
    };
    Ok((parse_log(&text, path)?, verified))
}

/// Holds every proposal as risky (a log that was not verified).
pub fn distrust(s: &mut Suggestions) {
    for p in &mut s.proposals {
        if !p.risk.iter().any(|r| r == UNVERIFIED_RISK) {
            p.risk.push(UNVERIFIED_RISK.to_string());
        }
        p.hold = true;
    }
}

/// Parses the text of an audit log; `path` names it in errors.
pub fn parse_log(text: &str, path: &Path) -> anyhow::Result<Recorded> {
    let mut out = Recorded::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let read = Line::parse(line).map_err(|e| anyhow::anyhow!("{}:{n}: {e}", path.display()))?;
        if let Some(seq) = read.head.seq {
            out.next_seq = seq + 1;
        }
        match read.line {
            Some(Line::SessionStart(s)) => {
                out.sessions += 1;
                out.workspace = s.workspace.as_ref().map(PathBuf::from);
                out.home = s.home.as_ref().map(PathBuf::from);
            }
            Some(Line::Denial(d)) => out.denials.push(Observed {
                line: n,
                source: d.source.as_str().to_owned(),
                syscall: d.syscall.clone(),
                operation: d.operation.clone(),
                errno: d.errno.clone(),
                path: d.path.as_ref().map(PathBuf::from),
                host: d.host.clone(),
                port: d.port,
                comm: d.comm.clone(),
                reason: d.detail("reason").map(String::from),
                rule: d.detail("rule").map(String::from),
                call: d.detail("call").map(String::from),
                domain: d.detail("domain").map(String::from),
            }),
            _ => {}
        }
    }
    if out.sessions == 0 {
        anyhow::bail!("{} holds no session_start event: it is not an sbx audit log (write one with `sbx monitor --no-tui --log FILE -- CMD`)", path.display());
    }
    Ok(out)
}

/// What the suggestions are made against.
pub struct Context<'a> {
    /// The policy the config file gives now, for the log's workspace.
    pub policy: &'a Policy,
    /// The target file's own entries (removals can only touch these).
    pub own: &'a Config,
    /// Propose the switches that weaken a mandatory protection or the
    /// seccomp deny list (`allowGitConfig`, `allowAllUnixSockets`).
    pub include_protected: bool,
    /// Whether a path exists on this host.
    pub exists: &'a dyn Fn(&Path) -> bool,
}

/// One proposed change to the policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Dotted key, e.g. `filesystem.allowWrite`.
    pub key: &'static str,
    /// `add`, `remove` or `set`.
    pub op: &'static str,
    /// The entry as written in the file.
    pub value: String,
    /// Indexes of the denials it answers.
    pub answers: Vec<usize>,
    /// Why it is flagged; empty when it is not.
    pub risk: Vec<String>,
    /// Flagged as risky: held back unless accepted. A proposal can be
    /// flagged without being held (a write into the home directory's
    /// tool directories is outside the workspace, but ordinary).
    pub hold: bool,
    /// A directory to create so that the entry can take effect.
    pub create_dir: Option<PathBuf>,
}

impl Proposal {
    pub fn change(&self, comment: Option<String>) -> Change {
        let key: Vec<String> = self.key.split('.').map(String::from).collect();
        match self.op {
            "remove" => Change::Remove { key, item: self.value.clone() },
            "set" => Change::SetBool { key, value: self.value == "true" },
            _ => Change::Append { key, items: vec![(self.value.clone(), comment)] },
        }
    }
}

/// Denials that no policy change answers, grouped by reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unanswered {
    pub why: String,
    pub what: String,
    pub answers: Vec<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct Suggestions {
    pub proposals: Vec<Proposal>,
    pub unanswered: Vec<Unanswered>,
    /// Denials the current policy already allows (the log predates it).
    pub already: Vec<usize>,
}

/// What would answer one denial.
enum Need {
    Write { target: PathBuf, dir: bool },
    Read(PathBuf),
    Domain { host: Host, port: u16 },
    Remove { key: &'static str, entry: String },
    /// One entry of a list that is not generalised (a socket path).
    Add { key: &'static str, entry: String },
    Set { key: &'static str },
    Already,
    No { why: String, what: String },
}

const CREDENTIAL_DIRS: &[&str] = &[".ssh", ".aws", ".gnupg", ".kube", ".docker", ".azure", ".config/gh", ".config/gcloud", ".password-store", ".local/share/keyrings", ".vault-token"];
const CREDENTIAL_FILES: &[&str] = &[".netrc", ".git-credentials", ".npmrc", ".pypirc", ".pgpass", "credentials", "credentials.json", ".vault-token"];

/// Why a path holds or is credentials, if it does.
fn credential(path: &Path, home: Option<&Path>) -> Option<String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name == ".env" || name.starts_with(".env.") || name.ends_with(".pem") || name.ends_with(".key") || name.starts_with("id_rsa") || name.starts_with("id_ed25519") || name.starts_with("id_ecdsa") || CREDENTIAL_FILES.contains(&name.as_str()) {
        return Some(format!("credentials: {name}"));
    }
    let home = home?;
    for dir in CREDENTIAL_DIRS {
        let cred = home.join(dir);
        if path.starts_with(&cred) {
            return Some(format!("credentials: ~/{dir}"));
        }
        if cred.starts_with(path) {
            return Some(format!("contains credentials: ~/{dir}"));
        }
    }
    None
}

/// Agent and editor configuration that holds commands run outside the sandbox (hooks, MCP
/// servers, tasks), in the home directory or the workspace.
const AGENT_CONFIG: &[&str] = &[".claude", ".claude.json", ".codex", ".cursor", ".gemini", ".opencode", ".factory", ".copilot", ".amp", ".mcp.json", ".vscode/tasks.json", ".vscode"];

/// Why writing `path` could make something run outside the sandbox later, if it could:
/// it is (or holds) a home path of `HOME_PROTECTED`, a directory of the user's PATH
/// (`path_dirs`), or agent or editor configuration.
fn runs_outside(path: &Path, home: Option<&Path>, workspace: &Path, path_dirs: &[PathBuf]) -> Option<String> {
    let hit = |p: &Path| path.starts_with(p) || p.starts_with(path);
    if let Some(d) = path_dirs.iter().find(|d| hit(d)) {
        return Some(format!("{} is on your PATH: a program placed there runs outside the sandbox", d.display()));
    }
    if let Some(home) = home {
        for name in crate::policy::HOME_PROTECTED {
            if hit(&home.join(name)) {
                let what = match *name {
                    ".config/autostart" => "desktop autostart entries run at your next login",
                    ".config/systemd" | ".config/environment.d" => "systemd user units and their environment run outside the sandbox",
                    ".ssh" => "ssh configuration and authorized keys",
                    ".config/git" => "git configuration can run commands",
                    n if n.ends_with("bin") || n.ends_with("shims") => "a directory on PATH: a program placed there runs outside the sandbox",
                    _ => "a startup file of your session",
                };
                return Some(format!("~/{name}: {what}"));
            }
        }
    }
    for root in home.into_iter().chain([workspace]) {
        for name in AGENT_CONFIG {
            if hit(&root.join(name)) {
                return Some(format!("{}: agent or editor configuration, whose hooks, MCP servers and tasks run outside the sandbox", root.join(name).display()));
            }
        }
    }
    None
}

fn is_write(d: &Observed) -> bool {
    matches!(d.operation.as_deref(), Some("write" | "create" | "delete" | "rename" | "modify")) || d.errno.as_deref() == Some("EROFS")
}

/// The directory that owns `path` under the home directory: its first
/// component, or two (three under `.local`) for the XDG containers.
fn home_anchor(path: &Path, home: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(home).ok()?;
    let comps: Vec<_> = rest.components().collect();
    let first = comps.first()?.as_os_str().to_string_lossy().into_owned();
    let depth = match first.as_str() {
        ".cache" | ".config" | ".var" => 2,
        ".local" => match comps.get(1).map(|c| c.as_os_str().to_string_lossy().into_owned()).as_deref() {
            Some("share" | "state" | "lib") => 3,
            _ => 2,
        },
        _ => 1,
    };
    let mut out = home.to_path_buf();
    for c in comps.iter().take(depth) {
        out.push(c);
    }
    Some(out)
}

impl Context<'_> {
    fn home(&self) -> Option<&Path> {
        self.policy.home.as_deref()
    }

    /// A path as the policy file writes it: relative in the workspace,
    /// `~/...` in the home directory, else absolute.
    pub fn render_path(&self, path: &Path) -> String {
        if let Ok(rest) = path.strip_prefix(&self.policy.workspace) {
            return if rest.as_os_str().is_empty() { ".".into() } else { rest.to_string_lossy().into_owned() };
        }
        if let Some(home) = self.home()
            && let Ok(rest) = path.strip_prefix(home)
        {
            return if rest.as_os_str().is_empty() { "~".into() } else { format!("~/{}", rest.to_string_lossy()) };
        }
        path.to_string_lossy().into_owned()
    }

    /// The entry of this file's list `key` that resolves to `resolved`.
    fn own_entry(&self, list: &[String], resolved: &Path) -> Option<String> {
        list.iter().find(|e| self.resolve(e).is_some_and(|r| r == resolved)).cloned()
    }

    /// A path entry of the policy file, resolved as the policy resolves it.
    fn resolve(&self, entry: &str) -> Option<PathBuf> {
        crate::policy::resolve_path("", entry, &self.policy.workspace, self.home()).ok()
    }

    fn protected(&self, path: &Path) -> Option<PathBuf> {
        let ws = &self.policy.workspace;
        let mut roots = vec![ws.as_path()];
        if let Some(h) = self.home() {
            roots.push(h);
        }
        for root in roots {
            for name in PROTECTED_FILES.iter().chain(PROTECTED_DIRS) {
                let p = root.join(name);
                if path.starts_with(&p) {
                    return Some(p);
                }
            }
        }
        let hooks = ws.join(".git/hooks");
        path.starts_with(&hooks).then_some(hooks)
    }

    fn classify(&self, d: &Observed, rules: &Rules) -> Need {
        let no = |why: &str, what: String| Need::No { why: why.to_string(), what };
        match d.source.as_str() {
            "proxy" => {
                let (Some(raw), Some(port)) = (&d.host, d.port) else { return no("the destination was not recorded", "?".into()) };
                let rule = d.rule.as_deref().unwrap_or(NO_RULE);
                if let Some(entry) = rule.strip_prefix("deniedDomains: ") {
                    return if self.own.network.denied_domains.iter().any(|e| e == entry) {
                        Need::Remove { key: "network.deniedDomains", entry: entry.to_string() }
                    } else {
                        no(&format!("denied by deniedDomains {entry:?} in a file this one extends"), format!("{raw}:{port}"))
                    };
                }
                // "allowedDomains: NAME; resolved to private address A, refused: DNS rebinding
                // defence, ...": the name may be opted in; cloud-metadata never is.
                if rule.contains("DNS rebinding defence") {
                    return match Host::parse(raw) {
                        Ok(Host::Name(_)) if self.policy.net.allow_private_resolution.iter().any(|e| e == raw) => Need::Already,
                        Ok(Host::Name(_)) => Need::Add { key: "network.allowPrivateResolution", entry: raw.clone() },
                        _ => no("the name resolved to a private address (DNS rebinding defence)", format!("{raw}:{port}")),
                    };
                }
                if rule.contains("resolved to") {
                    return no(rule.rsplit("; ").next().unwrap_or(rule), format!("{raw}:{port}"));
                }
                if rule != NO_RULE {
                    return no(rule, format!("{raw}:{port}"));
                }
                match Host::parse(raw) {
                    Ok(host) if rules.decide(&host, port).allowed => Need::Already,
                    Ok(host) => Need::Domain { host, port },
                    Err(_) => no("not a valid host name", format!("{raw}:{port}")),
                }
            }
            "seccomp" => {
                let what = d.call.clone().or_else(|| d.syscall.clone()).unwrap_or_else(|| "?".into());
                // A connect to a Unix socket that allowUnixSockets does not
                // list (the supervisor resolved its path in the sandbox).
                if d.syscall.as_deref() == Some("connect") {
                    return match &d.path {
                        Some(path) => Need::Add { key: "network.allowUnixSockets", entry: self.render_path(path) },
                        None => no("abstract Unix sockets are never reachable from the sandbox", what),
                    };
                }
                if d.syscall.as_deref() == Some("socket") && d.domain.as_deref() == Some("AF_UNIX") {
                    if self.policy.net.allow_all_unix_sockets {
                        return Need::Already;
                    }
                    return if self.include_protected {
                        Need::Set { key: "network.allowAllUnixSockets" }
                    } else {
                        no("the seccomp deny list: Unix-domain sockets reach host services (pass --include-protected to propose network.allowAllUnixSockets)", "socket(AF_UNIX, ...)".into())
                    };
                }
                no("the seccomp deny list, which no policy changes", what)
            }
            "netns" => {
                let what = match (&d.host, d.port) {
                    (Some(h), Some(p)) => crate::report::host_port(h, p),
                    _ => d.syscall.clone().unwrap_or_else(|| "?".into()),
                };
                if d.port == Some(53) {
                    no("a DNS query from the sandbox, which has no network but loopback: names are resolved by the proxy, so the program should reach its hosts through HTTP_PROXY/ALL_PROXY", what)
                } else {
                    no("a direct connection that bypassed the proxy: the sandbox has no network but loopback and no policy adds a route; the program should use HTTP_PROXY/HTTPS_PROXY/ALL_PROXY", what)
                }
            }
            _ if d.syscall.as_deref() == Some("bind") && d.path.is_none() => {
                if self.policy.net.allow_local_binding { Need::Already } else { Need::Set { key: "network.allowLocalBinding" } }
            }
            _ => {
                let Some(path) = d.path.clone() else {
                    return no("the path was not recorded", d.syscall.clone().unwrap_or_else(|| "?".into()));
                };
                let op = d.operation.clone().unwrap_or_else(|| "access".into());
                let what = format!("{op} {}", path.display());
                if ["/proc", "/sys", "/dev"].iter().any(|k| path.starts_with(k)) {
                    return no("a kernel interface, never writable or readable beyond the defaults in the sandbox", what);
                }
                if is_write(d) {
                    if path.starts_with(self.policy.workspace.join(".git/config")) {
                        if self.policy.fs.allow_git_config {
                            return Need::Already;
                        }
                        return if self.include_protected {
                            Need::Set { key: "filesystem.allowGitConfig" }
                        } else {
                            no("a mandatory protection: .git/config (pass --include-protected to propose filesystem.allowGitConfig)", what)
                        };
                    }
                    if let Some(p) = self.protected(&path) {
                        return no(&format!("a mandatory protection that no policy lifts: {}", self.render_path(&p)), what);
                    }
                    if let Some(deny) = self.policy.fs.deny_write.iter().find(|w| path.starts_with(w)) {
                        return match self.own_entry(&self.own.filesystem.deny_write, deny) {
                            Some(entry) => Need::Remove { key: "filesystem.denyWrite", entry },
                            None => no(&format!("denyWrite {} from a file this one extends", self.render_path(deny)), what),
                        };
                    }
                    if self.policy.writable().iter().any(|w| path.starts_with(w)) {
                        return if d.source == "dac" { no("file permissions on the host, not the policy", what) } else { Need::Already };
                    }
                    let dir = matches!(d.syscall.as_deref(), Some("mkdir" | "mkdirat"));
                    let target = if dir || !matches!(op.as_str(), "create" | "delete" | "rename") {
                        path
                    } else {
                        path.parent().map_or(path.clone(), Path::to_path_buf)
                    };
                    Need::Write { dir: dir || target != d.path.clone().unwrap_or_default(), target }
                } else {
                    if let Some(deny) = self.policy.fs.deny_read.iter().find(|r| path.starts_with(r)) {
                        return match self.own_entry(&self.own.filesystem.deny_read, deny) {
                            Some(entry) => Need::Remove { key: "filesystem.denyRead", entry },
                            None => no(&format!("denyRead {} from a file this one extends", self.render_path(deny)), what),
                        };
                    }
                    if d.source == "dac" {
                        return no("file permissions on the host, not the policy", what);
                    }
                    let readable = !self.policy.fs.default_deny_read
                        || path.starts_with(&self.policy.workspace)
                        || crate::policy::SYSTEM_READ.iter().any(|s| path.starts_with(s))
                        || self.policy.fs.allow_read.iter().any(|r| path.starts_with(r));
                    if readable { Need::Already } else { Need::Read(path) }
                }
            }
        }
    }

    /// Classifies, generalises and merges `denials` into suggestions.
    pub fn suggest(&self, denials: &[Observed]) -> Suggestions {
        let p = self.policy;
        let rules = Rules::new(&p.net.allowed_domains, &p.net.denied_domains, &[], &p.net.allow_local_outbound_ports).unwrap_or_default();
        let mut out = Suggestions::default();
        let mut writes: Vec<(PathBuf, bool, usize)> = Vec::new();
        let mut reads: Vec<(PathBuf, usize)> = Vec::new();
        let mut domains: Vec<(Host, u16, usize)> = Vec::new();
        let mut other: BTreeMap<(&'static str, &'static str, String), Vec<usize>> = BTreeMap::new();
        let mut no: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
        for (i, d) in denials.iter().enumerate() {
            match self.classify(d, &rules) {
                Need::Write { target, dir } => writes.push((target, dir, i)),
                Need::Read(path) => reads.push((path, i)),
                Need::Domain { host, port } => domains.push((host, port, i)),
                Need::Remove { key, entry } => other.entry((key, "remove", entry)).or_default().push(i),
                Need::Set { key } => other.entry((key, "set", "true".into())).or_default().push(i),
                Need::Add { key, entry } => other.entry((key, "add", entry)).or_default().push(i),
                Need::Already => out.already.push(i),
                Need::No { why, what } => no.entry((why, what)).or_default().push(i),
            }
        }
        out.proposals.extend(self.paths("filesystem.allowWrite", writes));
        out.proposals.extend(self.paths("filesystem.allowRead", reads.into_iter().map(|(p, i)| (p, false, i)).collect()));
        out.proposals.extend(self.domains(domains));
        for ((key, op, value), answers) in other {
            let risk = match (key, op) {
                (_, "remove") => vec![format!("removes an explicit deny rule ({key})")],
                ("filesystem.allowGitConfig", _) => vec!["lifts a mandatory protection: .git/config can set hooks and commands that run outside the sandbox".into()],
                ("network.allowAllUnixSockets", _) => vec!["weakens the seccomp deny list: every host Unix socket (docker.sock, ssh-agent, ...) becomes reachable".into()],
                ("network.allowUnixSockets", _) => vec!["a host service becomes reachable from the sandbox through this socket".into()],
                ("network.allowPrivateResolution", _) => vec![
                    "the name may then lead to private and loopback addresses: whoever controls its DNS can point it at services on this machine or network".into(),
                ],
                // Listening inside the sandbox's own network namespace:
                // nothing outside can connect unless `-p` exposes a port.
                _ => Vec::new(),
            };
            let hold = !risk.is_empty();
            out.proposals.push(Proposal { key, op, value, answers, risk, hold, create_dir: None });
        }
        // A denial may be answered by a credential path: say so on top.
        for prop in &mut out.proposals {
            if prop.op == "remove"
                && prop.key.starts_with("filesystem.")
                && let Some(c) = self.resolve(&prop.value).and_then(|r| credential(&r, self.home()))
            {
                prop.risk.push(c);
                prop.hold = true;
            }
        }
        let mut unanswered: Vec<Unanswered> = no.into_iter().map(|((why, what), answers)| Unanswered { why, what, answers }).collect();
        unanswered.sort_by(|a, b| b.answers.len().cmp(&a.answers.len()).then(a.what.cmp(&b.what)));
        out.unanswered = unanswered;
        out
    }

    fn paths(&self, key: &'static str, targets: Vec<(PathBuf, bool, usize)>) -> Vec<Proposal> {
        let writing = key == "filesystem.allowWrite";
        // Group by the directory that owns each target.
        let mut parents: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (t, _, _) in &targets {
            if let Some(parent) = t.parent() {
                parents.entry(parent.to_path_buf()).or_default().insert(t.clone());
            }
        }
        let mut groups: BTreeMap<PathBuf, (Vec<usize>, bool)> = BTreeMap::new();
        // The user's PATH directories in the home and the workspace, as the sandbox protects them.
        let mut scoped = self.policy.clone();
        scoped.set_path_dirs(&std::env::var_os("PATH").unwrap_or_default());
        let path_dirs = scoped.path_dirs;
        // A path protected unless named exactly is proposed by that name.
        let exact: Vec<PathBuf> = self.home().iter().flat_map(|h| crate::policy::HOME_PROTECTED.iter().map(|n| h.join(n))).chain(path_dirs.iter().cloned()).collect();
        for (target, dir, i) in targets {
            let anchor = match exact.iter().find(|p| target.starts_with(p)).cloned().or_else(|| self.home().and_then(|h| home_anchor(&target, h))) {
                Some(a) => a,
                // Elsewhere: several files in one directory become it.
                None => match target.parent() {
                    Some(parent) if parents.get(parent).is_some_and(|s| s.len() > 1) => parent.to_path_buf(),
                    _ => target.clone(),
                },
            };
            let e = groups.entry(anchor.clone()).or_default();
            e.0.push(i);
            e.1 |= dir || anchor != target;
        }
        groups
            .into_iter()
            .map(|(path, (answers, dir))| {
                let mut risk = Vec::new();
                if let Some(c) = credential(&path, self.home()) {
                    risk.push(c);
                }
                if writing && let Some(r) = runs_outside(&path, self.home(), &self.policy.workspace, &path_dirs) {
                    risk.push(r);
                }
                let in_home = self.home().is_some_and(|h| path.starts_with(h));
                if self.home().is_some_and(|h| path == h) {
                    risk.push("the whole home directory".into());
                } else if path == Path::new("/") {
                    risk.push("the whole filesystem".into());
                }
                let hold = !risk.is_empty() || (writing && !in_home);
                if writing {
                    risk.push(if in_home { "write outside the workspace".into() } else { "write to a system path outside the home directory".into() });
                }
                let create_dir = (writing && dir && in_home && !(self.exists)(&path)).then(|| path.clone());
                Proposal { key, op: "add", value: self.render_path(&path), answers, hold, risk, create_dir }
            })
            .collect()
    }

    fn domains(&self, wanted: Vec<(Host, u16, usize)>) -> Vec<Proposal> {
        // Subdomains per parent domain (names only).
        let mut by_parent: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (h, _, _) in &wanted {
            if let Host::Name(n) = h
                && let Some((_, parent)) = n.split_once('.')
                && parent.contains('.')
            {
                by_parent.entry(parent.to_string()).or_default().insert(n.clone());
            }
        }
        let mut groups: BTreeMap<String, (Vec<usize>, Vec<String>)> = BTreeMap::new();
        for (host, port, i) in wanted {
            let (entry, risk) = match &host {
                Host::Ip(_) => (domain_entry(&host, port), vec!["an IP address: no name to check and no DNS rebinding defence".to_string()]),
                Host::Name(n) => match n.split_once('.').map(|(_, p)| p).filter(|p| by_parent.get(*p).is_some_and(|s| s.len() >= 3)) {
                    Some(parent) => (format!("*.{parent}"), vec![format!("wildcard name: every subdomain of {parent}")]),
                    None => (domain_entry(&host, port), Vec::new()),
                },
            };
            let e = groups.entry(entry).or_default();
            e.0.push(i);
            e.1 = risk;
        }
        groups.into_iter().map(|(value, (answers, risk))| Proposal { key: "network.allowedDomains", op: "add", value, answers, hold: !risk.is_empty(), risk, create_dir: None }).collect()
    }
}

/// How an `allowedDomains`/`deniedDomains` entry names one destination: the
/// name alone for ports 80 and 443 (an entry without a port covers every
/// port), `name:port` otherwise, and an IP address always with its port.
pub fn domain_entry(host: &Host, port: u16) -> String {
    match host {
        Host::Ip(ip) if ip.is_ipv6() => format!("[{ip}]:{port}"),
        Host::Ip(ip) => format!("{ip}:{port}"),
        Host::Name(n) if port == 80 || port == 443 => n.clone(),
        Host::Name(n) => format!("{n}:{port}"),
    }
}

/// The explanation of one proposal: which denials it answers, how often,
/// by which processes, with examples.
pub fn explain(denials: &[Observed], answers: &[usize]) -> String {
    let mut ops: BTreeSet<String> = BTreeSet::new();
    let mut comms: BTreeMap<String, usize> = BTreeMap::new();
    let mut examples: Vec<String> = Vec::new();
    for &i in answers {
        let d = &denials[i];
        if let Some(op) = &d.operation {
            ops.insert(op.clone());
        }
        if let Some(c) = &d.comm {
            *comms.entry(c.clone()).or_default() += 1;
        }
        let example = match (&d.path, &d.host) {
            (Some(p), _) => p.display().to_string(),
            (None, Some(h)) => crate::report::host_port(h, d.port.unwrap_or(0)),
            _ => d.call.clone().or_else(|| d.syscall.clone()).unwrap_or_default(),
        };
        if examples.len() < 2 && !examples.contains(&example) {
            examples.push(example);
        }
    }
    let mut comms: Vec<(String, usize)> = comms.into_iter().collect();
    comms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let n = answers.len();
    let mut out = format!("{n} denial{}", if n == 1 { "" } else { "s" });
    if !ops.is_empty() {
        let _ = write!(out, " ({})", ops.into_iter().collect::<Vec<_>>().join(", "));
    }
    if !comms.is_empty() {
        let list: Vec<String> = comms.iter().take(3).map(|(c, k)| format!("{c} ×{k}")).collect();
        let more = if comms.len() > 3 { format!(", +{} more", comms.len() - 3) } else { String::new() };
        let _ = write!(out, " by {}{more}", list.join(", "));
    }
    if !examples.is_empty() {
        let _ = write!(out, "; e.g. {}", examples.join(", "));
    }
    out
}

// ---------------------------------------------------------------------------
// Applying suggestions to a policy file.

/// The policy file that suggestions are written into.
pub struct Target {
    pub file: PathBuf,
    /// Its text now; empty when it does not exist yet.
    pub text: String,
    pub exists: bool,
    /// Its own entries, without `extends`.
    pub own: Config,
    /// The merged config it gives (with `extends`), or the default.
    pub merged: Config,
}

impl Target {
    /// Reads `file` (which may not exist yet).
    pub fn open(file: &Path, cwd: &Path, xdg_config_home: Option<&Path>) -> anyhow::Result<Target> {
        let file = crate::policy::normalize(&cwd.join(file));
        let (text, exists) = match crate::fsio::read_policy(&file) {
            Ok(t) => (t, true),
            Err(e) if e.is_not_found() => (String::new(), false),
            Err(e) => anyhow::bail!("cannot read the policy file: {e}"),
        };
        let own = crate::config::parse_str(&text, &file)?.config;
        let merged = if exists {
            crate::config::load(&crate::config::Request { file: Some(&file), template: None, cwd, xdg_config_home })?.config
        } else {
            Config::default()
        };
        Ok(Target { file, text, exists, own, merged })
    }

    /// The file's text with `proposals` applied, each added entry with a
    /// comment saying where it came from; checked by parsing it again.
    pub fn edited(&self, proposals: &[&Proposal], denials: &[Observed], origin: &str) -> anyhow::Result<String> {
        let today = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let today = &today[..10];
        let changes: Vec<Change> = proposals
            .iter()
            .map(|p| {
                let n = p.answers.len();
                let mut comms: Vec<&str> = p.answers.iter().filter_map(|&i| denials.get(i).and_then(|d| d.comm.as_deref())).collect();
                comms.sort_unstable();
                comms.dedup();
                let by = if comms.is_empty() { String::new() } else { format!(" by {}", comms.iter().take(3).copied().collect::<Vec<_>>().join(", ")) };
                let review = if p.hold { format!("; review: {}", p.risk.join(", ")) } else { String::new() };
                p.change(Some(format!("{origin} {today}: {n} denial{}{by}{review}", if n == 1 { "" } else { "s" })))
            })
            .collect();
        let base = if self.exists || !self.text.is_empty() { self.text.clone() } else { format!("// sbx policy, started by `sbx {origin}` on {today}.\n// Field names are fence's; see `sbx config init` for every key.\n{{\n}}\n") };
        self.changed(&base, &changes)
    }

    /// Appends one entry to the list `key` and writes the file (`--ask`'s
    /// "always" answers).
    pub fn append(&self, key: &str, entry: &str, comment: String) -> anyhow::Result<()> {
        let change = Change::Append { key: key.split('.').map(String::from).collect(), items: vec![(entry.to_string(), Some(comment))] };
        self.write(&self.changed(&self.text, &[change])?)
    }

    /// `base` with `changes` applied, checked by parsing it as a policy file.
    fn changed(&self, base: &str, changes: &[Change]) -> anyhow::Result<String> {
        let out = crate::config::edit::apply(base, changes).map_err(|e| anyhow::anyhow!("{}: {e}", self.file.display()))?;
        crate::config::parse_str(&out, &self.file).map_err(|e| anyhow::anyhow!("sbx produced an invalid policy file, nothing was written: {e}"))?;
        Ok(out)
    }

    /// A unified diff from the file's text to `new`.
    pub fn diff(&self, new: &str) -> String {
        let name = self.file.display().to_string();
        let old_name = if self.exists { name.clone() } else { "/dev/null".into() };
        let new_name = name;
        similar::TextDiff::from_lines(self.text.as_str(), new).unified_diff().context_radius(3).header(&old_name, &new_name).to_string()
    }

    /// Replaces the file with `new` (`fsio::replace`: a temporary file in
    /// sbx's private directory, then a rename that replaces a symlink rather
    /// than following it; its permissions are kept), so that no reader sees
    /// half a file.
    pub fn write(&self, new: &str) -> anyhow::Result<()> {
        crate::fsio::replace(&self.file, new.as_bytes(), 0o644)?;
        Ok(())
    }
}

/// The report printed before the diff: each proposal with what it answers
/// and its flags, then what no change answers.
pub fn render_report(s: &Suggestions, denials: &[Observed], held: &dyn Fn(&Proposal) -> bool) -> String {
    let mut out = String::new();
    for (n, p) in s.proposals.iter().enumerate() {
        let sign = match p.op {
            "remove" => "-=",
            "set" => "=",
            _ => "+=",
        };
        let value = if p.op == "set" { crate::termtext::escape(&p.value).into_owned() } else { format!("\"{}\"", crate::termtext::escape(&p.value)) };
        let _ = writeln!(out, "{}. {} {sign} {value}", n + 1, p.key);
        let _ = writeln!(out, "   answers {}", crate::termtext::escape(&explain(denials, &p.answers)));
        for r in &p.risk {
            let _ = writeln!(out, "   ! {}: {}", if p.hold { "risky" } else { "note" }, crate::termtext::escape(r));
        }
        if let Some(dir) = &p.create_dir {
            let _ = writeln!(out, "   {} does not exist yet: it is created when this is applied", crate::termtext::path(dir));
        }
        if held(p) {
            let _ = writeln!(out, "   held back: pass --accept-risky to apply it");
        }
    }
    if !s.unanswered.is_empty() {
        let _ = writeln!(out, "Not proposed:");
        for u in &s.unanswered {
            let n = u.answers.len();
            let _ = writeln!(out, "   - {n} denial{}: {}: {}", if n == 1 { "" } else { "s" }, crate::termtext::escape(&u.what), crate::termtext::escape(&u.why));
        }
    }
    if !s.already.is_empty() {
        let _ = writeln!(out, "{} denial{} already allowed by the current policy (the log predates it).", s.already.len(), if s.already.len() == 1 { " is" } else { "s are" });
    }
    out
}

/// The `policy` events for `proposals`.
pub fn events(s: &Suggestions, origin: &'static str, config: &Path, applied: &dyn Fn(&Proposal) -> &'static str) -> Vec<crate::report::Event> {
    s.proposals
        .iter()
        .map(|p| {
            crate::report::Event::Policy(crate::report::PolicyEvent {
                origin,
                action: applied(p),
                key: p.key.to_string(),
                change: p.op,
                value: p.value.clone(),
                config: Some(config.to_path_buf()),
                risk: p.risk.clone(),
                answers: Some(p.answers.len() as u64),
                host: None,
                port: None,
            })
        })
        .collect()
}

/// `sbx policy suggest`.
pub struct SuggestRequest<'a> {
    pub log: &'a Path,
    pub target: Target,
    pub write: bool,
    pub accept_risky: bool,
    pub include_protected: bool,
    pub home: Option<PathBuf>,
    pub workspace: PathBuf,
    /// `--unverified`: read a log that fails verification.
    pub trust: Trust,
}

/// Runs `sbx policy suggest`: prints the report and the diff to `out`,
/// writes the file with `write`, and appends `policy` events to the log.
pub fn suggest_command(req: SuggestRequest, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let (recorded, verified) = read_log(req.log, req.trust)?;
    let workspace = recorded.workspace.clone().unwrap_or(req.workspace);
    let home = recorded.home.clone().or(req.home);
    let policy = Policy::from_config(&req.target.merged, workspace, home)?;
    let exists = |p: &Path| p.exists();
    let ctx = Context { policy: &policy, own: &req.target.own, include_protected: req.include_protected, exists: &exists };
    let mut s = ctx.suggest(&recorded.denials);
    if !verified {
        distrust(&mut s);
    }
    let held = |p: &Proposal| p.hold && !req.accept_risky;
    writeln!(
        out,
        "sbx policy suggest: {} denial{} in {} ({} session{}); policy file {}{}",
        recorded.denials.len(),
        if recorded.denials.len() == 1 { "" } else { "s" },
        crate::termtext::path(req.log),
        recorded.sessions,
        if recorded.sessions == 1 { "" } else { "s" },
        crate::termtext::path(&req.target.file),
        if req.target.exists { "" } else { " (new)" }
    )?;
    write!(out, "{}", render_report(&s, &recorded.denials, &held))?;
    let apply: Vec<&Proposal> = s.proposals.iter().filter(|p| !held(p)).collect();
    if s.proposals.is_empty() {
        writeln!(out, "Nothing to propose.")?;
    }
    let mut written = false;
    if !apply.is_empty() {
        let new = req.target.edited(&apply, &recorded.denials, "policy suggest")?;
        write!(out, "\n{}", crate::termtext::escape_lines(&req.target.diff(&new)))?;
        if req.write {
            for dir in apply.iter().filter_map(|p| p.create_dir.as_ref()) {
                std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", crate::termtext::path(dir)))?;
            }
            req.target.write(&new)?;
            written = true;
            writeln!(out, "\nWrote {} change{} to {}.", apply.len(), if apply.len() == 1 { "" } else { "s" }, crate::termtext::path(&req.target.file))?;
        } else {
            writeln!(out, "\nNothing written: pass --write to apply the {} change{} above.", apply.len(), if apply.len() == 1 { "" } else { "s" })?;
        }
    }
    let held_n = s.proposals.iter().filter(|p| held(p)).count();
    if held_n > 0 {
        writeln!(out, "{held_n} risky proposal{} held back (--accept-risky applies them after you have read them).", if held_n == 1 { " is" } else { "s are" })?;
    }
    // The reviewer's record: what was proposed, applied and held, by whom.
    let action = |p: &Proposal| if held(p) { "held" } else if written { "applied" } else { "proposed" };
    match crate::report::Log::append_at(req.log, recorded.next_seq) {
        Ok(mut log) => {
            for e in events(&s, "suggest", &req.target.file, &action) {
                log.write(&e)?;
            }
            log.flush()?;
        }
        Err(e) => eprintln!("sbx: warning: cannot record the suggestions in {}: {}", crate::termtext::path(req.log), crate::termtext::escape(&e.to_string())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    mod printed {
        use std::os::unix::ffi::OsStringExt as _;

        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// `policy suggest`'s and `learn`'s report, and the diff, hold no
            /// control character whatever the log's paths, hosts and names.
            #[test]
            fn no_report_holds_a_control_character(
                path in proptest::collection::vec(any::<u8>(), 1..40),
                host in any::<String>(),
                comm in any::<String>(),
                call in any::<String>(),
            ) {
                let mut p = b"/w/".to_vec();
                p.extend(path);
                let path = PathBuf::from(std::ffi::OsString::from_vec(p));
                let denials = vec![
                    Observed { source: "landlock".into(), syscall: Some("openat".into()), operation: Some("create".into()), path: Some(path.clone()), comm: Some(comm.clone()), ..Default::default() },
                    Observed { source: "landlock".into(), syscall: Some("openat".into()), operation: Some("create".into()), path: Some(PathBuf::from("/opt").join(path.file_name().unwrap_or_default())), comm: Some(comm.clone()), ..Default::default() },
                    Observed { source: "proxy".into(), host: Some(host), port: Some(8443), rule: Some(NO_RULE.into()), operation: Some("connect".into()), comm: Some(comm), ..Default::default() },
                    Observed { source: "seccomp".into(), syscall: Some("mount".into()), call: Some(call), ..Default::default() },
                ];
                let policy = Policy::builtin("/w".into(), Some("/h".into()));
                let own = Config::default();
                let exists = |_: &Path| false;
                let ctx = Context { policy: &policy, own: &own, include_protected: true, exists: &exists };
                let mut s = ctx.suggest(&denials);
                distrust(&mut s);
                let report = render_report(&s, &denials, &|_| true);
                prop_assert!(crate::termtext::is_inert(&report), "{report:?}");
                let target = Target { file: "/w/sbx.jsonc".into(), text: String::new(), exists: false, own: Config::default(), merged: Config::default() };
                let all: Vec<&Proposal> = s.proposals.iter().collect();
                if let Ok(new) = target.edited(&all, &denials, "policy suggest") {
                    prop_assert!(crate::termtext::is_inert(&crate::termtext::escape_lines(&target.diff(&new))));
                }
            }
        }
    }

    fn ctx_with(policy: &Policy, own: &Config, protected: bool, f: impl Fn(&Suggestions)) {
        let exists = |p: &Path| p == Path::new("/h/.cache");
        let ctx = Context { policy, own, include_protected: protected, exists: &exists };
        f(&ctx.suggest(&sample()));
    }

    fn fs(source: &str, syscall: &str, op: &str, path: &str, comm: &str) -> Observed {
        Observed { source: source.into(), syscall: Some(syscall.into()), operation: Some(op.into()), path: Some(path.into()), comm: Some(comm.into()), errno: Some("EROFS".into()), ..Default::default() }
    }

    fn proxy(host: &str, port: u16, rule: &str) -> Observed {
        Observed { source: "proxy".into(), host: Some(host.into()), port: Some(port), rule: Some(rule.into()), operation: Some("connect".into()), ..Default::default() }
    }

    fn sample() -> Vec<Observed> {
        vec![
            fs("mount", "mkdir", "create", "/h/.npm", "npm"),
            fs("mount", "openat", "create", "/h/.npm/_cacache/x", "npm"),
            fs("mount", "openat", "create", "/h/.cache/pip/http/a", "pip"),
            fs("mount", "mkdir", "create", "/h/.cache/pip", "pip"),
            fs("mount", "openat", "write", "/h/.bashrc", "sh"),
            fs("mount", "openat", "write", "/w/.git/config", "git"),
            fs("mount", "openat", "create", "/h/.ssh/known_hosts", "ssh"),
            fs("mount", "openat", "create", "/opt/tool/a", "make"),
            fs("mount", "openat", "create", "/opt/tool/b", "make"),
            fs("landlock", "openat", "write", "/w/already/x", "sh"),
            proxy("registry.npmjs.org", 443, NO_RULE),
            proxy("a.example.com", 443, NO_RULE),
            proxy("b.example.com", 443, NO_RULE),
            proxy("c.example.com", 443, NO_RULE),
            proxy("db.internal", 5432, NO_RULE),
            proxy("10.1.2.3", 443, NO_RULE),
            proxy("evil.test", 443, "deniedDomains: evil.test"),
            proxy("rebind.test", 443, "allowedDomains: rebind.test; resolved to private address 10.0.0.1, refused: DNS rebinding defence, name not in allowPrivateResolution"),
            Observed { source: "seccomp".into(), syscall: Some("socket".into()), domain: Some("AF_UNIX".into()), call: Some("socket(AF_UNIX, SOCK_STREAM, 0)".into()), comm: Some("curl".into()), ..Default::default() },
            Observed { source: "seccomp".into(), syscall: Some("unshare".into()), call: Some("unshare(CLONE_NEWUSER)".into()), ..Default::default() },
            Observed { source: "seccomp".into(), syscall: Some("connect".into()), path: Some("/h/.docker/run/docker.sock".into()), comm: Some("docker".into()), ..Default::default() },
            proxy("meta.test", 80, "allowedDomains: meta.test; resolved to cloud-metadata address 169.254.169.254, refused: only reachable when listed as an IP literal"),
        ]
    }

    fn summary(s: &Suggestions) -> Vec<String> {
        s.proposals.iter().map(|p| format!("{} {} {} {:?} {}={:?} mkdir={:?}", p.key, p.op, p.value, p.answers, if p.hold { "hold" } else { "note" }, p.risk, p.create_dir)).collect()
    }

    /// PATH directories, autostart, systemd units and agent configuration are risky, and
    /// a path protected unless named exactly is proposed by that exact name.
    #[test]
    fn writes_that_would_run_outside_the_sandbox_are_risky() {
        let own = Config::default();
        let policy = Policy::from_config(&own, "/w".into(), Some("/h".into())).unwrap();
        let exists = |_: &Path| true;
        let ctx = Context { policy: &policy, own: &own, include_protected: false, exists: &exists };
        let s = ctx.suggest(&[
            fs("mount", "openat", "create", "/h/.local/bin/ls", "sh"),
            fs("mount", "openat", "create", "/h/.config/autostart/x.desktop", "sh"),
            fs("mount", "openat", "create", "/h/.config/systemd/user/x.service", "sh"),
            fs("mount", "openat", "create", "/h/.bun/bin/bwrap", "sh"),
            fs("mount", "openat", "write", "/h/.claude/settings.json", "claude"),
            fs("mount", "openat", "write", "/h/.claude.json", "claude"),
        ]);
        assert_eq!(
            summary(&s),
            [
                r#"filesystem.allowWrite add ~/.bun/bin [3] hold=["~/.bun/bin: a directory on PATH: a program placed there runs outside the sandbox", "write outside the workspace"] mkdir=None"#,
                r#"filesystem.allowWrite add ~/.claude [4] hold=["/h/.claude: agent or editor configuration, whose hooks, MCP servers and tasks run outside the sandbox", "write outside the workspace"] mkdir=None"#,
                r#"filesystem.allowWrite add ~/.claude.json [5] hold=["/h/.claude.json: agent or editor configuration, whose hooks, MCP servers and tasks run outside the sandbox", "write outside the workspace"] mkdir=None"#,
                r#"filesystem.allowWrite add ~/.config/autostart [1] hold=["~/.config/autostart: desktop autostart entries run at your next login", "write outside the workspace"] mkdir=None"#,
                r#"filesystem.allowWrite add ~/.config/systemd [2] hold=["~/.config/systemd: systemd user units and their environment run outside the sandbox", "write outside the workspace"] mkdir=None"#,
                r#"filesystem.allowWrite add ~/.local/bin [0] hold=["~/.local/bin: a directory on PATH: a program placed there runs outside the sandbox", "write outside the workspace"] mkdir=None"#,
            ]
        );
    }

    #[test]
    fn denials_become_generalised_flagged_proposals() {
        let mut own = Config::default();
        own.network.denied_domains = vec!["evil.test".into()];
        own.filesystem.allow_write = vec!["already".into()];
        let policy = Policy::from_config(&own, "/w".into(), Some("/h".into())).unwrap();
        ctx_with(&policy, &own, false, |s| {
            assert_eq!(
                summary(s),
                [
                    r#"filesystem.allowWrite add ~/.cache/pip [2, 3] note=["write outside the workspace"] mkdir=Some("/h/.cache/pip")"#,
                    r#"filesystem.allowWrite add ~/.npm [0, 1] note=["write outside the workspace"] mkdir=Some("/h/.npm")"#,
                    r#"filesystem.allowWrite add ~/.ssh [6] hold=["credentials: ~/.ssh", "~/.ssh: ssh configuration and authorized keys", "write outside the workspace"] mkdir=Some("/h/.ssh")"#,
                    r#"filesystem.allowWrite add /opt/tool [7, 8] hold=["write to a system path outside the home directory"] mkdir=None"#,
                    r#"network.allowedDomains add *.example.com [11, 12, 13] hold=["wildcard name: every subdomain of example.com"] mkdir=None"#,
                    r#"network.allowedDomains add 10.1.2.3:443 [15] hold=["an IP address: no name to check and no DNS rebinding defence"] mkdir=None"#,
                    r#"network.allowedDomains add db.internal:5432 [14] note=[] mkdir=None"#,
                    r#"network.allowedDomains add registry.npmjs.org [10] note=[] mkdir=None"#,
                    r#"network.allowPrivateResolution add rebind.test [17] hold=["the name may then lead to private and loopback addresses: whoever controls its DNS can point it at services on this machine or network"] mkdir=None"#,
                    r#"network.allowUnixSockets add ~/.docker/run/docker.sock [20] hold=["a host service becomes reachable from the sandbox through this socket"] mkdir=None"#,
                    r#"network.deniedDomains remove evil.test [16] hold=["removes an explicit deny rule (network.deniedDomains)"] mkdir=None"#,
                ]
            );
            assert_eq!(s.already, [9]);
            let no: Vec<(&str, &str, usize)> = s.unanswered.iter().map(|u| (u.why.as_str(), u.what.as_str(), u.answers.len())).collect();
            assert_eq!(no.len(), 5, "{no:?}");
            assert!(no.iter().any(|(why, what, _)| why.starts_with("a mandatory protection that no policy lifts: ~/.bashrc") && what == &"write /h/.bashrc"));
            assert!(no.iter().any(|(why, _, _)| why.contains("--include-protected to propose filesystem.allowGitConfig")));
            assert!(no.iter().any(|(why, _, _)| why.contains("--include-protected to propose network.allowAllUnixSockets")));
            assert!(no.iter().any(|(why, what, _)| why.contains("which no policy changes") && what == &"unshare(CLONE_NEWUSER)"));
            assert!(no.iter().any(|(why, what, _)| why.starts_with("resolved to cloud-metadata address") && what == &"meta.test:80"));
        });
        ctx_with(&policy, &own, true, |s| {
            let sets: Vec<String> = summary(s).into_iter().filter(|l| l.contains(" set ")).collect();
            assert_eq!(sets.len(), 2, "{sets:?}");
            assert!(sets[0].starts_with("filesystem.allowGitConfig set true [5] hold=[\"lifts a mandatory protection"), "{sets:?}");
            assert!(sets[1].starts_with("network.allowAllUnixSockets set true [18] hold=[\"weakens the seccomp deny list"), "{sets:?}");
        });
    }

    #[test]
    fn explanations_name_counts_processes_and_examples() {
        let d = sample();
        assert_eq!(explain(&d, &[0, 1]), "2 denials (create) by npm ×2; e.g. /h/.npm, /h/.npm/_cacache/x");
        assert_eq!(explain(&d, &[10]), "1 denial (connect); e.g. registry.npmjs.org:443");
    }

    #[test]
    fn logs_are_read_with_line_numbers_in_errors() {
        let log = "{\"v\":1,\"type\":\"session_start\",\"seq\":0,\"workspace\":\"/w\",\"home\":\"/h\"}\n{\"v\":1,\"type\":\"denial\",\"seq\":1,\"source\":\"proxy\",\"host\":\"x.io\",\"port\":443,\"detail\":{\"rule\":\"no rule allows it\"}}\n";
        let r = parse_log(log, Path::new("l.jsonl")).unwrap();
        assert_eq!((r.sessions, r.next_seq, r.denials.len()), (1, 2, 1));
        assert_eq!(r.denials[0].rule.as_deref(), Some(NO_RULE));
        assert_eq!(r.workspace.as_deref(), Some(Path::new("/w")));
        let err = parse_log("{\"v\":1,\"type\":\"session_start\"}\nnot json\n", Path::new("l.jsonl")).unwrap_err().to_string();
        assert!(err.starts_with("l.jsonl:2: not a JSON event"), "{err}");
        let err = parse_log("{\"v\":2,\"type\":\"x\"}\n", Path::new("l.jsonl")).unwrap_err().to_string();
        assert_eq!(err, "l.jsonl:1: not an sbx event of schema version 1 (\"v\" is 2)");
        let err = parse_log("", Path::new("l.jsonl")).unwrap_err().to_string();
        assert!(err.contains("holds no session_start event"), "{err}");
    }
}
