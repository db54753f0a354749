//! Test hosts in network namespaces: each test creates its own namespace
//! joined to the host by a veth pair (198.18.X.1/30 on the host, 198.18.X.2/30
//! inside; 198.18.0.0/15 is the benchmarking range, public by the proxy's
//! rules and never routed off this machine), runs HTTP, HTTPS, TCP and UDP
//! servers in it that record every connection and datagram, and makes test
//! names resolve to it with lines in /etc/hosts. A guard removes the lines,
//! the servers, the namespace and the veth, also when the test panics.
//!
//! Then, under `sbx monitor --no-tui --log`: an allowed name works through
//! every front end of the proxy (HTTP, CONNECT, SOCKS5); denied, unlisted and
//! unlisted-IP destinations are refused and never reach the server; traffic
//! that ignores the proxy (TCP, UDP, the host's abstract Unix sockets) has
//! no route; and a name that resolves to a private or loopback address is
//! refused by the DNS-rebinding defence.

use std::{
    collections::BTreeSet,
    fs::{self, OpenOptions},
    io::{BufRead as _, BufReader},
    os::{
        fd::AsRawFd as _,
        linux::net::SocketAddrExt as _,
        unix::{fs::PermissionsExt as _, net::{SocketAddr, UnixListener}},
    },
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use sbx_integration_tests::{As, Tmux, Workspace, read_log, require_root, require_tool, text};

/// The servers inside the namespace, all bound to 0.0.0.0 so that every
/// address of the namespace (198.18.X.2 and 10.255.X.2) is served: HTTP on
/// 80, HTTPS on 443 (cert.pem, key.pem), a TCP listener and a UDP socket on
/// 9000. Every accepted connection and every datagram is one line in the
/// events file: `tcp PORT PEER` or `udp PORT PEER`. Prints `ready` once
/// everything is bound.
const SERVER_PY: &str = r#"
import http.server, socket, ssl, sys, threading

events, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
lock = threading.Lock()

def record(kind, port, peer):
    with lock, open(events, "a") as f:
        f.write(f"{kind} {port} {peer[0]}\n")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from {self.server.scheme} {self.headers.get('Host')} {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port, tls):
        self.port, self.tls = port, tls
        self.scheme = "https" if tls else "http"
        super().__init__(("0.0.0.0", port), Handler)

    def get_request(self):
        sock, peer = super().get_request()
        record("tcp", self.port, peer)
        return sock, peer

    def finish_request(self, request, peer):
        if self.tls is None:
            return super().finish_request(request, peer)
        try:
            with self.tls.wrap_socket(request, server_side=True) as conn:
                self.RequestHandlerClass(conn, peer, self)
        except OSError:
            pass

tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
servers = [Server(80, None), Server(443, tls)]

tcp = socket.create_server(("0.0.0.0", 9000))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 9000))

def accept_tcp():
    while True:
        conn, peer = tcp.accept()
        record("tcp", 9000, peer)
        conn.close()

def receive_udp():
    while True:
        _, peer = udp.recvfrom(2048)
        record("udp", 9000, peer)

for target in [s.serve_forever for s in servers] + [accept_tcp, receive_udp]:
    threading.Thread(target=target, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// Serialises changes to /etc/hosts and the choice of subnets, across the
/// threads of this test binary and any other process using the same lock.
/// The lock is held while the file is open.
struct HostLock {
    _file: fs::File,
}

impl HostLock {
    fn take() -> HostLock {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open("/run/lock/sbx-it-network-hosts.lock")
            .expect("open the lock file");
        // SAFETY: flock on an fd we own; the lock goes with the file.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
        HostLock { _file: file }
    }
}

/// Rewrites /etc/hosts atomically (rename), so that a lookup made at the same
/// time by another test's proxy sees the old or the new file, never a
/// truncated one (which would send the name to real DNS). Needs the lock.
fn rewrite_hosts(_lock: &HostLock, edit: impl FnOnce(&str) -> String) {
    let hosts = Path::new("/etc/hosts");
    let old = fs::read_to_string(hosts).expect("read /etc/hosts");
    let new = edit(&old);
    let tmp = PathBuf::from(format!("/etc/.hosts.sbx-it-{}", std::process::id()));
    fs::write(&tmp, new.as_bytes()).expect("write the new /etc/hosts");
    let mode = fs::metadata(hosts).map(|m| m.permissions().mode()).unwrap_or(0o644);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).expect("chmod the new /etc/hosts");
    if let Err(e) = fs::rename(&tmp, hosts) {
        // A bind-mounted /etc/hosts (containers) cannot be replaced: rewrite it in place.
        let _ = fs::remove_file(&tmp);
        assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "rename over /etc/hosts: {e}");
        fs::write(hosts, new.as_bytes()).expect("rewrite /etc/hosts in place");
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), text(&out));
}

/// One test host: a network namespace with servers, its veth, and names in
/// /etc/hosts. Dropping it removes all of that.
struct TestHost {
    /// Unique per test: `<pid>-<n>`.
    id: String,
    /// The third octet of 198.18.X.0/30 and 10.255.X.0/30.
    x: u8,
    netns: String,
    veth: String,
    created_netns: bool,
    created_veth: bool,
    server: Option<Child>,
    /// Lines this host added to /etc/hosts.
    hosts_lines: Vec<String>,
    dir: tempfile::TempDir,
}

impl TestHost {
    /// Creates the namespace, the veth pair and the servers, and maps
    /// `names` (name, address) in /etc/hosts.
    fn start(names: impl Fn(&TestHost) -> Vec<(String, String)>) -> TestHost {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut host = TestHost {
            id: format!("{pid}-{n}"),
            x: 0,
            netns: format!("sbxt-{pid}-{n}"),
            // At most 15 characters: "sx" + pid (<= 7 digits) + "-" + n.
            veth: format!("sx{pid}-{n}"),
            created_netns: false,
            created_veth: false,
            server: None,
            hosts_lines: Vec::new(),
            dir: tempfile::Builder::new().prefix("sbx-it-nethost").tempdir().unwrap(),
        };
        let peer = format!("{}p", host.veth);
        {
            // Pick a subnet no address on this host uses yet, and claim it
            // before another test can look.
            let _lock = HostLock::take();
            let out = Command::new("ip").args(["-4", "-o", "addr", "show"]).output().expect("ip addr");
            let used = String::from_utf8_lossy(&out.stdout).into_owned();
            host.x = (1..=250u8)
                .find(|x| !used.contains(&format!(" 198.18.{x}.")) && !used.contains(&format!(" 10.255.{x}.")))
                .expect("a free 198.18.X.0/30");
            ip(&["netns", "add", &host.netns]);
            host.created_netns = true;
            ip(&["link", "add", &host.veth, "type", "veth", "peer", "name", &peer]);
            host.created_veth = true;
            ip(&["addr", "add", &format!("{}/30", host.host_side()), "dev", &host.veth]);
            ip(&["addr", "add", &format!("10.255.{}.1/30", host.x), "dev", &host.veth]);
        }
        ip(&["link", "set", &peer, "netns", &host.netns]);
        ip(&["-n", &host.netns, "addr", "add", &format!("{}/30", host.addr()), "dev", &peer]);
        ip(&["-n", &host.netns, "addr", "add", &format!("{}/30", host.private_addr()), "dev", &peer]);
        ip(&["-n", &host.netns, "link", "set", &peer, "up"]);
        ip(&["-n", &host.netns, "link", "set", "lo", "up"]);
        ip(&["link", "set", &host.veth, "up"]);

        // A self-signed certificate for the test's web name.
        let web = host.name("web");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={web}"), "-addext", &format!("subjectAltName=DNS:{web}")])
            .arg("-keyout")
            .arg(host.dir.path().join("key.pem"))
            .arg("-out")
            .arg(host.dir.path().join("cert.pem"))
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl req: {}", text(&out));

        fs::write(host.dir.path().join("server.py"), SERVER_PY).unwrap();
        fs::write(host.events_path(), "").unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host.netns, "python3", "-u"])
            .arg(host.dir.path().join("server.py"))
            .arg(host.events_path())
            .arg(host.dir.path().join("cert.pem"))
            .arg(host.dir.path().join("key.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the servers");
        let stdout = child.stdout.take().unwrap();
        host.server = Some(child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n", "the servers in {} did not start", host.netns);

        let lines: Vec<String> = names(&host).into_iter().map(|(name, addr)| format!("{addr} {name} # sbx-it {}", host.id)).collect();
        let lock = HostLock::take();
        host.hosts_lines = lines.clone();
        rewrite_hosts(&lock, |old| {
            let mut new = old.to_string();
            if !new.is_empty() && !new.ends_with('\n') {
                new.push('\n');
            }
            for l in &lines {
                new.push_str(l);
                new.push('\n');
            }
            new
        });
        host
    }

    /// A test name of this host: `PREFIX-<id>.sbx-test`.
    fn name(&self, prefix: &str) -> String {
        format!("{prefix}-{}.sbx-test", self.id)
    }

    /// The namespace's public address.
    fn addr(&self) -> String {
        format!("198.18.{}.2", self.x)
    }

    /// The host's end of the veth: where the proxy's connections come from.
    fn host_side(&self) -> String {
        format!("198.18.{}.1", self.x)
    }

    /// A private (RFC 1918) address of the namespace.
    fn private_addr(&self) -> String {
        format!("10.255.{}.2", self.x)
    }

    fn events_path(&self) -> PathBuf {
        self.dir.path().join("events")
    }

    /// What the servers saw so far.
    fn events(&self) -> Vec<String> {
        fs::read_to_string(self.events_path()).unwrap().lines().map(str::to_string).collect()
    }

    /// Waits until the servers have recorded `n` events (they are written
    /// by the server's threads, a moment after the client is done).
    fn wait_events(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cert(&self) -> String {
        fs::read_to_string(self.dir.path().join("cert.pem")).unwrap()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Never panics: it runs while a failed test unwinds.
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.created_netns {
            let _ = Command::new("ip").args(["netns", "del", &self.netns]).stderr(Stdio::null()).status();
        }
        if self.created_veth {
            // Usually gone with the namespace, which held its peer.
            let _ = Command::new("ip").args(["link", "del", &self.veth]).stderr(Stdio::null()).status();
        }
        if !self.hosts_lines.is_empty() {
            let lines = std::mem::take(&mut self.hosts_lines);
            let result = std::panic::catch_unwind(|| {
                let lock = HostLock::take();
                rewrite_hosts(&lock, |old| old.lines().filter(|l| !lines.iter().any(|x| x == l)).map(|l| format!("{l}\n")).collect());
            });
            if result.is_err() {
                eprintln!("network_hosts: could not remove the lines of {} from /etc/hosts", self.id);
            }
        }
    }
}

fn require_tools() {
    require_root!();
    for tool in ["ip", "curl", "python3", "openssl"] {
        require_tool(tool);
    }
}

/// Runs `script` under `sbx monitor --no-tui --log` in `ws`; returns the
/// output and the log's events.
fn monitor(ws: &Workspace, script: &str) -> (std::process::Output, Vec<serde_json::Value>) {
    let log = ws.path().join("audit.jsonl");
    let _ = fs::remove_file(&log);
    let out = ws.sbx(["monitor", "--no-tui", "--log"]).arg(&log).args(["--", "/bin/sh", "-c", script]).output().unwrap();
    let events = read_log(&log);
    (out, events)
}

/// `(protocol, host, port, decision)` of each `net` event.
fn net_decisions(events: &[serde_json::Value]) -> Vec<(String, String, u64, String)> {
    events
        .iter()
        .filter(|e| e["type"] == "net")
        .map(|e| {
            (
                e["protocol"].as_str().unwrap().to_string(),
                e["host"].as_str().unwrap().to_string(),
                e["port"].as_u64().unwrap(),
                e["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn decision(protocol: &str, host: &str, port: u64, decision: &str) -> (String, String, u64, String) {
    (protocol.to_string(), host.to_string(), port, decision.to_string())
}

/// A shell function for the scripts: `t LABEL CURL-ARGS...` prints one line,
/// `LABEL exit=N http=CODE connect=CODE body=BODY`.
const T: &str = r#"t() { label=$1; shift; rm -f body; curl -s --max-time 20 -o body -w 'http=%{http_code} connect=%{http_connect}' "$@" > codes; rc=$?; echo "$label exit=$rc $(cat codes) body=$(cat body 2>/dev/null)"; }"#;

#[test]
fn an_allowed_name_works_over_http_connect_and_socks5() {
    require_tools();
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr())]);
    let web = host.name("web");
    for who in [As::Root, As::User] {
        let before = host.events().len();
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}"] }} }}"#));
        ws.write("cert.pem", &host.cert());
        let script = format!(
            r#"{T}
               t http -x "$HTTP_PROXY" http://{web}/plain
               t https -x "$HTTP_PROXY" --cacert cert.pem https://{web}/tunnel
               t socks -x "$ALL_PROXY" http://{web}/socks
               t socks-tls -x "$ALL_PROXY" --cacert cert.pem https://{web}/socks-tls"#
        );
        let (out, events) = monitor(&ws, &script);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "http exit=0 http=200 connect=000 body=hello from http {web} /plain\n\
                 https exit=0 http=200 connect=200 body=hello from https {web} /tunnel\n\
                 socks exit=0 http=200 connect=000 body=hello from http {web} /socks\n\
                 socks-tls exit=0 http=200 connect=000 body=hello from https {web} /socks-tls\n"
            ),
            "{who:?}: {}",
            text(&out)
        );
        // The servers saw exactly these four connections, all from the proxy
        // on the host's end of the veth.
        let seen = host.wait_events(before + 4);
        let from = host.host_side();
        assert_eq!(
            seen[before..],
            [format!("tcp 80 {from}"), format!("tcp 443 {from}"), format!("tcp 80 {from}"), format!("tcp 443 {from}")],
            "{who:?}"
        );
        assert_eq!(
            net_decisions(&events),
            [
                decision("http", &web, 80, "allowed"),
                decision("connect", &web, 443, "allowed"),
                decision("socks5", &web, 80, "allowed"),
                decision("socks5", &web, 443, "allowed"),
            ],
            "{who:?}"
        );
        for e in events.iter().filter(|e| e["type"] == "net") {
            assert_eq!(e["rule"], format!("allowedDomains: {web}"), "{who:?}: {e}");
            assert_eq!(e["resolved"], host.addr(), "{who:?}: {e}");
        }
        // (glibc's attempts to reach nscd are seccomp denials, not the proxy's.)
        assert!(!events.iter().any(|e| e["type"] == "denial" && e["source"] == "proxy"), "{who:?}: {events:?}");
    }
}

#[test]
fn denied_unlisted_and_ip_literal_destinations_never_reach_the_server() {
    require_tools();
    // Every name maps to the namespace: if the proxy let one through, the
    // server would see it.
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr()), (h.name("denied"), h.addr()), (h.name("other"), h.addr())]);
    let (web, denied, other, addr) = (host.name("web"), host.name("denied"), host.name("other"), host.addr());
    for who in [As::Root, As::User] {
        let before = host.events().len();
        let ws = Workspace::new(who);
        // The denied name is allowed too: deny beats allow.
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}", "{denied}"], "deniedDomains": ["{denied}"] }} }}"#));
        let script = format!(
            r#"{T}
               t denied-http -x "$HTTP_PROXY" http://{denied}/
               t denied-connect -x "$HTTP_PROXY" https://{denied}/
               t denied-socks -x "$ALL_PROXY" http://{denied}/
               t other-http -x "$HTTP_PROXY" http://{other}/
               t other-connect -x "$HTTP_PROXY" -p http://{other}/
               t other-socks -x "$ALL_PROXY" http://{other}/
               t ip-http -x "$HTTP_PROXY" http://{addr}/
               t ip-connect -x "$HTTP_PROXY" -p http://{addr}:9000/
               t ip-socks -x "$ALL_PROXY" http://{addr}/"#
        );
        let (out, events) = monitor(&ws, &script);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let blocked = |target: &str, rule: &str| format!("sbx: blocked connection to {target} ({rule})");
        let no_rule = "no rule allows it";
        let deny_rule = format!("deniedDomains: {denied}");
        // curl: 56 = the proxy refused the CONNECT, 97 = the SOCKS5 server refused.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "denied-http exit=0 http=403 connect=000 body={}\n\
                 denied-connect exit=56 http=000 connect=403 body=\n\
                 denied-socks exit=97 http=000 connect=000 body=\n\
                 other-http exit=0 http=403 connect=000 body={}\n\
                 other-connect exit=56 http=000 connect=403 body=\n\
                 other-socks exit=97 http=000 connect=000 body=\n\
                 ip-http exit=0 http=403 connect=000 body={}\n\
                 ip-connect exit=56 http=000 connect=403 body=\n\
                 ip-socks exit=97 http=000 connect=000 body=\n",
                blocked(&format!("{denied}:80"), &deny_rule),
                blocked(&format!("{other}:80"), no_rule),
                blocked(&format!("{addr}:80"), no_rule),
            ),
            "{who:?}: {}",
            text(&out)
        );
        assert_eq!(
            net_decisions(&events),
            [
                decision("http", &denied, 80, "denied"),
                decision("connect", &denied, 443, "denied"),
                decision("socks5", &denied, 80, "denied"),
                decision("http", &other, 80, "denied"),
                decision("connect", &other, 80, "denied"),
                decision("socks5", &other, 80, "denied"),
                decision("http", &addr, 80, "denied"),
                decision("connect", &addr, 9000, "denied"),
                decision("socks5", &addr, 80, "denied"),
            ],
            "{who:?}"
        );
        let net: Vec<_> = events.iter().filter(|e| e["type"] == "net").collect();
        let rules: Vec<&str> = net.iter().map(|e| e["rule"].as_str().unwrap()).collect();
        assert_eq!(rules, [&deny_rule, &deny_rule, &deny_rule, no_rule, no_rule, no_rule, no_rule, no_rule, no_rule], "{who:?}");
        // Refused before any lookup or connection.
        assert!(net.iter().all(|e| e.get("resolved").is_none()), "{who:?}: {net:?}");
        let denials: Vec<(String, u64)> = events
            .iter()
            .filter(|e| e["type"] == "denial" && e["source"] == "proxy")
            .map(|e| (e["host"].as_str().unwrap().to_string(), e["port"].as_u64().unwrap()))
            .collect();
        let d = |h: &str, p: u64| (h.to_string(), p);
        assert_eq!(
            denials,
            [d(&denied, 80), d(&denied, 443), d(&denied, 80), d(&other, 80), d(&other, 80), d(&other, 80), d(&addr, 80), d(&addr, 9000), d(&addr, 80)],
            "{who:?}"
        );
        // The server saw nothing at all.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(host.events()[before..], [] as [String; 0], "{who:?}");
    }
}

#[test]
fn traffic_that_ignores_the_proxy_reaches_only_allowed_destinations() {
    require_tools();
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr())]);
    let (web, addr) = (host.name("web"), host.addr());
    // A host service on an abstract Unix socket, which a process in the
    // host's network namespace can reach...
    let abstract_name = format!("sbx-it-{}", host.id);
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let bypass_py = format!(
        r#"import errno, socket
def attempt(name, f):
    try:
        f()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def tcp():
    socket.create_connection(("{addr}", 9000), timeout=5).close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"bypass", ("{addr}", 9000))
def abstract():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect("\0{abstract_name}")
    s.close()
attempt("tcp", tcp)
attempt("udp", udp)
attempt("abstract", abstract)
"#
    );
    // ...and everything reaches its target from the host: the servers work.
    let out = Command::new("python3").args(["-c", &bypass_py]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tcp ok\nudp ok\nabstract ok\n", "{}", text(&out));
    assert!(listener.accept().is_ok(), "the host's own connection to the abstract socket");
    let control = host.wait_events(2);
    assert_eq!(control.len(), 2, "{control:?}");

    let ws = Workspace::new(As::Root);
    ws.write("bypass.py", &bypass_py);
    for all_unix in [false, true] {
        // With allowAllUnixSockets seccomp lets the socket be created, and
        // the connect itself must fail.
        // The name is allowed on 443 only: a direct connection to it on 80 is refused.
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}:443"], "allowAllUnixSockets": {all_unix} }} }}"#));
        let script = format!(
            "curl -sS --noproxy '*' --max-time 10 http://{addr}/ 2>/dev/null; echo \"direct-http exit=$?\"
             curl -sS --noproxy '*' --max-time 10 http://{web}/ 2>/dev/null; echo \"direct-name exit=$?\"
             python3 bypass.py
             python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect((\"{addr}\", 53))' 2>/dev/null; echo \"dns exit=$?\"
             python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendmsg([b\"x\"], [], 0, (\"{addr}\", 9001))' 2>/dev/null; echo \"sendmsg exit=$?\""
        );
        // Another test's host rewrites /etc/hosts by rename, which detaches the
        // sandbox's own /etc/hosts (a mount on the old file): not while this runs.
        let lock = HostLock::take();
        let (out, events) = monitor(&ws, &script);
        drop(lock);
        assert!(out.status.success(), "{}", text(&out));
        // curl 7: could not connect (transparent egress refuses a TCP connect
        // to an address no allowed name gave, or to a port the rule does not
        // allow: ECONNREFUSED); UDP has no route. The abstract socket: EPERM
        // from seccomp (socket(AF_UNIX)); with allowAllUnixSockets,
        // ECONNREFUSED (the sandbox's own network namespace has no such
        // listener).
        let abstract_result = if all_unix { "ECONNREFUSED" } else { "EPERM" };
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("direct-http exit=7\ndirect-name exit=7\ntcp ECONNREFUSED\nudp ENETUNREACH\nabstract {abstract_result}\ndns exit=1\nsendmsg exit=1\n"),
            "allowAllUnixSockets {all_unix}: {}",
            text(&out)
        );
        // Each TCP connect was decided by transparent egress, and refused.
        assert_eq!(
            net_decisions(&events),
            // (After curl asked for the name, its address is the name's.)
            [decision("direct", &addr, 80, "denied"), decision("direct", &web, 80, "denied"), decision("direct", &web, 9000, "denied")],
            "allowAllUnixSockets {all_unix}: {events:?}"
        );
        for e in events.iter().filter(|e| e["type"] == "net") {
            assert_eq!(e["via"], "direct", "{e}");
        }
        // Each datagram is a denial of the sandbox's network, with the
        // address it was given and why there was no route.
        let network: BTreeSet<_> = events
            .iter()
            .filter(|e| e["type"] == "denial" && e["source"] == "netns")
            .map(|e| {
                let op = if e["syscall"] == "connect" { "connect" } else { "send" };
                assert!(e["errno"] == "ENETUNREACH" && e["operation"] == op, "{e}");
                let reason = e["detail"]["reason"].as_str().unwrap();
                let dns = e["port"] == 53;
                assert!(reason.contains(if dns { "a DNS query" } else { "UDP other than sbx's DNS has no way out" }), "{e}");
                let comm = e["comm"].as_str().unwrap();
                let comm = if comm.starts_with("python") { "python" } else { comm };
                (comm.to_string(), e["syscall"].as_str().unwrap().to_string(), e["host"].as_str().unwrap().to_string(), e["port"].as_u64().unwrap())
            })
            .collect();
        let want: BTreeSet<_> =
            [("python", "sendto", 9000), ("python", "connect", 53), ("python", "sendmsg", 9001)]
            .into_iter()
            .map(|(comm, call, port)| (comm.to_string(), call.to_string(), addr.to_string(), port))
            .collect();
        assert_eq!(network, want, "allowAllUnixSockets {all_unix}");
        // `policy suggest` explains them and proposes nothing for them.
        let suggest = ws.sbx(["policy", "suggest", "--from"]).arg(ws.path().join("audit.jsonl")).output().unwrap();
        let said = String::from_utf8_lossy(&suggest.stdout);
        assert!(said.contains(&format!("{addr}:53")) && said.contains("a DNS query from the sandbox"), "{}", text(&suggest));
        let seccomp: Vec<_> = events.iter().filter(|e| e["type"] == "denial" && e["source"] == "seccomp").collect();
        // The Unix socket is created (issue 18: socket(2) is no denial); its connect to the
        // host's abstract name is refused by the supervisor.
        let python_unix = seccomp
            .iter()
            .filter(|e| e["comm"].as_str().is_some_and(|c| c.starts_with("python")))
            .map(|e| (e["syscall"].as_str().unwrap(), e["detail"]["address"].as_str().unwrap_or("").starts_with("@")))
            .collect::<Vec<_>>();
        if all_unix {
            assert!(seccomp.is_empty(), "{seccomp:?}");
        } else {
            assert_eq!(python_unix, [("connect", true)], "{seccomp:?}");
        }
        // Nothing arrived: no connection, no datagram, no Unix peer.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(host.events(), control, "allowAllUnixSockets {all_unix}");
        assert_eq!(
            listener.accept().map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "allowAllUnixSockets {all_unix}: the host's abstract socket was reached"
        );
    }
}

#[test]
fn names_that_resolve_to_private_addresses_are_refused() {
    require_tools();
    // The private name points at the namespace's 10.255.X.2, where the same
    // servers listen: were the defence to fail, the connection would land.
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr()), (h.name("private"), h.private_addr()), (h.name("loop"), "127.0.0.2".into())]);
    let (web, private, looped, private_addr) = (host.name("web"), host.name("private"), host.name("loop"), host.private_addr());
    // The namespace really serves the private address (from the host).
    let out = Command::new("curl").args(["-s", "--noproxy", "*", "--max-time", "10", &format!("http://{private_addr}/control")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("hello from http {private_addr} /control\n"), "{}", text(&out));
    let control = host.wait_events(1);

    let ws = Workspace::new(As::Root);
    ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}", "{private}", "{looped}"] }} }}"#));
    let script = format!(
        r#"{T}
           t private-http -x "$HTTP_PROXY" http://{private}/
           t private-connect -x "$HTTP_PROXY" -p http://{private}/
           t private-socks -x "$ALL_PROXY" http://{private}/
           t loop-http -x "$HTTP_PROXY" http://{looped}/
           t web-http -x "$HTTP_PROXY" http://{web}/"#
    );
    let (out, events) = monitor(&ws, &script);
    assert!(out.status.success(), "{}", text(&out));
    let defence = |class: &str, ip: &str| {
        format!("resolved to {class} address {ip}, refused: DNS rebinding defence, name not in allowPrivateResolution")
    };
    let private_rule = format!("allowedDomains: {private}; {}", defence("private", &private_addr));
    let loop_rule = format!("allowedDomains: {looped}; {}", defence("loopback", "127.0.0.2"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "private-http exit=0 http=403 connect=000 body=sbx: blocked connection to {private}:80 ({private_rule})\n\
             private-connect exit=56 http=000 connect=403 body=\n\
             private-socks exit=97 http=000 connect=000 body=\n\
             loop-http exit=0 http=403 connect=000 body=sbx: blocked connection to {looped}:80 ({loop_rule})\n\
             web-http exit=0 http=200 connect=000 body=hello from http {web} /\n"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(
        net_decisions(&events),
        [
            decision("http", &private, 80, "denied"),
            decision("connect", &private, 80, "denied"),
            decision("socks5", &private, 80, "denied"),
            decision("http", &looped, 80, "denied"),
            decision("http", &web, 80, "allowed"),
        ]
    );
    let net: Vec<_> = events.iter().filter(|e| e["type"] == "net").collect();
    for e in &net[..3] {
        assert_eq!(e["rule"], private_rule, "{e}");
        assert_eq!(e["resolved"], private_addr, "{e}");
    }
    assert_eq!(net[3]["rule"], loop_rule);
    assert_eq!(net[3]["resolved"], "127.0.0.2");
    let denials: BTreeSet<String> = events
        .iter()
        .filter(|e| e["type"] == "denial" && e["source"] == "proxy")
        .map(|e| e["detail"]["rule"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(denials, BTreeSet::from([private_rule.clone(), loop_rule.clone()]));
    // Only the allowed request reached the namespace, on its public address.
    let seen = host.wait_events(control.len() + 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(host.events(), seen);
    assert_eq!(seen[control.len()..], [format!("tcp 80 {}", host.host_side())]);

    // Opted in by allowPrivateResolution, the private name works (an internal
    // registry); the loopback one, not listed there, is still refused.
    ws.write(
        "sbx.jsonc",
        &format!(r#"{{ "network": {{ "allowedDomains": ["{private}", "{looped}"], "allowPrivateResolution": ["{private}"] }} }}"#),
    );
    let script = format!(
        r#"{T}
           t private-http -x "$HTTP_PROXY" http://{private}/
           t loop-http -x "$HTTP_PROXY" http://{looped}/"#
    );
    let (out, events) = monitor(&ws, &script);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "private-http exit=0 http=200 connect=000 body=hello from http {private} /\n\
             loop-http exit=0 http=403 connect=000 body=sbx: blocked connection to {looped}:80 ({loop_rule})\n"
        ),
        "{}",
        text(&out)
    );
    let start = events.iter().find(|e| e["type"] == "session_start").unwrap();
    assert_eq!(start["policy"]["allow_private_resolution"], serde_json::json!([private]));
    let net: Vec<_> = events.iter().filter(|e| e["type"] == "net").collect();
    assert_eq!((&net[0]["decision"], &net[0]["resolved"]), (&"allowed".into(), &private_addr.as_str().into()), "{net:?}");
}

/// Issue 21: programs that ignore the proxy variables reach allowed names and
/// ports directly (transparent egress: sbx's DNS in the sandbox, connect(2)
/// carried out on the host), and nothing else; as root and as a user.
#[test]
fn transparent_egress_reaches_allowed_names_and_ports_and_nothing_else() {
    require_tools();
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr()), (h.name("other"), h.addr()), (h.name("private"), h.private_addr())]);
    let (web, other, private, addr) = (host.name("web"), host.name("other"), host.name("private"), host.addr());
    let client_py = format!(
        r#"import errno, select, socket, struct, sys
def attempt(name, f):
    try:
        print(name, f())
    except socket.gaierror as e:
        print(name, "gaierror", e.errno)
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def get(sock, path):
    sock.sendall(f"GET {{path}} HTTP/1.0\r\nHost: {web}\r\n\r\n".encode())
    return read(sock)
def read(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data.decode().split("\r\n\r\n", 1)[1].strip()
        data += chunk
def literal():
    # Before any name gave this address: an IP literal the policy does not list.
    return socket.create_connection(("{addr}", 80), timeout=5).close()
def blocking():
    with socket.create_connection(("{web}", 80), timeout=10) as s:
        return get(s, "/blocking")
def nonblocking():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    rc = s.connect_ex((socket.gethostbyname("{web}"), 80))
    ep = select.epoll()
    ep.register(s.fileno(), select.EPOLLOUT)
    ready = ep.poll(10)
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    import fcntl, os
    nonblocking = fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK != 0
    cloexec = fcntl.fcntl(s.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC != 0
    s.setblocking(True)
    return f"{{errno.errorcode.get(rc, rc)}} {{ready == [(s.fileno(), select.EPOLLOUT)]}} soerror={{err}} nonblocking={{nonblocking}} cloexec={{cloexec}} {{get(s, '/epoll')}}"
def registered():
    # Registered with two epoll instances before the connect (as Netty does): the
    # registrations follow the socket sbx installs, under the same number and flags.
    # (With a long descriptor table, which sbx reads on its blocking pool; the duplicate
    # below is found in a short one.)
    import os
    extra = [os.open("/dev/null", os.O_RDONLY) for _ in range(100)]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    ep, ep2 = select.epoll(), select.epoll()
    ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLET)
    ep2.register(s.fileno(), select.EPOLLIN)
    rc = s.connect_ex((socket.gethostbyname("{web}"), 80))
    writable = ep.poll(5)
    ep.modify(s.fileno(), select.EPOLLIN)
    s.sendall(f"GET /registered HTTP/1.0\r\nHost: {web}\r\n\r\n".encode())
    readable = ep2.poll(5)
    ep.unregister(s.fileno())
    ep2.unregister(s.fileno())
    for fd in extra:
        os.close(fd)
    s.setblocking(True)
    return f"{{errno.errorcode.get(rc, rc)}} {{writable == [(s.fileno(), select.EPOLLOUT)]}} {{readable == [(s.fileno(), select.EPOLLIN)]}} {{read(s)}}"
def duplicated():
    # A duplicate made before the connect names the connected socket too.
    import os
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    d = socket.socket(fileno=os.dup(s.fileno()))
    s.connect((socket.gethostbyname("{web}"), 80))
    return f"{{d.getpeername() == s.getpeername()}} {{get(d, '/duplicated')}}"
def port():
    return socket.create_connection(("{web}", 9000), timeout=5).close()
def unlisted():
    return socket.getaddrinfo("{other}", 80)
def private():
    return socket.getaddrinfo("{private}", 80)
def dns_tcp():
    q = struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in "{web}".split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.create_connection(("127.0.0.1", 53), timeout=5) as s:
        s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2))[0]
        a = s.recv(n)
    return socket.inet_ntoa(a[-4:])
def udp():
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("{addr}", 9000))
attempt("literal", literal)
attempt("blocking", blocking)
attempt("nonblocking", nonblocking)
attempt("registered", registered)
attempt("duplicated", duplicated)
attempt("port", port)
attempt("unlisted", unlisted)
attempt("private", private)
attempt("dns-tcp", dns_tcp)
attempt("udp", udp)
"#
    );
    for who in [As::Root, As::User] {
        let before = host.events().len();
        let ws = Workspace::new(who);
        ws.write("client.py", &client_py);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}:80", "{private}"] }} }}"#));
        // The client first: the IP literal is tried before any name gave that address.
        let script = "python3 client.py; curl -sS --noproxy '*' --max-time 10 http://".to_string() + &web + "/curl; echo \" curl exit=$?\"";
        // Another test's host rewrites /etc/hosts by rename, which detaches the
        // sandbox's own /etc/hosts (a mount on the old file): not while this runs.
        let lock = HostLock::take();
        let (out, events) = monitor(&ws, &script);
        drop(lock);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "literal ECONNREFUSED\n\
                 blocking hello from http {web} /blocking\n\
                 nonblocking EINPROGRESS True soerror=0 nonblocking=True cloexec=True hello from http {web} /epoll\n\
                 registered EINPROGRESS True True hello from http {web} /registered\n\
                 duplicated True hello from http {web} /duplicated\n\
                 port ECONNREFUSED\n\
                 unlisted gaierror -2\n\
                 private gaierror -2\n\
                 dns-tcp {addr}\n\
                 udp ENETUNREACH\n\
                 hello from http {web} /curl\n curl exit=0\n"
            ),
            "{who:?}: {}",
            text(&out)
        );
        // The server saw the five allowed connections, from the host's end
        // of the veth (the program's socket is the host's, connected by sbx),
        // and nothing on 9000.
        let seen = host.wait_events(before + 5);
        std::thread::sleep(Duration::from_millis(200));
        let from = host.host_side();
        assert_eq!(host.events()[before..], vec![format!("tcp 80 {from}"); 5], "{who:?}: {seen:?}");
        assert_eq!(
            net_decisions(&events),
            [
                decision("direct", &addr, 80, "denied"),
                decision("direct", &web, 80, "allowed"),
                decision("direct", &web, 80, "allowed"),
                decision("direct", &web, 80, "allowed"),
                decision("direct", &web, 80, "allowed"),
                decision("direct", &web, 9000, "denied"),
                decision("direct", &web, 80, "allowed"),
            ],
            "{who:?}"
        );
        for e in events.iter().filter(|e| e["type"] == "net") {
            assert_eq!((e["via"].as_str(), e["resolved"].as_str()), (Some("direct"), Some(addr.as_str())), "{who:?}: {e}");
        }
        let proxy: Vec<(String, u64)> =
            events.iter().filter(|e| e["type"] == "denial" && e["source"] == "proxy").map(|e| (e["host"].as_str().unwrap().to_string(), e["port"].as_u64().unwrap())).collect();
        assert_eq!(proxy, [(addr.clone(), 80), (web.clone(), 9000)], "{who:?}");
        // DNS: the unlisted name and the allowed name that resolves to a
        // private address (the rebinding defence) were refused, each query
        // type a denial of source dns.
        let dns: BTreeSet<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "denial" && e["source"] == "dns")
            .map(|e| {
                if e["host"] == private.as_str() {
                    assert!(e["detail"]["rule"].as_str().unwrap().contains("DNS rebinding defence"), "{e}");
                } else {
                    assert_eq!(e["detail"]["rule"], "no rule allows it", "{e}");
                }
                (e["host"].as_str().unwrap().to_string(), e["detail"]["qtype"].as_str().unwrap().to_string())
            })
            .collect();
        let q = |h: &str, t: &str| (h.to_string(), t.to_string());
        assert_eq!(dns, BTreeSet::from([q(&other, "A"), q(&other, "AAAA"), q(&private, "A"), q(&private, "AAAA")]), "{who:?}");
        // The datagram: with the kernel tracer (root) a denial with its destination;
        // without it (the user), the kernel's own count of what had no route, at the end.
        let netns: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "denial" && e["source"] == "netns").collect();
        match who {
            As::Root => assert!(netns.iter().any(|e| e["port"] == 9000), "{who:?}: the tracer saw the datagram: {netns:?}"),
            As::User => assert!(
                netns.len() == 1 && netns[0]["detail"]["count"].as_str().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 1),
                "{who:?}: the count of what had no route: {netns:?}"
            ),
        }
    }
}

/// Issue 21, `--ask` under transparent egress: a name no rule decides is answered by sbx's
/// DNS, and the program's own connect (curl ignoring every proxy) is held at the dashboard
/// until the user answers; allowed once, it reaches the test host directly, and the log
/// says so (a `policy` event and a `net` event with `via: direct`). Nothing reaches the host
/// before the answer.
#[test]
fn ask_holds_a_direct_connect_at_the_dashboard_until_answered() {
    require_tools();
    require_tool("tmux");
    let host = TestHost::start(|h| vec![(h.name("asked"), h.addr())]);
    let (asked, addr) = (host.name("asked"), host.addr());
    let ws = Workspace::new(As::Root);
    ws.write("sbx.jsonc", r#"{ "network": { "allowedDomains": [] } }"#);
    let log = ws.path().join("audit.jsonl");
    let script = format!("curl -sS --noproxy \"*\" --max-time 60 http://{asked}/asked && echo fetch-\"ok\"; sleep 60");
    let shell = format!("cd {} && {} monitor --ask --log {} -- sh -c '{script}'; sleep 30", ws.path().display(), sbx_integration_tests::sbx_bin().display(), log.display());
    let before = host.events().len();
    // The sandbox's /etc/hosts is a mount on the host's file: no other test's host
    // rewrites it while this runs.
    let lock = HostLock::take();
    let t = Tmux::start("askdirect", 120, 40, &shell);
    let screen = t.wait_for("the prompt", |s| s.contains(&format!("Reach {asked}:80 (direct)?")));
    assert_eq!(host.events().len(), before, "nothing reaches the host before the answer: {screen}");
    t.keys(&["Tab"]);
    t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["a"]);
    let screen = t.wait_for("the fetch", |s| s.contains("fetch-ok"));
    assert!(screen.contains(&format!("hello from http {asked} /asked")), "{screen}");
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    t.wait_for("the session's end", |_| read_log(&log).iter().any(|e| e["type"] == "session_end"));
    drop(lock);
    assert_eq!(host.events()[before..], [format!("tcp 80 {}", host.host_side())]);
    let events = read_log(&log);
    let policy: Vec<(&str, &str)> = events.iter().filter(|e| e["type"] == "policy").map(|e| (e["action"].as_str().unwrap(), e["host"].as_str().unwrap())).collect();
    assert_eq!(policy, [("allow_once", asked.as_str())]);
    let net: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "net").collect();
    assert_eq!(net.len(), 1, "{net:?}");
    assert_eq!((net[0]["host"].as_str(), net[0]["decision"].as_str(), net[0]["via"].as_str(), net[0]["resolved"].as_str()), (Some(asked.as_str()), Some("allowed"), Some("direct"), Some(addr.as_str())), "{}", net[0]);
}

/// Issue 21: sbx's DNS answers an alias with a CNAME record to its canonical name (here a
/// hosts-file line with two names: the first is canonical), which a program sees
/// (`AI_CANONNAME`), and its connect is decided by the name it asked; an alias whose
/// canonical name `deniedDomains` refuses is refused as that name would be, and reported.
#[test]
fn an_alias_is_answered_with_its_canonical_name_unless_that_is_denied() {
    require_tools();
    let host = TestHost::start(|h| {
        vec![(format!("{} {}", h.name("canon"), h.name("alias")), h.addr()), (format!("{} {}", h.name("blocked"), h.name("front")), h.addr())]
    });
    let (canon, alias, blocked, front) = (host.name("canon"), host.name("alias"), host.name("blocked"), host.name("front"));
    let client_py = format!(
        r#"import socket
print("canonical", socket.getaddrinfo("{alias}", 80, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)[0][3])
with socket.create_connection(("{alias}", 80), timeout=10) as s:
    s.sendall(b"GET /alias HTTP/1.0\r\nHost: {alias}\r\n\r\n")
    print("get", s.makefile("rb").read().split(b"\r\n\r\n", 1)[1].decode().strip())
try:
    socket.getaddrinfo("{front}", 80)
    print("front resolved")
except socket.gaierror as e:
    print("front gaierror", e.errno)
"#
    );
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("client.py", &client_py);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{alias}:80", "{front}:80"], "deniedDomains": ["{blocked}"] }} }}"#));
        // Another test's host rewrites /etc/hosts by rename, which detaches the
        // sandbox's own /etc/hosts (a mount on the old file): not while this runs.
        let lock = HostLock::take();
        // The same alias through the HTTP proxy: refused there too.
        let script = format!("python3 client.py; curl -s -o /dev/null -w 'proxy %{{http_code}}\\n' --max-time 10 -x \"$HTTP_PROXY\" http://{front}/");
        let (out, events) = monitor(&ws, &script);
        drop(lock);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("canonical {canon}\nget hello from http {alias} /alias\nfront gaierror -2\nproxy 403\n"),
            "{who:?}: {}",
            text(&out)
        );
        let decisions = net_decisions(&events);
        assert_eq!(decisions[0], decision("direct", &alias, 80, "allowed"), "{who:?}");
        assert_eq!(decisions[1..], [decision("http", &front, 80, "denied")], "{who:?}");
        let refused: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "denial" && (e["source"] == "dns" || e["source"] == "proxy")).collect();
        assert!(refused.iter().any(|e| e["source"] == "dns") && refused.iter().any(|e| e["source"] == "proxy"), "{who:?}: {refused:?}");
        for e in refused {
            assert_eq!(e["host"], front.as_str(), "{who:?}: {e}");
            assert!(e["detail"]["rule"].as_str().unwrap().starts_with(&format!("an alias of {blocked}: ")), "{who:?}: {e}");
        }
    }
}

/// The sandbox's own `/etc/hosts` (transparent egress: loopback names only, every other
/// name asked of sbx's DNS) is a mount on the host's file, which the kernel detaches when
/// the host replaces that file by rename (as these tests, editors and network managers
/// do): sbx puts its own back at once (`launch::remask`), so the sandbox never falls back
/// to the host's names. Checked through the sandbox's own view, then read inside.
#[test]
fn the_sandboxes_own_hosts_file_survives_the_host_replacing_its() {
    require_tools();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let mark = format!("sbx-it-own-hosts-{}-{who:?}", std::process::id());
        let script = format!(": {mark}; touch ready; until [ -e go ]; do sleep 0.02; done; cat /etc/hosts");
        // No other test's host rewrites /etc/hosts before this one does (the sandbox would
        // see the host's file until sbx puts its own back).
        let lock = HostLock::take();
        let child = ws.sbx(["run", "--", "/bin/sh", "-c", &script]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ws.path().join("ready").exists() {
            assert!(Instant::now() < deadline, "{who:?}: the command never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = loop {
            let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
            let found = fs::read_dir("/proc").unwrap().flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&mark))
                    && fs::read_link(format!("/proc/{pid}/ns/mnt")).is_ok_and(|ns| ns != ours)
            });
            if let Some(pid) = found {
                break pid;
            }
            assert!(Instant::now() < deadline, "{who:?}: no process of the sandbox found");
            std::thread::sleep(Duration::from_millis(20));
        };
        let inside = || fs::read_to_string(format!("/proc/{pid}/root/etc/hosts")).unwrap_or_default();
        assert!(inside().starts_with("# sbx:"), "{who:?}: {}", inside());
        rewrite_hosts(&lock, str::to_string);
        drop(lock);
        while !inside().starts_with("# sbx:") {
            assert!(Instant::now() < deadline, "{who:?}: the sandbox sees the host's /etc/hosts: {}", inside());
            std::thread::sleep(Duration::from_millis(20));
        }
        ws.write("go", "");
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("# sbx: other names are resolved by sbx's DNS"), "{who:?}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("replaced"), "{who:?}: no news of sbx's own files: {}", text(&out));
    }
}

/// Issue 21's security rules, as an attacker with a socket of the host's
/// network (one sbx connected for the program): it cannot be disconnected,
/// reconnected elsewhere, bound, made to listen, connected by a send
/// (MSG_FASTOPEN, TCP_FASTOPEN_CONNECT) or rerouted (SO_BINDTODEVICE,
/// SO_MARK); and the decision is made on one copy of the address, which
/// another thread rewrites in a loop. The server records every connection.
#[test]
fn a_host_socket_cannot_be_turned_against_the_policy() {
    require_tools();
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr())]);
    let (web, addr) = (host.name("web"), host.addr());
    let attack_py = format!(
        r#"import ctypes, errno, socket, struct, threading
libc = ctypes.CDLL(None, use_errno=True)
# The name's address, from sbx's DNS.
ADDR = socket.gethostbyname("{web}")
assert ADDR == "{addr}"
def attempt(name, f):
    try:
        print(name, f())
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def raw_connect(fd, family, port):
    sa = struct.pack("=HH4s8x", family, socket.htons(port), socket.inet_aton(ADDR))
    if libc.connect(fd, sa, len(sa)) != 0:
        e = ctypes.get_errno()
        raise OSError(e, errno.errorcode.get(e, e))
    return "ok"
# A host socket whose connection failed: allowed port 81, where nothing listens.
dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
print("dead-connect", errno.errorcode.get(dead.connect_ex((ADDR, 81)), "0"))
import select; select.select([], [dead], [], 5)
print("dead-error", errno.errorcode.get(dead.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), "0"))
dead.setblocking(True)
attempt("listen", lambda: dead.listen(8))
attempt("bind", lambda: dead.bind(("0.0.0.0", 0)))
attempt("reconnect-unlisted-port", lambda: dead.connect((ADDR, 9000)))
attempt("reconnect-loopback", lambda: dead.connect(("127.0.0.1", 3128)))
attempt("fastopen-send", lambda: dead.sendto(b"GET / HTTP/1.0\r\n\r\n", socket.MSG_FASTOPEN, (ADDR, 9000)))
attempt("fastopen-connect", lambda: dead.setsockopt(socket.IPPROTO_TCP, 30, 1))
attempt("bindtodevice", lambda: dead.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo"))
attempt("mark", lambda: dead.setsockopt(socket.SOL_SOCKET, 36, 1))
attempt("dead-listens", lambda: dead.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
# A connected host socket: disconnect (AF_UNSPEC) refused; it stays connected.
live = socket.create_connection(("{web}", 80), timeout=5)
attempt("unspec", lambda: raw_connect(live.fileno(), socket.AF_UNSPEC, 0))
live.sendall(b"GET /still HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = live.recv(4096)
    if not chunk:
        break
    data += chunk
print("live", data.split(b"\r\n\r\n", 1)[1].decode().strip())
# The address is copied once: another thread flips the port between the
# allowed 80 and 9000 while connects go on.
buf = ctypes.create_string_buffer(struct.pack("=HH4s8x", socket.AF_INET, socket.htons(80), socket.inet_aton(ADDR)), 16)
stop = False
def flip():
    good, bad = socket.htons(80), socket.htons(9000)
    while not stop:
        struct.pack_into("=H", buf, 2, bad)
        struct.pack_into("=H", buf, 2, good)
t = threading.Thread(target=flip)
t.start()
outcomes = set()
for _ in range(300):
    s = socket.socket()
    rc = libc.connect(s.fileno(), buf, 16)
    outcomes.add("ok" if rc == 0 else errno.errorcode.get(ctypes.get_errno()))
    s.close()
stop = True
t.join()
print("race", "ok" if outcomes <= {{"ok", "ECONNREFUSED"}} else sorted(outcomes))
"#
    );
    for who in [As::Root, As::User] {
        let before = host.events().len();
        let ws = Workspace::new(who);
        ws.write("attack.py", &attack_py);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}:80", "{web}:81"] }} }}"#));
        // Another test's host rewrites /etc/hosts by rename, which detaches the
        // sandbox's own /etc/hosts (a mount on the old file): not while this runs.
        let lock = HostLock::take();
        let (out, events) = monitor(&ws, "python3 attack.py");
        drop(lock);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "dead-connect EINPROGRESS\n\
                 dead-error ECONNREFUSED\n\
                 listen EPERM\n\
                 bind EPERM\n\
                 reconnect-unlisted-port ECONNREFUSED\n\
                 reconnect-loopback EPERM\n\
                 fastopen-send EPERM\n\
                 fastopen-connect EPERM\n\
                 bindtodevice EPERM\n\
                 mark EPERM\n\
                 dead-listens 0\n\
                 unspec EPERM\n\
                 live hello from http x /still\n\
                 race ok\n"
            ),
            "{who:?}: {}",
            text(&out)
        );
        // Nothing ever reached port 9000; port 80 saw the live connection
        // and the race's allowed ones, all from the host's end.
        std::thread::sleep(Duration::from_millis(300));
        let seen: Vec<String> = host.events()[before..].to_vec();
        assert!(!seen.is_empty() && seen.iter().all(|e| *e == format!("tcp 80 {}", host.host_side())), "{who:?}: {seen:?}");
        // The supervisor reported each refusal on the host socket.
        let refused: BTreeSet<String> = events
            .iter()
            .filter(|e| e["type"] == "denial" && e["source"] == "seccomp")
            .filter_map(|e| {
                let reason = e["detail"]["reason"].as_str().unwrap_or("");
                reason.starts_with("transparent egress").then(|| e["syscall"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(refused, BTreeSet::from(["bind".to_string(), "connect".to_string(), "listen".to_string()]), "{who:?}: {events:?}");
        let table: BTreeSet<String> = events
            .iter()
            .filter(|e| e["type"] == "denial" && e["source"] == "seccomp" && e["detail"]["reason"].as_str().is_none_or(|r| !r.starts_with("transparent egress")))
            .filter_map(|e| e["syscall"].as_str().map(str::to_string))
            .collect();
        assert!(table.contains("sendto") && table.contains("setsockopt"), "{who:?}: {table:?}");
    }
}

/// An sshd in a test host's namespace, on port 22, accepting `root` with one
/// key; git repositories under `dir` are reachable by path. Killed on drop.
struct Sshd {
    child: Child,
}

impl Sshd {
    fn start(host: &TestHost, authorized: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        let dir = host.dir.path();
        let key = dir.join("ssh_host_ed25519_key");
        let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output().unwrap();
        assert!(out.status.success(), "ssh-keygen: {}", text(&out));
        fs::create_dir_all("/run/sshd").unwrap();
        let config = format!(
            "Port 22\nListenAddress 0.0.0.0\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nLogLevel ERROR\n",
            key.display(),
            authorized.display()
        );
        let conf = dir.join("sshd_config");
        fs::write(&conf, config).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &host.netns])
            .arg(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        // Ready once it accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((host.addr().as_str(), 22)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start in {}", host.netns);
            std::thread::sleep(Duration::from_millis(50));
        }
        Sshd { child }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 21: `git clone` over ssh to an allowed `name:22`, `ssh` itself, and
/// Node's built-in fetch (which ignores the proxy variables) work without the
/// proxy; ssh to a port the rule does not allow is refused, as root and as a
/// user.
#[test]
fn ssh_git_and_node_fetch_reach_allowed_names_directly() {
    require_tools();
    require_tool("ssh");
    require_tool("git");
    require_tool("node");
    if !Path::new("/usr/sbin/sshd").exists() {
        sbx_integration_tests::skip!("/usr/sbin/sshd is not installed (openssh-server; cargo xtask provision installs it)");
    }
    let host = TestHost::start(|h| vec![(h.name("git"), h.addr())]);
    let name = host.name("git");
    // The repository on the test host's side, and the client's key.
    let remote = host.dir.path().join("repo.git");
    let seed = host.dir.path().join("seed");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    };
    run(Command::new("git").args(["init", "-q", "-b", "main"]).arg(&seed));
    fs::write(seed.join("README"), "over ssh\n").unwrap();
    run(Command::new("git").arg("-C").arg(&seed).args(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "one"]));
    run(Command::new("git").arg("-C").arg(&seed).args(["add", "README"]));
    run(Command::new("git").arg("-C").arg(&seed).args(["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "two"]));
    run(Command::new("git").args(["clone", "-q", "--bare"]).arg(&seed).arg(&remote));
    let client_key = host.dir.path().join("client_key");
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&client_key));
    let authorized = host.dir.path().join("authorized_keys");
    fs::copy(client_key.with_extension("pub"), &authorized).unwrap();
    let _sshd = Sshd::start(&host, &authorized);

    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("key", &fs::read_to_string(&client_key).unwrap());
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{name}:22", "{name}:80"] }} }}"#));
        let ssh = "ssh -i key -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10";
        let script = format!(
            "chmod 600 key
             {ssh} root@{name} echo remote says hi; echo \"ssh exit=$?\"
             GIT_SSH_COMMAND='{ssh}' git clone -q ssh://root@{name}{remote} clone && cat clone/README; echo \"git exit=$?\"
             {ssh} -p 2222 root@{name} true 2>/dev/null; echo \"ssh-2222 exit=$?\"
             node -e 'fetch(\"http://{name}/node\").then(r => r.text()).then(t => console.log(t.trim()), e => console.log(\"fetch failed\", e.cause && e.cause.code))'",
            remote = remote.display()
        );
        let lock = HostLock::take();
        let (out, events) = monitor(&ws, &script);
        drop(lock);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("remote says hi\nssh exit=0\nover ssh\ngit exit=0\nssh-2222 exit=255\nhello from http {name} /node\n"),
            "{who:?}: {}",
            text(&out)
        );
        let decisions = net_decisions(&events);
        assert_eq!(
            decisions,
            [
                decision("direct", &name, 22, "allowed"),
                decision("direct", &name, 22, "allowed"),
                decision("direct", &name, 2222, "denied"),
                decision("direct", &name, 80, "allowed"),
            ],
            "{who:?}"
        );
    }
}

/// As an attacker, against what follows a socket transparent egress replaces: an epoll
/// registration outlives the number it was added under (it goes with the open file), so a
/// program with a short descriptor table can give its socket tens of thousands of
/// registrations (a duplicate at each number, registered, closed), in a few epoll
/// instances. sbx must neither run out of descriptors of its own (one per registration
/// would fill its table, and then its own socket for the connect cannot be made) nor answer
/// with a failure a connect it made and installed: a registration under a number sbx's
/// own table cannot hold (the last one the limit allows) is no reason to lie.
#[test]
fn many_or_far_epoll_registrations_neither_exhaust_sbx_nor_falsify_the_answer() {
    require_tools();
    let host = TestHost::start(|h| vec![(h.name("web"), h.addr())]);
    let web = host.name("web");
    let attack_py = format!(
        r#"import errno, os, resource, select, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ADDR = socket.gethostbyname("{web}")
def attempt(name, f):
    try:
        print(name, f())
    except OSError as e:
        print(name, errno.errorcode.get(e.errno, e.errno))
def get(s):
    s.sendall(b"GET /x HTTP/1.0\r\nHost: x\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data.split(b"\r\n\r\n", 1)[1].decode().strip()
        data += chunk
def many():
    s = socket.socket()
    eps = [select.epoll() for _ in range(4)]
    for ep in eps:
        for n in range(1000, min(hard, 7500)):
            os.dup2(s.fileno(), n)
            ep.register(n, select.EPOLLIN)
            os.close(n)
    s.connect((ADDR, 80))
    return get(s)
def far():
    s = socket.socket()
    ep = select.epoll()
    os.dup2(s.fileno(), hard - 1)
    ep.register(hard - 1, select.EPOLLIN)
    os.close(hard - 1)
    try:
        s.connect((ADDR, 80))
        rc = "ok"
    except OSError as e:
        rc = errno.errorcode.get(e.errno, e.errno)
    try:
        peer = s.getpeername()[1]
    except OSError:
        peer = None
    return f"{{rc}} peer={{peer}}"
attempt("many", many)
attempt("far", far)
"#
    );
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("attack.py", &attack_py);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["{web}:80"] }} }}"#));
        let lock = HostLock::take();
        let (out, _events) = monitor(&ws, "python3 attack.py");
        drop(lock);
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "many hello from http x /x\nfar ok peer=80\n", "{who:?}: {}", text(&out));
    }
}
