//! The proxy's suite: throughput and connection rate through sbx's proxy against a direct
//! loopback connection and a splice relay.

use super::*;

/// Bytes of the large download of the proxy suite.
const PROXY_BIG: u64 = 256 << 20;
/// Short requests per run of the connection-rate half of the proxy suite.
const PROXY_CONNS: usize = 500;

/// A minimal HTTP/1.1 server on 127.0.0.1 for the proxy suite: `GET /big`
/// streams [`PROXY_BIG`] bytes, anything else gets an empty 200; every
/// response closes its connection, so each request is a new connection.
fn loopback_server() -> Result<u16> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the bench server on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    let serve = |mut s: std::net::TcpStream| -> std::io::Result<()> {
        static CHUNK: [u8; 256 << 10] = [b'x'; 256 << 10];
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf)?;
            if n == 0 || head.len() > 64 << 10 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let len = if head.starts_with(b"GET /big ") { PROXY_BIG } else { 0 };
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK.len() as u64) as usize;
            s.write_all(&CHUNK[..n])?;
            left -= n as u64;
        }
        // The request was read whole, so closing sends a FIN after the data.
        s.shutdown(std::net::Shutdown::Write)
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(port)
}

/// The floor of any relay that terminates TCP, for the proxy suite: a
/// listener on 127.0.0.1 that connects each client to `target` on 127.0.0.1
/// and moves the bytes with splice(2) through a 256 KiB pipe per direction,
/// one blocking thread per direction: no policy, no sandbox, no async
/// runtime. What sbx's proxy loses against this is sbx's own cost; what
/// this loses against bare loopback is the second TCP connection's.
fn splice_relay(target: u16) -> Result<u16> {
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are new descriptors that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ takes an int; a refusal only leaves the default size.
        unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 256 << 10) };
        Ok((r, w))
    }
    fn splice(from: i32, to: i32, len: usize) -> std::io::Result<usize> {
        // SAFETY: plain descriptors and null offsets (sockets and pipes have none).
        let n = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, libc::SPLICE_F_MOVE) };
        usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
    }
    // One direction until EOF, then half-close the other side.
    fn pump(from: &TcpStream, to: &TcpStream) -> std::io::Result<()> {
        let (r, w) = pipe()?;
        loop {
            let mut left = splice(from.as_raw_fd(), w.as_raw_fd(), 256 << 10)?;
            if left == 0 {
                return to.shutdown(Shutdown::Write);
            }
            while left > 0 {
                left -= splice(r.as_raw_fd(), to.as_raw_fd(), left)?;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the bench relay on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else { continue };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else { continue };
            std::thread::spawn(move || pump(&client, &upstream));
            std::thread::spawn(move || pump(&u2, &c2));
        }
    });
    Ok(port)
}

/// The egress proxy against direct loopback, in one run: (a) the throughput
/// of a 256 MiB download, (b) the cost of a connection (500 short requests,
/// each on its own connection). Every client is curl; the sandboxed ones run
/// inside `sbx run`, direct through the forwarded port
/// (`allowLocalOutboundPorts`) or through the proxy (absolute-URI HTTP,
/// CONNECT, SOCKS5), and the baselines are bare curl on the host's loopback
/// and bare curl through [`splice_relay`], the least any relay costs here.
pub(super) fn proxy(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
    let work = root.join("target/bench/proxy-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let port = loopback_server()?;
    let relay = splice_relay(port)?;
    // The bench's policy: the server's IP literal and its forwarded port.
    std::fs::write(
        work.join("sbx.jsonc"),
        format!(
            "// Temporary policy of `cargo xtask bench proxy`.\n{{ \"network\": {{ \"allowedDomains\": [\"127.0.0.1:{port}\"], \"allowLocalOutboundPorts\": [{port}] }} }}\n"
        ),
    )?;
    let runs = runs.clamp(5, 15);
    let os = |s: &str| OsString::from(s);
    // (name, inside sbx, how curl reaches the server)
    let routes: [(&str, bool, &str); 6] = [
        ("bare curl, host loopback", false, "--noproxy '*'"),
        ("bare curl, minimal splice relay", false, "--noproxy '*' --connect-to ::127.0.0.1:RELAY"),
        ("sbx run, forwarded port", true, "--noproxy '*'"),
        ("sbx run, HTTP proxy", true, r#"--noproxy '' -x "$HTTP_PROXY""#),
        ("sbx run, HTTP CONNECT", true, r#"--noproxy '' -p -x "$HTTP_PROXY""#),
        ("sbx run, SOCKS5", true, r#"--noproxy '' -x "$ALL_PROXY""#),
    ];
    let subjects = |label: &str, script: &dyn Fn(&str) -> String| -> Vec<Subject> {
        routes
            .iter()
            .map(|(name, in_sbx, how)| {
                let mut argv: Vec<OsString> = if *in_sbx { vec![sbx.into(), os("run"), os("--")] } else { Vec::new() };
                let how = how.replace("RELAY", &relay.to_string());
                argv.extend([os("/bin/sh"), os("-c"), OsString::from(script(&how))]);
                Subject::new(format!("{label}: {name}"), argv).in_dir(&work)
            })
            .collect()
    };

    // (a) Throughput: curl's own transfer time, so sandbox start-up is not in it.
    let big = subjects("256 MiB", &|how| {
        format!("exec curl -sS {how} -o /dev/null -w '%{{size_download}} %{{time_total}} %{{http_code}}' http://127.0.0.1:{port}/big")
    });
    let samples = sample(&big, runs, |out| match numbers(out)?[..] {
        [size, secs, code] if size as u64 == PROXY_BIG && code == 200.0 => Ok(secs * 1e3),
        _ => bail!("expected {PROXY_BIG} bytes with status 200"),
    })?;
    let mut contenders: Vec<Contender> = big.iter().zip(samples).map(|(s, v)| contender(s, v)).collect();

    // (b) Connections: 500 requests in one curl (URL globbing), timed inside.
    let small = subjects("500 connections", &|how| {
        format!(
            "t0=$(date +%s%N); n=$(curl -sS {how} -w '%{{http_code}}\\n' 'http://127.0.0.1:{port}/small/[1-{PROXY_CONNS}]' | grep -c '^200$'); t1=$(date +%s%N); echo \"$n $((t1 - t0))\""
        )
    });
    let samples = sample(&small, runs, |out| match numbers(out)?[..] {
        [n, ns] if n as usize == PROXY_CONNS => Ok(ns / 1e6 / PROXY_CONNS as f64),
        _ => bail!("expected {PROXY_CONNS} responses with status 200"),
    })?;
    contenders.extend(small.iter().zip(samples).map(|(s, v)| contender(s, v)));
    let _ = std::fs::remove_dir_all(&work);

    let n = routes.len();
    let mut ratios = Vec::new();
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let mbps = |c: &Contender| PROXY_BIG as f64 / 1e6 / (c.median_ms / 1e3);
    for c in &contenders[..n] {
        figures.push((format!("{}: MB/s", c.name), mbps(c)));
    }
    for (half, offset) in [("throughput", 0), ("connections", n)] {
        let [bare, relay, forwarded] = [0, 1, 2].map(|i| &contenders[offset + i]);
        for proxied in &contenders[offset + 1..offset + n] {
            let route = proxied.name.split(": ").nth(1).unwrap_or_default();
            // The relay against bare only; everything in the sandbox against all three.
            let against = if proxied.name == relay.name { &[bare][..] } else { &[bare, relay, forwarded][..] };
            for direct in against.iter().filter(|d| d.name != proxied.name) {
                ratios.push(Ratio {
                    of: proxied.name.clone(),
                    against: direct.name.clone(),
                    ratio: proxied.median_ms / direct.median_ms,
                    added_ms: proxied.median_ms - direct.median_ms,
                });
                let against_route = direct.name.split(": ").nth(1).unwrap_or_default();
                figures.push(if half == "throughput" {
                    (format!("throughput: {route} / {against_route} (%)"), mbps(proxied) / mbps(direct) * 100.0)
                } else {
                    (
                        format!("connections: {route}: added ms per connection over {against_route}"),
                        proxied.median_ms - direct.median_ms,
                    )
                });
            }
            if proxied.name == relay.name || proxied.name == forwarded.name {
                continue;
            }
            if half == "throughput" {
                let of_bare = mbps(proxied) / mbps(bare) * 100.0;
                let verdict = if of_bare >= 80.0 { "met" } else { "NOT met" };
                notes.push(format!("goal >= 80% of direct loopback throughput: {route} {of_bare:.0}% of bare: {verdict}"));
            } else {
                let added = proxied.median_ms - bare.median_ms;
                let verdict = if added < 1.0 { "met" } else { "NOT met" };
                notes.push(format!("goal < 1 ms added per connection: {route} +{added:.3} ms over bare: {verdict}"));
            }
        }
    }
    let floor = mbps(&contenders[1]) / mbps(&contenders[0]) * 100.0;
    notes.push(format!("the floor of a relay that terminates TCP (splice and nothing else) here: {floor:.0}% of bare"));
    Ok(Report { suite: "proxy", runs, contenders, ratios, figures, notes })
}
