//! Classifying denials against the policy: what would answer each (or why nothing may),
//! generalised and flagged as risky where it touches credentials, agents' configuration or
//! what runs outside the sandbox.

use super::*;

/// What would answer one denial.
pub(super) enum Need {
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

pub(super) const CREDENTIAL_DIRS: &[&str] = &[".ssh", ".aws", ".gnupg", ".kube", ".docker", ".azure", ".config/gh", ".config/gcloud", ".password-store", ".local/share/keyrings", ".vault-token"];
pub(super) const CREDENTIAL_FILES: &[&str] = &[".netrc", ".git-credentials", ".npmrc", ".pypirc", ".pgpass", "credentials", "credentials.json", ".vault-token"];

/// Why a path holds or is credentials, if it does.
pub(super) fn credential(path: &Path, home: Option<&Path>) -> Option<String> {
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
pub(super) const AGENT_CONFIG: &[&str] = &[".claude", ".claude.json", ".codex", ".cursor", ".gemini", ".opencode", ".factory", ".copilot", ".amp", ".mcp.json", ".vscode/tasks.json", ".vscode"];

/// Why writing `path` could make something run outside the sandbox later, if it could:
/// it is (or holds) a home path of `HOME_PROTECTED`, a directory of the user's PATH
/// (`path_dirs`), or agent or editor configuration.
pub(super) fn runs_outside(path: &Path, home: Option<&Path>, workspace: &Path, path_dirs: &[PathBuf]) -> Option<String> {
    let hit = |p: &Path| path.starts_with(p) || p.starts_with(path);
    if let Some(d) = path_dirs.iter().find(|d| hit(d)) {
        return Some(format!("{} is on your PATH: a program placed there runs outside the sandbox", d.display()));
    }
    if let Some(home) = home {
        // Those inside agent configuration (`~/.claude/.config.json`) are said so below.
        for name in crate::policy::HOME_PROTECTED.iter().filter(|n| !AGENT_CONFIG.iter().any(|a| Path::new(n).starts_with(a))) {
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

pub(super) fn is_write(d: &Observed) -> bool {
    d.operation.is_some_and(crate::report::Operation::writes) || d.errno.as_deref() == Some("EROFS")
}

/// The directory that owns `path` under the home directory: its first
/// component, or two (three under `.local`) for the XDG containers.
pub(super) fn home_anchor(path: &Path, home: &Path) -> Option<PathBuf> {
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
    pub(super) fn home(&self) -> Option<&Path> {
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
    pub(super) fn own_entry(&self, list: &[String], resolved: &Path) -> Option<String> {
        list.iter().find(|e| self.resolve(e).is_some_and(|r| r == resolved)).cloned()
    }

    /// A path entry of the policy file, resolved as the policy resolves it.
    pub(super) fn resolve(&self, entry: &str) -> Option<PathBuf> {
        crate::policy::resolve_path("", entry, &self.policy.workspace, self.home()).ok()
    }

    pub(super) fn protected(&self, path: &Path) -> Option<PathBuf> {
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

    pub(super) fn classify(&self, d: &Observed, rules: &Rules) -> Need {
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
                // Transparent egress refused an operation on a socket of the host's network.
                if d.reason.as_deref().is_some_and(|r| r.starts_with("transparent egress")) {
                    return no("transparent egress: a socket sbx connected on the host is never bound, made to listen or pointed elsewhere, whatever the policy", what);
                }
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
            "command" => {
                let argv = d.argv.clone().unwrap_or_default();
                if argv.is_empty() {
                    return no("the refused command line was not recorded", "exec ?".into());
                }
                if d.rule.as_deref().is_some_and(|r| r.starts_with("ssh") || r.starts_with("command:")) || d.rule.is_none() {
                    return no("an ssh rule or a program sbx could not identify: suggest proposes no change for it", argv);
                }
                // The program by the file that ran, not by argv[0], which the command chose
                // (`execve("/usr/bin/git", ["make", "push"])` must not become "make push").
                let mut words = crate::command_rules::words_of(&argv);
                if let (Some(first), Some(file)) = (words.first_mut(), d.path.as_ref().and_then(|p| p.file_name())) {
                    *first = file.to_string_lossy().into_owned();
                }
                let argv = crate::command_rules::join_words(&words);
                Need::Add { key: "command.allow", entry: argv }
            }
            // sbx's DNS refused a name: the connect that would have followed names the port,
            // so nothing is proposed but the private-address opt-in.
            "dns" => {
                let name = d.host.clone().unwrap_or_else(|| "?".into());
                let rule = d.rule.as_deref().unwrap_or(NO_RULE);
                if rule.contains("DNS rebinding defence") {
                    return match Host::parse(&name) {
                        Ok(Host::Name(_)) if self.policy.net.allow_private_resolution.iter().any(|e| e == &name) => Need::Already,
                        Ok(Host::Name(_)) => Need::Add { key: "network.allowPrivateResolution", entry: name },
                        _ => no("the name resolved to a private address (DNS rebinding defence)", name),
                    };
                }
                no(&format!("a name sbx's DNS refused ({rule}): allowedDomains takes it with the port the program connects to (name:port)"), name)
            }
            "netns" => {
                let what = match (&d.host, d.port) {
                    (Some(h), Some(p)) => crate::report::host_port(h, p),
                    _ => d.syscall.clone().unwrap_or_else(|| "?".into()),
                };
                if d.port == Some(53) {
                    no("a DNS query from the sandbox to a server other than sbx's, which the sandbox's network does not reach: names are resolved by sbx's DNS at 127.0.0.1 (its /etc/resolv.conf)", what)
                } else {
                    no("a datagram (UDP) from the sandbox, which has no network but loopback: only TCP leaves it, decided by name (transparent egress or the proxy), and no policy adds a route", what)
                }
            }
            _ if d.syscall.as_deref() == Some("bind") && d.path.is_none() => {
                if self.policy.net.allow_local_binding { Need::Already } else { Need::Set { key: "network.allowLocalBinding" } }
            }
            _ => {
                let Some(path) = d.path.clone() else {
                    return no("the path was not recorded", d.syscall.clone().unwrap_or_else(|| "?".into()));
                };
                let op = d.operation.map_or("access", crate::report::Operation::as_str);
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
                    let target = if dir || !matches!(op, "create" | "delete" | "rename") {
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
                ("command.allow", _) => vec!["an exception to a command rule: this command line (and any that starts with it) runs".into()],
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

    pub(super) fn paths(&self, key: &'static str, targets: Vec<(PathBuf, bool, usize)>) -> Vec<Proposal> {
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

    pub(super) fn domains(&self, wanted: Vec<(Host, u16, usize)>) -> Vec<Proposal> {
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
        if let Some(op) = d.operation {
            ops.insert(op.to_string());
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
