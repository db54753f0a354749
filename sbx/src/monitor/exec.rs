//! The seccomp supervisor's decision on every exec when command rules apply
//! (`command_rules`: fence's `command.deny`, `command.allow`, `command.useDefaults`).
//!
//! The filter notifies execve(2) and execveat(2) (`syscalls::MEDIATED_EXEC`). For each, the
//! supervisor reads the path and as many words of argv as the rules need from the caller's
//! memory, makes the path absolute (the caller's cwd, or the directory descriptor of
//! execveat), finds the file it resolves to in the sandbox (`openat2` beneath
//! `/proc/PID/root`, `RESOLVE_IN_ROOT`), checks the notification is still valid, and decides:
//! an exec no rule refuses is let through with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`; a refused
//! one fails with `EPERM` and becomes a denial of source `command` with the rule, the argv
//! and the process's ancestry. EPERM rather than EACCES: the kernel tracer files an EPERM
//! of a notified syscall under seccomp and leaves it to the supervisor's report, where an
//! EACCES would be reported again as file permissions. A path that does not resolve to a
//! file is let through: the kernel fails it (ENOENT) as it would have, so a shell's search
//! of `$PATH` (execve of each directory's `git` in turn) is one refusal, not one per entry.
//!
//! # The limit, said plainly
//!
//! CONTINUE makes the kernel run the exec from the caller's registers and memory *after*
//! the check: a program that rewrites its argv (or the path) from another thread, or from a
//! process that shares its memory, between the check and the kernel's own copy can run a
//! command a rule denies. Command rules are a guardrail against an agent's mistakes (a
//! `git push` it was told not to make, from a Makefile, a script or its own subprocess);
//! the sandbox's boundary is the filesystem, network and syscall policy, which does not rest
//! on this check.

use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::command_rules::{CommandRules, Exec, List};

use super::notify::{Text, read_bytes, read_cstr};

/// At most this many bytes are read of the path and of each argument.
const MAX_WORD: usize = 4096;
/// At most this many arguments are shown in the report of a refused exec.
const REPORTED_ARGS: usize = 32;
/// At most this many words of an ssh run are read for its remote command (ssh rules).
const SSH_ARGS: usize = 256;
/// Ancestry shown for a refused exec, parents first after the caller.
const ANCESTORS: usize = 8;
const AT_EMPTY_PATH: u64 = 0x1000;

/// A refused exec, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRefusal {
    /// The rule that refused it, as written.
    pub rule: String,
    pub list: List,
    /// The argv, as far as it was read (at most [`REPORTED_ARGS`] words).
    pub argv: Vec<String>,
    /// The caller and its parents: `sh (412) < make (398) < bash (377)`.
    pub ancestry: String,
}

/// What the supervisor does with an exec notification.
pub(crate) enum Verdict {
    Continue,
    /// Fail with this errno and no report: what the kernel itself would answer (no such file).
    Fail(i32),
    Refuse { path: Option<PathBuf>, requested: Option<String>, refusal: CommandRefusal },
}

/// Decides execs against `rules`.
pub(crate) struct ExecDecider {
    rules: CommandRules,
    /// How many words of argv the rules read.
    words: usize,
}

/// Interpreters the kernel may chain (`#!`), as binfmt_script allows.
const MAX_INTERPRETERS: usize = 4;

impl ExecDecider {
    pub(crate) fn new(rules: CommandRules) -> ExecDecider {
        let words = rules.words_needed().max(1);
        ExecDecider { rules, words }
    }

    /// Whether `nr` is an exec this decider answers.
    pub(crate) fn handles(nr: i64) -> bool {
        nr == libc::SYS_execve || nr == libc::SYS_execveat
    }

    /// The verdict on one exec notification (read before the caller can run again; the
    /// caller's validity is checked by the caller of this, after it).
    ///
    /// The file is found as the caller sees it: its path made absolute (cwd or the
    /// directory descriptor), `/proc/self`, `/proc/thread-self`, the caller's own pid and
    /// `/dev/fd` mapped to the caller's entries (resolved from sbx, they would be sbx's),
    /// then resolved beneath the caller's root. A file that does not exist is answered
    /// ENOENT here, as the kernel would, and never continued: a file that appears after the
    /// check cannot run unchecked. A path that cannot be resolved otherwise is refused. The
    /// rules then see every command the kernel will run: a script's interpreter line
    /// (`#!/usr/bin/git push` runs git) and a program run by the dynamic loader.
    pub(crate) fn decide(&self, req: &libc::seccomp_notif) -> Verdict {
        let pid = req.pid;
        let a = req.data.args;
        let (dirfd, path_ptr, argv_ptr, flags) = if i64::from(req.data.nr) == libc::SYS_execveat {
            (Some(a[0] as u32 as i32), a[1], a[2], a[4])
        } else {
            (None, a[0], a[1], 0)
        };
        let requested = match read_cstr(pid, path_ptr, MAX_WORD) {
            Text::Read { bytes, truncated: false } => bytes,
            Text::Read { truncated: true, .. } => return Verdict::Fail(libc::ENAMETOOLONG),
            _ => return Verdict::Fail(libc::EFAULT),
        };
        let shown = String::from_utf8_lossy(&requested).into_owned();
        let refuse = |list: List, rule: String, path: Option<PathBuf>, argv: Vec<String>| Verdict::Refuse {
            path,
            requested: Some(shown.clone()),
            refusal: CommandRefusal { rule, list, argv, ancestry: ancestry(pid) },
        };
        let Some(absolute) = absolute_path(dirfd, &requested, flags) else {
            return refuse(List::Unresolved, "the program's path could not be made absolute".into(), None, Vec::new());
        };
        let (resolved, file) = match resolve(pid, &absolute) {
            Ok(found) => found,
            Err(Unresolved::Missing(errno)) => return Verdict::Fail(errno),
            Err(Unresolved::Refused(why)) => return refuse(List::Unresolved, why, Some(absolute), read_argv(pid, argv_ptr, REPORTED_ARGS).0),
        };
        // The interpreters the kernel will chain (read once); then the commands, which
        // depend on argv.
        let chain = interpreters(pid, &file);
        let mut want = self.words;
        let (mut argv, mut complete) = read_argv(pid, argv_ptr, want);
        let mut commands = commands_run(pid, &absolute, &resolved, &chain, &argv);
        if commands.iter().any(|c| self.rules.wants_all_words(&c.exec())) || commands.len() > 1 {
            // ssh's whole command line, or the arguments an interpreter gets after its own.
            want = SSH_ARGS;
            (argv, complete) = read_argv(pid, argv_ptr, want);
            commands = commands_run(pid, &absolute, &resolved, &chain, &argv);
        }
        for c in &commands {
            let exec = c.exec();
            if !complete && self.rules.wants_all_words(&exec) {
                let why = format!("ssh's arguments are longer than sbx reads ({SSH_ARGS} words of {MAX_WORD} bytes): its ssh rules cannot be checked");
                return refuse(List::Unresolved, why, Some(resolved), argv);
            }
            if let Some(refusal) = self.rules.check(&exec) {
                // The whole argv for the report (refusals are rare; the decision needed less).
                let argv = if argv.len() >= want { read_argv(pid, argv_ptr, REPORTED_ARGS.max(want)).0 } else { argv };
                return refuse(refusal.list, refusal.rule, Some(resolved), argv);
            }
        }
        Verdict::Continue
    }
}

/// An interpreter the kernel runs for a script (`#!`): its path as the line names it, its
/// one optional argument, and the file it resolves to.
struct Interpreter {
    path: String,
    arg: Option<String>,
    resolved: Option<PathBuf>,
}

/// The chain of `#!` interpreters behind `file`, as deep as the kernel goes.
fn interpreters(pid: u32, file: &OwnedFd) -> Vec<Interpreter> {
    let mut out = Vec::new();
    let mut file = file.try_clone().ok();
    for _ in 0..MAX_INTERPRETERS {
        let Some((path, arg)) = file.as_ref().and_then(interpreter_line) else { break };
        let found = resolve(pid, Path::new(&path)).ok();
        let last = found.is_none();
        let (resolved, fd) = found.map_or((None, None), |(p, fd)| (Some(p), Some(fd)));
        out.push(Interpreter { path, arg, resolved });
        if last {
            break;
        }
        file = fd;
    }
    out
}

/// What the kernel will run for this exec: the program, then each interpreter of `chain`
/// with the arguments binfmt_script gives it, and for the dynamic loader the program it is
/// asked to load.
fn commands_run(pid: u32, path: &Path, resolved: &Path, chain: &[Interpreter], argv: &[String]) -> Vec<Command> {
    let mut out = vec![Command { path: path.to_string_lossy().into_owned(), resolved: Some(resolved.to_string_lossy().into_owned()), argv: argv.to_vec() }];
    let (mut shown, mut args) = (path.to_string_lossy().into_owned(), argv.to_vec());
    for interp in chain {
        // binfmt_script: [interpreter, optional argument, the script's path, argv[1..]].
        let mut next: Vec<String> = vec![interp.path.clone()];
        next.extend(interp.arg.clone());
        next.push(shown);
        next.extend(args.iter().skip(1).cloned());
        out.push(Command { path: interp.path.clone(), resolved: interp.resolved.as_ref().map(|p| p.to_string_lossy().into_owned()), argv: next.clone() });
        (shown, args) = (interp.path.clone(), next);
    }
    if let Some(loaded) = loader_target(out.last().map(|c| c.argv.as_slice()).unwrap_or_default(), out.last().and_then(|c| c.resolved.as_deref())) {
        let program = Path::new("/proc/self/cwd").join(&loaded[0]);
        let resolved = resolve(pid, &program).ok().map(|(p, _)| p.to_string_lossy().into_owned());
        out.push(Command { path: program.to_string_lossy().into_owned(), resolved, argv: loaded });
    }
    out
}

/// One command the kernel will run, for the rules.
struct Command {
    path: String,
    resolved: Option<String>,
    argv: Vec<String>,
}

impl Command {
    fn exec(&self) -> Exec<'_> {
        Exec { path: Some(&self.path), resolved: self.resolved.as_deref(), argv: &self.argv }
    }
}

/// A script's `#!` line: the interpreter and its one optional argument (as the kernel splits
/// it: the rest of the line after the interpreter, trimmed). Read through the descriptor
/// `resolve` opened: the very file the path named, wherever it is mounted.
fn interpreter_line(file: &OwnedFd) -> Option<(String, Option<String>)> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = String::from_utf8_lossy(line);
    let line = line.trim_matches(|c| c == ' ' || c == '\t');
    let (interp, arg) = match line.find([' ', '\t']) {
        Some(at) => (&line[..at], Some(line[at..].trim_matches(|c| c == ' ' || c == '\t').to_string()).filter(|a| !a.is_empty())),
        None => (line, None),
    };
    (!interp.is_empty()).then(|| (interp.to_string(), arg))
}

/// The program and argv the dynamic loader runs when it is exec'd as a program
/// (`ld-linux-x86-64.so.2 [options] PROGRAM ARGS`).
fn loader_target(argv: &[String], resolved: Option<&str>) -> Option<Vec<String>> {
    let name = resolved.map(|r| r.rsplit('/').next().unwrap_or(r))?;
    if !(name.starts_with("ld-") && name.contains(".so")) && name != "ld.so" {
        return None;
    }
    const WITH_ARG: &[&str] = &["--library-path", "--preload", "--audit", "--argv0", "--inhibit-rpath", "--glibc-hwcaps-prepend", "--glibc-hwcaps-mask"];
    let mut i = 1;
    let mut argv0 = None;
    while let Some(a) = argv.get(i) {
        if a == "--argv0" {
            argv0 = argv.get(i + 1).cloned();
        }
        match a.as_str() {
            a if WITH_ARG.contains(&a) => i += 2,
            a if a.starts_with("--") => i += 1,
            _ => break,
        }
    }
    let mut out: Vec<String> = argv.get(i..)?.to_vec();
    if out.is_empty() {
        return None;
    }
    if let Some(a0) = argv0 {
        out.insert(1, a0);
    }
    Some(out)
}

/// The exec's path made absolute as the caller sees it (bytes as they are): relative to its
/// cwd or directory descriptor through `/proc/self`, which [`resolve`] maps to the caller's.
fn absolute_path(dirfd: Option<i32>, requested: &[u8], flags: u64) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    let requested = Path::new(std::ffi::OsStr::from_bytes(requested));
    if requested.as_os_str().is_empty() {
        // execveat(fd, "", ..., AT_EMPTY_PATH): the file the descriptor is.
        let fd = dirfd.filter(|_| flags & AT_EMPTY_PATH != 0)?;
        return Some(PathBuf::from(format!("/proc/self/fd/{fd}")));
    }
    if requested.is_absolute() {
        return Some(requested.to_path_buf());
    }
    let base = match dirfd {
        Some(fd) if fd != libc::AT_FDCWD => PathBuf::from(format!("/proc/self/fd/{fd}")),
        _ => PathBuf::from("/proc/self/cwd"),
    };
    Some(base.join(requested))
}

/// Why a program's file was not found.
enum Unresolved {
    /// It does not exist (the errno the kernel would answer).
    Missing(i32),
    /// sbx cannot tell what it is: refused.
    Refused(String),
}

/// The file `path` names for process `pid`, as a path sbx can open. `/proc/self/...`,
/// `/proc/thread-self/...`, `/proc/<the caller's own pid>/...` and `/dev/fd/N`,
/// `/dev/std{in,out,err}` are the caller's entries (`fd/N`, `exe`, `cwd/...`, `root/...`);
/// any other path is resolved beneath the caller's root, symlinks followed; a magic link
/// met on the way (a symlink into /proc) is refused. Returns the file's path (for names and
/// reports) and an `O_PATH` descriptor of it.
fn resolve(pid: u32, path: &Path) -> Result<(PathBuf, OwnedFd), Unresolved> {
    let errno = |e: &std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let text = path.to_string_lossy();
    let std_fd = match text.as_ref() {
        "/dev/stdin" => Some("0"),
        "/dev/stdout" => Some("1"),
        "/dev/stderr" => Some("2"),
        _ => None,
    };
    let own: Option<PathBuf> = if let Some(fd) = std_fd {
        Some(PathBuf::from(format!("/proc/{pid}/fd/{fd}")))
    } else if let Ok(rest) = path.strip_prefix("/dev/fd") {
        Some(Path::new(&format!("/proc/{pid}/fd")).join(rest))
    } else if let Ok(rest) = path.strip_prefix("/proc") {
        let mut parts = rest.components();
        let who = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        let mine = who == "self" || who == "thread-self" || ns_pid(pid).is_some_and(|p| p.to_string() == who);
        if !mine {
            return Err(Unresolved::Refused(format!("{} is another process's entry in /proc: sbx cannot tell which program it is", path.display())));
        }
        let rest = parts.as_path();
        let first = rest.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()).unwrap_or_default();
        if !matches!(first.as_str(), "fd" | "exe" | "cwd" | "root") {
            return Err(Unresolved::Refused(format!("{} is not a program sbx can resolve", path.display())));
        }
        Some(Path::new(&format!("/proc/{pid}")).join(rest))
    } else {
        None
    };
    if let Some(host) = own {
        // The caller's own entries, opened from here (sbx may follow those magic links).
        let file = std::fs::File::options().read(true).custom_flags(libc::O_PATH).open(&host).map_err(|e| Unresolved::Missing(errno(&e)))?;
        let name = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|e| Unresolved::Missing(errno(&e)))?;
        return Ok((name, file.into()));
    }
    let root = std::fs::File::open(format!("/proc/{pid}/root")).map_err(|e| Unresolved::Refused(format!("the caller's root cannot be opened: {e}")))?;
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(root.as_fd(), path, how) {
        Ok(file) => {
            let name = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|e| Unresolved::Missing(errno(&e)))?;
            Ok((name, file))
        }
        Err(nix::errno::Errno::ELOOP) => Err(Unresolved::Refused(format!("{} leads through a link into /proc, which sbx does not follow", path.display()))),
        Err(e) => Err(Unresolved::Missing(e as i32)),
    }
}

/// The caller's pid in its own pid namespace (the last field of `NSpid`).
fn ns_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("NSpid:"))?.split_whitespace().last()?.parse().ok()
}

/// Up to `max` words of the argv array at `addr`, and whether that is all of it (its NULL
/// reached, no word cut short).
fn read_argv(pid: u32, addr: u64, max: usize) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    let Some(pointers) = read_bytes(pid, addr, 8 * max).or_else(|| {
        // The array may end before a page boundary that `max` pointers would cross: word by word.
        (1..max).rev().find_map(|n| read_bytes(pid, addr, 8 * n))
    }) else {
        return (out, addr == 0);
    };
    for chunk in pointers.chunks_exact(8) {
        let ptr = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        if ptr == 0 {
            return (out, true);
        }
        match read_cstr(pid, ptr, MAX_WORD) {
            Text::Read { bytes, truncated } => {
                out.push(String::from_utf8_lossy(&bytes).into_owned());
                if truncated {
                    return (out, false);
                }
            }
            _ => return (out, false),
        }
    }
    (out, false)
}

/// `comm (pid) < parent's comm (pid) < ...`, up to [`ANCESTORS`] parents, stopping at the
/// sandbox's own processes (bwrap).
fn ancestry(pid: u32) -> String {
    let mut out = Vec::new();
    let mut cur = pid;
    for _ in 0..=ANCESTORS {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{cur}/status")) else { break };
        let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
        let name = field("Name:").unwrap_or("?");
        if name == "bwrap" {
            break;
        }
        out.push(format!("{name} ({cur})"));
        match field("PPid:").and_then(|p| p.parse::<u32>().ok()) {
            Some(parent) if parent > 1 => cur = parent,
            _ => break,
        }
    }
    out.join(" < ")
}
