//! What the sandbox sent that had no route: the kernel counts every datagram, ping or
//! connect its network namespace could not route (`OutNoRoutes` in `/proc/net/snmp` and
//! `Ip6OutNoRoutes` in `/proc/net/snmp6`, per namespace). With transparent egress that is
//! exactly the traffic refused by the sandbox's network: TCP connects are decided by sbx,
//! so what is left is UDP other than sbx's DNS, ICMP and raw packets. The kernel tracer
//! reports each with its destination; without it (`sbx run --log` as a user without the
//! pinned tracer) this count is what the log can say.
//!
//! The files are opened while the sandbox's pid 1 lives: an open file of `/proc/PID/net`
//! holds its namespace, so they can be read again after every process of it has gone.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
};

/// The sandbox's no-route counters, and their values at start.
#[derive(Debug)]
pub struct NoRoutes {
    v4: Option<File>,
    v6: Option<File>,
    at_start: u64,
}

impl NoRoutes {
    /// The counters of the network namespace of `pid` (the sandbox's pid 1, on the host).
    pub fn open(pid: i32) -> Option<NoRoutes> {
        let v4 = File::open(format!("/proc/{pid}/net/snmp")).ok();
        let v6 = File::open(format!("/proc/{pid}/net/snmp6")).ok();
        if v4.is_none() && v6.is_none() {
            return None;
        }
        let mut counters = NoRoutes { v4, v6, at_start: 0 };
        counters.at_start = counters.total();
        Some(counters)
    }

    /// Packets without a route since [`NoRoutes::open`].
    pub fn since_start(&mut self) -> u64 {
        self.total().saturating_sub(self.at_start)
    }

    fn total(&mut self) -> u64 {
        let reread = |f: &mut Option<File>| {
            let f = f.as_mut()?;
            f.seek(SeekFrom::Start(0)).ok()?;
            let mut text = String::new();
            f.read_to_string(&mut text).ok()?;
            Some(text)
        };
        let v4 = reread(&mut self.v4).and_then(|t| out_no_routes(&t)).unwrap_or(0);
        let v6 = reread(&mut self.v6).and_then(|t| out_no_routes6(&t)).unwrap_or(0);
        v4 + v6
    }
}

/// `OutNoRoutes` of `/proc/net/snmp`: the `Ip:` header line names the columns of the
/// `Ip:` line of values after it.
fn out_no_routes(snmp: &str) -> Option<u64> {
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next()?, ip.next()?);
    let at = names.split_whitespace().position(|n| n == "OutNoRoutes")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// `Ip6OutNoRoutes` of `/proc/net/snmp6` (one `name value` per line).
fn out_no_routes6(snmp6: &str) -> Option<u64> {
    snmp6.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next()? == "Ip6OutNoRoutes").then(|| words.next()?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_read_by_their_names() {
        let snmp = "Ip: Forwarding DefaultTTL InReceives OutNoRoutes ReasmTimeout\nIp: 2 64 100 7 0\nIcmp: InMsgs\nIcmp: 3\n";
        assert_eq!(out_no_routes(snmp), Some(7));
        assert_eq!(out_no_routes("Icmp: InMsgs\nIcmp: 3\n"), None);
        assert_eq!(out_no_routes6("Ip6InReceives                   \t5\nIp6OutNoRoutes                  \t2\n"), Some(2));
    }
}
