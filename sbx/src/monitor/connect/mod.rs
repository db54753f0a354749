//! The seccomp supervisor's mediation of connect(2) for `allowUnixSockets`: the supervisor
//! makes the connection itself, on the caller's own socket, and answers with its result.
//!
//! # Why the supervisor connects, and never answers CONTINUE
//!
//! When `allowUnixSockets` lists paths, the filter lets stream and seqpacket Unix sockets be
//! created and notifies every connect(2) (`seccomp::MEDIATED_UNIX_SOCKETS`): BPF sees only
//! the fd number and a pointer, not the socket's family nor the path. Answering
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE` after a check would be unsound, for TCP connects too:
//! the kernel then runs connect(2) again from the original registers, looking the fd number
//! up again and copying the address from memory again, and another thread of the caller can
//! meanwhile `dup2` a Unix socket onto that number and write a forbidden path into the buffer.
//! So for every connect the supervisor:
//!
//! 1. takes a duplicate of the caller's socket with `pidfd_getfd` (the same open file: what is
//!    done to it is done to the caller's socket, with its type, flags and options) and copies
//!    the address out of the caller's memory once;
//! 2. decides on that socket's family (`SO_DOMAIN`) and that copy. An IPv4 or IPv6 stream
//!    socket to an address outside the sandbox goes to transparent egress (below); one to
//!    the sandbox's loopback, a datagram socket and other families are connected as asked
//!    (the sandbox's network namespace has only loopback). For `AF_UNIX`: abstract names are
//!    refused; a path is resolved as the caller sees it (`openat2` beneath
//!    `/proc/PID/root`, `RESOLVE_IN_ROOT`, relative paths from `/proc/PID/cwd`) and opened
//!    `O_PATH`; it is allowed when that file is a socket and is the same inode (device and
//!    inode number) as one of the listed host paths. The path must therefore be visible in
//!    the sandbox, and a listed path reached through another name (a symlink, a bind mount)
//!    counts as the listed socket;
//! 3. connects the duplicate: to the copied address, or, for an allowed Unix path, to
//!    `/proc/self/fd/N` of the `O_PATH` descriptor, which is exactly the inode that was
//!    checked (a rename or a new file at the path after the check changes nothing);
//! 4. answers with connect's own result (`0` or its errno); a refused path or abstract name
//!    gets `EPERM` and a [`SeccompDenial`] (source seccomp, with the path).
//!
//! # Transparent egress
//!
//! A TCP connect to an address outside the sandbox is decided by `proxy::egress` (the names
//! sbx's DNS gave that address for, with the port; or the address as an IP literal). When
//! allowed, the supervisor creates a socket of the caller's family, type and protocol in its
//! own network namespace (the host's), copies the caller's socket options and file status
//! flags, connects it (a blocking caller's answer waits for the handshake, at most
//! [`DIRECT_TIMEOUT`]; a non-blocking one gets `EINPROGRESS` at once) and installs it at the
//! caller's descriptor number (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD`,
//! close-on-exec as the caller's was), and at every other number of the caller that named
//! the same socket, moves the socket's registrations in the caller's epoll instances to it
//! ([`references`]: a program that registers before it connects, as Netty does, sees the
//! connect complete), then answers. A refused destination gets
//! `ECONNREFUSED` and a `net` event. Such a host socket (told apart by its network
//! namespace's cookie, `SO_NETNS_COOKIE`) is never pointed elsewhere: a connect on it is
//! decided again (allowed destinations only; `AF_UNSPEC`, loopback: EPERM), and bind(2) and
//! listen(2) on it are refused ([`decide_bind`], which carries them out on any other socket,
//! since the filter cannot tell them apart).
//!
//! Consequences: the server sees the supervisor (sbx, same uid as the command for an
//! unprivileged user) as its peer in `SO_PEERCRED`. Steps 1 and 2 run on sbx's runtime
//! thread (a few syscalls that do not block) up to the resolution of a Unix path, which runs
//! on tokio's blocking pool (it reads `/proc` and the caller's file system); the connect
//! itself holds no
//! thread: it is made non-blocking (`O_NONBLOCK` on the socket for the duration, the
//! caller's flags put back after) and waited for in a task, so a connect that would block
//! (a full backlog, a slow TCP peer) costs a timer, not a thread.
//!
//! Bounds, so that a flood of connects that block costs the flooding process its own time
//! only: at most [`DECIDING`] decisions run at once on the blocking pool (so a flood of
//! processes cannot grow sbx's threads); each process (thread group) has at most
//! [`PER_PROCESS`] connects mediated at once
//! (the rest wait their turn); mediations of one socket (shared by a fork) run one after the
//! other, so that each puts back the caller's own flags; and a blocking caller waits at most
//! [`ATTEMPT_TIMEOUT`], then gets what a socket timeout gives (`EAGAIN` for a Unix socket
//! whose backlog stayed full, `EINPROGRESS` for TCP, whose connect goes on). A non-blocking
//! caller gets its answer at once, as from the kernel.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, OpenHow, ResolveFlag, fcntl, openat2};

use crate::sys;
use tokio::sync::mpsc;

use super::notify::SeccompDenial;

mod references;

/// The listed socket paths (`allowUnixSockets`), absolute host paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnixSocketPolicy {
    /// Socket files the command may connect to.
    pub allowed: Vec<PathBuf>,
}

/// What the supervisor needs to mediate connects: a listener to answer on from other threads,
/// the policy, and the event channel.
#[derive(Clone)]
pub(crate) struct Mediator {
    listener: Arc<OwnedFd>,
    /// None: every Unix socket is allowed (`allowAllUnixSockets`), connect(2) is mediated
    /// for transparent egress only.
    policy: Option<Arc<UnixSocketPolicy>>,
    tx: mpsc::Sender<SeccompDenial>,
    /// Per thread group: the connects it may have mediated at once.
    turns: Arc<Mutex<HashMap<u32, Arc<tokio::sync::Semaphore>>>>,
    /// Per socket (device and inode): one mediation at a time.
    sockets: Arc<Mutex<HashMap<(u64, u64), OneAtATime>>>,
    /// Decisions running on tokio's blocking pool at once, for every process together.
    deciding: Arc<tokio::sync::Semaphore>,
    /// Transparent egress: TCP connects to allowed destinations carried out on the host.
    egress: Option<Egress>,
}

/// What transparent egress needs: the decision, and how to tell a socket of sbx's own
/// network namespace (one the supervisor installed) from one of the sandbox's.
#[derive(Clone)]
struct Egress {
    policy: Arc<crate::proxy::egress::Egress>,
    /// `SO_NETNS_COOKIE` of sbx's (the host's) network namespace.
    host_netns: u64,
}

/// Held while a socket is being connected.
type OneAtATime = Arc<tokio::sync::Mutex<()>>;

/// Connects one process (thread group) may have mediated at once.
pub const PER_PROCESS: usize = 4;
/// Decisions (step 2, which reads `/proc` and the caller's memory on tokio's blocking pool)
/// running at once across all processes. Each takes well under a millisecond; without this
/// bound, hundreds of processes each with [`PER_PROCESS`] connects in flight made the pool
/// start a thread per waiting decision (every connect is mediated by default, issue 18).
pub const DECIDING: usize = 8;
/// The longest a blocking caller's mediated connect waits.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts at a Unix socket whose backlog is full.
const RETRY_MAX: Duration = Duration::from_millis(50);
/// Thread groups remembered before the table of turns is pruned of idle ones.
const MAX_GROUPS: usize = 1024;

/// The sockets of the name-service cache daemon, as glibc names them (`_PATH_NSCDSOCKET`,
/// and the same under `/run`), answered as absent unless `allowUnixSockets` lists them.
pub const NAME_SERVICE_SOCKETS: &[&str] = &["/var/run/nscd/socket", "/run/nscd/socket"];

/// The outcome of one mediated connect.
#[derive(Debug)]
enum Verdict {
    /// Answer with this result of connect(2) (`Ok` or the errno).
    Connected(Result<(), i32>),
    /// Connect the caller's socket (a duplicate) to this address, then answer with the
    /// result. `_target` keeps the checked socket file open for its `/proc/self/fd` path.
    Connect { sock: OwnedFd, addr: Vec<u8>, _target: Option<OwnedFd> },
    /// Refused by the policy: EPERM and an event.
    Refused { what: Refused, requested: Vec<u8>, resolved: Option<PathBuf> },
    /// A TCP connect to an address outside the sandbox: transparent egress decides.
    Direct(DirectConnect),
    /// The decision must resolve a Unix path (`/proc`, the caller's file system): to be made
    /// again on tokio's blocking pool.
    Blocking,
    /// The notification is no longer valid (the caller was interrupted or killed, and its pid
    /// may be another process's by now): nothing was done and nothing is answered.
    Gone,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Refused {
    Abstract,
    NotListed,
    /// An operation on a socket of the host's network namespace (one sbx connected for the
    /// program) that could point it elsewhere or open it to the host's network.
    HostSocket(&'static str),
}

/// A connect(2) transparent egress decides.
#[derive(Debug)]
struct DirectConnect {
    /// The caller's socket (a duplicate).
    sock: OwnedFd,
    /// The address, as copied once.
    addr: Vec<u8>,
    ip: std::net::IpAddr,
    port: u16,
    domain: i32,
    kind: i32,
    protocol: i32,
    /// The socket is one of the host's network namespace (sbx installed it).
    host: bool,
    /// The caller's descriptor number, and whether it is close-on-exec.
    fd: i32,
    cloexec: bool,
    /// The caller, for reading its other references to the socket (only when sbx will
    /// replace the socket), taken while the notification was valid.
    caller: Option<OwnedFd>,
    /// Those references, which follow the socket when it is replaced.
    references: references::References,
}

enum Installed {
    Connected,
    InProgress,
    /// The caller went away before the socket could be installed.
    Gone,
}

fn errno_text(e: i32) -> String {
    io::Error::from_raw_os_error(e).to_string()
}

/// Transparent egress, the connect itself: a socket of the host's network namespace of the
/// caller's family, type and protocol, with its options and file status flags, connected
/// (not blocking: a caller whose socket blocks gets the result of the handshake, a
/// non-blocking one `EINPROGRESS` at once, as from the kernel), then installed at the
/// caller's descriptor number with `SECCOMP_IOCTL_NOTIF_ADDFD` (`SECCOMP_ADDFD_FLAG_SETFD`),
/// which closes the caller's own socket. A connect that failed installs nothing.
async fn direct(d: &DirectConnect, listener: i32, id: u64) -> Result<Installed, i32> {
    let host = sys::new_socket(d.domain, d.kind | libc::SOCK_NONBLOCK, d.protocol).map_err(|e| errno(&e))?;
    sys::copy_socket_options(&d.sock, &host, d.domain == libc::AF_INET6);
    let flags = fcntl(&d.sock, FcntlArg::F_GETFL).map(OFlag::from_bits_retain).map_err(|e| e as i32)?;
    let blocking = !flags.contains(OFlag::O_NONBLOCK);
    let connected = match sys::connect_raw(&host, &d.addr) {
        Ok(()) => true,
        Err(libc::EINPROGRESS) if blocking => {
            let deadline = tokio::time::Instant::now() + DIRECT_TIMEOUT;
            match wait_connected(&host, deadline).await {
                Ok(()) => true,
                Err(libc::EINPROGRESS) => return Err(libc::ETIMEDOUT),
                Err(e) => return Err(e),
            }
        }
        Err(libc::EINPROGRESS) => false,
        Err(e) => return Err(e),
    };
    // The caller's file status flags (O_NONBLOCK and the rest that apply to a socket).
    fcntl(&host, FcntlArg::F_SETFL(flags)).map_err(|e| e as i32)?;
    match sys::notif_addfd_at(listener, id, &host, d.fd, d.cloexec) {
        Ok(true) => {}
        Ok(false) => return Ok(Installed::Gone),
        Err(e) => return Err(errno(&e)),
    }
    // What else named the old socket names the new one (`references`). A duplicate the
    // caller closed meanwhile gets nothing; one it reused gets the allowed socket.
    for &(fd, cloexec) in &d.references.duplicates {
        let _ = sys::notif_addfd_at(listener, id, &host, fd, cloexec);
    }
    // The socket is the caller's now, connected or connecting: a registration that could not
    // be moved (a number beyond sbx's hard limit, the program's epoll changed meanwhile)
    // changes nothing of the answer.
    if let Some(Err(e)) = d.caller.as_ref().map(|caller| d.references.move_epoll(caller, &d.sock, &host)) {
        tracing::debug!("transparent egress: an epoll registration of descriptor {} not moved: {e}", d.fd);
    }
    Ok(if connected { Installed::Connected } else { Installed::InProgress })
}

/// The longest a blocking caller's direct connect waits for the handshake: then
/// `ETIMEDOUT`, and nothing installed.
pub const DIRECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The IP address and port of a copied `sockaddr_in` or `sockaddr_in6`.
fn inet_address(addr: &[u8]) -> Option<(std::net::IpAddr, u16)> {
    let family = u16::from_ne_bytes([*addr.first()?, *addr.get(1)?]);
    let port = u16::from_be_bytes([*addr.get(2)?, *addr.get(3)?]);
    match i32::from(family) {
        libc::AF_INET => {
            let o: [u8; 4] = addr.get(4..8)?.try_into().ok()?;
            Some((std::net::IpAddr::from(o), port))
        }
        libc::AF_INET6 if addr.len() >= 24 => {
            let o: [u8; 16] = addr.get(8..24)?.try_into().ok()?;
            Some((std::net::IpAddr::from(o), port))
        }
        _ => None,
    }
}

/// Addresses that name the sandbox's own network: loopback and the unspecified address
/// (which connect(2) takes as loopback).
fn sandbox_local(ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// bind(2) and listen(2) under transparent egress: refused on a socket of the host's network
/// namespace (one whose connection ended could otherwise listen on the host, or take a host
/// port), carried out by the supervisor on the caller's socket (a duplicate) otherwise:
/// listen with the caller's backlog, bind to the address copied once. A Unix socket's path
/// is created in the directory as the caller sees it (resolved beneath `/proc/PID/root`),
/// by sbx's own credentials, through `/proc/self/fd/N/NAME` of that directory.
/// The caller's socket (a duplicate of descriptor `fd`, the same open file), taken through a
/// pidfd made while the notification was still valid (the pid could have been reused
/// before); the verdict to answer with when it cannot be had.
fn callers_socket(req: &libc::seccomp_notif, fd: u64, still_valid: &impl Fn() -> bool) -> Result<OwnedFd, Verdict> {
    let pidfd = sys::pidfd_open(req.pid).map_err(|e| Verdict::Connected(Err(errno(&e))))?;
    if !still_valid() {
        return Err(Verdict::Gone);
    }
    sys::pidfd_getfd(&pidfd, fd as u32 as i32).map_err(|e| Verdict::Connected(Err(errno(&e))))
}

/// The socket address the caller passed (`len` bytes at `ptr` of its memory), copied once:
/// everything is decided on this copy.
fn callers_address(req: &libc::seccomp_notif, ptr: u64, len: u64) -> Result<Vec<u8>, Verdict> {
    let len = len as u32 as usize;
    if len > size_of::<libc::sockaddr_storage>() {
        return Err(Verdict::Connected(Err(libc::EINVAL)));
    }
    let mut addr = vec![0u8; len];
    match sys::read_process_memory(req.pid, ptr, &mut addr) {
        Ok(n) if n == len => Ok(addr),
        _ => Err(Verdict::Connected(Err(libc::EFAULT))),
    }
}

/// `f` (a connect, bind or listen sbx makes for the caller) with the caller's identity when
/// it is another user's than sbx's root ([`sys::foreign_creds`]), else as it is.
fn as_caller(creds: Option<&sys::Creds>, f: impl FnOnce() -> Result<(), i32>) -> Result<(), i32> {
    match creds {
        Some(c) => sys::as_caller(c, f).and_then(|r| r),
        None => f(),
    }
}

fn decide_bind(req: &libc::seccomp_notif, host_netns: Option<u64>, may_block: bool, still_valid: impl Fn() -> bool, creds: Option<&sys::Creds>) -> Verdict {
    let [fd, addr_ptr, addr_len, ..] = req.data.args;
    let listen = i64::from(req.data.nr) == libc::SYS_listen;
    let sock = match callers_socket(req, fd, &still_valid) {
        Ok(s) => s,
        Err(v) => return v,
    };
    if nix::sys::stat::fstat(&sock).is_ok_and(|st| st.st_mode & libc::S_IFMT != libc::S_IFSOCK) {
        return Verdict::Connected(Err(libc::ENOTSOCK));
    }
    if host_netns.is_some_and(|h| sys::socket_netns_cookie(&sock).is_ok_and(|c| c == h)) {
        let what = if listen { "listen on a socket of the host's network (sbx connected it for the program)" } else { "bind a socket of the host's network (sbx connected it for the program)" };
        return Verdict::Refused { what: Refused::HostSocket(what), requested: Vec::new(), resolved: None };
    }
    if listen {
        return Verdict::Connected(as_caller(creds, || sys::listen_raw(&sock, addr_ptr as u32 as i32)));
    }
    let addr = match callers_address(req, addr_ptr, addr_len) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let len = addr.len();
    let domain = sys::socket_domain(&sock).unwrap_or(-1);
    let family = addr.get(..2).map(|f| i32::from(u16::from_ne_bytes([f[0], f[1]])));
    // Unix paths: everything else binds as given (an abstract name is the sandbox's own:
    // the namespace of abstract names is the network namespace's).
    if domain != libc::AF_UNIX || family != Some(libc::AF_UNIX) || len <= 2 || addr[2] == 0 {
        if !still_valid() {
            return Verdict::Gone;
        }
        return Verdict::Connected(as_caller(creds, || sys::bind_raw(&sock, &addr)));
    }
    if !may_block {
        return Verdict::Blocking;
    }
    let raw = &addr[2..];
    let (_, in_sandbox) = match unix_path(req, raw) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let (Some(parent), Some(name)) = (in_sandbox.parent(), in_sandbox.file_name()) else {
        return Verdict::Connected(Err(libc::EINVAL));
    };
    let root = match std::fs::File::open(format!("/proc/{}/root", req.pid)) {
        Ok(r) => r,
        Err(e) => return Verdict::Connected(Err(errno(&e))),
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let dir = match openat2(root.as_fd(), parent, how) {
        Ok(d) => d,
        Err(e) => return Verdict::Connected(Err(e as i32)),
    };
    let mut via = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    via.extend_from_slice(name.as_bytes());
    if via.len() >= 108 {
        return Verdict::Connected(Err(libc::ENAMETOOLONG));
    }
    if !still_valid() {
        return Verdict::Gone;
    }
    let named = sockaddr_un(&via);
    Verdict::Connected(as_caller(creds, || sys::bind_raw(&sock, &named)))
}

impl Mediator {
    pub(crate) fn new(listener: &OwnedFd, policy: Option<UnixSocketPolicy>, tx: mpsc::Sender<SeccompDenial>, egress: Option<Arc<crate::proxy::egress::Egress>>) -> io::Result<Mediator> {
        let listener = Arc::new(listener.try_clone()?);
        let deciding = Arc::new(tokio::sync::Semaphore::new(DECIDING));
        let egress = match egress {
            Some(policy) => {
                let probe = sys::new_socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
                Some(Egress { policy, host_netns: sys::socket_netns_cookie(&probe)? })
            }
            None => None,
        };
        Ok(Mediator { listener, policy: policy.map(Arc::new), tx, turns: Arc::default(), sockets: Arc::default(), deciding, egress })
    }

    /// Whether bind(2) and listen(2) are mediated too (transparent egress).
    pub(crate) fn mediates_bind(&self) -> bool {
        self.egress.is_some()
    }

    /// Mediates one connect notification, once its process has a turn ([`PER_PROCESS`]):
    /// the decision on tokio's blocking pool, the connect in this task. (The caller's process
    /// is read from `/proc` here: procfs, which answers at once.)
    pub(crate) fn dispatch(&self, req: libc::seccomp_notif) {
        let m = self.clone();
        let turn = self.turns_of(thread_group(req.pid));
        tokio::spawn(async move {
            let Ok(_permit) = turn.acquire_owned().await else { return };
            let (policy, listener) = (m.policy.clone(), m.listener.clone());
            let host_netns = m.egress.as_ref().map(|e| e.host_netns);
            // Under sudo or --user, sbx is root and the caller is not: what sbx connects or
            // binds for it is done with the caller's identity (a root-only socket listed in
            // allowUnixSockets, a netlink multicast group, a socket file's owner).
            let creds = sys::foreign_creds(req.pid);
            let bind_creds = creds.clone();
            let decide_now = move |may_block: bool| {
                let still_valid = || sys::notif_id_valid(listener.as_raw_fd(), req.id).unwrap_or(false);
                match i64::from(req.data.nr) {
                    libc::SYS_bind | libc::SYS_listen => decide_bind(&req, host_netns, may_block, still_valid, bind_creds.as_ref()),
                    _ => decide(&req, policy.as_deref(), host_netns, may_block, still_valid),
                }
            };
            // Here first: everything but a Unix path's resolution is a few syscalls that do
            // not block (a TCP connect costs no trip to the blocking pool); a path, there.
            let decided = match decide_now.clone()(false) {
                Verdict::Blocking => {
                    let Ok(deciding) = m.deciding.clone().acquire_owned().await else { return };
                    let decided = tokio::task::spawn_blocking(move || decide_now(true)).await;
                    drop(deciding);
                    decided
                }
                v => Ok(v),
            };
            let verdict = match decided {
                Ok(Verdict::Connect { sock, addr, _target }) => {
                    let one_at_a_time = m.lock_of(&sock);
                    let _held = one_at_a_time.lock().await;
                    Verdict::Connected(connect_async(&sock, &addr, creds.as_ref()).await)
                }
                Ok(Verdict::Direct(direct)) => match &m.egress {
                    Some(egress) => {
                        let one_at_a_time = m.lock_of(&direct.sock);
                        let _held = one_at_a_time.lock().await;
                        m.direct(egress, &req, direct, creds.as_ref()).await
                    }
                    None => Verdict::Connected(Err(libc::EIO)),
                },
                Ok(v) => v,
                // The decision panicked: the caller must still get an answer.
                Err(_) => Verdict::Connected(Err(libc::EIO)),
            };
            m.answer(&req, verdict);
        });
    }

    fn lock_of(&self, sock: &OwnedFd) -> OneAtATime {
        let key = nix::sys::stat::fstat(sock).map_or((0, 0), |st| (st.st_dev, st.st_ino));
        let mut sockets = self.sockets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sockets.len() >= MAX_GROUPS {
            sockets.retain(|_, l| Arc::strong_count(l) > 1);
        }
        sockets.entry(key).or_default().clone()
    }

    fn turns_of(&self, tgid: u32) -> Arc<tokio::sync::Semaphore> {
        let mut turns = self.turns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if turns.len() >= MAX_GROUPS {
            // Idle groups (every permit back, nobody waiting): only this map holds them.
            turns.retain(|_, s| Arc::strong_count(s) > 1 || s.available_permits() < PER_PROCESS);
        }
        turns.entry(tgid).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PER_PROCESS))).clone()
    }

    /// A connect of the caller's socket to a destination outside the sandbox: decided by
    /// the egress policy; allowed, carried out on the host (see [`direct`]).
    async fn direct(&self, egress: &Egress, req: &libc::seccomp_notif, d: DirectConnect, creds: Option<&sys::Creds>) -> Verdict {
        let client = format!("pid={}", req.pid);
        let decision = egress.policy.decide(d.ip, d.port, &client).await;
        if !decision.allowed {
            egress.policy.report(&decision, d.ip, d.port, &client, None);
            // A host socket whose connection ended may not be pointed anywhere else.
            return Verdict::Connected(Err(libc::ECONNREFUSED));
        }
        let tcp = d.kind == libc::SOCK_STREAM && (d.protocol == 0 || d.protocol == libc::IPPROTO_TCP);
        if d.host || !tcp || sys::socket_listens(&d.sock).unwrap_or(true) || sys::socket_has_peer(&d.sock) {
            // A host socket (connected once by sbx, its connection over) to an allowed
            // destination; or a socket the kernel will refuse anyway (listening, connected);
            // or UDP, which stays in the sandbox (its network has no route out).
            let r = connect_async(&d.sock, &d.addr, creds).await;
            if d.host {
                egress.policy.report(&decision, d.ip, d.port, &client, r.err().map(|e| format!("connect failed: {}", errno_text(e))).as_deref());
            }
            return Verdict::Connected(r);
        }
        // The caller's other references to the socket, read before the replacement: here
        // for a short table without epoll instances, on the blocking pool otherwise. (Used only if the
        // replacement is made, which proves the caller alive, and so `/proc/PID` its, all
        // along.)
        let mut d = d;
        if d.caller.is_some() {
            let (pid, fd) = (req.pid, d.fd);
            match references::of(pid, &d.sock, fd, true) {
                Some(found) => d.references = found,
                None => {
                    let Ok(sock) = d.sock.try_clone() else { return Verdict::Connected(Err(libc::EMFILE)) };
                    let Ok(_deciding) = self.deciding.clone().acquire_owned().await else { return Verdict::Connected(Err(libc::EIO)) };
                    d.references = tokio::task::spawn_blocking(move || references::of(pid, &sock, fd, false)).await.ok().flatten().unwrap_or_default();
                }
            }
        }
        let result = direct(&d, self.listener.as_raw_fd(), req.id).await;
        let outcome = match &result {
            Ok(Installed::Connected) => None,
            Ok(Installed::InProgress) => None,
            Ok(Installed::Gone) => return Verdict::Gone,
            Err(e) => Some(format!("connect failed: {}", errno_text(*e))),
        };
        egress.policy.report(&decision, d.ip, d.port, &client, outcome.as_deref());
        Verdict::Connected(match result {
            Ok(Installed::Connected) => Ok(()),
            Ok(_) => Err(libc::EINPROGRESS),
            Err(e) => Err(e),
        })
    }

    /// Answers the notification with the verdict and reports a refusal.
    fn answer(&self, req: &libc::seccomp_notif, verdict: Verdict) {
        let listener = self.listener.as_raw_fd();
        let (result, event) = match verdict {
            Verdict::Gone => return,
            Verdict::Connected(r) => (r, None),
            // Not reached: `dispatch` connects first.
            Verdict::Connect { .. } | Verdict::Direct(_) | Verdict::Blocking => (Err(libc::EIO), None),
            Verdict::Refused { what, requested, resolved } => (Err(libc::EPERM), Some(denial(req, what, &requested, resolved))),
        };
        // Gone or failed, the caller has nothing more to get.
        let _ = sys::notif_send(listener, req.id, result.err().map_or(0, |e| -e));
        if let Some(event) = event {
            let _ = self.tx.try_send(event);
        }
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The thread group (process) of thread `tid`, from `/proc`; the tid itself when unknown.
fn thread_group(tid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(tid)
}

/// Puts the socket's file status flags back when dropped (the socket is the caller's).
struct Flags<'a> {
    sock: &'a OwnedFd,
    flags: OFlag,
}

impl Drop for Flags<'_> {
    fn drop(&mut self) {
        let _ = fcntl(self.sock, FcntlArg::F_SETFL(self.flags));
    }
}

/// connect(2) of the caller's socket without blocking a thread: non-blocking for the
/// duration; a caller whose socket blocks waits here (for at most [`ATTEMPT_TIMEOUT`]) as it
/// would have in the kernel: TCP until the handshake ends, Unix until the backlog has room.
async fn connect_async(sock: &OwnedFd, addr: &[u8], creds: Option<&sys::Creds>) -> Result<(), i32> {
    let flags = match fcntl(sock, FcntlArg::F_GETFL) {
        Ok(f) => OFlag::from_bits_retain(f),
        Err(e) => return Err(e as i32),
    };
    let blocking = !flags.contains(OFlag::O_NONBLOCK);
    let _restore = blocking.then(|| {
        let _ = fcntl(sock, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK));
        Flags { sock, flags }
    });
    let deadline = tokio::time::Instant::now() + ATTEMPT_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        match as_caller(creds, || sys::connect_raw(sock, addr)) {
            Err(libc::EAGAIN) if blocking && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(tokio::time::Instant::now()))).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
            Err(libc::EINPROGRESS) if blocking => return wait_connected(sock, deadline).await,
            other => return other,
        }
    }
}

/// Waits until a TCP connect in progress ends (writable), then its result (`SO_ERROR`);
/// `EINPROGRESS` still at the deadline.
async fn wait_connected(sock: &OwnedFd, deadline: tokio::time::Instant) -> Result<(), i32> {
    let watched = match sock.try_clone().and_then(|d| sys::async_fd(d, tokio::io::Interest::WRITABLE)) {
        Ok(w) => w,
        Err(e) => return Err(errno(&e)),
    };
    match tokio::time::timeout_at(deadline, watched.writable()).await {
        Err(_elapsed) => Err(libc::EINPROGRESS),
        Ok(Err(e)) => Err(errno(&e)),
        Ok(Ok(_ready)) => {
            match sys::socket_error(sock) {
                Ok(0) => Ok(()),
                Ok(e) => Err(e),
                Err(e) => Err(errno(&e)),
            }
        }
    }
}

fn sockaddr_un(path: &[u8]) -> Vec<u8> {
    let mut v = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    v.extend_from_slice(path);
    v.push(0);
    v
}

/// Steps 1 and 2 of the module documentation; step 3 is `connect_async`. `still_valid` is NOTIF_ID_VALID: asked after
/// the caller's pid was turned into a pidfd (before, the pid could have been reused), and
/// again after everything read through `/proc/PID` and the caller's memory and before the
/// connect (the caller could have been killed and its pid reused meanwhile). Every other
/// failure is answered with an errno: a caller without an answer would wait for ever.
fn decide(req: &libc::seccomp_notif, policy: Option<&UnixSocketPolicy>, host_netns: Option<u64>, may_block: bool, still_valid: impl Fn() -> bool) -> Verdict {
    let [fd, addr_ptr, addr_len, ..] = req.data.args;
    let sock = match callers_socket(req, fd, &still_valid) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let addr = match callers_address(req, addr_ptr, addr_len) {
        Ok(a) => a,
        Err(v) => return v,
    };
    let len = addr.len();
    let domain = match sys::socket_domain(&sock) {
        Ok(d) => d,
        Err(e) => return Verdict::Connected(Err(errno(&e))),
    };
    let family = addr.get(..2).map(|f| u16::from_ne_bytes([f[0], f[1]]));
    if let Some(host_netns) = host_netns
        && (domain == libc::AF_INET || domain == libc::AF_INET6)
    {
        let host = sys::socket_netns_cookie(&sock).is_ok_and(|c| c == host_netns);
        let kind = sys::socket_type(&sock).unwrap_or(-1);
        // Datagram sockets stay in the sandbox's network: UDP other than sbx's DNS has no
        // route out (the kernel tracer reports it); only TCP is carried out on the host.
        let target = inet_address(&addr).filter(|(ip, _)| !sandbox_local(*ip) && (host || kind == libc::SOCK_STREAM));
        let Some((ip, port)) = target else {
            if host {
                // AF_UNSPEC (a disconnect), loopback (the host's), or a malformed address:
                // a host socket is never pointed anywhere but an allowed destination.
                let what = if family == Some(libc::AF_UNSPEC as u16) { "disconnect a socket of the host's network (AF_UNSPEC)" } else { "connect a socket of the host's network to the sandbox's loopback" };
                return Verdict::Refused { what: Refused::HostSocket(what), requested: Vec::new(), resolved: None };
            }
            if !still_valid() {
                return Verdict::Gone;
            }
            return Verdict::Connect { sock, addr, _target: None };
        };
        let fd = fd as u32 as i32;
        let protocol = sys::socket_protocol(&sock).unwrap_or(-1);
        // A pidfd made before the check below (so it is the caller's), for a socket sbx may
        // replace.
        let caller = if !host && kind == libc::SOCK_STREAM { sys::pidfd_open(req.pid).ok() } else { None };
        let cloexec = references::cloexec(req.pid, fd);
        if !still_valid() {
            return Verdict::Gone;
        }
        return Verdict::Direct(DirectConnect { sock, addr, ip, port, domain, kind, protocol, host, fd, cloexec, caller, references: references::References::default() });
    }
    // Not a Unix socket, or an address the kernel refuses for one (no path, another family):
    // connect as asked; nothing here can name a socket file. Every Unix socket allowed
    // (`allowAllUnixSockets`): the same.
    if policy.is_none() || domain != libc::AF_UNIX || family != Some(libc::AF_UNIX as u16) || len <= 2 {
        if !still_valid() {
            return Verdict::Gone;
        }
        return Verdict::Connect { sock, addr, _target: None };
    }
    let raw = &addr[2..];
    if raw[0] == 0 {
        return Verdict::Refused { what: Refused::Abstract, requested: raw[1..].to_vec(), resolved: None };
    }
    if !may_block {
        return Verdict::Blocking;
    }
    let (path, in_sandbox) = match unix_path(req, raw) {
        Ok(p) => p,
        Err(v) => return v,
    };
    let nscd = |p: &Path| NAME_SERVICE_SOCKETS.iter().any(|s| p == Path::new(s));
    let Some(policy) = policy else { return Verdict::Connected(Err(libc::EIO)) };
    if nscd(&in_sandbox) && !policy.allowed.iter().any(|p| nscd(p)) {
        // glibc probes nscd before every user, group or host lookup and reads the files when
        // the socket is absent. nscd answers host lookups, which would resolve names past the
        // proxy, so it stays unreachable; it is answered as absent (whether the host runs it
        // or not), with no event: the probe is glibc's, not something the command asked for.
        return Verdict::Connected(Err(libc::ENOENT));
    }
    let root = match std::fs::File::open(format!("/proc/{}/root", req.pid)) {
        Ok(r) => r,
        Err(e) => return Verdict::Connected(Err(errno(&e))),
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target = match openat2(root.as_fd(), &in_sandbox, how) {
        Ok(t) => t,
        // What the kernel would have said for a path that is not there for the caller.
        Err(e) => return Verdict::Connected(Err(e as i32)),
    };
    let st = match nix::sys::stat::fstat(&target) {
        Ok(st) => st,
        Err(e) => return Verdict::Connected(Err(e as i32)),
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        // What connect(2) says for a path that is not a socket.
        return Verdict::Connected(Err(libc::ECONNREFUSED));
    }
    let listed = policy
        .allowed
        .iter()
        .any(|p| std::fs::metadata(p).is_ok_and(|m| m.dev() == st.st_dev && m.ino() == st.st_ino));
    if !still_valid() {
        return Verdict::Gone;
    }
    if !listed {
        return Verdict::Refused { what: Refused::NotListed, requested: path.to_vec(), resolved: Some(in_sandbox) };
    }
    let via = format!("/proc/self/fd/{}", target.as_raw_fd());
    Verdict::Connect { sock, addr: sockaddr_un(via.as_bytes()), _target: Some(target) }
}

/// The path of a Unix socket address (`raw`, after the family), up to its NUL, and that
/// path as the caller sees it from its root (a relative one from its working directory).
fn unix_path<'a>(req: &libc::seccomp_notif, raw: &'a [u8]) -> Result<(&'a [u8], PathBuf), Verdict> {
    let path = &raw[..raw.iter().position(|&b| b == 0).unwrap_or(raw.len())];
    let requested = Path::new(OsStr::from_bytes(path));
    if requested.is_absolute() {
        return Ok((path, requested.to_path_buf()));
    }
    match std::fs::read_link(format!("/proc/{}/cwd", req.pid)) {
        Ok(cwd) => Ok((path, cwd.join(requested))),
        Err(e) => Err(Verdict::Connected(Err(errno(&e)))),
    }
}

fn denial(req: &libc::seccomp_notif, what: Refused, requested: &[u8], resolved: Option<PathBuf>) -> SeccompDenial {
    let fd = req.data.args[0] as u32 as i32;
    let len = req.data.args[2] as u32;
    let shown = String::from_utf8_lossy(requested).into_owned();
    let (name, reason) = match what {
        Refused::Abstract => (format!("@{shown:?}"), "abstract Unix sockets are not reachable (allowUnixSockets lists paths)"),
        Refused::NotListed => (format!("{shown:?}"), "the socket is not in allowUnixSockets"),
        Refused::HostSocket(why) => {
            let nr = i64::from(req.data.nr);
            let syscall = crate::syscalls::syscall_name(nr).unwrap_or("connect");
            return SeccompDenial {
                pid: req.pid,
                syscall_nr: nr,
                syscall,
                summary: format!("{syscall}({fd}, ...)"),
                detail: vec![("fd", fd.to_string()), ("reason", format!("transparent egress: a program may not {why}"))],
                path: None,
                requested_path: None,
                comm: std::fs::read_to_string(format!("/proc/{}/comm", req.pid)).ok().map(|c| c.trim_end().to_owned()),
                command: None,
            };
        }
    };
    SeccompDenial {
        pid: req.pid,
        syscall_nr: libc::SYS_connect,
        syscall: "connect",
        summary: format!("connect({fd}, {{AF_UNIX, {name}}}, {len})"),
        detail: vec![("fd", fd.to_string()), ("address", name), ("reason", reason.to_owned())],
        path: resolved,
        requested_path: (what == Refused::NotListed).then_some(shown),
        comm: std::fs::read_to_string(format!("/proc/{}/comm", req.pid)).ok().map(|c| c.trim_end().to_owned()),
        command: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification of connect(2) by this process, of `sock` to `path`.
    fn request(sock: &impl AsRawFd, addr: &[u8]) -> libc::seccomp_notif {
        libc::seccomp_notif {
            id: 0,
            pid: std::process::id(),
            flags: 0,
            data: libc::seccomp_data {
                nr: libc::SYS_connect as i32,
                arch: 0,
                instruction_pointer: 0,
                args: [sock.as_raw_fd() as u64, addr.as_ptr() as u64, addr.len() as u64, 0, 0, 0],
            },
        }
    }

    fn decided(path: &Path, policy: &UnixSocketPolicy) -> Verdict {
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let addr = sockaddr_un(path.as_os_str().as_bytes());
        decide(&request(&sock, &addr), Some(policy), None, true, || true)
    }

    /// Issue 18, point 2: glibc's nscd probe and a path that is not there are answered as the
    /// host would without a denial; a socket that is there and not listed is refused.
    #[test]
    fn absent_paths_and_nscd_are_enoent_without_a_denial() {
        let dir = tempfile::tempdir().unwrap();
        let none = UnixSocketPolicy::default();
        for nscd in NAME_SERVICE_SOCKETS {
            assert!(matches!(decided(Path::new(nscd), &none), Verdict::Connected(Err(libc::ENOENT))), "{nscd}");
        }
        assert!(matches!(decided(&dir.path().join("absent.sock"), &none), Verdict::Connected(Err(libc::ENOENT))));
        let there = dir.path().join("there.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&there).unwrap();
        assert!(matches!(decided(&there, &none), Verdict::Refused { what: Refused::NotListed, .. }));
        let listed = UnixSocketPolicy { allowed: vec![there.clone()] };
        assert!(matches!(decided(&there, &listed), Verdict::Connect { _target: Some(_), .. }));
        // Listing nscd's socket makes the probe an ordinary connect again (absent here, or
        // not: it is no longer answered by the rule).
        let nscd_listed = UnixSocketPolicy { allowed: vec![PathBuf::from(NAME_SERVICE_SOCKETS[0])] };
        let on_host = Path::new(NAME_SERVICE_SOCKETS[0]).exists();
        let v = decided(Path::new(NAME_SERVICE_SOCKETS[0]), &nscd_listed);
        assert_eq!(matches!(v, Verdict::Connected(Err(libc::ENOENT))), !on_host, "{v:?}");
    }
}
