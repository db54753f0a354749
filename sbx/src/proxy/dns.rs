//! The DNS messages sbx's resolver in the sandbox reads and writes (RFC 1035), by hand and
//! bounded: one question per query, no name compression in it, nothing kept of the rest
//! (EDNS options are ignored; answers are short). Answers point at the question's name
//! (`0xc00c`), carry A or AAAA records (after a CNAME record to the name's canonical name,
//! when it has another), and a TTL of [`TTL`] seconds.

use std::net::IpAddr;

/// Query type A (IPv4 address).
pub const TYPE_A: u16 = 1;
/// Query type AAAA (IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Record type CNAME (the canonical name of an alias).
pub const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
/// The TTL of every answer: short, so that a program asks again (and the policy decides
/// again) rather than keeping an address for long.
pub const TTL: u32 = 30;
/// The longest message sbx reads or writes (a UDP answer without EDNS is at most 512 bytes;
/// answers are truncated to that by [`encode_answer`]).
pub const MAX_MESSAGE: usize = 512;

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    ServFail = 2,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

/// One parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    /// The RD bit, echoed.
    pub recursion_desired: bool,
    /// The name as asked, labels joined with dots (lossy for bytes that are not printable
    /// ASCII, which no allowed name has), without a trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// The question section as received (echoed in the answer).
    question: Vec<u8>,
}

/// Why a message is not a query sbx answers; `id` when the header could be read (the
/// answer then says FORMERR or NOTIMP), `None` when not even that (no answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub id: Option<(u16, Rcode)>,
}

/// The name of a query type for events: `A`, `AAAA`, ... or the number.
pub fn type_name(qtype: u16) -> String {
    match qtype {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => format!("TYPE{n}"),
    }
}

/// Parses a query.
pub fn parse_query(msg: &[u8]) -> Result<Query, Malformed> {
    if msg.len() < 12 {
        return Err(Malformed { id: None });
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let flags = u16::from_be_bytes([msg[2], msg[3]]);
    if flags & 0x8000 != 0 {
        // A response: never answered (no loops).
        return Err(Malformed { id: None });
    }
    let fail = |rcode| Err(Malformed { id: Some((id, rcode)) });
    if (flags >> 11) & 0xf != 0 {
        return fail(Rcode::NotImp);
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount != 1 || msg.len() > MAX_MESSAGE.max(4096) {
        return fail(Rcode::FormErr);
    }
    let mut at = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut wire_len = 0usize;
    loop {
        let Some(&len) = msg.get(at) else { return fail(Rcode::FormErr) };
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and the extended label types have no place in a question.
        if len & 0xc0 != 0 {
            return fail(Rcode::FormErr);
        }
        let len = usize::from(len);
        wire_len += len + 1;
        if wire_len > 254 {
            return fail(Rcode::FormErr);
        }
        let Some(label) = msg.get(at..at + len) else { return fail(Rcode::FormErr) };
        labels.push(label.iter().map(|&b| if b.is_ascii_graphic() && b != b'.' { char::from(b) } else { '?' }).collect());
        at += len;
    }
    let Some(tail) = msg.get(at..at + 4) else { return fail(Rcode::FormErr) };
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    Ok(Query {
        id,
        recursion_desired: flags & 0x0100 != 0,
        name: labels.join("."),
        qtype,
        qclass,
        question: msg[12..at + 4].to_vec(),
    })
}

impl Query {
    /// Whether the class is IN (the only one answered).
    pub fn is_internet(&self) -> bool {
        self.qclass == CLASS_IN
    }
}

fn header(id: u16, rd: bool, rcode: Rcode, qd: u16, an: u16) -> Vec<u8> {
    let flags: u16 = 0x8000 | if rd { 0x0100 } else { 0 } | 0x0080 | rcode as u16;
    let mut out = Vec::with_capacity(MAX_MESSAGE);
    for v in [id, flags, qd, an, 0, 0] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

/// The answer to a message that [`parse_query`] refused with an id.
pub fn encode_error(id: u16, rcode: Rcode) -> Vec<u8> {
    header(id, false, rcode, 0, 0)
}

/// The answer to `query`: `rcode`, and for NOERROR the addresses of the query's type
/// among `addrs` (A: IPv4, AAAA: IPv6; none for other types), as many as fit in
/// [`MAX_MESSAGE`] bytes; with `canonical` (a valid name other than the one asked), a
/// CNAME record to it first, which then owns the addresses.
pub fn encode_answer(query: &Query, rcode: Rcode, canonical: Option<&str>, addrs: &[IpAddr]) -> Vec<u8> {
    let records: Vec<Vec<u8>> = if rcode == Rcode::NoError {
        addrs
            .iter()
            .filter_map(|a| match (a, query.qtype) {
                (IpAddr::V4(v4), TYPE_A) => Some(v4.octets().to_vec()),
                (IpAddr::V6(v6), TYPE_AAAA) => Some(v6.octets().to_vec()),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let cname = canonical.filter(|_| rcode == Rcode::NoError).and_then(encode_name);
    let head = 12 + query.question.len();
    let cname_len = cname.as_ref().map_or(0, |c| 12 + c.len());
    let fits = (MAX_MESSAGE.saturating_sub(head + cname_len)) / (12 + 16);
    let records = &records[..records.len().min(fits)];
    let answers = records.len() + usize::from(cname.is_some());
    let mut out = header(query.id, query.recursion_desired, rcode, 1, answers as u16);
    out.extend_from_slice(&query.question);
    // The addresses' owner: the name asked (the question's, at 12), or the CNAME's target
    // (its record data, after the record's fixed 12 bytes).
    let mut owner = [0xc0, 0x0c];
    if let Some(c) = &cname {
        let at = (head + 12) as u16;
        out.extend_from_slice(&[0xc0, 0x0c]);
        out.extend_from_slice(&TYPE_CNAME.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(c.len() as u16).to_be_bytes());
        out.extend_from_slice(c);
        owner = (0xc000 | at).to_be_bytes();
    }
    for rdata in records {
        out.extend_from_slice(&owner);
        out.extend_from_slice(&query.qtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    out
}

/// `name` as DNS labels (`3www7example3com0`); none when a label is empty or longer than
/// 63 bytes, or the whole longer than 255.
fn encode_name(name: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    (out.len() <= 255).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn a_query_round_trips_to_an_answer() {
        let q = parse_query(&query("Api.Example.com", TYPE_A)).unwrap();
        assert_eq!((q.id, q.name.as_str(), q.qtype, q.recursion_desired, q.is_internet()), (0x1234, "Api.Example.com", TYPE_A, true, true));
        let addrs: Vec<IpAddr> = vec!["198.18.0.2".parse().unwrap(), "2001:db8::1".parse().unwrap(), "198.18.0.3".parse().unwrap()];
        let a = encode_answer(&q, Rcode::NoError, None, &addrs);
        // Header: the id, QR|RD|RA, NOERROR, one question, two answers (the IPv4 ones).
        assert_eq!(&a[..12], &[0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0]);
        let answers = &a[12 + q.question.len()..];
        assert_eq!(answers.len(), 2 * 16);
        assert_eq!(&answers[..12], &[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        assert_eq!(&answers[12..16], &[198, 18, 0, 2]);
        let q6 = parse_query(&query("example.com", TYPE_AAAA)).unwrap();
        let a6 = encode_answer(&q6, Rcode::NoError, None, &addrs);
        assert_eq!(u16::from_be_bytes([a6[6], a6[7]]), 1);
        let nx = encode_answer(&q6, Rcode::NxDomain, None, &addrs);
        assert_eq!((nx[3] & 0xf, u16::from_be_bytes([nx[6], nx[7]])), (3, 0));
    }

    #[test]
    fn an_alias_is_answered_with_a_cname_that_owns_the_addresses() {
        let q = parse_query(&query("www.example.com", TYPE_A)).unwrap();
        let addrs: Vec<IpAddr> = vec!["198.18.0.2".parse().unwrap(), "198.18.0.3".parse().unwrap()];
        let a = encode_answer(&q, Rcode::NoError, Some("cdn.example.net."), &addrs);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 3, "a CNAME and two addresses");
        let at = 12 + q.question.len();
        let target = b"\x03cdn\x07example\x03net\x00";
        assert_eq!(&a[at..at + 12], &[0xc0, 0x0c, 0, 5, 0, 1, 0, 0, 0, 30, 0, target.len() as u8]);
        assert_eq!(&a[at + 12..at + 12 + target.len()], target);
        // Each address is owned by the CNAME's target: a pointer to its record data.
        let first = at + 12 + target.len();
        let pointer = (0xc000 | (at + 12) as u16).to_be_bytes();
        assert_eq!(&a[first..first + 4], &[pointer[0], pointer[1], 0, 1]);
        assert_eq!(&a[first + 12..first + 16], &[198, 18, 0, 2]);
        // An invalid name is no CNAME; an error has none.
        let bad = encode_answer(&q, Rcode::NoError, Some("a..b"), &addrs);
        assert_eq!(u16::from_be_bytes([bad[6], bad[7]]), 2);
        let nx = encode_answer(&q, Rcode::NxDomain, Some("cdn.example.net"), &addrs);
        assert_eq!(u16::from_be_bytes([nx[6], nx[7]]), 0);
        // Still within a UDP message with a long target and many addresses.
        let long = format!("{}.example", ["a".repeat(63), "b".repeat(63), "c".repeat(63)].join("."));
        let many: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([198, 18, 1, i])).collect();
        assert!(encode_answer(&q, Rcode::NoError, Some(&long), &many).len() <= MAX_MESSAGE);
    }

    #[test]
    fn malformed_queries_are_refused_with_their_id_when_it_can_be_read() {
        assert_eq!(parse_query(&[0; 5]), Err(Malformed { id: None }));
        let mut response = query("a.example", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(parse_query(&response), Err(Malformed { id: None }));
        let mut two = query("a.example", TYPE_A);
        two[5] = 2;
        assert_eq!(parse_query(&two), Err(Malformed { id: Some((0x1234, Rcode::FormErr)) }));
        let mut pointer = query("a.example", TYPE_A);
        pointer[12] = 0xc0;
        assert_eq!(parse_query(&pointer), Err(Malformed { id: Some((0x1234, Rcode::FormErr)) }));
        let mut opcode = query("a.example", TYPE_A);
        opcode[2] |= 0x28;
        assert_eq!(parse_query(&opcode), Err(Malformed { id: Some((0x1234, Rcode::NotImp)) }));
        let truncated = query("a.example", TYPE_A);
        assert!(parse_query(&truncated[..truncated.len() - 2]).is_err());
        let long = ["a"; 130].join(".");
        assert!(parse_query(&query(&long, TYPE_A)).is_err(), "a name over 255 bytes");
    }

    #[test]
    fn answers_fit_in_a_udp_message() {
        let q = parse_query(&query("many.example", TYPE_AAAA)).unwrap();
        let addrs: Vec<IpAddr> = (0..100u16).map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))).collect();
        assert!(encode_answer(&q, Rcode::NoError, None, &addrs).len() <= MAX_MESSAGE);
    }

    proptest! {
        /// Any bytes: parsing never panics, and what parses answers within the bound.
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(q) = parse_query(&bytes) {
                let addrs: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(); 40];
                prop_assert!(encode_answer(&q, Rcode::NoError, None, &addrs).len() <= MAX_MESSAGE.max(12 + q.question.len()));
            }
        }
    }
}
