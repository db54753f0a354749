//! Syscalls as vocabulary shared by the filter (`launch::seccomp`), the supervisor
//! (`monitor::notify`) and the decoder (`monitor::decode`): the table of blocked syscalls
//! ([`blocked()`], [`Blocked`], the Unix-socket tables, the socket families), the native
//! architecture and syscall names ([`syscall_name`]). A leaf: it imports nothing of sbx.
//! How the table becomes a BPF program is `launch::seccomp`'s business.

use std::fmt;

mod names;

pub use names::syscall_name;

/// When a table entry applies. Argument comparisons look at the low 32 bits of the argument
/// only, because for every argument we test the kernel itself truncates to 32 bits (clone's
/// flags through `lower_32_bits`, personality's `unsigned int`, ioctl's `unsigned int cmd`):
/// the high bits cannot smuggle a call past the check, nor change what the kernel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Whatever the arguments.
    Always,
    /// When argument `arg` has any of the bits in `bits` set.
    ArgHasAnyBit {
        /// Argument index, 0 to 5.
        arg: u8,
        /// The bits, any of which makes the entry apply.
        bits: u32,
    },
    /// When argument `arg` equals one of `values`.
    ArgIs {
        /// Argument index, 0 to 5.
        arg: u8,
        /// The values that make the entry apply.
        values: &'static [u32],
    },
    /// When argument `arg` equals none of `allowed`.
    ArgIsNot {
        /// Argument index, 0 to 5.
        arg: u8,
        /// The only values that are let through.
        allowed: &'static [u32],
    },
    /// When argument `arg`, masked with `mask`, equals one of `values` (a socket type without
    /// its `SOCK_NONBLOCK`/`SOCK_CLOEXEC` flags).
    ArgMaskedIs {
        /// Argument index, 0 to 5.
        arg: u8,
        /// The bits compared.
        mask: u32,
        /// The masked values that make the entry apply.
        values: &'static [u32],
    },
    /// When every one of these conditions holds.
    All(&'static [Condition]),
}

impl Condition {
    /// Whether the condition holds for these arguments (compared on their low 32 bits, as
    /// the filter does): which entry refused a notified call, for its report.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        let arg = |i: u8| args.get(usize::from(i)).map_or(0, |&a| a as u32);
        match *self {
            Condition::Always => true,
            Condition::ArgHasAnyBit { arg: i, bits } => arg(i) & bits != 0,
            Condition::ArgIs { arg: i, values } => values.contains(&arg(i)),
            Condition::ArgIsNot { arg: i, allowed } => !allowed.contains(&arg(i)),
            Condition::ArgMaskedIs { arg: i, mask, values } => values.contains(&(arg(i) & mask)),
            Condition::All(all) => all.iter().all(|c| c.matches(args)),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, values: &[u32]) -> fmt::Result {
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{v:#x}")?;
            }
            Ok(())
        }
        match *self {
            Condition::Always => f.write_str("always"),
            Condition::ArgHasAnyBit { arg, bits } => write!(f, "when arg{arg} & {bits:#x} != 0"),
            Condition::ArgIs { arg, values } => {
                write!(f, "when arg{arg} is one of ")?;
                list(f, values)
            }
            Condition::ArgIsNot { arg, allowed } => {
                write!(f, "unless arg{arg} is one of ")?;
                list(f, allowed)
            }
            Condition::ArgMaskedIs { arg, mask, values } => {
                write!(f, "when arg{arg} & {mask:#x} is one of ")?;
                list(f, values)
            }
            Condition::All(all) => {
                for (i, c) in all.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    write!(f, "{c}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a blocked syscall gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The `launch::seccomp::DenyAction` chosen at compile time (EPERM or a user notification).
    Deny,
    /// Always `ERRNO(ENOSYS)`, never notified: the caller is meant to fall back to another
    /// syscall that the filter can inspect (clone3 → clone).
    Enosys,
    /// Always `SECCOMP_RET_USER_NOTIF`, whatever the `launch::seccomp::DenyAction`: the supervisor decides
    /// (connect(2) under `allowUnixSockets`, see `monitor::connect`).
    Notify,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Deny => "denied",
            Outcome::Enosys => "ENOSYS",
            Outcome::Notify => "decided by the supervisor",
        })
    }
}

/// One entry of the table of blocked syscalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// The syscall's name, as in `man 2`.
    pub name: &'static str,
    /// The syscall's number on this architecture.
    pub nr: i64,
    /// When the entry applies.
    pub condition: Condition,
    /// What the syscall gets when it applies.
    pub outcome: Outcome,
    /// Why it is blocked, for people: "mounting filesystems".
    pub reason: &'static str,
}

/// The x32 ABI's bit in the syscall number (`__X32_SYSCALL_BIT`).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `AUDIT_ARCH_X86_64` = `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
/// `AUDIT_ARCH_AARCH64` = `EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_AARCH64: u32 = 183 | 0x8000_0000 | 0x4000_0000;

/// The native architecture's `AUDIT_ARCH_*` value (what `seccomp_data.arch` holds for a
/// native call); `None` on an architecture sbx has no filter for (only x86_64 and aarch64).
pub fn native_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(AUDIT_ARCH_X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(AUDIT_ARCH_AARCH64)
    } else {
        None
    }
}

/// `open_tree_attr(2)` (Linux 6.15), not in the libc crate yet; 467 on every architecture
/// (syscall numbers are unified since 424).
pub(crate) const SYS_OPEN_TREE_ATTR: i64 = 467;

/// The namespace flags of clone(2)'s first argument. `CLONE_NEWTIME` (0x80) lies in the
/// exit-signal byte of clone(2), so the kernel never reads it as a namespace flag there (only
/// unshare and clone3 take it); denying it costs nothing, since no valid signal number has
/// bit 7 set.
pub const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWTIME) as u32;

/// `personality(0xffffffff)`: query the current persona without changing it.
pub const PER_QUERY: u32 = 0xffff_ffff;
/// `PER_LINUX`: the default persona.
pub const PER_LINUX: u32 = 0;

/// The ioctl requests that are blocked: `TIOCSTI` (push bytes into a terminal's input queue,
/// i.e. type commands into the shell that owns the terminal after the sandbox exits) and
/// `TIOCLINUX` (console selection/paste, same effect on a virtual console).
pub const BLOCKED_IOCTLS: &[u32] = &[libc::TIOCSTI as u32, libc::TIOCLINUX as u32];

const fn always(name: &'static str, nr: i64, reason: &'static str) -> Blocked {
    Blocked {
        name,
        nr,
        condition: Condition::Always,
        outcome: Outcome::Deny,
        reason,
    }
}

#[rustfmt::skip]
pub(crate) static BLOCKED: &[Blocked] = &[
    // Other processes.
    always("ptrace", libc::SYS_ptrace, "tracing or controlling other processes"),
    always("process_vm_readv", libc::SYS_process_vm_readv, "reading other processes' memory"),
    always("process_vm_writev", libc::SYS_process_vm_writev, "writing other processes' memory"),
    always("pidfd_getfd", libc::SYS_pidfd_getfd, "taking file descriptors from other processes"),
    // Mounts: the old and the new mount API.
    always("mount", libc::SYS_mount, "mounting filesystems"),
    always("umount2", libc::SYS_umount2, "unmounting filesystems"),
    always("pivot_root", libc::SYS_pivot_root, "changing the root filesystem"),
    always("fsopen", libc::SYS_fsopen, "mounting filesystems (new mount API)"),
    always("fsconfig", libc::SYS_fsconfig, "mounting filesystems (new mount API)"),
    always("fsmount", libc::SYS_fsmount, "mounting filesystems (new mount API)"),
    always("fspick", libc::SYS_fspick, "reconfiguring mounted filesystems"),
    always("move_mount", libc::SYS_move_mount, "moving mounts"),
    always("open_tree", libc::SYS_open_tree, "cloning mount trees"),
    always("open_tree_attr", SYS_OPEN_TREE_ATTR, "cloning mount trees"),
    always("mount_setattr", libc::SYS_mount_setattr, "changing mount attributes"),
    // Namespaces.
    always("unshare", libc::SYS_unshare, "creating namespaces"),
    always("setns", libc::SYS_setns, "entering namespaces"),
    Blocked {
        name: "clone",
        nr: libc::SYS_clone,
        condition: Condition::ArgHasAnyBit { arg: 0, bits: CLONE_NAMESPACE_FLAGS },
        outcome: Outcome::Deny,
        reason: "creating namespaces (clone with a CLONE_NEW* flag)",
    },
    Blocked {
        name: "clone3",
        nr: libc::SYS_clone3,
        condition: Condition::Always,
        outcome: Outcome::Enosys,
        reason: "flags unreadable by seccomp; ENOSYS makes libc fall back to clone",
    },
    // Kernel keyrings.
    always("keyctl", libc::SYS_keyctl, "using kernel keyrings"),
    always("add_key", libc::SYS_add_key, "using kernel keyrings"),
    always("request_key", libc::SYS_request_key, "using kernel keyrings"),
    // Large kernel attack surface.
    always("bpf", libc::SYS_bpf, "loading eBPF programs"),
    always("perf_event_open", libc::SYS_perf_event_open, "performance monitoring"),
    always("userfaultfd", libc::SYS_userfaultfd, "handling page faults in user space"),
    always("io_uring_setup", libc::SYS_io_uring_setup, "io_uring (bypasses seccomp)"),
    always("io_uring_enter", libc::SYS_io_uring_enter, "io_uring (bypasses seccomp)"),
    always("io_uring_register", libc::SYS_io_uring_register, "io_uring (bypasses seccomp)"),
    // File handles bypass path-based checks.
    always("open_by_handle_at", libc::SYS_open_by_handle_at, "opening files by handle"),
    always("name_to_handle_at", libc::SYS_name_to_handle_at, "getting file handles"),
    // The system as a whole.
    always("kexec_load", libc::SYS_kexec_load, "loading a new kernel"),
    always("kexec_file_load", libc::SYS_kexec_file_load, "loading a new kernel"),
    always("init_module", libc::SYS_init_module, "loading kernel modules"),
    always("finit_module", libc::SYS_finit_module, "loading kernel modules"),
    always("delete_module", libc::SYS_delete_module, "unloading kernel modules"),
    always("reboot", libc::SYS_reboot, "rebooting the system"),
    always("swapon", libc::SYS_swapon, "enabling swap"),
    always("swapoff", libc::SYS_swapoff, "disabling swap"),
    always("acct", libc::SYS_acct, "process accounting"),
    always("syslog", libc::SYS_syslog, "reading the kernel log"),
    always("quotactl", libc::SYS_quotactl, "managing disk quotas"),
    always("quotactl_fd", libc::SYS_quotactl_fd, "managing disk quotas"),
    always("lookup_dcookie", libc::SYS_lookup_dcookie, "kernel profiling"),
    Blocked {
        name: "personality",
        nr: libc::SYS_personality,
        condition: Condition::ArgIsNot { arg: 0, allowed: &[PER_LINUX, PER_QUERY] },
        outcome: Outcome::Deny,
        reason: "changing the execution domain (only the query and PER_LINUX pass)",
    },
    #[cfg(target_arch = "x86_64")]
    always("ioperm", libc::SYS_ioperm, "raw I/O port access"),
    #[cfg(target_arch = "x86_64")]
    always("iopl", libc::SYS_iopl, "raw I/O port access"),
    Blocked {
        name: "ioctl",
        nr: libc::SYS_ioctl,
        condition: Condition::ArgIs { arg: 1, values: BLOCKED_IOCTLS },
        outcome: Outcome::Deny,
        reason: "injecting terminal input (TIOCSTI, TIOCLINUX)",
    },
    // Socket families: an allow list. The network namespace isolates IP and
    // Unix sockets are ruled by the tables below, but some families are not
    // namespaced at all (AF_VSOCK reaches the hypervisor and the host's vsock
    // ports) and the rest are kernel attack surface no build or agent needs.
    Blocked {
        name: "socket",
        nr: libc::SYS_socket,
        condition: Condition::ArgIsNot { arg: 0, allowed: SOCKET_FAMILIES },
        outcome: Outcome::Deny,
        reason: "socket families other than Unix, IPv4, IPv6 and netlink (vsock, packet, alg, bluetooth, ...)",
    },
    Blocked {
        name: "socket",
        nr: libc::SYS_socket,
        condition: Condition::All(&[
            Condition::ArgIs { arg: 0, values: &[libc::AF_NETLINK as u32] },
            Condition::ArgIsNot { arg: 2, allowed: &[libc::NETLINK_ROUTE as u32] },
        ]),
        outcome: Outcome::Deny,
        reason: "netlink protocols other than NETLINK_ROUTE (audit, uevents, sock_diag, ...)",
    },
    Blocked {
        name: "socketpair",
        nr: libc::SYS_socketpair,
        condition: Condition::ArgIsNot { arg: 0, allowed: &[libc::AF_UNIX as u32] },
        outcome: Outcome::Deny,
        reason: "socket pairs of families other than Unix",
    },
];

/// The socket families the command may create: Unix (ruled further by the Unix-socket
/// tables), IPv4 and IPv6 (the network namespace has only loopback; the proxy is the way
/// out) and netlink (NETLINK_ROUTE only: glibc's getaddrinfo and `ip` read addresses with it).
pub const SOCKET_FAMILIES: &[u32] =
    &[libc::AF_UNIX as u32, libc::AF_INET as u32, libc::AF_INET6 as u32, libc::AF_NETLINK as u32];
/// The table of blocked syscalls, in the order `sbx doctor` lists them. Every syscall not in
/// it is allowed.
pub fn blocked() -> &'static [Blocked] {
    BLOCKED
}

/// Unix-domain sockets that could reach the host: blocked unless the policy allows every Unix
/// socket (`allowAllUnixSockets`). A socket file on a read-only mount still accepts connections
/// (the kernel's read-only check does not cover sockets), so without these rules the sandbox
/// could reach the host's docker.sock or ssh-agent.
///
/// * `socket(AF_UNIX, ...)`, whatever the type.
/// * `socketpair(AF_UNIX, ...)` of any type but stream and seqpacket: a datagram socket sends
///   to any path named in `sendto`/`sendmsg` (and `connect` re-targets it), even when it came
///   from a socketpair, so such a pair reached the host's `/dev/log`, the journal's socket or
///   any other datagram socket; `SOCK_RAW` is the same thing (the kernel turns a Unix raw
///   socket into a datagram one), and the other types are refused as an allow list should.
///   The flag bits (`SOCK_NONBLOCK`, `SOCK_CLOEXEC`) are masked off before the comparison, as
///   the kernel does; any other bit makes the kernel fail the call with EINVAL.
///   Stream and seqpacket pairs stay allowed: they are connected to each other for good (the
///   kernel refuses or ignores a destination address on them) and reach nothing outside.
pub static UNIX_SOCKETS: &[Blocked] = &[
    Blocked {
        name: "socket",
        nr: libc::SYS_socket,
        condition: Condition::ArgIs { arg: 0, values: &[libc::AF_UNIX as u32] },
        outcome: Outcome::Deny,
        reason: "creating Unix-domain sockets (host services such as docker.sock)",
    },
    DATAGRAM_PAIRS,
];

/// socketpair(2) of Unix sockets other than stream and seqpacket, refused in both
/// Unix-socket tables: a datagram (or raw) socket can send to any socket path (host ones
/// such as /dev/log).
const DATAGRAM_PAIRS: Blocked = Blocked {
    name: "socketpair",
    nr: libc::SYS_socketpair,
    condition: Condition::ArgMaskedIs { arg: 1, mask: SOCK_TYPE_MASK, values: UNIX_TYPES_REFUSED },
    outcome: Outcome::Deny,
    reason: "Unix socket pairs other than stream and seqpacket (a datagram socket can send to host sockets such as /dev/log)",
};

/// Every value of a socket type's low four bits but `SOCK_STREAM` (1) and `SOCK_SEQPACKET`
/// (5): the Unix socket types that are refused, as a list because the filter compares a
/// masked argument for equality only.
pub const UNIX_TYPES_REFUSED: &[u32] = &[0, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The Unix-socket rules when `allowUnixSockets` lists paths: Unix sockets may be created
/// (stream and seqpacket only) and every connect(2) goes to the supervisor, which connects
/// the caller's socket itself when the path is allowed (`monitor::connect`). Datagram sockets
/// stay refused, as pairs too: a datagram socket names its destination in every sendto(2)
/// and sendmsg(2), which the filter cannot read and the supervisor does not see. Stream and
/// seqpacket sockets reach a path only through connect(2) (the kernel refuses or ignores an
/// address in their sendto/sendmsg).
pub static MEDIATED_UNIX_SOCKETS: &[Blocked] = &[
    Blocked {
        name: "socket",
        nr: libc::SYS_socket,
        condition: Condition::All(&[
            Condition::ArgIs { arg: 0, values: &[libc::AF_UNIX as u32] },
            Condition::ArgMaskedIs { arg: 1, mask: SOCK_TYPE_MASK, values: UNIX_TYPES_REFUSED },
        ]),
        outcome: Outcome::Deny,
        reason: "creating Unix sockets other than stream and seqpacket (a datagram socket can send to any socket path)",
    },
    DATAGRAM_PAIRS,
    Blocked {
        name: "connect",
        nr: libc::SYS_connect,
        condition: Condition::Always,
        outcome: Outcome::Notify,
        reason: "connecting a Unix socket to a path not in allowUnixSockets",
    },
];

/// Every exec, when command rules apply (`command_rules`): notified, decided on the argv by
/// the supervisor (`monitor::exec`), and let through with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`
/// or refused with EACCES.
pub static MEDIATED_EXEC: &[Blocked] = &[
    Blocked {
        name: "execve",
        nr: libc::SYS_execve,
        condition: Condition::Always,
        outcome: Outcome::Notify,
        reason: "running a command that a command rule (command.deny) refuses",
    },
    Blocked {
        name: "execveat",
        nr: libc::SYS_execveat,
        condition: Condition::Always,
        outcome: Outcome::Notify,
        reason: "running a command that a command rule (command.deny) refuses",
    },
];

/// IPC that only an IPC namespace would make the sandbox's own: without one
/// (`--no-namespaces`), System V shared memory, semaphores and message queues, and POSIX
/// message queues, are the host's (another process of the user's could be attached to them).
/// POSIX shared memory lives in /dev/shm, which Landlock keeps read-only there.
pub static HOST_IPC: &[Blocked] = &[
    always("shmget", libc::SYS_shmget, "System V shared memory (the host's: sbx runs without namespaces)"),
    always("shmat", libc::SYS_shmat, "System V shared memory (the host's: sbx runs without namespaces)"),
    always("shmctl", libc::SYS_shmctl, "System V shared memory (the host's: sbx runs without namespaces)"),
    always("semget", libc::SYS_semget, "System V semaphores (the host's: sbx runs without namespaces)"),
    always("semop", libc::SYS_semop, "System V semaphores (the host's: sbx runs without namespaces)"),
    always("semtimedop", libc::SYS_semtimedop, "System V semaphores (the host's: sbx runs without namespaces)"),
    always("semctl", libc::SYS_semctl, "System V semaphores (the host's: sbx runs without namespaces)"),
    always("msgget", libc::SYS_msgget, "System V message queues (the host's: sbx runs without namespaces)"),
    always("msgsnd", libc::SYS_msgsnd, "System V message queues (the host's: sbx runs without namespaces)"),
    always("msgrcv", libc::SYS_msgrcv, "System V message queues (the host's: sbx runs without namespaces)"),
    always("msgctl", libc::SYS_msgctl, "System V message queues (the host's: sbx runs without namespaces)"),
    always("mq_open", libc::SYS_mq_open, "POSIX message queues (the host's: sbx runs without namespaces)"),
    always("mq_unlink", libc::SYS_mq_unlink, "POSIX message queues (the host's: sbx runs without namespaces)"),
];

/// IPv4 and IPv6 sockets, refused when the sandbox has no network namespace and the user
/// did not choose an unfiltered network (`--no-namespaces`): an IP socket would be the host's
/// network, with no proxy in the way.
pub static IP_SOCKETS: &[Blocked] = &[Blocked {
    name: "socket",
    nr: libc::SYS_socket,
    condition: Condition::ArgIs { arg: 0, values: &[libc::AF_INET as u32, libc::AF_INET6 as u32] },
    outcome: Outcome::Deny,
    reason: "IP networking (sbx runs without namespaces and without --unfiltered-network: no network)",
}];

/// Transparent egress (`monitor::connect`, `proxy::egress`): the supervisor connects a TCP
/// socket to an allowed destination in the host's network namespace and installs it in
/// place of the program's. Such a socket must never be pointed anywhere else nor opened to
/// the host's network, so: bind(2) and listen(2) are notified (refused on a host socket,
/// carried out by the supervisor on any other); a send that connects (`MSG_FASTOPEN`) and
/// the socket options that connect on the first write (`TCP_FASTOPEN_CONNECT`), change
/// the route (`SO_BINDTODEVICE`, `SO_BINDTOIFINDEX`, `SO_MARK`) or repair a connection
/// (`TCP_REPAIR`) are refused on every socket (the sandbox's own network has one interface
/// and needs none of them). connect(2) is notified too ([`EGRESS_CONNECT`]).
pub static EGRESS: &[Blocked] = &[
    Blocked {
        name: "bind",
        nr: libc::SYS_bind,
        condition: Condition::Always,
        outcome: Outcome::Notify,
        reason: "binding a socket of the host's network (transparent egress)",
    },
    Blocked {
        name: "listen",
        nr: libc::SYS_listen,
        condition: Condition::Always,
        outcome: Outcome::Notify,
        reason: "listening on a socket of the host's network (transparent egress)",
    },
    Blocked {
        name: "sendto",
        nr: libc::SYS_sendto,
        condition: Condition::ArgHasAnyBit { arg: 3, bits: libc::MSG_FASTOPEN as u32 },
        outcome: Outcome::Deny,
        reason: "a send that connects (MSG_FASTOPEN), which the supervisor would not see",
    },
    Blocked {
        name: "sendmsg",
        nr: libc::SYS_sendmsg,
        condition: Condition::ArgHasAnyBit { arg: 2, bits: libc::MSG_FASTOPEN as u32 },
        outcome: Outcome::Deny,
        reason: "a send that connects (MSG_FASTOPEN), which the supervisor would not see",
    },
    Blocked {
        name: "sendmmsg",
        nr: libc::SYS_sendmmsg,
        condition: Condition::ArgHasAnyBit { arg: 3, bits: libc::MSG_FASTOPEN as u32 },
        outcome: Outcome::Deny,
        reason: "a send that connects (MSG_FASTOPEN), which the supervisor would not see",
    },
    Blocked {
        name: "setsockopt",
        nr: libc::SYS_setsockopt,
        condition: Condition::All(&[
            Condition::ArgIs { arg: 1, values: &[libc::SOL_SOCKET as u32] },
            Condition::ArgIs { arg: 2, values: &[libc::SO_BINDTODEVICE as u32, libc::SO_MARK as u32, 62] },
        ]),
        outcome: Outcome::Deny,
        reason: "socket options that change a connection's route (SO_BINDTODEVICE, SO_BINDTOIFINDEX, SO_MARK)",
    },
    Blocked {
        name: "setsockopt",
        nr: libc::SYS_setsockopt,
        condition: Condition::All(&[
            Condition::ArgIs { arg: 1, values: &[libc::IPPROTO_TCP as u32] },
            Condition::ArgIs { arg: 2, values: &[libc::TCP_FASTOPEN_CONNECT as u32, libc::TCP_REPAIR as u32] },
        ]),
        outcome: Outcome::Deny,
        reason: "TCP options that connect on the first write or repair a connection (TCP_FASTOPEN_CONNECT, TCP_REPAIR)",
    },
];

/// connect(2), notified for transparent egress when the Unix-socket rules do not notify it
/// already (`allowAllUnixSockets`).
pub static EGRESS_CONNECT: &[Blocked] = &[Blocked {
    name: "connect",
    nr: libc::SYS_connect,
    condition: Condition::Always,
    outcome: Outcome::Notify,
    reason: "a connection to an address outside the sandbox (transparent egress decides it)",
}];

/// The type bits of socket(2)'s and socketpair(2)'s `type` argument (the kernel's
/// `SOCK_TYPE_MASK`); the bits above are `SOCK_NONBLOCK` and `SOCK_CLOEXEC`.
const SOCK_TYPE_MASK: u32 = 0xf;

/// What varies in the filter with the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterOptions {
    /// Add the [`UNIX_SOCKETS`] entries to the table.
    pub block_unix_sockets: bool,
    /// Add the [`MEDIATED_UNIX_SOCKETS`] entries instead (`allowUnixSockets`): the program
    /// then notifies connect(2) whatever the `launch::seccomp::DenyAction`, so it needs a listener and a
    /// supervisor that mediates connects.
    pub mediate_unix_connect: bool,
    /// Add the [`MEDIATED_EXEC`] entries: every exec is notified (command rules), so the
    /// filter needs a listener and a supervisor that decides execs.
    pub mediate_exec: bool,
    /// The sandbox shares the host's namespaces (`--no-namespaces`): add the
    /// [`HOST_IPC`] entries, since System V and POSIX message-queue IPC would be the host's.
    pub shared_host: bool,
    /// No network at all (`--no-namespaces` without `--unfiltered-network`): add the
    /// [`IP_SOCKETS`] entries, since without a network namespace an IP socket would be the
    /// host's network.
    pub no_ip: bool,
    /// Add the [`EGRESS`] entries (and [`EGRESS_CONNECT`] unless connect is notified
    /// already): transparent egress, decided by the supervisor.
    pub transparent_egress: bool,
}

impl FilterOptions {
    /// The table as compiled with these options.
    pub fn entries(&self) -> impl Iterator<Item = &'static Blocked> {
        let unix: &'static [Blocked] = match (self.mediate_unix_connect, self.block_unix_sockets) {
            (true, _) => MEDIATED_UNIX_SOCKETS,
            (false, true) => UNIX_SOCKETS,
            (false, false) => &[],
        };
        let exec: &'static [Blocked] = if self.mediate_exec { MEDIATED_EXEC } else { &[] };
        let ipc: &'static [Blocked] = if self.shared_host { HOST_IPC } else { &[] };
        let ip: &'static [Blocked] = if self.no_ip { IP_SOCKETS } else { &[] };
        let egress: &'static [Blocked] = if self.transparent_egress { EGRESS } else { &[] };
        let connect: &'static [Blocked] = if self.transparent_egress && !self.mediate_unix_connect { EGRESS_CONNECT } else { &[] };
        BLOCKED.iter().chain(unix).chain(exec).chain(ipc).chain(ip).chain(egress).chain(connect)
    }

    /// Whether the filter notifies syscalls whatever the deny action: a supervisor must
    /// then run.
    pub fn notifies(&self) -> bool {
        self.mediate_unix_connect || self.mediate_exec || self.transparent_egress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn table_lists_exactly_these_syscalls_in_order() {
        let names: Vec<_> = blocked().iter().map(|b| b.name).collect();
        assert_eq!(
            names,
            [
                "ptrace",
                "process_vm_readv",
                "process_vm_writev",
                "pidfd_getfd",
                "mount",
                "umount2",
                "pivot_root",
                "fsopen",
                "fsconfig",
                "fsmount",
                "fspick",
                "move_mount",
                "open_tree",
                "open_tree_attr",
                "mount_setattr",
                "unshare",
                "setns",
                "clone",
                "clone3",
                "keyctl",
                "add_key",
                "request_key",
                "bpf",
                "perf_event_open",
                "userfaultfd",
                "io_uring_setup",
                "io_uring_enter",
                "io_uring_register",
                "open_by_handle_at",
                "name_to_handle_at",
                "kexec_load",
                "kexec_file_load",
                "init_module",
                "finit_module",
                "delete_module",
                "reboot",
                "swapon",
                "swapoff",
                "acct",
                "syslog",
                "quotactl",
                "quotactl_fd",
                "lookup_dcookie",
                "personality",
                "ioperm",
                "iopl",
                "ioctl",
                "socket",
                "socket",
                "socketpair",
            ]
        );
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn table_numbers_are_the_x86_64_ones() {
        let nr = |name: &str| blocked().iter().find(|b| b.name == name).map(|b| b.nr);
        assert_eq!(nr("ptrace"), Some(101));
        assert_eq!(nr("mount"), Some(165));
        assert_eq!(nr("clone"), Some(56));
        assert_eq!(nr("clone3"), Some(435));
        assert_eq!(nr("unshare"), Some(272));
        assert_eq!(nr("ioctl"), Some(16));
        assert_eq!(nr("personality"), Some(135));
        assert_eq!(nr("open_tree_attr"), Some(467));
        assert_eq!(nr("io_uring_setup"), Some(425));
    }

    #[test]
    fn table_conditions_and_outcomes() {
        let by_name = |name: &str| {
            *blocked()
                .iter()
                .find(|b| b.name == name)
                .expect("entry in table")
        };
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7e02_0080);
        assert_eq!(
            by_name("clone").condition,
            Condition::ArgHasAnyBit {
                arg: 0,
                bits: 0x7e02_0080
            }
        );
        assert_eq!(by_name("clone3").outcome, Outcome::Enosys);
        assert_eq!(
            by_name("personality").condition,
            Condition::ArgIsNot {
                arg: 0,
                allowed: &[0, 0xffff_ffff]
            }
        );
        assert_eq!(
            by_name("ioctl").condition,
            Condition::ArgIs {
                arg: 1,
                values: &[0x5412, 0x541c]
            }
        );
        // Everything else applies always and is denied with the chosen action.
        for b in blocked() {
            if !["clone", "clone3", "personality", "ioctl", "socket", "socketpair"].contains(&b.name) {
                assert_eq!(b.condition, Condition::Always, "{}", b.name);
                assert_eq!(b.outcome, Outcome::Deny, "{}", b.name);
            }
            assert!(!b.reason.is_empty(), "{}", b.name);
        }
        let conditions = |name: &str| blocked().iter().filter(|b| b.name == name).map(|b| b.condition.to_string()).collect::<Vec<_>>();
        assert_eq!(conditions("socket"), ["unless arg0 is one of 0x1, 0x2, 0xa, 0x10", "when arg0 is one of 0x10 and unless arg2 is one of 0x0"]);
        assert_eq!(conditions("socketpair"), ["unless arg0 is one of 0x1"]);
        assert_eq!(
            by_name("clone").condition.to_string(),
            "when arg0 & 0x7e020080 != 0"
        );
        assert_eq!(
            by_name("ioctl").condition.to_string(),
            "when arg1 is one of 0x5412, 0x541c"
        );
        assert_eq!(
            by_name("personality").condition.to_string(),
            "unless arg0 is one of 0x0, 0xffffffff"
        );
    }

    #[test]
    fn table_has_no_duplicate_names_or_numbers() {
        // A syscall may have several conditional entries (socket: the family allow list and
        // netlink's protocols, each with its own reason); they share name and number, and
        // none applies always (it would make the others meaningless).
        for b in blocked() {
            let same: Vec<_> = blocked().iter().filter(|o| o.nr == b.nr || o.name == b.name).collect();
            if same.len() > 1 {
                for o in same {
                    assert_eq!((o.name, o.nr), (b.name, b.nr), "{} shares a name or number with {}", o.name, b.name);
                    assert_ne!(o.condition, Condition::Always, "{} has several entries", o.name);
                }
            }
        }
        let mut names: Vec<_> = blocked().iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), blocked().len() - 1, "socket has two entries, every other syscall one");
    }

    #[test]
    fn syscall_name_round_trips_every_table_entry() {
        let all = FilterOptions { block_unix_sockets: true, mediate_unix_connect: true, mediate_exec: true, shared_host: true, no_ip: true, transparent_egress: true };
        for b in blocked().iter().chain(all.entries()).chain(UNIX_SOCKETS) {
            assert_eq!(syscall_name(b.nr), Some(b.name), "nr {}", b.nr);
        }
    }

    #[test]
    fn syscall_name_knows_the_common_ones() {
        let common = [
            (libc::SYS_openat, "openat"),
            (libc::SYS_openat2, "openat2"),
            (libc::SYS_read, "read"),
            (libc::SYS_write, "write"),
            (libc::SYS_execve, "execve"),
            (libc::SYS_execveat, "execveat"),
            (libc::SYS_mkdirat, "mkdirat"),
            (libc::SYS_unlinkat, "unlinkat"),
            (libc::SYS_renameat2, "renameat2"),
            (libc::SYS_linkat, "linkat"),
            (libc::SYS_symlinkat, "symlinkat"),
            (libc::SYS_fchmodat, "fchmodat"),
            (libc::SYS_fchownat, "fchownat"),
            (libc::SYS_truncate, "truncate"),
            (libc::SYS_connect, "connect"),
            (libc::SYS_bind, "bind"),
            (libc::SYS_socket, "socket"),
            (libc::SYS_kill, "kill"),
            (libc::SYS_tgkill, "tgkill"),
            (libc::SYS_newfstatat, "newfstatat"),
            (libc::SYS_statx, "statx"),
            (libc::SYS_faccessat, "faccessat"),
            (libc::SYS_faccessat2, "faccessat2"),
            (libc::SYS_utimensat, "utimensat"),
            (libc::SYS_setxattr, "setxattr"),
            (libc::SYS_removexattr, "removexattr"),
            (libc::SYS_getpid, "getpid"),
        ];
        for (nr, name) in common {
            assert_eq!(syscall_name(nr), Some(name));
        }
        #[cfg(target_arch = "x86_64")]
        {
            let legacy = [
                (2, "open"),
                (83, "mkdir"),
                (87, "unlink"),
                (82, "rename"),
                (264, "renameat"),
                (86, "link"),
                (88, "symlink"),
                (90, "chmod"),
                (92, "chown"),
                (85, "creat"),
                (21, "access"),
                (262, "newfstatat"),
                (332, "statx"),
                (439, "faccessat2"),
                (437, "openat2"),
            ];
            for (nr, name) in legacy {
                assert_eq!(syscall_name(nr), Some(name));
            }
        }
        assert_eq!(syscall_name(-1), None);
        assert_eq!(syscall_name(100_000), None);
        assert_eq!(
            syscall_name(i64::from(X32_SYSCALL_BIT) | libc::SYS_mount),
            None
        );
    }
}
