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
//!
//! Here: the types (`Config`, `Loaded`, `ConfigError`). `schema`: the table of
//! keys; `parse`: one file; `discover`: finding files and `extends` chains;
//! `show`: `sbx config show`; `jsonc`, `edit`, `templates` as named.

mod discover;
pub mod edit;
pub mod jsonc;
mod parse;
mod schema;
mod show;
pub mod templates;

pub use discover::{find_nearest, find_user_config, load};
pub use parse::parse_str;
pub use schema::{fence_only_keys, flag_mut, strings_mut};
pub use show::render_show;
use parse::*;
use schema::*;

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
    /// fence's command rules, checked at every exec (`command_rules`).
    #[serde(skip_serializing_if = "CommandConfig::is_unset")]
    pub command: CommandConfig,
    /// fence's ssh rules, checked at every exec of ssh.
    #[serde(skip_serializing_if = "SshConfig::is_unset")]
    pub ssh: SshConfig,
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
pub struct CommandConfig {
    pub deny: Vec<String>,
    pub allow: Vec<String>,
    /// fence's default list of dangerous commands: on unless set to false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_defaults: Option<bool>,
}

impl CommandConfig {
    fn is_unset(&self) -> bool {
        *self == CommandConfig::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshConfig {
    pub allowed_hosts: Vec<String>,
    pub denied_hosts: Vec<String>,
    pub allowed_commands: Vec<String>,
    pub denied_commands: Vec<String>,
    pub allow_all_commands: bool,
    pub inherit_deny: bool,
}

impl SshConfig {
    fn is_unset(&self) -> bool {
        *self == SshConfig::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilesystemConfig {
    pub default_deny_read: bool,
    pub allow_read: Vec<String>,
    /// fence's: under defaultDenyRead, files that may be run and read, in directories
    /// that may not be listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_execute: Vec<String>,
    pub deny_read: Vec<String>,
    pub allow_write: Vec<String>,
    pub deny_write: Vec<String>,
    pub allow_git_config: bool,
    /// sbx's: directories the command writes in a copy of its own (caches), never the host's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub private_write: Vec<String>,
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
        union(&mut f.allow_execute, &c.allow_execute);
        union(&mut f.deny_read, &c.deny_read);
        union(&mut f.allow_write, &c.allow_write);
        union(&mut f.deny_write, &c.deny_write);
        union(&mut f.private_write, &c.private_write);
        f.allow_git_config |= c.allow_git_config;

        // Lists add up; useDefaults is the nearest file's that sets it (fence: unset is true).
        let (m, c) = (&mut self.command, &child.command);
        union(&mut m.deny, &c.deny);
        union(&mut m.allow, &c.allow);
        m.use_defaults = c.use_defaults.or(m.use_defaults);
        let (s, c) = (&mut self.ssh, &child.ssh);
        union(&mut s.allowed_hosts, &c.allowed_hosts);
        union(&mut s.denied_hosts, &c.denied_hosts);
        union(&mut s.allowed_commands, &c.allowed_commands);
        union(&mut s.denied_commands, &c.denied_commands);
        s.allow_all_commands |= c.allow_all_commands;
        s.inherit_deny |= c.inherit_deny;

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

#[cfg(test)]
mod tests;
