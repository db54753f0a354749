//! Socket calls on raw addresses, for the connect mediator (`monitor::connect`), which
//! connects the caller's socket itself with the address it copied.

use std::{
    io,
    os::fd::{AsRawFd as _, OwnedFd},
};

/// One connect(2) of `sock` to the raw `sockaddr` bytes `addr`, retried on EINTR; the errno
/// on failure.
pub fn connect_raw(sock: &OwnedFd, addr: &[u8]) -> Result<(), i32> {
    loop {
        // SAFETY: `addr` is readable for its whole length, which is what we pass.
        let rc = unsafe { libc::connect(sock.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t) };
        if rc == 0 {
            return Ok(());
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            e => return Err(e.unwrap_or(libc::EIO)),
        }
    }
}

fn int_option(sock: &OwnedFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, option, (&raw mut value).cast(), &mut len) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(value) }
}

/// The socket's address family (`SO_DOMAIN`).
pub fn socket_domain(sock: &OwnedFd) -> io::Result<i32> {
    int_option(sock, libc::SO_DOMAIN)
}

/// The socket's pending error (`SO_ERROR`, 0 for none), which ends a connect in progress.
pub fn socket_error(sock: &OwnedFd) -> io::Result<i32> {
    int_option(sock, libc::SO_ERROR)
}
