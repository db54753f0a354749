//! Discovery (`-s`, `-t`, the nearest `sbx.jsonc`, the user config, the default) and
//! `extends` chains, resolved and merged into a [`Loaded`].

use super::*;

#[derive(Debug, Clone)]
pub(super) enum Source {
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
pub(super) fn normalize(path: &Path) -> PathBuf {
    path.components().collect()
}

/// The first of `sbx.jsonc`, `sbx.json` that exists in `dir`, as anything:
/// a FIFO or a device of that name is then refused by the reader in one
/// sentence, rather than skipped.
pub(super) fn config_file_in(dir: &Path) -> Option<PathBuf> {
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

pub(super) fn discover(req: &Request) -> Result<(Source, Discovery), ConfigError> {
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

pub(super) struct Link {
    pub(super) part: Part,
    pub(super) parsed: ParsedFile,
    /// Directory relative `extends` paths resolve against (files only).
    pub(super) dir: Option<PathBuf>,
}

pub(super) fn read(source: &Source, how: Discovery) -> Result<Link, ConfigError> {
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

pub(super) fn resolve(top: Source, how: Discovery, xdg: Option<&Path>) -> Result<Loaded, ConfigError> {
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

pub(super) fn resolve_target(
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
