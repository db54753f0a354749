//! The sandboxed command's seccomp filter: the table of blocked syscalls, its compilation to
//! classic BPF (arch/x32 prologue, choice of deny action) and its installation in stage 2.
//!
//! # Shape of the filter
//!
//! The filter is a deny list with a default of ALLOW: every syscall that is not in [`blocked()`]
//! passes. The program is our own prologue followed by the program that `seccompiler` builds
//! from the table (see [`prologue`] for the exact instructions):
//!
//! 1. `arch != AUDIT_ARCH_<native>` → `SECCOMP_RET_KILL_PROCESS`. A foreign ABI (i386 through
//!    `int 0x80`, arm32 compat) has different syscall numbers, so a deny list keyed on native
//!    numbers means nothing for it.
//! 2. x86_64 only: `nr >= 0x4000_0000` (the x32 bit, `__X32_SYSCALL_BIT`) →
//!    `SECCOMP_RET_KILL_PROCESS`, except `nr == -1`. x32 shares `AUDIT_ARCH_X86_64`, so the arch
//!    check cannot see it, and `seccompiler` matches exact numbers only: without this check
//!    `0x4000_0000 | SYS_mount` would get past every rule on a kernel built with x32. We kill
//!    rather than return an errno because no x86_64 program makes x32 calls by accident, and a
//!    foreign-ABI call is treated the same way. `nr == -1` is let through (the kernel answers
//!    it with ENOSYS) as libseccomp does: tracers use it to skip a syscall.
//! 3. `nr == clone3` → `ERRNO(ENOSYS)`. clone3 takes its flags in a `struct clone_args` in
//!    memory, which seccomp cannot read, so namespace flags cannot be filtered there. ENOSYS
//!    makes glibc (pthread_create, posix_spawn, fork) fall back to clone(2), whose flags are in
//!    a register and are filtered. Flatpak, Chromium and systemd-nspawn do the same. clone3 is
//!    never notified: user space must see a plain ENOSYS to take the fallback.
//! 4. `seccompiler`'s program for the other entries, with its own (redundant) arch check at the
//!    start. Its match action is `ERRNO(`[`DENY_SENTINEL`]`)`, rewritten afterwards into the
//!    chosen [`DenyAction`]: `ERRNO(EPERM)` or `SECCOMP_RET_USER_NOTIF` (seccompiler 0.5 has no
//!    user-notif action).
//!
//! # Stacked filters and user notification
//!
//! * When several filters are stacked (bwrap's own `--seccomp`, a parent's filter, this one),
//!   the kernel runs all of them and takes the action with the highest precedence:
//!   KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW. An ERRNO for
//!   a syscall in any stacked filter therefore beats USER_NOTIF in another: such a denial is
//!   never notified and has to be reported some other way.
//! * A notified syscall blocks until the supervisor answers on the listener fd. The process that
//!   installs the filter must still hand the listener fd to the supervisor (sendmsg over a unix
//!   socket, or write on a pipe): those syscalls must never be notified, or the process waits
//!   for an answer from a supervisor that cannot have the fd yet. They are not in the table;
//!   keep it that way. If the listener is closed, notified syscalls fail with ENOSYS.
//! * The listener fd is close-on-exec, but the sandboxed process should close its own copy
//!   once it has been handed over: a process that holds the listener can answer its own
//!   notifications.
//! * The supervisor must treat a notification as a report, never as a decision based on the
//!   pointed-to memory (which the sandboxed process can change after the check); it answers
//!   with an error such as `-EPERM`, never with `SECCOMP_USER_NOTIF_FLAG_CONTINUE`. The
//!   [`Outcome::Notify`] entry (connect under `allowUnixSockets`) is decided, on a copy, and
//!   carried out by the supervisor itself (`monitor::connect`). The one CONTINUE is exec under
//!   command rules (`monitor::exec`): a guardrail the sandbox's boundary does not rest on,
//!   whose race that module and the README state.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

pub use seccompiler::BpfProgram;

use crate::syscalls::{BLOCKED, Condition, FilterOptions, Outcome, X32_SYSCALL_BIT, native_arch as audit_arch};

/// What the filter does with a blocked syscall whose [`Outcome`] is [`Outcome::Deny`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAction {
    /// Fail the syscall with EPERM.
    Errno,
    /// Hand the syscall to the supervisor over the listener fd (`SECCOMP_RET_USER_NOTIF`); the
    /// supervisor answers (with `-EPERM`) and can report the denial. Needs [`Listener::New`].
    UserNotif,
}

/// Whether [`install`] asks the kernel for a user-notification listener fd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// No listener: for programs compiled with [`DenyAction::Errno`].
    None,
    /// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: [`install`] returns the listener fd.
    New,
}

/// Errors of building and installing the filter; each variant names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// This architecture has no arch check (only x86_64 and aarch64 are supported).
    #[error("selecting the seccomp target architecture: {0} is not supported")]
    SelectArch(&'static str),
    /// seccompiler refused a rule of the table.
    #[error("building the seccomp rule for {syscall}")]
    BuildRule {
        /// The table entry.
        syscall: &'static str,
        /// seccompiler's error.
        #[source]
        source: seccompiler::BackendError,
    },
    /// seccompiler refused the filter or could not compile it.
    #[error("compiling the seccomp filter to BPF")]
    CompileBpf(#[source] seccompiler::BackendError),
    /// The compiled program is not what this module expects (an entry that cannot be
    /// expressed, no deny instruction to rewrite, or too long).
    #[error("assembling the seccomp program: {0}")]
    AssembleProgram(&'static str),
    /// [`install`] was handed a program it must not load.
    #[error("checking the seccomp program before loading it: {0}")]
    CheckProgram(&'static str),
    /// `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    #[error("setting PR_SET_NO_NEW_PRIVS")]
    SetNoNewPrivs(#[source] io::Error),
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("loading the seccomp filter")]
    LoadFilter(#[source] io::Error),
}

/// The errno that seccompiler is told to return for denied syscalls, rewritten by [`compile`]
/// into the real deny action. 0x0dea is no errno Linux defines (they stop below 0x100), so no
/// other instruction can carry `SECCOMP_RET_ERRNO | DENY_SENTINEL` by accident.
pub const DENY_SENTINEL: u32 = 0x0dea;

// Classic BPF opcodes (linux/bpf_common.h), as seccomp uses them.
const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

// Offsets in `struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; ... }`.
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

/// The kernel's limit on a classic BPF program (`BPF_MAXINSNS`).
const MAX_INSNS: usize = libc::BPF_MAXINSNS as usize;

impl FilterOptions {
    /// The options for a sandbox with this network policy. Unless every Unix socket is
    /// allowed, connect(2) is mediated (issue 18): a stream or seqpacket Unix socket may be
    /// created, and its connect reaches only the listed paths, while a path that is not there
    /// answers ENOENT as the host would. Refusing socket(2) itself instead made every glibc
    /// lookup (its nscd probe) a denial, and a denial of what was never going to be reached.
    /// Transparent egress is always on (the sandbox always has a network namespace of its
    /// own): connect, bind and listen are notified (`syscalls::EGRESS`).
    pub fn for_network(net: &crate::policy::NetPolicy) -> FilterOptions {
        FilterOptions { block_unix_sockets: !net.allow_all_unix_sockets, mediate_unix_connect: !net.allow_all_unix_sockets, transparent_egress: true, ..FilterOptions::default() }
    }
}

/// The native architecture: seccompiler's name for it and its `AUDIT_ARCH_*` value.
fn native_arch() -> Result<(TargetArch, u32), SeccompError> {
    let target = if cfg!(target_arch = "x86_64") {
        Some(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(TargetArch::aarch64)
    } else {
        None
    };
    target.zip(audit_arch()).ok_or(SeccompError::SelectArch(std::env::consts::ARCH))
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The instructions that start every program from [`compile`], before seccompiler's part:
/// the arch check, the x32 check (x86_64 only) and the ENOSYS entries (clone3). On x86_64:
///
/// ```text
/// 0: ld  [4]                       ; A = seccomp_data.arch
/// 1: jeq #0xc000003e, 1, 0         ; AUDIT_ARCH_X86_64 → skip the kill
/// 2: ret #0x80000000               ; SECCOMP_RET_KILL_PROCESS
/// 3: ld  [0]                       ; A = seccomp_data.nr
/// 4: jge #0x40000000, 0, 2         ; x32 bit (or negative) → 5, else → 7
/// 5: jeq #0xffffffff, 1, 0         ; nr == -1 → 7 (kernel returns ENOSYS)
/// 6: ret #0x80000000               ; SECCOMP_RET_KILL_PROCESS
/// 7: jeq #435, 0, 1                ; clone3
/// 8: ret #0x00050026               ; SECCOMP_RET_ERRNO | ENOSYS
/// ```
///
/// The program then falls into seccompiler's part (at 9).
pub fn prologue() -> Result<Vec<sock_filter>, SeccompError> {
    prologue_with(&FilterOptions::default())
}

/// [`prologue`], followed by `jeq #nr; ret SECCOMP_RET_USER_NOTIF` for each
/// [`Outcome::Notify`] entry of `options` (connect, under `allowUnixSockets`).
pub fn prologue_with(options: &FilterOptions) -> Result<Vec<sock_filter>, SeccompError> {
    let (_, audit_arch) = native_arch()?;
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        jump(BPF_JEQ_K, audit_arch, 1, 0),
        stmt(BPF_RET_K, kill),
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        prog.extend([
            jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 2),
            jump(BPF_JEQ_K, u32::MAX, 1, 0),
            stmt(BPF_RET_K, kill),
        ]);
    }
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    for entry in BLOCKED.iter().filter(|b| b.outcome == Outcome::Enosys) {
        if entry.condition != Condition::Always {
            return Err(SeccompError::AssembleProgram(
                "an ENOSYS entry must apply always",
            ));
        }
        let nr = u32::try_from(entry.nr)
            .map_err(|_| SeccompError::AssembleProgram("syscall number out of range"))?;
        prog.extend([jump(BPF_JEQ_K, nr, 0, 1), stmt(BPF_RET_K, enosys)]);
    }
    for entry in options.entries().filter(|b| b.outcome == Outcome::Notify) {
        if entry.condition != Condition::Always {
            return Err(SeccompError::AssembleProgram("a notify entry must apply always"));
        }
        let nr = u32::try_from(entry.nr)
            .map_err(|_| SeccompError::AssembleProgram("syscall number out of range"))?;
        prog.extend([jump(BPF_JEQ_K, nr, 0, 1), stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF)]);
    }
    Ok(prog)
}

/// seccompiler's rules for one entry; an empty list means "whatever the arguments".
fn rules_for(condition: &Condition) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let dword = |arg: u8, op: SeccompCmpOp, value: u32| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, u64::from(value))
    };
    match *condition {
        Condition::Always => Ok(Vec::new()),
        Condition::ArgHasAnyBit { arg, bits } => (0..32)
            .map(|shift| 1u32 << shift)
            .filter(|bit| bits & bit != 0)
            .map(|bit| {
                SeccompRule::new(vec![dword(
                    arg,
                    SeccompCmpOp::MaskedEq(u64::from(bit)),
                    bit,
                )?])
            })
            .collect(),
        Condition::ArgIs { arg, values } => values
            .iter()
            .map(|&v| SeccompRule::new(vec![dword(arg, SeccompCmpOp::Eq, v)?]))
            .collect(),
        Condition::ArgMaskedIs { arg, mask, values } => values
            .iter()
            .map(|&v| SeccompRule::new(vec![dword(arg, SeccompCmpOp::MaskedEq(u64::from(mask)), v)?]))
            .collect(),
        // Each part is an OR of rules (each an AND of comparisons); their AND is every
        // combination of one rule per part. ArgIs and ArgMaskedIs are one single-comparison
        // rule per value; ArgIsNot is one rule of several comparisons. That is all the table
        // needs.
        Condition::All(parts) => {
            let mut combined: Vec<Vec<SeccompCondition>> = vec![Vec::new()];
            for part in parts {
                let alternatives: Vec<Vec<SeccompCondition>> = match *part {
                    Condition::ArgIs { arg, values } => values
                        .iter()
                        .map(|&v| dword(arg, SeccompCmpOp::Eq, v).map(|c| vec![c]))
                        .collect::<Result<_, _>>()?,
                    Condition::ArgMaskedIs { arg, mask, values } => values
                        .iter()
                        .map(|&v| dword(arg, SeccompCmpOp::MaskedEq(u64::from(mask)), v).map(|c| vec![c]))
                        .collect::<Result<_, _>>()?,
                    Condition::ArgIsNot { arg, allowed } if !allowed.is_empty() => vec![allowed
                        .iter()
                        .map(|&v| dword(arg, SeccompCmpOp::Ne, v))
                        .collect::<Result<_, _>>()?],
                    _ => return Err(seccompiler::BackendError::EmptyRule),
                };
                combined = combined
                    .into_iter()
                    .flat_map(|prefix| {
                        alternatives.iter().map(move |c| {
                            let mut rule = prefix.clone();
                            rule.extend(c.iter().cloned());
                            rule
                        })
                    })
                    .collect();
            }
            combined.into_iter().map(SeccompRule::new).collect()
        }
        Condition::ArgIsNot { arg, allowed } => {
            if allowed.is_empty() {
                return Ok(Vec::new());
            }
            let conditions = allowed
                .iter()
                .map(|&v| dword(arg, SeccompCmpOp::Ne, v))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![SeccompRule::new(conditions)?])
        }
    }
}

/// Compile the table into a BPF program for this architecture, with `action` for the
/// [`Outcome::Deny`] entries. Compile before forking: [`install`] itself does not allocate.
pub fn compile(action: DenyAction) -> Result<BpfProgram, SeccompError> {
    compile_with(action, &FilterOptions::default())
}

/// [`compile`], with the policy-dependent entries of `options`.
pub fn compile_with(action: DenyAction, options: &FilterOptions) -> Result<BpfProgram, SeccompError> {
    let (target_arch, _) = native_arch()?;

    // Entries are merged by number; an entry that applies always wins over conditional ones.
    let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for entry in options.entries().filter(|b| b.outcome == Outcome::Deny) {
        let mut entry_rules =
            rules_for(&entry.condition).map_err(|source| SeccompError::BuildRule {
                syscall: entry.name,
                source,
            })?;
        let slot = rules.entry(entry.nr).or_insert_with(|| Some(Vec::new()));
        match (slot.as_mut(), entry_rules.is_empty()) {
            (_, true) => *slot = None,
            (Some(existing), false) => existing.append(&mut entry_rules),
            (None, false) => {}
        }
    }
    let rules = rules
        .into_iter()
        .map(|(nr, r)| (nr, r.unwrap_or_default()))
        .collect();

    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(DENY_SENTINEL),
        target_arch,
    )
    .map_err(SeccompError::CompileBpf)?;
    let mut body: BpfProgram = filter.try_into().map_err(SeccompError::CompileBpf)?;

    let sentinel = libc::SECCOMP_RET_ERRNO | DENY_SENTINEL;
    let deny = match action {
        DenyAction::Errno => libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
        DenyAction::UserNotif => libc::SECCOMP_RET_USER_NOTIF,
    };
    let mut rewritten = 0usize;
    for insn in body
        .iter_mut()
        .filter(|i| i.code == BPF_RET_K && i.k == sentinel)
    {
        insn.k = deny;
        rewritten += 1;
    }
    if rewritten == 0 {
        return Err(SeccompError::AssembleProgram(
            "no deny instruction to rewrite in seccompiler's output",
        ));
    }

    let mut prog = prologue_with(options)?;
    prog.append(&mut body);
    if prog.len() > MAX_INSNS {
        return Err(SeccompError::AssembleProgram(
            "program longer than BPF_MAXINSNS",
        ));
    }
    Ok(prog)
}

// seccompiler's `sock_filter` is `#[repr(C)]` with the same fields as the kernel's; the cast in
// `install` relies on it.
const _: () = {
    assert!(size_of::<sock_filter>() == size_of::<libc::sock_filter>());
    assert!(align_of::<sock_filter>() == align_of::<libc::sock_filter>());
};

/// Set `PR_SET_NO_NEW_PRIVS` and load `prog` as a seccomp filter on the calling thread (no
/// TSYNC: stage 2 is single-threaded, and the filter is inherited across fork, clone and
/// execve). With [`Listener::New`] the kernel creates a user-notification listener and this
/// returns it (close-on-exec); with [`Listener::None`] it returns `Ok(None)`.
///
/// Async-signal-safe: no allocation, so it may run between fork and exec. A program that
/// contains `SECCOMP_RET_USER_NOTIF` is refused without a listener, since every notified
/// syscall would then fail with ENOSYS.
pub fn install(prog: &BpfProgram, listener: Listener) -> Result<Option<OwnedFd>, SeccompError> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(SeccompError::CheckProgram(
            "empty or longer than BPF_MAXINSNS",
        ));
    }
    let len = u16::try_from(prog.len())
        .map_err(|_| SeccompError::CheckProgram("longer than BPF_MAXINSNS"))?;
    let notifies = prog
        .iter()
        .any(|i| i.code == BPF_RET_K && i.k == libc::SECCOMP_RET_USER_NOTIF);
    if notifies && listener == Listener::None {
        return Err(SeccompError::CheckProgram(
            "the program notifies but no listener was asked for",
        ));
    }
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: prog.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };

    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) takes no pointers and only sets a flag
    // on the calling thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(SeccompError::SetNoNewPrivs(io::Error::last_os_error()));
    }

    let flags: libc::c_ulong = match listener {
        Listener::None => 0,
        Listener::New => libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    };
    // SAFETY: `fprog` points at `prog`'s `len` instructions, which have the layout of the
    // kernel's `struct sock_filter` (checked at compile time above) and outlive the call; the
    // kernel copies the program and keeps no pointer to it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::c_ulong::from(libc::SECCOMP_SET_MODE_FILTER),
            flags,
            &raw const fprog,
        )
    };
    if rc < 0 {
        return Err(SeccompError::LoadFilter(io::Error::last_os_error()));
    }
    match listener {
        Listener::None => Ok(None),
        Listener::New => {
            let fd = libc::c_int::try_from(rc)
                .map_err(|_| SeccompError::LoadFilter(io::Error::from_raw_os_error(libc::EBADF)))?;
            // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER, a successful seccomp() returns a
            // new file descriptor that nothing else owns.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
    }
}

#[cfg(test)]
mod tests;
