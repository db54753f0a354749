//! `-p/--port [ADDR:]PORT`: connections from the host to a port the command
//! listens on inside the sandbox.
//!
//! A socket connected to the sandbox's loopback can only be made inside its
//! network namespace. sbx (multi-threaded, so unable to enter a user
//! namespace) starts a copy of itself, the *connector*, which joins the
//! sandbox's user and network namespaces and, for each request on a socket
//! pair, connects to 127.0.0.1:PORT there and sends the connected socket
//! back. sbx listens on the host and relays. The connector joins no other
//! namespace and holds nothing the command could reach.

use std::{
    ffi::OsStr,
    io::{self, Read as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::net::UnixStream,
    },
};

use crate::sys;

/// The first argument that makes `sbx` run as the connector.
pub const CONNECTOR_ARG: &str = "__sbx_connector";

/// A running connector: one request at a time.
pub struct Connector {
    sock: tokio::sync::Mutex<tokio::net::UnixStream>,
    child: std::process::Child,
}

impl Connector {
    /// Starts the connector for the sandbox whose pid 1 is `init` (host pid).
    pub fn spawn(init: i32) -> io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        let fd = theirs.as_raw_fd();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        cmd.arg(CONNECTOR_ARG).arg(init.to_string()).arg(fd.to_string());
        // SAFETY: only fcntl on an integer captured by value.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || sys::inherit(fd));
        }
        let child = cmd.spawn()?;
        drop(theirs);
        ours.set_nonblocking(true)?;
        Ok(Self { sock: tokio::sync::Mutex::new(tokio::net::UnixStream::from_std(ours)?), child })
    }

    /// A TCP socket connected to 127.0.0.1:`port` inside the sandbox.
    pub async fn connect(&self, port: u16) -> io::Result<tokio::net::TcpStream> {
        use tokio::io::AsyncWriteExt as _;
        let mut sock = self.sock.lock().await;
        sock.write_all(&port.to_le_bytes()).await?;
        let mut fds: Vec<OwnedFd> = loop {
            sock.readable().await?;
            match sock.try_io(tokio::io::Interest::READABLE, || sys::recv_fds(&*sock)) {
                Ok(fds) => break fds,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        let stream = fds
            .pop()
            .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionRefused, format!("nothing listens on port {port} in the sandbox")))?;
        let std = std::net::TcpStream::from(stream);
        std.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(std)
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The connector's entry point: `sbx __sbx_connector INIT_PID FD`.
pub fn main(init: &OsStr, fd: &OsStr) -> ! {
    let code = match serve(init, fd) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sbx: the inbound-port connector failed: {e}");
            crate::EXIT_SETUP
        }
    };
    std::process::exit(i32::from(code))
}

fn serve(init: &OsStr, fd: &OsStr) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "bad connector arguments");
    let init: i32 = init.to_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let fd: i32 = fd.to_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    // SAFETY: sbx passed this socket for us alone.
    let mut sock = unsafe { UnixStream::from_raw_fd(fd) };
    // Root may enter the network namespace directly; a user must first
    // enter the user namespace that owns it (bwrap's outer one: with
    // --disable-userns the sandbox's processes sit in a nested one, which
    // has no rights over the network namespace).
    let net = std::fs::File::open(format!("/proc/{init}/ns/net"))?;
    if sys::setns(&net, libc::CLONE_NEWNET).is_err() {
        sys::setns(&sys::owning_userns(&net)?, libc::CLONE_NEWUSER)?;
        sys::setns(&net, libc::CLONE_NEWNET)?;
    }
    let mut port = [0u8; 2];
    loop {
        if sock.read_exact(&mut port).is_err() {
            return Ok(());
        }
        let port = u16::from_le_bytes(port);
        // The command's server may listen on either loopback address.
        let stream = std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port))
            .or_else(|_| std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)));
        match stream {
            Ok(stream) => sys::send_fds(&sock, &[stream.as_raw_fd()])?,
            Err(_) => sys::send_fds(&sock, &[])?,
        }
    }
}
