//! Name resolution behind an injectable trait (tests map names to loopback without DNS).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

/// A boxed, `Send` future (keeps [`Resolver`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Resolves an allowed, normalised host name (never an IP literal) to socket addresses.
pub trait Resolver: Send + Sync + 'static {
    /// Resolves `host` (lower-case ASCII) for `port`.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>>;

    /// Resolves `host` with its canonical name (the end of its CNAME chain), where the
    /// resolver knows one, for sbx's DNS inside the sandbox. By default, none.
    fn resolve_canonical<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<(Vec<SocketAddr>, Option<String>)>> {
        Box::pin(async move { Ok((self.resolve(host, 0).await?, None)) })
    }
}

/// The system resolver: `tokio::net::lookup_host` (getaddrinfo on a blocking thread).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }

    fn resolve_canonical<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<(Vec<SocketAddr>, Option<String>)>> {
        let host = host.to_owned();
        Box::pin(async move {
            let (ips, canonical) = tokio::task::spawn_blocking(move || crate::sys::lookup_canonical(&host)).await.map_err(io::Error::other)??;
            Ok((ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(), canonical))
        })
    }
}
