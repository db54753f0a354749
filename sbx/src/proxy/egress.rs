//! Transparent egress: sbx's DNS resolver inside the sandbox, and the decision on a direct
//! connect(2) by the names that resolver gave out.
//!
//! The sandbox's `/etc/resolv.conf` names 127.0.0.1, where sbx serves DNS (UDP and TCP,
//! port 53) on sockets opened inside the sandbox's network namespace. A query for a name the
//! policy allows on some port ([`Rules::decide_name`]) is resolved on the host with the
//! proxy's [`Resolver`], and only the addresses the DNS-rebinding defence lets through
//! ([`Rules::check_address`]) are answered; every other query is answered NXDOMAIN and
//! reported (protocol `dns`, a `denial` of source `dns` in the log). The addresses answered
//! are remembered for the session, by address ([`MAX_ADDRESSES`], oldest forgotten first).
//!
//! A connect(2) to one of those addresses (`monitor::connect` asks [`Egress::decide`]) is
//! then decided as the proxy decides `name:port`, for each name that address was given for;
//! an address sbx never gave out is decided as an IP literal (allowed only when the policy
//! lists it). With `--ask`, a name no rule decides is resolved (public addresses only) and
//! the question comes at connect time, when the port is known.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::dns::{self, Rcode};
use super::rules::{AddressPolicy, DecisionKind, Host, Rules};
use super::{Inner, NetEvent, Protocol, Proxy};

/// Addresses remembered per session; past it the oldest is forgotten (a connect to it is
/// then decided as an IP literal).
pub const MAX_ADDRESSES: usize = 16_384;
/// Names remembered per address.
const NAMES_PER_ADDRESS: usize = 8;
/// Queries answered at once; past it a UDP query is dropped (the client retries) and a TCP
/// connection waits.
const IN_FLIGHT: usize = 64;

/// The session's transparent egress: the proxy's policy, resolver and events, and the
/// addresses its DNS gave out.
pub struct Egress {
    inner: Arc<Inner>,
    answered: Mutex<Answered>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Egress")
    }
}

#[derive(Default)]
struct Answered {
    names: HashMap<IpAddr, Vec<String>>,
    order: VecDeque<IpAddr>,
}

impl Answered {
    fn remember(&mut self, ip: IpAddr, name: &str) {
        let names = match self.names.get_mut(&ip) {
            Some(n) => n,
            None => {
                if self.order.len() >= MAX_ADDRESSES
                    && let Some(old) = self.order.pop_front()
                {
                    self.names.remove(&old);
                }
                self.order.push_back(ip);
                self.names.entry(ip).or_default()
            }
        };
        if !names.iter().any(|n| n == name) {
            if names.len() >= NAMES_PER_ADDRESS {
                names.remove(0);
            }
            names.push(name.to_owned());
        }
    }
}

/// The decision on one direct connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Direct {
    pub allowed: bool,
    /// The name decided on (one sbx's DNS gave the address for), or the address.
    pub host: String,
    pub rule: String,
}

impl Egress {
    /// Transparent egress under `proxy`'s policy, resolver and event channel.
    pub fn new(proxy: &Proxy) -> Arc<Egress> {
        Arc::new(Egress { inner: proxy.inner.clone(), answered: Mutex::default(), in_flight: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)) })
    }

    fn names_of(&self, ip: IpAddr) -> Vec<String> {
        let answered = self.answered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        answered.names.get(&ip).cloned().unwrap_or_default()
    }

    /// Decides a direct connection of `client` to `ip:port` (not loopback: the sandbox's
    /// own), and reports it (protocol `direct`) when `report` is set; the caller reports
    /// the outcome of the connect itself with [`Egress::report`].
    pub async fn decide(&self, ip: IpAddr, port: u16, client: &str) -> Direct {
        let ip = ip.to_canonical();
        let rules = &self.inner.rules;
        let names = self.names_of(ip);
        let mut first_refusal: Option<(String, String, DecisionKind)> = None;
        for name in &names {
            let host = Host::Name(name.clone());
            let d = rules.decide(&host, port);
            if d.allowed {
                match Rules::check_address(d.addresses, ip) {
                    Ok(()) => return Direct { allowed: true, host: name.clone(), rule: d.rule },
                    Err(reason) => {
                        first_refusal.get_or_insert((name.clone(), format!("{}; {reason}", d.rule), DecisionKind::Rule));
                    }
                }
            } else {
                first_refusal.get_or_insert((name.clone(), d.rule, d.kind));
            }
        }
        // An address sbx's DNS did not give: only as a listed IP literal.
        let literal = rules.decide(&Host::Ip(ip), port);
        if literal.allowed {
            return Direct { allowed: true, host: ip.to_string(), rule: literal.rule };
        }
        let (host, rule, kind) = first_refusal.unwrap_or_else(|| {
            let rule = if literal.kind == DecisionKind::NoRule {
                format!("{}: {ip} is not an address sbx's DNS gave for an allowed name, nor a listed IP literal", super::rules::NO_RULE)
            } else {
                literal.rule.clone()
            };
            (ip.to_string(), rule, literal.kind)
        });
        // `--ask`: a name (or address) no rule decides.
        if let Some(ask) = &self.inner.ask
            && kind == DecisionKind::NoRule
        {
            let asked = Host::parse(&host).unwrap_or(Host::Ip(ip));
            let (allowed, rule) = ask.decide(&asked, port, Protocol::Direct, client).await;
            let public = matches!(asked, Host::Ip(_)) || Rules::check_address(AddressPolicy::PublicOnly, ip).is_ok();
            if allowed && public {
                return Direct { allowed, host, rule };
            }
            return Direct { allowed: false, host, rule };
        }
        Direct { allowed: false, host, rule }
    }

    /// Reports a direct connection: allowed (with the address connected to) or refused.
    pub fn report(&self, direct: &Direct, ip: IpAddr, port: u16, client: &str, outcome: Option<&str>) {
        let rule = match outcome {
            Some(o) => format!("{}; {o}", direct.rule),
            None => direct.rule.clone(),
        };
        self.inner.emit(NetEvent {
            time: SystemTime::now(),
            protocol: Protocol::Direct,
            host: direct.host.clone(),
            port,
            allowed: direct.allowed,
            rule,
            resolved: Some(ip.to_canonical()),
            client: client.to_owned(),
            dns_type: None,
        });
    }

    /// The answer to one DNS message from `client`; `None` when nothing is to be answered.
    pub async fn answer(&self, msg: &[u8], client: &str) -> Option<Vec<u8>> {
        let query = match dns::parse_query(msg) {
            Ok(q) => q,
            Err(dns::Malformed { id: Some((id, rcode)) }) => return Some(dns::encode_error(id, rcode)),
            Err(dns::Malformed { id: None }) => return None,
        };
        let refuse = |rule: String, rcode: Rcode| {
            self.inner.emit(NetEvent {
                time: SystemTime::now(),
                protocol: Protocol::Dns,
                host: query.name.clone(),
                port: 53,
                allowed: false,
                rule,
                resolved: None,
                client: client.to_owned(),
                dns_type: Some(dns::type_name(query.qtype)),
            });
            Some(dns::encode_answer(&query, rcode, None, &[]))
        };
        let host = match Host::parse(&query.name) {
            Ok(Host::Name(n)) => n,
            // `1.2.3.4` asked as a name: it is one for no resolver.
            Ok(Host::Ip(_)) | Err(_) => return refuse("invalid host name".into(), Rcode::NxDomain),
        };
        if !query.is_internet() {
            return refuse("only class IN is answered".into(), Rcode::Refused);
        }
        let mut decision = self.inner.rules.decide_name(&Host::Name(host.clone()));
        if !decision.allowed && decision.kind == DecisionKind::NoRule && self.inner.ask.is_some() {
            // Asked at connect time, with the port.
            decision.allowed = true;
            decision.addresses = AddressPolicy::PublicOnly;
        }
        if !decision.allowed {
            return refuse(decision.rule, Rcode::NxDomain);
        }
        if query.qtype != dns::TYPE_A && query.qtype != dns::TYPE_AAAA {
            // An allowed name, a type sbx does not answer: no records (NODATA).
            return Some(dns::encode_answer(&query, Rcode::NoError, None, &[]));
        }
        let resolved = tokio::time::timeout(self.inner.limits.connect_timeout, self.inner.resolver.resolve_canonical(&host)).await;
        let (addrs, canonical): (Vec<SocketAddr>, Option<String>) = match resolved {
            Ok(Ok(a)) => a,
            // No such name on the host either (or its resolver failed): what it said.
            Ok(Err(_)) => return Some(dns::encode_answer(&query, Rcode::NxDomain, None, &[])),
            Err(_) => return Some(dns::encode_answer(&query, Rcode::ServFail, None, &[])),
        };
        // The end of the name's CNAME chain, when it is another valid name: answered as a
        // CNAME record; an alias of a name deniedDomains refuses is refused like it.
        if let Some(rule) = self.inner.rules.denied_alias(&host, canonical.as_deref()) {
            return refuse(rule, Rcode::NxDomain);
        }
        let canonical = canonical.and_then(|c| match Host::parse(c.trim_end_matches('.')) {
            Ok(Host::Name(c)) if c != host => Some(c),
            _ => None,
        });
        let mut permitted: Vec<IpAddr> = Vec::new();
        let mut refused = None;
        for a in addrs {
            let ip = a.ip().to_canonical();
            match Rules::check_address(decision.addresses, ip) {
                Ok(()) if !permitted.contains(&ip) => permitted.push(ip),
                Ok(()) => {}
                Err(reason) => {
                    refused.get_or_insert(reason);
                }
            }
        }
        if permitted.is_empty()
            && let Some(reason) = refused
        {
            return refuse(format!("{}; {reason}", decision.rule), Rcode::NxDomain);
        }
        {
            let mut answered = self.answered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for ip in &permitted {
                answered.remember(*ip, &host);
            }
        }
        Some(dns::encode_answer(&query, Rcode::NoError, canonical.as_deref(), &permitted))
    }
}

/// Serves DNS over UDP on `sock` until it fails.
pub async fn serve_dns_udp(sock: tokio::net::UdpSocket, egress: Arc<Egress>) -> std::io::Result<()> {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = sock.recv_from(&mut buf).await?;
        let Ok(permit) = egress.in_flight.clone().try_acquire_owned() else { continue };
        let msg = buf[..n].to_vec();
        let (sock, egress) = (sock.clone(), egress.clone());
        tokio::spawn(async move {
            if let Some(answer) = egress.answer(&msg, &format!("udp:{peer}")).await {
                let _ = sock.send_to(&answer, peer).await;
            }
            drop(permit);
        });
    }
}

/// Serves DNS over TCP (two-byte length prefix) on `listener` until it fails.
pub async fn serve_dns_tcp(listener: tokio::net::TcpListener, egress: Arc<Egress>) -> std::io::Result<()> {
    loop {
        let (mut conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let egress = egress.clone();
        tokio::spawn(async move {
            let idle = egress.inner.limits.header_timeout;
            loop {
                let Ok(_permit) = egress.in_flight.clone().acquire_owned().await else { return };
                let mut len = [0u8; 2];
                let Ok(Ok(_)) = tokio::time::timeout(idle, conn.read_exact(&mut len)).await else { return };
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                let Ok(Ok(_)) = tokio::time::timeout(idle, conn.read_exact(&mut msg)).await else { return };
                let Some(answer) = egress.answer(&msg, &format!("tcp:{peer}")).await else { return };
                let mut out = (answer.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&answer);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{BoxFuture, ProxyConfig, Resolver};

    struct Fixed;
    impl Resolver for Fixed {
        fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
            Box::pin(async move {
                let ips: &[&str] = match host {
                    "api.example.com" => &["198.18.0.2", "2001:db8::2"],
                    "rebind.example.com" => &["10.0.0.5"],
                    "inside.example.com" => &["10.0.0.6"],
                    "ads.example.org" => &["198.18.0.9"],
                    _ => return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such name")),
                };
                Ok(ips.iter().map(|i| SocketAddr::new(i.parse().unwrap(), port)).collect())
            })
        }

        fn resolve_canonical<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<(Vec<SocketAddr>, Option<String>)>> {
            Box::pin(async move {
                let canonical = match host {
                    "www.example.com" | "alias.example.com" => Some("api.example.com".to_string()),
                    "tracker.example.com" => Some("ads.example.org".to_string()),
                    _ => None,
                };
                let name = canonical.as_deref().unwrap_or(host);
                Ok((self.resolve(name, 0).await?, canonical))
            })
        }
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, qtype as u8, 0, 1]);
        q
    }

    fn egress(allowed: &[&str]) -> (Arc<Egress>, tokio::sync::mpsc::Receiver<NetEvent>) {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let config = ProxyConfig {
            allowed_domains: allowed.iter().map(|s| s.to_string()).collect(),
            denied_domains: vec!["api.example.com:25".into(), "ads.example.org".into()],
            allow_private_resolution: vec!["inside.example.com".into()],
            ..ProxyConfig::default()
        };
        let proxy = Proxy::new(&config, Arc::new(Fixed), tx).unwrap();
        (Egress::new(&proxy), rx)
    }

    fn rcode_and_count(a: &[u8]) -> (u8, u16) {
        (a[3] & 0xf, u16::from_be_bytes([a[6], a[7]]))
    }

    /// An alias is answered with its CNAME; a connect to its address is decided by the name
    /// asked; an alias of a name deniedDomains refuses is refused and reported.
    #[tokio::test]
    async fn aliases_are_answered_with_their_canonical_name_unless_it_is_denied() {
        let (e, mut rx) = egress(&["www.example.com:443", "tracker.example.com"]);
        let a = e.answer(&query("www.example.com", 1), "c").await.unwrap();
        assert_eq!(rcode_and_count(&a), (0, 2), "a CNAME and an address");
        assert!(a.windows(4).any(|w| w == b"\x03api"), "the CNAME names api.example.com");
        let d = e.decide("198.18.0.2".parse().unwrap(), 443, "c").await;
        assert!(d.allowed && d.host == "www.example.com", "decided by the name asked: {d:?}");
        assert_eq!(rcode_and_count(&e.answer(&query("tracker.example.com", 1), "c").await.unwrap()), (3, 0));
        let ev = rx.try_recv().unwrap();
        assert!(!ev.allowed && ev.rule.starts_with("an alias of ads.example.org: "), "{}", ev.rule);
    }

    #[tokio::test]
    async fn allowed_names_are_answered_and_remembered_others_refused_and_reported() {
        let (e, mut rx) = egress(&["api.example.com:443", "rebind.example.com", "inside.example.com:22", "198.18.9.9:80"]);
        assert_eq!(rcode_and_count(&e.answer(&query("api.example.com", 1), "c").await.unwrap()), (0, 1));
        assert_eq!(rcode_and_count(&e.answer(&query("API.example.com", 28), "c").await.unwrap()), (0, 1));
        assert_eq!(rcode_and_count(&e.answer(&query("api.example.com", 16), "c").await.unwrap()), (0, 0));
        assert!(rx.try_recv().is_err(), "answers are no events");
        // Unlisted: NXDOMAIN and a dns event with the type.
        assert_eq!(rcode_and_count(&e.answer(&query("evil.example.org", 1), "c").await.unwrap()), (3, 0));
        let ev = rx.try_recv().unwrap();
        assert_eq!((ev.protocol, ev.host.as_str(), ev.allowed, ev.dns_type.as_deref()), (Protocol::Dns, "evil.example.org", false, Some("A")));
        // Allowed, but resolving to a private address: the rebinding defence refuses it.
        assert_eq!(rcode_and_count(&e.answer(&query("rebind.example.com", 1), "c").await.unwrap()), (3, 0));
        assert!(rx.try_recv().unwrap().rule.contains("DNS rebinding"));
        assert_eq!(rcode_and_count(&e.answer(&query("inside.example.com", 1), "c").await.unwrap()), (0, 1));

        // Connects: by the names answered, with their ports.
        let api: IpAddr = "198.18.0.2".parse().unwrap();
        assert!(e.decide(api, 443, "c").await.allowed);
        assert_eq!(e.decide(api, 443, "c").await.host, "api.example.com");
        assert!(!e.decide(api, 22, "c").await.allowed, "a port the rule does not allow");
        assert!(e.decide("::ffff:198.18.0.2".parse().unwrap(), 443, "c").await.allowed, "IPv4-mapped");
        assert!(e.decide("2001:db8::2".parse().unwrap(), 443, "c").await.allowed);
        let inside: IpAddr = "10.0.0.6".parse().unwrap();
        assert!(e.decide(inside, 22, "c").await.allowed, "allowPrivateResolution");
        // Never answered: an IP literal, allowed only when listed.
        let other: IpAddr = "198.18.9.9".parse().unwrap();
        assert!(e.decide(other, 80, "c").await.allowed);
        let d = e.decide(other, 81, "c").await;
        assert!(!d.allowed && d.rule.contains("not an address sbx's DNS gave"), "{d:?}");
        assert!(!e.decide("10.0.0.5".parse().unwrap(), 443, "c").await.allowed, "refused by the rebinding defence, never answered");
    }

    #[tokio::test]
    async fn malformed_messages_get_formerr_or_nothing() {
        let (e, _rx) = egress(&["*"]);
        assert!(e.answer(&[1, 2, 3], "c").await.is_none());
        let mut two = query("api.example.com", 1);
        two[5] = 2;
        assert_eq!(rcode_and_count(&e.answer(&two, "c").await.unwrap()), (1, 0));
        // `*` does not cover IP literals asked as names.
        assert_eq!(rcode_and_count(&e.answer(&query("198.18.0.2", 1), "c").await.unwrap()), (3, 0));
    }

    /// `--ask`: a name no rule decides is answered by DNS, and asked about at connect time,
    /// with its port; a denied name is never asked about.
    #[tokio::test]
    async fn ask_decides_unlisted_names_at_connect_time() {
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        let (asks, mut asked) = tokio::sync::mpsc::channel::<crate::proxy::ask::AskRequest>(4);
        let config = ProxyConfig {
            denied_domains: vec!["rebind.example.com".into()],
            ask: Some(crate::proxy::ask::Asker { requests: asks, wait: std::time::Duration::from_secs(5) }),
            ..ProxyConfig::default()
        };
        let e = Egress::new(&Proxy::new(&config, Arc::new(Fixed), tx).unwrap());
        let answerer = tokio::spawn(async move {
            let r = asked.recv().await.unwrap();
            let seen = (r.host.clone(), r.port, r.protocol);
            r.reply.send(crate::proxy::ask::Answer::AllowOnce).unwrap();
            seen
        });
        assert_eq!(rcode_and_count(&e.answer(&query("api.example.com", 1), "c").await.unwrap()), (0, 1));
        assert_eq!(rcode_and_count(&e.answer(&query("rebind.example.com", 1), "c").await.unwrap()), (3, 0), "denied: no question");
        let d = e.decide("198.18.0.2".parse().unwrap(), 8443, "c").await;
        assert_eq!((d.allowed, d.host.as_str(), d.rule.as_str()), (true, "api.example.com", "asked: allowed once"));
        assert_eq!(answerer.await.unwrap(), ("api.example.com".to_string(), 8443, Protocol::Direct));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut a = Answered::default();
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            a.remember(IpAddr::V4(std::net::Ipv4Addr::from(i)), "x.example");
        }
        assert_eq!((a.names.len(), a.order.len()), (MAX_ADDRESSES, MAX_ADDRESSES));
        assert!(!a.names.contains_key(&IpAddr::V4(std::net::Ipv4Addr::from(0))));
        for n in 0..20 {
            a.remember(IpAddr::V4(std::net::Ipv4Addr::from(20)), &format!("n{n}.example"));
        }
        assert_eq!(a.names[&IpAddr::V4(std::net::Ipv4Addr::from(20))].len(), NAMES_PER_ADDRESS);
    }
}
