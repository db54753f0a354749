//! Name tables for decoding: flags, commands and constants of the blocked syscalls, as
//! their C names. Tables.

use std::fmt::Write as _;

pub(super) type Table = &'static [(u64, &'static str)];

pub(super) static MOUNT_FLAGS: Table = &[
    (0x1, "MS_RDONLY"),
    (0x2, "MS_NOSUID"),
    (0x4, "MS_NODEV"),
    (0x8, "MS_NOEXEC"),
    (0x10, "MS_SYNCHRONOUS"),
    (0x20, "MS_REMOUNT"),
    (0x40, "MS_MANDLOCK"),
    (0x80, "MS_DIRSYNC"),
    (0x100, "MS_NOSYMFOLLOW"),
    (0x400, "MS_NOATIME"),
    (0x800, "MS_NODIRATIME"),
    (0x1000, "MS_BIND"),
    (0x2000, "MS_MOVE"),
    (0x4000, "MS_REC"),
    (0x8000, "MS_SILENT"),
    (0x1_0000, "MS_POSIXACL"),
    (0x2_0000, "MS_UNBINDABLE"),
    (0x4_0000, "MS_PRIVATE"),
    (0x8_0000, "MS_SLAVE"),
    (0x10_0000, "MS_SHARED"),
    (0x20_0000, "MS_RELATIME"),
    (0x40_0000, "MS_KERNMOUNT"),
    (0x80_0000, "MS_I_VERSION"),
    (0x100_0000, "MS_STRICTATIME"),
    (0x200_0000, "MS_LAZYTIME"),
];

pub(super) static UMOUNT_FLAGS: Table = &[
    (0x1, "MNT_FORCE"),
    (0x2, "MNT_DETACH"),
    (0x4, "MNT_EXPIRE"),
    (0x8, "UMOUNT_NOFOLLOW"),
];

/// The namespace flags, in the order they are printed.
pub(super) static NS_FLAGS: Table = &[
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2_0000, "CLONE_NEWNS"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x400_0000, "CLONE_NEWUTS"),
    (0x800_0000, "CLONE_NEWIPC"),
    (0x200_0000, "CLONE_NEWCGROUP"),
    (0x80, "CLONE_NEWTIME"),
];

/// unshare(2)'s flags: the namespaces, then the others it takes.
pub(super) static UNSHARE_FLAGS: Table = &[
    (0x1000_0000, "CLONE_NEWUSER"),
    (0x2_0000, "CLONE_NEWNS"),
    (0x2000_0000, "CLONE_NEWPID"),
    (0x4000_0000, "CLONE_NEWNET"),
    (0x400_0000, "CLONE_NEWUTS"),
    (0x800_0000, "CLONE_NEWIPC"),
    (0x200_0000, "CLONE_NEWCGROUP"),
    (0x80, "CLONE_NEWTIME"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x4_0000, "CLONE_SYSVSEM"),
];

pub(super) static PTRACE_REQUESTS: Table = &[
    (0, "PTRACE_TRACEME"),
    (1, "PTRACE_PEEKTEXT"),
    (2, "PTRACE_PEEKDATA"),
    (3, "PTRACE_PEEKUSER"),
    (4, "PTRACE_POKETEXT"),
    (5, "PTRACE_POKEDATA"),
    (6, "PTRACE_POKEUSER"),
    (7, "PTRACE_CONT"),
    (8, "PTRACE_KILL"),
    (9, "PTRACE_SINGLESTEP"),
    (12, "PTRACE_GETREGS"),
    (13, "PTRACE_SETREGS"),
    (14, "PTRACE_GETFPREGS"),
    (15, "PTRACE_SETFPREGS"),
    (16, "PTRACE_ATTACH"),
    (17, "PTRACE_DETACH"),
    (18, "PTRACE_GETFPXREGS"),
    (19, "PTRACE_SETFPXREGS"),
    (24, "PTRACE_SYSCALL"),
    (25, "PTRACE_GET_THREAD_AREA"),
    (26, "PTRACE_SET_THREAD_AREA"),
    (30, "PTRACE_ARCH_PRCTL"),
    (31, "PTRACE_SYSEMU"),
    (32, "PTRACE_SYSEMU_SINGLESTEP"),
    (33, "PTRACE_SINGLEBLOCK"),
    (0x4200, "PTRACE_SETOPTIONS"),
    (0x4201, "PTRACE_GETEVENTMSG"),
    (0x4202, "PTRACE_GETSIGINFO"),
    (0x4203, "PTRACE_SETSIGINFO"),
    (0x4204, "PTRACE_GETREGSET"),
    (0x4205, "PTRACE_SETREGSET"),
    (0x4206, "PTRACE_SEIZE"),
    (0x4207, "PTRACE_INTERRUPT"),
    (0x4208, "PTRACE_LISTEN"),
    (0x4209, "PTRACE_PEEKSIGINFO"),
    (0x420a, "PTRACE_GETSIGMASK"),
    (0x420b, "PTRACE_SETSIGMASK"),
    (0x420c, "PTRACE_SECCOMP_GET_FILTER"),
    (0x420d, "PTRACE_SECCOMP_GET_METADATA"),
    (0x420e, "PTRACE_GET_SYSCALL_INFO"),
    (0x420f, "PTRACE_GET_RSEQ_CONFIGURATION"),
    (0x4210, "PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG"),
    (0x4211, "PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG"),
];

pub(super) static ADDRESS_FAMILIES: Table = &[
    (0, "AF_UNSPEC"),
    (1, "AF_UNIX"),
    (2, "AF_INET"),
    (3, "AF_AX25"),
    (4, "AF_IPX"),
    (5, "AF_APPLETALK"),
    (6, "AF_NETROM"),
    (7, "AF_BRIDGE"),
    (8, "AF_ATMPVC"),
    (9, "AF_X25"),
    (10, "AF_INET6"),
    (11, "AF_ROSE"),
    (12, "AF_DECnet"),
    (13, "AF_NETBEUI"),
    (14, "AF_SECURITY"),
    (15, "AF_KEY"),
    (16, "AF_NETLINK"),
    (17, "AF_PACKET"),
    (21, "AF_RDS"),
    (26, "AF_LLC"),
    (27, "AF_IB"),
    (28, "AF_MPLS"),
    (29, "AF_CAN"),
    (30, "AF_TIPC"),
    (31, "AF_BLUETOOTH"),
    (38, "AF_ALG"),
    (40, "AF_VSOCK"),
    (41, "AF_KCM"),
    (42, "AF_QIPCRTR"),
    (43, "AF_SMC"),
    (44, "AF_XDP"),
    (45, "AF_MCTP"),
];

pub(super) static SOCKET_TYPES: Table = &[
    (1, "SOCK_STREAM"),
    (2, "SOCK_DGRAM"),
    (3, "SOCK_RAW"),
    (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"),
    (6, "SOCK_DCCP"),
    (10, "SOCK_PACKET"),
];

pub(super) static SOCKET_TYPE_FLAGS: Table = &[(0x800, "SOCK_NONBLOCK"), (0x8_0000, "SOCK_CLOEXEC")];

pub(super) static BPF_COMMANDS: Table = &[
    (0, "BPF_MAP_CREATE"),
    (1, "BPF_MAP_LOOKUP_ELEM"),
    (2, "BPF_MAP_UPDATE_ELEM"),
    (3, "BPF_MAP_DELETE_ELEM"),
    (4, "BPF_MAP_GET_NEXT_KEY"),
    (5, "BPF_PROG_LOAD"),
    (6, "BPF_OBJ_PIN"),
    (7, "BPF_OBJ_GET"),
    (8, "BPF_PROG_ATTACH"),
    (9, "BPF_PROG_DETACH"),
    (10, "BPF_PROG_TEST_RUN"),
    (11, "BPF_PROG_GET_NEXT_ID"),
    (12, "BPF_MAP_GET_NEXT_ID"),
    (13, "BPF_PROG_GET_FD_BY_ID"),
    (14, "BPF_MAP_GET_FD_BY_ID"),
    (15, "BPF_OBJ_GET_INFO_BY_FD"),
    (16, "BPF_PROG_QUERY"),
    (17, "BPF_RAW_TRACEPOINT_OPEN"),
    (18, "BPF_BTF_LOAD"),
    (19, "BPF_BTF_GET_FD_BY_ID"),
    (20, "BPF_TASK_FD_QUERY"),
    (21, "BPF_MAP_LOOKUP_AND_DELETE_ELEM"),
    (22, "BPF_MAP_FREEZE"),
    (23, "BPF_BTF_GET_NEXT_ID"),
    (24, "BPF_MAP_LOOKUP_BATCH"),
    (25, "BPF_MAP_LOOKUP_AND_DELETE_BATCH"),
    (26, "BPF_MAP_UPDATE_BATCH"),
    (27, "BPF_MAP_DELETE_BATCH"),
    (28, "BPF_LINK_CREATE"),
    (29, "BPF_LINK_UPDATE"),
    (30, "BPF_LINK_GET_FD_BY_ID"),
    (31, "BPF_LINK_GET_NEXT_ID"),
    (32, "BPF_ENABLE_STATS"),
    (33, "BPF_ITER_CREATE"),
    (34, "BPF_LINK_DETACH"),
    (35, "BPF_PROG_BIND_MAP"),
    (36, "BPF_TOKEN_CREATE"),
];

pub(super) static PERF_TYPES: Table = &[
    (0, "PERF_TYPE_HARDWARE"),
    (1, "PERF_TYPE_SOFTWARE"),
    (2, "PERF_TYPE_TRACEPOINT"),
    (3, "PERF_TYPE_HW_CACHE"),
    (4, "PERF_TYPE_RAW"),
    (5, "PERF_TYPE_BREAKPOINT"),
];

pub(super) static PERF_FLAGS: Table = &[
    (0x1, "PERF_FLAG_FD_NO_GROUP"),
    (0x2, "PERF_FLAG_FD_OUTPUT"),
    (0x4, "PERF_FLAG_PID_CGROUP"),
    (0x8, "PERF_FLAG_FD_CLOEXEC"),
];

pub(super) static KEYCTL_OPS: Table = &[
    (0, "KEYCTL_GET_KEYRING_ID"),
    (1, "KEYCTL_JOIN_SESSION_KEYRING"),
    (2, "KEYCTL_UPDATE"),
    (3, "KEYCTL_REVOKE"),
    (4, "KEYCTL_CHOWN"),
    (5, "KEYCTL_SETPERM"),
    (6, "KEYCTL_DESCRIBE"),
    (7, "KEYCTL_CLEAR"),
    (8, "KEYCTL_LINK"),
    (9, "KEYCTL_UNLINK"),
    (10, "KEYCTL_SEARCH"),
    (11, "KEYCTL_READ"),
    (12, "KEYCTL_INSTANTIATE"),
    (13, "KEYCTL_NEGATE"),
    (14, "KEYCTL_SET_REQKEY_KEYRING"),
    (15, "KEYCTL_SET_TIMEOUT"),
    (16, "KEYCTL_ASSUME_AUTHORITY"),
    (17, "KEYCTL_GET_SECURITY"),
    (18, "KEYCTL_SESSION_TO_PARENT"),
    (19, "KEYCTL_REJECT"),
    (20, "KEYCTL_INSTANTIATE_IOV"),
    (21, "KEYCTL_INVALIDATE"),
    (22, "KEYCTL_GET_PERSISTENT"),
    (23, "KEYCTL_DH_COMPUTE"),
    (24, "KEYCTL_PKEY_QUERY"),
    (25, "KEYCTL_PKEY_ENCRYPT"),
    (26, "KEYCTL_PKEY_DECRYPT"),
    (27, "KEYCTL_PKEY_SIGN"),
    (28, "KEYCTL_PKEY_VERIFY"),
    (29, "KEYCTL_RESTRICT_KEYRING"),
    (30, "KEYCTL_MOVE"),
    (31, "KEYCTL_CAPABILITIES"),
    (32, "KEYCTL_WATCH_KEY"),
];

/// Special key serials (`KEY_SPEC_*`), as the kernel reads them (`int32`).
pub(super) static KEY_SPECS: &[(i32, &str)] = &[
    (-1, "KEY_SPEC_THREAD_KEYRING"),
    (-2, "KEY_SPEC_PROCESS_KEYRING"),
    (-3, "KEY_SPEC_SESSION_KEYRING"),
    (-4, "KEY_SPEC_USER_KEYRING"),
    (-5, "KEY_SPEC_USER_SESSION_KEYRING"),
    (-6, "KEY_SPEC_GROUP_KEYRING"),
    (-7, "KEY_SPEC_REQKEY_AUTH_KEY"),
    (-8, "KEY_SPEC_REQUESTOR_KEYRING"),
];

pub(super) static REBOOT_MAGIC: Table = &[
    (0xfee1_dead, "LINUX_REBOOT_MAGIC1"),
    (0x2812_1969, "LINUX_REBOOT_MAGIC2"),
    (0x0512_1996, "LINUX_REBOOT_MAGIC2A"),
    (0x1604_1998, "LINUX_REBOOT_MAGIC2B"),
    (0x2011_2000, "LINUX_REBOOT_MAGIC2C"),
];

pub(super) static REBOOT_COMMANDS: Table = &[
    (0x0123_4567, "LINUX_REBOOT_CMD_RESTART"),
    (0xCDEF_0123, "LINUX_REBOOT_CMD_HALT"),
    (0x89AB_CDEF, "LINUX_REBOOT_CMD_CAD_ON"),
    (0x0000_0000, "LINUX_REBOOT_CMD_CAD_OFF"),
    (0x4321_FEDC, "LINUX_REBOOT_CMD_POWER_OFF"),
    (0xA1B2_C3D4, "LINUX_REBOOT_CMD_RESTART2"),
    (0xD000_FCE2, "LINUX_REBOOT_CMD_SW_SUSPEND"),
    (0x4558_4543, "LINUX_REBOOT_CMD_KEXEC"),
];

pub(super) static SYSLOG_ACTIONS: Table = &[
    (0, "SYSLOG_ACTION_CLOSE"),
    (1, "SYSLOG_ACTION_OPEN"),
    (2, "SYSLOG_ACTION_READ"),
    (3, "SYSLOG_ACTION_READ_ALL"),
    (4, "SYSLOG_ACTION_READ_CLEAR"),
    (5, "SYSLOG_ACTION_CLEAR"),
    (6, "SYSLOG_ACTION_CONSOLE_OFF"),
    (7, "SYSLOG_ACTION_CONSOLE_ON"),
    (8, "SYSLOG_ACTION_CONSOLE_LEVEL"),
    (9, "SYSLOG_ACTION_SIZE_UNREAD"),
    (10, "SYSLOG_ACTION_SIZE_BUFFER"),
];

pub(super) static IOCTL_REQUESTS: Table = &[(libc::TIOCSTI, "TIOCSTI"), (libc::TIOCLINUX, "TIOCLINUX")];

pub(super) static FSOPEN_FLAGS: Table = &[(0x1, "FSOPEN_CLOEXEC")];

pub(super) static FSCONFIG_COMMANDS: Table = &[
    (0, "FSCONFIG_SET_FLAG"),
    (1, "FSCONFIG_SET_STRING"),
    (2, "FSCONFIG_SET_BINARY"),
    (3, "FSCONFIG_SET_PATH"),
    (4, "FSCONFIG_SET_PATH_EMPTY"),
    (5, "FSCONFIG_SET_FD"),
    (6, "FSCONFIG_CMD_CREATE"),
    (7, "FSCONFIG_CMD_RECONFIGURE"),
    (8, "FSCONFIG_CMD_CREATE_EXCL"),
];

pub(super) static FSMOUNT_FLAGS: Table = &[(0x1, "FSMOUNT_CLOEXEC")];

pub(super) static MOUNT_ATTRS: Table = &[
    (0x1, "MOUNT_ATTR_RDONLY"),
    (0x2, "MOUNT_ATTR_NOSUID"),
    (0x4, "MOUNT_ATTR_NODEV"),
    (0x8, "MOUNT_ATTR_NOEXEC"),
    (0x10, "MOUNT_ATTR_NOATIME"),
    (0x20, "MOUNT_ATTR_STRICTATIME"),
    (0x80, "MOUNT_ATTR_NODIRATIME"),
    (0x10_0000, "MOUNT_ATTR_IDMAP"),
    (0x20_0000, "MOUNT_ATTR_NOSYMFOLLOW"),
];

pub(super) static OPEN_TREE_FLAGS: Table = &[
    (0x1, "OPEN_TREE_CLONE"),
    (0x8_0000, "OPEN_TREE_CLOEXEC"),
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
];

pub(super) static FSPICK_FLAGS: Table = &[
    (0x1, "FSPICK_CLOEXEC"),
    (0x2, "FSPICK_SYMLINK_NOFOLLOW"),
    (0x4, "FSPICK_NO_AUTOMOUNT"),
    (0x8, "FSPICK_EMPTY_PATH"),
];

pub(super) static MOVE_MOUNT_FLAGS: Table = &[
    (0x1, "MOVE_MOUNT_F_SYMLINKS"),
    (0x2, "MOVE_MOUNT_F_AUTOMOUNTS"),
    (0x4, "MOVE_MOUNT_F_EMPTY_PATH"),
    (0x10, "MOVE_MOUNT_T_SYMLINKS"),
    (0x20, "MOVE_MOUNT_T_AUTOMOUNTS"),
    (0x40, "MOVE_MOUNT_T_EMPTY_PATH"),
    (0x100, "MOVE_MOUNT_SET_GROUP"),
    (0x200, "MOVE_MOUNT_BENEATH"),
];

pub(super) static AT_FLAGS: Table = &[
    (0x1, "AT_HANDLE_MNT_ID_UNIQUE"),
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x200, "AT_HANDLE_FID"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x8000, "AT_RECURSIVE"),
];

pub(super) static OPEN_FLAGS: Table = &[
    (0x1, "O_WRONLY"),
    (0x2, "O_RDWR"),
    (0x800, "O_NONBLOCK"),
    (0x1_0000, "O_DIRECTORY"),
    (0x2_0000, "O_NOFOLLOW"),
    (0x4_0000, "O_NOATIME"),
    (0x8_0000, "O_CLOEXEC"),
    (0x20_0000, "O_PATH"),
];

pub(super) static DELETE_MODULE_FLAGS: Table = &[(0x800, "O_NONBLOCK"), (0x200, "O_TRUNC")];

pub(super) static FINIT_MODULE_FLAGS: Table = &[
    (0x1, "MODULE_INIT_IGNORE_MODVERSIONS"),
    (0x2, "MODULE_INIT_IGNORE_VERMAGIC"),
    (0x4, "MODULE_INIT_COMPRESSED_FILE"),
];

pub(super) static KEXEC_FILE_FLAGS: Table = &[
    (0x1, "KEXEC_FILE_UNLOAD"),
    (0x2, "KEXEC_FILE_ON_CRASH"),
    (0x4, "KEXEC_FILE_NO_INITRAMFS"),
    (0x8, "KEXEC_FILE_DEBUG"),
];

pub(super) static SWAP_FLAGS: Table = &[
    (0x8000, "SWAP_FLAG_PREFER"),
    (0x1_0000, "SWAP_FLAG_DISCARD"),
];

pub(super) static USERFAULTFD_FLAGS: Table = &[
    (0x1, "UFFD_USER_MODE_ONLY"),
    (0x800, "O_NONBLOCK"),
    (0x8_0000, "O_CLOEXEC"),
];

pub(super) static IO_URING_ENTER_FLAGS: Table = &[
    (0x1, "IORING_ENTER_GETEVENTS"),
    (0x2, "IORING_ENTER_SQ_WAKEUP"),
    (0x4, "IORING_ENTER_SQ_WAIT"),
    (0x8, "IORING_ENTER_EXT_ARG"),
    (0x10, "IORING_ENTER_REGISTERED_RING"),
];

/// `a|b|0x40` for the bits of `v` named in `table`, the rest in hex; `0` for 0.
pub(super) fn flags(v: u64, table: Table) -> String {
    if v == 0 {
        return "0".to_owned();
    }
    let mut out = String::new();
    let mut rest = v;
    for &(bit, name) in table {
        if bit != 0 && rest & bit == bit {
            if !out.is_empty() {
                out.push('|');
            }
            out.push_str(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        if !out.is_empty() {
            out.push('|');
        }
        let _ = write!(out, "{rest:#x}");
    }
    out
}

/// The name of `v` in `table`, or the number.
pub(super) fn name(v: u64, table: Table) -> String {
    table
        .iter()
        .find(|&&(k, _)| k == v)
        .map_or_else(|| v.to_string(), |&(_, n)| n.to_owned())
}
