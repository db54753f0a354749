//! The network: only loopback inside, and sbx's proxy as the one way out.
//! Every server here listens on the host's loopback.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    thread,
};

use sbx_integration_tests::{As, Workspace, read_log, require_root, require_tool, text};

/// A tiny HTTP server on 127.0.0.1 that answers every request with the
/// request line it saw.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = format!("seen: {}", first.trim_end());
                let mut stream = stream;
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            });
        }
    });
    port
}

/// A TCP echo server on 127.0.0.1 (a host "database").
fn echo_server() -> u16 {
    echo_server_on("127.0.0.1:0")
}

/// An echo server on `addr` (port 0: a free one); returns its port.
fn echo_server_on(addr: &str) -> u16 {
    let listener = TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn only_loopback_inside_and_the_proxy_is_the_way_out() {
    require_root!();
    require_tool("curl");
    let web = http_server();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowedDomains": ["127.0.0.1:{web}"], "deniedDomains": ["denied.example"] }} }}"#));
        let log = ws.path().join("audit.jsonl");
        let script = format!(
            r#"awk -F: 'NR>2 {{gsub(/ /,"",$1); print $1}}' /proc/net/dev; echo "proxy=$HTTP_PROXY socks=$ALL_PROXY"
               curl -s --noproxy '' -x "$HTTP_PROXY" http://127.0.0.1:{web}/plain; echo
               curl -s --noproxy '' -x "$ALL_PROXY" http://127.0.0.1:{web}/socks; echo
               curl -s --noproxy '' -x "$HTTP_PROXY" http://denied.example/; echo
               curl -s --noproxy '' -x "$HTTP_PROXY" http://unlisted.example/x; echo
               curl -s --noproxy '' -x "$ALL_PROXY" http://unlisted.example/ || echo "socks refused: $?""#
        );
        let out = ws.sbx(["monitor", "--no-tui", "--log"]).arg(&log).args(["--", "/bin/sh", "-c", &script]).output().unwrap();
        assert!(out.status.success(), "{who:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], "lo", "{who:?}: only loopback: {stdout}");
        assert_eq!(lines[1], "proxy=http://127.0.0.1:3128 socks=socks5h://127.0.0.1:1080");
        assert_eq!(lines[2], "seen: GET /plain HTTP/1.1", "{who:?}: {stdout}");
        assert_eq!(lines[3], "seen: GET /socks HTTP/1.1", "{who:?}: {stdout}");
        assert_eq!(lines[4], "sbx: blocked connection to denied.example:80 (deniedDomains: denied.example)");
        assert_eq!(lines[5], "sbx: blocked connection to unlisted.example:80 (no rule allows it)");
        // curl's exit status 97: the SOCKS5 server refused the connection.
        assert_eq!(lines[6], "socks refused: 97", "{who:?}: {stdout}");

        let events = read_log(&log);
        let net: Vec<_> = events.iter().filter(|e| e["type"] == "net").collect();
        let decisions: Vec<(String, String, String)> = net
            .iter()
            .map(|e| (e["protocol"].as_str().unwrap().into(), e["host"].as_str().unwrap().into(), e["decision"].as_str().unwrap().into()))
            .collect();
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            decisions,
            [
                s("http", "127.0.0.1", "allowed"),
                s("socks5", "127.0.0.1", "allowed"),
                s("http", "denied.example", "denied"),
                s("http", "unlisted.example", "denied"),
                s("socks5", "unlisted.example", "denied"),
            ],
            "{who:?}"
        );
        assert_eq!(net[0]["rule"], format!("allowedDomains: 127.0.0.1:{web}"));
        assert_eq!(net[2]["rule"], "deniedDomains: denied.example");
        let proxy_denials: Vec<_> = events.iter().filter(|e| e["type"] == "denial" && e["source"] == "proxy").collect();
        assert_eq!(proxy_denials.len(), 3);
        assert_eq!(proxy_denials[0]["host"], "denied.example");
        assert_eq!(proxy_denials[0]["port"], 80);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("3 proxy (denied.example, unlisted.example)"), "{stderr}");
    }
}

#[test]
fn local_outbound_ports_reach_the_host_and_nothing_else() {
    require_root!();
    require_tool("python3");
    let db = echo_server();
    let other = echo_server();
    // A host service on ::1 only (the forwarder tries 127.0.0.1, then ::1).
    let v6 = echo_server_on("[::1]:0");
    let ws = Workspace::new(As::Root);
    ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowLocalOutboundPorts": [{db}, {v6}] }} }}"#));
    // From 127.0.0.1 and ::1 inside: the sandbox listens on both.
    let script = format!(
        r#"python3 - <<'PY'
import socket
for addr in ("127.0.0.1", "::1"):
    for port in ({db}, {v6}, {other}):
        try:
            s = socket.create_connection((addr, port), timeout=2)
            s.sendall(b"ping")
            print(addr, port != {other}, s.recv(4).decode() or "closed")
        except OSError as e:
            print(addr, port != {other}, type(e).__name__)
PY"#
    );
    let out = ws.run_sh(&script);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "127.0.0.1 True ping\n127.0.0.1 True ping\n127.0.0.1 False ConnectionRefusedError\n\
         ::1 True ping\n::1 True ping\n::1 False ConnectionRefusedError\n",
        "{}",
        text(&out)
    );
}

/// The proxy's ports answer on ::1 too (a client may resolve `localhost` to
/// it): HTTP refuses an unlisted name with its 403, SOCKS5 takes a greeting.
#[test]
fn the_proxy_listens_on_ipv6_loopback_too() {
    require_root!();
    require_tool("python3");
    let ws = Workspace::new(As::Root);
    let script = r#"python3 - <<'PY'
import socket
s = socket.create_connection(("::1", 3128), timeout=5)
s.sendall(b"GET http://unlisted.example/ HTTP/1.1\r\nHost: unlisted.example\r\n\r\n")
print(s.recv(4096).split(b"\r\n")[0].decode())
s = socket.create_connection(("::1", 1080), timeout=5)
s.sendall(b"\x05\x01\x00")
print(s.recv(2).hex())
PY"#;
    let out = ws.run_sh(script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HTTP/1.1 403 Forbidden\n0500\n", "{}", text(&out));
}

/// A server on 127.0.0.1 that says its own port to each client and closes.
fn port_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(port.to_string().as_bytes());
        }
    });
    port
}

/// More listed ports than one message of descriptors carries (stage-2 hands
/// sbx a listening socket per port and address): each one, from 127.0.0.1
/// and ::1 inside, reaches its own host port.
#[test]
fn many_local_outbound_ports_are_all_served() {
    require_root!();
    require_tool("python3");
    let ports: Vec<u16> = (0..40).map(|_| port_server()).collect();
    let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
    let ws = Workspace::new(As::Root);
    ws.write("sbx.jsonc", &format!(r#"{{ "network": {{ "allowLocalOutboundPorts": [{list}] }} }}"#));
    let script = format!(
        r#"python3 - <<'PY'
import socket
wrong = []
for addr in ("127.0.0.1", "::1"):
    for port in ({list}):
        s = socket.create_connection((addr, port), timeout=5)
        said = s.recv(16).decode()
        if said != str(port):
            wrong.append((addr, port, said))
print(wrong)
PY"#
    );
    let out = ws.run_sh(&script);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[]\n", "{}", text(&out));
}

/// Issue 18, point 1: a test server on the sandbox's own loopback (port 0, as pytest and
/// asyncio use it) works under the default policy, as root and as a user, on 127.0.0.1,
/// localhost and ::1; `allowLocalBinding: false` written out changes nothing, since the
/// namespace is the sandbox's own.
#[test]
fn loopback_binding_works_by_default_in_the_sandboxs_namespace() {
    require_root!();
    require_tool("python3");
    let script = r#"python3 - <<'PY' 2>&1
import socket
ok = []
for host, family in (("127.0.0.1", socket.AF_INET), ("localhost", socket.AF_INET), ("::1", socket.AF_INET6)):
    s = socket.socket(family)
    s.bind((host, 0))
    s.listen()
    c = socket.create_connection((host, s.getsockname()[1]), timeout=5)
    a, _ = s.accept()
    a.sendall(b"x")
    ok.append(host if c.recv(1) == b"x" else "wrong " + host)
print(ok)
PY"#;
    let expected = "['127.0.0.1', 'localhost', '::1']\n";
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let out = ws.run_sh(script);
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{who:?}: {}", text(&out));
        ws.write("sbx.jsonc", r#"{ "network": { "allowLocalBinding": false } }"#);
        let out = ws.run_sh(script);
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{who:?} with allowLocalBinding false: {}", text(&out));
    }
}

#[test]
fn inbound_port_reaches_a_server_inside() {
    require_root!();
    require_tool("python3");
    // The command's server on 127.0.0.1, or on ::1 only (the connector tries both).
    for (who, inside) in [(As::Root, "127.0.0.1"), (As::User, "127.0.0.1"), (As::Root, "::1")] {
        let port = {
            // A free port on the host (and so inside, where nothing else runs).
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ws = Workspace::new(who);
        let family = if inside.contains(':') { "socket.AF_INET6" } else { "socket.AF_INET" };
        let server = format!(
            "import socket\ns=socket.socket({family}); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{inside}', {port})); s.listen()\nc,_=s.accept(); c.sendall(b'hello from inside'); c.close()"
        );
        let mut child = ws.sbx(["run", "-p", &port.to_string(), "--", "python3", "-c", &server]).spawn().unwrap();
        // Poll until the server inside listens (the test waits; sbx never sleeps).
        let mut got = String::new();
        for _ in 0..100 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.read_to_string(&mut got);
                if !got.is_empty() {
                    break;
                }
            }
            thread::sleep(std::time::Duration::from_millis(50));
        }
        if got.is_empty() {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        assert_eq!(got, "hello from inside", "{who:?} {inside}");
        assert!(status.success(), "{who:?} {inside}");
        // Another port than the exposed one may be bound too (issue 18: the namespace is the
        // sandbox's own; only `-p`'s port is reachable from the host).
        let out = ws.run_sh(&format!("python3 -c 'import socket; socket.socket().bind((\"127.0.0.1\", {})); print(\"bound\")' 2>&1 | tail -1", port + 1));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bound\n", "{who:?}: {}", text(&out));
    }
}
