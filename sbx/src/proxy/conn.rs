//! Shared connection plumbing: decide + resolve + check + connect, events, tunnels, idle timeout.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use std::any::Any;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::rules::{AddressPolicy, DecisionKind, Host, Rules};
use super::{Inner, NetEvent, Protocol};

/// Why no upstream connection was made; `target` is `host:port` for messages.
#[derive(Debug)]
pub(crate) enum OpenError {
    Denied { target: String, rule: String },
    Resolve { target: String, err: io::Error },
    Connect { target: String, err: io::Error },
    Timeout { target: String },
}

/// Printable, bounded version of an untrusted host string.
fn sanitize(raw: &str) -> String {
    raw.chars()
        .take(255)
        .map(|c| if c.is_control() || c.is_whitespace() { '?' } else { c })
        .collect()
}

/// Applies the policy to `raw_host:port`, resolves, checks addresses, connects, and emits exactly
/// one [`NetEvent`] describing the decision.
pub(crate) async fn open_upstream(
    inner: &Inner,
    protocol: Protocol,
    raw_host: &str,
    port: u16,
    client: &str,
) -> Result<TcpStream, OpenError> {
    let (host, mut decision) = inner.rules.decide_raw(raw_host, port);
    if port == 0 {
        decision.allowed = false;
        decision.rule = "invalid port 0".to_owned();
        decision.kind = DecisionKind::Invalid;
    }
    // `--ask`: no rule decided; someone may. Only this connection waits.
    if let (Some(ask), Some(h)) = (&inner.ask, &host)
        && !decision.allowed
        && decision.kind == DecisionKind::NoRule
    {
        let (allowed, rule) = ask.decide(h, port, protocol, client).await;
        decision.allowed = allowed;
        decision.rule = rule;
        decision.addresses = match h {
            Host::Ip(_) => AddressPolicy::Unchecked,
            Host::Name(_) => AddressPolicy::PublicOnly,
        };
    }
    let host_text = host.as_ref().map_or_else(|| sanitize(raw_host), Host::to_string);
    let target = host
        .as_ref()
        .map_or_else(|| format!("{host_text}:{port}"), |h| h.with_port(port));
    let emit = |allowed: bool, rule: String, resolved: Option<IpAddr>| {
        inner.emit(NetEvent {
            time: SystemTime::now(),
            protocol,
            host: host_text.clone(),
            port,
            allowed,
            rule,
            resolved,
            client: client.to_owned(),
            dns_type: None,
        });
    };
    let host = match host {
        Some(h) if decision.allowed => h,
        _ => {
            emit(false, decision.rule.clone(), None);
            return Err(OpenError::Denied { target, rule: decision.rule });
        }
    };

    let deadline = tokio::time::Instant::now() + inner.limits.connect_timeout;
    let addrs: Vec<SocketAddr> = match &host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(n) if n == "localhost" && decision.addresses == AddressPolicy::Unchecked => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ],
        Host::Name(n) => match tokio::time::timeout_at(deadline, inner.resolver.resolve_canonical(n)).await {
            Err(_) => {
                emit(true, decision.rule, None);
                return Err(OpenError::Timeout { target });
            }
            Ok(Err(err)) => {
                emit(true, decision.rule, None);
                return Err(OpenError::Resolve { target, err });
            }
            // An alias of a name deniedDomains refuses is refused like it (as by sbx's DNS).
            Ok(Ok((_, canonical))) if let Some(rule) = inner.rules.denied_alias(n, canonical.as_deref()) => {
                emit(false, rule.clone(), None);
                return Err(OpenError::Denied { target, rule });
            }
            Ok(Ok((a, _))) => a.into_iter().map(|a| SocketAddr::new(a.ip(), port)).collect(),
        },
    };

    // DNS-rebinding defence: keep only addresses this decision may reach.
    let mut permitted = Vec::with_capacity(addrs.len());
    let mut refused: Option<(IpAddr, String)> = None;
    for a in addrs {
        let ip = a.ip().to_canonical();
        match Rules::check_address(decision.addresses, ip) {
            Ok(()) => permitted.push(SocketAddr::new(ip, port)),
            Err(reason) => {
                refused.get_or_insert((ip, reason));
            }
        }
    }
    if permitted.is_empty() {
        return Err(match refused {
            Some((ip, reason)) => {
                let rule = format!("{}; {reason}", decision.rule);
                emit(false, rule.clone(), Some(ip));
                OpenError::Denied { target, rule }
            }
            None => {
                emit(true, decision.rule, None);
                let err = io::Error::new(io::ErrorKind::NotFound, "no addresses");
                OpenError::Resolve { target, err }
            }
        });
    }

    let mut last: Option<(IpAddr, io::Error)> = None;
    for a in &permitted {
        match tokio::time::timeout_at(deadline, TcpStream::connect(a)).await {
            Err(_) => {
                emit(true, decision.rule, Some(a.ip()));
                return Err(OpenError::Timeout { target });
            }
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                emit(true, decision.rule, Some(a.ip()));
                return Ok(s);
            }
            Ok(Err(e)) => last = Some((a.ip(), e)),
        }
    }
    // `permitted` is non-empty, so every path through the loop returned or set `last`.
    let (ip, err) = match last {
        Some(x) => x,
        None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), io::Error::other("no address to connect to")),
    };
    emit(true, decision.rule, Some(ip));
    Err(OpenError::Connect { target, err })
}

/// Buffer of each direction of a copying relay (a client that is not a socket: the tests'
/// in-memory streams, or a socket the kernel will not splice). tokio's default, 8 KiB, costs a
/// read and a write per 8 KiB; at most 2 x 64 KiB x `max_connections` (256) = 32 MiB. Copying
/// with it, a 256 MiB loopback download through the proxy ran at 43-47% of direct curl on the
/// 2-core bench machine (`cargo xtask bench proxy`); splicing gave 53-57% there.
pub(crate) const RELAY_BUF: usize = 64 * 1024;

/// Time of the last byte moved on a connection.
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Resolves once nothing moved for `idle`.
pub(crate) async fn idle_watch(act: &Activity, idle: Duration) {
    loop {
        let quiet = act.idle_for();
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// A stream that records activity on every byte read or written.
pub(crate) struct Tracked<S> {
    inner: S,
    act: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, act: Arc<Activity>) -> Self {
        Tracked { inner, act }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.act.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.act.touch();
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Relays bytes both ways (after sending `leftover` upstream) until both sides close, an error,
/// or `idle` passes without traffic. When the client is a socket (what the listeners accept),
/// the bytes move with splice(2) ([`splice_relay`]); otherwise, or when the kernel refuses to
/// splice these sockets, with tokio's copying relay.
pub(crate) async fn tunnel<S>(client: S, mut upstream: TcpStream, leftover: &[u8], idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let act = Arc::new(Activity::new());
    if !leftover.is_empty() {
        let sent = tokio::select! {
            r = upstream.write_all(leftover) => r,
            () = idle_watch(&act, idle) => Err(io::ErrorKind::TimedOut.into()),
        };
        if let Err(e) = sent {
            tracing::debug!("sbx proxy tunnel error: {e}");
            return;
        }
        act.touch();
    }
    if let Some(socket) = Socket::of(&client) {
        let result = tokio::select! {
            r = splice_relay(socket, Socket::Tcp(&upstream), &act) => r,
            () = idle_watch(&act, idle) => {
                tracing::debug!("sbx proxy tunnel idle timeout");
                return;
            }
        };
        match result {
            Ok(Spliced::Done(up, down)) => {
                tracing::trace!(up, down, "sbx proxy tunnel closed");
                return;
            }
            Ok(Spliced::Unsupported) => tracing::debug!("sbx proxy tunnel: splice refused, copying instead"),
            Err(e) => {
                tracing::debug!("sbx proxy tunnel error: {e}");
                return;
            }
        }
    }
    let mut client = Tracked::new(client, act.clone());
    let work = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, RELAY_BUF, RELAY_BUF);
    tokio::select! {
        r = work => match r {
            Ok((up, down)) => tracing::trace!(up, down, "sbx proxy tunnel closed"),
            Err(e) => tracing::debug!("sbx proxy tunnel error: {e}"),
        },
        () = idle_watch(&act, idle) => tracing::debug!("sbx proxy tunnel idle timeout"),
    }
}

/// A socket of tokio's that splice(2) can read from and write to. It is also a tokio stream
/// (through `&`, so one task can read it while another writes), which lets the HTTP front end
/// exchange heads on the sockets whose bodies it then splices.
#[derive(Clone, Copy)]
pub(crate) enum Socket<'a> {
    Tcp(&'a TcpStream),
    Unix(&'a UnixStream),
}

impl<'a> Socket<'a> {
    /// The socket under an accepted connection: the listeners' stream types are the only
    /// ones with one (tests drive the handlers over in-memory streams, which copy).
    pub(crate) fn of<S: 'static>(s: &'a S) -> Option<Socket<'a>> {
        let any: &dyn Any = s;
        any.downcast_ref::<TcpStream>()
            .map(Socket::Tcp)
            .or_else(|| any.downcast_ref::<UnixStream>().map(Socket::Unix))
    }

    async fn ready(self, interest: Interest) -> io::Result<()> {
        match (self, interest == Interest::READABLE) {
            (Socket::Tcp(s), true) => s.readable().await,
            (Socket::Tcp(s), false) => s.writable().await,
            (Socket::Unix(s), true) => s.readable().await,
            (Socket::Unix(s), false) => s.writable().await,
        }
    }

    /// Runs `f` on the socket's fd when tokio says it is ready for `interest`; a WouldBlock
    /// from `f` clears the readiness and waits again.
    async fn io<R>(self, interest: Interest, mut f: impl FnMut(BorrowedFd<'_>) -> io::Result<R>) -> io::Result<R> {
        loop {
            self.ready(interest).await?;
            let r = match self {
                Socket::Tcp(s) => s.try_io(interest, || f(s.as_fd())),
                Socket::Unix(s) => s.try_io(interest, || f(s.as_fd())),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
        }
    }

    fn shutdown_write(self) -> io::Result<()> {
        let fd = match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        };
        match nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write) {
            Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsyncRead for Socket<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let ready = match *self {
                Socket::Tcp(s) => s.poll_read_ready(cx),
                Socket::Unix(s) => s.poll_read_ready(cx),
            };
            std::task::ready!(ready)?;
            let unfilled = buf.initialize_unfilled();
            let r = match *self {
                Socket::Tcp(s) => s.try_read(unfilled),
                Socket::Unix(s) => s.try_read(unfilled),
            };
            match r {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // A stale readiness: it is cleared now, so the next poll registers the waker.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Socket<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let ready = match *self {
                Socket::Tcp(s) => s.poll_write_ready(cx),
                Socket::Unix(s) => s.poll_write_ready(cx),
            };
            std::task::ready!(ready)?;
            let r = match *self {
                Socket::Tcp(s) => s.try_write(buf),
                Socket::Unix(s) => s.try_write(buf),
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// One direction until EOF, then a half-close of `to`: with splice(2) through its own pipe, or
/// by copying when there is no pipe to be had (out of descriptors) or the kernel refuses to
/// splice these sockets (EINVAL before a byte moved). Every byte moved is activity.
pub(crate) async fn pump(from: Socket<'_>, to: Socket<'_>, act: &Arc<Activity>) -> io::Result<u64> {
    let moved = AtomicU64::new(0);
    let spliced = match pipe() {
        Ok(p) => splice_direction(from, to, &p, act, &moved).await,
        Err(e) => {
            tracing::debug!("sbx proxy: no pipe ({e}), copying instead");
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
    };
    match spliced {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && moved.load(Ordering::Relaxed) == 0 => {
            let n = tokio::io::copy(&mut Tracked::new(from, act.clone()), &mut { to }).await?;
            to.shutdown_write()?;
            Ok(n)
        }
        r => r,
    }
}

/// Pipe size of each direction of a spliced tunnel: a larger pipe moves more per splice call
/// (1 MiB measured within noise of 256 KiB on the bench, so the smaller bound is kept).
/// At most 256 KiB x 2 x `max_connections` (256) = 128 MiB of pipe pages; past the per-user
/// soft limit (`fs.pipe-user-pages-soft`, 64 MiB by default) an unprivileged sbx gets
/// default-sized pipes instead (see [`pipe`]).
const PIPE_SIZE: usize = 256 * 1024;

/// A non-blocking pipe for one direction, enlarged to [`PIPE_SIZE`] when the kernel agrees (a
/// refusal leaves a smaller pipe, which only costs speed).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
    Ok((r, w))
}

enum Spliced {
    /// Both directions reached EOF: bytes client → upstream, upstream → client.
    Done(u64, u64),
    /// splice(2) was refused with EINVAL (a socket type without splice support) before any
    /// byte moved: the caller copies instead.
    Unsupported,
}

/// The zero-copy relay: each direction is socket → pipe → socket with
/// `SPLICE_F_NONBLOCK | SPLICE_F_MOVE`, driven by tokio's readiness. Same semantics as
/// `copy_bidirectional`: EOF from one side shuts down writing on the other (half-close) and
/// the other direction goes on; an error on either ends both; every byte moved counts as
/// activity for the idle timeout.
async fn splice_relay(client: Socket<'_>, upstream: Socket<'_>, act: &Activity) -> io::Result<Spliced> {
    let up_pipe = pipe()?;
    let down_pipe = pipe()?;
    let moved = AtomicU64::new(0);
    let up = splice_direction(client, upstream, &up_pipe, act, &moved);
    let down = splice_direction(upstream, client, &down_pipe, act, &moved);
    match tokio::try_join!(up, down) {
        Ok((u, d)) => Ok(Spliced::Done(u, d)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && moved.load(Ordering::Relaxed) == 0 => Ok(Spliced::Unsupported),
        Err(e) => Err(e),
    }
}

/// One direction of [`splice_relay`]: fill the pipe from `from`, drain it into `to`, until EOF.
async fn splice_direction(
    from: Socket<'_>,
    to: Socket<'_>,
    (pr, pw): &(OwnedFd, OwnedFd),
    act: &Activity,
    moved: &AtomicU64,
) -> io::Result<u64> {
    let flags = SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE;
    let mut total: u64 = 0;
    loop {
        // The pipe is empty here, so EAGAIN can only mean that the socket has nothing to read.
        let filled = from.io(Interest::READABLE, |fd| Ok(splice(fd, None, pw, None, PIPE_SIZE, flags)?)).await?;
        if filled == 0 {
            to.shutdown_write()?;
            return Ok(total);
        }
        act.touch();
        moved.fetch_add(filled as u64, Ordering::Relaxed);
        let mut left = filled;
        while left > 0 {
            let n = to.io(Interest::WRITABLE, |fd| Ok(splice(pr, None, fd, None, left, flags)?)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            left -= n;
            total += n as u64;
            act.touch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A client that is not a socket (here an in-memory stream) takes the copying relay, with
    /// the same half-close: the client's EOF reaches the upstream, whose reply still comes
    /// back, then its EOF.
    #[tokio::test]
    async fn non_socket_client_is_copied_with_half_close() {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = listener.local_addr().ok();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut got = Vec::new();
            s.read_to_end(&mut got).await?;
            s.write_all(&[b"upstream saw: ", &got[..]].concat()).await?;
            io::Result::Ok(())
        });
        let upstream = match addr {
            Some(a) => TcpStream::connect(a).await,
            None => Err(io::ErrorKind::AddrNotAvailable.into()),
        };
        let upstream = match upstream {
            Ok(s) => s,
            Err(e) => panic!("connect: {e}"),
        };
        assert!(Socket::of(&upstream).is_some() && Socket::of(&tokio::io::duplex(1).0).is_none());
        let (mut client, proxy_side) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(async move { tunnel(proxy_side, upstream, b"early ", Duration::from_secs(30)).await });
        client.write_all(b"late").await.ok();
        client.shutdown().await.ok();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.ok();
        assert_eq!(String::from_utf8_lossy(&answer), "upstream saw: early late");
        assert!(matches!(server.await, Ok(Ok(()))));
        assert!(relay.await.is_ok());
    }
}
