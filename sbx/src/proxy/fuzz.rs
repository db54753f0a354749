//! Property tests of the proxy's parsers (proptest, run by `cargo test`) and the replay of the
//! regression corpus in `sbx/src/proxy/corpus/`.
//!
//! The HTTP and SOCKS5 front ends are driven whole, through [`http::handle`] and
//! [`socks::handle`], over an in-memory duplex stream on a tokio runtime whose clock is paused
//! (time only moves when every task waits on a timer, so "finished before any timeout" is a
//! deterministic statement about virtual time, not a wall-clock measurement). The policy allows
//! every name and resolves none ([`NoResolver`]), so every request that reaches a decision ends
//! in one event and a 403 or 502 (SOCKS5 reply 2 or 4) without touching the network.
//!
//! What every input must satisfy ([`check_http`], [`check_socks`]): the handler returns (a
//! panic fails the test); it reads no more than the bounded head before it answers
//! (`max_head_bytes` for HTTP, the 257-byte greeting for SOCKS5), and a bounded amount in all; it emits at most one event;
//! its answer has the protocol's shape; and when the client has closed its side, it finishes
//! without waiting for any timer. Accepted requests must name, in their event, exactly the
//! host and port the request carried (after normalisation).
//!
//! Corpus: `corpus/{http,socks,host}/NAME.in` is an input (raw bytes), `NAME.out` the expected
//! one-line summary of what the proxy did with it ([`http_summary`], [`socks_summary`],
//! [`host_summary`]). A new case needs both files; the replay test prints the summary of a
//! case without `.out`, and `SBX_FUZZ_RECORD=1` writes every `.out` anew (review the diff). Longer fuzz runs: `PROPTEST_CASES=20000 cargo test -p sbx proxy::fuzz`;
//! a failing case is saved in `sbx/proptest-regressions/proxy/fuzz.txt` (committed) and
//! replayed first by every later run.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use super::rules::{Host, Pattern, Rules};
use super::{BoxFuture, Limits, NetEvent, Protocol, Proxy, ProxyConfig, Resolver, http, socks};

/// Small enough that generated inputs cross it often; the proxy's minimum is 512.
const MAX_HEAD: usize = 1024;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The greeting (2 + 255 methods): what a SOCKS5 server may read before it answers the first
/// time.
const SOCKS_GREETING_MAX: usize = 2 + 255;
/// Greeting + request (4 + 1 + 255 name + 2 port): what a SOCKS5 handshake may read in all.
const SOCKS_MAX_READ: usize = SOCKS_GREETING_MAX + 4 + 1 + 255 + 2;

/// Resolves nothing: allowed names end in "could not resolve", never in a connection.
struct NoResolver;

impl Resolver for NoResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("fuzz: {host} not resolved"))) })
    }
}

/// The server end of the duplex, counting what the handler read before its first write. The
/// handler owns it (and drops it when done, which the client sees as EOF); the counts are shared.
struct Probe {
    inner: DuplexStream,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    read: AtomicUsize,
    /// `usize::MAX` until the first write.
    read_before_write: AtomicUsize,
}

impl AsyncRead for Probe {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.counts.read.fetch_add(buf.filled().len() - before, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for Probe {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let read = this.counts.read.load(Ordering::Relaxed);
        let _ = this.counts.read_before_write.compare_exchange(usize::MAX, read, Ordering::Relaxed, Ordering::Relaxed);
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// What one handler run did.
#[derive(Debug)]
struct Run {
    /// Everything the client received.
    answer: Vec<u8>,
    events: Vec<NetEvent>,
    /// Bytes the handler read before it first wrote (all it read, if it never wrote).
    read_before_write: usize,
    /// Bytes the handler read in all.
    read_total: usize,
    /// Virtual time the handler took.
    elapsed: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Http,
    Socks,
}

/// Feeds `input` to a fresh handler; `close`: the client then half-closes (EOF), otherwise it
/// stays silent with the connection open.
fn drive(front: Front, input: &[u8], close: bool) -> Run {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel(16);
        let config = ProxyConfig {
            allowed_domains: vec!["*".to_owned()],
            limits: Limits { max_head_bytes: MAX_HEAD, header_timeout: HEADER_TIMEOUT, ..Limits::default() },
            ..ProxyConfig::default()
        };
        let proxy = match Proxy::new(&config, Arc::new(NoResolver), tx) {
            Ok(p) => p,
            Err(e) => panic!("proxy config: {e}"),
        };
        // Room for the whole input: the client never blocks on a handler that stops reading.
        let (mut client, server) = tokio::io::duplex(input.len() + 64 * 1024);
        let counts = Arc::new(Counts { read: AtomicUsize::new(0), read_before_write: AtomicUsize::new(usize::MAX) });
        let probe = Probe { inner: server, counts: counts.clone() };
        let write = async {
            client.write_all(input).await.map_err(|e| format!("client write: {e}"))?;
            if close {
                client.shutdown().await.map_err(|e| format!("client shutdown: {e}"))?;
            }
            Ok::<_, String>(())
        };
        if let Err(e) = write.await {
            panic!("{e}");
        }
        let start = tokio::time::Instant::now();
        let handler = async move {
            // The handler drops the probe when it returns: the client sees EOF even where the
            // handler closed without a word.
            match front {
                Front::Http => http::handle(&proxy.inner, probe, "fuzz".to_owned()).await,
                Front::Socks => socks::handle(&proxy.inner, probe, "fuzz".to_owned()).await,
            }
            tokio::time::Instant::now()
        };
        let mut answer = Vec::new();
        let reader = async {
            let _ = client.read_to_end(&mut answer).await;
        };
        let (end, ()) = tokio::join!(handler, reader);
        let mut events = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            events.push(ev);
        }
        Run {
            answer,
            events,
            read_before_write: match counts.read_before_write.load(Ordering::Relaxed) {
                usize::MAX => counts.read.load(Ordering::Relaxed),
                n => n,
            },
            read_total: counts.read.load(Ordering::Relaxed),
            elapsed: end - start,
        }
    })
}

/// The invariants both front ends share: at most one event per request; a client that closed
/// is let go at once, a silent one within the head timeout.
fn check_timing_and_events(close: bool, run: &Run) -> Result<(), String> {
    if run.events.len() > 1 {
        return Err(format!("{} events for one request", run.events.len()));
    }
    if close && run.elapsed >= Duration::from_secs(1) {
        return Err(format!("client closed, yet the handler waited {:?} for a timer", run.elapsed));
    }
    if !close && run.elapsed > HEADER_TIMEOUT + Duration::from_secs(3) {
        return Err(format!("silent client held the handler for {:?}", run.elapsed));
    }
    Ok(())
}

/// The invariants of every HTTP run; `Err` says which one broke.
fn check_http(input: &[u8], close: bool, run: &Run) -> Result<(), String> {
    if run.read_before_write > MAX_HEAD {
        return Err(format!("read {} bytes before answering (bound {MAX_HEAD})", run.read_before_write));
    }
    // After the head, an error answer drains at most 64 KiB (+ one 4 KiB read) of what the
    // client still sends.
    if run.read_total > MAX_HEAD + 64 * 1024 + 4096 {
        return Err(format!("read {} bytes in all", run.read_total));
    }
    check_timing_and_events(close, run)?;
    // Only a client that sent nothing at all is closed on without an answer.
    let silent = input.is_empty() && close;
    if silent != run.answer.is_empty() {
        return Err(format!("answer {:?} to input {:?}", String::from_utf8_lossy(&run.answer), String::from_utf8_lossy(input)));
    }
    if !silent {
        let status = status_line(&run.answer);
        let ok_shape = ["400 ", "403 ", "408 ", "431 ", "502 "].iter().any(|c| status.starts_with(&format!("HTTP/1.1 {c}")));
        if !ok_shape || !run.answer.ends_with(b"\n") {
            return Err(format!("unexpected answer {:?}", String::from_utf8_lossy(&run.answer)));
        }
        // 403 and 502 are decisions: exactly those carry an event.
        let decided = status.contains(" 403 ") || status.contains(" 502 ");
        if decided != (run.events.len() == 1) {
            return Err(format!("{status:?} with {} events", run.events.len()));
        }
    }
    Ok(())
}

fn status_line(answer: &[u8]) -> String {
    let end = answer.windows(2).position(|w| w == b"\r\n").unwrap_or(answer.len());
    String::from_utf8_lossy(&answer[..end]).into_owned()
}

/// The invariants of every SOCKS5 run.
fn check_socks(close: bool, run: &Run) -> Result<(), String> {
    if run.read_before_write > SOCKS_GREETING_MAX {
        return Err(format!("read {} bytes before answering (bound {SOCKS_GREETING_MAX})", run.read_before_write));
    }
    if run.read_total > SOCKS_MAX_READ {
        return Err(format!("read {} bytes in all (bound {SOCKS_MAX_READ})", run.read_total));
    }
    check_timing_and_events(close, run)?;
    // Nothing; a refused method; or the method choice, then (possibly) one failure reply.
    let a = &run.answer;
    let shape = match a.len() {
        0 => true,
        2 => a[..] == [5, 0xff] || a[..] == [5, 0],
        12 => a[..2] == [5, 0] && a[2..4] == [5, a[3]] && a[4..] == [0, 1, 0, 0, 0, 0, 0, 0] && a[3] != 0,
        _ => false,
    };
    if !shape {
        return Err(format!("unexpected answer {a:?}"));
    }
    // Replies 2 (ruleset) and 4 (unresolved) are decisions: exactly those carry an event.
    let decided = a.len() == 12 && matches!(a[3], 2 | 4);
    if decided != (run.events.len() == 1) {
        return Err(format!("answer {a:?} with {} events", run.events.len()));
    }
    Ok(())
}

fn event_summary(events: &[NetEvent]) -> String {
    events
        .iter()
        .map(|e| {
            let proto = match e.protocol {
                Protocol::Http => "http",
                Protocol::Connect => "connect",
                Protocol::Socks5 => "socks5",
                Protocol::Forward => "forward",
                Protocol::Inbound => "inbound",
                Protocol::Direct => "direct",
                Protocol::Dns => "dns",
            };
            let verdict = if e.allowed { "allowed" } else { "denied" };
            format!(" | {proto} {:?} port {} {verdict} ({})", e.host, e.port, e.rule)
        })
        .collect()
}

/// One line: the status line (or `closed`), then the event, if any.
fn http_summary(run: &Run) -> String {
    let head = if run.answer.is_empty() { "closed".to_owned() } else { status_line(&run.answer) };
    format!("{head}{}", event_summary(&run.events))
}

/// One line: the answer bytes, then the event, if any.
fn socks_summary(run: &Run) -> String {
    format!("answer {:?}{}", run.answer, event_summary(&run.events))
}

/// One line: how [`Host::parse`] and [`Pattern::parse`] read the input.
fn host_summary(input: &str) -> String {
    let host = match Host::parse(input) {
        Ok(Host::Name(n)) => format!("name {n}"),
        Ok(Host::Ip(ip)) => format!("ip {ip}"),
        Err(_) => "invalid host".to_owned(),
    };
    let pattern = match Pattern::parse(input) {
        Ok(p) => format!("pattern {}", p.as_str()),
        Err(e) => format!("invalid pattern: {e}"),
    };
    format!("{host} | {pattern}")
}

// ---- strategies ----

/// DNS labels, including IDNA (non-ASCII) ones and the characters that must be refused.
fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9-]{0,10}[a-z0-9]",
        1 => "[a-zA-Z0-9_-]{1,8}",
        1 => "[äöüßéçñ日本語пример]{1,6}",
        1 => "xn--[a-z0-9]{2,8}",
        1 => ".{0,6}",
    ]
}

fn name() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..4), "[a-z]{2,6}", prop::bool::ANY, prop::bool::ANY).prop_map(
        |(labels, tld, upper, dot)| {
            let mut n = format!("{}.{tld}", labels.join("."));
            if upper {
                n = n.to_uppercase();
            }
            if dot {
                n.push('.');
            }
            n
        },
    )
}

/// Hosts as a client would write them (v6 bracketed by the caller where the syntax needs it).
#[derive(Debug, Clone)]
enum GenHost {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

fn gen_host() -> impl Strategy<Value = GenHost> {
    prop_oneof![
        6 => name().prop_map(GenHost::Name),
        1 => any::<[u8; 4]>().prop_map(|o| GenHost::V4(Ipv4Addr::from(o))),
        1 => any::<[u16; 8]>().prop_map(|s| GenHost::V6(Ipv6Addr::from(s))),
        1 => any::<[u8; 4]>().prop_map(|o| GenHost::V6(Ipv4Addr::from(o).to_ipv6_mapped())),
    ]
}

impl GenHost {
    fn authority(&self, port: u16) -> String {
        match self {
            GenHost::Name(n) => format!("{n}:{port}"),
            GenHost::V4(ip) => format!("{ip}:{port}"),
            GenHost::V6(ip) => format!("[{ip}]:{port}"),
        }
    }
    /// What the proxy must report for this host: the normalised form, or the raw text when
    /// it is invalid (then the request is denied, still naming it).
    fn expected(&self) -> (Option<Host>, String) {
        match self {
            GenHost::Name(n) => match Host::parse(n) {
                Ok(h) => (Some(h.clone()), h.to_string()),
                // Refused names are reported as sent, control characters and spaces as '?'.
                Err(_) => (None, n.chars().take(255).map(|c| if c.is_control() || c.is_whitespace() { '?' } else { c }).collect()),
            },
            GenHost::V4(ip) => (Some(Host::Ip(IpAddr::V4(*ip))), ip.to_string()),
            GenHost::V6(ip) => {
                let ip = IpAddr::V6(*ip).to_canonical();
                (Some(Host::Ip(ip)), ip.to_string())
            }
        }
    }
}

/// Bytes that look like the start of a proxy request, then arbitrary bytes: reaches deeper into
/// the parser than uniform noise.
fn http_input() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("CONNECT".to_owned()),
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("get".to_owned()),
        "[A-Z]{1,8}"
    ];
    let target = prop_oneof![
        (gen_host(), any::<u16>()).prop_map(|(h, p)| h.authority(p)),
        (gen_host(), any::<u16>()).prop_map(|(h, p)| format!("http://{}/x?y#z", h.authority(p))),
        gen_host().prop_map(|h| match h {
            GenHost::V6(ip) => format!("http://[{ip}]"),
            GenHost::V4(ip) => format!("http://{ip}"),
            GenHost::Name(n) => format!("HTTP://{n}"),
        }),
        "[ -~]{0,40}",
    ];
    let header = prop_oneof!["[A-Za-z-]{1,12}: [ -~]{0,30}\r\n", "[\\x00-\\xff]{0,40}\r\n", Just("X: \0\r\n".to_owned())];
    let tail = prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        4 => (method, target, prop::collection::vec(header, 0..6), prop::bool::ANY, tail).prop_map(
            |(m, t, hs, end, tail)| {
                let mut v = format!("{m} {t} HTTP/1.1\r\n{}", hs.concat()).into_bytes();
                if end {
                    v.extend_from_slice(b"\r\n");
                }
                v.extend(tail);
                v
            }
        ),
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        1 => (0usize..3000).prop_map(|n| format!("GET http://a.test/ HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(n)).into_bytes()),
    ]
}

fn socks_domain(h: &GenHost) -> Option<Vec<u8>> {
    match h {
        GenHost::Name(n) => {
            let len = u8::try_from(n.len()).ok()?;
            Some([&[3, len][..], n.as_bytes()].concat())
        }
        GenHost::V4(ip) => Some([&[1][..], &ip.octets()].concat()),
        GenHost::V6(ip) => Some([&[4][..], &ip.octets()].concat()),
    }
}

/// Greeting + request built from parts, then mutated: lengths that lie, truncation, junk.
fn socks_input() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..4),
        any::<[u8; 3]>(),
        gen_host(),
        any::<u16>(),
        0usize..600,
        prop::bool::ANY,
    )
        .prop_map(|(nmethods, methods, [ver, cmd, rsv], host, port, cut, lie)| {
            let mut v = vec![5, nmethods];
            v.extend(&methods);
            v.extend([if ver % 4 == 0 { ver } else { 5 }, if cmd % 4 == 0 { cmd } else { 1 }, rsv]);
            let mut addr = socks_domain(&host).unwrap_or_else(|| vec![3, 0]);
            if lie && addr.len() > 1 {
                addr[1] = addr[1].wrapping_add(7);
            }
            v.extend(addr);
            v.extend(port.to_be_bytes());
            v.truncate(cut.max(1));
            v
        });
    prop_oneof![4 => structured, 1 => prop::collection::vec(any::<u8>(), 0..600)]
}

fn cases() -> ProptestConfig {
    // PROPTEST_CASES overrides for longer runs.
    ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256))
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn http_any_input_is_answered_within_bounds(input in http_input(), close in prop::bool::weighted(0.8)) {
        let run = drive(Front::Http, &input, close);
        if let Err(e) = check_http(&input, close, &run) {
            return Err(TestCaseError::fail(e));
        }
    }

    #[test]
    fn socks_any_input_is_answered_within_bounds(input in socks_input(), close in prop::bool::weighted(0.8)) {
        let run = drive(Front::Socks, &input, close);
        if let Err(e) = check_socks(close, &run) {
            return Err(TestCaseError::fail(e));
        }
    }

    /// A CONNECT or absolute-URI request reaches a decision about exactly the host and port it
    /// names.
    #[test]
    fn http_request_round_trips_host_and_port(host in gen_host(), port in 1u16.., connect in prop::bool::ANY) {
        // In a URI, '/', '?' and '#' end the authority: such a "host" names another one.
        prop_assume!(connect || !matches!(&host, GenHost::Name(n) if n.contains(['/', '?', '#'])));
        let req = if connect {
            format!("CONNECT {} HTTP/1.1\r\nHost: ignored.test\r\n\r\n", host.authority(port))
        } else {
            format!("GET http://{}/p HTTP/1.1\r\nHost: ignored.test\r\n\r\n", host.authority(port))
        };
        let run = drive(Front::Http, req.as_bytes(), true);
        if let Err(e) = check_http(req.as_bytes(), true, &run) {
            return Err(TestCaseError::fail(e));
        }
        let (parsed, text) = host.expected();
        // httparse refuses control characters in the request line before any decision: only
        // a host the proxy would refuse anyway may be stopped there.
        if parsed.is_none() && status_line(&run.answer) == "HTTP/1.1 400 Bad Request" {
            return Ok(());
        }
        prop_assert_eq!(run.events.len(), 1, "{:?} -> {}", req, http_summary(&run));
        let ev = &run.events[0];
        prop_assert_eq!((ev.host.as_str(), ev.port), (text.as_str(), port));
        prop_assert_eq!(ev.protocol, if connect { Protocol::Connect } else { Protocol::Http });
        // Names go to the (failing) resolver; IP literals are not listed, so denied; invalid
        // names are denied as such.
        let want = match parsed {
            Some(Host::Name(_)) => "HTTP/1.1 502 Bad Gateway",
            Some(Host::Ip(_)) | None => "HTTP/1.1 403 Forbidden",
        };
        prop_assert_eq!(status_line(&run.answer), want);
    }

    #[test]
    fn socks_request_round_trips_host_and_port(host in gen_host(), port in 1u16..) {
        let Some(addr) = socks_domain(&host) else { return Ok(()) };
        let mut req = vec![5, 1, 0, 5, 1, 0];
        req.extend(addr);
        req.extend(port.to_be_bytes());
        let run = drive(Front::Socks, &req, true);
        if let Err(e) = check_socks(true, &run) {
            return Err(TestCaseError::fail(e));
        }
        let (parsed, text) = host.expected();
        prop_assert_eq!(run.events.len(), 1, "{:?} -> {}", req, socks_summary(&run));
        let ev = &run.events[0];
        prop_assert_eq!((ev.host.as_str(), ev.port, ev.protocol), (text.as_str(), port, Protocol::Socks5));
        let rep = match parsed {
            Some(Host::Name(_)) => 4,
            Some(Host::Ip(_)) | None => 2,
        };
        prop_assert_eq!(&run.answer[..], &[5, 0, 5, rep, 0, 1, 0, 0, 0, 0, 0, 0][..]);
    }

    /// Normalisation is idempotent, survives the `host:port` syntax, and a host is allowed by
    /// an entry naming it (and, for names, `*.` of it allows its subdomains but not itself).
    #[test]
    fn host_normalisation_round_trips(raw in prop_oneof![4 => name(), 1 => ".{0,20}", 1 => "\\[[0-9a-f:.]{0,40}\\]"], port in 1u16..) {
        let _ = Pattern::parse(&raw);
        let Ok(host) = Host::parse(&raw) else { return Ok(()) };
        prop_assert_eq!(Host::parse(&host.to_string()), Ok(host.clone()));
        let Some((h, p)) = http::parse_authority(&host.with_port(port), None) else {
            return Err(TestCaseError::fail(format!("{} does not parse as an authority", host.with_port(port))));
        };
        prop_assert_eq!((Host::parse(&h), p), (Ok(host.clone()), port));
        let rules = |entry: String| Rules::new(&[entry], &[], &[], &[]).map_err(|e| TestCaseError::fail(e.to_string()));
        prop_assert!(rules(host.to_string())?.decide(&host, port).allowed);
        prop_assert!(rules(host.with_port(port))?.decide(&host, port).allowed);
        if let Host::Name(n) = &host {
            let sub = Host::Name(format!("sub.{n}"));
            let wildcard = rules(format!("*.{n}"))?;
            prop_assert!(wildcard.decide(&sub, port).allowed);
            prop_assert!(!wildcard.decide(&host, port).allowed);
        }
    }
}

// ---- corpus replay ----

fn corpus_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy/corpus").join(kind)
}

/// Every `NAME.in` of a corpus directory with its `NAME.out` (trimmed); panics on a missing
/// `.out`, printing what the case gives, so a new case is recorded deliberately.
fn corpus(kind: &str, summary: impl Fn(&[u8]) -> String) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(kind);
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "in")).collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    names.sort();
    assert!(names.len() >= 5, "corpus {} has only {} cases", dir.display(), names.len());
    let mut failures = Vec::new();
    let mut inputs = Vec::new();
    for path in names {
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let got = summary(&input);
        let want_path = path.with_extension("out");
        if std::env::var_os("SBX_FUZZ_RECORD").is_some()
            && let Err(e) = std::fs::write(&want_path, format!("{got}\n"))
        {
            panic!("{}: {e}", want_path.display());
        }
        match std::fs::read_to_string(&want_path) {
            Ok(want) if want.trim_end() == got => {}
            Ok(want) => failures.push(format!("{}:\n  want {}\n  got  {got}", path.display(), want.trim_end())),
            Err(_) => failures.push(format!("{}: no .out; this input gives:\n{got}", path.display())),
        }
        inputs.push((path.display().to_string(), input));
    }
    assert!(failures.is_empty(), "corpus {kind}:\n{}", failures.join("\n"));
    inputs
}

#[test]
fn http_corpus_replays() {
    let inputs = corpus("http", |input| http_summary(&drive(Front::Http, input, true)));
    for (name, input) in inputs {
        for close in [true, false] {
            let run = drive(Front::Http, &input, close);
            if let Err(e) = check_http(&input, close, &run) {
                panic!("{name} (close {close}): {e}");
            }
        }
    }
}

#[test]
fn socks_corpus_replays() {
    let inputs = corpus("socks", |input| socks_summary(&drive(Front::Socks, input, true)));
    for (name, input) in inputs {
        for close in [true, false] {
            let run = drive(Front::Socks, &input, close);
            if let Err(e) = check_socks(close, &run) {
                panic!("{name} (close {close}): {e}");
            }
        }
    }
}

#[test]
fn host_corpus_replays() {
    corpus("host", |input| host_summary(String::from_utf8_lossy(input).trim_end_matches('\n')));
}
