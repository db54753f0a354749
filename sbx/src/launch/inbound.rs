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
        fd::{AsRawFd as _, OwnedFd},
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
        let (ours, child) = super::helper::spawn(CONNECTOR_ARG, init)?;
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

/// The port sbx's DNS listens on inside the sandbox (UDP and TCP, 127.0.0.1).
pub const DNS_PORT: u16 = 53;

/// Transparent egress: the sockets of sbx's DNS inside the sandbox whose pid 1 is `init`,
/// UDP and TCP (listening) on 127.0.0.1:53. Port 53 needs `CAP_NET_BIND_SERVICE` in the
/// user namespace that owns the sandbox's network namespace, which stage-2 (in a nested
/// one, without capabilities) does not have; a connector started for it joins that user
/// namespace (sbx's, as root), binds them, sends them back and exits. They are bound with
/// `IP_FREEBIND`: the sandbox's loopback may not be up yet. Blocking.
pub fn dns_sockets(init: i32) -> io::Result<Vec<OwnedFd>> {
    use std::io::Write as _;
    let (mut ours, mut child) = super::helper::spawn(CONNECTOR_ARG, init)?;
    let fds = ours.write_all(&0u16.to_le_bytes()).and_then(|()| sys::recv_fds(&ours));
    drop(ours);
    let _ = child.wait();
    let fds = fds?;
    if fds.len() != 2 {
        return Err(io::Error::other("the connector could not bind port 53 inside the sandbox"));
    }
    Ok(fds)
}

/// The connector's entry point: `sbx __sbx_connector INIT_PID FD`.
pub fn main(init: &OsStr, fd: &OsStr) -> ! {
    super::helper::main("inbound-port connector", init, fd, serve)
}

fn serve(init: i32, mut sock: UnixStream) -> io::Result<()> {
    super::helper::join(init, "net", libc::CLONE_NEWNET)?;
    let mut port = [0u8; 2];
    loop {
        if sock.read_exact(&mut port).is_err() {
            return Ok(());
        }
        let port = u16::from_le_bytes(port);
        if port == 0 {
            // sbx's DNS (`dns_sockets`).
            let bound = sys::loopback_freebind(libc::SOCK_DGRAM, DNS_PORT).and_then(|udp| Ok((udp, sys::loopback_freebind(libc::SOCK_STREAM, DNS_PORT)?)));
            match bound {
                Ok((udp, tcp)) => sys::send_fds(&sock, &[udp.as_raw_fd(), tcp.as_raw_fd()])?,
                Err(e) => {
                    eprintln!("sbx: cannot bind sbx's DNS inside the sandbox: {e}");
                    sys::send_fds(&sock, &[])?;
                }
            }
            continue;
        }
        // The command's server may listen on either loopback address.
        let stream = std::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port))
            .or_else(|_| std::net::TcpStream::connect((std::net::Ipv6Addr::LOCALHOST, port)));
        match stream {
            Ok(stream) => sys::send_fds(&sock, &[stream.as_raw_fd()])?,
            Err(_) => sys::send_fds(&sock, &[])?,
        }
    }
}
