//! sbx's egress proxy: HTTP (CONNECT + absolute-URI) and SOCKS5 servers enforcing a name policy.
//!
//! The sandbox has only loopback; its one way out is this proxy, running in the sbx process on
//! the host. Every connection attempt is matched against [`rules::Rules`] (see that module for
//! pattern syntax, apex semantics and the DNS-rebinding defence), resolved through an injectable
//! [`Resolver`], checked address by address, and reported as a [`NetEvent`] on a bounded channel
//! (`try_send`: never blocks; drops are counted, see [`Proxy::dropped_events`]).
//!
//! Servers run on listeners handed in by the caller ([`serve_http`], [`serve_socks5`]) — TCP or
//! Unix ([`Listener`]). Each connection is its own task; a shared semaphore caps concurrent
//! connections ([`Limits::max_connections`]; over it: HTTP 503 / SOCKS reply 0x01, from at most
//! 4 × max(limit, 16) short-lived refusal tasks; past that, connections are closed unanswered).
//! Dropping (aborting) a serve future aborts all of its connections.

pub mod ask;
mod conn;
pub mod dns;
pub mod egress;
#[cfg(test)]
mod fuzz;
mod http;
mod listener;
mod resolve;
pub mod rules;
mod socks;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::{Semaphore, mpsc};

pub use listener::Listener;
pub use resolve::{BoxFuture, Resolver, SystemResolver};
pub use rules::{AddressPolicy, Decision, Host, RuleError, Rules};

/// Policy and limits of one proxy instance (JSON names in the docs are sbx's config keys).
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// `allowedDomains`: patterns that may be reached.
    pub allowed_domains: Vec<String>,
    /// `deniedDomains`: patterns that may never be reached (beats everything).
    pub denied_domains: Vec<String>,
    /// `allowPrivateResolution`: allowed names (same pattern syntax) that may resolve to
    /// loopback/private/link-local/CGNAT/... addresses (never to cloud-metadata).
    pub allow_private_resolution: Vec<String>,
    /// `allowLocalOutboundPorts`: `localhost`/`127.0.0.1`/`::1` on these ports are allowed.
    pub allow_local_outbound_ports: Vec<u16>,
    /// Resource limits.
    pub limits: Limits,
    /// `sbx monitor --ask`: hold connections that no rule decides and ask.
    pub ask: Option<ask::Asker>,
}

/// Resource limits; see the defaults in [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent connections across both servers of one [`Proxy`] (default 256).
    pub max_connections: usize,
    /// Time to read an HTTP request head / SOCKS handshake (default 10 s).
    pub header_timeout: Duration,
    /// Time to resolve and connect to the upstream (default 10 s).
    pub connect_timeout: Duration,
    /// A tunnel or forwarded request with no traffic either way for this long is closed
    /// (default 300 s).
    pub idle_timeout: Duration,
    /// Maximum HTTP request head size; larger → 431 (default 16 KiB).
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_head_bytes: 16 * 1024,
        }
    }
}

/// Which front end saw the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain absolute-URI HTTP forwarding.
    Http,
    /// HTTP `CONNECT` tunnel.
    Connect,
    /// SOCKS5 `CONNECT`.
    Socks5,
    /// A direct TCP connection to a port of the host's loopback
    /// (`allowLocalOutboundPorts`), relayed from the same port inside.
    Forward,
    /// A connection from the host to a port exposed with `-p`.
    Inbound,
    /// A connect(2) from the sandbox to an address, carried out on the host
    /// (transparent egress, [`egress`]).
    Direct,
    /// A query to sbx's DNS in the sandbox ([`egress`]); only refusals are events.
    Dns,
}

impl Protocol {
    /// The name in events (`net.protocol` of the log schema).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Connect => "connect",
            Protocol::Socks5 => "socks5",
            Protocol::Forward => "forward",
            Protocol::Inbound => "inbound",
            Protocol::Direct => "direct",
            Protocol::Dns => "dns",
        }
    }

    /// The path a connection took out (`net.via` of the log schema): `direct` for
    /// transparent egress, `proxy` for the proxy's front ends; none for inbound and DNS.
    pub fn via(self) -> Option<&'static str> {
        match self {
            Protocol::Http | Protocol::Connect | Protocol::Socks5 | Protocol::Forward => Some("proxy"),
            Protocol::Direct => Some("direct"),
            Protocol::Inbound | Protocol::Dns => None,
        }
    }
}

/// One allow/deny decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    /// When the decision was made.
    pub time: SystemTime,
    /// Front end.
    pub protocol: Protocol,
    /// Normalised host (ASCII/punycode, IPv6 without brackets); raw if it was invalid.
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// Whether the connection was let through.
    pub allowed: bool,
    /// The rule that decided (see [`Decision::rule`]); address refusals append the reason.
    pub rule: String,
    /// The address connected to (or refused); `None` if denied before resolution.
    pub resolved: Option<IpAddr>,
    /// The client: `ip:port` for TCP, `unix:pid=N,uid=N` for Unix sockets, `pid=N` for a
    /// direct connection.
    pub client: String,
    /// A DNS query's type (`A`, `AAAA`, ...), for protocol [`Protocol::Dns`].
    pub dns_type: Option<String>,
}

/// Errors building a [`Proxy`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Invalid policy entry.
    #[error(transparent)]
    Rules(#[from] RuleError),
    /// Invalid limits.
    #[error("invalid limits: {0}")]
    Limits(&'static str),
}

pub(crate) struct Inner {
    pub(crate) rules: Rules,
    pub(crate) limits: Limits,
    pub(crate) resolver: Arc<dyn Resolver>,
    events: mpsc::Sender<NetEvent>,
    dropped: AtomicU64,
    pub(crate) conns: Arc<Semaphore>,
    pub(crate) rejects: Arc<Semaphore>,
    pub(crate) ask: Option<ask::Ask>,
}

impl Inner {
    pub(crate) fn emit(&self, ev: NetEvent) {
        tracing::debug!(
            protocol = ?ev.protocol, host = %ev.host, port = ev.port, allowed = ev.allowed,
            rule = %ev.rule, resolved = ?ev.resolved, client = %ev.client, "sbx proxy decision"
        );
        if self.events.try_send(ev).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A configured proxy; cheap to clone. One instance can serve several listeners, which then
/// share the connection limit.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) inner: Arc<Inner>,
}

impl Proxy {
    /// Validates `config` and builds a proxy resolving through `resolver`
    /// (use [`SystemResolver`] for `tokio::net::lookup_host`).
    pub fn new(
        config: &ProxyConfig,
        resolver: Arc<dyn Resolver>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<Proxy, ProxyError> {
        let rules = Rules::new(
            &config.allowed_domains,
            &config.denied_domains,
            &config.allow_private_resolution,
            &config.allow_local_outbound_ports,
        )?;
        let limits = config.limits;
        if limits.max_connections == 0 || limits.max_connections > Semaphore::MAX_PERMITS / 4 {
            return Err(ProxyError::Limits("max_connections out of range"));
        }
        if limits.max_head_bytes < 512 {
            return Err(ProxyError::Limits("max_head_bytes below 512"));
        }
        if limits.header_timeout.is_zero() || limits.connect_timeout.is_zero() || limits.idle_timeout.is_zero() {
            return Err(ProxyError::Limits("timeouts must be non-zero"));
        }
        Ok(Proxy {
            inner: Arc::new(Inner {
                rules,
                limits,
                resolver,
                events,
                dropped: AtomicU64::new(0),
                conns: Arc::new(Semaphore::new(limits.max_connections)),
                rejects: Arc::new(Semaphore::new(limits.max_connections.max(16) * 4)),
                ask: config.ask.clone().map(ask::Ask::new),
            }),
        })
    }

    /// Events that could not be queued (channel full or closed).
    /// Reports a decision made outside the proxy's own servers (inbound
    /// ports), through the same bounded channel.
    pub fn report(&self, event: NetEvent) {
        self.inner.emit(event);
    }

    pub fn dropped_events(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The validated policy.
    pub fn rules(&self) -> &Rules {
        &self.inner.rules
    }
}

/// Serves the HTTP proxy on `listener` until a fatal accept error (transient ones such as
/// EMFILE are logged and retried). Cancel-safe: dropping the future aborts its connections.
pub async fn serve_http<L: Listener>(listener: L, proxy: Proxy) -> std::io::Result<()> {
    listener::serve(listener, proxy, listener::Kind::Http).await
}

/// Relays every connection on `listener` to port `port` of the host's
/// loopback; same contract as [`serve_http`]. The port must be in
/// `allowLocalOutboundPorts` (the decision is still made, and reported, per
/// connection).
pub async fn serve_forward<L: Listener>(listener: L, proxy: Proxy, port: u16) -> std::io::Result<()> {
    listener::serve(listener, proxy, listener::Kind::Forward(port)).await
}

pub(crate) async fn forward<S>(inner: &Inner, client: S, peer: String, port: u16)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let host = "127.0.0.1";
    let decision = inner.rules.decide(&Host::Ip(IpAddr::from([127, 0, 0, 1])), port);
    let mut event = NetEvent {
        time: SystemTime::now(),
        protocol: Protocol::Forward,
        host: host.to_owned(),
        port,
        allowed: decision.allowed,
        rule: decision.rule.clone(),
        resolved: Some(IpAddr::from([127, 0, 0, 1])),
        client: peer,
        dns_type: None,
    };
    if !decision.allowed {
        inner.emit(event);
        return;
    }
    // The host's service may listen on either loopback address: 127.0.0.1
    // first, then ::1 when nothing listens there.
    let connect = async {
        match tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tokio::net::TcpStream::connect((Ipv6Addr::LOCALHOST, port)).await.map_err(|_| e)
            }
            r => r,
        }
    };
    match tokio::time::timeout(inner.limits.connect_timeout, connect).await {
        Ok(Ok(upstream)) => {
            event.resolved = upstream.peer_addr().ok().map(|a| a.ip()).or(event.resolved);
            inner.emit(event);
            conn::tunnel(client, upstream, &[], inner.limits.idle_timeout).await;
        }
        Ok(Err(e)) => {
            event.rule = format!("{}; connect failed: {e}", event.rule);
            inner.emit(event);
        }
        Err(_) => {
            event.rule = format!("{}; connect timed out", event.rule);
            inner.emit(event);
        }
    }
}

/// Serves the SOCKS5 proxy on `listener`; same contract as [`serve_http`].
pub async fn serve_socks5<L: Listener>(listener: L, proxy: Proxy) -> std::io::Result<()> {
    listener::serve(listener, proxy, listener::Kind::Socks5).await
}
