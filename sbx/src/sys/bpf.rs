//! The bpf(2) commands a session's tracer needs once the programs are
//! loaded and pinned (`monitor::pins`): opening pins, creating a ring
//! buffer, map updates, and attaching a tp_btf program with a cookie, which
//! aya 0.14 does not offer. Loading and pinning stay aya's.

use std::{
    ffi::CStr,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;

/// `BPF_ANY`.
pub const BPF_ANY: u64 = 0;

/// `union bpf_attr`, as the bytes each command reads (the largest command
/// here reads 48; the kernel wants the rest zero).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Self([0; 128])
    }

    fn u32(mut self, at: usize, v: u32) -> Self {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }

    fn u64(mut self, at: usize, v: u64) -> Self {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }

    /// The command's result: a new descriptor or 0.
    fn call(&self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: the attribute is a valid, zero-padded bpf_attr for `cmd`
        // of the size given; every pointer in it points to memory that
        // outlives the call (the callers' borrowed slices).
        let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_ptr(), self.0.len()) };
        if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
    }

    fn call_fd(&self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)?;
        // SAFETY: these commands return a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// Opens the object pinned at `path` (a program, map or link).
pub fn obj_get(path: &CStr) -> io::Result<OwnedFd> {
    Attr::new().u64(0, path.as_ptr() as u64).call_fd(BPF_OBJ_GET)
}

/// A new ring buffer of `bytes` (a power of two, whole pages), named `name`
/// (at most 15 bytes are kept).
pub fn ringbuf_create(bytes: u32, name: &str) -> io::Result<OwnedFd> {
    let mut attr = Attr::new().u32(0, BPF_MAP_TYPE_RINGBUF).u32(12, bytes);
    for (i, b) in name.bytes().take(15).enumerate() {
        attr.0[28 + i] = b;
    }
    attr.call_fd(BPF_MAP_CREATE)
}

/// Updates `key` of map `map` to `value`; `flags` is BPF_ANY or BPF_NOEXIST.
/// The slices must be the map's key and value sizes (for per-CPU maps, the
/// value of every possible CPU, each rounded up to 8 bytes).
pub fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8], flags: u64) -> io::Result<()> {
    Attr::new().u32(0, fd_u32(map)).u64(8, key.as_ptr() as u64).u64(16, value.as_ptr() as u64).u64(24, flags).call(BPF_MAP_UPDATE_ELEM).map(drop)
}

/// Reads `key` of map `map` into `value` (sized as for [`map_update`]).
pub fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    Attr::new().u32(0, fd_u32(map)).u64(8, key.as_ptr() as u64).u64(16, value.as_mut_ptr() as u64).call(BPF_MAP_LOOKUP_ELEM).map(drop)
}

/// Attaches the tp_btf (or raw tracepoint) program `prog` with `cookie`,
/// which the program reads with `bpf_get_attach_cookie` (Linux 6.10). The
/// program stays attached until the returned link is closed.
pub fn attach_with_cookie(prog: BorrowedFd<'_>, cookie: u64) -> io::Result<OwnedFd> {
    // raw_tracepoint: { name (NULL: the hook is the program's BTF id), prog_fd, pad, cookie }
    Attr::new().u32(8, fd_u32(prog)).u64(16, cookie).call_fd(BPF_RAW_TRACEPOINT_OPEN)
}

/// The kernel's id of a program, map or link (the second u32 of each info
/// struct).
pub fn obj_id(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(info_u32s::<2>(fd)?[1])
}

/// A map's `max_entries` (a ring buffer's size in bytes).
pub fn map_max_entries(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // bpf_map_info: type, id, key_size, value_size, max_entries, ...
    Ok(info_u32s::<5>(fd)?[4])
}

/// The first `N` u32 fields of an object's info struct.
fn info_u32s<const N: usize>(fd: BorrowedFd<'_>) -> io::Result<[u32; N]> {
    let mut info = [0u32; N];
    Attr::new().u32(0, fd_u32(fd)).u32(4, (N * 4) as u32).u64(8, info.as_mut_ptr() as u64).call(BPF_OBJ_GET_INFO_BY_FD)?;
    Ok(info)
}

/// Opens the map with kernel id `id` (what a map of maps holds).
pub fn map_by_id(id: u32) -> io::Result<OwnedFd> {
    Attr::new().u32(0, id).call_fd(BPF_MAP_GET_FD_BY_ID)
}

