//! Owns sbx's policy file: finding it (`-s`, `-t`, the nearest `sbx.jsonc`,
//! the user config, the built-in default), parsing JSONC with fence's field
//! names into [`Config`], resolving and merging `extends` chains, and
//! rendering `sbx config show`.
//!
//! The file format is fence's (fencesandbox/fence, formerly Use-Tusk/fence),
//! so fence users can bring their files unchanged:
//!
//! * Keys sbx implements are parsed into [`Config`].
//! * Keys fence accepts but sbx does not implement (`command`, `ssh`,
//!   `devices`, `macos`, `allowPty`, `network.allowLocalOutbound`, ...) are
//!   type-checked like fence would, then reported in [`Loaded::unsupported`]
//!   so the caller can warn. `filesystem.strictDenyRead: true` also turns on
//!   `defaultDenyRead`, because fence documents that it implies it.
//! * `$schema` (editor metadata in fence's docs) is accepted silently.
//! * Any other key is an error naming the file, line, column and key.
//! * `null` is accepted for any key and means "not set", as Go's
//!   `encoding/json` (which fence uses) treats it.
//!
//! Unlike Go's `encoding/json`, key names are matched case-sensitively; a key
//! that differs only in case is reported as unknown with a suggestion.

pub mod edit;
pub mod jsonc;
pub mod templates;

pub use templates::{STARTER, Template, template, templates};

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::fs;

use serde::Serialize;

use crate::limits::{self, LimitsConfig};
use serde_json::{Map, Value};

use jsonc::{Span, join_index, join_key, line_col};

/// The longest `extends` chain followed, as in fence (`maxExtendsDepth`).
pub const MAX_EXTENDS_DEPTH: usize = 10;

/// File names looked for in the working directory and its parents, and in
/// `$XDG_CONFIG_HOME/sbx/`, in order of preference.
pub const FILE_NAMES: [&str; 2] = ["sbx.jsonc", "sbx.json"];

/// The policy. `Config::default()` is the built-in default: no network, the
/// whole filesystem readable, no extra writable paths (the caller always adds
/// the working directory and a private /tmp).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    pub network: NetworkConfig,
    pub filesystem: FilesystemConfig,
    /// sbx's own: resource limits (not in fence).
    #[serde(skip_serializing_if = "limits_unset", serialize_with = "serialize_limits")]
    pub limits: LimitsConfig,
}

fn limits_unset(l: &LimitsConfig) -> bool {
    *l == LimitsConfig::default()
}

fn serialize_limits<S: serde::Serializer>(l: &LimitsConfig, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let entries = l.entries();
    let mut map = s.serialize_map(Some(entries.len()))?;
    for (k, v) in entries {
        map.serialize_entry(k, &v)?;
    }
    map.end()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfig {
    pub allowed_domains: Vec<String>,
    pub denied_domains: Vec<String>,
    /// sbx's own: allowed names that may resolve to private or loopback
    /// addresses (the DNS-rebinding defence is lifted for them alone).
    pub allow_private_resolution: Vec<String>,
    pub allow_local_binding: bool,
    pub allow_local_outbound_ports: Vec<u16>,
    pub allow_unix_sockets: Vec<String>,
    pub allow_all_unix_sockets: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemConfig {
    pub default_deny_read: bool,
    pub allow_read: Vec<String>,
    pub deny_read: Vec<String>,
    pub allow_write: Vec<String>,
    pub deny_write: Vec<String>,
    pub allow_git_config: bool,
}

impl Config {
    /// Layers `child` (a file that says `"extends": ...`) over `self` (what
    /// it extends), exactly as fence's `config.Merge(base, override)` does
    /// for these fields (fencesandbox/fence `internal/config/config.go`,
    /// documented under "Merge behavior" in `docs/configuration.md`):
    ///
    /// * every list is the parent's items followed by the child's, with
    ///   duplicates removed (first occurrence kept), so a child can only add;
    /// * every boolean is the OR of both, so a child can turn a setting on
    ///   but can never turn off one its parent turned on.
    ///
    /// (fence skips de-duplication when one side is empty; sbx always
    /// de-duplicates, which changes nothing about the policy.)
    pub fn merge_from(&mut self, child: &Config) {
        let (n, c) = (&mut self.network, &child.network);
        union(&mut n.allowed_domains, &c.allowed_domains);
        union(&mut n.denied_domains, &c.denied_domains);
        union(&mut n.allow_private_resolution, &c.allow_private_resolution);
        n.allow_local_binding |= c.allow_local_binding;
        union(
            &mut n.allow_local_outbound_ports,
            &c.allow_local_outbound_ports,
        );
        union(&mut n.allow_unix_sockets, &c.allow_unix_sockets);
        n.allow_all_unix_sockets |= c.allow_all_unix_sockets;

        let (f, c) = (&mut self.filesystem, &child.filesystem);
        f.default_deny_read |= c.default_deny_read;
        union(&mut f.allow_read, &c.allow_read);
        union(&mut f.deny_read, &c.deny_read);
        union(&mut f.allow_write, &c.allow_write);
        union(&mut f.deny_write, &c.deny_write);
        f.allow_git_config |= c.allow_git_config;

        self.limits.merge_from(&child.limits);
    }
}

fn union<T: PartialEq + Clone>(base: &mut Vec<T>, add: &[T]) {
    let mut out: Vec<T> = Vec::with_capacity(base.len() + add.len());
    for item in base.iter().chain(add) {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    *base = out;
}

/// Where one link of the chain came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No file: the built-in default policy.
    BuiltinDefault,
    /// A built-in template, by name.
    Template(&'static str),
    /// A policy file.
    File(PathBuf),
}

impl Origin {
    /// How `sbx config show` names this origin.
    pub fn label(&self) -> String {
        match self {
            Origin::BuiltinDefault => "built-in default policy".to_string(),
            Origin::Template(name) => format!("built-in template \"{name}\""),
            Origin::File(path) => path.display().to_string(),
        }
    }

    /// The name used in error messages and [`UnsupportedKey::file`].
    pub fn error_path(&self) -> PathBuf {
        match self {
            Origin::BuiltinDefault => PathBuf::from("<built-in default>"),
            Origin::Template(name) => template_error_path(name),
            Origin::File(path) => path.clone(),
        }
    }
}

fn template_error_path(name: &str) -> PathBuf {
    PathBuf::from(format!("<template {name}>"))
}

/// How a link of the chain was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Given with `-s FILE`.
    Flag,
    /// Given with `-t TEMPLATE`.
    TemplateFlag,
    /// The nearest `sbx.jsonc`/`sbx.json` in the working directory or a parent.
    Nearest,
    /// `$XDG_CONFIG_HOME/sbx/sbx.jsonc` (or `sbx.json`).
    UserConfig,
    /// Nothing found: the built-in default.
    Default,
    /// Named by the `extends` of the next (more specific) link.
    Extends,
}

/// One link of the extends chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub origin: Origin,
    pub how: Discovery,
}

/// A key fence accepts but sbx does not implement; it was ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedKey {
    /// Dotted key path, e.g. `command.deny` or `network.allowLocalOutbound`.
    pub key: String,
    /// The file (or `<template NAME>`) it is in.
    pub file: PathBuf,
    /// 1-based line of the key.
    pub line: usize,
}

/// The result of [`load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The merged policy.
    pub config: Config,
    /// Where it came from, most general first; the last link is the one
    /// that was discovered (file, template or built-in default).
    pub chain: Vec<Part>,
    /// Ignored fence-only keys, in chain order, then file order.
    pub unsupported: Vec<UnsupportedKey>,
}

impl Loaded {
    /// The policy file that additions go to (`sbx learn`'s result, `--ask`'s "always"
    /// answers): the file in use (the one discovered or given), else, for a template or the
    /// built-in default, a new `sbx.jsonc` in the workspace.
    pub fn edit_target(&self, workspace: &Path) -> PathBuf {
        match self.chain.last().map(|p| &p.origin) {
            Some(Origin::File(f)) => f.clone(),
            _ => workspace.join("sbx.jsonc"),
        }
    }
}

/// What the command line and environment say about where the policy is.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `-s FILE`, relative to `cwd` unless absolute.
    pub file: Option<&'a Path>,
    /// `-t TEMPLATE`.
    pub template: Option<&'a str>,
    /// The working directory; the nearest `sbx.jsonc` is searched from here.
    pub cwd: &'a Path,
    /// `$XDG_CONFIG_HOME`, or `$HOME/.config` when that is unset.
    pub xdg_config_home: Option<&'a Path>,
}

/// A file's own `"extends"` value and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendsRef {
    pub target: String,
    pub line: usize,
    pub column: usize,
}

/// One file parsed on its own, before `extends` is resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFile {
    /// The settings of this file alone.
    pub config: Config,
    /// Its `"extends"`, if set and not empty.
    pub extends: Option<ExtendsRef>,
    /// Fence-only keys found in it.
    pub unsupported: Vec<UnsupportedKey>,
}

/// Everything that can be wrong with the policy or finding it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot use both -s {} and -t {template}; give only one", .file.display())]
    FlagConflict { file: PathBuf, template: String },

    #[error("{}: the policy file given with -s does not exist", .file.display())]
    FlagFileMissing { file: PathBuf },

    #[error("unknown template \"{name}\" given with -t{} (available: {available})", did_you_mean(.suggestion))]
    UnknownTemplateFlag {
        name: String,
        suggestion: Option<String>,
        available: String,
    },

    #[error("cannot read the policy file: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: crate::fsio::FsError,
    },

    #[error("{}:{line}:{column}: invalid JSONC: {message}", .file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{}:{line}:{column}: unknown key \"{key}\"{}", .file.display(), did_you_mean(.suggestion))]
    UnknownKey {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        suggestion: Option<String>,
    },

    #[error("{}:{line}:{column}: \"{key}\" must be {expected}, found {found}", .file.display())]
    WrongType {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        expected: String,
        found: String,
    },

    #[error("{}:{line}:{column}: \"{key}\" contains {found}, which is not allowed: {reason}", .file.display())]
    InvalidEntry {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        found: String,
        reason: String,
    },

    #[error("{}:{line}:{column}: \"extends\" names \"{target}\", but {} does not exist", .file.display(), .resolved.display())]
    ExtendsMissing {
        file: PathBuf,
        line: usize,
        column: usize,
        target: String,
        resolved: PathBuf,
    },

    #[error("{}:{line}:{column}: \"extends\" names unknown template \"{name}\"{} (available: {available}; a file path must contain \"/\" or start with \".\")", .file.display(), did_you_mean(.suggestion))]
    UnknownTemplate {
        file: PathBuf,
        line: usize,
        column: usize,
        name: String,
        suggestion: Option<String>,
        available: String,
    },

    #[error("{}:{line}:{column}: \"extends\" makes a cycle: {chain}", .file.display())]
    ExtendsCycle {
        file: PathBuf,
        line: usize,
        column: usize,
        chain: String,
    },

    #[error("{}:{line}:{column}: \"extends\" goes deeper than {MAX_EXTENDS_DEPTH} levels: {chain}", .file.display())]
    ExtendsTooDeep {
        file: PathBuf,
        line: usize,
        column: usize,
        chain: String,
    },

    #[error("{}:{line}:{column}: \"extends\" of a built-in template must name another template, not \"{target}\"", .file.display())]
    TemplateExtendsFile {
        file: PathBuf,
        line: usize,
        column: usize,
        target: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Schema: every key sbx or fence accepts.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support {
    /// Implemented by sbx.
    Sbx,
    /// Accepted by fence, ignored by sbx (reported as unsupported).
    Fence,
    /// `extends` and `$schema`.
    Meta,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
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
struct Field {
    name: &'static str,
    kind: Kind,
    support: Support,
}

const fn sbx(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        support: Support::Sbx,
    }
}

const fn fence(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        support: Support::Fence,
    }
}

const fn meta(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        support: Support::Meta,
    }
}

// Field names and types follow fence's `Config` struct
// (fencesandbox/fence internal/config/config.go) and its JSON schema
// (docs/schema/fence.schema.json).
const TOP: &[Field] = &[
    meta("$schema", Kind::Str),
    meta("extends", Kind::Str),
    sbx("network", Kind::Object(NETWORK)),
    sbx("filesystem", Kind::Object(FILESYSTEM)),
    sbx("limits", Kind::Object(LIMITS)),
    fence("devices", Kind::Object(DEVICES)),
    fence("macos", Kind::Object(MACOS)),
    fence("command", Kind::Object(COMMAND)),
    fence("ssh", Kind::Object(SSH)),
    fence("allowPty", Kind::Bool),
    fence("forceNewSession", Kind::OptBool),
];

const NETWORK: &[Field] = &[
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

const FILESYSTEM: &[Field] = &[
    sbx("defaultDenyRead", Kind::Bool),
    sbx("allowRead", Kind::PathList),
    sbx("denyRead", Kind::PathList),
    sbx("allowWrite", Kind::PathList),
    sbx("denyWrite", Kind::PathList),
    sbx("allowGitConfig", Kind::Bool),
    fence("strictDenyRead", Kind::Bool),
    fence("wslInterop", Kind::OptBool),
    fence("allowExecute", Kind::StrList),
];

/// sbx's own section; fence has no resource limits.
const LIMITS: &[Field] = &[
    sbx("memory", Kind::Size),
    sbx("pids", Kind::Count),
    sbx("cpu", Kind::Cpu),
    sbx("tmpSize", Kind::Size),
    sbx("timeout", Kind::Duration),
];

const DEVICES: &[Field] = &[
    fence("mode", Kind::Enum(&["auto", "minimal", "host"])),
    fence("allow", Kind::StrList),
];

const MACOS: &[Field] = &[
    fence("mach", Kind::Object(MACH)),
    fence("gpu", Kind::OptBool),
];

const MACH: &[Field] = &[
    fence("lookup", Kind::StrList),
    fence("register", Kind::StrList),
];

const COMMAND: &[Field] = &[
    fence("deny", Kind::StrList),
    fence("allow", Kind::StrList),
    fence("useDefaults", Kind::OptBool),
    fence("acceptSharedBinaryCannotRuntimeDeny", Kind::StrList),
    fence("runtimeExecPolicy", Kind::Enum(&["path", "argv"])),
];

const SSH: &[Field] = &[
    fence("allowedHosts", Kind::StrList),
    fence("deniedHosts", Kind::StrList),
    fence("allowedCommands", Kind::StrList),
    fence("deniedCommands", Kind::StrList),
    fence("allowAllCommands", Kind::Bool),
    fence("inheritDeny", Kind::Bool),
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

// ---------------------------------------------------------------------------
// Parsing one file.

/// Parses one policy file's text (JSONC) without following `extends`.
/// `file` is only used in error messages and [`UnsupportedKey::file`].
/// Text that is empty or only comments parses as `{}`.
pub fn parse_str(text: &str, file: &Path) -> Result<ParsedFile, ConfigError> {
    let json = jsonc::strip(text).map_err(|e| {
        let (line, column) = line_col(text, e.offset);
        ConfigError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message: e.message.to_string(),
        }
    })?;
    if json.trim().is_empty() {
        return Ok(ParsedFile::default());
    }
    let value: Value = serde_json::from_str(&json).map_err(|e| {
        let offset = jsonc::offset_of(text, e.line(), e.column());
        let (line, column) = line_col(text, offset);
        let mut message = e.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        ConfigError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            message,
        }
    })?;

    let mut p = Parser {
        text,
        file,
        pos: jsonc::positions(&json),
        out: ParsedFile::default(),
        strict_deny_read: false,
    };
    match &value {
        Value::Object(root) => p.object(root, "", TOP, Support::Sbx)?,
        other => {
            let (line, column) = p.value_at("");
            return Err(ConfigError::WrongType {
                file: file.to_path_buf(),
                line,
                column,
                key: "(top level)".to_string(),
                expected: "an object".to_string(),
                found: describe(other),
            });
        }
    }
    if p.strict_deny_read {
        p.out.config.filesystem.default_deny_read = true;
    }
    Ok(p.out)
}

enum Typed {
    Bool(bool),
    Str(String),
    Strings(Vec<String>),
    Ports(Vec<u16>),
    Bytes(limits::Setting<u64>),
    Count(limits::Setting<u64>),
    Millicpus(limits::Setting<u32>),
    Duration(limits::Setting<std::time::Duration>),
    Ignored,
}

struct Parser<'a> {
    text: &'a str,
    file: &'a Path,
    pos: std::collections::HashMap<String, Span>,
    out: ParsedFile,
    strict_deny_read: bool,
}

impl Parser<'_> {
    /// Line and column of the key at `path` (or of the value if it has no key).
    fn key_at(&self, path: &str) -> (usize, usize) {
        let offset = self.pos.get(path).map_or(0, Span::start);
        line_col(self.text, offset)
    }

    /// Line and column of the value at `path`.
    fn value_at(&self, path: &str) -> (usize, usize) {
        let offset = self.pos.get(path).map_or(0, |s| s.value);
        line_col(self.text, offset)
    }

    fn wrong_type(
        &self,
        at: &str,
        key: &str,
        expected: impl Into<String>,
        found: &Value,
    ) -> ConfigError {
        let (line, column) = self.value_at(at);
        ConfigError::WrongType {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            expected: expected.into(),
            found: describe(found),
        }
    }

    fn invalid_entry(&self, at: &str, key: &str, found: &Value, reason: &str) -> ConfigError {
        let (line, column) = self.value_at(at);
        ConfigError::InvalidEntry {
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            found: describe(found),
            reason: reason.to_string(),
        }
    }

    fn object(
        &mut self,
        obj: &Map<String, Value>,
        path: &str,
        fields: &'static [Field],
        inherited: Support,
    ) -> Result<(), ConfigError> {
        // Visit keys in file order so the first problem reported is the
        // first one in the file.
        let mut entries: Vec<(&String, &Value)> = obj.iter().collect();
        entries.sort_by_key(|(k, _)| {
            self.pos
                .get(&join_key(path, k))
                .map_or(usize::MAX, Span::start)
        });

        for (key, value) in entries {
            let kpath = join_key(path, key);
            let Some(field) = fields.iter().find(|f| f.name == key.as_str()) else {
                let (line, column) = self.key_at(&kpath);
                return Err(ConfigError::UnknownKey {
                    file: self.file.to_path_buf(),
                    line,
                    column,
                    key: kpath,
                    suggestion: suggest_key(key, path, fields),
                });
            };
            if value.is_null() {
                continue;
            }
            let support = if inherited == Support::Fence {
                Support::Fence
            } else {
                field.support
            };
            match field.kind {
                Kind::Object(sub) => match value {
                    Value::Object(o) => self.object(o, &kpath, sub, support)?,
                    other => return Err(self.wrong_type(&kpath, &kpath, "an object", other)),
                },
                kind => self.leaf(&kpath, kind, support, value)?,
            }
        }
        Ok(())
    }

    fn leaf(
        &mut self,
        path: &str,
        kind: Kind,
        support: Support,
        value: &Value,
    ) -> Result<(), ConfigError> {
        let typed = self.check(path, kind, value)?;
        match support {
            Support::Meta => {
                if path == "extends"
                    && let Typed::Str(target) = typed
                    && !target.is_empty()
                {
                    let (line, column) = self.value_at(path);
                    self.out.extends = Some(ExtendsRef {
                        target,
                        line,
                        column,
                    });
                }
            }
            Support::Fence => {
                if path == "filesystem.strictDenyRead" && value == &Value::Bool(true) {
                    self.strict_deny_read = true;
                }
                if !is_inert(value) {
                    let (line, _) = self.key_at(path);
                    self.out.unsupported.push(UnsupportedKey {
                        key: path.to_string(),
                        file: self.file.to_path_buf(),
                        line,
                    });
                }
            }
            Support::Sbx => self.assign(path, typed),
        }
        Ok(())
    }

    fn check(&self, path: &str, kind: Kind, value: &Value) -> Result<Typed, ConfigError> {
        Ok(match kind {
            Kind::Bool | Kind::OptBool => match value {
                Value::Bool(b) => Typed::Bool(*b),
                other => {
                    let expected = if matches!(kind, Kind::Bool) {
                        "true or false"
                    } else {
                        "true, false or null"
                    };
                    return Err(self.wrong_type(path, path, expected, other));
                }
            },
            Kind::Str => match value {
                Value::String(s) => Typed::Str(s.clone()),
                other => return Err(self.wrong_type(path, path, "a string", other)),
            },
            Kind::Int => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Typed::Ignored,
                other => return Err(self.wrong_type(path, path, "an integer", other)),
            },
            Kind::Enum(options) => match value {
                Value::String(s) if options.contains(&s.as_str()) => Typed::Str(s.clone()),
                other => {
                    let list: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
                    return Err(self.wrong_type(
                        path,
                        path,
                        format!("one of {}", list.join(", ")),
                        other,
                    ));
                }
            },
            Kind::StrList | Kind::PathList | Kind::DomainList => {
                let expected = match kind {
                    Kind::DomainList => "a list of domain patterns (strings)",
                    _ => "a list of strings",
                };
                let Value::Array(items) = value else {
                    return Err(self.wrong_type(path, path, expected, value));
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let at = join_index(path, i);
                    let Value::String(s) = item else {
                        return Err(self.wrong_type(&at, path, expected, item));
                    };
                    match kind {
                        Kind::PathList if s.is_empty() => {
                            return Err(self.invalid_entry(
                                &at,
                                path,
                                item,
                                "paths must not be empty",
                            ));
                        }
                        Kind::DomainList => {
                            if let Err(reason) = check_domain(s) {
                                return Err(self.invalid_entry(&at, path, item, &reason));
                            }
                        }
                        _ => {}
                    }
                    out.push(s.clone());
                }
                Typed::Strings(out)
            }
            Kind::PortList => {
                const EXPECTED: &str = "a list of port numbers 1-65535";
                let Value::Array(items) = value else {
                    return Err(self.wrong_type(path, path, EXPECTED, value));
                };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.as_u64().and_then(|n| u16::try_from(n).ok()) {
                        // The proxy's own ports inside the sandbox cannot be relayed too.
                        Some(port) if port != 0 => match crate::sandbox::ReservedPort::check(port) {
                            Err(reserved) => {
                                return Err(self.invalid_entry(&join_index(path, i), path, item, &reserved.to_string()));
                            }
                            Ok(port) => {
                                if !out.contains(&port) {
                                    out.push(port);
                                }
                            }
                        },
                        _ => {
                            return Err(self.wrong_type(&join_index(path, i), path, EXPECTED, item));
                        }
                    }
                }
                Typed::Ports(out)
            }
            Kind::Size | Kind::Count | Kind::Cpu | Kind::Duration => {
                // A number is bytes, tasks, CPUs or seconds; a string is parsed as the flag is.
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(false) => "off".to_string(),
                    other => return Err(self.wrong_type(path, path, limit_expected(kind), other)),
                };
                let parsed = match kind {
                    Kind::Size => limits::parse_size(&text).map(Typed::Bytes),
                    Kind::Count => limits::parse_count(&text).map(Typed::Count),
                    Kind::Cpu => limits::parse_cpu(&text).map(Typed::Millicpus),
                    _ => limits::parse_duration(&text).map(Typed::Duration),
                };
                parsed.map_err(|reason| self.invalid_entry(path, path, value, &reason))?
            }
            Kind::Object(_) => Typed::Ignored, // handled by `object`
        })
    }

    fn assign(&mut self, path: &str, typed: Typed) {
        let c = &mut self.out.config;
        match (path, typed) {
            ("network.allowedDomains", Typed::Strings(v)) => c.network.allowed_domains = v,
            ("network.deniedDomains", Typed::Strings(v)) => c.network.denied_domains = v,
            ("network.allowPrivateResolution", Typed::Strings(v)) => c.network.allow_private_resolution = v,
            ("network.allowLocalBinding", Typed::Bool(b)) => c.network.allow_local_binding = b,
            ("network.allowLocalOutboundPorts", Typed::Ports(v)) => {
                c.network.allow_local_outbound_ports = v
            }
            ("network.allowUnixSockets", Typed::Strings(v)) => c.network.allow_unix_sockets = v,
            ("network.allowAllUnixSockets", Typed::Bool(b)) => c.network.allow_all_unix_sockets = b,
            ("filesystem.defaultDenyRead", Typed::Bool(b)) => c.filesystem.default_deny_read = b,
            ("filesystem.allowRead", Typed::Strings(v)) => c.filesystem.allow_read = v,
            ("filesystem.denyRead", Typed::Strings(v)) => c.filesystem.deny_read = v,
            ("filesystem.allowWrite", Typed::Strings(v)) => c.filesystem.allow_write = v,
            ("filesystem.denyWrite", Typed::Strings(v)) => c.filesystem.deny_write = v,
            ("filesystem.allowGitConfig", Typed::Bool(b)) => c.filesystem.allow_git_config = b,
            ("limits.memory", Typed::Bytes(v)) => c.limits.memory = Some(v),
            ("limits.pids", Typed::Count(v)) => c.limits.pids = Some(v),
            ("limits.cpu", Typed::Millicpus(v)) => c.limits.cpu = Some(v),
            ("limits.tmpSize", Typed::Bytes(v)) => c.limits.tmp_size = Some(v),
            ("limits.timeout", Typed::Duration(v)) => c.limits.timeout = Some(v),
            // Every Sbx field in the schema tables is listed above.
            _ => {}
        }
    }
}

fn limit_expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Size => "a size such as \"512M\" or \"4G\", or \"off\"",
        Kind::Count => "a number of processes, or \"off\"",
        Kind::Cpu => "a number of CPUs such as 1.5, or \"off\"",
        _ => "a duration such as \"90s\" or \"10m\", or \"off\"",
    }
}

/// A value that has no effect even in fence (false, 0, "", [], {}).
fn is_inert(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// How a value is shown after "found" in an error.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let shown: String = s.chars().take(60).collect();
            let quoted = serde_json::to_string(&shown).unwrap_or_else(|_| format!("\"{shown}\""));
            if shown.len() < s.len() {
                format!("{quoted}...")
            } else {
                quoted
            }
        }
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Checks a domain pattern: the proxy's own parser (`proxy::rules::Pattern`,
/// so the config accepts exactly what the proxy enforces: an optional
/// `:port` and IP literals, which fence lacks), then fence's checks of
/// `validateDomainPattern` on a name: `localhost`, `*`, a domain with a
/// dot, or `*.` followed by one.
fn check_domain(pattern: &str) -> Result<(), String> {
    if pattern.contains("://") || pattern.contains('/') {
        return Err("a domain pattern cannot contain a scheme or path".into());
    }
    if pattern.chars().any(char::is_whitespace) {
        return Err("a domain pattern cannot contain spaces".into());
    }
    crate::proxy::rules::Pattern::parse(pattern)?;
    // The host part, without a `:port` suffix (IPv6 literals are bracketed).
    let host = match pattern.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && !h.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => pattern,
    };
    if host == "localhost" || host == "*" || host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let (wildcard, rest) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host),
    };
    if rest.contains('*') {
        return Err("the only wildcard allowed is a leading \"*.\", as in \"*.example.com\"".into());
    }
    if wildcard && !rest.contains('.') {
        return Err("the wildcard is too broad; use \"*.example.com\", not \"*.com\"".into());
    }
    if !rest.contains('.') || rest.split('.').any(str::is_empty) {
        return Err("it is not a domain name like \"example.com\"".into());
    }
    Ok(())
}

/// Edit distance between two strings, ignoring ASCII case.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn close_enough(key: &str, candidate: &str) -> bool {
    let max = (key.chars().count() / 3).clamp(1, 3);
    distance(key, candidate) <= max
}

/// Suggests a known key for an unknown one: the closest key in the same
/// object, else a key of the same (or nearly the same) name elsewhere, such
/// as `filesystem.allowWrite` for a top-level `allowWrite`.
fn suggest_key(key: &str, parent: &str, fields: &[Field]) -> Option<String> {
    let same_level = fields
        .iter()
        .map(|f| (distance(key, f.name), f.name))
        .min()
        .filter(|(_, name)| close_enough(key, name));
    if let Some((_, name)) = same_level {
        return Some(join_key(parent, name));
    }
    fn search(fields: &[Field], parent: &str, key: &str, best: &mut Option<(usize, String)>) {
        for f in fields {
            let path = join_key(parent, f.name);
            let d = distance(key, f.name);
            if d <= 1 && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
                *best = Some((d, path.clone()));
            }
            if let Kind::Object(sub) = f.kind {
                search(sub, &path, key, best);
            }
        }
    }
    let mut best = None;
    search(TOP, "", key, &mut best);
    best.map(|(_, path)| path)
}

fn suggest_template(name: &str) -> Option<String> {
    templates()
        .iter()
        .map(|t| (distance(name, t.name), t.name))
        .min()
        .filter(|(_, n)| close_enough(name, n))
        .map(|(_, n)| n.to_string())
}

fn template_names() -> String {
    templates()
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks up a template the way fence does: a trailing `.json` (or `.jsonc`)
/// is ignored.
fn find_template(name: &str) -> Option<&'static Template> {
    let bare = name
        .strip_suffix(".jsonc")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(name);
    template(bare)
}

// ---------------------------------------------------------------------------
// Discovery and extends.

#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Template(&'static Template),
    Default,
}

impl Source {
    fn origin(&self) -> Origin {
        match self {
            Source::File(p) => Origin::File(p.clone()),
            Source::Template(t) => Origin::Template(t.name),
            Source::Default => Origin::BuiltinDefault,
        }
    }

    /// Identity for cycle detection: files by canonical path.
    fn id(&self) -> String {
        match self {
            Source::File(p) => {
                let canonical = fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                format!("file:{}", canonical.display())
            }
            Source::Template(t) => format!("template:{}", t.name),
            Source::Default => "default".to_string(),
        }
    }

    fn short_label(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Template(t) => format!("template \"{}\"", t.name),
            Source::Default => "built-in default".to_string(),
        }
    }
}

/// Drops `.` components (`/p/./b.jsonc` -> `/p/b.jsonc`); `..` is kept
/// because resolving it lexically is wrong across symlinks.
fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

/// The first of `sbx.jsonc`, `sbx.json` that exists in `dir`, as anything:
/// a FIFO or a device of that name is then refused by the reader in one
/// sentence, rather than skipped.
fn config_file_in(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.symlink_metadata().is_ok_and(|m| !m.is_dir()))
}

/// The nearest `sbx.jsonc`/`sbx.json` in `cwd` or one of its parents.
pub fn find_nearest(cwd: &Path) -> Option<PathBuf> {
    cwd.ancestors().find_map(config_file_in)
}

/// `<xdg_config_home>/sbx/sbx.jsonc` (or `sbx.json`) if it exists.
pub fn find_user_config(xdg_config_home: Option<&Path>) -> Option<PathBuf> {
    config_file_in(&xdg_config_home?.join("sbx"))
}

/// Finds, parses and merges the policy for `req`.
///
/// Discovery: `-s` if given (a missing file is an error), else `-t`, else
/// the nearest `sbx.jsonc`/`sbx.json` in the working directory or a parent
/// (`.jsonc` wins in the same directory), else the user config, else the
/// built-in default. Giving both `-s` and `-t` is an error.
///
/// `extends`, as in fence: a value containing `/` or `\` or starting with
/// `.` is a file path, relative to the directory of the file containing it;
/// `@base` is the user config (or the built-in default if there is none);
/// anything else is a built-in template name. A template can only extend a
/// template. Cycles and chains longer than [`MAX_EXTENDS_DEPTH`] are errors.
pub fn load(req: &Request) -> Result<Loaded, ConfigError> {
    let (source, how) = discover(req)?;
    resolve(source, how, req.xdg_config_home)
}

fn discover(req: &Request) -> Result<(Source, Discovery), ConfigError> {
    match (req.file, req.template) {
        (Some(file), Some(template)) => Err(ConfigError::FlagConflict {
            file: file.to_path_buf(),
            template: template.to_string(),
        }),
        (Some(file), None) => {
            let path = normalize(&req.cwd.join(file));
            if !path.exists() {
                return Err(ConfigError::FlagFileMissing { file: path });
            }
            Ok((Source::File(path), Discovery::Flag))
        }
        (None, Some(name)) => match find_template(name) {
            Some(t) => Ok((Source::Template(t), Discovery::TemplateFlag)),
            None => Err(ConfigError::UnknownTemplateFlag {
                name: name.to_string(),
                suggestion: suggest_template(name),
                available: template_names(),
            }),
        },
        (None, None) => {
            if let Some(path) = find_nearest(req.cwd) {
                Ok((Source::File(path), Discovery::Nearest))
            } else if let Some(path) = find_user_config(req.xdg_config_home) {
                Ok((Source::File(path), Discovery::UserConfig))
            } else {
                Ok((Source::Default, Discovery::Default))
            }
        }
    }
}

struct Link {
    part: Part,
    parsed: ParsedFile,
    /// Directory relative `extends` paths resolve against (files only).
    dir: Option<PathBuf>,
}

fn read(source: &Source, how: Discovery) -> Result<Link, ConfigError> {
    let (parsed, dir) = match source {
        Source::File(path) => {
            let text = crate::fsio::read_policy(path).map_err(|source| ConfigError::Read {
                file: path.clone(),
                source,
            })?;
            let dir = path.parent().map(Path::to_path_buf);
            (parse_str(&text, path)?, dir)
        }
        Source::Template(t) => (parse_str(t.text, &template_error_path(t.name))?, None),
        Source::Default => (ParsedFile::default(), None),
    };
    Ok(Link {
        part: Part {
            origin: source.origin(),
            how,
        },
        parsed,
        dir,
    })
}

fn resolve(top: Source, how: Discovery, xdg: Option<&Path>) -> Result<Loaded, ConfigError> {
    let mut links: Vec<Link> = Vec::new(); // most specific first
    let mut seen: Vec<(String, String)> = Vec::new(); // (id, label)
    let mut current = (top, how);
    loop {
        let (source, how) = current;
        seen.push((source.id(), source.short_label()));
        let link = read(&source, how)?;
        let next = link.parsed.extends.clone();
        let dir = link.dir.clone();
        let file = link.part.origin.error_path();
        links.push(link);
        let Some(ext) = next else { break };

        let chain = |extra: &str| {
            let mut names: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
            names.push(extra);
            names.join(" -> ")
        };
        let target = resolve_target(
            &ext,
            dir.as_deref(),
            matches!(source, Source::Template(_)),
            xdg,
            &file,
        )?;
        if links.len() > MAX_EXTENDS_DEPTH {
            return Err(ConfigError::ExtendsTooDeep {
                file,
                line: ext.line,
                column: ext.column,
                chain: chain(&target.short_label()),
            });
        }
        let id = target.id();
        if seen.iter().any(|(seen_id, _)| *seen_id == id) {
            return Err(ConfigError::ExtendsCycle {
                file,
                line: ext.line,
                column: ext.column,
                chain: chain(&target.short_label()),
            });
        }
        current = (target, Discovery::Extends);
    }

    links.reverse();
    let mut config = Config::default();
    let mut chain = Vec::with_capacity(links.len());
    let mut unsupported = Vec::new();
    for link in links {
        config.merge_from(&link.parsed.config);
        unsupported.extend(link.parsed.unsupported);
        chain.push(link.part);
    }
    Ok(Loaded {
        config,
        chain,
        unsupported,
    })
}

fn resolve_target(
    ext: &ExtendsRef,
    dir: Option<&Path>,
    from_template: bool,
    xdg: Option<&Path>,
    file: &Path,
) -> Result<Source, ConfigError> {
    let target = ext.target.as_str();
    let is_path = target.contains('/') || target.contains('\\') || target.starts_with('.');
    if target == "@base" || is_path {
        let Some(dir) = dir.filter(|_| !from_template) else {
            return Err(ConfigError::TemplateExtendsFile {
                file: file.to_path_buf(),
                line: ext.line,
                column: ext.column,
                target: target.to_string(),
            });
        };
        if target == "@base" {
            return Ok(find_user_config(xdg).map_or(Source::Default, Source::File));
        }
        let resolved = normalize(&dir.join(target));
        if !resolved.exists() {
            return Err(ConfigError::ExtendsMissing {
                file: file.to_path_buf(),
                line: ext.line,
                column: ext.column,
                target: target.to_string(),
                resolved,
            });
        }
        return Ok(Source::File(resolved));
    }
    match find_template(target) {
        Some(t) => Ok(Source::Template(t)),
        None => Err(ConfigError::UnknownTemplate {
            file: file.to_path_buf(),
            line: ext.line,
            column: ext.column,
            name: target.to_string(),
            suggestion: suggest_template(target),
            available: template_names(),
        }),
    }
}

// ---------------------------------------------------------------------------
// `sbx config show`.

/// What `sbx config show` prints: `//` comment lines naming each link of the
/// chain (most general first) and each ignored fence-only key, then the
/// merged policy as pretty JSON. The whole output is valid JSONC and parses
/// back to the same policy, so it can be saved as an `sbx.jsonc`.
pub fn render_show(loaded: &Loaded) -> String {
    let mut out = String::from("// Policy sources, most general first:\n");
    for (i, part) in loaded.chain.iter().enumerate() {
        let how = match part.how {
            Discovery::Flag => "given with -s".to_string(),
            Discovery::TemplateFlag => "given with -t".to_string(),
            Discovery::Nearest => match &part.origin {
                Origin::File(p) => format!(
                    "nearest {}",
                    p.file_name()
                        .map_or_else(|| FILE_NAMES[0].into(), |n| n.to_string_lossy())
                ),
                _ => "nearest sbx.jsonc".to_string(),
            },
            Discovery::UserConfig => "user config".to_string(),
            Discovery::Default => "no policy file found".to_string(),
            Discovery::Extends => match loaded.chain.get(i + 1) {
                Some(next) => format!("extended by {}", next.origin.label()),
                None => "extended".to_string(),
            },
        };
        let _ = writeln!(out, "// {}. {} ({how})", i + 1, part.origin.label());
    }
    for u in &loaded.unsupported {
        let _ = writeln!(
            out,
            "// warning: {}:{}: \"{}\" is a fence setting sbx does not implement; it is ignored",
            u.file.display(),
            u.line,
            u.key
        );
    }
    match serde_json::to_string_pretty(&loaded.config) {
        Ok(json) => out.push_str(&json),
        Err(e) => {
            let _ = write!(out, "// cannot render the policy as JSON: {e}\n{{}}");
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
