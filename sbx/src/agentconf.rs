//! Agent configuration that runs commands on the host.
//!
//! The coding templates keep the agents' own state writable (`~/.claude`,
//! `~/.claude.json`, `~/.codex`, ...) so that an agent run inside the sandbox
//! keeps working. The same files hold what the agent runs *outside* the sandbox
//! the next time it starts there: hooks, MCP server commands, permission rules,
//! status-line and credential helpers, trust of a project. sbx reads those parts
//! before the command starts and again once it has ended:
//!
//! * a JSON file the agent rewrites as it runs (`~/.claude.json`, Claude Code's
//!   `settings.json`) is compared key by key on the keys that run something
//!   ([`CLAUDE_SETTINGS`], [`CLAUDE_STATE`]); a change to any other key is the
//!   agent's state and is left alone;
//! * any other known file (`~/.codex/config.toml`, `.cursor/mcp.json`, ...) is
//!   compared whole: those are settings, not state.
//!
//! A change is a `tamper` event with a readable diff and a line on stderr. It is
//! reverted (only the keys that run something; the agent's state stays) unless
//! the user keeps it (`--keep-agent-config`, or the dashboard's question); what
//! the command wrote is first copied to the session's quarantine directory.
//!
//! This is the second layer for these files: while the session runs, an agent
//! started in another terminal reads what the command wrote. The workspace's
//! `.mcp.json`, `.vscode` and `.idea` are read-only instead (`policy`).

use std::{
    collections::BTreeMap,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use serde_json::Value;
use sha2::Digest as _;

/// Keys of Claude Code's `settings.json` / `settings.local.json` (home and
/// project) whose values run commands or widen what the agent may run.
pub const CLAUDE_SETTINGS: &[&str] = &[
    "hooks",
    "permissions",
    "statusLine",
    "apiKeyHelper",
    "awsAuthRefresh",
    "awsCredentialExport",
    "otelHeadersHelper",
    "env",
    "mcpServers",
    "enableAllProjectMcpServers",
    "enabledMcpjsonServers",
    "disabledMcpjsonServers",
    "enabledPlugins",
    "extraKnownMarketplaces",
    "fileSuggestion",
];

/// Keys of `~/.claude.json` (the agent's state file) that run commands or
/// widen what the agent may run; `*` is every key of an object.
pub const CLAUDE_STATE: &[&str] = &[
    "mcpServers",
    "projects.*.mcpServers",
    "projects.*.allowedTools",
    "projects.*.enabledMcpjsonServers",
    "projects.*.disabledMcpjsonServers",
    "projects.*.enableAllProjectMcpServers",
    "projects.*.hasTrustDialogAccepted",
];

/// What of a file is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// These keys of a JSON object (see [`CLAUDE_STATE`] for the syntax).
    Keys(&'static [&'static str]),
    /// The whole file.
    Whole,
}

/// A known agent configuration file, relative to the home or the workspace.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    pub rel: &'static str,
    pub parts: Parts,
}

const fn keys(rel: &'static str, keys: &'static [&'static str]) -> Known {
    Known { rel, parts: Parts::Keys(keys) }
}

const fn whole(rel: &'static str) -> Known {
    Known { rel, parts: Parts::Whole }
}

/// In the home.
pub const IN_HOME: &[Known] = &[
    keys(".claude.json", CLAUDE_STATE),
    keys(".claude/settings.json", CLAUDE_SETTINGS),
    keys(".claude/settings.local.json", CLAUDE_SETTINGS),
    whole(".codex/config.toml"),
    // Codex's lifecycle hooks, and the variables it loads from its home.
    whole(".codex/hooks.json"),
    whole(".codex/.env"),
    whole(".cursor/mcp.json"),
    whole(".cursor/cli-config.json"),
    whole(".gemini/settings.json"),
    // gemini-cli loads these variables into its own process (NODE_OPTIONS would run
    // code), and a trusted folder's settings (its MCP servers) apply.
    whole(".gemini/.env"),
    whole(".gemini/trustedFolders.json"),
    whole(".config/opencode/opencode.json"),
    whole(".config/opencode/opencode.jsonc"),
    whole(".config/opencode/config.json"),
    // The packages opencode installs (and so runs the install scripts of) on the host:
    // its plugins' dependencies, and where they come from.
    whole(".config/opencode/package.json"),
    whole(".config/opencode/bun.lock"),
    whole(".aider.conf.yml"),
    whole(".continue/config.json"),
    whole(".continue/config.yaml"),
];

/// In the workspace (a project's own settings, which the agent loads there).
pub const IN_WORKSPACE: &[Known] = &[
    keys(".claude/settings.json", CLAUDE_SETTINGS),
    keys(".claude/settings.local.json", CLAUDE_SETTINGS),
    whole(".codex/config.toml"),
    whole(".cursor/mcp.json"),
    whole(".gemini/settings.json"),
    whole("opencode.json"),
    whole("opencode.jsonc"),
    whole(".aider.conf.yml"),
    whole(".continue/config.json"),
    whole(".continue/config.yaml"),
];

/// Files larger than this are compared by a digest of their bytes only and
/// cannot be reverted key by key (no agent writes one this large).
const MAX_BYTES: u64 = 32 * 1024 * 1024;

/// What a path held at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Content {
    Missing,
    File(Vec<u8>),
    /// Not a regular file (a symlink, a directory, a FIFO), or too large to keep.
    Other(String),
}

impl Content {
    fn of(path: &Path) -> Content {
        let Ok(meta) = std::fs::symlink_metadata(path) else { return Content::Missing };
        let t = meta.file_type();
        if t.is_symlink() {
            return Content::Other(format!("a symbolic link to {}", std::fs::read_link(path).unwrap_or_default().display()));
        }
        if !t.is_file() {
            return Content::Other(if t.is_dir() { "a directory".into() } else { "a special file".into() });
        }
        if meta.len() > MAX_BYTES {
            return Content::Other(format!("a file of {} bytes", meta.len()));
        }
        match crate::fsio::read_no_follow(path, MAX_BYTES) {
            Ok(bytes) => Content::File(bytes),
            Err(e) => Content::Other(format!("a file sbx cannot read ({e})")),
        }
    }
}

#[derive(Debug, Clone)]
struct Watched {
    path: PathBuf,
    parts: Parts,
    before: Content,
}

/// The agent configuration of one session as it was before the command.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    files: Vec<Watched>,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    pub change: crate::report::Change,
    /// The keys that changed (`hooks`, `projects["/w"].mcpServers`); empty when
    /// the file is compared whole.
    pub keys: Vec<String>,
    /// Readable lines: `- key: old` / `+ key: new`, or the lines of the file.
    pub diff: Vec<String>,
    after: Content,
    /// What the file becomes when the change is reverted: `None` removes it.
    reverted: Option<Vec<u8>>,
    /// The file holds `reverted` already (what the merge of Claude Code's state wrote):
    /// reverting leaves it, keeping sets [`Change::apply`] in it.
    pending: bool,
    /// The changed keys and their new values (`None`: removed).
    apply: Vec<(Vec<String>, Option<Value>)>,
}

impl AgentConfig {
    /// Reads the known files of `home` and `workspace` that lie inside one of `writable`
    /// (the others the command cannot change; a workspace that is the home is read once).
    pub fn take(home: Option<&Path>, workspace: &Path, writable: &[PathBuf]) -> AgentConfig {
        let mut files: Vec<Watched> = Vec::new();
        let places = home.into_iter().map(|h| (h, IN_HOME)).chain([(workspace, IN_WORKSPACE)]);
        for (root, known) in places {
            for k in known {
                let path = root.join(k.rel);
                if files.iter().any(|w| w.path == path) || !writable.iter().any(|w| path.starts_with(w)) {
                    continue;
                }
                let before = Content::of(&path);
                files.push(Watched { path, parts: k.parts, before });
            }
        }
        AgentConfig { files }
    }

    /// The files whose commands changed since [`AgentConfig::take`] (since the merge of
    /// Claude Code's state, for the file `rebased` names).
    pub fn changes(&self, rebased: Option<&Rebased>) -> Vec<Change> {
        self.files
            .iter()
            .filter_map(|w| match rebased {
                Some(r) if r.path == w.path => match &r.after {
                    // The merge wrote the file without what runs: the change is the command's
                    // intent, which keeping applies.
                    Some(after) => change_of(&Watched { before: r.before.clone(), ..w.clone() }, after.clone()).map(|c| Change { pending: true, ..c }),
                    None => change_of(&Watched { before: r.before.clone(), ..w.clone() }, Content::of(&w.path)),
                },
                _ => change_of(w, Content::of(&w.path)),
            })
            .collect()
    }
}

fn change_of(w: &Watched, after: Content) -> Option<Change> {
    if after == w.before {
        return None;
    }
    use crate::report::Change as Kind;
    let kind = match (&w.before, &after) {
        (Content::Missing, _) => Kind::Created,
        (_, Content::Missing) => Kind::Removed,
        (Content::File(_), Content::File(_)) => Kind::Changed,
        _ => Kind::Replaced,
    };
    let whole = |reverted: Option<Vec<u8>>| {
        let diff = whole_diff(&w.before, &after);
        Some(Change { path: w.path.clone(), change: kind, keys: Vec::new(), diff, after: after.clone(), reverted, pending: false, apply: Vec::new() })
    };
    let before_bytes = match &w.before {
        Content::File(b) => Some(b.clone()),
        Content::Missing => None,
        // Not a file before: it cannot be put back as it was; reverting removes the file.
        Content::Other(_) => None,
    };
    let Parts::Keys(keys) = w.parts else { return whole(before_bytes) };
    let parse = |c: &Content| -> Option<Option<Value>> {
        match c {
            Content::Missing => Some(None),
            Content::File(b) => serde_json::from_slice::<Value>(b).ok().filter(Value::is_object).map(Some),
            Content::Other(_) => None,
        }
    };
    // What cannot be read as a JSON object is compared (and reverted) whole.
    let (Some(before_v), Some(Some(mut after_v))) = (parse(&w.before), parse(&after)) else { return whole(before_bytes) };
    let old = exec_parts(before_v.as_ref(), keys);
    let new = exec_parts(Some(&after_v), keys);
    let mut changed: Vec<&Vec<String>> = old.keys().chain(new.keys()).filter(|k| old.get(*k) != new.get(*k)).collect();
    changed.sort();
    changed.dedup();
    if changed.is_empty() {
        // The agent's own state changed, nothing that runs.
        return None;
    }
    let mut diff = Vec::new();
    for k in &changed {
        let shown = show_key(k);
        if let Some(v) = old.get(*k) {
            diff.push(format!("- {shown}: {}", short_json(v)));
        }
        if let Some(v) = new.get(*k) {
            diff.push(format!("+ {shown}: {}", short_json(v)));
        }
        set_path(&mut after_v, k, old.get(*k).cloned());
    }
    let reverted = if before_v.is_none() && after_v.as_object().is_some_and(serde_json::Map::is_empty) {
        None
    } else {
        let mut bytes = serde_json::to_vec_pretty(&after_v).unwrap_or_default();
        bytes.push(b'\n');
        Some(bytes)
    };
    let apply = changed.iter().map(|k| ((*k).clone(), new.get(*k).cloned())).collect();
    Some(Change { path: w.path.clone(), change: kind, keys: changed.iter().map(|k| show_key(k)).collect(), diff, after, reverted, pending: false, apply })
}

/// The values at `keys` in `v`, with every `*` expanded, by concrete key path.
fn exec_parts(v: Option<&Value>, keys: &[&str]) -> BTreeMap<Vec<String>, Value> {
    fn walk(v: &Value, segs: &[&str], at: &mut Vec<String>, out: &mut BTreeMap<Vec<String>, Value>) {
        let Some((first, rest)) = segs.split_first() else {
            out.insert(at.clone(), v.clone());
            return;
        };
        let Some(obj) = v.as_object() else { return };
        let matched: Vec<(&String, &Value)> = if *first == "*" { obj.iter().collect() } else { obj.get_key_value(*first).into_iter().collect() };
        for (k, child) in matched {
            at.push(k.clone());
            walk(child, rest, at, out);
            at.pop();
        }
    }
    let mut out = BTreeMap::new();
    if let Some(v) = v {
        for key in keys {
            walk(v, &key.split('.').collect::<Vec<_>>(), &mut Vec::new(), &mut out);
        }
    }
    out
}

/// Puts `value` at `path` in `root` (creating objects on the way), or removes
/// what is there when `value` is `None`.
fn set_path(root: &mut Value, path: &[String], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut at = root;
    for seg in parents {
        let Some(obj) = at.as_object_mut() else { return };
        if value.is_none() && !obj.contains_key(seg) {
            return;
        }
        at = obj.entry(seg.clone()).or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    let Some(obj) = at.as_object_mut() else { return };
    match value {
        Some(v) => {
            obj.insert(last.clone(), v);
        }
        None => {
            obj.remove(last);
        }
    }
}

/// `projects["/w/p"].mcpServers`: plain segments joined with dots.
fn show_key(path: &[String]) -> String {
    let mut out = String::new();
    for (i, seg) in path.iter().enumerate() {
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            if i > 0 {
                out.push('.');
            }
            out.push_str(seg);
        } else {
            out.push('[');
            out.push_str(&Value::String(seg.clone()).to_string());
            out.push(']');
        }
    }
    out
}

const SHOWN_CHARS: usize = 400;
const SHOWN_LINES: usize = 40;

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(SHOWN_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A line diff of two versions of a file: `- ` removed, `+ ` added lines,
/// without context; a long one is cut with a count of what is left out.
fn whole_diff(before: &Content, after: &Content) -> Vec<String> {
    let lines = |c: &Content| -> Result<Vec<String>, String> {
        match c {
            Content::Missing => Ok(Vec::new()),
            Content::File(b) => Ok(String::from_utf8_lossy(b).lines().map(str::to_owned).collect()),
            Content::Other(what) => Err(what.clone()),
        }
    };
    let (a, b) = match (lines(before), lines(after)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            let say = |r: Result<Vec<String>, String>, c: &Content| match (r, c) {
                (_, Content::Missing) => "nothing".to_string(),
                (Err(what), _) => what,
                (Ok(l), _) => format!("a file of {} lines", l.len()),
            };
            return vec![format!("- {}", say(a, before)), format!("+ {}", say(b, after))];
        }
    };
    let mut out = Vec::new();
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        out.push(format!("- a file of {} lines", a.len()));
        out.push(format!("+ a file of {} lines", b.len()));
        return out;
    }
    // Longest common subsequence of lines, then a walk that emits the rest.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            out.push(format!("+ {}", b[j]));
            j += 1;
        } else {
            out.push(format!("- {}", a[i]));
            i += 1;
        }
    }
    if out.len() > SHOWN_LINES {
        let more = out.len() - SHOWN_LINES;
        out.truncate(SHOWN_LINES);
        out.push(format!("… {more} more changed lines"));
    }
    out
}

/// Reverts `change` (`keep`: leaves it, reported as kept): what the command
/// wrote is copied to `quarantine` first, keeping its absolute path below it.
pub fn settle(change: &Change, keep: bool, quarantine: &mut crate::snapshot::Quarantine) -> crate::report::Tamper {
    use crate::report::TamperAction;
    let tamper = |action: TamperAction, quarantine: Option<PathBuf>, error: Option<String>| crate::report::Tamper {
        path: change.path.clone(),
        change: change.change,
        action,
        quarantine,
        error,
        diff: change.diff.clone(),
    };
    if keep {
        if change.pending {
            // What the merge of Claude Code's state held back, into the file as it is now.
            let applied = HostLock::take(&change.path).and_then(|_lock| {
                let Content::File(bytes) = Content::of(&change.path) else { return Err(format!("{} is no longer a file", change.path.display())) };
                let mut now = serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object).ok_or_else(|| format!("{} is no longer a JSON object", change.path.display()))?;
                for (k, v) in &change.apply {
                    set_path(&mut now, k, v.clone());
                }
                crate::fsio::replace(&change.path, &json_bytes(&now), 0o600).map_err(|e| e.to_string())
            });
            if let Err(e) = applied {
                return tamper(TamperAction::Reported, None, Some(format!("cannot keep it: {e}")));
            }
        }
        return tamper(TamperAction::Kept, None, None);
    }
    let q = match quarantine.dir() {
        Ok(q) => q,
        Err(e) => return tamper(TamperAction::Reported, None, Some(e)),
    };
    let dest = q.join(change.path.strip_prefix("/").unwrap_or(&change.path));
    let mut kept_copy = None;
    if change.after != Content::Missing {
        let moved = dest.parent().map_or(Ok(()), |p| crate::snapshot::mkdir_owned(p).map_err(std::io::Error::other)).and_then(|()| match &change.after {
            // A copy: the file is rewritten in place below (its other keys are the agent's
            // state); the quarantine's owner's (root's sbx for a user under sudo).
            Content::File(bytes) => crate::fsio::create_new(&dest, 0o600)
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|mut f| {
                    if nix::unistd::geteuid().is_root()
                        && let Some(owner) = dest.parent().and_then(|p| std::fs::metadata(p).ok())
                    {
                        std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid()))?;
                    }
                    std::io::Write::write_all(&mut f, bytes)
                }),
            // Not a regular file: moved out of the way, whatever it is.
            _ => crate::snapshot::move_path(&change.path, &dest),
        });
        match moved {
            Ok(()) => kept_copy = Some(dest),
            Err(e) => return tamper(TamperAction::Reported, None, Some(format!("cannot save it to {}: {e}", dest.display()))),
        }
    }
    let applied = match &change.reverted {
        // Written so already (and since, maybe, by the agent on the host).
        _ if change.pending => Ok(()),
        Some(bytes) => crate::fsio::replace(&change.path, bytes, 0o600).map_err(|e| e.to_string()),
        None => match std::fs::remove_file(&change.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove it: {e}")),
            _ => Ok(()),
        },
    };
    match applied {
        Ok(()) => tamper(TamperAction::Reverted, kept_copy, None),
        Err(e) => tamper(TamperAction::Reported, kept_copy, Some(e)),
    }
}

/// Claude Code's state file in the home, and its name inside `CLAUDE_CONFIG_DIR`.
pub const CLAUDE_STATE_FILE: &str = ".claude.json";

/// How long another process may hold Claude Code's lock on `~/.claude.json` before it is
/// taken for stale (Claude Code's own rule: proper-lockfile's ten seconds, refreshed
/// while held).
const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(10);

/// Claude Code's state file, moved into its own directory for the session.
///
/// Claude Code rewrites `~/.claude.json` through a lock directory and a temporary file
/// beside it (`~/.claude.json.lock`, `~/.claude.json.tmp.<pid>.<n>`) and a rename: none
/// of which the read-only home allows. With `CLAUDE_CONFIG_DIR` set to `~/.claude` (which
/// is what its directory is anyway) the file is `~/.claude/.claude.json`, and everything
/// else stays where it was. So when the policy makes `~/.claude` writable, sbx copies
/// `~/.claude.json` there before the command starts (the *copy*; what it copied, the
/// *base*, is kept in sbx's state directory, which the sandbox cannot see), sets the
/// variable for the command, and when the last session using the copy ends merges it
/// back into `~/.claude.json` (three ways, object by object: what the sandbox changed is
/// applied, what Claude Code on the host changed meanwhile is kept), under Claude
/// Code's own lock, and removes the copy. The host's file itself stays read-only during
/// the session: a Claude Code started on the host meanwhile reads nothing the command
/// wrote. The merge writes the sandbox's changes but those to the keys that run
/// something ([`CLAUDE_STATE`]): those are a change of agent configuration like any
/// other (a `tamper` event with a diff), applied only when the user keeps it
/// ([`settle`]). A copy left by a session that was killed is merged by the next one,
/// without its keys that run commands.
#[derive(Debug)]
pub struct ClaudeState {
    /// `~/.claude.json`.
    host: PathBuf,
    /// `~/.claude`: the command's `CLAUDE_CONFIG_DIR`.
    dir: PathBuf,
    /// `~/.claude/.claude.json`.
    copy: PathBuf,
    /// The host's file as the copy started from (`{}` when there was none).
    base: PathBuf,
    /// Serialises the start and the end of the sessions that share the copy.
    mutex: PathBuf,
    /// Held shared while the session runs: the last one out merges.
    users: Option<nix::fcntl::Flock<std::fs::File>>,
    /// The policy lets the command write `~/.claude.json` itself.
    host_writable: bool,
}

/// What `~/.claude.json` held just before the session's own merge: the changes that
/// [`AgentConfig::changes`] judges there are the merge's, not the host's meanwhile.
#[derive(Debug, Clone)]
pub struct Rebased {
    path: PathBuf,
    before: Content,
    /// What the merge would have written with the keys that run something (it wrote the
    /// file without their changes).
    after: Option<Content>,
}

impl ClaudeState {
    /// Moves Claude Code's state file for this session when the policy makes `~/.claude`
    /// writable and the user did not choose a `CLAUDE_CONFIG_DIR` of their own (or keeps a
    /// legacy `~/.claude/.config.json`, which Claude Code would use instead). `Err`: a
    /// sentence why it is not moved although it could have been (the session goes on).
    pub fn start(policy: &crate::policy::Policy) -> Result<Option<ClaudeState>, String> {
        if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
            return Ok(None);
        }
        let Some(home) = policy.home.as_deref() else { return Ok(None) };
        let dir = home.join(".claude");
        let copy = dir.join(CLAUDE_STATE_FILE);
        let host = home.join(CLAUDE_STATE_FILE);
        let writable = policy.writable();
        let read_only = policy.read_only_within_writable();
        let covered = |p: &Path| writable.iter().any(|w| p.starts_with(w)) && !read_only.iter().any(|r| p.starts_with(r));
        if !covered(&copy) || home == policy.workspace {
            return Ok(None);
        }
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) || std::fs::symlink_metadata(dir.join(".config.json")).is_ok() {
            return Ok(None);
        }
        let store = crate::state::state_dir().map_err(|e| e.to_string())?;
        let key: String = sha2::Sha256::digest(copy.as_os_str().as_encoded_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
        let mutex = store.join(format!("claude-{key}.lock"));
        let base = store.join(format!("claude-{key}.base.json"));
        let users_path = store.join(format!("claude-{key}.users"));
        let _serial = lock_file(&mutex, nix::fcntl::FlockArg::LockExclusive)?;
        let users_file = open_lock(&users_path)?;
        let (users, alone) = match nix::fcntl::Flock::lock(users_file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(l) => (l, true),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                (nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockShared).map_err(|(_, e)| format!("cannot lock {}: {e}", users_path.display()))?, false)
            }
            Err((_, e)) => return Err(format!("cannot lock {}: {e}", users_path.display())),
        };
        let state = ClaudeState { host_writable: covered(&host), host, dir, copy, base, mutex, users: None };
        let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
        if alone {
            if exists(&state.copy) {
                if !exists(&state.base) {
                    return Err(format!(
                        "{} exists and sbx did not make it, so Claude Code's state stays in {} (read-only in the sandbox); move the file away, or set CLAUDE_CONFIG_DIR",
                        state.copy.display(),
                        state.host.display()
                    ));
                }
                // Left by a session that was killed: its state goes home, not what it would run.
                if state.merge()?.is_some() {
                    eprintln!(
                        "sbx: Claude Code's state left in {} by an interrupted session was merged into {} (without changes to its hooks, MCP servers and permissions)",
                        crate::termtext::path(&state.copy),
                        crate::termtext::path(&state.host)
                    );
                }
            }
            state.seed()?;
            users.relock(nix::fcntl::FlockArg::LockShared).map_err(|e| format!("cannot lock {}: {e}", users_path.display()))?;
        } else if !exists(&state.copy) {
            state.seed()?;
        }
        Ok(Some(ClaudeState { users: Some(users), ..state }))
    }

    /// The command's `CLAUDE_CONFIG_DIR`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `~/.claude.json`, which the merge writes: watched by [`AgentConfig::take`].
    pub fn host(&self) -> &Path {
        &self.host
    }

    /// The copy, from the host's file (none when there is none: Claude Code starts afresh),
    /// and the base it is merged against.
    fn seed(&self) -> Result<(), String> {
        let bytes = match crate::fsio::read_no_follow(&self.host, MAX_BYTES) {
            Ok(b) if b.len() as u64 <= MAX_BYTES => Some(b),
            Ok(_) => return Err(format!("{} is larger than {MAX_BYTES} bytes", self.host.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", self.host.display())),
        };
        // In sbx's private state directory; no fsync: it must outlive sbx, not the machine.
        write_private(&self.base, bytes.as_deref().unwrap_or(b"{}"))?;
        if let Some(bytes) = bytes {
            let mut f = crate::fsio::create_new(&self.copy, 0o600).map_err(|e| e.to_string())?;
            // sbx as root for a user (`sudo`): the copy is the directory's owner's.
            if nix::unistd::geteuid().is_root()
                && let Ok(owner) = std::fs::metadata(&self.dir)
            {
                std::os::unix::fs::fchown(&f, Some(owner.uid()), Some(owner.gid())).map_err(|e| format!("cannot set the owner of {}: {e}", self.copy.display()))?;
            }
            std::io::Write::write_all(&mut f, &bytes).map_err(|e| format!("cannot write {}: {e}", self.copy.display()))?;
        }
        Ok(())
    }

    /// Once the session's processes are gone: the last session using the copy merges it
    /// into `~/.claude.json` and removes it. What `~/.claude.json` held just before (or now,
    /// when another session still uses the copy), for [`AgentConfig::changes`]; `None` when
    /// the command could write `~/.claude.json` itself (it is judged from the start).
    pub fn finish(mut self) -> (Option<Rebased>, Option<String>) {
        let rebase = |merged: Option<(Content, Content)>, host: &Path, writable: bool| {
            (!writable).then(|| match merged {
                Some((before, after)) => Rebased { path: host.to_path_buf(), before, after: Some(after) },
                None => Rebased { path: host.to_path_buf(), before: Content::of(host), after: None },
            })
        };
        let merged = (|| {
            let _serial = lock_file(&self.mutex, nix::fcntl::FlockArg::LockExclusive)?;
            let Some(users) = self.users.take() else { return Ok(None) };
            let file = users.unlock().map_err(|(_, e)| format!("cannot unlock {}: {e}", self.mutex.display()))?;
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(_last) => self.merge(),
                // Another session still uses the copy: the last one merges it.
                Err(_) => Ok(None),
            }
        })();
        match merged {
            Ok(before) => (rebase(before, &self.host, self.host_writable), None),
            Err(e) => (rebase(None, &self.host, self.host_writable), Some(e)),
        }
    }

    /// The copy into `~/.claude.json`, under Claude Code's lock, without the changes to
    /// the keys of [`CLAUDE_STATE`] (they stay as the host's file has them until the user
    /// keeps them: [`settle`]); then the copy and the base go. Returns what `~/.claude.json`
    /// held before and what the whole merge would be. On error both stay, for the next
    /// session (but a copy that is no JSON object).
    fn merge(&self) -> Result<Option<(Content, Content)>, String> {
        let ours = match Content::of(&self.copy) {
            Content::Missing => {
                let _ = std::fs::remove_file(&self.base);
                return Ok(None);
            }
            Content::File(b) => serde_json::from_slice::<Value>(&b).ok().filter(Value::is_object),
            Content::Other(_) => None,
        };
        let Some(ours) = ours else {
            // Not what Claude Code writes: kept for the user in sbx's state directory (not
            // read again), out of Claude Code's way.
            let kept = self.base.with_extension(format!("unmerged-{}", std::process::id()));
            let saved = match Content::of(&self.copy) {
                Content::File(b) => crate::fsio::replace(&kept, &b, 0o600).map(|()| format!("; what it held is in {}", kept.display())).unwrap_or_default(),
                _ => String::new(),
            };
            let _ = std::fs::remove_file(&self.copy);
            let _ = std::fs::remove_file(&self.base);
            return Err(format!("{} was not a JSON object at the end, so it was removed and {} left as it was{saved}", self.copy.display(), self.host.display()));
        };
        let base_bytes = match Content::of(&self.base) {
            Content::File(b) => b,
            _ => b"{}".to_vec(),
        };
        if Content::of(&self.copy) == Content::File(base_bytes.clone()) {
            // Nothing changed in the sandbox: nothing to merge.
            let _ = std::fs::remove_file(&self.copy);
            let _ = std::fs::remove_file(&self.base);
            return Ok(None);
        }
        let base: Value = serde_json::from_slice::<Value>(&base_bytes).ok().filter(Value::is_object).unwrap_or_else(|| Value::Object(serde_json::Map::new()));
        let lock = HostLock::take(&self.host)?;
        let before = Content::of(&self.host);
        let mut theirs = match &before {
            Content::Missing => Value::Object(serde_json::Map::new()),
            Content::File(b) => serde_json::from_slice::<Value>(b)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| format!("{} is not a JSON object: Claude Code's state of the session stays in {}", self.host.display(), self.copy.display()))?,
            Content::Other(what) => return Err(format!("{} is {what}: Claude Code's state of the session stays in {}", self.host.display(), self.copy.display())),
        };
        let original = theirs.clone();
        merge3(Some(&base), &ours, &mut theirs);
        let whole = json_bytes(&theirs);
        let kept = exec_parts(Some(&original), CLAUDE_STATE);
        for k in exec_parts(Some(&theirs), CLAUDE_STATE).keys().chain(kept.keys()).cloned().collect::<Vec<_>>() {
            set_path(&mut theirs, &k, kept.get(&k).cloned());
        }
        if theirs != original || before == Content::Missing {
            crate::fsio::replace(&self.host, &json_bytes(&theirs), 0o600).map_err(|e| e.to_string())?;
        }
        drop(lock);
        let _ = std::fs::remove_file(&self.copy);
        let _ = std::fs::remove_file(&self.base);
        Ok(Some((before, Content::File(whole))))
    }
}

/// A JSON value as Claude Code writes it: indented by two spaces, with a final newline.
fn json_bytes(v: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Writes a file of sbx's state directory (mode 0600, never through a symlink).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Opens (creating) a lock file of sbx's state directory.
fn open_lock(path: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn lock_file(path: &Path, arg: nix::fcntl::FlockArg) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    nix::fcntl::Flock::lock(open_lock(path)?, arg).map_err(|(_, e)| format!("cannot lock {}: {e}", path.display()))
}

/// Claude Code's lock on its state file: the directory `<file>.lock` (proper-lockfile's
/// protocol), taken for stale when it was not refreshed for [`LOCK_STALE`].
struct HostLock(PathBuf);

impl HostLock {
    fn take(file: &Path) -> Result<HostLock, String> {
        let mut path = file.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let deadline = std::time::Instant::now() + LOCK_STALE + LOCK_STALE;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(HostLock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::symlink_metadata(&path).ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age > LOCK_STALE);
                    if stale {
                        let _ = std::fs::remove_dir(&path);
                        continue;
                    }
                }
                Err(e) => return Err(format!("cannot lock {}: {e}", file.display())),
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{} stayed locked by another process ({})", file.display(), path.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A three-way merge of JSON objects: what `ours` changed from `base` is applied to
/// `theirs`, object by object (an object both still hold is merged key by key; any other
/// value changed, added or removed in `ours` replaces or removes `theirs`'s).
fn merge3(base: Option<&Value>, ours: &Value, theirs: &mut Value) {
    let (Some(o), Some(t)) = (ours.as_object(), theirs.as_object_mut()) else {
        *theirs = ours.clone();
        return;
    };
    let empty = serde_json::Map::new();
    let b = base.and_then(Value::as_object).unwrap_or(&empty);
    for (k, ov) in o {
        let bv = b.get(k);
        if bv == Some(ov) {
            continue;
        }
        match t.get_mut(k) {
            Some(tv) if ov.is_object() && tv.is_object() && bv.is_some_and(Value::is_object) => merge3(bv, ov, tv),
            _ => {
                t.insert(k.clone(), ov.clone());
            }
        }
    }
    for k in b.keys() {
        if !o.contains_key(k) {
            t.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(parts: Parts, before: &str) -> Watched {
        let before = if before.is_empty() { Content::Missing } else { Content::File(before.as_bytes().to_vec()) };
        Watched { path: "/h/.claude.json".into(), parts, before }
    }

    fn after(s: &str) -> Content {
        Content::File(s.as_bytes().to_vec())
    }

    #[test]
    fn the_agents_state_is_not_a_change() {
        let w = watched(Parts::Keys(CLAUDE_STATE), r#"{"numStartups": 1, "projects": {"/w": {"history": []}}}"#);
        assert_eq!(change_of(&w, after(r#"{"numStartups": 2, "projects": {"/w": {"history": ["hi"]}, "/x": {}}}"#)), None);
    }

    #[test]
    fn an_mcp_server_added_to_a_project_is_named_and_reverted_keeping_the_state() {
        let w = watched(Parts::Keys(CLAUDE_STATE), r#"{"numStartups": 1, "projects": {"/w/p": {"history": []}}}"#);
        let c = change_of(&w, after(r#"{"numStartups": 2, "projects": {"/w/p": {"history": ["x"], "mcpServers": {"evil": {"command": "sh"}}}}}"#)).unwrap();
        assert_eq!(c.change, crate::report::Change::Changed);
        assert_eq!(c.keys, vec![r#"projects["/w/p"].mcpServers"#]);
        assert_eq!(c.diff, vec![r#"+ projects["/w/p"].mcpServers: {"evil":{"command":"sh"}}"#]);
        let reverted: Value = serde_json::from_slice(c.reverted.as_ref().unwrap()).unwrap();
        assert_eq!(reverted, serde_json::json!({"numStartups": 2, "projects": {"/w/p": {"history": ["x"]}}}));
    }

    #[test]
    fn a_hook_in_a_created_settings_file_removes_the_file() {
        let w = watched(Parts::Keys(CLAUDE_SETTINGS), "");
        let c = change_of(&w, after(r#"{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "touch /tmp/x"}]}]}}"#)).unwrap();
        assert_eq!(c.change, crate::report::Change::Created);
        assert_eq!(c.keys, vec!["hooks"]);
        assert_eq!(c.reverted, None);
    }

    #[test]
    fn a_changed_permission_is_put_back() {
        let w = watched(Parts::Keys(CLAUDE_SETTINGS), r#"{"permissions": {"allow": ["Read"]}, "model": "a"}"#);
        let c = change_of(&w, after(r#"{"permissions": {"allow": ["Bash(*)"]}, "model": "b"}"#)).unwrap();
        assert_eq!(c.diff, vec![r#"- permissions: {"allow":["Read"]}"#, r#"+ permissions: {"allow":["Bash(*)"]}"#]);
        let reverted: Value = serde_json::from_slice(c.reverted.as_ref().unwrap()).unwrap();
        assert_eq!(reverted, serde_json::json!({"permissions": {"allow": ["Read"]}, "model": "b"}));
    }

    #[test]
    fn what_is_not_json_is_compared_and_put_back_whole() {
        let w = watched(Parts::Keys(CLAUDE_SETTINGS), r#"{"model": "a"}"#);
        let c = change_of(&w, after("not json")).unwrap();
        assert_eq!(c.reverted.as_deref(), Some(br#"{"model": "a"}"#.as_slice()));
        let w = watched(Parts::Keys(CLAUDE_SETTINGS), r#"{"model": "a"}"#);
        let c = change_of(&w, Content::Other("a symbolic link to /etc/passwd".into())).unwrap();
        assert_eq!(c.change, crate::report::Change::Replaced);
        assert_eq!(c.diff, vec!["- a file of 1 lines", "+ a symbolic link to /etc/passwd"]);
    }

    #[test]
    fn a_whole_file_diff_shows_the_changed_lines() {
        let w = watched(Parts::Whole, "model = \"a\"\n[x]\ny = 1\n");
        let c = change_of(&w, after("model = \"a\"\nnotify = [\"sh\", \"-c\", \"evil\"]\n[x]\ny = 1\n")).unwrap();
        assert_eq!(c.diff, vec!["+ notify = [\"sh\", \"-c\", \"evil\"]"]);
        assert_eq!(c.reverted.as_deref(), Some(b"model = \"a\"\n[x]\ny = 1\n".as_slice()));
    }

    #[test]
    fn the_sandboxs_changes_are_merged_and_the_hosts_kept() {
        use serde_json::json;
        let base = json!({"numStartups": 1, "tips": {"a": 1, "b": 1}, "projects": {"/w": {"history": [], "x": 1}, "/o": {"x": 1}}, "gone": 1});
        // The sandbox: a new start, a tip changed, its project's history, a key removed, one added.
        let ours = json!({"numStartups": 2, "tips": {"a": 2, "b": 1}, "projects": {"/w": {"history": ["hi"], "x": 1}, "/o": {"x": 1}}, "new": true});
        // The host meanwhile: another tip, another project, a key of its own.
        let mut theirs = json!({"numStartups": 1, "tips": {"a": 1, "b": 5}, "projects": {"/w": {"history": [], "x": 1}, "/o": {"x": 3}, "/h": {}}, "gone": 1, "host": 1});
        merge3(Some(&base), &ours, &mut theirs);
        assert_eq!(
            theirs,
            json!({"numStartups": 2, "tips": {"a": 2, "b": 5}, "projects": {"/w": {"history": ["hi"], "x": 1}, "/o": {"x": 3}, "/h": {}}, "new": true, "host": 1})
        );
        // Both changed the same value: the sandbox's is the later one.
        let mut theirs = json!({"numStartups": 7});
        merge3(Some(&json!({"numStartups": 1})), &json!({"numStartups": 2}), &mut theirs);
        assert_eq!(theirs, json!({"numStartups": 2}));
        // No base (no file on the host at the start): everything the sandbox wrote is new.
        let mut theirs = json!({});
        merge3(None, &json!({"userID": "u"}), &mut theirs);
        assert_eq!(theirs, json!({"userID": "u"}));
    }

    #[test]
    fn keys_are_shown_plainly_or_quoted() {
        assert_eq!(show_key(&["projects".into(), "/a.b".into(), "allowedTools".into()]), r#"projects["/a.b"].allowedTools"#);
    }
}
