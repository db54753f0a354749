//! The sandbox's facts, as vocabulary shared by several layers: the proxy's ports on the
//! sandbox's loopback, and what each layer of enforcement really did. A leaf: it imports
//! nothing of sbx, so `config`, `cli`, `launch`, `report` and `tui` can all name these
//! without importing the module that runs the sandbox.

use std::fmt;

/// The HTTP proxy's port on the sandbox's loopback.
pub const HTTP_PROXY_PORT: u16 = 3128;
/// The SOCKS5 proxy's port on the sandbox's loopback.
pub const SOCKS_PROXY_PORT: u16 = 1080;

/// A port the user asked to relay (`-p`, `allowLocalOutboundPorts`) that is one of the
/// proxy's own ports inside the sandbox. Its `Display` is the one sentence every caller
/// prints: "3128 is the port of sbx's HTTP proxy inside the sandbox".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedPort(u16);

impl ReservedPort {
    /// `Err` when `port` is one of the proxy's ports inside the sandbox.
    pub fn check(port: u16) -> Result<u16, ReservedPort> {
        match port {
            HTTP_PROXY_PORT | SOCKS_PROXY_PORT => Err(ReservedPort(port)),
            _ => Ok(port),
        }
    }
}

impl fmt::Display for ReservedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.0 == HTTP_PROXY_PORT { "HTTP" } else { "SOCKS5" };
        write!(f, "{} is the port of sbx's {what} proxy inside the sandbox", self.0)
    }
}

/// What the session could observe: whether the kernel tracer (file denials with their
/// paths, process events) ran, and when it did not, why, in one sentence. The seccomp
/// supervisor and the proxy report in every session; without the tracer, a file access a
/// layer refused is not seen, and nothing may say "no denials" as if it were.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub kernel_tracer: bool,
    pub reason: Option<String>,
}

/// What each layer really enforced, as stage-2 reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enforcement {
    pub landlock: Option<LandlockReport>,
    pub seccomp: bool,
    /// The number of entries of the blocked-syscall table compiled into the filter (the
    /// policy's Unix-socket rules included).
    pub blocked_syscalls: usize,
    /// The network namespace: bwrap's `--unshare-net` fails the launch if it
    /// cannot be created, so reaching stage-2 proves it.
    pub netns: bool,
    /// What this sandbox does not enforce, one phrase each: empty, but without namespaces
    /// (`--no-namespaces`), where there is no bubblewrap.
    pub not_enforced: Vec<String>,
}

/// Landlock's outcome, as data: the ABI used and how fully it was enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandlockReport {
    /// The ABI version the kernel offers (0: none).
    pub abi: u32,
    pub status: LandlockStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    Full,
    Partial,
    None,
}

impl LandlockStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LandlockStatus::Full => "full",
            LandlockStatus::Partial => "partial",
            LandlockStatus::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proxy_ports_are_reserved_with_one_sentence() {
        assert_eq!(ReservedPort::check(8080), Ok(8080));
        assert_eq!(ReservedPort::check(3128).unwrap_err().to_string(), "3128 is the port of sbx's HTTP proxy inside the sandbox");
        assert_eq!(ReservedPort::check(1080).unwrap_err().to_string(), "1080 is the port of sbx's SOCKS5 proxy inside the sandbox");
    }
}
