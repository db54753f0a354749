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

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use crate::command_rules::{CommandRules, Exec, List};

use super::notify::{Text, fd_link, read_bytes, read_cstr};

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
    Refuse { path: Option<PathBuf>, requested: Option<String>, refusal: CommandRefusal },
}

/// Decides execs against `rules`.
pub(crate) struct ExecDecider {
    rules: CommandRules,
    /// How many words of argv the rules read.
    words: usize,
}

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
    pub(crate) fn decide(&self, req: &libc::seccomp_notif) -> Verdict {
        let pid = req.pid;
        let a = req.data.args;
        let (dirfd, path_ptr, argv_ptr, flags) = if i64::from(req.data.nr) == libc::SYS_execveat {
            (Some(a[0] as u32 as i32), a[1], a[2], a[4])
        } else {
            (None, a[0], a[1], 0)
        };
        let requested = match read_cstr(pid, path_ptr, MAX_WORD) {
            Text::Read { bytes, .. } => Some(String::from_utf8_lossy(&bytes).into_owned()),
            _ => None,
        };
        let absolute = absolute_path(pid, dirfd, requested.as_deref(), flags);
        let in_proc = absolute.as_deref().is_some_and(|p| p.starts_with("/proc"));
        let resolved = match absolute.as_deref().map(|p| if in_proc { proc_fd_target(pid, p).ok_or(nix::errno::Errno::ELOOP) } else { resolve_in_root(pid, p) }) {
            Some(Ok(p)) => Some(p),
            // No such file (a shell trying each $PATH directory): the kernel fails it the
            // same way. Only then: a path in /proc (a magic link to an open file), a
            // descriptor (fexecve of a memfd) or a path we may not resolve is decided on
            // its other names.
            Some(Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR)) if !requested.as_deref().is_some_and(str::is_empty) => {
                return Verdict::Continue;
            }
            _ => None,
        };
        let mut argv = read_argv(pid, argv_ptr, self.words);
        let path = absolute.as_ref().map(|p| p.to_string_lossy().into_owned());
        let resolved_text = resolved.as_ref().map(|p| p.to_string_lossy().into_owned());
        if self.rules.wants_all_words(&Exec { path: path.as_deref(), resolved: resolved_text.as_deref(), argv: &argv }) {
            argv = read_argv(pid, argv_ptr, SSH_ARGS);
        }
        let exec = Exec { path: path.as_deref(), resolved: resolved_text.as_deref(), argv: &argv };
        match self.rules.check(&exec) {
            None => Verdict::Continue,
            Some(refusal) => {
                // The whole argv for the report (refusals are rare; the decision needed less).
                let argv = if argv.len() >= self.words { read_argv(pid, argv_ptr, REPORTED_ARGS) } else { argv };
                Verdict::Refuse {
                    path: resolved.or(absolute),
                    requested,
                    refusal: CommandRefusal { rule: refusal.rule, list: refusal.list, argv, ancestry: ancestry(pid) },
                }
            }
        }
    }
}

/// The exec's path made absolute as the caller sees it.
fn absolute_path(pid: u32, dirfd: Option<i32>, requested: Option<&str>, flags: u64) -> Option<PathBuf> {
    let requested = requested?;
    if requested.is_empty() {
        // execveat(fd, "", ..., AT_EMPTY_PATH): the file the descriptor is.
        return (flags & AT_EMPTY_PATH != 0).then(|| dirfd.and_then(|fd| fd_link(pid, fd))).flatten();
    }
    if requested.starts_with('/') {
        return Some(PathBuf::from(requested));
    }
    let base = match dirfd {
        Some(fd) if fd != libc::AT_FDCWD => fd_link(pid, fd)?,
        _ => std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?,
    };
    Some(base.join(requested))
}

/// The file behind `/proc/self/fd/N` (or `thread-self`, or the caller's own pid in the
/// sandbox, which sbx cannot map): the caller's descriptor N. `/proc/self` inside the
/// sandbox is the caller; resolved from here it would be sbx.
fn proc_fd_target(pid: u32, path: &Path) -> Option<PathBuf> {
    let mut parts = path.strip_prefix("/proc").ok()?.components().map(|c| c.as_os_str().to_str());
    let (_, fd_dir, fd) = (parts.next()??, parts.next()??, parts.next()??);
    if fd_dir != "fd" || parts.next().is_some() {
        return None;
    }
    fd_link(pid, fd.parse().ok()?)
}

/// The file `path` resolves to in the caller's root, symlinks followed (magic links not).
fn resolve_in_root(pid: u32, path: &Path) -> Result<PathBuf, nix::errno::Errno> {
    let errno = |e: std::io::Error| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let root = std::fs::File::open(format!("/proc/{pid}/root")).map_err(errno)?;
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let file = openat2(root.as_fd(), path, how)?;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(errno)
}

/// Up to `max` words of the argv array at `addr`.
fn read_argv(pid: u32, addr: u64, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let Some(pointers) = read_bytes(pid, addr, 8 * max).or_else(|| {
        // The array may end before a page boundary that `max` pointers would cross: word by word.
        (1..max).rev().find_map(|n| read_bytes(pid, addr, 8 * n))
    }) else {
        return out;
    };
    for chunk in pointers.chunks_exact(8) {
        let ptr = u64::from_ne_bytes(chunk.try_into().expect("8 bytes"));
        if ptr == 0 {
            break;
        }
        match read_cstr(pid, ptr, MAX_WORD) {
            Text::Read { bytes, .. } => out.push(String::from_utf8_lossy(&bytes).into_owned()),
            _ => break,
        }
    }
    out
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
