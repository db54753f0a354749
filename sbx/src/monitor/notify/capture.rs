//! Argument capture, before the answer: the pointed-to strings and structs, the fds' and
//! the cwd's links, the pids of target processes, read from the caller while it waits.

use std::path::{Path, PathBuf};

use super::*;
use crate::syscalls::SYS_OPEN_TREE_ATTR;

/// How an argument is read before the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A number: nothing to read.
    Int,
    /// A NUL-terminated string.
    Str,
    /// A path string, relative to the cwd (`None`) or to the dirfd in argument `n`.
    Path(Option<usize>),
    /// A file descriptor (or dirfd): its `/proc/PID/fd/N` link.
    Fd,
    /// A pidfd: its link and the pid in its fdinfo.
    PidFd,
    /// A pid in the caller's pid namespace.
    Pid,
    /// A pointer to this many bytes of a struct.
    Bytes(usize),
}

pub(super) const P: Kind = Kind::Path(None);
pub(super) const I: Kind = Kind::Int;
pub(super) const INTS: [Kind; 6] = [I; 6];

pub(super) const KEYCTL_JOIN_SESSION_KEYRING: u64 = 1;
pub(super) const KEYCTL_SEARCH: u64 = 10;
pub(super) const FSCONFIG_SET_FLAG: u64 = 0;
pub(super) const FSCONFIG_SET_STRING: u64 = 1;
pub(super) const FSCONFIG_SET_BINARY: u64 = 2;
pub(super) const FSCONFIG_SET_PATH: u64 = 3;
pub(super) const FSCONFIG_SET_PATH_EMPTY: u64 = 4;
pub(super) const FSCONFIG_SET_FD: u64 = 5;
pub(super) const LINUX_REBOOT_CMD_RESTART2: u64 = 0xA1B2_C3D4;

pub(super) fn kinds(nr: i64, a: &[u64; 6]) -> [Kind; 6] {
    use Kind::*;
    let at = |d: usize| Path(Some(d));
    match nr {
        libc::SYS_mount => [Str, P, Str, I, Str, I],
        libc::SYS_umount2 | libc::SYS_swapon | libc::SYS_swapoff | libc::SYS_acct => {
            [P, I, I, I, I, I]
        }
        libc::SYS_pivot_root => [P, P, I, I, I, I],
        libc::SYS_init_module => [I, I, Str, I, I, I],
        libc::SYS_finit_module => [Fd, Str, I, I, I, I],
        libc::SYS_delete_module => [Str, I, I, I, I, I],
        libc::SYS_kexec_file_load => [Fd, Fd, I, Str, I, I],
        libc::SYS_setns | libc::SYS_quotactl_fd | libc::SYS_fsmount => [Fd, I, I, I, I, I],
        libc::SYS_io_uring_enter | libc::SYS_io_uring_register => [Fd, I, I, I, I, I],
        libc::SYS_open_by_handle_at => [Fd, I, I, I, I, I],
        libc::SYS_ptrace => [I, Pid, I, I, I, I],
        libc::SYS_process_vm_readv | libc::SYS_process_vm_writev => [Pid, I, I, I, I, I],
        libc::SYS_pidfd_getfd => [PidFd, I, I, I, I, I],
        libc::SYS_ioctl => {
            let req = a[1] & 0xffff_ffff;
            let pointee = if req == libc::TIOCSTI || req == libc::TIOCLINUX {
                Bytes(1)
            } else {
                I
            };
            [Fd, I, pointee, I, I, I]
        }
        libc::SYS_bpf => [I, Bytes(4), I, I, I, I],
        libc::SYS_perf_event_open => [Bytes(16), I, I, Fd, I, I],
        libc::SYS_keyctl => match a[0] {
            KEYCTL_JOIN_SESSION_KEYRING => [I, Str, I, I, I, I],
            KEYCTL_SEARCH => [I, I, Str, Str, I, I],
            _ => INTS,
        },
        libc::SYS_add_key => [Str, Str, I, I, I, I],
        libc::SYS_request_key => [Str, Str, Str, I, I, I],
        libc::SYS_name_to_handle_at => [Fd, at(0), I, I, I, I],
        libc::SYS_reboot if a[2] & 0xffff_ffff == LINUX_REBOOT_CMD_RESTART2 => [I, I, I, Str, I, I],
        libc::SYS_fsopen => [Str, I, I, I, I, I],
        libc::SYS_fsconfig => {
            let key = if a[1] <= FSCONFIG_SET_FD { Str } else { I };
            match a[1] {
                FSCONFIG_SET_STRING => [Fd, I, key, Str, I, I],
                FSCONFIG_SET_PATH | FSCONFIG_SET_PATH_EMPTY => [Fd, I, key, at(4), Fd, I],
                FSCONFIG_SET_FD => [Fd, I, key, I, Fd, I],
                _ => [Fd, I, key, I, I, I],
            }
        }
        libc::SYS_fspick | libc::SYS_open_tree | SYS_OPEN_TREE_ATTR => [Fd, at(0), I, I, I, I],
        libc::SYS_mount_setattr => [Fd, at(0), I, Bytes(32), I, I],
        libc::SYS_move_mount => [Fd, at(0), Fd, at(2), I, I],
        libc::SYS_quotactl => [I, P, I, I, I, I],
        _ => INTS,
    }
}

/// A string read from the caller's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Text {
    /// The pointer was NULL.
    Null,
    /// The bytes before the NUL, or the first `max_string` ones (`truncated`).
    Read { bytes: Vec<u8>, truncated: bool },
    /// Nothing could be read at the pointer.
    Unreadable,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum ArgData {
    #[default]
    None,
    Text(Text),
    Link(Option<PathBuf>),
    PidFd {
        link: Option<PathBuf>,
        target: Option<Target>,
    },
    Pid(Option<Target>),
    Bytes(Option<Vec<u8>>),
}

/// A process named by a pid argument or a pidfd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host_pid: u32,
    pub(super) comm: Option<String>,
}

/// The caller's pid namespace, for translating pid arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CallerNs {
    /// `readlink /proc/PID/ns/pid`.
    pub(super) link: PathBuf,
    /// How many levels `NSpid` has (1: the caller is in our /proc's pid namespace).
    pub(super) depth: usize,
}

/// Everything read about one notification before it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Captured {
    pub(super) pid: u32,
    /// The call was made with the native ABI (the only one the filter lets through).
    pub(super) native: bool,
    pub(super) nr: i64,
    pub(super) args: [u64; 6],
    pub(super) kinds: [Kind; 6],
    pub(super) data: [ArgData; 6],
    pub(super) cwd: Option<PathBuf>,
    /// The caller's command name, read before the answer (it may exit
    /// right after).
    pub(super) comm: Option<String>,
}

pub(super) fn capture(req: &libc::seccomp_notif, limits: &Limits) -> Captured {
    let pid = req.pid;
    let nr = i64::from(req.data.nr);
    let args = req.data.args;
    let native = syscalls::native_arch() == Some(req.data.arch);
    let kinds = if native { kinds(nr, &args) } else { INTS };
    let mut data: [ArgData; 6] = Default::default();
    let mut caller_ns: Option<Option<CallerNs>> = None;
    let mut need_cwd = false;
    if pid != 0 {
        for (i, kind) in kinds.iter().enumerate() {
            data[i] = match *kind {
                Kind::Int => ArgData::None,
                Kind::Str => ArgData::Text(read_cstr(pid, args[i], limits.max_string)),
                Kind::Path(dirfd) => {
                    let text = read_cstr(pid, args[i], limits.max_string);
                    if let Text::Read { bytes, .. } = &text {
                        let relative = bytes.first() != Some(&b'/');
                        let from_cwd = dirfd.is_none_or(|d| fd_arg(args[d]) == libc::AT_FDCWD);
                        need_cwd |= relative && from_cwd;
                    }
                    ArgData::Text(text)
                }
                Kind::Fd => ArgData::Link(fd_link(pid, fd_arg(args[i]))),
                Kind::PidFd => {
                    let fd = fd_arg(args[i]);
                    ArgData::PidFd {
                        link: fd_link(pid, fd),
                        target: pidfd_pid(pid, fd).map(target),
                    }
                }
                Kind::Pid => {
                    let ns = caller_ns.get_or_insert_with(|| caller_pid_ns(pid));
                    let host = ns
                        .as_ref()
                        .and_then(|ns| host_pid(fd_arg(args[i]), ns, limits));
                    ArgData::Pid(host.map(target))
                }
                Kind::Bytes(n) => ArgData::Bytes(read_bytes(pid, args[i], n)),
            };
        }
    }
    let cwd = if need_cwd {
        std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
    } else {
        None
    };
    let comm = (pid != 0)
        .then(|| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .flatten()
        .map(|c| c.trim_end().to_owned());
    Captured {
        pid,
        native,
        nr,
        args,
        kinds,
        data,
        cwd,
        comm,
    }
}

/// An fd argument as the kernel reads it (`int`).
pub(super) fn fd_arg(v: u64) -> i32 {
    v as u32 as i32
}

/// Read a NUL-terminated string of at most `max` bytes at `addr`, page by page.
pub(crate) fn read_cstr(pid: u32, addr: u64, max: usize) -> Text {
    if addr == 0 {
        return Text::Null;
    }
    let mut bytes = Vec::new();
    let mut cur = addr;
    while bytes.len() < max {
        let to_boundary = (READ_CHUNK - cur % READ_CHUNK) as usize;
        let start = bytes.len();
        bytes.resize(start + to_boundary.min(max - start), 0);
        match crate::sys::read_process_memory(pid, cur, &mut bytes[start..]) {
            Ok(n) if n > 0 => {
                bytes.truncate(start + n);
                if let Some(nul) = bytes[start..].iter().position(|&b| b == 0) {
                    bytes.truncate(start + nul);
                    return Text::Read {
                        bytes,
                        truncated: false,
                    };
                }
                match cur.checked_add(n as u64) {
                    Some(next) => cur = next,
                    None => break,
                }
            }
            _ => {
                bytes.truncate(start);
                if start == 0 {
                    return Text::Unreadable;
                }
                break;
            }
        }
    }
    Text::Read {
        bytes,
        truncated: true,
    }
}

pub(crate) fn read_bytes(pid: u32, addr: u64, n: usize) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut buf = vec![0u8; n];
    match crate::sys::read_process_memory(pid, addr, &mut buf) {
        Ok(got) if got == n => Some(buf),
        _ => None,
    }
}

pub(super) fn fd_link(pid: u32, fd: i32) -> Option<PathBuf> {
    if fd < 0 {
        return None;
    }
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// The pid a pidfd refers to, in our /proc's pid namespace (`Pid:` of its fdinfo).
pub(super) fn pidfd_pid(pid: u32, fd: i32) -> Option<u32> {
    if fd < 0 {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    status_field(&info, "Pid:")?.trim().parse().ok()
}

pub(super) fn status_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(key))
}

pub(super) fn nspid(pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = status_field(&status, "NSpid:")?;
    field.split_whitespace().map(|p| p.parse().ok()).collect()
}

pub(super) fn caller_pid_ns(pid: u32) -> Option<CallerNs> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    let depth = nspid(pid)?.len();
    Some(CallerNs { link, depth })
}

pub(super) fn target(host_pid: u32) -> Target {
    Target {
        host_pid,
        comm: comm(host_pid),
    }
}

pub(crate) fn comm(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_owned())
}

/// The host pid of `ns_pid`, a pid in the caller's pid namespace (see the module docs).
pub(super) fn host_pid(ns_pid: i32, caller: &CallerNs, limits: &Limits) -> Option<u32> {
    let ns_pid = u32::try_from(ns_pid).ok().filter(|&p| p > 0)?;
    if caller.depth == 1 {
        return Path::new(&format!("/proc/{ns_pid}"))
            .exists()
            .then_some(ns_pid);
    }
    let entries = std::fs::read_dir("/proc").ok()?;
    for entry in entries.take(limits.max_proc_scan).flatten() {
        let Some(host) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let same_ns =
            std::fs::read_link(format!("/proc/{host}/ns/pid")).is_ok_and(|l| l == caller.link);
        if same_ns && nspid(host).and_then(|p| p.last().copied()) == Some(ns_pid) {
            return Some(host);
        }
    }
    None
}
