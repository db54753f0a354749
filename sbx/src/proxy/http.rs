//! HTTP proxy front end: `CONNECT host:port` tunnels and absolute-URI `http://` forwarding.
//!
//! Forwarding is one request per connection: the request is rewritten to origin-form with
//! `Host` taken from the URI, hop-by-hop and `Proxy-*` headers removed and `Connection: close`
//! added; bodies stream both ways unchanged (`Content-Length`/`Transfer-Encoding` framing is
//! passed through). The response head gets the same hop-by-hop treatment plus
//! `Connection: close`; interim 1xx heads are relayed verbatim. Proxy errors are plain-text
//! responses whose body is one `sbx: ...` line (403 for policy refusals:
//! `sbx: blocked connection to host:port (rule)`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::conn::{Activity, OpenError, RELAY_BUF, Socket, Tracked, idle_watch, open_upstream, pump, tunnel};
use super::{Inner, Limits, Protocol};

const MAX_HEADERS: usize = 100;
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

#[derive(Debug)]
enum HeadError {
    Eof,
    Io(io::Error),
    TooLarge,
    Malformed(String),
}

type ParseFn = fn(&[u8]) -> Result<httparse::Status<usize>, httparse::Error>;

fn parse_request_len(b: &[u8]) -> Result<httparse::Status<usize>, httparse::Error> {
    let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
    httparse::Request::new(&mut h).parse(b)
}

fn parse_response_len(b: &[u8]) -> Result<httparse::Status<usize>, httparse::Error> {
    let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
    httparse::Response::new(&mut h).parse(b)
}

fn may_end_head(w: &[u8]) -> bool {
    w.windows(2).any(|x| x == b"\n\n") || w.windows(3).any(|x| x == b"\n\r\n")
}

/// Reads until `parse` sees a complete head, starting from already-read bytes in `buf`.
/// Returns the bytes read (head plus whatever followed) and the head length.
async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    mut buf: Vec<u8>,
    max: usize,
    parse: ParseFn,
) -> Result<(Vec<u8>, usize), HeadError> {
    let mut filled = buf.len();
    buf.resize(max.max(filled), 0);
    let mut check = filled > 0;
    loop {
        if check {
            match parse(&buf[..filled]) {
                Ok(httparse::Status::Complete(len)) => {
                    buf.truncate(filled);
                    return Ok((buf, len));
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                Err(e) => return Err(HeadError::Malformed(e.to_string())),
            }
        }
        if filled >= max {
            return Err(HeadError::TooLarge);
        }
        let n = s.read(&mut buf[filled..]).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(if filled == 0 {
                HeadError::Eof
            } else {
                HeadError::Malformed("connection closed inside the head".into())
            });
        }
        // Parse the first chunk (catches garbage early), then only when a head end may be there:
        // a byte-at-a-time client does not make us re-parse the whole buffer per byte.
        let scan_from = filled.saturating_sub(3);
        check = filled == 0 || may_end_head(&buf[scan_from..filled + n]);
        filled += n;
    }
}

struct RequestHead {
    method: String,
    target: String,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

fn owned_request(head: &[u8]) -> Result<RequestHead, HeadError> {
    let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut h);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(RequestHead {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            version: req.version.unwrap_or(1),
            headers: req.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect(),
        }),
        _ => Err(HeadError::Malformed("unparsable request head".into())),
    }
}

/// Writes a complete plain-text response, half-closes, and briefly drains what the client
/// still sends so the close is a FIN rather than a reset that could eat the response.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, code: u16, reason: &str, body: &str, lim: &Limits) {
    let body = format!("{body}\n");
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let t = lim.header_timeout.min(Duration::from_secs(2));
    let written = timeout(t, async {
        s.write_all(msg.as_bytes()).await?;
        s.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        let mut sink = [0u8; 4096];
        let _ = timeout(t.min(Duration::from_secs(1)), async {
            let mut total = 0usize;
            while total < 64 * 1024 {
                match s.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        })
        .await;
    }
}

async fn respond_open_error<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, e: OpenError, lim: &Limits) {
    match e {
        OpenError::Denied { target, rule } => {
            respond(s, 403, "Forbidden", &format!("sbx: blocked connection to {target} ({rule})"), lim).await;
        }
        OpenError::Resolve { target, err } => {
            respond(s, 502, "Bad Gateway", &format!("sbx: could not resolve {target}: {err}"), lim).await;
        }
        OpenError::Connect { target, err } => {
            respond(s, 502, "Bad Gateway", &format!("sbx: could not connect to {target}: {err}"), lim).await;
        }
        OpenError::Timeout { target } => {
            respond(s, 504, "Gateway Timeout", &format!("sbx: timed out connecting to {target}"), lim).await;
        }
    }
}

/// Splits `host:port` / `[v6]:port` / `host` (when `default_port` is given).
pub(crate) fn parse_authority(s: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':')?),
        };
        (format!("[{inside}]"), port)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains(['@', '/', ' ']) || (!host.starts_with('[') && host.contains(':')) {
        return None;
    }
    let port = match port {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse::<u16>().ok()?,
        Some(_) => return None,
        None => default_port?,
    };
    (port != 0).then_some((host, port))
}

/// `http://authority/path?q` → (authority, origin-form path). Fragments are dropped.
fn split_absolute_uri(target: &str) -> Option<(&str, String)> {
    let scheme = target.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &target[7..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let tail = tail.split('#').next().unwrap_or_default();
    let path = if tail.starts_with('/') { tail.to_owned() } else { format!("/{tail}") };
    Some((authority, path))
}

/// Header names named by `Connection`/`Proxy-Connection` (minus framing headers).
fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection") || n.eq_ignore_ascii_case("proxy-connection"))
        .flat_map(|(_, v)| String::from_utf8_lossy(v).split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|t| !matches!(t.as_str(), "" | "host" | "content-length" | "transfer-encoding"))
        .collect()
}

fn is_hop_by_hop(name: &str, tokens: &[String]) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(n.as_str(), "connection" | "keep-alive" | "te" | "trailer" | "upgrade")
        || n.starts_with("proxy-")
        || tokens.contains(&n)
}

fn push_headers(out: &mut Vec<u8>, headers: &[(String, Vec<u8>)], skip_host: bool) {
    let tokens = connection_tokens(headers);
    for (name, value) in headers {
        if is_hop_by_hop(name, &tokens) || (skip_host && name.eq_ignore_ascii_case("host")) {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
}

fn forward_head(head: &RequestHead, authority: &str, path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("{} {path} HTTP/1.{}\r\nHost: {authority}\r\n", head.method, head.version).as_bytes());
    push_headers(&mut out, &head.headers, true);
    out
}

/// Serves one HTTP proxy connection.
pub(crate) async fn handle<S>(inner: &Inner, mut client: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let lim = inner.limits;
    let read = timeout(lim.header_timeout, read_head(&mut client, Vec::new(), lim.max_head_bytes, parse_request_len)).await;
    let parsed = match read {
        Err(_) => Err((408, "Request Timeout", "sbx: timed out reading the request head".to_owned())),
        Ok(Err(HeadError::Eof | HeadError::Io(_))) => return,
        Ok(Err(HeadError::TooLarge)) => Err((431, "Request Header Fields Too Large", "sbx: request head too large".to_owned())),
        Ok(Err(HeadError::Malformed(m))) => Err((400, "Bad Request", format!("sbx: malformed request: {m}"))),
        Ok(Ok((buf, len))) => owned_request(&buf[..len])
            .map(|h| (h, buf[len..].to_vec()))
            .map_err(|_| (400, "Bad Request", "sbx: malformed request".to_owned())),
    };
    let (head, leftover) = match parsed {
        Ok(x) => x,
        Err((code, reason, body)) => {
            tracing::debug!(client = %peer, code, "sbx proxy: bad request");
            respond(&mut client, code, reason, &body, &lim).await;
            return;
        }
    };

    if head.method == "CONNECT" {
        let Some((host, port)) = parse_authority(&head.target, None) else {
            respond(&mut client, 400, "Bad Request", "sbx: CONNECT needs host:port", &lim).await;
            return;
        };
        match open_upstream(inner, Protocol::Connect, &host, port, &peer).await {
            Ok(up) => {
                if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                    tunnel(client, up, &leftover, lim.idle_timeout).await;
                }
            }
            Err(e) => respond_open_error(&mut client, e, &lim).await,
        }
        return;
    }

    let Some((authority, path)) = split_absolute_uri(&head.target) else {
        let msg = "sbx: expected CONNECT host:port or an absolute http:// URI";
        respond(&mut client, 400, "Bad Request", msg, &lim).await;
        return;
    };
    let Some((host, port)) = parse_authority(authority, Some(80)) else {
        respond(&mut client, 400, "Bad Request", "sbx: invalid host in request URI", &lim).await;
        return;
    };
    match open_upstream(inner, Protocol::Http, &host, port, &peer).await {
        Ok(up) => {
            let req = forward_head(&head, authority, &path);
            forward(client, up, req, leftover, &lim).await;
        }
        Err(e) => respond_open_error(&mut client, e, &lim).await,
    }
}

/// Streams one request (head already rewritten) and its response. When the client is an accepted
/// socket, the heads go through tokio and the bodies both ways with splice(2), as in a tunnel
/// (the forwarded request says `Connection: close`, so the response body is all that follows
/// its head); otherwise everything is copied.
async fn forward<S>(client: S, mut upstream: TcpStream, req: Vec<u8>, leftover: Vec<u8>, lim: &Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let act = Arc::new(Activity::new());
    let work = async {
        if let Some(c) = Socket::of(&client) {
            let u = Socket::Tcp(&upstream);
            let t = |s| Tracked::new(s, act.clone());
            exchange((t(c), t(u)), (t(u), t(c)), Some((c, u)), &req, &leftover, &act).await
        } else {
            let (cr, cw) = tokio::io::split(Tracked::new(client, act.clone()));
            let (ur, uw) = upstream.split();
            exchange((cr, uw), (ur, cw), None, &req, &leftover, &act).await
        }
    };
    tokio::select! {
        r = work => if let Err(e) = r { tracing::debug!("sbx proxy forward: {e}") },
        () = idle_watch(&act, lim.idle_timeout) => tracing::debug!("sbx proxy forward idle timeout"),
    }
}

/// The two directions of [`forward`]: `up` (client to upstream: the request, then the rest of
/// the client's bytes) and `down` (upstream to client: the response head, then its body);
/// `sockets` (client, upstream) when the bodies can be spliced.
async fn exchange<CR, UW, UR, CW>(
    (mut cr, mut uw): (CR, UW),
    (mut ur, mut cw): (UR, CW),
    sockets: Option<(Socket<'_>, Socket<'_>)>,
    req: &[u8],
    leftover: &[u8],
    act: &Arc<Activity>,
) -> io::Result<()>
where
    CR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
{
    let up = async {
        uw.write_all(req).await?;
        uw.write_all(leftover).await?;
        match sockets {
            Some((c, u)) => pump(c, u, act).await.map(drop),
            None => {
                tokio::io::copy(&mut cr, &mut uw).await?;
                uw.shutdown().await
            }
        }
    };
    let down = async {
        if !relay_response_head(&mut ur, &mut cw).await? {
            return Ok(());
        }
        match sockets {
            Some((c, u)) => pump(u, c, act).await.map(drop),
            None => {
                tokio::io::copy_buf(&mut tokio::io::BufReader::with_capacity(RELAY_BUF, &mut ur), &mut cw).await?;
                cw.shutdown().await
            }
        }
    };
    tokio::pin!(up, down);
    // The exchange is over when the response is; a finished (or failed) upload only means
    // waiting for the response.
    tokio::select! {
        r = &mut down => r,
        _ = &mut up => down.await,
    }
}

fn bad_gateway(msg: &str) -> Vec<u8> {
    let body = format!("sbx: {msg}\n");
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Relays interim responses and the final response head (with the bytes of the body read with
/// it). True when the body follows; false when the upstream gave no usable response, which the
/// client was told in a 502 (and its side closed).
async fn relay_response_head<R, W>(ur: &mut R, cw: &mut W) -> io::Result<bool>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut pending = Vec::new();
    for _ in 0..16 {
        let (buf, len) = match read_head(ur, pending, MAX_RESPONSE_HEAD, parse_response_len).await {
            Ok(x) => x,
            Err(e) => {
                let msg = match e {
                    HeadError::Eof => "upstream closed without a response".to_owned(),
                    HeadError::Io(e) => format!("upstream error: {e}"),
                    HeadError::TooLarge => "upstream response head too large".to_owned(),
                    HeadError::Malformed(m) => format!("malformed upstream response: {m}"),
                };
                cw.write_all(&bad_gateway(&msg)).await?;
                return cw.shutdown().await.map(|()| false);
            }
        };
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut h);
        let code = match resp.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => resp.code.unwrap_or(0),
            _ => 0,
        };
        if (100..200).contains(&code) && code != 101 {
            cw.write_all(&buf[..len]).await?;
            pending = buf[len..].to_vec();
            continue;
        }
        if code == 101 || code == 0 {
            cw.write_all(&buf).await?;
        } else {
            let headers: Vec<(String, Vec<u8>)> =
                resp.headers.iter().map(|h| (h.name.to_owned(), h.value.to_vec())).collect();
            let mut out = Vec::with_capacity(len + 32);
            let status = format!("HTTP/1.{} {code} {}\r\n", resp.version.unwrap_or(1), resp.reason.unwrap_or(""));
            out.extend_from_slice(status.as_bytes());
            push_headers(&mut out, &headers, false);
            out.extend_from_slice(&buf[len..]);
            cw.write_all(&out).await?;
        }
        return Ok(true);
    }
    cw.write_all(&bad_gateway("too many interim responses")).await?;
    cw.shutdown().await.map(|()| false)
}

/// Over the connection limit: read the request head briefly, answer 503, close.
pub(crate) async fn reject_busy<S: AsyncRead + AsyncWrite + Unpin>(inner: &Inner, mut client: S) {
    let lim = inner.limits;
    let t = lim.header_timeout.min(Duration::from_secs(2));
    let _ = timeout(t, read_head(&mut client, Vec::new(), lim.max_head_bytes, parse_request_len)).await;
    respond(&mut client, 503, "Service Unavailable", "sbx: proxy connection limit reached", &lim).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_forms() {
        let p = |s| parse_authority(s, None);
        assert_eq!(p("example.com:443"), Some(("example.com".into(), 443)));
        assert_eq!(p("[::1]:443"), Some(("[::1]".into(), 443)));
        assert_eq!(p("example.com"), None);
        assert_eq!(p("example.com:"), None);
        assert_eq!(p("example.com:0"), None);
        assert_eq!(p("example.com:99999"), None);
        assert_eq!(p("::1:443"), None);
        assert_eq!(p(":443"), None);
        assert_eq!(p("user@example.com:443"), None);
        assert_eq!(parse_authority("example.com", Some(80)), Some(("example.com".into(), 80)));
        assert_eq!(parse_authority("[::1]", Some(80)), Some(("[::1]".into(), 80)));
    }

    #[test]
    fn absolute_uris() {
        assert_eq!(split_absolute_uri("http://a.test/x?y#z"), Some(("a.test", "/x?y".into())));
        assert_eq!(split_absolute_uri("HTTP://a.test:8080"), Some(("a.test:8080", "/".into())));
        assert_eq!(split_absolute_uri("http://a.test?q=1"), Some(("a.test", "/?q=1".into())));
        assert_eq!(split_absolute_uri("https://a.test/"), None);
        assert_eq!(split_absolute_uri("/relative"), None);
    }

    #[test]
    fn forward_head_strips_hop_by_hop() {
        let head = RequestHead {
            method: "POST".into(),
            target: "http://a.test/p".into(),
            version: 1,
            headers: vec![
                ("Host".into(), b"wrong".to_vec()),
                ("Proxy-Authorization".into(), b"secret".to_vec()),
                ("Proxy-Connection".into(), b"keep-alive".to_vec()),
                ("Connection".into(), b"keep-alive, X-Drop".to_vec()),
                ("X-Drop".into(), b"1".to_vec()),
                ("Keep-Alive".into(), b"300".to_vec()),
                ("Content-Length".into(), b"3".to_vec()),
                ("X-Keep".into(), b"yes".to_vec()),
            ],
        };
        let out = String::from_utf8(forward_head(&head, "a.test:80", "/p")).unwrap_or_default();
        assert_eq!(
            out,
            "POST /p HTTP/1.1\r\nHost: a.test:80\r\nContent-Length: 3\r\nX-Keep: yes\r\nConnection: close\r\n\r\n"
        );
    }
}
