//! Parsing one policy file (JSONC, fence's field names) into a [`ParsedFile`].

use super::*;

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

pub(super) enum Typed {
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

pub(super) struct Parser<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
    pub(super) pos: std::collections::HashMap<String, Span>,
    pub(super) out: ParsedFile,
    pub(super) strict_deny_read: bool,
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
            Kind::StrList | Kind::PathList | Kind::DomainList | Kind::CommandList => {
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
                        Kind::CommandList => {
                            if let Err(reason) = crate::command_rules::Rule::parse(s) {
                                return Err(self.invalid_entry(&at, path, item, &reason));
                            }
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
            (key, Typed::Strings(v)) if strings_mut(c, key).is_some() => {
                if let Some(list) = strings_mut(c, key) {
                    *list = v;
                }
            }
            (key, Typed::Bool(b)) if flag_mut(c, key).is_some() => {
                if let Some(flag) = flag_mut(c, key) {
                    *flag = b;
                }
            }
            ("network.allowLocalOutboundPorts", Typed::Ports(v)) => c.network.allow_local_outbound_ports = v,
            ("command.useDefaults", Typed::Bool(b)) => c.command.use_defaults = Some(b),
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

pub(super) fn limit_expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Size => "a size such as \"512M\" or \"4G\", or \"off\"",
        Kind::Count => "a number of processes, or \"off\"",
        Kind::Cpu => "a number of CPUs such as 1.5, or \"off\"",
        _ => "a duration such as \"90s\" or \"10m\", or \"off\"",
    }
}

/// A value that has no effect even in fence (false, 0, "", [], {}).
pub(super) fn is_inert(value: &Value) -> bool {
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
pub(super) fn describe(value: &Value) -> String {
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
pub(super) fn check_domain(pattern: &str) -> Result<(), String> {
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
pub(super) fn distance(a: &str, b: &str) -> usize {
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

pub(super) fn close_enough(key: &str, candidate: &str) -> bool {
    let max = (key.chars().count() / 3).clamp(1, 3);
    distance(key, candidate) <= max
}

/// Suggests a known key for an unknown one: the closest key in the same
/// object, else a key of the same (or nearly the same) name elsewhere, such
/// as `filesystem.allowWrite` for a top-level `allowWrite`.
pub(super) fn suggest_key(key: &str, parent: &str, fields: &[Field]) -> Option<String> {
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

pub(super) fn suggest_template(name: &str) -> Option<String> {
    templates()
        .iter()
        .map(|t| (distance(name, t.name), t.name))
        .min()
        .filter(|(_, n)| close_enough(name, n))
        .map(|(_, n)| n.to_string())
}

pub(super) fn template_names() -> String {
    templates()
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks up a template the way fence does: a trailing `.json` (or `.jsonc`)
/// is ignored.
pub(super) fn find_template(name: &str) -> Option<&'static Template> {
    let bare = name
        .strip_suffix(".jsonc")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(name);
    template(bare)
}
