//! Pure destination policy: allow/deny patterns, host normalisation and address classes.
//!
//! # Patterns (`allowedDomains`, `deniedDomains`, `allowPrivateResolution`)
//!
//! * `example.com` — exactly that name.
//! * `*.example.com` — any name *below* `example.com` (`a.example.com`, `a.b.example.com`).
//!   **The apex `example.com` does not match**; list it separately if wanted.
//! * `*` — every host name. In `allowedDomains` and `allowPrivateResolution` it does **not**
//!   cover IP-literal destinations (those are only allowed when listed literally); in
//!   `deniedDomains` it covers IP literals too (denying is never narrowed).
//! * `1.2.3.4`, `::1`, `[::1]` — an IP literal; matches only that address (IPv4-mapped IPv6
//!   addresses compare as their IPv4 form).
//! * Any of the above may carry a `:port` suffix (`example.com:443`, `*.example.com:8443`,
//!   `*:443`, `[::1]:8080`, `127.0.0.1:5432`); without one every port matches.
//!
//! Names are compared after IDNA (UTS #46) normalisation to lower-case ASCII/punycode and removal
//! of one trailing dot, so `Bücher.Example.` == `xn--bcher-kva.example`. A name whose last label is
//! numeric (`127.1`, `0x7f.1`, `2130706433`) is rejected: resolvers would read it as an IPv4
//! address in a non-canonical form, bypassing the IP-literal rule.
//!
//! # Decisions
//!
//! Deny beats allow: `deniedDomains` is checked first, then `allowLocalOutboundPorts`
//! (`localhost`, `127.0.0.1`, `::1` on a listed port), then `allowedDomains`; the first matching
//! entry in list order is the one reported. Nothing matching means `no rule allows it`.
//!
//! # DNS-rebinding defence
//!
//! A name allowed by `allowedDomains` must resolve to public addresses
//! ([`AddressPolicy::PublicOnly`]): loopback, private (RFC 1918, `fc00::/7`), link-local, CGNAT
//! (`100.64.0.0/10`), unspecified, multicast, broadcast/reserved and cloud-metadata addresses are
//! refused. A name that also matches an `allowPrivateResolution` pattern may resolve to any of
//! those except cloud-metadata ([`AddressPolicy::PrivateAllowed`]). Cloud-metadata
//! (`169.254.169.254`, `fd00:ec2::254`) is only reachable when listed as an IP literal. IP
//! literals allowed by a literal entry, and `allowLocalOutboundPorts` matches, are not checked
//! ([`AddressPolicy::Unchecked`]): they are explicit.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An invalid policy entry or destination host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A policy entry could not be parsed.
    #[error("invalid {list} entry {entry:?}: {reason}")]
    InvalidEntry {
        /// Which list (`allowedDomains`, ...).
        list: &'static str,
        /// The entry as given.
        entry: String,
        /// Why it is invalid.
        reason: String,
    },
    /// `allowLocalOutboundPorts` contains port 0.
    #[error("invalid allowLocalOutboundPorts entry 0: ports are 1-65535")]
    InvalidPort,
    /// A destination host could not be normalised.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The host as requested.
        host: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// A normalised destination host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Lower-case ASCII (punycode) name without trailing dot.
    Name(String),
    /// Canonical IP address (IPv4-mapped IPv6 is turned into IPv4).
    Ip(IpAddr),
}

impl Host {
    /// Normalises a requested host: `[v6]`, bare v6, dotted-quad v4, or a DNS name (IDNA, case,
    /// trailing dot).
    pub fn parse(raw: &str) -> Result<Host, RuleError> {
        let invalid = |reason: &str| RuleError::InvalidHost {
            host: raw.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(inner) = raw.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| invalid("unterminated '['"))?;
            let ip: Ipv6Addr = inner.parse().map_err(|_| invalid("invalid IPv6 address"))?;
            return Ok(Host::Ip(IpAddr::V6(ip).to_canonical()));
        }
        if let Ok(ip) = raw.parse::<IpAddr>() {
            return Ok(Host::Ip(ip.to_canonical()));
        }
        if raw.contains(':') {
            return Err(invalid("invalid IPv6 address"));
        }
        normalize_name(raw).map(Host::Name).map_err(|r| invalid(&r))
    }

    /// `host:port`, with IPv6 bracketed.
    pub fn with_port(&self, port: u16) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            other => format!("{other}:{port}"),
        }
    }

    fn is_local(&self) -> bool {
        match self {
            Host::Name(n) => n == "localhost",
            Host::Ip(ip) => *ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || *ip == IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Lower-cases, IDNA-normalises and validates a DNS name; removes one trailing dot.
pub fn normalize_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err("empty host name".into());
    }
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| "not a valid (IDNA) host name".to_string())?;
    if ascii.is_empty() || ascii.len() > 253 {
        return Err("host name must be 1-253 characters".into());
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err("empty label in host name".into());
        }
        if label.len() > 63 {
            return Err("host name label longer than 63 characters".into());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("invalid character in host name".into());
        }
    }
    let last = ascii.rsplit('.').next().unwrap_or_default();
    let hex = last
        .strip_prefix("0x")
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("numeric last label: write IP addresses in canonical form".into());
    }
    Ok(ascii)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPat {
    Any,
    Exact(String),
    /// Strict subdomains of the stored name.
    Subdomains(String),
    Ip(IpAddr),
}

/// One parsed policy entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    host: HostPat,
    port: Option<u16>,
    text: String,
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?}"));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p} out of range 1-65535")),
        Ok(n) => Ok(n),
    }
}

impl Pattern {
    /// Parses one entry; the error is the reason (without the entry).
    pub fn parse(entry: &str) -> Result<Pattern, String> {
        let text = entry.trim();
        if text.is_empty() {
            return Err("empty entry".into());
        }
        let (host, port) = Self::parse_parts(text)?;
        Ok(Pattern {
            host,
            port,
            text: text.to_owned(),
        })
    }

    fn parse_parts(e: &str) -> Result<(HostPat, Option<u16>), String> {
        if e == "*" {
            return Ok((HostPat::Any, None));
        }
        if let Some(rest) = e.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or("unterminated '['")?;
            let ip: Ipv6Addr = inside.parse().map_err(|_| "invalid IPv6 address".to_string())?;
            let port = match after {
                "" => None,
                a => Some(parse_port(a.strip_prefix(':').ok_or("expected ':port' after ']'")?)?),
            };
            return Ok((HostPat::Ip(IpAddr::V6(ip).to_canonical()), port));
        }
        if e.matches(':').count() >= 2 {
            let ip: Ipv6Addr = e
                .parse()
                .map_err(|_| "invalid IPv6 address (write [addr]:port to give a port)".to_string())?;
            return Ok((HostPat::Ip(IpAddr::V6(ip).to_canonical()), None));
        }
        let (h, port) = match e.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p)?)),
            None => (e, None),
        };
        if h == "*" {
            return Ok((HostPat::Any, port));
        }
        if let Some(rest) = h.strip_prefix("*.") {
            if rest.contains('*') {
                return Err("'*' is only allowed as the whole host or a leading '*.' label".into());
            }
            return Ok((HostPat::Subdomains(normalize_name(rest)?), port));
        }
        if h.contains('*') {
            return Err("'*' is only allowed as the whole host or a leading '*.' label".into());
        }
        if let Ok(v4) = h.parse::<Ipv4Addr>() {
            return Ok((HostPat::Ip(IpAddr::V4(v4)), port));
        }
        Ok((HostPat::Exact(normalize_name(h)?), port))
    }

    /// The entry as written (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this entry covers `host:port`; `any_covers_ip` makes `*` match IP literals.
    fn matches(&self, host: &Host, port: u16, any_covers_ip: bool) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.host, host) {
            (HostPat::Any, Host::Name(_)) => true,
            (HostPat::Any, Host::Ip(_)) => any_covers_ip,
            (HostPat::Exact(p), Host::Name(n)) => p == n,
            (HostPat::Subdomains(p), Host::Name(n)) => {
                n.len() > p.len() + 1 && n.ends_with(p.as_str()) && n.as_bytes()[n.len() - p.len() - 1] == b'.'
            }
            (HostPat::Ip(p), Host::Ip(ip)) => p == ip,
            _ => false,
        }
    }
}

/// Which resolved addresses an allowed destination may connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Explicit IP literal or `allowLocalOutboundPorts`: no address check.
    Unchecked,
    /// Name opted in by `allowPrivateResolution`: anything but cloud-metadata.
    PrivateAllowed,
    /// Ordinary allowed name: public addresses only.
    PublicOnly,
}

/// The outcome of matching a destination against the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the connection may proceed (subject to [`Rules::check_address`]).
    pub allowed: bool,
    /// `"allowedDomains: *.github.com"`, `"deniedDomains: evil.example"`,
    /// `"allowLocalOutboundPorts: 5432"` or `"no rule allows it"`.
    pub rule: String,
    /// How the policy decided (before any `--ask` answer); `rule` is its text.
    pub kind: DecisionKind,
    /// Address check to apply after resolution (meaningful when `allowed`).
    pub addresses: AddressPolicy,
}

/// What decided a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    /// A rule of the policy matched.
    Rule,
    /// No rule matched: denied, unless `--ask` gets an answer.
    NoRule,
    /// The destination itself is invalid (host name, port 0).
    Invalid,
}

impl Decision {
    fn deny(rule: String, kind: DecisionKind) -> Decision {
        Decision {
            allowed: false,
            rule,
            kind,
            addresses: AddressPolicy::PublicOnly,
        }
    }
}

/// Rule text when nothing matched.
pub const NO_RULE: &str = "no rule allows it";

/// The rule text of a destination that `allowedDomains`' `pattern` allows.
pub fn allowed_by(pattern: &str) -> String {
    format!("allowedDomains: {pattern}")
}

/// A validated policy.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    allowed: Vec<Pattern>,
    denied: Vec<Pattern>,
    private_ok: Vec<Pattern>,
    local_ports: Vec<u16>,
}

fn parse_list(list: &'static str, entries: &[String]) -> Result<Vec<Pattern>, RuleError> {
    entries
        .iter()
        .map(|e| {
            Pattern::parse(e).map_err(|reason| RuleError::InvalidEntry {
                list,
                entry: e.clone(),
                reason,
            })
        })
        .collect()
}

impl Rules {
    /// Validates the policy lists; errors name the offending entry.
    pub fn new(
        allowed_domains: &[String],
        denied_domains: &[String],
        allow_private_resolution: &[String],
        allow_local_outbound_ports: &[u16],
    ) -> Result<Rules, RuleError> {
        if allow_local_outbound_ports.contains(&0) {
            return Err(RuleError::InvalidPort);
        }
        Ok(Rules {
            allowed: parse_list("allowedDomains", allowed_domains)?,
            denied: parse_list("deniedDomains", denied_domains)?,
            private_ok: parse_list("allowPrivateResolution", allow_private_resolution)?,
            local_ports: allow_local_outbound_ports.to_vec(),
        })
    }

    /// Matches a normalised destination (before resolution).
    pub fn decide(&self, host: &Host, port: u16) -> Decision {
        if let Some(p) = self.denied.iter().find(|p| p.matches(host, port, true)) {
            return Decision::deny(format!("deniedDomains: {}", p.text), DecisionKind::Rule);
        }
        if host.is_local() && self.local_ports.contains(&port) {
            return Decision {
                allowed: true,
                rule: format!("allowLocalOutboundPorts: {port}"),
                kind: DecisionKind::Rule,
                addresses: AddressPolicy::Unchecked,
            };
        }
        let Some(p) = self.allowed.iter().find(|p| p.matches(host, port, false)) else {
            return Decision::deny(NO_RULE.to_owned(), DecisionKind::NoRule);
        };
        let addresses = match host {
            Host::Ip(_) => AddressPolicy::Unchecked,
            Host::Name(_) if self.private_ok.iter().any(|p| p.matches(host, port, false)) => {
                AddressPolicy::PrivateAllowed
            }
            Host::Name(_) => AddressPolicy::PublicOnly,
        };
        Decision {
            allowed: true,
            rule: allowed_by(&p.text),
            kind: DecisionKind::Rule,
            addresses,
        }
    }

    /// The rule that refuses `canonical`, the canonical name (end of the CNAME chain) the
    /// resolver gave for `host`, when `deniedDomains` refuses it for every port: an alias
    /// of a denied name is refused like it. None when it is `host` itself, not a valid
    /// name, or not denied.
    pub fn denied_alias(&self, host: &str, canonical: Option<&str>) -> Option<String> {
        let c = match Host::parse(canonical?.trim_end_matches('.')) {
            Ok(Host::Name(c)) if c != host => c,
            _ => return None,
        };
        let d = self.decide_name(&Host::Name(c.clone()));
        (!d.allowed && d.kind == DecisionKind::Rule).then(|| format!("an alias of {c}: {}", d.rule))
    }


    /// Whether a name may be resolved at all (sbx's DNS in the sandbox, before any port is
    /// known): denied when a `deniedDomains` entry without a port matches; allowed when an
    /// `allowedDomains` entry matches on some port (the connect is then decided with its port
    /// by [`Rules::decide`]). The address policy is the one [`Rules::decide`] gives a name.
    pub fn decide_name(&self, host: &Host) -> Decision {
        if let Some(p) = self.denied.iter().find(|p| p.port.is_none() && p.matches(host, 0, true)) {
            return Decision::deny(format!("deniedDomains: {}", p.text), DecisionKind::Rule);
        }
        let any_port = |p: &&Pattern| match p.port {
            Some(port) => p.matches(host, port, false),
            None => p.matches(host, 0, false),
        };
        let Some(p) = self.allowed.iter().find(any_port) else {
            return Decision::deny(NO_RULE.to_owned(), DecisionKind::NoRule);
        };
        let addresses = match host {
            Host::Ip(_) => AddressPolicy::Unchecked,
            Host::Name(_) if self.private_ok.iter().any(|p| any_port(&p)) => AddressPolicy::PrivateAllowed,
            Host::Name(_) => AddressPolicy::PublicOnly,
        };
        Decision { allowed: true, rule: allowed_by(&p.text), kind: DecisionKind::Rule, addresses }
    }

    /// Normalises `raw` and decides; invalid hosts are denied with `invalid host name: ...`.
    pub fn decide_raw(&self, raw: &str, port: u16) -> (Option<Host>, Decision) {
        match Host::parse(raw) {
            Ok(h) => {
                let d = self.decide(&h, port);
                (Some(h), d)
            }
            Err(e) => (None, Decision::deny(format!("invalid host name: {e}"), DecisionKind::Invalid)),
        }
    }

    /// Checks one resolved address; `Err` carries the refusal reason (DNS rebinding defence).
    pub fn check_address(policy: AddressPolicy, ip: IpAddr) -> Result<(), String> {
        let ip = ip.to_canonical();
        match policy {
            AddressPolicy::Unchecked => Ok(()),
            AddressPolicy::PrivateAllowed if is_metadata(ip) => Err(format!(
                "resolved to cloud-metadata address {ip}, refused: only reachable when listed as an IP literal"
            )),
            AddressPolicy::PrivateAllowed => Ok(()),
            AddressPolicy::PublicOnly => match classify(ip) {
                None => Ok(()),
                Some(class) => Err(format!(
                    "resolved to {class} address {ip}, refused: DNS rebinding defence, name not in allowPrivateResolution"
                )),
            },
        }
    }
}

fn is_metadata(ip: IpAddr) -> bool {
    const V6_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    ip == IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)) || ip == IpAddr::V6(V6_METADATA)
}

/// The non-public class of an address, or `None` for an ordinary public address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if is_metadata(ip) {
        return Some("cloud-metadata");
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 0 {
                Some("unspecified")
            } else if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("CGNAT")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if o[0] >= 240 {
                Some("reserved/broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfec0 {
                Some("private")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
