//! Shared helpers for the proxy integration tests: loopback upstreams, injected resolver, clients.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sbx::proxy::{BoxFuture, Limits, NetEvent, Proxy, ProxyConfig, Resolver, serve_http, serve_socks5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const T: Duration = Duration::from_secs(10);

/// Resolver backed by a fixed map; unknown names fail with NotFound (no real DNS).
pub struct MapResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolver for MapResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            if host == "hang.test" {
                std::future::pending::<()>().await;
            }
            match self.0.get(host) {
                Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
                None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no test mapping for {host}"))),
            }
        })
    }
}

pub fn test_resolver() -> Arc<MapResolver> {
    let mut m = HashMap::new();
    for n in ["allowed.test", "other.test", "rebind.test", "evil.example", "unlisted.example"] {
        m.insert(n.to_owned(), vec![LO]);
    }
    m.insert("meta.test".to_owned(), vec!["169.254.169.254".parse().expect("ip")]);
    Arc::new(MapResolver(m))
}

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// allowed.test/other.test may resolve to loopback; rebind.test is allowed by name only.
pub fn test_config() -> ProxyConfig {
    ProxyConfig {
        allowed_domains: s(&["allowed.test", "other.test", "rebind.test", "meta.test", "unmapped.test", "hang.test", "evil.example"]),
        denied_domains: s(&["evil.example"]),
        allow_private_resolution: s(&["allowed.test", "other.test", "meta.test"]),
        allow_local_outbound_ports: vec![],
        limits: Limits::default(),
        ask: None,
    }
}

pub struct Running {
    pub http: SocketAddr,
    pub socks: SocketAddr,
    pub events: mpsc::Receiver<NetEvent>,
    pub proxy: Proxy,
    tasks: Vec<tokio::task::JoinHandle<io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Running {
    /// Next event, waiting briefly.
    pub async fn event(&mut self) -> NetEvent {
        tokio::time::timeout(T, self.events.recv()).await.expect("event timeout").expect("event channel closed")
    }
    pub fn no_more_events(&mut self) {
        assert!(self.events.try_recv().is_err(), "unexpected extra event");
    }
}

pub async fn start_proxy(config: ProxyConfig) -> Running {
    start_proxy_cap(config, 1024).await
}

pub async fn start_proxy_cap(config: ProxyConfig, cap: usize) -> Running {
    let (tx, rx) = mpsc::channel(cap);
    let proxy = Proxy::new(&config, test_resolver(), tx).expect("proxy config");
    let hl = TcpListener::bind((LO, 0)).await.expect("bind");
    let sl = TcpListener::bind((LO, 0)).await.expect("bind");
    let (http, socks) = (hl.local_addr().expect("addr"), sl.local_addr().expect("addr"));
    let tasks = vec![
        tokio::spawn(serve_http(hl, proxy.clone())),
        tokio::spawn(serve_socks5(sl, proxy.clone())),
    ];
    Running { http, socks, events: rx, proxy, tasks }
}

/// TCP echo server on 127.0.0.1.
pub async fn tcp_echo() -> SocketAddr {
    tcp_echo_on(LO).await.expect("bind echo")
}

pub async fn tcp_echo_on(ip: IpAddr) -> io::Result<SocketAddr> {
    let l = TcpListener::bind((ip, 0)).await?;
    let a = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(a)
}

/// HTTP server on 127.0.0.1 that answers every request with the request head it saw (plus the
/// body, if Content-Length) as body and reports the head on the channel. It closes after the
/// response when the request says `Connection: close` and `honour_close`; otherwise it keeps the
/// connection open until the peer closes.
pub async fn http_echo() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    http_echo_with(true).await
}

pub async fn http_echo_with(honour_close: bool) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind((LO, 0)).await.expect("bind");
    let a = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(head.clone());
                let body = [&buf[..head_end + len]].concat();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Upstream: yes\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.write_all(&body).await;
                if honour_close && head.to_ascii_lowercase().contains("\r\nconnection: close\r\n") {
                    return;
                }
                // Keep-alive: wait for the client (the proxy) to close.
                let _ = s.read(&mut chunk).await;
            });
        }
    });
    (a, rx)
}

/// Reads until EOF (or error), with a timeout.
pub async fn read_to_end<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await.expect("read_to_end timeout");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads an HTTP response head (up to the blank line).
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(T, s.read(&mut b)).await.expect("read_head timeout") {
            Ok(1) => out.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `raw` to the HTTP proxy and returns the whole response (proxy closes).
pub async fn http_exchange(proxy: SocketAddr, raw: &str) -> String {
    let mut c = TcpStream::connect(proxy).await.expect("connect proxy");
    c.write_all(raw.as_bytes()).await.expect("write");
    read_to_end(&mut c).await
}

/// Sends `data` and expects it echoed.
pub async fn assert_echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, data: &[u8]) {
    s.write_all(data).await.expect("write");
    let mut got = vec![0u8; data.len()];
    tokio::time::timeout(T, s.read_exact(&mut got)).await.expect("echo timeout").expect("echo read");
    assert_eq!(got, data);
}

pub fn forbidden(body: &str) -> String {
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// SOCKS5 no-auth greeting; returns the stream after method selection.
pub async fn socks_greet(proxy: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(proxy).await.expect("connect socks");
    c.write_all(&[5, 1, 0]).await.expect("greet");
    let mut m = [0u8; 2];
    tokio::time::timeout(T, c.read_exact(&mut m)).await.expect("timeout").expect("method");
    assert_eq!(m, [5, 0]);
    c
}

pub enum Addr<'a> {
    V4([u8; 4]),
    Domain(&'a str),
    V6([u8; 16]),
}

/// Sends a SOCKS5 request; returns (reply code, stream).
pub async fn socks_request(proxy: SocketAddr, cmd: u8, addr: Addr<'_>, port: u16) -> (u8, TcpStream) {
    let mut c = socks_greet(proxy).await;
    let mut req = vec![5, cmd, 0];
    match addr {
        Addr::V4(a) => {
            req.push(1);
            req.extend_from_slice(&a);
        }
        Addr::Domain(d) => {
            req.push(3);
            req.push(u8::try_from(d.len()).expect("short name"));
            req.extend_from_slice(d.as_bytes());
        }
        Addr::V6(a) => {
            req.push(4);
            req.extend_from_slice(&a);
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    c.write_all(&req).await.expect("request");
    let mut rep = [0u8; 4];
    tokio::time::timeout(T, c.read_exact(&mut rep)).await.expect("timeout").expect("reply");
    assert_eq!(rep[0], 5);
    let rest = match rep[3] {
        1 => 6,
        4 => 18,
        other => panic!("unexpected bound atyp {other}"),
    };
    let mut skip = vec![0u8; rest];
    tokio::time::timeout(T, c.read_exact(&mut skip)).await.expect("timeout").expect("bound addr");
    (rep[1], c)
}

/// Opens a CONNECT tunnel; returns the response head and stream.
pub async fn http_connect(proxy: SocketAddr, target: &str) -> (String, TcpStream) {
    let mut c = TcpStream::connect(proxy).await.expect("connect proxy");
    c.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.expect("write");
    let head = read_head(&mut c).await;
    (head, c)
}
