//! sbx's kernel programs. Built by `sbx/build.rs` for bpfel-unknown-none and
//! embedded in the `sbx` binary.
//!
//! The tracer (`sbx_sys_exit`, `sbx_exec`, `sbx_exit`)
//! reports the syscalls of the sandbox's process tree that fail with EACCES,
//! EPERM or EROFS (with their path or socket address), the renames and links
//! that fail with EBUSY or EXDEV (a protected mount's answer), the connects and
//! sends (sendto, sendmsg, sendmmsg) that fail with ENETUNREACH (traffic that bypassed the proxy: the
//! sandbox's network has only loopback), and the tree's execs and exits.
//! The tree is the sandbox's cgroup (v2): every task whose current cgroup
//! id is the one of the session the program runs for, so
//! fork, double fork and threads are
//! followed without bookkeeping and without races, and nothing else on the
//! host is ever reported.
//!
//! The programs are loaded once per boot and sbx version, pinned, and shared
//! by every session (`sbx/src/monitor/pins.rs`). A running session holds a
//! slot: `SLOTS[slot]` is its cgroup id, `RINGS[slot]` its ring buffer,
//! `STATS[slot]` its counters, and it attaches the programs through links
//! of its own whose cookie is the slot. A session's links close with it (a
//! crash included), so the programs run only while some session runs, and
//! each session's events go to its own ring only. Slots and their rings are
//! reused, so a session normally updates no map of maps (each such update
//! waits for an RCU grace period, ~15 ms here).
//!
//! tp_btf hooks only: this kernel refuses fentry/fexit (trampolines) to any
//! process but pid 1, and tp_btf is the cheaper syscall hook here. There are
//! no CO-RE relocations in Rust eBPF, so no kernel struct is walked except
//! `pt_regs`, whose x86_64 layout is ABI.
//!
//! The probes (`sbx_probe_*`) exist for `sbx doctor`: it loads and attaches
//! them for a moment to prove that tp_btf programs load and fire here, and
//! to report whether fexit programs are allowed.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, pt_regs},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user_str_bytes,
        generated as raw,
    },
    btf_maps::{ArrayOfMaps, RingBuf},
    macros::{btf_map, btf_tracepoint, fexit, map},
    maps::{Array, PerCpuArray},
    programs::{BtfTracePointContext, FExitContext},
};
use sbx_common::{
    ADDR_LEN, BASE_PART_LEN, BASE_PARTS, WAKE_BYTES, FLAG_ADDR, FLAG_BASE, FLAG_PATH, FLAG_PATH2, KIND_DENIAL, KIND_EXEC, KIND_EXIT, MAX_SESSIONS, RECORD_FULL, RECORD_PATH2,
    RECORD_SHORT, RawEvent, SessionStats, config, probe,
};

/// Hit counters of the doctor's probes, indexed by `sbx_common::probe::*`.
#[map]
static PROBE_HITS: Array<u64> = Array::with_max_entries(probe::SLOTS, 0);

/// Written by user space once, when it loads the programs: `sbx_common::config::*`.
#[map]
static CONFIG: Array<u64> = Array::with_max_entries(config::SLOTS, 0);

/// Each slot's ring buffer. The inner template's size is only a template:
/// each ring has the size its session asked for.
#[btf_map]
static RINGS: ArrayOfMaps<RingBuf<u8, 4096>, { MAX_SESSIONS as usize }> = ArrayOfMaps::new();

/// Each slot's session: its cgroup id, 0 for none.
#[map]
static SLOTS: Array<u64> = Array::with_max_entries(MAX_SESSIONS, 0);

/// Each slot's per-CPU event sequence numbers and count of records its ring
/// buffer had no room for.
#[map]
static STATS: PerCpuArray<SessionStats> = PerCpuArray::with_max_entries(MAX_SESSIONS, 0);

/// Per-CPU room where a record is written before its prefix in use goes
/// to the ring buffer (most records need a third of a whole one). One slot
/// per program (`kind - 1`): a program may be preempted on its CPU and
/// another one run there, but never itself (the kernel skips a program
/// that is already running on the CPU).
#[map]
static SCRATCH: PerCpuArray<RawEvent> = PerCpuArray::with_max_entries(3, 0);

const EPERM: i64 = 1;
const EACCES: i64 = 13;
/// What a rename onto, off or of a mount point gets: the sandbox's read-only islands and
/// their pins are mount points.
const EBUSY: i64 = 16;
/// What a hard link or a rename across mounts gets: into or out of a read-only island.
const EXDEV: i64 = 18;
const EROFS: i64 = 30;
/// What a connection to anything but loopback gets in the sandbox's network
/// namespace: a program that bypassed the proxy.
const ENETUNREACH: i64 = 101;

#[btf_tracepoint(function = "sched_process_fork")]
pub fn sbx_probe_fork(_ctx: BtfTracePointContext) -> i32 {
    bump(&PROBE_HITS, probe::FORK);
    0
}

#[fexit(function = "security_file_open")]
pub fn sbx_probe_file_open(_ctx: FExitContext) -> i32 {
    bump(&PROBE_HITS, probe::FILE_OPEN);
    0
}

fn bump(map: &Array<u64>, slot: u32) {
    if let Some(ptr) = map.get_ptr_mut(slot) {
        // SAFETY: the pointer comes from the kernel's map lookup and stays
        // valid for the program run. A lost increment under a race is
        // harmless: the doctor only asks whether the counter moved.
        unsafe { *ptr = (*ptr).wrapping_add(1) };
    }
}

/// The slot of the session this run of the program is attached for (its
/// link's cookie) and the session's cgroup id, when the current task is in
/// that cgroup;
/// `None` otherwise. The cgroup check is what keeps every other process on
/// the host, and every other session, out.
#[inline(always)]
fn traced<C: aya_ebpf::EbpfContext>(ctx: &C) -> Option<(u32, u64)> {
    // SAFETY: `ctx` is the program's own context.
    let slot = unsafe { raw::bpf_get_attach_cookie(ctx.as_ptr()) };
    if slot >= u64::from(MAX_SESSIONS) {
        return None;
    }
    let slot = slot as u32;
    let &target = SLOTS.get(slot)?;
    // SAFETY: the helper has no preconditions.
    (target != 0 && unsafe { bpf_get_current_cgroup_id() } == target).then_some((slot, target))
}

/// Which arguments of a syscall are paths: (path, second path). Index 6
/// means none. x86_64 numbers.
#[inline(always)]
fn path_args(nr: i64) -> (usize, usize) {
    match nr {
        // open, creat, stat, lstat, access, mkdir, rmdir, unlink, readlink,
        // chmod, chown, lchown, truncate, utime, utimes, mknod, execve, chdir,
        // chroot, statfs, *xattr on paths, uselib
        2 | 85 | 4 | 6 | 21 | 83 | 84 | 87 | 89 | 90 | 92 | 94 | 76 | 132 | 235 | 133 | 59 | 80 | 161 | 137
        | 188 | 189 | 191 | 192 | 194 | 195 | 197 | 198 | 134 => (0, 6),
        // openat, openat2, newfstatat, statx, faccessat, faccessat2, mkdirat,
        // unlinkat, readlinkat, fchmodat, fchmodat2, fchownat, utimensat,
        // futimesat, mknodat, execveat
        257 | 437 | 262 | 332 | 269 | 439 | 258 | 263 | 267 | 268 | 452 | 260 | 280 | 261 | 259 | 322 => (1, 6),
        // rename, link: (old, new) -> report the new name second
        82 | 86 => (0, 1),
        // renameat, renameat2, linkat: (olddirfd, old, newdirfd, new)
        264 | 316 | 265 => (1, 3),
        // symlink(target, linkpath), symlinkat(target, newdirfd, linkpath)
        88 => (1, 0),
        266 => (2, 0),
        _ => (6, 6),
    }
}

/// Which argument of syscall `nr` is a socket address, and which its length:
/// connect and bind (fd, addr, len), sendto (fd, buf, n, flags, addr, len).
/// sendmsg and sendmmsg (fd, msg, ...) give theirs inside the (first)
/// `struct msghdr`: (MSGHDR, MSGHDR). (6, 6) for none.
#[inline(always)]
fn addr_args(nr: i64) -> (usize, usize) {
    match nr {
        42 | 49 => (1, 2),
        44 => (4, 5),
        46 | 307 => (MSGHDR, MSGHDR),
        _ => (6, 6),
    }
}

/// [`addr_args`]' mark for an address inside the msghdr at argument 1.
const MSGHDR: usize = 7;

/// Which argument is the directory descriptor a relative path argument `p1`
/// of syscall `nr` is taken from; 6 for the working directory.
#[inline(always)]
fn dirfd_arg(nr: i64) -> usize {
    match nr {
        257 | 437 | 262 | 332 | 269 | 439 | 258 | 263 | 267 | 268 | 452 | 260 | 280 | 261 | 259 | 322 | 264
        | 316 | 265 => 0,
        266 => 1,
        _ => 6,
    }
}

#[inline(always)]
fn offset(slot: u32) -> u64 {
    CONFIG.get(slot).copied().unwrap_or(0)
}

/// Reads a kernel pointer at `addr`; 0 when it cannot be read.
#[inline(always)]
fn read_ptr(addr: u64) -> u64 {
    // SAFETY: the helper copes with any address.
    unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
}

const AT_FDCWD: i32 = -100;
/// `walk_from` when no walk is needed.
const NO_WALK: i64 = i64::MIN;

/// Fills `ev.base` with the components of the directory a relative path
/// is taken from (the task's working directory, or the directory of
/// descriptor `dirfd`), innermost first, up to the root of the task's
/// mount namespace, crossing mounts. Returns FLAG_BASE when the walk
/// reached that root within `BASE_PARTS` steps.
///
/// The steps run under `bpf_loop`, so the verifier checks one step
/// (`walk_step`) instead of the sixteen of an unrolled or bounded loop:
/// measured here, the sys_exit program then verifies in a few
/// milliseconds instead of about 40, most of the tracer's start-up.
#[inline(never)]
fn walk_base(ev: *mut RawEvent, dirfd: i32) -> u32 {
    if offset(config::OFFSETS_SET) == 0 {
        return 0;
    }
    // SAFETY: the helper has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let path = if dirfd == AT_FDCWD {
        read_ptr(task + offset(config::TASK_FS)) + offset(config::FS_PWD)
    } else {
        let files = read_ptr(task + offset(config::TASK_FILES));
        let fdt = read_ptr(files + offset(config::FILES_FDT));
        let max = read_ptr(fdt + offset(config::FDTABLE_MAX_FDS)) as u32;
        if dirfd < 0 || dirfd as u32 >= max {
            return 0;
        }
        let fds = read_ptr(fdt + offset(config::FDTABLE_FD));
        read_ptr(fds + dirfd as u64 * 8) + offset(config::FILE_PATH)
    };
    let vfsmnt = read_ptr(path + offset(config::PATH_MNT));
    let mut walk = Walk {
        ev,
        vfsmnt,
        dentry: read_ptr(path + offset(config::PATH_DENTRY)),
        mnt: vfsmnt.wrapping_sub(offset(config::MOUNT_MNT)),
        result: 0,
        _pad: 0,
    };
    // SAFETY: `walk_step` has the callback's signature and `walk` outlives
    // the call; bpf_loop runs the steps synchronously.
    unsafe {
        raw::bpf_loop(BASE_PARTS as u32, walk_step as *mut c_void, (&raw mut walk).cast(), 0);
    }
    walk.result
}

/// The base-directory walk's state between steps.
#[repr(C)]
struct Walk {
    ev: *mut RawEvent,
    vfsmnt: u64,
    dentry: u64,
    mnt: u64,
    result: u32,
    _pad: u32,
}

/// Step `i` of the walk: writes slot `i` (a name, or empty for a mount
/// crossing) and moves up; returns 1 (stop) at the namespace's root.
#[inline(never)]
extern "C" fn walk_step(i: u64, ctx: *mut c_void) -> i64 {
    let w = ctx.cast::<Walk>();
    let i = i as usize;
    if i >= BASE_PARTS {
        return 1;
    }
    // SAFETY: `ctx` is walk_base's `Walk`, whose `ev` is the caller's
    // reserved record; `i` is below BASE_PARTS, the slot count.
    unsafe {
        let ev = (*w).ev;
        let dentry = (*w).dentry;
        let mnt = (*w).mnt;
        let root = read_ptr((*w).vfsmnt + offset(config::VFSMOUNT_ROOT));
        let parent = read_ptr(dentry + offset(config::DENTRY_PARENT));
        let slot = (*ev).base[i].as_mut_ptr();
        if dentry == root || dentry == parent {
            let mnt_parent = read_ptr(mnt + offset(config::MOUNT_PARENT));
            if mnt_parent == mnt {
                (*ev).base_len = i as u32;
                (*w).result = FLAG_BASE;
                return 1;
            }
            *slot = 0;
            (*w).dentry = read_ptr(mnt + offset(config::MOUNT_MOUNTPOINT));
            (*w).mnt = mnt_parent;
            (*w).vfsmnt = mnt_parent + offset(config::MOUNT_MNT);
        } else {
            let name = read_ptr(dentry + offset(config::DENTRY_NAME));
            // The raw helper: it writes at most BASE_PART_LEN bytes at
            // `slot` and copes with any source address.
            if raw::bpf_probe_read_kernel_str(slot.cast(), BASE_PART_LEN as u32, name as *const _) < 0 {
                *slot = 0;
            }
            (*w).dentry = parent;
        }
    }
    0
}

/// The current task's parent's thread group id, through the struct offsets
/// from the kernel's BTF; 0 when they are not known.
#[inline(always)]
fn parent_tgid() -> u32 {
    if offset(config::OFFSETS_SET) == 0 {
        return 0;
    }
    // SAFETY: the helper has no preconditions.
    let task = unsafe { bpf_get_current_task() };
    let parent = read_ptr(task + offset(config::TASK_REAL_PARENT));
    if parent == 0 {
        return 0;
    }
    // SAFETY: the helper copes with any address.
    unsafe { bpf_probe_read_kernel((parent + offset(config::TASK_TGID)) as *const u32) }.unwrap_or(0)
}

#[inline(always)]
fn regs_args(regs: *const pt_regs) -> Option<(i64, [u64; 6])> {
    // SAFETY: `regs` is the tracepoint's pt_regs pointer; the helper copes
    // with any address.
    let r = unsafe { bpf_probe_read_kernel(regs) }.ok()?;
    Some((r.orig_rax as i64, [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9]))
}

/// Every syscall exit on the host passes here while a session runs, so the
/// common case (success, or an error other than EACCES/EPERM/EROFS) returns
/// after one comparison. The arguments are read from the saved user
/// registers, which still hold them at exit: no per-call stash at sys_enter
/// (measured: a hash update per call doubled the cost of a stat-heavy
/// workload), and calls that seccomp refused before sys_enter are seen too.
#[btf_tracepoint(function = "sys_exit")]
pub fn sbx_sys_exit(ctx: BtfTracePointContext) -> i32 {
    // sys_exit's arguments are (struct pt_regs *regs, long ret).
    let ret: i64 = ctx.arg(1);
    if ret != -EACCES && ret != -EPERM && ret != -EROFS && ret != -ENETUNREACH && ret != -EBUSY && ret != -EXDEV {
        return 0;
    }
    let Some(session) = traced(&ctx) else { return 0 };
    let regs: *const pt_regs = ctx.arg(0);
    if let Some((nr, args)) = regs_args(regs) {
        // ENETUNREACH is a denial only where the sandbox's network makes it
        // one: a connection or datagram to a non-loopback address.
        // EBUSY and EXDEV only from rename, renameat, renameat2, link and linkat: user
        // space keeps those that touch a protected path (a rename across filesystems is
        // EXDEV too, and no denial).
        let renames = matches!(nr, 82 | 86 | 264 | 265 | 316);
        let kept = match ret {
            r if r == -ENETUNREACH => addr_args(nr).0 != 6,
            r if r == -EBUSY || r == -EXDEV => renames,
            _ => true,
        };
        if kept {
            emit(session.0, session.1, KIND_DENIAL, nr, ret, args, 0);
        }
    }
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sbx_exec(ctx: BtfTracePointContext) -> i32 {
    if let Some(session) = traced(&ctx) {
        emit(session.0, session.1, KIND_EXEC, 0, 0, [0; 6], 0);
    }
    0
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sbx_exit(ctx: BtfTracePointContext) -> i32 {
    if let Some(session) = traced(&ctx) {
        let id = bpf_get_current_pid_tgid();
        // Only the thread group's leader: one event per process.
        if id as u32 == (id >> 32) as u32 {
            emit(session.0, session.1, KIND_EXIT, 0, 0, [0; 6], 0);
        }
    }
    0
}

#[inline(always)]
fn emit(session: u32, cgroup: u64, kind: u32, nr: i64, ret: i64, args: [u64; 6], mut flags: u32) {
    // An unregistered session (gone, or not yet registered) has no ring.
    let Some(stats) = STATS.get_ptr_mut(session) else { return };
    // SAFETY: per-CPU value from the map lookup; the program runs with
    // migration disabled, so this CPU's value is ours for the run.
    let seq = unsafe {
        let s = (*stats).seq;
        (*stats).seq = s + 1;
        s
    };
    let Some(ev) = SCRATCH.get_ptr_mut(kind - 1) else { return };
    let id = bpf_get_current_pid_tgid();
    // SAFETY: `ev` is this CPU's scratch record (the program runs with
    // migration disabled); every field of the prefix sent is written
    // first (the paths only when their flag says so).
    unsafe {
        (*ev).kind = kind;
        (*ev).cpu = bpf_get_smp_processor_id();
        (*ev).seq = seq;
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).pid = (id >> 32) as u32;
        (*ev).tid = id as u32;
        (*ev).syscall_nr = nr;
        (*ev).ret = ret;
        (*ev).args = args;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0; 16]);
        (*ev).base_len = 0;
        (*ev)._pad = 0;
        (*ev).session = cgroup;
        // The base-directory walk runs last, once `flags` is stored, so
        // that only `ev` and the dirfd are live across the call: the
        // verifier then checks the walk for a handful of states, not for
        // every path through the argument decoding.
        let mut walk_from: i64 = NO_WALK;
        if kind == KIND_DENIAL {
            let (p1, p2) = path_args(nr);
            if p1 < 6 && bpf_probe_read_user_str_bytes(args[p1] as *const u8, &mut (*ev).path).is_ok() {
                flags |= FLAG_PATH;
                if (*ev).path[0] != b'/' {
                    let d = dirfd_arg(nr);
                    walk_from = if d < 6 { i64::from(args[d] as i32) } else { i64::from(AT_FDCWD) };
                }
            }
            if p2 < 6 && bpf_probe_read_user_str_bytes(args[p2] as *const u8, &mut (*ev).path2).is_ok() {
                flags |= FLAG_PATH2;
            }
            // (address, its length) from the arguments, or from the msghdr's
            // first two fields (msg_name, msg_namelen); the length then takes
            // args[5]'s place in the record (sendmsg has three arguments,
            // sendmmsg four), where user space looks for it.
            let (a, l) = addr_args(nr);
            let addr = if a < 6 && l < 6 {
                Some((args[a], args[l]))
            } else if a == MSGHDR {
                let mut head = [0u64; 2];
                if raw::bpf_probe_read_user(head.as_mut_ptr().cast::<c_void>(), 16, args[1] as *const c_void) == 0 {
                    (*ev).args[5] = head[1] & 0xffff_ffff;
                    Some((head[0], head[1]))
                } else {
                    None
                }
            } else {
                None
            };
            if let Some((ptr, len)) = addr {
                // The address's own length, at most ADDR_LEN, and masked so
                // that the verifier sees the bound.
                let len = (len as u32).min(ADDR_LEN as u32) & 0x7f;
                if len >= 2 && ptr != 0 && raw::bpf_probe_read_user((*ev).path.as_mut_ptr().cast::<c_void>(), len, ptr as *const c_void) == 0 {
                    flags |= FLAG_ADDR;
                }
            }
        }
        (*ev).flags = flags;
        (*ev).ppid = if kind == KIND_EXEC { parent_tgid() } else { 0 };
        if walk_from != NO_WALK {
            (*ev).flags |= walk_base(ev, walk_from as i32);
        }
        let flags = (*ev).flags;
        let size = if flags & FLAG_BASE != 0 {
            RECORD_FULL
        } else if flags & FLAG_PATH2 != 0 {
            RECORD_PATH2
        } else {
            RECORD_SHORT
        };
        // User space is woken once WAKE_BYTES are waiting, not for every
        // record: a wake-up per record cost the traced program more than
        // the record itself. Below that, user space drains on its own
        // clock (every DRAIN_INTERVAL_MS).
        // The lookup only reads the map; the inner map it returns stays
        // valid for the program run (RCU), even if the session unregisters
        // meanwhile.
        let Some(ring) = RINGS.get(session) else { return };
        let events = (ring as *const RingBuf<u8, 4096>).cast_mut().cast();
        let wake = if raw::bpf_ringbuf_query(events, u64::from(BPF_RB_AVAIL_DATA)) >= WAKE_BYTES {
            BPF_RB_FORCE_WAKEUP
        } else {
            BPF_RB_NO_WAKEUP
        };
        // SAFETY: the map pointer is the session's ring, and `size` bytes of
        // the scratch record are readable.
        if raw::bpf_ringbuf_output(events, ev.cast(), size as u64, u64::from(wake)) != 0 {
            (*stats).lost += 1;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

/// GPL-compatible so that GPL-only helpers are available.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
