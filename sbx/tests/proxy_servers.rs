//! End-to-end tests of the HTTP and SOCKS5 servers over real loopback sockets.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use common::*;
use sbx::proxy::{Limits, Protocol, Proxy, serve_http};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn connect_allowed_flows_both_ways() {
    let echo = tcp_echo().await;
    let mut p = start_proxy(test_config()).await;
    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"hello through the tunnel").await;
    assert_echo(&mut c, &vec![7u8; 200_000]).await;
    let ev = p.event().await;
    assert_eq!(ev.protocol, Protocol::Connect);
    assert_eq!((ev.host.as_str(), ev.port, ev.allowed), ("allowed.test", echo.port(), true));
    assert_eq!(ev.rule, "allowedDomains: allowed.test");
    assert_eq!(ev.resolved, Some(LO));
    assert_eq!(ev.client, c.local_addr().expect("addr").to_string());
    p.no_more_events();
}

#[tokio::test]
async fn connect_forwards_bytes_sent_before_the_200() {
    let echo = tcp_echo().await;
    let p = start_proxy(test_config()).await;
    let mut c = TcpStream::connect(p.http).await.expect("connect");
    let req = format!("CONNECT Other.Test.:{} HTTP/1.1\r\n\r\nearly-bytes", echo.port());
    c.write_all(req.as_bytes()).await.expect("write");
    assert_eq!(read_head(&mut c).await, "HTTP/1.1 200 Connection established\r\n\r\n");
    let mut got = [0u8; 11];
    c.read_exact(&mut got).await.expect("early echo");
    assert_eq!(&got, b"early-bytes");
}

#[tokio::test]
async fn connect_denied_gets_403_with_exact_body() {
    let mut p = start_proxy(test_config()).await;
    let resp = http_exchange(p.http, "CONNECT unlisted.example:443 HTTP/1.1\r\n\r\n").await;
    assert_eq!(resp, forbidden("sbx: blocked connection to unlisted.example:443 (no rule allows it)\n"));
    let ev = p.event().await;
    assert_eq!((ev.protocol, ev.host.as_str(), ev.port, ev.allowed), (Protocol::Connect, "unlisted.example", 443, false));
    assert_eq!((ev.rule.as_str(), ev.resolved), ("no rule allows it", None));

    let resp = http_exchange(p.http, "CONNECT EVIL.example.:443 HTTP/1.1\r\n\r\n").await;
    assert_eq!(resp, forbidden("sbx: blocked connection to evil.example:443 (deniedDomains: evil.example)\n"));
    let ev = p.event().await;
    assert_eq!((ev.host.as_str(), ev.allowed, ev.rule.as_str()), ("evil.example", false, "deniedDomains: evil.example"));

    let resp = http_exchange(p.http, "CONNECT [::1]:22 HTTP/1.1\r\n\r\n").await;
    assert_eq!(resp, forbidden("sbx: blocked connection to [::1]:22 (no rule allows it)\n"));
    assert_eq!(p.event().await.host, "::1");
    p.no_more_events();
}

#[tokio::test]
async fn absolute_uri_get_is_rewritten_and_relayed() {
    let (up, mut seen) = http_echo().await;
    let mut p = start_proxy(test_config()).await;
    let req = format!(
        "GET http://allowed.test:{}/some/path?q=1#frag HTTP/1.1\r\nHost: allowed.test\r\nProxy-Authorization: Basic eA==\r\n\
         Proxy-Connection: keep-alive\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Test: kept\r\n\r\n",
        up.port()
    );
    let resp = http_exchange(p.http, &req).await;
    let head = tokio::time::timeout(T, seen.recv()).await.expect("timeout").expect("upstream head");
    assert_eq!(
        head,
        format!("GET /some/path?q=1 HTTP/1.1\r\nHost: allowed.test:{}\r\nX-Test: kept\r\nConnection: close\r\n\r\n", up.port())
    );
    let (resp_head, body) = resp.split_once("\r\n\r\n").expect("response");
    assert_eq!(resp_head, format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Upstream: yes\r\nConnection: close", head.len()));
    assert_eq!(body, head);
    let ev = p.event().await;
    assert_eq!((ev.protocol, ev.host.as_str(), ev.port, ev.allowed), (Protocol::Http, "allowed.test", up.port(), true));
    assert_eq!(ev.resolved, Some(LO));
    p.no_more_events();
}

#[tokio::test]
async fn absolute_uri_post_streams_body() {
    let (up, mut seen) = http_echo().await;
    let p = start_proxy(test_config()).await;
    let body = "x".repeat(100_000);
    let mut c = TcpStream::connect(p.http).await.expect("connect");
    let head = format!("POST http://other.test:{}/upload HTTP/1.1\r\nContent-Length: {}\r\n\r\n", up.port(), body.len());
    c.write_all(head.as_bytes()).await.expect("head");
    for chunk in body.as_bytes().chunks(7000) {
        c.write_all(chunk).await.expect("body");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let resp = read_to_end(&mut c).await;
    let seen_head = seen.recv().await.expect("upstream head");
    assert!(seen_head.starts_with("POST /upload HTTP/1.1\r\n"), "{seen_head}");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{}", &resp[..resp.len().min(200)]);
    assert!(resp.ends_with(&body), "body relayed");
}

/// The HTTP front end served on a Unix socket in a directory of its own (both
/// removed on drop), as stage-2's clients reach it.
struct UnixFront {
    dir: std::path::PathBuf,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl UnixFront {
    fn start(tag: &str, proxy: &Proxy) -> UnixFront {
        let dir = std::env::temp_dir().join(format!("sbx-proxy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let listener = tokio::net::UnixListener::bind(dir.join("http.sock")).expect("bind unix");
        UnixFront { task: tokio::spawn(serve_http(listener, proxy.clone())), dir }
    }

    async fn connect(&self) -> tokio::net::UnixStream {
        tokio::net::UnixStream::connect(self.dir.join("http.sock")).await.expect("connect unix")
    }
}

impl Drop for UnixFront {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Absolute-URI forwarding with bodies of megabytes both ways (spliced after the heads when
/// the client is a socket): a 3 MiB upload echoed back whole, from a TCP and a Unix client.
#[tokio::test]
async fn absolute_uri_large_bodies_both_ways() {
    let (up, mut seen) = http_echo().await;
    let p = start_proxy(test_config()).await;
    let body: Vec<u8> = (0..3usize << 20).map(|i| (i % 253) as u8).collect();
    let head = format!("POST http://allowed.test:{}/big HTTP/1.1\r\nContent-Length: {}\r\n\r\n", up.port(), body.len());
    async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(c: &mut S, head: &str, body: &[u8]) -> Vec<u8> {
        c.write_all(head.as_bytes()).await.expect("head");
        c.write_all(body).await.expect("body");
        let mut resp = Vec::new();
        tokio::time::timeout(T, c.read_to_end(&mut resp)).await.expect("timeout").expect("read");
        resp
    }
    let check = |resp: &[u8]| {
        assert!(resp.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", String::from_utf8_lossy(&resp[..resp.len().min(200)]));
        assert!(resp.ends_with(&body), "body relayed whole ({} bytes back)", resp.len());
    };
    let mut c = TcpStream::connect(p.http).await.expect("connect");
    check(&exchange(&mut c, &head, &body).await);
    assert!(seen.recv().await.expect("upstream head").starts_with("POST /big HTTP/1.1\r\n"));

    let front = UnixFront::start("forward", &p.proxy);
    check(&exchange(&mut front.connect().await, &head, &body).await);
}

/// An upstream that reads one request head, writes `reply` and closes.
async fn scripted_upstream(reply: &'static [u8]) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind((LO, 0)).await.expect("bind");
    let a = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply).await;
            });
        }
    });
    a
}

/// What the upstream answers reaches the client over the spliced path as over the copying
/// one: interim 1xx heads verbatim before the final head, the body after it; no response, or
/// a malformed one, is a 502 naming the problem.
#[tokio::test]
async fn forwarded_responses_interim_heads_and_upstream_failures() {
    let p = start_proxy(test_config()).await;
    let get = |a: std::net::SocketAddr| format!("GET http://allowed.test:{}/ HTTP/1.1\r\n\r\n", a.port());

    let up = scripted_upstream(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: 5\r\n\r\nhello").await;
    let resp = http_exchange(p.http, &get(up)).await;
    assert_eq!(resp, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");

    let up = scripted_upstream(b"").await;
    let resp = http_exchange(p.http, &get(up)).await;
    assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && resp.ends_with("sbx: upstream closed without a response\n"), "{resp}");

    let up = scripted_upstream(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    let resp = http_exchange(p.http, &get(up)).await;
    assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway\r\n") && resp.contains("sbx: malformed upstream response"), "{resp}");
}

#[tokio::test]
async fn forward_to_server_ignoring_connection_close_ends_on_idle() {
    let (up, _seen) = http_echo_with(false).await;
    let mut cfg = test_config();
    cfg.limits = short_limits();
    let p = start_proxy(cfg).await;
    let t = Instant::now();
    let resp = http_exchange(p.http, &format!("GET http://allowed.test:{}/ HTTP/1.1\r\n\r\n", up.port())).await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n") && resp.ends_with("\r\n\r\n"), "{resp}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn absolute_uri_denied_and_unresolvable() {
    let mut p = start_proxy(test_config()).await;
    let resp = http_exchange(p.http, "GET http://unlisted.example/x HTTP/1.1\r\n\r\n").await;
    assert_eq!(resp, forbidden("sbx: blocked connection to unlisted.example:80 (no rule allows it)\n"));
    let ev = p.event().await;
    assert_eq!((ev.protocol, ev.port, ev.allowed), (Protocol::Http, 80, false));

    let resp = http_exchange(p.http, "GET http://unmapped.test/ HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{resp}");
    assert!(resp.contains("sbx: could not resolve unmapped.test:80"), "{resp}");
    let ev = p.event().await;
    assert_eq!((ev.allowed, ev.resolved, ev.rule.as_str()), (true, None, "allowedDomains: unmapped.test"));
}

#[tokio::test]
async fn socks5_domain_allowed_and_denied() {
    let echo = tcp_echo().await;
    let mut p = start_proxy(test_config()).await;
    let (rep, mut c) = socks_request(p.socks, 1, Addr::Domain("allowed.test"), echo.port()).await;
    assert_eq!(rep, 0);
    assert_echo(&mut c, b"socks bytes").await;
    let ev = p.event().await;
    assert_eq!((ev.protocol, ev.host.as_str(), ev.port, ev.allowed), (Protocol::Socks5, "allowed.test", echo.port(), true));
    assert_eq!((ev.rule.as_str(), ev.resolved), ("allowedDomains: allowed.test", Some(LO)));

    let (rep, mut c) = socks_request(p.socks, 1, Addr::Domain("unlisted.example"), echo.port()).await;
    assert_eq!(rep, 0x02);
    assert_eq!(read_to_end(&mut c).await, "", "closed after refusal");
    let ev = p.event().await;
    assert_eq!((ev.protocol, ev.allowed, ev.rule.as_str()), (Protocol::Socks5, false, "no rule allows it"));

    let (rep, _) = socks_request(p.socks, 1, Addr::Domain("evil.example"), 443).await;
    assert_eq!(rep, 0x02);
    assert_eq!(p.event().await.rule, "deniedDomains: evil.example");
    p.no_more_events();
}

#[tokio::test]
async fn socks5_ip_literals_only_when_listed() {
    let echo = tcp_echo().await;
    let mut p = start_proxy(test_config()).await;
    let (rep, _) = socks_request(p.socks, 1, Addr::V4([127, 0, 0, 1]), echo.port()).await;
    assert_eq!(rep, 0x02);
    let ev = p.event().await;
    assert_eq!((ev.host.as_str(), ev.allowed, ev.rule.as_str()), ("127.0.0.1", false, "no rule allows it"));

    let mut cfg = test_config();
    cfg.allowed_domains.push(format!("127.0.0.1:{}", echo.port()));
    let mut p = start_proxy(cfg).await;
    let (rep, mut c) = socks_request(p.socks, 1, Addr::V4([127, 0, 0, 1]), echo.port()).await;
    assert_eq!(rep, 0);
    assert_echo(&mut c, b"literal").await;
    let ev = p.event().await;
    assert_eq!((ev.allowed, ev.rule.clone(), ev.resolved), (true, format!("allowedDomains: 127.0.0.1:{}", echo.port()), Some(LO)));
    // A different port on the same literal is not covered.
    let (rep, _) = socks_request(p.socks, 1, Addr::V4([127, 0, 0, 1]), 9).await;
    assert_eq!(rep, 0x02);
    // The domain form of an IP literal is the same literal.
    let (rep, _) = socks_request(p.socks, 1, Addr::Domain("127.0.0.1"), echo.port()).await;
    assert_eq!(rep, 0);
}

#[tokio::test]
async fn socks5_ipv6_literal() {
    let Ok(echo6) = tcp_echo_on(IpAddr::V6(Ipv6Addr::LOCALHOST)).await else {
        eprintln!("no IPv6 loopback; skipping");
        return;
    };
    let mut cfg = test_config();
    let mut p = start_proxy(cfg.clone()).await;
    let v6 = Ipv6Addr::LOCALHOST.octets();
    let (rep, _) = socks_request(p.socks, 1, Addr::V6(v6), echo6.port()).await;
    assert_eq!(rep, 0x02);
    assert_eq!(p.event().await.host, "::1");
    cfg.allowed_domains.push(format!("[::1]:{}", echo6.port()));
    let p = start_proxy(cfg).await;
    let (rep, mut c) = socks_request(p.socks, 1, Addr::V6(v6), echo6.port()).await;
    assert_eq!(rep, 0);
    assert_echo(&mut c, b"six").await;
    let (head, mut c) = http_connect(p.http, &format!("[::1]:{}", echo6.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"six via connect").await;
}

#[tokio::test]
async fn socks5_protocol_errors() {
    let mut p = start_proxy(test_config()).await;
    // BIND (2) and UDP ASSOCIATE (3) are not supported.
    for cmd in [2u8, 3] {
        let (rep, _) = socks_request(p.socks, cmd, Addr::Domain("allowed.test"), 80).await;
        assert_eq!(rep, 0x07);
    }
    // Only username/password offered: no acceptable method.
    let mut c = TcpStream::connect(p.socks).await.expect("connect");
    c.write_all(&[5, 1, 2]).await.expect("greet");
    let mut m = [0u8; 2];
    c.read_exact(&mut m).await.expect("method");
    assert_eq!(m, [5, 0xff]);
    // SOCKS4 / garbage: closed without reply.
    let mut c = TcpStream::connect(p.socks).await.expect("connect");
    c.write_all(&[4, 1, 0, 80, 127, 0, 0, 1, 0]).await.expect("socks4");
    assert_eq!(read_to_end(&mut c).await, "");
    // Unknown address type.
    let mut c = socks_greet(p.socks).await;
    c.write_all(&[5, 1, 0, 9]).await.expect("req");
    let mut rep = [0u8; 10];
    c.read_exact(&mut rep).await.expect("reply");
    assert_eq!(rep[1], 0x08);
    p.no_more_events();
}

#[tokio::test]
async fn dns_rebinding_is_refused_unless_opted_in() {
    let echo = tcp_echo().await;
    let mut p = start_proxy(test_config()).await;
    let port = echo.port();
    let resp = http_exchange(p.http, &format!("CONNECT rebind.test:{port} HTTP/1.1\r\n\r\n")).await;
    let why = "allowedDomains: rebind.test; resolved to loopback address 127.0.0.1, refused: \
               DNS rebinding defence, name not in allowPrivateResolution";
    assert_eq!(resp, forbidden(&format!("sbx: blocked connection to rebind.test:{port} ({why})\n")));
    let ev = p.event().await;
    assert_eq!((ev.host.as_str(), ev.allowed, ev.rule.as_str(), ev.resolved), ("rebind.test", false, why, Some(LO)));

    let (rep, _) = socks_request(p.socks, 1, Addr::Domain("rebind.test"), port).await;
    assert_eq!(rep, 0x02);
    assert_eq!(p.event().await.rule, why);

    // The opted-in name resolving to the same address goes through.
    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{port}")).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"ok").await;
    assert!(p.event().await.allowed);

    // Cloud metadata is refused even for opted-in names (nothing is connected to).
    let resp = http_exchange(p.http, "GET http://meta.test/latest/meta-data/ HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{resp}");
    assert!(resp.contains("resolved to cloud-metadata address 169.254.169.254"), "{resp}");
    let ev = p.event().await;
    assert_eq!((ev.allowed, ev.resolved), (false, Some("169.254.169.254".parse().expect("ip"))));
}

#[tokio::test]
async fn local_outbound_ports() {
    let echo = tcp_echo().await;
    let mut cfg = test_config();
    cfg.allow_local_outbound_ports = vec![echo.port()];
    let mut p = start_proxy(cfg).await;
    // "localhost" is not in the injected resolver: it is never resolved, 127.0.0.1 is used.
    let (head, mut c) = http_connect(p.http, &format!("localhost:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"db").await;
    let ev = p.event().await;
    assert_eq!((ev.rule.clone(), ev.resolved), (format!("allowLocalOutboundPorts: {}", echo.port()), Some(LO)));
    let (rep, mut c) = socks_request(p.socks, 1, Addr::V4([127, 0, 0, 1]), echo.port()).await;
    assert_eq!(rep, 0);
    assert_echo(&mut c, b"db2").await;
    assert!(p.event().await.allowed);
    let resp = http_exchange(p.http, "CONNECT localhost:1 HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
}

#[tokio::test]
async fn malformed_requests_get_400_and_server_keeps_serving() {
    let echo = tcp_echo().await;
    let mut p = start_proxy(test_config()).await;
    for bad in [
        "GARBAGE\r\n\r\n",
        "GET /relative HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        "CONNECT allowed.test HTTP/1.1\r\n\r\n",
        "CONNECT allowed.test:0 HTTP/1.1\r\n\r\n",
        "CONNECT ::1:443 HTTP/1.1\r\n\r\n",
        "GET https://allowed.test/ HTTP/1.1\r\n\r\n",
        "GET http://user@allowed.test/ HTTP/1.1\r\n\r\n",
        "GET http://allowed.test/ HTTP/1.1\r\nBad Header\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7f\x03\x03\r\n\r\n",
    ] {
        let resp = http_exchange(p.http, bad).await;
        assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad:?} -> {resp:?}");
    }
    // Head larger than 16 KiB.
    let big = format!("GET http://allowed.test/ HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let resp = http_exchange(p.http, &big).await;
    assert!(resp.starts_with("HTTP/1.1 431 "), "{}", &resp[..resp.len().min(100)]);
    // Invalid names are denied decisions, reported as such.
    let resp = http_exchange(p.http, "CONNECT bad..name:443 HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 403 "), "{resp}");
    let ev = p.event().await;
    assert!(!ev.allowed && ev.rule.starts_with("invalid host name"), "{ev:?}");
    p.no_more_events();
    // Still serving.
    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"alive").await;
}

fn short_limits() -> Limits {
    Limits { header_timeout: Duration::from_millis(500), idle_timeout: Duration::from_millis(400), ..Limits::default() }
}

#[tokio::test]
async fn slowloris_is_cut_off_while_others_are_served() {
    let echo = tcp_echo().await;
    let mut cfg = test_config();
    cfg.limits.header_timeout = Duration::from_millis(500);
    let p = start_proxy(cfg).await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(p.http).await.expect("connect");
    slow.write_all(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allo").await.expect("partial");
    let mut slow_socks = TcpStream::connect(p.socks).await.expect("connect");
    slow_socks.write_all(&[5]).await.expect("partial");

    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"served meanwhile").await;
    assert!(started.elapsed() < Duration::from_millis(400), "served before the slow client timed out");

    let resp = read_to_end(&mut slow).await;
    let took = started.elapsed();
    assert!(resp.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{resp}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(3), "{took:?}");
    assert_eq!(read_to_end(&mut slow_socks).await, "");
    // The tunnel opened meanwhile is unaffected until it idles out.
    assert_echo(&mut c, b"still open").await;
}

#[tokio::test]
async fn idle_tunnel_is_closed() {
    let echo = tcp_echo().await;
    let mut cfg = test_config();
    cfg.limits = short_limits();
    let p = start_proxy(cfg).await;
    let (_, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    // Traffic keeps it open past the idle timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_echo(&mut c, b"tick").await;
    }
    // ...silence closes it.
    let t = Instant::now();
    assert_eq!(read_to_end(&mut c).await, "");
    assert!(t.elapsed() >= Duration::from_millis(350) && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[tokio::test]
async fn connection_limit_answers_503_and_socks_01() {
    let echo = tcp_echo().await;
    let mut cfg = test_config();
    cfg.limits.max_connections = 1;
    let p = start_proxy(cfg).await;
    let (head, mut held) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    let resp = http_exchange(p.http, &format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", echo.port())).await;
    assert!(resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{resp}");
    let (rep, _) = socks_request(p.socks, 1, Addr::Domain("allowed.test"), echo.port()).await;
    assert_eq!(rep, 0x01);
    assert_echo(&mut held, b"holder unaffected").await;
    drop(held);
    // The permit comes back once the tunnel ends.
    let mut ok = false;
    for _ in 0..50 {
        let (head, _c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
        if head.starts_with("HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "permit released");
}

#[tokio::test]
async fn events_never_block_and_drops_are_counted() {
    let mut p = start_proxy_cap(test_config(), 1).await;
    for _ in 0..3 {
        let resp = http_exchange(p.http, "CONNECT unlisted.example:443 HTTP/1.1\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 403"));
    }
    assert_eq!(p.proxy.dropped_events(), 2);
    assert_eq!(p.event().await.host, "unlisted.example");
}

#[tokio::test]
async fn unix_listener_is_served() {
    let echo = tcp_echo().await;
    let mut events = start_proxy(test_config()).await;
    let front = UnixFront::start("test", &events.proxy);
    let mut c = front.connect().await;
    c.write_all(format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", echo.port()).as_bytes()).await.expect("write");
    assert_eq!(read_head(&mut c).await, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"over unix").await;
    let ev = events.event().await;
    assert!(ev.client.starts_with(&format!("unix:pid={},uid=", std::process::id())), "{}", ev.client);
}

#[tokio::test]
async fn resolution_and_connect_are_bounded_by_connect_timeout() {
    let mut cfg = test_config();
    cfg.limits.connect_timeout = Duration::from_millis(300);
    let mut p = start_proxy(cfg).await;
    let t = Instant::now();
    let resp = http_exchange(p.http, "CONNECT hang.test:443 HTTP/1.1\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{resp}");
    assert!(resp.ends_with("sbx: timed out connecting to hang.test:443\n"), "{resp}");
    assert!(t.elapsed() < Duration::from_secs(3));
    let ev = p.event().await;
    assert_eq!((ev.allowed, ev.resolved), (true, None));
    let (rep, _) = socks_request(p.socks, 1, Addr::Domain("hang.test"), 443).await;
    assert_eq!(rep, 0x04);
    // Allowed but nothing listening: 502 / SOCKS 0x05.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let resp = http_exchange(p.http, &format!("CONNECT allowed.test:{closed} HTTP/1.1\r\n\r\n")).await;
    assert!(resp.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{resp}");
    let (rep, _) = socks_request(p.socks, 1, Addr::Domain("allowed.test"), closed).await;
    assert_eq!(rep, 0x05);
}

#[tokio::test]
async fn invalid_config_names_the_entry() {
    let mut cfg = test_config();
    cfg.denied_domains.push("*.bad.*".into());
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = Proxy::new(&cfg, test_resolver(), tx).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("invalid deniedDomains entry \"*.bad.*\": '*' is only allowed as the whole host or a leading '*.' label")
    );
}

/// A loopback server that reads until the client's EOF, then answers with a digest of what it
/// got followed by `reply_len` bytes, and closes.
async fn half_close_server(reply_len: usize) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind((LO, 0)).await.expect("bind");
    let a = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut got = Vec::new();
                if s.read_to_end(&mut got).await.is_err() {
                    return;
                }
                let sum: u64 = got.iter().map(|&b| u64::from(b)).sum();
                let head = format!("{} {sum}\n", got.len());
                let body: Vec<u8> = (0..reply_len).map(|i| (i % 251) as u8).collect();
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&body).await;
            });
        }
    });
    a
}

/// Sends `up` bytes, half-closes, and checks the server's digest and its `down`-byte reply
/// through the tunnel, then the EOF.
async fn check_half_close<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(c: &mut S, up: usize, down: usize) {
    let data: Vec<u8> = (0..up).map(|i| (i % 253) as u8).collect();
    c.write_all(&data).await.expect("write");
    c.shutdown().await.expect("half-close");
    let mut answer = Vec::new();
    tokio::time::timeout(T, c.read_to_end(&mut answer)).await.expect("timeout").expect("read");
    let sum: u64 = data.iter().map(|&b| u64::from(b)).sum();
    let head = format!("{up} {sum}\n");
    assert!(answer.starts_with(head.as_bytes()), "{:?}", String::from_utf8_lossy(&answer[..answer.len().min(40)]));
    let body = &answer[head.len()..];
    assert_eq!(body.len(), down);
    assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8), "reply corrupted");
}

/// Megabytes each way through the spliced relay, with the client's half-close carried to the
/// upstream and the upstream's reply and EOF carried back: CONNECT, SOCKS5, and a Unix-socket
/// client.
#[tokio::test]
async fn tunnels_carry_half_close_and_large_transfers() {
    let server = half_close_server(5 << 20).await;
    let p = start_proxy(test_config()).await;
    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{}", server.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    check_half_close(&mut c, 3 << 20, 5 << 20).await;

    let (rep, mut c) = socks_request(p.socks, 1, Addr::Domain("allowed.test"), server.port()).await;
    assert_eq!(rep, 0);
    check_half_close(&mut c, 1 << 20, 5 << 20).await;

    let front = UnixFront::start("half-close", &p.proxy);
    let mut c = front.connect().await;
    c.write_all(format!("CONNECT allowed.test:{} HTTP/1.1\r\n\r\n", server.port()).as_bytes()).await.expect("write");
    assert_eq!(read_head(&mut c).await, "HTTP/1.1 200 Connection established\r\n\r\n");
    check_half_close(&mut c, 2 << 20, 5 << 20).await;
}
