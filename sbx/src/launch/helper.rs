//! The copies of sbx that join some of a running sandbox's namespaces for the session: the
//! connector (`inbound`: `-p`'s connections and sbx's DNS sockets, in its network) and the
//! masker (`remask`: masks put back, in its mount namespace). sbx is multi-threaded, so it
//! cannot enter a user or mount namespace itself; each helper is `sbx ARG INIT_PID FD`, a
//! fresh single-threaded process that talks to sbx over one end of a socket pair.

use std::{
    ffi::OsStr,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _},
        unix::net::UnixStream,
    },
    process::Child,
};

use crate::sys;

/// Starts `sbx ARG INIT FD` for the sandbox whose pid 1 is `init` (host pid); returns sbx's
/// end of the socket pair and the child.
pub fn spawn(arg: &str, init: i32) -> io::Result<(UnixStream, Child)> {
    let (ours, theirs) = UnixStream::pair()?;
    let fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg(arg).arg(init.to_string()).arg(fd.to_string()).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    // SAFETY: only fcntl on an integer captured by value.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || sys::inherit(fd));
    }
    let child = cmd.spawn()?;
    drop(theirs);
    Ok((ours, child))
}

/// The helper's entry: `serve` with the sandbox's pid 1 and the socket from its argv, then
/// exit 0, or `EXIT_SETUP` with one sentence naming `what` failed.
pub fn main(what: &str, init: &OsStr, fd: &OsStr, serve: impl FnOnce(i32, UnixStream) -> io::Result<()>) -> ! {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad {what} arguments"));
    let args = init.to_str().and_then(|s| s.parse::<i32>().ok()).zip(fd.to_str().and_then(|s| s.parse::<i32>().ok())).ok_or_else(bad);
    let served = args.and_then(|(init, fd)| {
        // SAFETY: sbx passed this socket for us alone.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        serve(init, sock)
    });
    let code = match served {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sbx: the {what} failed: {e}");
            crate::EXIT_SETUP
        }
    };
    std::process::exit(i32::from(code))
}

/// Joins the namespace `ns` (`net`, `mnt`, of type `nstype`) of the sandbox whose pid 1 is
/// `init`. Root may enter it directly; a user must first enter the user namespace that
/// owns it (bwrap's outer one: with `--disable-userns` the sandbox's processes sit in a
/// nested one, which has no rights over it).
pub fn join(init: i32, ns: &str, nstype: libc::c_int) -> io::Result<()> {
    let file = std::fs::File::open(format!("/proc/{init}/ns/{ns}"))?;
    if sys::setns(&file, nstype).is_err() {
        sys::setns(&sys::owning_userns(&file)?, libc::CLONE_NEWUSER)?;
        sys::setns(&file, nstype)?;
    }
    Ok(())
}
