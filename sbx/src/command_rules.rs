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
}

impl List {
    /// The config key, for messages and events.
    pub fn key(self) -> &'static str {
        match self {
            List::Deny => "command.deny",
            List::Defaults => "command.useDefaults",
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
}

impl CommandRules {
    /// From the config's lists; `Err((key, entry, why))` for a rule that is not one.
    pub fn new(deny: &[String], allow: &[String], use_defaults: Option<bool>) -> Result<CommandRules, (&'static str, String, String)> {
        let parse = |key: &'static str, list: &[String]| {
            list.iter().map(|t| Rule::parse(t).map_err(|why| (key, t.clone(), why))).collect::<Result<Vec<_>, _>>()
        };
        let defaults = use_defaults.unwrap_or(!deny.is_empty() || !allow.is_empty());
        Ok(CommandRules { deny: parse("command.deny", deny)?, allow: parse("command.allow", allow)?, defaults })
    }

    /// Whether any rule applies: execs are then checked.
    pub fn active(&self) -> bool {
        self.defaults || !self.deny.is_empty()
    }

    /// How many words of argv the rules read at most (the program and its arguments).
    pub fn words_needed(&self) -> usize {
        let defaults = if self.defaults { 3 } else { 0 };
        self.deny.iter().chain(&self.allow).map(Rule::len).max().unwrap_or(0).max(defaults)
    }

    /// The verdict on one exec: `None` lets it run.
    pub fn check(&self, exec: &Exec<'_>) -> Option<Refusal> {
        if self.allow.iter().any(|r| r.matches(exec)) {
            return None;
        }
        if let Some(r) = self.deny.iter().find(|r| r.matches(exec)) {
            return Some(Refusal { rule: r.text.clone(), list: List::Deny });
        }
        if self.defaults {
            for text in DEFAULT_DENIED {
                let rule = Rule::parse(text).expect("the default rules parse");
                if rule.matches(exec) {
                    return Some(Refusal { rule: rule.text, list: List::Defaults });
                }
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
}
