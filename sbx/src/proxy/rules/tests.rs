//! Table-driven unit tests for the policy rules.

use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn rules(allow: &[&str], deny: &[&str]) -> Rules {
    match Rules::new(&s(allow), &s(deny), &[], &[]) {
        Ok(r) => r,
        Err(e) => panic!("rules: {e}"),
    }
}

/// (allowed, denied, host, port, expected allowed, expected rule)
type Case = (&'static [&'static str], &'static [&'static str], &'static str, u16, bool, &'static str);

const CASES: &[Case] = &[
    // exact names
    (&["example.com"], &[], "example.com", 443, true, "allowedDomains: example.com"),
    (&["example.com"], &[], "www.example.com", 443, false, NO_RULE),
    (&["example.com"], &[], "example.co", 443, false, NO_RULE),
    (&["example.com"], &[], "notexample.com", 443, false, NO_RULE),
    // wildcards: subdomains only, never the apex
    (&["*.example.com"], &[], "a.example.com", 443, true, "allowedDomains: *.example.com"),
    (&["*.example.com"], &[], "a.b.example.com", 80, true, "allowedDomains: *.example.com"),
    (&["*.example.com"], &[], "example.com", 443, false, NO_RULE),
    (&["*.example.com"], &[], "badexample.com", 443, false, NO_RULE),
    (&["*.example.com"], &[], "example.com.evil", 443, false, NO_RULE),
    (&["*.example.com", "example.com"], &[], "example.com", 443, true, "allowedDomains: example.com"),
    // ports
    (&["example.com:443"], &[], "example.com", 443, true, "allowedDomains: example.com:443"),
    (&["example.com:443"], &[], "example.com", 80, false, NO_RULE),
    (&["*.example.com:8443"], &[], "a.example.com", 8443, true, "allowedDomains: *.example.com:8443"),
    (&["*.example.com:8443"], &[], "a.example.com", 443, false, NO_RULE),
    (&["*:443"], &[], "anything.test", 443, true, "allowedDomains: *:443"),
    (&["*:443"], &[], "anything.test", 80, false, NO_RULE),
    // "*"
    (&["*"], &[], "anything.test", 1, true, "allowedDomains: *"),
    (&["*"], &[], "xn--bcher-kva.example", 65535, true, "allowedDomains: *"),
    (&["*"], &[], "1.2.3.4", 443, false, NO_RULE),
    (&["*"], &[], "[2001:db8::1]", 443, false, NO_RULE),
    // deny beats allow
    (&["*"], &["evil.example"], "evil.example", 443, false, "deniedDomains: evil.example"),
    (&["*"], &["evil.example"], "good.example", 443, true, "allowedDomains: *"),
    (&["evil.example"], &["evil.example"], "evil.example", 443, false, "deniedDomains: evil.example"),
    (&["*.example.com"], &["bad.example.com"], "bad.example.com", 443, false, "deniedDomains: bad.example.com"),
    (&["*.example.com"], &["bad.example.com"], "ok.example.com", 443, true, "allowedDomains: *.example.com"),
    (&["*.example.com"], &["*.bad.example.com"], "x.bad.example.com", 1, false, "deniedDomains: *.bad.example.com"),
    (&["*.example.com"], &["*.bad.example.com"], "bad.example.com", 1, true, "allowedDomains: *.example.com"),
    (&["example.com"], &["example.com:25"], "example.com", 25, false, "deniedDomains: example.com:25"),
    (&["example.com"], &["example.com:25"], "example.com", 443, true, "allowedDomains: example.com"),
    (&["1.2.3.4"], &["*"], "1.2.3.4", 443, false, "deniedDomains: *"),
    (&["a.test"], &["*"], "a.test", 443, false, "deniedDomains: *"),
    // case, trailing dot, IDNA
    (&["Example.COM"], &[], "eXample.com", 443, true, "allowedDomains: Example.COM"),
    (&["example.com."], &[], "example.com", 443, true, "allowedDomains: example.com."),
    (&["example.com"], &[], "example.com.", 443, true, "allowedDomains: example.com"),
    (&["*.example.com"], &[], "A.Example.Com.", 443, true, "allowedDomains: *.example.com"),
    (&["bücher.example"], &[], "xn--bcher-kva.example", 443, true, "allowedDomains: bücher.example"),
    (&["xn--bcher-kva.example"], &[], "BÜCHER.example", 443, true, "allowedDomains: xn--bcher-kva.example"),
    (&["*.bücher.example"], &[], "shop.xn--bcher-kva.example", 443, true, "allowedDomains: *.bücher.example"),
    (&["*"], &["bücher.example"], "xn--bcher-kva.example", 443, false, "deniedDomains: bücher.example"),
    // IP literals: only when listed literally
    (&["1.2.3.4"], &[], "1.2.3.4", 443, true, "allowedDomains: 1.2.3.4"),
    (&["1.2.3.4:443"], &[], "1.2.3.4", 80, false, NO_RULE),
    (&["1.2.3.4"], &[], "1.2.3.5", 443, false, NO_RULE),
    (&["1.2.3.4"], &[], "::ffff:1.2.3.4", 443, true, "allowedDomains: 1.2.3.4"),
    (&["::1"], &[], "[::1]", 443, true, "allowedDomains: ::1"),
    (&["[::1]:443"], &[], "[::1]", 443, true, "allowedDomains: [::1]:443"),
    (&["[::1]:443"], &[], "::1", 8443, false, NO_RULE),
    (&["[0:0:0:0:0:0:0:1]"], &[], "::1", 1, true, "allowedDomains: [0:0:0:0:0:0:0:1]"),
    (&["*.example.com"], &[], "127.0.0.1", 80, false, NO_RULE),
    (&["example.com"], &["1.2.3.4"], "1.2.3.4", 80, false, "deniedDomains: 1.2.3.4"),
    // nothing configured
    (&[], &[], "example.com", 443, false, NO_RULE),
];

#[test]
fn decision_table() {
    for (i, (allow, deny, host, port, want_allowed, want_rule)) in CASES.iter().enumerate() {
        let r = rules(allow, deny);
        let (_, d) = r.decide_raw(host, *port);
        assert_eq!(
            (d.allowed, d.rule.as_str()),
            (*want_allowed, *want_rule),
            "case {i}: allow={allow:?} deny={deny:?} {host}:{port}"
        );
    }
}

#[test]
fn invalid_entries_name_the_entry() {
    let bad = [
        "",
        "   ",
        "exa mple.com",
        "*example.com",
        "a.*.example.com",
        "*.*.example.com",
        "example.*",
        "**",
        "example.com:",
        "example.com:0",
        "example.com:65536",
        "example.com:http",
        "example..com",
        ".example.com",
        "[::1",
        "[::1]443",
        "[not-v6]",
        "fe80::1%eth0",
        "1:2",
        "127.1",
        "0x7f.0x1",
        "2130706433",
        "xn--zz--.example",
        "a/b.example",
        &format!("{}.example", "a".repeat(64)),
    ];
    for entry in bad {
        let err = Rules::new(&[entry.to_owned()], &[], &[], &[]);
        match err {
            Err(RuleError::InvalidEntry { list, entry: e, .. }) => {
                assert_eq!(list, "allowedDomains");
                assert_eq!(e, entry);
            }
            other => panic!("{entry:?} should be invalid, got {other:?}"),
        }
    }
    let e = Rules::new(&[], &s(&["ok.test", "bad..test"]), &[], &[]);
    let msg = e.map(|_| ()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("deniedDomains") && msg.contains("\"bad..test\""), "{msg}");
    assert_eq!(Rules::new(&[], &[], &s(&["*.*"]), &[]).err().map(|e| matches!(e, RuleError::InvalidEntry { list: "allowPrivateResolution", .. })), Some(true));
    assert_eq!(Rules::new(&[], &[], &[], &[0]).err(), Some(RuleError::InvalidPort));
}

#[test]
fn valid_entries_parse() {
    for entry in ["*", "*:443", "example.com", "*.example.com:8443", "1.2.3.4:80", "::1", "[::1]", "[::1]:1", "bücher.example", "under_score.test", " padded.test "] {
        assert!(Pattern::parse(entry).is_ok(), "{entry}");
    }
}

#[test]
fn host_normalisation() {
    let name = |s: &str| Host::parse(s).ok();
    assert_eq!(name("Bücher.Example."), Some(Host::Name("xn--bcher-kva.example".into())));
    assert_eq!(name("[::1]"), Some(Host::Ip("::1".parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))));
    assert_eq!(name("::ffff:127.0.0.1"), Some(Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))));
    for bad in ["", ".", "a..b", "exa mple", "127.1", "[::1", "::1]", "fe80::1%lo", "a:b", "0x7f000001"] {
        assert!(Host::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)).with_port(443), "[::1]:443");
    assert_eq!(Host::Name("a.test".into()).with_port(80), "a.test:80");
    let (h, d) = rules(&["*"], &[]).decide_raw("bad..name", 443);
    assert!(h.is_none() && !d.allowed && d.rule.starts_with("invalid host name"), "{d:?}");
}

#[test]
fn local_outbound_ports() {
    let r = match Rules::new(&[], &s(&["evil.test"]), &[], &[5432, 11434]) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    for host in ["localhost", "LOCALHOST.", "127.0.0.1", "::1", "[::1]"] {
        let (_, d) = r.decide_raw(host, 5432);
        assert_eq!((d.allowed, d.rule.as_str(), d.addresses), (true, "allowLocalOutboundPorts: 5432", AddressPolicy::Unchecked), "{host}");
        let (_, d) = r.decide_raw(host, 5433);
        assert!(!d.allowed, "{host}:5433");
    }
    for host in ["127.0.0.2", "example.com", "localhost.example"] {
        assert!(!r.decide_raw(host, 5432).1.allowed, "{host}");
    }
    // deny still wins
    let r = match Rules::new(&[], &s(&["localhost"]), &[], &[5432]) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.decide_raw("localhost", 5432).1.rule, "deniedDomains: localhost");
    assert!(r.decide_raw("127.0.0.1", 5432).1.allowed);
}

#[test]
fn address_policy_selection() {
    let r = match Rules::new(&s(&["a.test", "*.b.test", "9.9.9.9"]), &[], &s(&["a.test", "x.b.test:8080"]), &[]) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let pol = |h: &str, p: u16| r.decide_raw(h, p).1.addresses;
    assert_eq!(pol("a.test", 1), AddressPolicy::PrivateAllowed);
    assert_eq!(pol("y.b.test", 8080), AddressPolicy::PublicOnly);
    assert_eq!(pol("x.b.test", 8080), AddressPolicy::PrivateAllowed);
    assert_eq!(pol("x.b.test", 80), AddressPolicy::PublicOnly);
    assert_eq!(pol("9.9.9.9", 80), AddressPolicy::Unchecked);
}

#[test]
fn address_classes() {
    let cases: &[(&str, Option<&str>)] = &[
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("100.63.255.255", None),
        ("100.128.0.0", None),
        ("172.32.0.1", None),
        ("2001:4860:4860::8888", None),
        ("127.0.0.1", Some("loopback")),
        ("127.255.0.9", Some("loopback")),
        ("::1", Some("loopback")),
        ("::ffff:127.0.0.1", Some("loopback")),
        ("10.1.2.3", Some("private")),
        ("172.16.0.1", Some("private")),
        ("172.31.255.255", Some("private")),
        ("192.168.1.1", Some("private")),
        ("fc00::1", Some("private")),
        ("fd12:3456::1", Some("private")),
        ("::ffff:192.168.0.1", Some("private")),
        ("169.254.1.1", Some("link-local")),
        ("fe80::1", Some("link-local")),
        ("100.64.0.1", Some("CGNAT")),
        ("100.127.255.255", Some("CGNAT")),
        ("0.0.0.0", Some("unspecified")),
        ("0.1.2.3", Some("unspecified")),
        ("::", Some("unspecified")),
        ("224.0.0.1", Some("multicast")),
        ("ff02::1", Some("multicast")),
        ("255.255.255.255", Some("reserved/broadcast")),
        ("169.254.169.254", Some("cloud-metadata")),
        ("fd00:ec2::254", Some("cloud-metadata")),
        ("::ffff:169.254.169.254", Some("cloud-metadata")),
    ];
    for (ip, want) in cases {
        let addr: IpAddr = match ip.parse() {
            Ok(a) => a,
            Err(e) => panic!("{ip}: {e}"),
        };
        assert_eq!(classify(addr), *want, "{ip}");
    }
}

#[test]
fn check_address_by_policy() {
    let ip = |s: &str| -> IpAddr { s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) };
    use AddressPolicy::*;
    assert!(Rules::check_address(PublicOnly, ip("8.8.8.8")).is_ok());
    let e = Rules::check_address(PublicOnly, ip("127.0.0.1")).err().unwrap_or_default();
    assert_eq!(e, "resolved to loopback address 127.0.0.1, refused: DNS rebinding defence, name not in allowPrivateResolution");
    assert!(Rules::check_address(PublicOnly, ip("10.0.0.1")).is_err());
    assert!(Rules::check_address(PrivateAllowed, ip("10.0.0.1")).is_ok());
    assert!(Rules::check_address(PrivateAllowed, ip("::1")).is_ok());
    assert!(Rules::check_address(PrivateAllowed, ip("169.254.169.254")).err().unwrap_or_default().contains("cloud-metadata"));
    assert!(Rules::check_address(PrivateAllowed, ip("fd00:ec2::254")).is_err());
    assert!(Rules::check_address(Unchecked, ip("169.254.169.254")).is_ok());
    assert!(Rules::check_address(Unchecked, ip("127.0.0.1")).is_ok());
}

/// sbx's DNS decides a name before any port is known: an allow entry on any port answers
/// it, a deny entry only when it has no port (a port-specific deny is for the connect).
#[test]
fn decide_name_ignores_ports_except_to_deny() {
    let r = Rules::new(
        &["github.com:22".into(), "*.example.com:443".into(), "inside.corp".into()],
        &["evil.example.com".into(), "mail.example.com:25".into()],
        &["inside.corp".into()],
        &[],
    )
    .unwrap();
    let name = |n: &str| Host::Name(n.into());
    let d = r.decide_name(&name("github.com"));
    assert_eq!((d.allowed, d.rule.as_str(), d.addresses), (true, "allowedDomains: github.com:22", AddressPolicy::PublicOnly));
    assert!(r.decide_name(&name("api.example.com")).allowed);
    assert!(r.decide_name(&name("mail.example.com")).allowed, "denied on port 25 only");
    let d = r.decide_name(&name("evil.example.com"));
    assert_eq!((d.allowed, d.rule.as_str(), d.kind), (false, "deniedDomains: evil.example.com", DecisionKind::Rule));
    let d = r.decide_name(&name("other.org"));
    assert_eq!((d.allowed, d.kind), (false, DecisionKind::NoRule));
    assert_eq!(r.decide_name(&name("inside.corp")).addresses, AddressPolicy::PrivateAllowed);
    assert!(!r.decide_name(&name("example.com")).allowed, "the apex is not a subdomain");
}
