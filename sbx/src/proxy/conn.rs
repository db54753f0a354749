//! Shared connection plumbing: decide + resolve + check + connect, events, tunnels, idle timeout.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::rules::{AddressPolicy, Host, Rules};
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
    }
    // `--ask`: no rule decided; someone may. Only this connection waits.
    if let (Some(ask), Some(h)) = (&inner.ask, &host)
        && !decision.allowed
        && decision.rule == super::rules::NO_RULE
        && port != 0
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
        Host::Name(n) => match tokio::time::timeout_at(deadline, inner.resolver.resolve(n, port)).await {
            Err(_) => {
                emit(true, decision.rule, None);
                return Err(OpenError::Timeout { target });
            }
            Ok(Err(err)) => {
                emit(true, decision.rule, None);
                return Err(OpenError::Resolve { target, err });
            }
            Ok(Ok(a)) => a,
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

/// Buffer of each direction of a relay (tunnels, forwarded responses). tokio's default, 8 KiB,
/// costs a read and a write per 8 KiB and held a 256 MiB loopback download through the proxy
/// to about 45% of direct curl (`cargo xtask bench proxy`); 64 KiB gives 65-80%. At most
/// 2 x 64 KiB x `max_connections` (256) = 32 MiB.
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
    fn touch(&self) {
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
/// or `idle` passes without traffic.
pub(crate) async fn tunnel<S>(client: S, mut upstream: TcpStream, leftover: &[u8], idle: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let act = Arc::new(Activity::new());
    let mut client = Tracked::new(client, act.clone());
    let work = async {
        if !leftover.is_empty() {
            upstream.write_all(leftover).await?;
        }
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, RELAY_BUF, RELAY_BUF).await
    };
    tokio::select! {
        r = work => match r {
            Ok((up, down)) => tracing::trace!(up, down, "sbx proxy tunnel closed"),
            Err(e) => tracing::debug!("sbx proxy tunnel error: {e}"),
        },
        () = idle_watch(&act, idle) => tracing::debug!("sbx proxy tunnel idle timeout"),
    }
}
