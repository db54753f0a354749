//! SOCKS5 front end (RFC 1928): no-auth only, CONNECT only, IPv4/domain/IPv6 addresses.
//!
//! Domain names are resolved by the proxy (socks5h semantics) under the same policy as HTTP.
//! Replies: 0x02 for policy refusals, 0x07 for commands other than CONNECT, 0x08 for unknown
//! address types, 0x04 for resolution failures and timeouts, 0x05 for refused connections,
//! 0x01 otherwise and when the connection limit is reached.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use super::conn::{OpenError, open_upstream, tunnel};
use super::{Inner, Protocol};

const REP_GENERAL: u8 = 0x01;
const REP_RULESET: u8 = 0x02;
const REP_NET_UNREACHABLE: u8 = 0x03;
const REP_HOST_UNREACHABLE: u8 = 0x04;
const REP_REFUSED: u8 = 0x05;
const REP_COMMAND: u8 = 0x07;
const REP_ATYP: u8 = 0x08;

enum Handshake {
    Connect { host: String, port: u16 },
    /// Answer with this reply code and close.
    Fail(u8),
    /// Not SOCKS5 or no acceptable method: close.
    Close,
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> io::Result<Handshake> {
    let mut greet = [0u8; 2];
    s.read_exact(&mut greet).await?;
    if greet[0] != 5 {
        return Ok(Handshake::Close);
    }
    let mut methods = vec![0u8; usize::from(greet[1])];
    s.read_exact(&mut methods).await?;
    if !methods.contains(&0) {
        s.write_all(&[5, 0xff]).await?;
        return Ok(Handshake::Close);
    }
    s.write_all(&[5, 0]).await?;

    let mut req = [0u8; 4];
    s.read_exact(&mut req).await?;
    if req[0] != 5 {
        return Ok(Handshake::Fail(REP_GENERAL));
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            s.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        3 => {
            let len = s.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            s.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            s.read_exact(&mut a).await?;
            Ipv6Addr::from(a).to_string()
        }
        _ => return Ok(Handshake::Fail(REP_ATYP)),
    };
    let port = s.read_u16().await?;
    if req[1] != 1 {
        return Ok(Handshake::Fail(REP_COMMAND));
    }
    Ok(Handshake::Connect { host, port })
}

fn reply(rep: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let mut out = vec![5, rep, 0];
    match bound {
        Some(SocketAddr::V4(a)) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Some(SocketAddr::V6(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        None => out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0]),
    }
    out
}

async fn fail<S: AsyncWrite + Unpin>(s: &mut S, rep: u8) {
    let _ = timeout(Duration::from_secs(2), async {
        s.write_all(&reply(rep, None)).await?;
        s.shutdown().await
    })
    .await;
}

fn open_error_code(e: &OpenError) -> u8 {
    match e {
        OpenError::Denied { .. } => REP_RULESET,
        OpenError::Resolve { .. } | OpenError::Timeout { .. } => REP_HOST_UNREACHABLE,
        OpenError::Connect { err, .. } => match err.kind() {
            io::ErrorKind::ConnectionRefused => REP_REFUSED,
            io::ErrorKind::NetworkUnreachable => REP_NET_UNREACHABLE,
            io::ErrorKind::HostUnreachable => REP_HOST_UNREACHABLE,
            _ => REP_GENERAL,
        },
    }
}

/// Serves one SOCKS5 connection.
pub(crate) async fn handle<S>(inner: &Inner, mut client: S, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let lim = inner.limits;
    let (host, port) = match timeout(lim.header_timeout, handshake(&mut client)).await {
        Ok(Ok(Handshake::Connect { host, port })) => (host, port),
        Ok(Ok(Handshake::Fail(rep))) => return fail(&mut client, rep).await,
        Ok(Ok(Handshake::Close)) | Ok(Err(_)) | Err(_) => {
            tracing::debug!(client = %peer, "sbx proxy: SOCKS handshake failed or timed out");
            return;
        }
    };
    match open_upstream(inner, Protocol::Socks5, &host, port, &peer).await {
        Ok(up) => {
            let ok = reply(0, up.local_addr().ok());
            if client.write_all(&ok).await.is_ok() {
                tunnel(client, up, &[], lim.idle_timeout).await;
            }
        }
        Err(e) => fail(&mut client, open_error_code(&e)).await,
    }
}

/// Over the connection limit: complete the handshake briefly and answer 0x01.
pub(crate) async fn reject_busy<S: AsyncRead + AsyncWrite + Unpin>(inner: &Inner, mut client: S) {
    let t = inner.limits.header_timeout.min(Duration::from_secs(2));
    if let Ok(Ok(Handshake::Connect { .. } | Handshake::Fail(_))) = timeout(t, handshake(&mut client)).await {
        fail(&mut client, REP_GENERAL).await;
    }
}
