//! The validated policy: what the command may read, write and reach, with
//! every path absolute. Pure: nothing here touches the host, so the rules are
//! unit-tested exactly; `launch` turns a `Policy` into a plan for this host.

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

use crate::config::Config;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("\"{key}\" entry {entry:?}: {why}")]
    CommandRule { key: &'static str, entry: String, why: String },
    #[error("\"filesystem.{key}\" entry {value:?} uses `~` but HOME is not set")]
    NoHome { key: &'static str, value: String },
    #[error("\"filesystem.{key}\" entry {value:?}: `~user` paths are not supported; write the absolute path")]
    TildeUser { key: &'static str, value: String },
    #[error("the policy file {} could be changed by the command it confines (it is inside the writable {}); move it out of the workspace and the allowWrite paths, or make it the workspace's own sbx.jsonc, which is read-only in the sandbox", .file.display(), .writable.display())]
    WritablePolicyFile { file: PathBuf, writable: PathBuf },
    #[error("the workspace {} is {why}, where a command could change what runs outside the sandbox later; run sbx from a project directory, or pass --unsafe-workspace to accept it", .workspace.display())]
    UnsafeWorkspace { workspace: PathBuf, why: &'static str },
    #[error("\"filesystem.privateWrite\" entry {value:?}: {why}")]
    PrivateWrite { value: String, why: &'static str },
}

/// System directories that are never a project: a workspace at or under one is refused
/// (`--unsafe-workspace` accepts it), except under [`TEMP_DIRS`].
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/var", "/opt", "/srv", "/proc", "/sys",
    "/dev", "/run", "/nix", "/snap",
];
/// Shared temporary directories inside [`SYSTEM_DIRS`] that hold ordinary workspaces.
const TEMP_DIRS: &[&str] = &["/var/tmp"];

/// Why `workspace` must not be one, if it must not: `/`, the home directory, a parent of
/// it, or a system directory. Both paths canonical.
pub fn unsafe_workspace(workspace: &Path, home: Option<&Path>) -> Option<PolicyError> {
    let why = if workspace == Path::new("/") {
        "the root directory"
    } else if home.is_some_and(|h| h == workspace) {
        "your home directory"
    } else if home.is_some_and(|h| h.starts_with(workspace)) {
        "a parent of your home directory"
    } else if SYSTEM_DIRS.iter().any(|d| workspace.starts_with(d)) && !TEMP_DIRS.iter().any(|t| workspace.starts_with(t)) {
        "a system directory"
    } else {
        return None;
    };
    Some(PolicyError::UnsafeWorkspace { workspace: workspace.to_path_buf(), why })
}

/// Dotfiles that are read-only in the workspace and in $HOME whatever the
/// policy says: each is run or read by a shell, git or an editor outside the
/// sandbox later, so a write would be code execution outside it.
pub const PROTECTED_FILES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".zshenv",
    ".zshrc",
    ".zprofile",
    ".zlogin",
    ".zlogout",
    ".profile",
    ".gitconfig",
    ".gitmodules",
    ".ripgreprc",
    ".mcp.json",
    // sbx's own policy: a command that could edit it would widen its next run.
    "sbx.jsonc",
    "sbx.json",
];
/// Directories that are read-only in the workspace and in $HOME.
pub const PROTECTED_DIRS: &[&str] = &[".vscode", ".idea", ".config/sbx"];
/// Paths of $HOME whose contents run outside the sandbox later (desktop and systemd user
/// startup, ssh, git's XDG configuration, the usual PATH directories of toolchains):
/// read-only whatever `allowWrite` says, unless an `allowWrite` entry names the exact
/// path. Every directory of the user's `$PATH` inside the home or the workspace is
/// treated alike ([`Policy::path_dirs`]).
pub const HOME_PROTECTED: &[&str] = &[
    ".xprofile",
    ".xsessionrc",
    ".pam_environment",
    ".ssh",
    ".config/fish",
    ".config/autostart",
    ".config/systemd",
    ".config/environment.d",
    ".config/git",
    ".local/bin",
    ".cargo/bin",
    ".bun/bin",
    ".deno/bin",
    ".volta/bin",
    ".npm-global/bin",
    "go/bin",
    ".pyenv/shims",
    ".rbenv/shims",
    // Code the coding agents load on the host from inside their own state, which the
    // coding templates make writable: opencode's plugins, custom tools and the packages
    // they import, gemini-cli's extensions (MCP servers) and custom commands (shell
    // injections), Codex's command rules (what it may run unasked).
    ".config/opencode/node_modules",
    ".config/opencode/plugin",
    ".config/opencode/plugins",
    ".config/opencode/tool",
    ".config/opencode/tools",
    ".gemini/extensions",
    ".gemini/commands",
    ".codex/rules",
    // Claude Code's legacy state file: where it exists, Claude Code on the host reads it
    // instead of ~/.claude.json (its MCP servers, its trusted projects).
    ".claude/.config.json",
];

/// Environment variables removed before the command starts: each changes
/// what the dynamic loader or an interpreter loads.
pub const UNSAFE_ENV: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "LD_DEBUG",
    "LD_DEBUG_OUTPUT",
    "LD_PROFILE",
    "LD_ORIGIN_PATH",
    "LD_DYNAMIC_WEAK",
    "LD_BIND_NOW",
    "LD_SHOW_AUXV",
    "GCONV_PATH",
    "MALLOC_TRACE",
    "BASH_ENV",
    "ENV",
    "PROMPT_COMMAND",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The project directory: the command's working directory, writable.
    pub workspace: PathBuf,
    /// The invoking user's home, for `~` and the mandatory protections.
    pub home: Option<PathBuf>,
    pub fs: FsPolicy,
    pub net: NetPolicy,
    /// Resource limits, defaults applied.
    pub limits: crate::limits::Limits,
    /// The directories of the user's `$PATH` inside the home or the workspace (a program
    /// planted there runs outside the sandbox): read-only like [`HOME_PROTECTED`].
    pub path_dirs: Vec<PathBuf>,
    /// fence's command rules, checked at every exec.
    pub commands: crate::command_rules::CommandRules,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsPolicy {
    /// Only system paths, the workspace and `allow_read` are readable.
    pub default_deny_read: bool,
    pub allow_read: Vec<PathBuf>,
    /// Under `default_deny_read`: run and read files there, not list directories (fence's
    /// `allowExecute`: Landlock's EXECUTE and READ_FILE without READ_DIR).
    pub allow_execute: Vec<PathBuf>,
    pub deny_read: Vec<PathBuf>,
    pub allow_write: Vec<PathBuf>,
    pub deny_write: Vec<PathBuf>,
    pub allow_git_config: bool,
    /// allowWrite and privateWrite entries written with a trailing `/` inside the home directory (not the
    /// home itself, not globs): directories sbx creates before the sandbox starts when they
    /// are missing (`missing::create_write_dirs`), so that a fresh user's first
    /// `npm install` finds `~/.npm`.
    pub create_dirs: Vec<PathBuf>,
    /// `privateWrite` (sbx's): directories inside the home that the command sees and writes
    /// as a copy of its own, kept by sbx for the sandboxes of this user
    /// (`launch::private_store`), never the host's: a package cache the host's tools read
    /// (cargo's registry sources, pip's wheels, Go's build cache) cannot be poisoned.
    pub private_write: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    pub allowed_domains: Vec<String>,
    pub denied_domains: Vec<String>,
    /// `allowPrivateResolution`: allowed names that may resolve to private or
    /// loopback addresses.
    pub allow_private_resolution: Vec<String>,
    /// Unix-domain sockets may be created (and so host sockets reached).
    pub allow_all_unix_sockets: bool,
    /// `allowUnixSockets`: socket files (absolute, on the host) that the command may connect
    /// to; the seccomp supervisor mediates every connect(2) when it is not empty.
    pub allow_unix_sockets: Vec<PathBuf>,
    /// The command may listen on TCP ports of the sandbox's loopback.
    pub allow_local_binding: bool,
    /// Ports of the host's loopback the command may reach.
    pub allow_local_outbound_ports: Vec<u16>,
    /// Ports exposed on the host (`-p`): the command may bind them.
    pub inbound_ports: Vec<u16>,
}

/// Host secrets hidden from the command when sbx runs as root (the command is then uid 0
/// without capabilities, which file permissions still treat as the owner of root's files):
/// password hashes, host keys and credential stores. An unprivileged user cannot read them
/// anyway. A path named exactly in `allowRead` or `allowWrite` is left visible. Globs are
/// expanded on the host at start. `/root` itself is handled apart ([`ROOT_HOME`]).
pub const HOST_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/security/opasswd",
    "/etc/ssh/ssh_host_*_key",
    "/etc/ssl/private",
    "/etc/krb5.keytab",
    "/etc/credstore",
    "/etc/credstore.encrypted",
    "/etc/wireguard",
    "/etc/NetworkManager/system-connections",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/letsencrypt",
    "/etc/mysql/debian.cnf",
    "/etc/kubernetes",
    "/etc/ipsec.secrets",
    "/etc/ppp/chap-secrets",
    "/etc/ppp/pap-secrets",
    "/etc/openvpn",
    "/etc/dropbear",
    "/var/backups/shadow.bak",
    "/var/backups/gshadow.bak",
    "/var/cache/debconf/passwords.dat",
    "/var/log/btmp",
    "/var/mail",
    "/var/spool/mail",
    "/var/spool/cron",
    "/var/lib/samba/private",
    "/var/lib/tailscale",
    "/var/lib/kubelet",
    "/var/lib/sss",
    "/var/lib/private",
    "/var/lib/polkit-1",
    "/var/lib/systemd/credential.secret",
    "/var/lib/NetworkManager",
    "/var/lib/iwd",
    "/var/lib/bluetooth",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/libvirt",
    "/var/lib/machines",
    "/var/lib/postgresql",
    "/var/lib/mysql",
    "/var/lib/redis",
];

/// root's home, hidden from the command when sbx runs as root, except the workspace and the
/// paths `allowRead`/`allowWrite` name inside it: a toolchain installed there (`~/.cargo`,
/// `~/.pyenv`) is used by naming it in `allowRead`.
pub const ROOT_HOME: &str = "/root";

/// System paths that stay readable under `default_deny_read`: what programs
/// need to start (loader, libraries, certificates, locale, timezone).
pub const SYSTEM_READ: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/var/lib", "/run/current-system", "/nix/store"];

impl Policy {
    /// The built-in default: the whole filesystem readable, the workspace and
    /// a private /tmp writable, no network, mandatory protections on.
    pub fn builtin(workspace: PathBuf, home: Option<PathBuf>) -> Self {
        Self { workspace, home, fs: FsPolicy::default(), net: NetPolicy::default(), limits: crate::limits::Limits::default(), path_dirs: Vec::new(), commands: crate::command_rules::CommandRules::default() }
    }

    /// Validates a merged config for this workspace: `~` becomes the home
    /// directory, relative paths are taken from the workspace, `.` and `..`
    /// are resolved lexically. Glob patterns are expanded by `launch`, which
    /// knows the host; here they are kept as absolute patterns.
    pub fn from_config(config: &Config, workspace: PathBuf, home: Option<PathBuf>) -> Result<Self, PolicyError> {
        let fs = &config.filesystem;
        let resolve = |key: &'static str, list: &[String]| -> Result<Vec<PathBuf>, PolicyError> {
            list.iter().map(|v| resolve_path(key, v, &workspace, home.as_deref())).collect()
        };
        let fs = FsPolicy {
            default_deny_read: fs.default_deny_read,
            allow_read: resolve("allowRead", &fs.allow_read)?,
            allow_execute: resolve("allowExecute", &fs.allow_execute)?,
            deny_read: resolve("denyRead", &fs.deny_read)?,
            allow_write: resolve("allowWrite", &fs.allow_write)?,
            deny_write: resolve("denyWrite", &fs.deny_write)?,
            allow_git_config: fs.allow_git_config,
            create_dirs: fs
                .allow_write
                .iter()
                .chain(&fs.private_write)
                .filter(|v| v.ends_with('/') && !is_glob(Path::new(v.as_str())))
                .map(|v| resolve_path("allowWrite", v, &workspace, home.as_deref()))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|p| home.as_ref().is_some_and(|h| p.starts_with(h) && p != h))
                .collect(),
            private_write: fs
                .private_write
                .iter()
                .map(|v| {
                    let p = resolve_path("privateWrite", v, &workspace, home.as_deref())?;
                    let why = if is_glob(&p) {
                        "a pattern; name a directory"
                    } else if !home.as_ref().is_some_and(|h| p.starts_with(h) && p != *h) {
                        "not a directory inside your home (privateWrite is for caches there)"
                    } else if workspace.starts_with(&p) || p.starts_with(&workspace) {
                        "the workspace, inside it or a parent of it, which must stay the host's"
                    } else {
                        return Ok(p);
                    };
                    Err(PolicyError::PrivateWrite { value: v.clone(), why })
                })
                .collect::<Result<_, _>>()?,
        };
        let net = NetPolicy {
            allowed_domains: config.network.allowed_domains.clone(),
            denied_domains: config.network.denied_domains.clone(),
            allow_private_resolution: config.network.allow_private_resolution.clone(),
            allow_all_unix_sockets: config.network.allow_all_unix_sockets,
            allow_unix_sockets: config
                .network
                .allow_unix_sockets
                .iter()
                .map(|v| resolve_path("allowUnixSockets", v, &workspace, home.as_deref()))
                .collect::<Result<_, _>>()?,
            allow_local_binding: config.network.allow_local_binding,
            allow_local_outbound_ports: config.network.allow_local_outbound_ports.clone(),
            inbound_ports: Vec::new(),
        };
        // The memory default depends on the host: `main` resolves the limits again with it.
        let limits = crate::limits::Limits::resolve(&config.limits, None);
        // The config's parser checked every rule; a rule that is not one here is a bug.
        let c = &config.command;
        let mut commands = crate::command_rules::CommandRules::new(&c.deny, &c.allow, c.use_defaults)
            .map_err(|(key, entry, why)| PolicyError::CommandRule { key, entry, why })?;
        let (s, rules) = (&config.ssh, crate::command_rules::Rule::parse_list);
        let rule_error = |(key, entry, why)| PolicyError::CommandRule { key, entry, why };
        commands.ssh = crate::command_rules::SshRules {
            allowed_hosts: s.allowed_hosts.clone(),
            denied_hosts: s.denied_hosts.clone(),
            allowed_commands: rules("ssh.allowedCommands", &s.allowed_commands).map_err(rule_error)?,
            denied_commands: rules("ssh.deniedCommands", &s.denied_commands).map_err(rule_error)?,
            allow_all_commands: s.allow_all_commands,
            inherit_deny: s.inherit_deny,
        };
        Ok(Self { workspace, home, fs, net, limits, path_dirs: Vec::new(), commands })
    }

    /// Directories and files the command may write, before deny rules.
    /// Each `privateWrite` directory and the directory of sbx's store that the sandbox sees
    /// there instead: `<state>/sbx/private/<the path without its leading />`, where `<state>`
    /// is `$XDG_STATE_HOME` or the home's `.local/state` (the user's, under sudo). None
    /// without a home.
    pub fn private_dirs(&self) -> Vec<(PathBuf, PathBuf)> {
        let state = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()).map(PathBuf::from).filter(|p| p.is_absolute());
        let Some(state) = state.or_else(|| self.home.as_ref().map(|h| h.join(".local/state"))) else { return Vec::new() };
        let store = normalize(&state).join("sbx/private");
        self.fs.private_write.iter().map(|p| (p.clone(), store.join(p.strip_prefix("/").unwrap_or(p)))).collect()
    }

    pub fn writable(&self) -> Vec<PathBuf> {
        let mut out = vec![self.workspace.clone()];
        out.extend(self.fs.allow_write.iter().cloned());
        out
    }

    /// Paths that must be read-only even inside writable directories: the
    /// mandatory protections plus `denyWrite`. Candidates only: `launch`
    /// keeps the ones that exist on the host.
    pub fn read_only_within_writable(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut roots = vec![self.workspace.as_path()];
        if let Some(home) = &self.home
            && home != &self.workspace {
                roots.push(home);
            }
        for root in roots {
            for name in PROTECTED_FILES.iter().chain(PROTECTED_DIRS) {
                out.push(root.join(name));
            }
        }
        out.push(self.workspace.join(".git/hooks"));
        if !self.fs.allow_git_config {
            out.push(self.workspace.join(".git/config"));
        }
        // Named exactly in allowWrite: the user's explicit choice.
        let home_protected = self.home.iter().flat_map(|h| HOME_PROTECTED.iter().map(move |n| h.join(n)));
        out.extend(home_protected.chain(self.path_dirs.iter().cloned()).filter(|p| !self.fs.allow_write.contains(p)));
        out.extend(self.fs.deny_write.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|p| seen.insert(p.clone()));
        out
    }

    /// Keeps the directories of `path_env` (a `$PATH` value) that are inside the home or the
    /// workspace, for [`Policy::path_dirs`]. Relative entries are skipped (they name a
    /// different directory in every working directory), and so are the workspace, the home
    /// and their parents, which cannot be made read-only as a whole.
    pub fn set_path_dirs(&mut self, path_env: &std::ffi::OsStr) {
        let roots: Vec<&Path> = std::iter::once(self.workspace.as_path()).chain(self.home.as_deref()).collect();
        self.path_dirs = std::env::split_paths(path_env)
            .filter(|d| d.is_absolute())
            .map(|d| normalize(&d))
            .filter(|d| roots.iter().any(|r| d.starts_with(r)) && !roots.iter().any(|r| r.starts_with(d)))
            .fold(Vec::new(), |mut out, d| {
                if !out.contains(&d) {
                    out.push(d);
                }
                out
            });
    }

    /// Refuses a policy file (`-s`, found, or reached through `extends`; canonical paths)
    /// that the command could change: inside the workspace or an allowWrite path and not
    /// under a read-only protection. A policy must not be editable by what it confines.
    pub fn check_policy_files<'a>(&self, files: impl IntoIterator<Item = &'a Path>) -> Result<(), PolicyError> {
        let read_only = self.read_only_within_writable();
        for file in files {
            if read_only.iter().any(|r| file.starts_with(r)) {
                continue;
            }
            if let Some(w) = self.writable().into_iter().find(|w| file.starts_with(w)) {
                return Err(PolicyError::WritablePolicyFile { file: file.to_path_buf(), writable: w });
            }
        }
        Ok(())
    }

    /// Whether `path` is the workspace or inside it.
    pub fn in_workspace(&self, path: &Path) -> bool {
        path.starts_with(&self.workspace)
    }
}

/// Whether a path pattern has glob syntax (`*`, `?`, `[`).
pub fn is_glob(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// A policy file's path entry as an absolute path (`~`, relative to the
/// workspace, `.` and `..`); `key` names the list in errors.
pub(crate) fn resolve_path(key: &'static str, value: &str, workspace: &Path, home: Option<&Path>) -> Result<PathBuf, PolicyError> {
    let raw = if value == "~" || value.starts_with("~/") {
        let home = home.ok_or_else(|| PolicyError::NoHome { key, value: value.to_string() })?;
        home.join(value.trim_start_matches('~').trim_start_matches('/'))
    } else if value.starts_with('~') {
        return Err(PolicyError::TildeUser { key, value: value.to_string() });
    } else if Path::new(value).is_absolute() {
        PathBuf::from(value)
    } else {
        workspace.join(value)
    };
    let path = normalize(&raw);
    // `DIR/**` (everything below a literal directory, as Claude Code and fence users write
    // it) is the directory itself: one bind or mask instead of one per file below, and it
    // covers what is created there later.
    if path.file_name().is_some_and(|n| n == "**")
        && let Some(dir) = path.parent()
        && !is_glob(dir)
    {
        return Ok(dir.to_path_buf());
    }
    Ok(path)
}

/// Resolves `.` and `..` without touching the filesystem.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_paths_resolve_against_home_and_workspace() {
        let mut c = Config::default();
        c.filesystem.deny_read = vec!["~/.ssh".into(), ".env".into(), "/etc/shadow".into(), "sub/../x".into(), "**/.env".into()];
        let p = Policy::from_config(&c, "/w".into(), Some("/h".into())).unwrap();
        assert_eq!(p.fs.deny_read, ["/h/.ssh", "/w/.env", "/etc/shadow", "/w/x", "/w/**/.env"].map(PathBuf::from));
        assert!(is_glob(&p.fs.deny_read[4]));
        assert!(!is_glob(&p.fs.deny_read[0]));
        let err = Policy::from_config(&c, "/w".into(), None).unwrap_err();
        assert_eq!(err.to_string(), "\"filesystem.denyRead\" entry \"~/.ssh\" uses `~` but HOME is not set");
    }

    /// privateWrite: directories inside the home, each with its store; a pattern, a path
    /// outside the home, the home itself and the workspace's line are refused in one sentence.
    #[test]
    fn private_write_is_for_directories_inside_the_home() {
        let mut c = Config::default();
        c.filesystem.private_write = vec!["~/.cache".into(), "~/.cargo/registry/".into()];
        let p = Policy::from_config(&c, "/h/w".into(), Some("/h".into())).unwrap();
        assert_eq!(p.fs.private_write, ["/h/.cache", "/h/.cargo/registry"].map(PathBuf::from));
        let dirs = p.private_dirs();
        let store = dirs[0].1.parent().unwrap().parent().unwrap().to_path_buf();
        assert!(store.ends_with("sbx/private"), "{dirs:?}");
        assert_eq!(dirs[1], (PathBuf::from("/h/.cargo/registry"), store.join("h/.cargo/registry")));
        for (value, why) in [
            ("~/.cache/**/x*", "a pattern; name a directory"),
            ("/var/cache", "not a directory inside your home (privateWrite is for caches there)"),
            ("~", "not a directory inside your home (privateWrite is for caches there)"),
            (".", "the workspace, inside it or a parent of it, which must stay the host's"),
            ("/h/w/target", "the workspace, inside it or a parent of it, which must stay the host's"),
        ] {
            c.filesystem.private_write = vec![value.into()];
            let err = Policy::from_config(&c, "/h/w".into(), Some("/h".into())).unwrap_err();
            assert_eq!(err.to_string(), format!("\"filesystem.privateWrite\" entry {value:?}: {why}"));
        }
    }

    /// Issue 18, point 3: only allowWrite entries written with a trailing `/` inside the home
    /// (not the home, not globs, not the workspace) are directories to create.
    #[test]
    fn everything_below_a_directory_is_the_directory() {
        let (ws, home) = (Path::new("/w"), Some(Path::new("/h")));
        assert_eq!(resolve_path("denyRead", "~/.ssh/**", ws, home).unwrap(), Path::new("/h/.ssh"));
        assert_eq!(resolve_path("allowWrite", "src/**", ws, home).unwrap(), Path::new("/w/src"));
        // Still globs: a glob above, or more after.
        assert_eq!(resolve_path("denyRead", "**/.env/**", ws, home).unwrap(), Path::new("/w/**/.env/**"));
        assert_eq!(resolve_path("denyRead", "~/.aws/**/*.pem", ws, home).unwrap(), Path::new("/h/.aws/**/*.pem"));
    }

    #[test]
    fn allow_write_directories_to_create_end_in_a_slash_inside_the_home() {
        let mut c = Config::default();
        c.filesystem.allow_write = ["~/.npm/", "~/.cargo/.package-cache", "~/", "/h/x/", "build/", "~/**/cache/", "/elsewhere/"].map(String::from).to_vec();
        let p = Policy::from_config(&c, "/w".into(), Some("/h".into())).unwrap();
        assert_eq!(p.fs.create_dirs, ["/h/.npm", "/h/x"].map(PathBuf::from));
        assert_eq!(p.fs.allow_write[0], PathBuf::from("/h/.npm"));
    }

    #[test]
    fn root_home_its_parents_and_system_directories_are_no_workspace() {
        let home = Some(Path::new("/home/u"));
        let why = |w: &str| unsafe_workspace(Path::new(w), home).map(|e| match e {
            PolicyError::UnsafeWorkspace { why, .. } => why,
            other => panic!("{other}"),
        });
        assert_eq!(why("/"), Some("the root directory"));
        assert_eq!(why("/home/u"), Some("your home directory"));
        assert_eq!(why("/home"), Some("a parent of your home directory"));
        for w in ["/etc", "/usr/bin", "/var", "/var/lib/x", "/run/user/1000", "/opt", "/boot", "/lib64"] {
            assert_eq!(why(w), Some("a system directory"), "{w}");
        }
        for w in ["/home/u/proj", "/tmp/x", "/var/tmp/x", "/srv2", "/work/p", "/usrx"] {
            assert_eq!(why(w), None, "{w}");
        }
        assert_eq!(
            unsafe_workspace(Path::new("/home/u"), home).unwrap().to_string(),
            "the workspace /home/u is your home directory, where a command could change what runs outside the sandbox later; run sbx from a project directory, or pass --unsafe-workspace to accept it"
        );
    }

    #[test]
    fn mandatory_protections_cover_workspace_home_and_git() {
        let p = Policy::builtin("/w".into(), Some("/h".into()));
        let ro = p.read_only_within_writable();
        assert!(ro.contains(&PathBuf::from("/w/.bashrc")));
        assert!(ro.contains(&PathBuf::from("/h/.bashrc")));
        assert!(ro.contains(&PathBuf::from("/w/.vscode")));
        assert!(ro.contains(&PathBuf::from("/w/.git/hooks")));
        assert!(ro.contains(&PathBuf::from("/w/.git/config")));
        let mut p = p;
        p.fs.allow_git_config = true;
        assert!(!p.read_only_within_writable().contains(&PathBuf::from("/w/.git/config")));
    }

    #[test]
    fn a_policy_file_the_command_could_write_is_refused() {
        let mut p = Policy::builtin("/w".into(), Some("/h".into()));
        p.fs.allow_write = vec!["/h/.cache".into()];
        let ok = ["/w/sbx.jsonc", "/h/.config/sbx/sbx.jsonc", "/etc/sbx/base.jsonc", "/w2/base.jsonc"];
        assert_eq!(p.check_policy_files(ok.iter().map(Path::new)), Ok(()));
        for (file, writable) in [("/w/sub/sbx.jsonc", "/w"), ("/w/policies/base.jsonc", "/w"), ("/h/.cache/p.jsonc", "/h/.cache")] {
            assert_eq!(
                p.check_policy_files([Path::new(file)]),
                Err(PolicyError::WritablePolicyFile { file: file.into(), writable: writable.into() })
            );
        }
        assert_eq!(
            p.check_policy_files([Path::new("/w/base.jsonc")]).unwrap_err().to_string(),
            "the policy file /w/base.jsonc could be changed by the command it confines (it is inside the writable /w); move it out of the workspace and the allowWrite paths, or make it the workspace's own sbx.jsonc, which is read-only in the sandbox"
        );
    }

    /// The home's startup and PATH directories are read-only even when allowWrite covers
    /// them, unless an entry names the exact path; so are the user's PATH directories in
    /// the home or the workspace, but never the workspace or the home themselves.
    #[test]
    fn home_startup_and_path_directories_yield_only_to_their_exact_name() {
        let mut p = Policy::builtin("/w".into(), Some("/h".into()));
        p.fs.allow_write = vec!["/h".into(), "/h/.cargo/bin".into()];
        p.set_path_dirs(std::ffi::OsStr::new("/usr/bin:/h/.pyenv/shims:/h/tools/bin:/w/node_modules/.bin:/w:/h:/:rel/bin:/h/tools/bin:/h/x/../.local/bin"));
        assert_eq!(p.path_dirs, ["/h/.pyenv/shims", "/h/tools/bin", "/w/node_modules/.bin", "/h/.local/bin"].map(PathBuf::from));
        let ro = p.read_only_within_writable();
        for path in ["/h/.zshenv", "/w/.bash_login", "/h/.ssh", "/h/.config/autostart", "/h/.config/systemd", "/h/.local/bin", "/h/.bun/bin", "/h/tools/bin", "/w/node_modules/.bin"] {
            assert!(ro.contains(&PathBuf::from(path)), "{path}");
        }
        assert!(!ro.contains(&PathBuf::from("/h/.cargo/bin")), "named exactly in allowWrite");
        assert!(!ro.iter().any(|r| r == Path::new("/w") || r == Path::new("/h")));
    }
}
