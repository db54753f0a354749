//! Decoding, after the answer: a captured call as a C-like call with named flags and
//! fields ([`SeccompDenial`]).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::*;
use crate::syscalls::SYS_OPEN_TREE_ATTR;

/// A string as C source would show it, with `...` when truncated.
pub(super) fn quote(bytes: &[u8], truncated: bool) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    if truncated {
        out.push_str("...");
    }
    out
}

/// A path made absolute against `base` (a cwd or dirfd link), dropping `.` components.
pub(super) fn resolve(requested: &[u8], base: Option<&Path>) -> Option<PathBuf> {
    let req = Path::new(OsStr::from_bytes(requested));
    let full = if req.is_absolute() {
        req.to_path_buf()
    } else {
        let base = base.filter(|b| b.is_absolute())?;
        if requested.is_empty() {
            base.to_path_buf()
        } else {
            base.join(req)
        }
    };
    Some(
        full.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect(),
    )
}

/// Builds one [`SeccompDenial`] from a [`Captured`].
pub(super) struct Decoder<'a> {
    pub(super) c: &'a Captured,
    pub(super) detail: Vec<(&'static str, String)>,
    pub(super) path: Option<PathBuf>,
    pub(super) requested_path: Option<String>,
}

impl Decoder<'_> {
    fn arg(&self, i: usize) -> u64 {
        self.c.args[i]
    }

    fn push(&mut self, key: &'static str, value: String) {
        self.detail.push((key, value));
    }

    /// A string argument, quoted (`NULL`, or the pointer if unreadable); also in `detail`.
    fn string(&mut self, i: usize, key: &'static str) -> String {
        let shown = match &self.c.data[i] {
            ArgData::Text(Text::Read { bytes, truncated }) => quote(bytes, *truncated),
            ArgData::Text(Text::Null) => "NULL".to_owned(),
            _ if self.arg(i) == 0 => "NULL".to_owned(),
            _ => format!("{:#x}", self.arg(i)),
        };
        self.push(key, shown.clone());
        shown
    }

    /// A path argument; its absolute form goes to `detail` as `resolved_key`. The one asked
    /// for with `main` fills `path`/`requested_path`.
    fn path(
        &mut self,
        i: usize,
        key: &'static str,
        resolved_key: &'static str,
        main: bool,
    ) -> String {
        let shown = self.string(i, key);
        let ArgData::Text(Text::Read { bytes, truncated }) = &self.c.data[i] else {
            return shown;
        };
        let base = match self.c.kinds[i] {
            Kind::Path(Some(d)) if fd_arg(self.arg(d)) != libc::AT_FDCWD => match &self.c.data[d] {
                ArgData::Link(link) => link.as_deref(),
                _ => None,
            },
            _ => self.c.cwd.as_deref(),
        };
        let resolved = if *truncated {
            None
        } else {
            resolve(bytes, base)
        };
        if let Some(resolved) = &resolved {
            self.push(resolved_key, resolved.display().to_string());
        }
        if main && self.requested_path.is_none() {
            self.requested_path = Some(String::from_utf8_lossy(bytes).into_owned());
            self.path = resolved;
        }
        shown
    }

    /// An fd argument as a number; its link goes to `detail`.
    fn fd(&mut self, i: usize, key: &'static str) -> String {
        let fd = fd_arg(self.arg(i));
        let link = match &self.c.data[i] {
            ArgData::Link(link) | ArgData::PidFd { link, .. } => link.as_deref(),
            _ => None,
        };
        match link {
            Some(link) => self.push(key, format!("{fd} ({})", link.display())),
            None => self.push(key, fd.to_string()),
        }
        fd.to_string()
    }

    /// An fd argument that names a file: also fills `path` when nothing else did.
    fn file_fd(&mut self, i: usize, key: &'static str) -> String {
        let shown = self.fd(i, key);
        if self.path.is_none()
            && let ArgData::Link(Some(link)) = &self.c.data[i]
            && link.is_absolute()
        {
            self.path = Some(link.clone());
        }
        shown
    }

    /// A dirfd argument: `AT_FDCWD` or the fd.
    fn dirfd(&mut self, i: usize, key: &'static str) -> String {
        if fd_arg(self.arg(i)) == libc::AT_FDCWD {
            self.push(key, "AT_FDCWD".to_owned());
            "AT_FDCWD".to_owned()
        } else {
            self.fd(i, key)
        }
    }

    fn flags(&mut self, i: usize, key: &'static str, table: Table) -> String {
        let shown = flags(self.arg(i), table);
        self.push(key, shown.clone());
        shown
    }

    /// A 32-bit flags argument (the kernel reads an `unsigned int`).
    fn flags32(&mut self, i: usize, key: &'static str, table: Table) -> String {
        let shown = flags(self.arg(i) & 0xffff_ffff, table);
        self.push(key, shown.clone());
        shown
    }

    fn named(&mut self, i: usize, key: &'static str, table: Table) -> String {
        let shown = name(self.arg(i), table);
        self.push(key, shown.clone());
        shown
    }

    fn int(&mut self, i: usize, key: &'static str) -> String {
        let shown = (self.arg(i) as i64).to_string();
        self.push(key, shown.clone());
        shown
    }

    fn int32(&mut self, i: usize, key: &'static str) -> String {
        let shown = fd_arg(self.arg(i)).to_string();
        self.push(key, shown.clone());
        shown
    }

    fn hex(&mut self, i: usize, key: &'static str) -> String {
        let shown = format!("{:#x}", self.arg(i));
        self.push(key, shown.clone());
        shown
    }

    fn key_serial(&mut self, i: usize, key: &'static str) -> String {
        let v = fd_arg(self.arg(i));
        let shown = KEY_SPECS
            .iter()
            .find(|&&(k, _)| k == v)
            .map_or_else(|| v.to_string(), |&(_, n)| n.to_owned());
        self.push(key, shown.clone());
        shown
    }

    /// A pid argument in the caller's pid namespace: `N [comm]` when it can be found.
    fn pid(&mut self, i: usize, key: &'static str) -> String {
        let ns_pid = fd_arg(self.arg(i));
        self.push(key, ns_pid.to_string());
        let target = match &self.c.data[i] {
            ArgData::Pid(target) => target.clone(),
            _ => None,
        };
        self.target(target.as_ref(), ns_pid.to_string())
    }

    /// Adds the host pid and comm of a target process to `detail`; `shown [comm]`.
    fn target(&mut self, target: Option<&Target>, shown: String) -> String {
        let Some(target) = target else {
            return shown;
        };
        self.push("target_host_pid", target.host_pid.to_string());
        match &target.comm {
            Some(comm) => {
                self.push("target_comm", comm.clone());
                format!("{shown} [{comm}]")
            }
            None => shown,
        }
    }

    fn bytes(&self, i: usize) -> Option<&[u8]> {
        match &self.c.data[i] {
            ArgData::Bytes(Some(b)) => Some(b),
            _ => None,
        }
    }

    fn u32_at(&self, i: usize, off: usize) -> Option<u32> {
        let b = self.bytes(i)?.get(off..off + 4)?;
        Some(u32::from_ne_bytes(b.try_into().ok()?))
    }

    fn u64_at(&self, i: usize, off: usize) -> Option<u64> {
        let b = self.bytes(i)?.get(off..off + 8)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }
}

pub(super) fn call(name: &str, args: &[String]) -> String {
    format!("{name}({})", args.join(", "))
}

pub(super) fn decode(c: &Captured) -> SeccompDenial {
    let syscall = if c.native {
        syscalls::syscall_name(c.nr).unwrap_or("unknown")
    } else {
        "unknown"
    };
    let mut d = Decoder {
        c,
        detail: Vec::new(),
        path: None,
        requested_path: None,
    };
    let summary = if c.native {
        decode_args(&mut d, syscall)
    } else {
        generic(&mut d, syscall)
    };
    // The entry whose condition these arguments meet (socket has several).
    if let Some(reason) = syscalls::blocked()
        .iter()
        .chain(syscalls::UNIX_SOCKETS)
        .chain(syscalls::MEDIATED_UNIX_SOCKETS)
        .find(|b| b.nr == c.nr && b.condition.matches(&c.args))
        .map(|b| b.reason)
    {
        d.push("reason", reason.to_owned());
    }
    SeccompDenial {
        pid: c.pid,
        syscall_nr: c.nr,
        syscall,
        summary,
        detail: d.detail,
        path: d.path,
        requested_path: d.requested_path,
        comm: c.comm.clone(),
        command: None,
    }
}

pub(super) fn generic(d: &mut Decoder<'_>, syscall: &str) -> String {
    const KEYS: [&str; 6] = ["arg0", "arg1", "arg2", "arg3", "arg4", "arg5"];
    let args: Vec<String> = (0..6).map(|i| d.hex(i, KEYS[i])).collect();
    call(syscall, &args)
}

pub(super) fn decode_args(d: &mut Decoder<'_>, syscall: &str) -> String {
    let nr = d.c.nr;
    let a = d.c.args;
    let s = syscall;
    match nr {
        libc::SYS_mount => {
            let src = d.string(0, "source");
            let target = d.path(1, "target", "resolved", true);
            let fstype = d.string(2, "fstype");
            let mut raw = a[3];
            let magic = raw & 0xffff_0000 == 0xC0ED_0000;
            if magic {
                raw &= 0xffff;
            }
            let mut fl = flags(raw, MOUNT_FLAGS);
            if magic {
                fl = format!("MS_MGC_VAL|{fl}");
            }
            d.push("flags", fl.clone());
            let data = d.string(4, "data");
            call(s, &[src, target, fstype, fl, data])
        }
        libc::SYS_umount2 => {
            let target = d.path(0, "target", "resolved", true);
            let fl = d.flags(1, "flags", UMOUNT_FLAGS);
            call(s, &[target, fl])
        }
        libc::SYS_pivot_root => {
            let new = d.path(0, "new_root", "resolved", true);
            let old = d.path(1, "put_old", "put_old_resolved", false);
            call(s, &[new, old])
        }
        libc::SYS_swapon => {
            let p = d.path(0, "path", "resolved", true);
            let fl = d.flags(1, "flags", SWAP_FLAGS);
            call(s, &[p, fl])
        }
        libc::SYS_swapoff | libc::SYS_acct => {
            let p = d.path(0, "path", "resolved", true);
            call(s, &[p])
        }
        libc::SYS_init_module => {
            let image = d.hex(0, "image");
            let len = d.int(1, "len");
            let params = d.string(2, "params");
            call(s, &[image, len, params])
        }
        libc::SYS_finit_module => {
            let fd = d.file_fd(0, "fd");
            let params = d.string(1, "params");
            let fl = d.flags(2, "flags", FINIT_MODULE_FLAGS);
            call(s, &[fd, params, fl])
        }
        libc::SYS_delete_module => {
            let name = d.string(0, "name");
            let fl = d.flags(1, "flags", DELETE_MODULE_FLAGS);
            call(s, &[name, fl])
        }
        libc::SYS_kexec_load => {
            let entry = d.hex(0, "entry");
            let n = d.int(1, "nr_segments");
            let segs = d.hex(2, "segments");
            let fl = d.hex(3, "flags");
            call(s, &[entry, n, segs, fl])
        }
        libc::SYS_kexec_file_load => {
            let kernel = d.file_fd(0, "kernel_fd");
            let initrd = d.fd(1, "initrd_fd");
            let len = d.int(2, "cmdline_len");
            let cmdline = d.string(3, "cmdline");
            let fl = d.flags(4, "flags", KEXEC_FILE_FLAGS);
            call(s, &[kernel, initrd, len, cmdline, fl])
        }
        libc::SYS_unshare => {
            let fl = d.flags32(0, "flags", UNSHARE_FLAGS);
            call(s, &[fl])
        }
        libc::SYS_clone => {
            // CLONE_NEWTIME's bit is the exit signal's byte in clone(2).
            let v = a[0] & 0xffff_ffff;
            let fl = flags(v, &NS_FLAGS[..NS_FLAGS.len() - 1]);
            d.push("flags", fl.clone());
            d.hex(1, "stack");
            d.hex(2, "parent_tid");
            d.hex(3, "child_tid");
            d.hex(4, "tls");
            call(s, &[fl, "...".to_owned()])
        }
        libc::SYS_setns => {
            let fd = d.fd(0, "fd");
            let nstype = d.flags32(1, "nstype", NS_FLAGS);
            call(s, &[fd, nstype])
        }
        libc::SYS_ptrace => {
            let req = d.named(0, "request", PTRACE_REQUESTS);
            if a[0] == 0 {
                return call(s, &[req]);
            }
            let pid = d.pid(1, "pid");
            d.hex(2, "addr");
            d.hex(3, "data");
            let mut args = vec![req, pid];
            if a[2] != 0 || a[3] != 0 {
                args.push("...".to_owned());
            }
            call(s, &args)
        }
        libc::SYS_process_vm_readv | libc::SYS_process_vm_writev => {
            let pid = d.pid(0, "pid");
            d.hex(1, "local_iov");
            d.int(2, "liovcnt");
            d.hex(3, "remote_iov");
            d.int(4, "riovcnt");
            d.hex(5, "flags");
            call(s, &[pid, "...".to_owned()])
        }
        libc::SYS_pidfd_getfd => {
            let pidfd = d.fd(0, "pidfd");
            if let ArgData::PidFd { target, .. } = &d.c.data[0] {
                d.target(target.as_ref(), String::new());
            }
            let targetfd = d.int32(1, "targetfd");
            let fl = d.hex(2, "flags");
            call(s, &[pidfd, targetfd, fl])
        }
        libc::SYS_socket | libc::SYS_socketpair => {
            let family = d.named(0, "domain", ADDRESS_FAMILIES);
            let t = a[1] & 0xffff_ffff;
            let mut ty = name(t & 0xf, SOCKET_TYPES);
            if t & !0xf != 0 {
                ty = format!("{ty}|{}", flags(t & !0xf, SOCKET_TYPE_FLAGS));
            }
            d.push("type", ty.clone());
            let proto = d.int32(2, "protocol");
            if nr == libc::SYS_socketpair {
                call(s, &[family, ty, proto, "...".to_owned()])
            } else {
                call(s, &[family, ty, proto])
            }
        }
        libc::SYS_ioctl => {
            let fd = d.file_fd(0, "fd");
            let req_v = a[1] & 0xffff_ffff;
            let req = name(req_v, IOCTL_REQUESTS);
            let req = if req_v > 0xff && req.parse::<u64>().is_ok() {
                format!("{req_v:#x}")
            } else {
                req
            };
            d.push("request", req.clone());
            if let Some(b) = d.bytes(2).and_then(|b| b.first().copied()) {
                if req_v == libc::TIOCSTI {
                    d.push("char", quote(&[b], false));
                } else {
                    d.push("subcode", b.to_string());
                }
            }
            call(s, &[fd, req])
        }
        libc::SYS_bpf => {
            let cmd = d.named(0, "cmd", BPF_COMMANDS);
            d.hex(1, "attr");
            d.int(2, "size");
            let key = match a[0] {
                0 => Some("map_type"),
                5 => Some("prog_type"),
                _ => None,
            };
            if let (Some(key), Some(v)) = (key, d.u32_at(1, 0)) {
                d.push(key, v.to_string());
            }
            call(s, &[cmd, "...".to_owned()])
        }
        libc::SYS_perf_event_open => {
            let attr = match (d.u32_at(0, 0), d.u64_at(0, 8)) {
                (Some(ty), Some(config)) => {
                    let ty = name(u64::from(ty), PERF_TYPES);
                    d.push("type", ty.clone());
                    d.push("config", format!("{config:#x}"));
                    format!("{{type={ty}, config={config:#x}}}")
                }
                _ => d.hex(0, "attr"),
            };
            let pid = d.int32(1, "pid");
            let cpu = d.int32(2, "cpu");
            let group = d.int32(3, "group_fd");
            let fl = d.flags(4, "flags", PERF_FLAGS);
            call(s, &[attr, pid, cpu, group, fl])
        }
        libc::SYS_keyctl => {
            let op = d.named(0, "operation", KEYCTL_OPS);
            match a[0] {
                KEYCTL_JOIN_SESSION_KEYRING => {
                    let name = d.string(1, "name");
                    return call(s, &[op, name]);
                }
                KEYCTL_SEARCH => {
                    let keyring = d.key_serial(1, "keyring");
                    let ty = d.string(2, "type");
                    let desc = d.string(3, "description");
                    return call(s, &[op, keyring, ty, desc, "...".to_owned()]);
                }
                _ => {
                    d.key_serial(1, "arg2");
                    d.hex(2, "arg3");
                    d.hex(3, "arg4");
                    d.hex(4, "arg5");
                }
            }
            call(s, &[op, "...".to_owned()])
        }
        libc::SYS_add_key => {
            let ty = d.string(0, "type");
            let desc = d.string(1, "description");
            d.int(3, "plen");
            d.key_serial(4, "keyring");
            call(s, &[ty, desc, "...".to_owned()])
        }
        libc::SYS_request_key => {
            let ty = d.string(0, "type");
            let desc = d.string(1, "description");
            d.string(2, "callout_info");
            d.key_serial(3, "dest_keyring");
            call(s, &[ty, desc, "...".to_owned()])
        }
        libc::SYS_io_uring_setup => {
            let entries = d.int(0, "entries");
            d.hex(1, "params");
            call(s, &[entries, "...".to_owned()])
        }
        libc::SYS_io_uring_enter => {
            let fd = d.fd(0, "fd");
            let submit = d.int(1, "to_submit");
            let min = d.int(2, "min_complete");
            let fl = d.flags(3, "flags", IO_URING_ENTER_FLAGS);
            call(s, &[fd, submit, min, fl, "...".to_owned()])
        }
        libc::SYS_io_uring_register => {
            let fd = d.fd(0, "fd");
            let op = d.int(1, "opcode");
            d.hex(2, "arg");
            d.int(3, "nr_args");
            call(s, &[fd, op, "...".to_owned()])
        }
        libc::SYS_userfaultfd => {
            let fl = d.flags(0, "flags", USERFAULTFD_FLAGS);
            call(s, &[fl])
        }
        libc::SYS_open_by_handle_at => {
            let fd = d.file_fd(0, "mount_fd");
            d.hex(1, "handle");
            let fl = d.flags(2, "flags", OPEN_FLAGS);
            call(s, &[fd, "...".to_owned(), fl])
        }
        libc::SYS_name_to_handle_at => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(4, "flags", AT_FLAGS);
            call(s, &[dirfd, p, "...".to_owned(), "...".to_owned(), fl])
        }
        libc::SYS_reboot => {
            let m1 = d.named(0, "magic1", REBOOT_MAGIC);
            let m2 = d.named(1, "magic2", REBOOT_MAGIC);
            let cmd = name(a[2] & 0xffff_ffff, REBOOT_COMMANDS);
            d.push("cmd", cmd.clone());
            let mut args = vec![m1, m2, cmd];
            if a[2] & 0xffff_ffff == LINUX_REBOOT_CMD_RESTART2 {
                args.push(d.string(3, "arg"));
            }
            call(s, &args)
        }
        libc::SYS_syslog => {
            let action = d.named(0, "action", SYSLOG_ACTIONS);
            d.hex(1, "buf");
            let len = d.int32(2, "len");
            call(s, &[action, "...".to_owned(), len])
        }
        libc::SYS_personality => {
            let p = format!("{:#x}", a[0] & 0xffff_ffff);
            d.push("persona", p.clone());
            call(s, &[p])
        }
        #[cfg(target_arch = "x86_64")]
        libc::SYS_ioperm => {
            let from = d.hex(0, "from");
            let num = d.int(1, "num");
            let on = d.int(2, "turn_on");
            call(s, &[from, num, on])
        }
        #[cfg(target_arch = "x86_64")]
        libc::SYS_iopl => {
            let level = d.int(0, "level");
            call(s, &[level])
        }
        libc::SYS_fsopen => {
            let fs = d.string(0, "fsname");
            let fl = d.flags(1, "flags", FSOPEN_FLAGS);
            call(s, &[fs, fl])
        }
        libc::SYS_fsconfig => {
            let fd = d.fd(0, "fd");
            let cmd = d.named(1, "cmd", FSCONFIG_COMMANDS);
            let key = if a[1] <= FSCONFIG_SET_FD {
                d.string(2, "key")
            } else {
                "NULL".to_owned()
            };
            let value = match a[1] {
                FSCONFIG_SET_STRING => d.string(3, "value"),
                FSCONFIG_SET_PATH | FSCONFIG_SET_PATH_EMPTY => d.path(3, "value", "resolved", true),
                FSCONFIG_SET_BINARY => d.hex(3, "value"),
                _ if a[3] == 0 => "NULL".to_owned(),
                _ => d.hex(3, "value"),
            };
            let aux = match a[1] {
                FSCONFIG_SET_PATH | FSCONFIG_SET_PATH_EMPTY => d.dirfd(4, "aux"),
                FSCONFIG_SET_FD => d.fd(4, "aux"),
                FSCONFIG_SET_FLAG => d.int32(4, "aux"),
                _ => d.int32(4, "aux"),
            };
            call(s, &[fd, cmd, key, value, aux])
        }
        libc::SYS_fsmount => {
            let fd = d.fd(0, "fs_fd");
            let fl = d.flags(1, "flags", FSMOUNT_FLAGS);
            let attrs = d.flags(2, "attr_flags", MOUNT_ATTRS);
            call(s, &[fd, fl, attrs])
        }
        libc::SYS_fspick => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", FSPICK_FLAGS);
            call(s, &[dirfd, p, fl])
        }
        libc::SYS_open_tree => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", OPEN_TREE_FLAGS);
            call(s, &[dirfd, p, fl])
        }
        SYS_OPEN_TREE_ATTR => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", OPEN_TREE_FLAGS);
            d.hex(3, "attr");
            let size = d.int(4, "size");
            call(s, &[dirfd, p, fl, "...".to_owned(), size])
        }
        libc::SYS_mount_setattr => {
            let dirfd = d.dirfd(0, "dirfd");
            let p = d.path(1, "path", "resolved", true);
            let fl = d.flags(2, "flags", OPEN_TREE_FLAGS);
            let attr = match (d.u64_at(3, 0), d.u64_at(3, 8), d.u64_at(3, 16)) {
                (Some(set), Some(clr), Some(prop)) => {
                    let set = flags(set, MOUNT_ATTRS);
                    let clr = flags(clr, MOUNT_ATTRS);
                    let prop = name(prop, MOUNT_FLAGS);
                    d.push("attr_set", set.clone());
                    d.push("attr_clr", clr.clone());
                    d.push("propagation", prop.clone());
                    format!("{{attr_set={set}, attr_clr={clr}, propagation={prop}}}")
                }
                _ => d.hex(3, "attr"),
            };
            let size = d.int(4, "size");
            call(s, &[dirfd, p, fl, attr, size])
        }
        libc::SYS_move_mount => {
            let from_dirfd = d.dirfd(0, "from_dirfd");
            let from = d.path(1, "from_path", "from_resolved", false);
            let to_dirfd = d.dirfd(2, "to_dirfd");
            let to = d.path(3, "to_path", "resolved", true);
            let fl = d.flags(4, "flags", MOVE_MOUNT_FLAGS);
            call(s, &[from_dirfd, from, to_dirfd, to, fl])
        }
        libc::SYS_quotactl => {
            let cmd = d.hex(0, "cmd");
            let special = d.path(1, "special", "resolved", true);
            let id = d.int32(2, "id");
            d.hex(3, "addr");
            call(s, &[cmd, special, id, "...".to_owned()])
        }
        libc::SYS_quotactl_fd => {
            let fd = d.file_fd(0, "fd");
            let cmd = d.hex(1, "cmd");
            let id = d.int32(2, "id");
            d.hex(3, "addr");
            call(s, &[fd, cmd, id, "...".to_owned()])
        }
        libc::SYS_lookup_dcookie => {
            let cookie = d.hex(0, "cookie");
            d.hex(1, "buf");
            let len = d.int(2, "len");
            call(s, &[cookie, "...".to_owned(), len])
        }
        _ => generic(d, syscall),
    }
}
