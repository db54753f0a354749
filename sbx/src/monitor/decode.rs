//! From the tracer's raw records to events a person can read: syscall and
//! errno names, the path resolved against the caller's working directory or
//! dirfd, the operation, and the layer that most likely refused it.

use std::path::{Path, PathBuf};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sbx_common::{ADDR_LEN, BASE_PART_LEN, FLAG_ADDR, FLAG_BASE, FLAG_PATH, FLAG_PATH2, KIND_EXEC, RawEvent};

use crate::{
    monitor::tracer::{cstr, proc_path},
    policy::normalize,
    report::{Denial, Operation, Process, ProcessAction, Source},
    syscalls::{self, FilterOptions},
};

/// What the sandbox enforced, to tell which layer refused a call.
#[derive(Debug, Clone, Default)]
pub struct Attribution {
    /// Landlock was applied (fully or partly).
    pub landlock: bool,
    /// Landlock's readable and writable roots.
    pub read_roots: Vec<PathBuf>,
    pub write_roots: Vec<PathBuf>,
    /// The paths denyRead hides (mode 000, read-only; without namespaces, left out of
    /// Landlock's roots).
    pub hidden: Vec<PathBuf>,
    /// The seccomp table, as compiled for this session.
    pub seccomp: FilterOptions,
    /// The read-only islands inside the writable paths (mandatory protections, git
    /// administrative files, denyWrite), each a mount point, by its real path.
    pub islands: Vec<PathBuf>,
    /// The directories between a writable root and an island, each bound onto itself (a
    /// mount point that no rename moves).
    pub pins: Vec<PathBuf>,
}

const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;
const AT_FDCWD: i32 = -100;
const W_OK: u64 = 2;
const SYS_BIND: i64 = 49;

/// The operation of syscall `nr` with arguments `args` (x86_64 numbers).
pub fn operation(nr: i64, args: &[u64; 6]) -> Option<Operation> {
    let open_flags = |flags: u64| {
        if flags & O_CREAT != 0 {
            Operation::Create
        } else if flags & O_ACCMODE != 0 || flags & O_TRUNC != 0 {
            Operation::Write
        } else {
            Operation::Read
        }
    };
    Some(match nr {
        2 => open_flags(args[1]),
        257 => open_flags(args[2]),
        // openat2's flags are in a struct we do not copy.
        437 => return None,
        85 => Operation::Create,
        83 | 258 | 133 | 259 | 88 | 266 | 86 | 265 => Operation::Create,
        84 | 87 | 263 => Operation::Delete,
        82 | 264 | 316 => Operation::Rename,
        90 | 268 | 452 | 92 | 94 | 260 | 76 | 132 | 235 | 280 | 261 | 188 | 189 | 197 | 198 => Operation::Modify,
        59 | 322 | 134 => Operation::Exec,
        21 => if args[1] & W_OK != 0 { Operation::Write } else { Operation::Read },
        269 | 439 => if args[2] & W_OK != 0 { Operation::Write } else { Operation::Read },
        4 | 6 | 262 | 332 | 89 | 267 | 191 | 192 | 194 | 195 | 137 | 80 | 161 => Operation::Read,
        _ => return None,
    })
}

/// The dirfd argument that a relative path of `nr` is taken from, if any.
fn dirfd_arg(nr: i64, second: bool) -> Option<usize> {
    match (nr, second) {
        (257 | 437 | 262 | 332 | 269 | 439 | 258 | 263 | 267 | 268 | 452 | 260 | 280 | 261 | 259 | 322, false) => Some(0),
        (264 | 316 | 265, false) => Some(0),
        (264 | 316 | 265, true) => Some(2),
        (266, false) => Some(1),
        _ => None,
    }
}

fn errno_name(ret: i64) -> &'static str {
    match -ret {
        1 => "EPERM",
        13 => "EACCES",
        16 => "EBUSY",
        18 => "EXDEV",
        30 => "EROFS",
        101 => "ENETUNREACH",
        _ => "EOTHER",
    }
}


/// The base directory the kernel program captured for a relative path, at
/// the moment of the call (never from /proc later: the process may have
/// moved on, and a wrong path would mislead more than a missing one).
fn base_dir(ev: &RawEvent) -> Option<PathBuf> {
    if ev.flags & FLAG_BASE == 0 {
        return None;
    }
    let n = (ev.base_len as usize).min(ev.base.len());
    let mut path = PathBuf::from("/");
    for part in ev.base[..n].iter().rev() {
        let name = cstr(part);
        // An empty slot is a mount crossing.
        if name.is_empty() {
            continue;
        }
        // A name that fills its slot may have been cut short.
        if name.len() >= BASE_PART_LEN - 1 || name.contains('/') {
            return None;
        }
        path.push(name);
    }
    Some(path)
}

/// The absolute form of `requested`: as is when absolute, else against the
/// captured base directory, if any.
fn resolve(requested: &str, base: Option<&Path>) -> Option<PathBuf> {
    let requested = Path::new(requested);
    if requested.is_absolute() {
        return Some(normalize(requested));
    }
    base.map(|b| normalize(&b.join(requested)))
}

/// A socket address the tracer copied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SockAddr {
    Inet(IpAddr, u16),
    /// A path, or `@name` for an abstract socket.
    Unix(String),
}

/// The socket address of a connect, sendto or bind, when the tracer copied one.
fn sock_addr(ev: &RawEvent) -> Option<SockAddr> {
    if ev.flags & FLAG_ADDR == 0 {
        return None;
    }
    // The length the kernel program copied (socklen_t is 32 bits); the rest
    // of the buffer is an earlier record's.
    let len_arg = if matches!(ev.syscall_nr, 44 | 46 | 307) { 5 } else { 2 };
    let len = (ev.args[len_arg] as u32).min(ADDR_LEN as u32) as usize;
    if len < 2 {
        return None;
    }
    let b = &ev.path[..len];
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match (u16::from_ne_bytes([b[0], b[1]]) as i32, len) {
        (libc::AF_INET, 8..) => Some(SockAddr::Inet(IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])), port(b))),
        (libc::AF_INET6, 24..) => {
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            Some(SockAddr::Inet(IpAddr::V6(Ipv6Addr::from(ip)), port(b)))
        }
        (libc::AF_UNIX, 3..) => {
            let name = &b[2..];
            Some(SockAddr::Unix(match name.split_first() {
                // An abstract name given with the whole sockaddr_un's length
                // ends in NULs, which are padding to a reader.
                Some((0, rest)) => {
                    let end = rest.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                    format!("@{}", String::from_utf8_lossy(&rest[..end]))
                }
                _ => cstr(name),
            }))
        }
        _ => None,
    }
}

fn under_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// What a refused rename or link touched that the sandbox protects: the path (an island, a
/// path inside one, or a pin) and a hint naming what would allow it.
fn protected_by_mount(paths: [Option<&Path>; 2], attr: &Attribution, errno: &str) -> Option<(PathBuf, usize, String)> {
    for (i, path) in paths.iter().enumerate() {
        let Some(path) = path else { continue };
        let island = attr.islands.iter().find(|i| path.starts_with(i));
        // EBUSY: the path is itself a mount point (an island or a pin); EXDEV: the path is in
        // an island, another mount than the writable directory around it.
        let hit = match errno {
            "EBUSY" => island.filter(|i| *i == path).or_else(|| attr.pins.iter().find(|p| *p == path)),
            _ => island,
        };
        let Some(hit) = hit else { continue };
        let git_config = hit.file_name().is_some_and(|n| n == "config") && hit.parent().and_then(Path::file_name).is_some_and(|n| n == ".git");
        let hint = if git_config {
            "git's configuration can run commands (hooks path, aliases, filters, pager); filesystem.allowGitConfig: true makes .git/config writable"
        } else if hit.components().any(|c| c.as_os_str() == ".git") {
            "git's administrative files (hooks, config) stay read-only; no policy key lifts it"
        } else if attr.pins.contains(hit) {
            "the directory holds protected files, pinned for the session so that no rename carries them away"
        } else {
            "a protected file (sbx's mandatory protections or denyWrite): allowWrite naming the exact path lifts it where the protection allows"
        };
        return Some((hit.clone(), i, hint.to_string()));
    }
    None
}

/// The denial a record describes; `None` for a failure that is no denial (a rename across
/// filesystems, EXDEV, that touches nothing protected).
pub fn denial(ev: &RawEvent, attr: &Attribution) -> Option<Denial> {
    let nr = ev.syscall_nr;
    let name = syscalls::syscall_name(nr).map(str::to_owned).unwrap_or_else(|| format!("syscall_{nr}"));
    let errno = errno_name(ev.ret);
    let op = operation(nr, &ev.args);
    let requested = (ev.flags & FLAG_PATH != 0).then(|| cstr(&ev.path));
    let base = base_dir(ev);
    let path = requested.as_deref().and_then(|r| resolve(r, base.as_deref()));
    let second = (ev.flags & FLAG_PATH2 != 0).then(|| cstr(&ev.path2));
    // The second path of rename and link is relative to the same directory as the first
    // (renameat and linkat: when both name the same directory descriptor).
    let same_base = matches!(nr, 82 | 86) || (matches!(nr, 264 | 316 | 265) && ev.args[0] as i32 == ev.args[2] as i32);
    let second_resolved = second.as_deref().and_then(|r| resolve(r, if same_base { base.as_deref() } else { None }));
    let mut path = path;
    let mut requested = requested;
    let mut protected = None;
    if errno == "EBUSY" || errno == "EXDEV" {
        let (hit, which, hint) = protected_by_mount([path.as_deref(), second_resolved.as_deref()], attr, errno)?;
        if which == 1 {
            requested.clone_from(&second);
        }
        path = Some(hit);
        protected = Some(hint);
    }

    // access(2) asking whether a path on a read-only mount is writable: a question, not an
    // attempt. Programs ask it to choose where to write (SQLite's temporary directory,
    // litellm's tokenizer cache) and go elsewhere; a write that follows is reported as itself.
    // access, faccessat, faccessat2
    if matches!(nr, 21 | 269 | 439) && op == Some(Operation::Write) && errno == "EROFS" {
        return None;
    }
    let addr = sock_addr(ev);
    let in_seccomp_table = attr.seccomp.entries().any(|b| b.nr == nr);
    let effective = path.as_deref().or(requested.as_deref().map(Path::new));
    // seccomp's refusals are EPERM for the syscalls on its list (the
    // supervisor, when it runs, reports them with their arguments instead).
    let (source, reason) = if errno == "ENETUNREACH" {
        let dns = matches!(addr, Some(SockAddr::Inet(_, 53)));
        let why = if dns {
            "a DNS query to a server other than sbx's: the sandbox's network has only loopback, and names are resolved by sbx's DNS at 127.0.0.1 (its /etc/resolv.conf) or by the proxy"
        } else {
            "traffic with no route: the sandbox's network has only loopback; TCP connections are decided by sbx (transparent egress, or the proxy), and UDP other than sbx's DNS has no way out"
        };
        (Source::Netns, why.to_string())
    } else if protected.is_some() {
        let why = if errno == "EBUSY" {
            "the path is a protected mount point of the sandbox's view: it cannot be renamed, replaced or moved"
        } else {
            "the path is on a protected read-only mount of the sandbox's view: no hard link or rename crosses it"
        };
        (Source::Mount, why.to_string())
    } else if in_seccomp_table && errno == "EPERM" {
        (Source::Seccomp, "the syscall is on sbx's seccomp deny list".to_string())
    } else if nr == SYS_BIND && errno == "EACCES" && attr.landlock {
        (Source::Landlock, "TCP ports may not be bound in a sandbox that shares the host's network (allowLocalBinding)".to_string())
    } else if errno == "EACCES" && effective.is_some_and(|p| under_any(p, &attr.hidden)) {
        // Without namespaces (`seccomp.shared_host`), Landlock hides them, not a mount.
        (if attr.seccomp.shared_host { Source::Landlock } else { Source::Mount }, "the path is hidden by the policy (denyRead)".to_string())
    } else if errno == "EROFS" {
        (Source::Mount, "the path is on a read-only mount of the sandbox's view".to_string())
    } else if errno == "EACCES" && attr.landlock && effective.is_some_and(|p| {
        if op.is_some_and(Operation::writes) { !under_any(p, &attr.write_roots) } else { !under_any(p, &attr.read_roots) }
    }) {
        let what = if op.is_some_and(Operation::writes) { "writable" } else { "readable" };
        (Source::Landlock, format!("the path is outside Landlock's {what} roots"))
    } else if errno == "EACCES" {
        (Source::Dac, "file permissions refused it".to_string())
    } else {
        (Source::Other, "refused by the kernel (capabilities or another check)".to_string())
    };

    let mut detail = Vec::new();
    if let Some(s) = &second {
        detail.push(("second_requested_path".to_string(), s.clone()));
    }
    if let Some(s) = &second_resolved {
        detail.push(("second_path".to_string(), s.to_string_lossy().into_owned()));
    }
    if let Some(SockAddr::Unix(name)) = &addr {
        detail.push(("address".to_string(), name.clone()));
    }
    detail.push(("reason".to_string(), reason));
    if let Some(hint) = protected {
        detail.push(("hint".to_string(), hint));
    }
    if requested.is_some() && path.is_none() {
        let base = match dirfd_arg(nr, false).map(|i| ev.args[i] as i32) {
            Some(fd) if fd != AT_FDCWD => format!("directory descriptor {fd}"),
            _ => "the working directory".to_string(),
        };
        detail.push(("path_unresolved".to_string(), format!("relative to {base} of the process at the time of the call")));
    }
    Some(Denial {
        source,
        syscall: Some(name),
        errno: Some(errno.to_string()),
        operation: match (&addr, nr) {
            (Some(SockAddr::Inet(..)), 42) => Some(Operation::Connect),
            (Some(SockAddr::Inet(..)), 44 | 46 | 307) => Some(Operation::Send),
            _ => op,
        },
        pid: Some(ev.pid),
        tid: Some(ev.tid),
        comm: Some(cstr(&ev.comm)),
        path,
        requested_path: requested,
        host: match addr {
            Some(SockAddr::Inet(ip, _)) => Some(ip.to_string()),
            _ => None,
        },
        port: match addr {
            Some(SockAddr::Inet(_, port)) => Some(port),
            _ => None,
        },
        detail,
    })
}

pub fn process(ev: &RawEvent) -> Process {
    let action = if ev.kind == KIND_EXEC { ProcessAction::Exec } else { ProcessAction::Exit };
    let (argv, exe) = if action == ProcessAction::Exec {
        let argv = std::fs::read(proc_path(ev.pid, "cmdline"))
            .map(|b| b.split(|&c| c == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
            .unwrap_or_default();
        (argv, std::fs::read_link(proc_path(ev.pid, "exe")).ok())
    } else {
        (Vec::new(), None)
    };
    let ppid = (action == ProcessAction::Exec && ev.ppid != 0).then_some(ev.ppid);
    Process { action, pid: ev.pid, ppid, comm: cstr(&ev.comm), argv, exe }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(nr: i64, ret: i64, args: [u64; 6], path: &str, flags: u32) -> RawEvent {
        let mut p = [0u8; sbx_common::PATH_LEN];
        p[..path.len()].copy_from_slice(path.as_bytes());
        RawEvent {
            kind: sbx_common::KIND_DENIAL,
            cpu: 0,
            seq: 0,
            ktime_ns: 0,
            pid: u32::MAX,
            tid: u32::MAX,
            syscall_nr: nr,
            ret,
            args,
            flags,
            _pad: 0,
            session: 0,
            comm: *b"sh\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            path: p,
            path2: [0; sbx_common::PATH_LEN],
            base: [[0; BASE_PART_LEN]; sbx_common::BASE_PARTS],
            base_len: 0,
            ppid: 0,
        }
    }

    fn attr() -> Attribution {
        Attribution {
            landlock: true,
            read_roots: vec!["/".into()],
            write_roots: vec!["/w".into(), "/tmp".into()],
            hidden: vec!["/h/secret".into()],
            seccomp: Default::default(),
            islands: vec!["/w/.git/config".into(), "/w/.git/hooks".into(), "/w/.bashrc".into()],
            pins: vec!["/w/.git".into()],
        }
    }

    #[test]
    fn attributes_each_layer() {
        let a = attr();
        let entered = FLAG_PATH;
        // openat(AT_FDCWD, "/etc/x", O_WRONLY|O_CREAT) -> EROFS: the ro mount.
        let d = denial(&raw(257, -30, [AT_FDCWD as u64, 0, 0o101, 0, 0, 0], "/etc/x", entered), &a).unwrap();
        assert_eq!((d.source, d.operation.map(Operation::as_str), d.errno.as_deref()), (Source::Mount, Some("create"), Some("EROFS")));
        assert_eq!(d.path, Some(PathBuf::from("/etc/x")));
        // Writing /proc/sys/x (mounted rw, outside Landlock's writable roots).
        let d = denial(&raw(257, -13, [AT_FDCWD as u64, 0, 1, 0, 0, 0], "/proc/sys/x", entered), &a).unwrap();
        assert_eq!(d.source, Source::Landlock);
        // A read refused inside the readable roots is file permissions.
        let d = denial(&raw(257, -13, [AT_FDCWD as u64, 0, 0, 0, 0, 0], "/w/secret", entered), &a).unwrap();
        assert_eq!((d.source, d.operation.map(Operation::as_str)), (Source::Dac, Some("read")));
        // A hidden file.
        let d = denial(&raw(257, -13, [AT_FDCWD as u64, 0, 0, 0, 0, 0], "/h/secret/key", entered), &a).unwrap();
        assert_eq!((d.source, d.operation.map(Operation::as_str)), (Source::Mount, Some("read")));
        // Without namespaces, Landlock hides it.
        let direct = Attribution { seccomp: FilterOptions { shared_host: true, ..FilterOptions::default() }, ..attr() };
        let d = denial(&raw(257, -13, [AT_FDCWD as u64, 0, 0, 0, 0, 0], "/h/secret/key", entered), &direct).unwrap();
        assert_eq!((d.source, d.operation.map(Operation::as_str)), (Source::Landlock, Some("read")));
        // access("/var/tmp", W_OK|X_OK) and faccessat2(AT_FDCWD, "/opt/x", W_OK) -> EROFS: a
        // question answered, no denial; asked of a hidden path, or for reading, it is one.
        assert!(denial(&raw(21, -30, [0, 3, 0, 0, 0, 0], "/var/tmp", entered), &a).is_none());
        assert!(denial(&raw(439, -30, [AT_FDCWD as u64, 0, 2, 0, 0, 0], "/opt/x", entered), &a).is_none());
        assert!(denial(&raw(269, -13, [AT_FDCWD as u64, 0, 2, 0, 0, 0], "/h/secret/key", entered), &a).is_some());
        assert!(denial(&raw(21, -30, [0, 4, 0, 0, 0, 0], "/var/tmp", entered), &a).is_some());
        // mount is on seccomp's list.
        let d = denial(&raw(165, -1, [0; 6], "", 0), &a).unwrap();
        assert_eq!((d.source, d.syscall.as_deref()), (Source::Seccomp, Some("mount")));
        // kill -> EPERM with its arguments stashed: another check.
        let d = denial(&raw(62, -1, [1, 9, 0, 0, 0, 0], "", 0), &a).unwrap();
        assert_eq!(d.source, Source::Other);
    }

    /// A record of `nr` failing with `ret` whose address argument held `addr`.
    fn with_addr(nr: i64, ret: i64, addr: &[u8]) -> RawEvent {
        let len = addr.len() as u64;
        let args = if matches!(nr, 44 | 46 | 307) { [3, 0, 1, 0, 0, len] } else { [3, 0, len, 0, 0, 0] };
        let mut ev = raw(nr, ret, args, "", FLAG_ADDR);
        ev.path[..addr.len()].copy_from_slice(addr);
        ev
    }

    fn inet4(ip: [u8; 4], port: u16) -> Vec<u8> {
        [&(libc::AF_INET as u16).to_ne_bytes()[..], &port.to_be_bytes(), &ip, &[0; 8]].concat()
    }

    #[test]
    fn socket_addresses_and_the_network_namespace() {
        let a = attr();
        // connect(198.18.0.2:443) -> ENETUNREACH: a direct connection.
        let d = denial(&with_addr(42, -101, &inet4([198, 18, 0, 2], 443)), &a).unwrap();
        assert_eq!((d.source, d.errno.as_deref(), d.operation.map(Operation::as_str)), (Source::Netns, Some("ENETUNREACH"), Some("connect")));
        assert_eq!((d.host.as_deref(), d.port), (Some("198.18.0.2"), Some(443)));
        assert!(d.detail.iter().any(|(k, v)| k == "reason" && v.contains("has no way out")), "{:?}", d.detail);
        assert_eq!(d.short(), "connect 198.18.0.2:443");
        // sendto(..., [2001:db8::1]:53) -> a DNS query.
        let mut v6 = [&(libc::AF_INET6 as u16).to_ne_bytes()[..], &53u16.to_be_bytes(), &[0; 4]].concat();
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0; 4]);
        let d = denial(&with_addr(44, -101, &v6), &a).unwrap();
        assert_eq!((d.source, d.syscall.as_deref(), d.host.as_deref(), d.port), (Source::Netns, Some("sendto"), Some("2001:db8::1"), Some(53)));
        assert!(d.detail.iter().any(|(k, v)| k == "reason" && v.starts_with("a DNS query")), "{:?}", d.detail);
        assert_eq!(d.short(), "send [2001:db8::1]:53");
        // sendmsg: the length the tracer put in args[5].
        let d = denial(&with_addr(46, -101, &inet4([198, 18, 0, 2], 9000)), &a).unwrap();
        assert_eq!((d.source, d.syscall.as_deref(), d.operation.map(Operation::as_str), d.port), (Source::Netns, Some("sendmsg"), Some("send"), Some(9000)));
        // bind(127.0.0.1:8080) -> EACCES under Landlock: the port is kept.
        let d = denial(&with_addr(49, -13, &inet4([127, 0, 0, 1], 8080)), &a).unwrap();
        assert_eq!((d.source, d.port, d.operation.map(Operation::as_str)), (Source::Landlock, Some(8080), None));
        assert_eq!(d.short(), "bind 127.0.0.1:8080");
        // Unix addresses, by path and abstract; a truncated inet address is none.
        let unix = |name: &[u8]| [&(libc::AF_UNIX as u16).to_ne_bytes()[..], name].concat();
        let d = denial(&with_addr(42, -1, &unix(b"/run/x.sock\0")), &a).unwrap();
        assert_eq!(d.detail[0], ("address".to_string(), "/run/x.sock".to_string()));
        assert_eq!(d.host, None);
        let d = denial(&with_addr(42, -1, &unix(b"\0hidden\0\0\0")), &a).unwrap();
        assert_eq!(d.detail[0], ("address".to_string(), "@hidden".to_string()));
        let d = denial(&with_addr(42, -101, &inet4([10, 0, 0, 1], 80)[..6]), &a).unwrap();
        assert_eq!((d.host, d.port), (None, None));
        // socklen_t is 32 bits: higher bits in the register are not length;
        // a length too short for a family is no address (and no panic).
        let mut ev = with_addr(42, -101, &inet4([10, 0, 0, 1], 80));
        ev.args[2] |= 1 << 32;
        assert_eq!(denial(&ev, &a).unwrap().port, Some(80));
        ev.args[2] = 1;
        assert_eq!(denial(&ev, &a).unwrap().host, None);
        // Without the flag the bytes are not an address.
        let mut ev = with_addr(42, -101, &inet4([10, 0, 0, 1], 80));
        ev.flags = 0;
        assert_eq!(denial(&ev, &a).unwrap().host, None);
    }

    #[test]
    fn operations_from_flags() {
        assert_eq!(operation(257, &[0, 0, 0, 0, 0, 0]), Some(Operation::Read));
        assert_eq!(operation(257, &[0, 0, 2, 0, 0, 0]), Some(Operation::Write));
        assert_eq!(operation(257, &[0, 0, 0o1000, 0, 0, 0]), Some(Operation::Write));
        assert_eq!(operation(2, &[0, 0o101, 0, 0, 0, 0]), Some(Operation::Create));
        assert_eq!(operation(263, &[0; 6]), Some(Operation::Delete));
        assert_eq!(operation(59, &[0; 6]), Some(Operation::Exec));
        assert_eq!(operation(21, &[0, 2, 0, 0, 0, 0]), Some(Operation::Write));
    }

    #[test]
    fn relative_paths_resolve_against_the_captured_base() {
        let mut ev = raw(257, -30, [AT_FDCWD as u64, 0, 0o101, 0, 0, 0], "../x", FLAG_PATH | FLAG_BASE);
        for (i, part) in ["c", "b", "a"].iter().enumerate() {
            ev.base[i][..part.len()].copy_from_slice(part.as_bytes());
        }
        ev.base_len = 3;
        let d = denial(&ev, &attr()).unwrap();
        assert_eq!(d.path, Some(PathBuf::from("/a/b/x")));
        // Without the base, unresolved, said so.
        ev.flags = FLAG_PATH;
        let d = denial(&ev, &attr()).unwrap();
        assert_eq!(d.path, None);
        assert!(d.detail.iter().any(|(k, _)| k == "path_unresolved"));
    }

    #[test]
    fn normalizes_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }

    /// A record of rename(2) or link(2) (`nr`) of `old` to `new`, relative to `/w`.
    fn two_paths(nr: i64, ret: i64, old: &str, new: &str) -> RawEvent {
        let mut ev = raw(nr, ret, [0; 6], old, FLAG_PATH | FLAG_PATH2 | FLAG_BASE);
        ev.path2[..new.len()].copy_from_slice(new.as_bytes());
        ev.base[0][..1].copy_from_slice(b"w");
        ev.base_len = 1;
        ev
    }

    /// Issue 18, point 5: `git config` renames `.git/config.lock` onto the read-only
    /// `.git/config` (EBUSY); `ln .bashrc x` crosses its mount (EXDEV). Each is a denial with
    /// the protected path, the mount layer and a hint naming the key; a rename across
    /// filesystems that touches nothing protected is no denial.
    #[test]
    fn a_rename_or_link_refused_by_a_protected_mount_is_a_hinted_denial() {
        let a = attr();
        let d = denial(&two_paths(82, -16, ".git/config.lock", ".git/config"), &a).unwrap();
        assert_eq!((d.source, d.errno.as_deref(), d.operation.map(Operation::as_str)), (Source::Mount, Some("EBUSY"), Some("rename")));
        assert_eq!((d.path.as_deref(), d.requested_path.as_deref()), (Some(Path::new("/w/.git/config")), Some(".git/config")));
        let hint = d.detail.iter().find(|(k, _)| k == "hint").map(|(_, v)| v.as_str()).unwrap();
        assert!(hint.contains("filesystem.allowGitConfig"), "{hint}");
        // Renaming the pinned .git away.
        let d = denial(&two_paths(82, -16, ".git", ".git-moved"), &a).unwrap();
        assert_eq!(d.path.as_deref(), Some(Path::new("/w/.git")));
        // A hard link of a protected file.
        let d = denial(&two_paths(86, -18, ".bashrc", "copy"), &a).unwrap();
        assert_eq!((d.source, d.errno.as_deref(), d.path.as_deref()), (Source::Mount, Some("EXDEV"), Some(Path::new("/w/.bashrc"))));
        // A file moved into the hooks directory.
        let d = denial(&two_paths(82, -18, "hook", ".git/hooks/pre-commit"), &a).unwrap();
        assert_eq!(d.path.as_deref(), Some(Path::new("/w/.git/hooks")));
        // A rename from /tmp to the workspace (another filesystem) is no denial, nor EBUSY
        // on a directory that is no island or pin.
        assert!(denial(&two_paths(82, -18, "/tmp/x", "y"), &a).is_none());
        assert!(denial(&two_paths(82, -16, "dir", "other"), &a).is_none());
    }
}
