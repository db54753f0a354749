//! The schema: every key sbx or fence accepts, with its type and who implements it. A
//! table.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Support {
    /// Implemented by sbx.
    Sbx,
    /// Accepted by fence, ignored by sbx (reported as unsupported).
    Fence,
    /// Accepted with no effect: `extends` and `$schema` (read by discovery), and fence keys
    /// whose purpose sbx serves another way.
    Meta,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Bool,
    /// A boolean that fence's schema also allows to be null.
    OptBool,
    Str,
    Int,
    StrList,
    /// Non-empty strings.
    PathList,
    /// Domain patterns as fence validates them.
    DomainList,
    /// Command rules (`command_rules::Rule`): words, quotes closed.
    CommandList,
    PortList,
    /// A size (`"512M"`, bytes) or `"off"`.
    Size,
    /// A number of tasks or `"off"`.
    Count,
    /// CPUs (`1.5`, `"150%"`) or `"off"`.
    Cpu,
    /// A duration (`"90s"`, seconds) or `"off"`.
    Duration,
    Enum(&'static [&'static str]),
    Object(&'static [Field]),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) support: Support,
}

pub(super) const fn sbx(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        support: Support::Sbx,
    }
}

pub(super) const fn fence(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        support: Support::Fence,
    }
}

pub(super) const fn meta(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        support: Support::Meta,
    }
}

// Field names and types follow fence's `Config` struct
// (fencesandbox/fence internal/config/config.go) and its JSON schema
// (docs/schema/fence.schema.json).
pub(super) const TOP: &[Field] = &[
    meta("$schema", Kind::Str),
    meta("extends", Kind::Str),
    sbx("network", Kind::Object(NETWORK)),
    sbx("filesystem", Kind::Object(FILESYSTEM)),
    sbx("limits", Kind::Object(LIMITS)),
    fence("devices", Kind::Object(DEVICES)),
    fence("macos", Kind::Object(MACOS)),
    sbx("command", Kind::Object(COMMAND)),
    sbx("ssh", Kind::Object(SSH)),
    fence("allowPty", Kind::Bool),
    fence("forceNewSession", Kind::OptBool),
];

pub(super) const NETWORK: &[Field] = &[
    sbx("allowedDomains", Kind::DomainList),
    sbx("deniedDomains", Kind::DomainList),
    sbx("allowPrivateResolution", Kind::DomainList),
    sbx("allowLocalBinding", Kind::Bool),
    sbx("allowLocalOutboundPorts", Kind::PortList),
    sbx("allowUnixSockets", Kind::PathList),
    sbx("allowAllUnixSockets", Kind::Bool),
    fence("allowLocalOutbound", Kind::OptBool),
    fence("httpProxyPort", Kind::Int),
    fence("socksProxyPort", Kind::Int),
    fence("upstreamProxy", Kind::Str),
    fence("defaultAction", Kind::Enum(&["deny", "proxy"])),
];

pub(super) const FILESYSTEM: &[Field] = &[
    sbx("defaultDenyRead", Kind::Bool),
    sbx("allowRead", Kind::PathList),
    sbx("denyRead", Kind::PathList),
    sbx("allowWrite", Kind::PathList),
    sbx("denyWrite", Kind::PathList),
    sbx("allowGitConfig", Kind::Bool),
    fence("strictDenyRead", Kind::Bool),
    fence("wslInterop", Kind::OptBool),
    sbx("allowExecute", Kind::PathList),
    sbx("privateWrite", Kind::PathList),
];

/// sbx's own section; fence has no resource limits.
pub(super) const LIMITS: &[Field] = &[
    sbx("memory", Kind::Size),
    sbx("pids", Kind::Count),
    sbx("cpu", Kind::Cpu),
    sbx("tmpSize", Kind::Size),
    sbx("timeout", Kind::Duration),
];

pub(super) const DEVICES: &[Field] = &[
    fence("mode", Kind::Enum(&["auto", "minimal", "host"])),
    fence("allow", Kind::StrList),
];

pub(super) const MACOS: &[Field] = &[
    fence("mach", Kind::Object(MACH)),
    fence("gpu", Kind::OptBool),
];

pub(super) const MACH: &[Field] = &[
    fence("lookup", Kind::StrList),
    fence("register", Kind::StrList),
];

pub(super) const COMMAND: &[Field] = &[
    sbx("deny", Kind::CommandList),
    sbx("allow", Kind::CommandList),
    sbx("useDefaults", Kind::OptBool),
    // fence masks single-word denied binaries and lets this list opt out; sbx masks none
    // (it checks every exec's argv), so there is nothing to opt out of.
    meta("acceptSharedBinaryCannotRuntimeDeny", Kind::StrList),
    // fence's "path" or "argv" enforcement at exec; sbx always checks the argv.
    meta("runtimeExecPolicy", Kind::Enum(&["path", "argv"])),
];

pub(super) const SSH: &[Field] = &[
    sbx("allowedHosts", Kind::StrList),
    sbx("deniedHosts", Kind::StrList),
    sbx("allowedCommands", Kind::CommandList),
    sbx("deniedCommands", Kind::CommandList),
    sbx("allowAllCommands", Kind::Bool),
    sbx("inheritDeny", Kind::Bool),
];

/// The dotted paths of every key fence accepts that sbx ignores.
pub fn fence_only_keys() -> Vec<String> {
    fn walk(fields: &[Field], parent: &str, inherited: Support, out: &mut Vec<String>) {
        for f in fields {
            let path = join_key(parent, f.name);
            let support = if inherited == Support::Fence {
                Support::Fence
            } else {
                f.support
            };
            match f.kind {
                Kind::Object(sub) => walk(sub, &path, support, out),
                _ if support == Support::Fence => out.push(path),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(TOP, "", Support::Sbx, &mut out);
    out
}

/// The list a key of the schema holds (`"filesystem.allowWrite"`), in `config`: the one
/// mapping from a key to its field, for the parser and for `learn`'s additions.
pub fn strings_mut<'a>(config: &'a mut Config, key: &str) -> Option<&'a mut Vec<String>> {
    let (fs, net) = (&mut config.filesystem, &mut config.network);
    Some(match key {
        "network.allowedDomains" => &mut net.allowed_domains,
        "network.deniedDomains" => &mut net.denied_domains,
        "network.allowPrivateResolution" => &mut net.allow_private_resolution,
        "network.allowUnixSockets" => &mut net.allow_unix_sockets,
        "command.deny" => &mut config.command.deny,
        "command.allow" => &mut config.command.allow,
        "ssh.allowedHosts" => &mut config.ssh.allowed_hosts,
        "ssh.deniedHosts" => &mut config.ssh.denied_hosts,
        "ssh.allowedCommands" => &mut config.ssh.allowed_commands,
        "ssh.deniedCommands" => &mut config.ssh.denied_commands,
        "filesystem.allowRead" => &mut fs.allow_read,
        "filesystem.allowExecute" => &mut fs.allow_execute,
        "filesystem.denyRead" => &mut fs.deny_read,
        "filesystem.allowWrite" => &mut fs.allow_write,
        "filesystem.denyWrite" => &mut fs.deny_write,
        "filesystem.privateWrite" => &mut fs.private_write,
        _ => return None,
    })
}

/// The switch a key of the schema holds (`"filesystem.allowGitConfig"`), in `config`.
pub fn flag_mut<'a>(config: &'a mut Config, key: &str) -> Option<&'a mut bool> {
    let (fs, net) = (&mut config.filesystem, &mut config.network);
    Some(match key {
        "network.allowLocalBinding" => &mut net.allow_local_binding,
        "network.allowAllUnixSockets" => &mut net.allow_all_unix_sockets,
        "filesystem.defaultDenyRead" => &mut fs.default_deny_read,
        "filesystem.allowGitConfig" => &mut fs.allow_git_config,
        "ssh.allowAllCommands" => &mut config.ssh.allow_all_commands,
        "ssh.inheritDeny" => &mut config.ssh.inherit_deny,
        _ => return None,
    })
}
