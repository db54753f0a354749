//! fence's command rules (`command.deny`, `command.allow`, `command.useDefaults`), decided at
//! every exec of the sandbox with the real argv (the seccomp supervisor reads it; see
//! `monitor::exec`). Pure: words in, a verdict out.
//!
//! # Matching (fence's semantics, applied to an exec instead of a shell line)
//!
//! A rule is words, split on blanks with `'...'` and `"..."` quoting (`git push`,
//! `git commit -m "hello world"`). An exec matches a rule when the rule's words are a prefix
//! of the exec's words: its program name, then `argv[1..]`. A rule word ending in `=`
//! (`dd if=`) matches an argument that starts with it (`if=/dev/zero`). The program name is
//! tried in every form the exec has, and one match is enough: the base name of the path
//! passed to exec (`/usr/bin/git` → `git`), the base name of the file that path resolves to
//! (a symlink `python3` → `python3.11`), and the base name of `argv[0]` (a multi-call
//! binary such as busybox acts on it). A rule whose first word has a `/` names the program
//! by path: it matches the path passed (made absolute) or the resolved one.
//!
//! `allow` overrides `deny` (fence: an exec an allow rule matches is never refused); then the
//! user's `deny`; then fence's default list of dangerous commands ([`DEFAULT_DENIED`]) when
//! `useDefaults` is true, or is unset in a policy that has command rules of its own.
//!
//! Unset with no rules, sbx does not apply the list (fence does): everything on it is
//! refused by the sandbox itself (no capabilities for `shutdown`, `insmod`, `chroot` or
//! `mkfs` on a device; seccomp for `unshare` and `nsenter`; no docker socket unless
//! `allowUnixSockets` lists it), so it would cost every exec of every session a check and
//! refuse harmless commands (`dd if=/dev/zero of=./file`) for no added confinement.

/// fence's `DefaultDeniedCommands` (fencesandbox/fence `internal/config/config.go`): system
/// control, kernel modules, disks, container and namespace escapes.
pub const DEFAULT_DENIED: &[&str] = &[
    "shutdown",
    "reboot",
    "halt",
    "poweroff",
    "init 0",
    "init 6",
    "systemctl poweroff",
    "systemctl reboot",
    "systemctl halt",
    "insmod",
    "rmmod",
    "modprobe",
    "kexec",
    "mkfs",
    "mkfs.ext2",
    "mkfs.ext3",
    "mkfs.ext4",
    "mkfs.xfs",
    "mkfs.btrfs",
    "mkfs.vfat",
    "mkfs.ntfs",
    "fdisk",
    "parted",
    "dd if=",
    "docker run -v /:/",
    "docker run --privileged",
    "chroot",
    "unshare",
    "nsenter",
];

/// [`DEFAULT_DENIED`] as rules, parsed once (they are checked at every exec).
fn default_rules() -> &'static [Rule] {
    static RULES: std::sync::OnceLock<Vec<Rule>> = std::sync::OnceLock::new();
    RULES.get_or_init(|| DEFAULT_DENIED.iter().map(|t| Rule::parse(t).expect("the default rules parse")).collect())
}

/// One rule: its text as written, and its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub text: String,
    words: Vec<String>,
}

impl Rule {
    /// A rule from its text; `Err` says why it is not one (empty, an open quote).
    pub fn parse(text: &str) -> Result<Rule, String> {
        let words = words(text)?;
        if words.is_empty() {
            return Err("a command rule must name a command".into());
        }
        Ok(Rule { text: text.trim().to_string(), words })
    }

    /// The rules of a config list (`key` names it in an error).
    pub fn parse_list(key: &'static str, list: &[String]) -> Result<Vec<Rule>, (&'static str, String, String)> {
        list.iter().map(|t| Rule::parse(t).map_err(|why| (key, t.clone(), why))).collect()
    }

    /// Whether one rule's words begin the other's (each would match what the other does).
    pub fn overlaps(&self, other: &Rule) -> bool {
        let n = self.words.len().min(other.words.len());
        self.words[..n] == other.words[..n]
    }

    /// How many words of an exec's argv this rule reads.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn matches(&self, exec: &Exec<'_>) -> bool {
        let (first, rest) = self.words.split_first().expect("a rule has a word");
        let program = if first.contains('/') {
            [exec.path, exec.resolved].iter().any(|p| p.is_some_and(|p| p == first.as_str()))
        } else {
            [exec.path, exec.resolved, exec.argv.first().map(String::as_str)]
                .iter()
                .any(|p| p.is_some_and(|p| basename(p) == first.as_str()))
        };
        program
            && rest.len() < exec.argv.len()
            && rest.iter().zip(&exec.argv[1..]).all(|(word, arg)| match word.strip_suffix('=') {
                Some(_) => arg.starts_with(word.as_str()),
                None => arg == word,
            })
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether the exec's program is `name` by any of its names.
fn program_is(exec: &Exec<'_>, name: &str) -> bool {
    [exec.path, exec.resolved, exec.argv.first().map(String::as_str)].iter().any(|p| p.is_some_and(|p| basename(p) == name))
}

/// ssh's options that take an argument (its getopt string, OpenSSH 9).
const SSH_OPTS_WITH_ARG: &str = "BbcDEeFIiJLlmOoPpQRSWw";
/// `-o` keys (case does not matter) that name another host, run something, or hide the remote
/// command: an ssh run with one cannot be checked.
const SSH_UNCHECKABLE_KEYS: &[&str] = &["hostname", "proxycommand", "proxyjump", "remotecommand", "include", "match", "localcommand", "permitlocalcommand"];

/// An ssh run, as its arguments say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshRun {
    /// The destination's host, lower case, without a trailing dot.
    pub host: String,
    /// The remote command, its words joined with spaces as ssh sends them.
    pub remote: String,
    /// Why the rules cannot check it, when they cannot: an option that names another host
    /// or hides the remote command (`-o HostName=`, `-J`, `-W`, `-F`, ...).
    pub unchecked: Option<String>,
}

/// ssh's arguments (after the program), parsed as ssh does: options before and after the
/// destination (ssh parses options again after it), the first other word the destination
/// (`[user@]host`, `ssh://[user@]host[:port]`), the words from the next other one the remote
/// command. `None` when there is no destination.
pub fn ssh_run(args: &[String]) -> Option<SshRun> {
    let mut host: Option<String> = None;
    let mut unchecked: Option<String> = None;
    let mut i = 0;
    let mut options_done = false;
    while i < args.len() {
        let a = &args[i];
        if !options_done && a == "--" {
            options_done = true;
            i += 1;
            continue;
        }
        let flags = if options_done { None } else { a.strip_prefix('-').filter(|f| !f.is_empty()) };
        let Some(flags) = flags else {
            if host.is_none() {
                host = Some(a.clone());
                i += 1;
                continue;
            }
            break;
        };
        i += 1;
        for (at, c) in flags.char_indices() {
            if !SSH_OPTS_WITH_ARG.contains(c) {
                continue;
            }
            let value = if at + 1 < flags.len() {
                flags[at + 1..].to_string()
            } else {
                i += 1;
                args.get(i - 1).cloned().unwrap_or_default()
            };
            let reason = match c {
                'F' => Some(format!("-F {value}: a configuration file sbx cannot check")),
                'J' => Some(format!("-J {value}: a jump through another host")),
                'W' => Some(format!("-W {value}: a forward to another host")),
                'o' => {
                    let key = value.split(['=', ' ', '\t']).next().unwrap_or_default().to_ascii_lowercase();
                    let val = value[key.len()..].trim_start_matches(['=', ' ', '\t']);
                    let harmless = (key == "remotecommand" && val.eq_ignore_ascii_case("none")) || (key == "permitlocalcommand" && val.eq_ignore_ascii_case("no"));
                    (SSH_UNCHECKABLE_KEYS.contains(&key.as_str()) && !harmless).then(|| format!("-o {value}: sbx cannot check where that leads or what it runs"))
                }
                _ => None,
            };
            if let Some(r) = reason {
                unchecked.get_or_insert(r);
            }
            break;
        }
    }
    let dest = host?;
    let dest = dest.strip_prefix("ssh://").map_or(dest.as_str(), |d| d.split(['/', ':']).next().unwrap_or(d));
    let host = dest.rsplit('@').next().unwrap_or(dest).trim_end_matches('.').to_ascii_lowercase();
    Some(SshRun { host, remote: args[i.min(args.len())..].join(" "), unchecked })
}

/// A host pattern: `*` matches any characters (none included); case does not matter.
fn host_matches(pattern: &str, host: &str) -> bool {
    fn glob(p: &[u8], h: &[u8]) -> bool {
        match p.split_first() {
            None => h.is_empty(),
            Some((b'*', rest)) => (0..=h.len()).any(|i| glob(rest, &h[i..])),
            Some((c, rest)) => h.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && glob(rest, &h[1..]),
        }
    }
    glob(pattern.as_bytes(), host.as_bytes())
}

/// The simple commands of a shell line, as words: split on `&&`, `||`, `;`, `|`, `&` and
/// newlines outside quotes and parentheses; a `sh -c 'LINE'` (or bash, zsh, dash, ksh, with
/// any flags holding `c`) contributes its LINE's commands too. What a remote shell would run,
/// for rules on it; quotes are removed as the shell would (no expansions).
pub fn shell_commands(line: &str) -> Vec<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut quote, mut depth) = (None, 0usize);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (None, '(') => {
                depth += 1;
                current.push(c);
            }
            (None, ')') => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            (None, ';' | '|' | '&' | '\n') if depth == 0 => {
                if matches!((c, chars.peek()), ('|', Some('|')) | ('&', Some('&'))) {
                    chars.next();
                }
                parts.push(std::mem::take(&mut current));
            }
            (None, c) => current.push(c),
        }
    }
    parts.push(current);
    let mut out = Vec::new();
    for part in parts {
        let Ok(mut ws) = words(part.trim().trim_start_matches('(').trim_end_matches(')')) else { continue };
        if ws.is_empty() {
            continue;
        }
        let shell = matches!(basename(&ws[0]), "sh" | "bash" | "zsh" | "dash" | "ksh" | "fish");
        let inner = shell.then(|| ws.iter().position(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('c'))).flatten();
        let nested = inner.and_then(|i| ws.get(i + 1)).map(|line| shell_commands(line));
        ws[0] = basename(&ws[0]).to_string();
        out.push(ws);
        out.extend(nested.into_iter().flatten());
    }
    out
}

/// A rule's words, or a command line written as [`join_words`] writes it.
pub fn words_of(text: &str) -> Vec<String> {
    words(text).unwrap_or_else(|_| text.split_whitespace().map(String::from).collect())
}

/// Splits a rule on blanks, with single and double quotes (no escapes: fence has none).
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ' | '\t' | '\n') => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(format!("the quote {q} is not closed"));
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// Words written back as a rule would be (`git commit -m "a b"`): a word with a blank, a
/// quote or nothing in it is quoted, with double quotes unless it holds one.
pub fn join_words(words: &[String]) -> String {
    let quote = |w: &String| {
        if !w.is_empty() && !w.contains([' ', '\t', '\n', '\'', '"']) {
            w.clone()
        } else if w.contains('"') {
            format!("'{w}'")
        } else {
            format!("\"{w}\"")
        }
    };
    words.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// An exec as the supervisor saw it.
#[derive(Debug, Clone, Copy)]
pub struct Exec<'a> {
    /// The path passed to exec, made absolute (`None` when it could not be read).
    pub path: Option<&'a str>,
    /// The file it resolves to in the sandbox (symlinks followed).
    pub resolved: Option<&'a str>,
    /// `argv`, as far as the rules read it (at least [`CommandRules::words_needed`]).
    pub argv: &'a [String],
}

/// Which list refused an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// The user's `command.deny`.
    Deny,
    /// fence's default list (`command.useDefaults`).
    Defaults,
    /// `ssh.deniedHosts`.
    SshDeniedHost,
    /// `ssh.allowedHosts` (the host matches none).
    SshAllowedHosts,
    /// `ssh.deniedCommands`.
    SshDeniedCommand,
    /// `ssh.inheritDeny`: `command.deny` or the default list, applied to the remote command.
    SshInherited,
    /// `ssh.allowedCommands` (a part of the remote command matches none).
    SshAllowedCommands,
    /// An ssh run the ssh rules cannot check (an option that names another host or hides
    /// the remote command, a command substitution in it): refused.
    SshUnchecked,
    /// An exec whose program sbx cannot identify while command rules apply: refused.
    Unresolved,
}

impl List {
    /// The config key, for messages and events.
    pub fn key(self) -> &'static str {
        match self {
            List::Deny => "command.deny",
            List::Defaults => "command.useDefaults",
            List::SshDeniedHost => "ssh.deniedHosts",
            List::SshAllowedHosts => "ssh.allowedHosts",
            List::SshDeniedCommand => "ssh.deniedCommands",
            List::SshInherited => "ssh.inheritDeny",
            List::SshAllowedCommands => "ssh.allowedCommands",
            List::SshUnchecked => "ssh",
            List::Unresolved => "command",
        }
    }
}

/// A refused exec: the rule and its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: String,
    pub list: List,
}

/// The command rules of a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandRules {
    pub deny: Vec<Rule>,
    pub allow: Vec<Rule>,
    /// fence's default list applies (`useDefaults`; unset: when there are rules).
    pub defaults: bool,
    /// fence's `ssh` section, for execs of ssh.
    pub ssh: SshRules,
}

/// fence's `ssh` section: which hosts an `ssh` run may reach and which remote commands it
/// may run. Evaluated in fence's order: denied hosts, allowed hosts, an interactive session
/// (no remote command) allowed, denied commands, the inherited global denies, all commands
/// allowed, allowed commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshRules {
    /// Host patterns (`*.example.com`, `prod-*`); `*` matches any characters.
    pub allowed_hosts: Vec<String>,
    pub denied_hosts: Vec<String>,
    pub allowed_commands: Vec<Rule>,
    pub denied_commands: Vec<Rule>,
    /// Denylist mode: every remote command that no deny rule matches runs.
    pub allow_all_commands: bool,
    /// `command.deny` (and the default list, when on) apply to remote commands too.
    pub inherit_deny: bool,
}

impl SshRules {
    /// Whether the section says anything (fence: no ssh policy, no check).
    pub fn active(&self) -> bool {
        *self != SshRules::default()
    }
}

impl CommandRules {
    /// From the config's lists; `Err((key, entry, why))` for a rule that is not one.
    pub fn new(deny: &[String], allow: &[String], use_defaults: Option<bool>) -> Result<CommandRules, (&'static str, String, String)> {
        let defaults = use_defaults.unwrap_or(!deny.is_empty() || !allow.is_empty());
        Ok(CommandRules { deny: Rule::parse_list("command.deny", deny)?, allow: Rule::parse_list("command.allow", allow)?, defaults, ssh: SshRules::default() })
    }

    /// Whether any rule applies: execs are then checked.
    pub fn active(&self) -> bool {
        self.defaults || !self.deny.is_empty() || self.ssh.active()
    }

    /// Whether the whole argv is needed to decide `exec` (an ssh run, under ssh rules: its
    /// remote command is the rest of the words).
    pub fn wants_all_words(&self, exec: &Exec<'_>) -> bool {
        self.ssh.active() && program_is(exec, "ssh")
    }

    /// How many words of argv the rules read at most (the program and its arguments).
    pub fn words_needed(&self) -> usize {
        let defaults = if self.defaults { 3 } else { 0 };
        self.deny.iter().chain(&self.allow).map(Rule::len).max().unwrap_or(0).max(defaults)
    }

    /// The verdict on one exec: `None` lets it run.
    pub fn check(&self, exec: &Exec<'_>) -> Option<Refusal> {
        if let Some(refusal) = self.local(exec) {
            return Some(refusal);
        }
        if self.wants_all_words(exec) {
            return self.ssh_check(&exec.argv[1.min(exec.argv.len())..]);
        }
        None
    }

    /// `command.allow`, `command.deny` and the default list on one command.
    fn local(&self, exec: &Exec<'_>) -> Option<Refusal> {
        if self.allow.iter().any(|r| r.matches(exec)) {
            return None;
        }
        if let Some(r) = self.deny.iter().find(|r| r.matches(exec)) {
            return Some(Refusal { rule: r.text.clone(), list: List::Deny });
        }
        if self.defaults
            && let Some(r) = default_rules().iter().find(|r| r.matches(exec))
        {
            return Some(Refusal { rule: r.text.clone(), list: List::Defaults });
        }
        None
    }

    /// An ssh run's arguments (after the program) against the ssh rules.
    fn ssh_check(&self, args: &[String]) -> Option<Refusal> {
        let ssh = &self.ssh;
        let Some(SshRun { host, remote, unchecked }) = ssh_run(args) else {
            // No destination (`ssh -V`): nothing is reached.
            return None;
        };
        let refuse = |list: List, rule: String| Some(Refusal { rule, list });
        if let Some(why) = unchecked {
            return refuse(List::SshUnchecked, why);
        }
        // What a remote shell expands before it runs anything: not a command the rules see.
        let hidden: &[&str] = if ssh.allow_all_commands { &["`", "$(", "<(", ">("] } else { &["`", "$(", "<(", ">(", "\\", "{", "}"] };
        if let Some(h) = hidden.iter().find(|h| remote.contains(**h)) {
            return refuse(List::SshUnchecked, format!("the remote command holds {h}, which the ssh rules cannot see through"));
        }
        if let Some(p) = ssh.denied_hosts.iter().find(|p| host_matches(p, &host)) {
            return refuse(List::SshDeniedHost, p.clone());
        }
        if !ssh.allowed_hosts.is_empty() && !ssh.allowed_hosts.iter().any(|p| host_matches(p, &host)) {
            return refuse(List::SshAllowedHosts, format!("no pattern matches {host}"));
        }
        if remote.trim().is_empty() {
            return None;
        }
        let parts = shell_commands(&remote);
        for part in &parts {
            let exec = Exec { path: None, resolved: None, argv: part };
            if let Some(r) = ssh.denied_commands.iter().find(|r| r.matches(&exec)) {
                return refuse(List::SshDeniedCommand, r.text.clone());
            }
            if ssh.inherit_deny
                && let Some(r) = self.local(&exec)
            {
                return refuse(List::SshInherited, format!("{}: {}", r.list.key(), r.rule));
            }
        }
        if ssh.allow_all_commands {
            return None;
        }
        for part in &parts {
            let exec = Exec { path: None, resolved: None, argv: part };
            if !ssh.allowed_commands.iter().any(|r| r.matches(&exec)) {
                return refuse(List::SshAllowedCommands, format!("no rule allows {}", join_words(part)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn rules(deny: &[&str], allow: &[&str], defaults: bool) -> CommandRules {
        let s = |l: &[&str]| l.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        CommandRules::new(&s(deny), &s(allow), Some(defaults)).unwrap()
    }

    fn check(r: &CommandRules, path: &str, resolved: &str, words: &[&str]) -> Option<String> {
        let argv = argv(words);
        r.check(&Exec { path: Some(path), resolved: Some(resolved), argv: &argv }).map(|r| r.rule)
    }

    #[test]
    fn words_split_on_blanks_and_keep_quoted_text() {
        assert_eq!(words(r#"git commit -m "hello world""#).unwrap(), ["git", "commit", "-m", "hello world"]);
        assert_eq!(words("  dd   if= ").unwrap(), ["dd", "if="]);
        assert_eq!(words("echo ''").unwrap(), ["echo", ""]);
        assert!(words("git 'push").is_err());
        assert!(Rule::parse("   ").is_err());
    }

    #[test]
    fn joined_words_read_back_as_the_same_words() {
        for ws in [argv(&["git", "commit", "-m", "hello world"]), argv(&["echo", "", "it's", r#"say "hi""#])] {
            assert_eq!(words(&join_words(&ws)).unwrap(), ws);
        }
    }

    #[test]
    fn a_rule_is_a_prefix_of_the_program_and_its_arguments() {
        let r = rules(&["git push", "npm publish"], &[], false);
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "push", "origin", "main"]).as_deref(), Some("git push"));
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "push"]).as_deref(), Some("git push"));
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "status"]), None);
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git"]), None);
        // `git -C dir push` is another command line: fence's prefix semantics.
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "-C", "x", "push"]), None);
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "pushx"]), None);
    }

    #[test]
    fn the_program_is_matched_by_every_name_it_has() {
        let r = rules(&["git push"], &[], false);
        // A copy elsewhere, by its base name; a symlink by its target; argv[0] of a multi-call binary.
        assert!(check(&r, "/tmp/x/git", "/tmp/x/git", &["whatever", "push"]).is_some());
        assert!(check(&r, "/tmp/g", "/usr/bin/git", &["g", "push"]).is_some());
        assert!(check(&r, "/bin/busybox", "/bin/busybox", &["git", "push"]).is_some());
        assert!(check(&r, "/tmp/mygit", "/tmp/mygit", &["mygit", "push"]).is_none());
        // By path: the first word with a slash.
        let r = rules(&["/usr/bin/git push"], &[], false);
        assert!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "push"]).is_some());
        assert!(check(&r, "/tmp/git", "/tmp/git", &["git", "push"]).is_none());
    }

    #[test]
    fn allow_overrides_deny_and_the_defaults() {
        let r = rules(&["git push"], &["git push origin docs"], true);
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "push", "origin", "docs"]), None);
        assert_eq!(check(&r, "/usr/bin/git", "/usr/bin/git", &["git", "push", "origin", "main"]).as_deref(), Some("git push"));
        let r = rules(&[], &["dd if=/dev/zero"], true);
        assert_eq!(check(&r, "/bin/dd", "/bin/dd", &["dd", "if=/dev/zero", "of=x"]), None);
        assert_eq!(check(&r, "/bin/dd", "/bin/dd", &["dd", "if=/dev/sda"]).as_deref(), Some("dd if="));
    }

    #[test]
    fn the_default_list_is_fences_and_can_be_turned_off() {
        let on = rules(&[], &[], true);
        let refusal = on.check(&Exec { path: Some("/usr/sbin/chroot"), resolved: Some("/usr/sbin/chroot"), argv: &argv(&["chroot", "/"]) }).unwrap();
        assert_eq!((refusal.rule.as_str(), refusal.list), ("chroot", List::Defaults));
        assert!(check(&on, "/usr/bin/docker", "/usr/bin/docker", &["docker", "run", "--privileged", "x"]).is_some());
        assert!(check(&on, "/usr/bin/docker", "/usr/bin/docker", &["docker", "run", "x"]).is_none());
        assert!(check(&on, "/usr/bin/systemctl", "/usr/bin/systemctl", &["systemctl", "status"]).is_none());
        let off = rules(&[], &[], false);
        assert!(!off.active());
        // Unset: with rules of the policy's own, as fence; with none, off (see the module).
        let s = |l: &[&str]| l.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert!(CommandRules::new(&s(&["git push"]), &[], None).unwrap().defaults);
        assert!(CommandRules::new(&[], &s(&["git push"]), None).unwrap().defaults);
        assert!(!CommandRules::new(&[], &[], None).unwrap().active());
        assert!(check(&off, "/usr/sbin/chroot", "/usr/sbin/chroot", &["chroot", "/"]).is_none());
        assert_eq!(on.words_needed(), 3);
    }

    fn ssh_rules(f: impl FnOnce(&mut SshRules)) -> CommandRules {
        let mut r = CommandRules::default();
        f(&mut r.ssh);
        r
    }

    fn ssh(r: &CommandRules, line: &str) -> Option<String> {
        let argv = words(line).unwrap();
        r.check(&Exec { path: Some("/usr/bin/ssh"), resolved: Some("/usr/bin/ssh"), argv: &argv }).map(|r| format!("{}: {}", r.list.key(), r.rule))
    }

    #[test]
    fn ssh_arguments_give_the_host_and_the_remote_command() {
        let d = |line: &str| ssh_run(&words(line).unwrap()[1..]).map(|r| (r.host, r.remote, r.unchecked.is_some()));
        let some = |h: &str, c: &str| Some((h.to_string(), c.to_string(), false));
        assert_eq!(d("ssh server1.example.com"), some("server1.example.com", ""));
        assert_eq!(d("ssh user@Server1.example.com. ls -la"), some("server1.example.com", "ls -la"));
        assert_eq!(d("ssh -p 2222 -i key -vt -o StrictHostKeyChecking=no -p2222 h 'cat /x'"), some("h", "cat /x"));
        assert_eq!(d("ssh -l git -- ssh://git@github.com:22/repo git-upload-pack 'r.git'"), some("github.com", "git-upload-pack r.git"));
        // ssh parses options after the destination too.
        assert_eq!(d("ssh h -p 22 -v rm -rf /"), some("h", "rm -rf /"));
        // scp's own options are harmless.
        assert_eq!(d("ssh -x -oPermitLocalCommand=no -oRemoteCommand=none -oForwardAgent=no -l u -s -- h sftp"), some("h", "sftp"));
        assert_eq!(d("ssh -V"), None);
        // What names another host or hides the command cannot be checked.
        for line in ["ssh a.example.com -oHostName=prod-db", "ssh -o 'hostname prod-db' a", "ssh -J jump a ls", "ssh -W db:22 a", "ssh -F cfg a",
                     "ssh -oProxyCommand='nc db 22' a", "ssh -o RemoteCommand=rm a", "ssh -vJjump a", "ssh -oInclude=x a"] {
            assert!(d(line).is_some_and(|r| r.2), "{line}");
        }
    }

    #[test]
    fn ssh_rules_follow_fences_order() {
        let r = ssh_rules(|s| {
            s.allowed_hosts = vec!["*.example.com".into(), "prod-*".into()];
            s.denied_hosts = vec!["prod-db.example.com".into()];
            s.allowed_commands = Rule::parse_list("x", &["ls".into(), "cat".into(), "tail -f".into(), "git status".into()]).unwrap();
        });
        assert_eq!(ssh(&r, "ssh server1.example.com"), None, "an interactive session");
        assert_eq!(ssh(&r, "ssh prod-web-01 ls -la"), None);
        assert_eq!(ssh(&r, "ssh prod-db.example.com ls").as_deref(), Some("ssh.deniedHosts: prod-db.example.com"));
        assert_eq!(ssh(&r, "ssh other.domain.com ls").as_deref(), Some("ssh.allowedHosts: no pattern matches other.domain.com"));
        assert_eq!(ssh(&r, "ssh a.example.com tail /var/log/x").as_deref(), Some("ssh.allowedCommands: no rule allows tail /var/log/x"));
        assert_eq!(ssh(&r, "ssh a.example.com tail -f /var/log/x"), None);
        // Chains and nested shells do not get past the allowlist.
        for line in ["ssh a.example.com 'ls && rm -rf /'", "ssh a.example.com 'git status; shutdown'", "ssh a.example.com 'ls | xargs rm'", "ssh a.example.com \"sh -c 'ls; rm x'\""] {
            assert!(ssh(&r, line).is_some(), "{line}");
        }
        assert_eq!(ssh(&r, "ssh a.example.com 'ls && cat f | cat'"), None);
        // The review's bypasses: options after the host, substitutions, escapes, a trailing dot.
        assert_eq!(ssh(&r, "ssh a.example.com -oHostName=prod-db.example.com ls").as_deref(), Some("ssh: -o HostName=prod-db.example.com: sbx cannot check where that leads or what it runs"));
        for line in ["ssh a.example.com 'ls $(rm -rf ~)'", "ssh a.example.com 'ls `rm x`'", "ssh a.example.com 'r\\m x'", "ssh a.example.com '{ ls; rm x; }'"] {
            assert!(ssh(&r, line).is_some_and(|r| r.starts_with("ssh: the remote command holds")), "{line}");
        }
        assert_eq!(ssh(&r, "ssh prod-db.example.com. ls").as_deref(), Some("ssh.deniedHosts: prod-db.example.com"));
        // Not ssh: not these rules.
        let argv = words("scp-like other.domain.com").unwrap();
        assert_eq!(r.check(&Exec { path: Some("/usr/bin/rsync"), resolved: None, argv: &argv }), None);
    }

    #[test]
    fn ssh_denylist_mode_and_inherited_denies() {
        let r = ssh_rules(|s| {
            s.allowed_hosts = vec!["*.example.com".into()];
            s.allow_all_commands = true;
            s.denied_commands = Rule::parse_list("x", &["rm -rf".into(), "shutdown".into()]).unwrap();
        });
        assert_eq!(ssh(&r, "ssh a.example.com apt-get update"), None);
        assert_eq!(ssh(&r, "ssh a.example.com rm file"), None);
        assert_eq!(ssh(&r, "ssh a.example.com 'ls && rm -rf /'").as_deref(), Some("ssh.deniedCommands: rm -rf"));
        let mut r = CommandRules::new(&["git push".into()], &[], Some(true)).unwrap();
        r.ssh.allowed_hosts = vec!["*.example.com".into()];
        r.ssh.allow_all_commands = true;
        assert_eq!(ssh(&r, "ssh a.example.com git push origin main"), None, "not inherited");
        r.ssh.inherit_deny = true;
        assert_eq!(ssh(&r, "ssh a.example.com git push origin main").as_deref(), Some("ssh.inheritDeny: command.deny: git push"));
        assert_eq!(ssh(&r, "ssh a.example.com reboot").as_deref(), Some("ssh.inheritDeny: command.useDefaults: reboot"));
        assert_eq!(ssh(&r, "ssh a.example.com git status"), None);
        // No ssh section: ssh is any other program.
        assert!(!CommandRules::default().ssh.active());
    }
}
