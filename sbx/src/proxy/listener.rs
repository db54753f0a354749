//! Accept loop shared by both servers: TCP/Unix listeners, connection limit, task ownership.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::task::JoinSet;

use super::{Proxy, http, socks};

/// A listening socket the proxy can serve on; implemented for tokio's TCP and Unix listeners.
pub trait Listener: Send + Sync + 'static {
    /// The accepted connection type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Accepts one connection and describes the peer (goes into [`super::NetEvent::client`]).
    fn accept_conn(&self) -> impl Future<Output = io::Result<(Self::Stream, String)>> + Send;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    async fn accept_conn(&self) -> io::Result<(TcpStream, String)> {
        let (s, peer) = self.accept().await?;
        // Tunnels carry interactive traffic; a failure here is harmless.
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string()))
    }
}

impl Listener for UnixListener {
    type Stream = UnixStream;
    async fn accept_conn(&self) -> io::Result<(UnixStream, String)> {
        let (s, _) = self.accept().await?;
        let who = match s.peer_cred() {
            Ok(c) => match c.pid() {
                Some(pid) => format!("unix:pid={pid},uid={}", c.uid()),
                None => format!("unix:uid={}", c.uid()),
            },
            Err(_) => "unix".to_owned(),
        };
        Ok((s, who))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Http,
    Socks5,
    /// Plain TCP to the host's loopback on this port (allowLocalOutboundPorts).
    Forward(u16),
}

/// Errors after which accepting again makes sense (possibly after a pause).
fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut | OutOfMemory
    ) || matches!(
        e.raw_os_error(),
        // EMFILE ENFILE ENOBUFS ENOMEM, and the pending network errors accept(2) passes on
        Some(24 | 23 | 105 | 12 | 71 | 1 | 100 | 101 | 112 | 113 | 92 | 64 | 93 | 95)
    )
}

pub(crate) async fn serve<L: Listener>(listener: L, proxy: Proxy, kind: Kind) -> io::Result<()> {
    let mut tasks = JoinSet::new();
    loop {
        // Reap finished connection tasks (their sockets are already closed).
        while let Some(res) = tasks.try_join_next() {
            if let Err(e) = res {
                tracing::error!("sbx proxy connection task failed: {e}");
            }
        }
        let (stream, peer) = match listener.accept_conn().await {
            Ok(c) => c,
            Err(e) if transient(&e) => {
                tracing::warn!("sbx proxy accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let inner = proxy.inner.clone();
        if let Ok(permit) = inner.conns.clone().try_acquire_owned() {
            tasks.spawn(async move {
                let _permit = permit;
                match kind {
                    Kind::Http => http::handle(&inner, stream, peer).await,
                    Kind::Socks5 => socks::handle(&inner, stream, peer).await,
                    Kind::Forward(port) => super::forward(&inner, stream, peer, port).await,
                }
            });
        } else if let Ok(permit) = inner.rejects.clone().try_acquire_owned() {
            tracing::warn!(client = %peer, "sbx proxy: connection limit reached, refusing");
            tasks.spawn(async move {
                let _permit = permit;
                match kind {
                    Kind::Http => http::reject_busy(&inner, stream).await,
                    Kind::Socks5 => socks::reject_busy(&inner, stream).await,
                    Kind::Forward(_) => drop(stream),
                }
            });
        } else {
            tracing::warn!(client = %peer, "sbx proxy: overloaded, dropping connection");
            drop(stream);
        }
    }
}
