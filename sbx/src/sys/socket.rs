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

fn option_at(sock: &OwnedFd, level: libc::c_int, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), level, option, (&raw mut value).cast(), &mut len) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(value) }
}

/// The socket's type (`SO_TYPE`: `SOCK_STREAM`, `SOCK_DGRAM`, ...).
pub fn socket_type(sock: &OwnedFd) -> io::Result<i32> {
    int_option(sock, libc::SO_TYPE)
}

/// The socket's protocol (`SO_PROTOCOL`).
pub fn socket_protocol(sock: &OwnedFd) -> io::Result<i32> {
    int_option(sock, libc::SO_PROTOCOL)
}

/// Whether the socket listens (`SO_ACCEPTCONN`).
pub fn socket_listens(sock: &OwnedFd) -> io::Result<bool> {
    int_option(sock, libc::SO_ACCEPTCONN).map(|v| v != 0)
}

/// The cookie of the network namespace the socket belongs to (`SO_NETNS_COOKIE`, Linux
/// 5.14): equal for two sockets exactly when they are in the same namespace.
pub fn socket_netns_cookie(sock: &impl std::os::fd::AsRawFd) -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    let mut value: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut value).cast(), &mut len) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(value) }
}

/// Whether the socket has a peer (`getpeername` succeeds).
pub fn socket_has_peer(sock: &OwnedFd) -> bool {
    // SAFETY: sockaddr_storage is plain data.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes into `addr`.
    unsafe { libc::getpeername(sock.as_raw_fd(), (&raw mut addr).cast(), &mut len) == 0 }
}

/// A new socket of this process's network namespace, close-on-exec.
pub fn new_socket(domain: i32, kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) returns a new descriptor or -1.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// bind(2) of `sock` to the raw `sockaddr` bytes `addr`; the errno on failure.
pub fn bind_raw(sock: &OwnedFd, addr: &[u8]) -> Result<(), i32> {
    // SAFETY: `addr` is readable for its whole length, which is what we pass.
    let rc = unsafe { libc::bind(sock.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)) }
}

/// listen(2) on `sock`; the errno on failure.
pub fn listen_raw(sock: &OwnedFd, backlog: i32) -> Result<(), i32> {
    // SAFETY: listen takes a descriptor and an integer.
    let rc = unsafe { libc::listen(sock.as_raw_fd(), backlog) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)) }
}

/// Copies the socket options a program commonly sets before connect(2) from `from` to
/// `to` (each one that `from` can report and `to` accepts): `TCP_NODELAY`, keep-alive and
/// its timers, `SO_LINGER`, the send and receive timeouts, `TCP_USER_TIMEOUT`,
/// `SO_OOBINLINE`, `SO_PRIORITY`, and the type of service (`IP_TOS` or `IPV6_TCLASS`).
pub fn copy_socket_options(from: &OwnedFd, to: &OwnedFd, ipv6: bool) {
    let mut options: Vec<(libc::c_int, libc::c_int)> = vec![
        (libc::IPPROTO_TCP, libc::TCP_NODELAY),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        (libc::SOL_SOCKET, libc::SO_OOBINLINE),
        (libc::SOL_SOCKET, libc::SO_PRIORITY),
    ];
    options.push(if ipv6 { (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) } else { (libc::IPPROTO_IP, libc::IP_TOS) });
    for (level, option) in options {
        if let Ok(value) = option_at(from, level, option) {
            let _ = set_option(to, level, option, &value.to_ne_bytes());
        }
    }
    // Structures: copied as the bytes the kernel gave.
    for option in [libc::SO_LINGER, libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        let mut buf = [0u8; 32];
        let mut len = buf.len() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `buf`.
        let rc = unsafe { libc::getsockopt(from.as_raw_fd(), libc::SOL_SOCKET, option, buf.as_mut_ptr().cast(), &mut len) };
        if rc == 0 && buf[..len as usize].iter().any(|&b| b != 0) {
            let _ = set_option(to, libc::SOL_SOCKET, option, &buf[..len as usize]);
        }
    }
}

fn set_option(sock: &OwnedFd, level: libc::c_int, option: libc::c_int, value: &[u8]) -> io::Result<()> {
    // SAFETY: setsockopt reads `value.len()` bytes of `value`.
    let rc = unsafe { libc::setsockopt(sock.as_raw_fd(), level, option, value.as_ptr().cast(), value.len() as libc::socklen_t) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// A socket of `kind` (`SOCK_DGRAM` or `SOCK_STREAM`, then listening) bound to
/// 127.0.0.1:`port` with `IP_FREEBIND`, so that the bind succeeds before the namespace's
/// loopback is up (bwrap brings it up while it builds the sandbox).
pub fn loopback_freebind(kind: i32, port: u16) -> io::Result<OwnedFd> {
    let sock = new_socket(libc::AF_INET, kind, 0)?;
    set_option(&sock, libc::IPPROTO_IP, libc::IP_FREEBIND, &1i32.to_ne_bytes())?;
    if kind == libc::SOCK_STREAM {
        set_option(&sock, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_ne_bytes())?;
    }
    // SAFETY: sockaddr_in is plain data.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = port.to_be();
    sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    // SAFETY: sockaddr_in as bytes, for its size.
    let bytes = unsafe { std::slice::from_raw_parts((&raw const sin).cast::<u8>(), size_of::<libc::sockaddr_in>()) };
    bind_raw(&sock, bytes).map_err(io::Error::from_raw_os_error)?;
    if kind == libc::SOCK_STREAM {
        listen_raw(&sock, 128).map_err(io::Error::from_raw_os_error)?;
    }
    Ok(sock)
}

/// `getaddrinfo(3)` with `AI_CANONNAME`: the addresses of `host` (stream sockets, any
/// family, in the resolver's order) and its canonical name, where the resolver gives one
/// (the end of a CNAME chain, or the first name of a hosts-file line). Blocking.
pub fn lookup_canonical(host: &str) -> io::Result<(Vec<std::net::IpAddr>, Option<String>)> {
    let name = std::ffi::CString::new(host).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a host name with NUL"))?;
    // SAFETY: a zeroed addrinfo is a valid hints structure (all fields empty).
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_CANONNAME;
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: getaddrinfo reads the NUL-terminated name and the hints, and writes the list.
    let rc = unsafe { libc::getaddrinfo(name.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if rc != 0 {
        let why = if rc == libc::EAI_SYSTEM {
            io::Error::last_os_error().to_string()
        } else {
            // SAFETY: gai_strerror returns a static NUL-terminated message.
            unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(rc)) }.to_string_lossy().into_owned()
        };
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{host}: {why}")));
    }
    let mut addrs = Vec::new();
    let mut canonical = None;
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is an element of the list getaddrinfo returned, not yet freed.
        let ai = unsafe { &*at };
        if canonical.is_none() && !ai.ai_canonname.is_null() {
            // SAFETY: ai_canonname is a NUL-terminated string owned by the list.
            canonical = Some(unsafe { std::ffi::CStr::from_ptr(ai.ai_canonname) }.to_string_lossy().into_owned());
        }
        // SAFETY: ai_addr points to ai_addrlen bytes of a sockaddr of family ai_family.
        let ip = unsafe {
            match ai.ai_family {
                libc::AF_INET => Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be((*(ai.ai_addr as *const libc::sockaddr_in)).sin_addr.s_addr)))),
                libc::AF_INET6 => Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from((*(ai.ai_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr))),
                _ => None,
            }
        };
        if let Some(ip) = ip
            && !addrs.contains(&ip)
        {
            addrs.push(ip);
        }
        at = ai.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok((addrs, canonical))
}
