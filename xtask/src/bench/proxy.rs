//! The egress suite: throughput and connection rate of a client in the sandbox, through
//! transparent egress (its own socket, connected by sbx on the host) and through sbx's proxy,
//! against a direct connection and a splice relay. The server runs in a network namespace
//! of the bench's own, on a veth pair: transparent egress serves addresses outside the
//! sandbox's loopback, and no other address may be used.

use super::*;

/// Bytes of the large download of the proxy suite.
const PROXY_BIG: u64 = 256 << 20;
/// Short requests per run of the connection-rate half of the proxy suite.
const PROXY_CONNS: usize = 500;

/// The bench's network: a namespace joined to the host by a veth pair (198.18.X.1 on the
/// host, 198.18.X.2 inside; the benchmarking range, never routed off this machine). Removed
/// when dropped.
struct BenchNet {
    netns: String,
    veth: String,
    /// The namespace's address.
    addr: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

impl BenchNet {
    fn create() -> Result<BenchNet> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the proxy suite needs root: its server runs in a network namespace it creates");
        }
        let pid = std::process::id();
        let used = Command::new("ip").args(["-4", "-o", "addr", "show"]).output().context("running ip (iproute2)")?;
        let used = String::from_utf8_lossy(&used.stdout).into_owned();
        let x = (200..=250u8).find(|x| !used.contains(&format!(" 198.18.{x}."))).context("no free 198.18.X.0/30 for the bench's network")?;
        let net = BenchNet { netns: format!("sbxbench-{pid}"), veth: format!("sxb{pid}"), addr: std::net::Ipv4Addr::new(198, 18, x, 2) };
        let peer = format!("{}p", net.veth);
        ip(&["netns", "add", &net.netns])?;
        ip(&["link", "add", &net.veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["addr", "add", &format!("198.18.{x}.1/30"), "dev", &net.veth])?;
        ip(&["link", "set", &peer, "netns", &net.netns])?;
        ip(&["-n", &net.netns, "addr", "add", &format!("{}/30", net.addr), "dev", &peer])?;
        ip(&["-n", &net.netns, "link", "set", &peer, "up"])?;
        ip(&["-n", &net.netns, "link", "set", "lo", "up"])?;
        ip(&["link", "set", &net.veth, "up"])?;
        Ok(net)
    }
}

impl Drop for BenchNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).stderr(Stdio::null()).status();
        let _ = Command::new("ip").args(["link", "del", &self.veth]).stderr(Stdio::null()).status();
    }
}

/// A minimal HTTP/1.1 server for the proxy suite, listening on the bench network's
/// address inside its namespace: `GET /big` streams [`PROXY_BIG`] bytes, anything else
/// gets an empty 200; every response closes its connection, so each request is a new
/// connection.
fn bench_server(net: &BenchNet) -> Result<u16> {
    use std::io::{Read as _, Write as _};
    use std::os::fd::AsRawFd as _;
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
    let ns = std::fs::File::open(format!("/var/run/netns/{}", net.netns)).context("opening the bench's network namespace")?;
    let addr = net.addr;
    let (tx, rx) = std::sync::mpsc::channel();
    // The listener is made on a thread that joined the namespace (setns moves only the
    // calling thread); the connections it accepts are the namespace's wherever served.
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file, for this thread only.
        let joined = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
        let listener = if joined { std::net::TcpListener::bind((addr, 0)).ok() } else { None };
        let _ = tx.send(listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port()));
        let Some(listener) = listener else { return };
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    rx.recv()?.context("starting the bench server in its network namespace")
}

/// The floor of any relay that terminates TCP, for the proxy suite: a
/// listener on 127.0.0.1 that connects each client to `target` and moves the bytes with splice(2) through a 256 KiB pipe per direction,
/// one blocking thread per direction: no policy, no sandbox, no async
/// runtime. What sbx's proxy loses against this is sbx's own cost; what
/// this loses against bare loopback is the second TCP connection's.
fn splice_relay(target: std::net::SocketAddr) -> Result<u16> {
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
            let Ok(upstream) = TcpStream::connect(target) else { continue };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else { continue };
            std::thread::spawn(move || pump(&client, &upstream));
            std::thread::spawn(move || pump(&u2, &c2));
        }
    });
    Ok(port)
}

/// Egress from the sandbox against a direct connection, in one run: (a) the throughput of
/// a 256 MiB download, (b) the cost of a connection (500 short requests, each on its own
/// connection). Every client is curl and every route ends at the same server, in the bench's
/// network namespace over a veth pair: bare curl on the host, bare curl through
/// [`splice_relay`] (the least any relay costs here), and inside `sbx run` by transparent
/// egress (curl ignoring the proxy: its own socket, connected by sbx) and through the proxy
/// (absolute-URI HTTP, CONNECT, SOCKS5).
pub(super) fn proxy(root: &Path, sbx: &Path, runs: usize) -> Result<Report> {
    let work = root.join("target/bench/proxy-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let net = BenchNet::create()?;
    let port = bench_server(&net)?;
    let server = net.addr;
    let relay = splice_relay(std::net::SocketAddr::from((server, port)))?;
    // The bench's policy: the server's IP literal, on its port.
    std::fs::write(
        work.join("sbx.jsonc"),
        format!("// Temporary policy of `cargo xtask bench proxy`.\n{{ \"network\": {{ \"allowedDomains\": [\"{server}:{port}\"] }} }}\n"),
    )?;
    let runs = runs.clamp(5, 15);
    let os = |s: &str| OsString::from(s);
    // (name, inside sbx, how curl reaches the server)
    // Another build of sbx's transparent egress, for a change's before and after
    // (`SBX_BASELINE=PATH`), last.
    let baseline = std::env::var_os("SBX_BASELINE").map(std::path::PathBuf::from);
    let mut routes: Vec<(&str, Option<&Path>, &str)> = vec![
        ("bare curl, direct", None, "--noproxy '*'"),
        ("bare curl, minimal splice relay", None, "--noproxy '*' --connect-to ::127.0.0.1:RELAY"),
        ("sbx run, transparent egress", Some(sbx), "--noproxy '*'"),
        ("sbx run, HTTP proxy", Some(sbx), r#"--noproxy '' -x "$HTTP_PROXY""#),
        ("sbx run, HTTP CONNECT", Some(sbx), r#"--noproxy '' -p -x "$HTTP_PROXY""#),
        ("sbx run, SOCKS5", Some(sbx), r#"--noproxy '' -x "$ALL_PROXY""#),
    ];
    if let Some(b) = &baseline {
        routes.push(("baseline sbx run, transparent egress", Some(b), "--noproxy '*'"));
    }
    const TRANSPARENT: usize = 2;
    const BASELINE: usize = 6;
    let subjects = |label: &str, script: &dyn Fn(&str) -> String| -> Vec<Subject> {
        routes
            .iter()
            .map(|(name, in_sbx, how)| {
                let mut argv: Vec<OsString> = match in_sbx {
                    Some(bin) => vec![bin.into(), os("run"), os("--")],
                    None => Vec::new(),
                };
                let how = how.replace("RELAY", &relay.to_string());
                argv.extend([os("/bin/sh"), os("-c"), OsString::from(script(&how))]);
                Subject::new(format!("{label}: {name}"), argv).in_dir(&work)
            })
            .collect()
    };

    // (a) Throughput: curl's own transfer time, so sandbox start-up is not in it.
    let big = subjects("256 MiB", &|how| {
        format!("exec curl -sS {how} -o /dev/null -w '%{{size_download}} %{{time_total}} %{{http_code}}' http://{server}:{port}/big")
    });
    let samples = sample(&big, runs, |out| match numbers(out)?[..] {
        [size, secs, code] if size as u64 == PROXY_BIG && code == 200.0 => Ok(secs * 1e3),
        _ => bail!("expected {PROXY_BIG} bytes with status 200"),
    })?;
    let mut contenders: Vec<Contender> = big.iter().zip(samples).map(|(s, v)| contender(s, v)).collect();

    // (b) Connections: 500 requests in one curl (URL globbing), timed inside.
    let small = subjects("500 connections", &|how| {
        format!(
            "t0=$(date +%s%N); n=$(curl -sS {how} -w '%{{http_code}}\\n' 'http://{server}:{port}/small/[1-{PROXY_CONNS}]' | grep -c '^200$'); t1=$(date +%s%N); echo \"$n $((t1 - t0))\""
        )
    });
    let samples = sample(&small, runs, |out| match numbers(out)?[..] {
        [n, ns] if n as usize == PROXY_CONNS => Ok(ns / 1e6 / PROXY_CONNS as f64),
        _ => bail!("expected {PROXY_CONNS} responses with status 200"),
    })?;
    contenders.extend(small.iter().zip(samples).map(|(s, v)| contender(s, v)));
    let _ = std::fs::remove_dir_all(&work);
    drop(net);

    let n = routes.len();
    let mut ratios = Vec::new();
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let mbps = |c: &Contender| PROXY_BIG as f64 / 1e6 / (c.median_ms / 1e3);
    for c in &contenders[..n] {
        figures.push((format!("{}: MB/s", c.name), mbps(c)));
    }
    for (half, offset) in [("throughput", 0), ("connections", n)] {
        let [bare, relay] = [0, 1].map(|i| &contenders[offset + i]);
        for (i, other) in contenders[offset + 1..offset + n].iter().enumerate() {
            let route = other.name.split(": ").nth(1).unwrap_or_default();
            // The relay against bare only; everything in the sandbox against both.
            let against = if other.name == relay.name { &[bare][..] } else { &[bare, relay][..] };
            for base in against {
                ratios.push(Ratio { of: other.name.clone(), against: base.name.clone(), ratio: other.median_ms / base.median_ms, added_ms: other.median_ms - base.median_ms });
                let against_route = base.name.split(": ").nth(1).unwrap_or_default();
                figures.push(if half == "throughput" {
                    (format!("throughput: {route} / {against_route} (%)"), mbps(other) / mbps(base) * 100.0)
                } else {
                    (format!("connections: {route}: added ms per connection over {against_route}"), other.median_ms - base.median_ms)
                });
            }
            if other.name == relay.name || i + 1 == BASELINE {
                continue;
            }
            // Transparent egress: the direct connection's speed; the proxy: a relay's.
            let (share, added_max) = if i + 1 == TRANSPARENT { (95.0, 0.3) } else { (80.0, 1.0) };
            if half == "throughput" {
                let of_bare = mbps(other) / mbps(bare) * 100.0;
                let verdict = if of_bare >= share { "met" } else { "NOT met" };
                notes.push(format!("goal >= {share:.0}% of direct throughput: {route} {of_bare:.0}% of bare: {verdict}"));
            } else {
                let added = other.median_ms - bare.median_ms;
                let verdict = if added < added_max { "met" } else { "NOT met" };
                notes.push(format!("goal < {added_max} ms added per connection: {route} +{added:.3} ms over bare: {verdict}"));
            }
        }
    }
    let floor = mbps(&contenders[1]) / mbps(&contenders[0]) * 100.0;
    notes.push(format!("the floor of a relay that terminates TCP (splice and nothing else) here: {floor:.0}% of bare"));
    Ok(Report { suite: "proxy", runs, contenders, ratios, figures, notes })
}
