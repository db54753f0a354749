//! The new mount API (Linux 5.2; cloning from a detached mount, 6.15): the masks that
//! `launch::remask` puts back over hidden paths inside a running sandbox, made without
//! a mount point of their own.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
/// `MOUNT_ATTR_RDONLY | NOSUID | NODEV | NOEXEC`.
const MOUNT_ATTR_LOCKED_DOWN: u64 = 0x1 | 0x2 | 0x4 | 0x8;

fn fd_or_error(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
}

fn ok_or_error(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("a constant without NUL")
}

/// A new tmpfs, not mounted anywhere (`fsopen`, `fsmount`), with the given root `mode`
/// (octal text). `locked_down`: read-only, nosuid, nodev, noexec from the start.
pub fn detached_tmpfs(mode: &str, locked_down: bool) -> io::Result<OwnedFd> {
    let name = cstr("tmpfs");
    // SAFETY: fsopen reads the NUL-terminated name and returns a new descriptor.
    let fs = fd_or_error(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    for (key, value) in [("mode", mode), ("size", "128k"), ("nr_inodes", "4")] {
        let (key, value) = (cstr(key), cstr(value));
        // SAFETY: fsconfig reads the two NUL-terminated strings.
        ok_or_error(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), FSCONFIG_SET_STRING, key.as_ptr(), value.as_ptr(), 0) })?;
    }
    // SAFETY: CMD_CREATE takes no key or value.
    ok_or_error(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>(), 0) })?;
    let attrs = if locked_down { MOUNT_ATTR_LOCKED_DOWN } else { 0 };
    // SAFETY: fsmount on the configured context returns a new mount descriptor.
    fd_or_error(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// Creates the empty file `name`, mode 000, in the directory open as `at`.
pub fn create_empty_file(at: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let name = cstr(name);
    // SAFETY: openat reads the NUL-terminated name and returns a new descriptor.
    let made = unsafe { libc::openat(at.as_raw_fd(), name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC, 0) };
    fd_or_error(made as libc::c_long).map(drop)
}

/// Creates the file `name`, mode 0444, holding `content`, in the directory open as `at`.
pub fn create_file_with(at: BorrowedFd<'_>, name: &str, content: &[u8]) -> io::Result<()> {
    let name = cstr(name);
    // SAFETY: openat reads the NUL-terminated name and returns a new descriptor.
    let made = unsafe { libc::openat(at.as_raw_fd(), name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC, 0o444) };
    let file = std::fs::File::from(fd_or_error(made as libc::c_long)?);
    std::io::Write::write_all(&mut &file, content)
}

/// A detached mount of `name` inside the mount `at` (`open_tree(OPEN_TREE_CLONE)`), made
/// read-only, nosuid, nodev and noexec (`mount_setattr`).
pub fn clone_locked_down(at: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
    let name = cstr(name);
    // SAFETY: open_tree reads the NUL-terminated name and returns a new descriptor.
    let tree = fd_or_error(unsafe { libc::syscall(libc::SYS_open_tree, at.as_raw_fd(), name.as_ptr(), OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint) })?;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr { attr_set: MOUNT_ATTR_LOCKED_DOWN, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let empty = cstr("");
    // SAFETY: mount_setattr reads `attr` (its size passed) and the empty path.
    ok_or_error(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(tree)
}

/// Mounts the detached `mount` over the file or directory open as `target` (`O_PATH`),
/// exactly that one: no path is looked up again.
pub fn move_mount_onto(mount: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let empty = cstr("");
    // SAFETY: move_mount reads the two empty paths and uses the two descriptors.
    ok_or_error(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mount.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
}
