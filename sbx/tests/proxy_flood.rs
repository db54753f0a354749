//! Flood test, alone in its binary so /proc/self/fd counts are not disturbed by other tests.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[derive(Debug, Default)]
struct Tally {
    tunnels: usize,
    busy_503: usize,
    bad_400: usize,
    socks_ok: usize,
    socks_busy: usize,
    closed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_500_with_limit_64_recovers_fds() {
    let echo = tcp_echo().await;
    let mut cfg = test_config();
    cfg.limits.max_connections = 64;
    cfg.limits.header_timeout = Duration::from_secs(2);
    let mut p = start_proxy(cfg).await;
    // Warm up (lazy runtime/resolver state), then take the baseline.
    let (_, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_echo(&mut c, b"warm").await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while p.events.try_recv().is_ok() {}
    let baseline = fd_count();

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(500));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..500usize {
        let (http, socks, port, barrier) = (p.http, p.socks, echo.port(), barrier.clone());
        clients.spawn(async move {
            let kind = i % 5;
            let addr = if kind == 4 { socks } else { http };
            let Ok(mut c) = TcpStream::connect(addr).await else { return "closed" };
            barrier.wait().await; // all 500 connected at once
            let res = tokio::time::timeout(Duration::from_secs(20), async {
                match kind {
                    0..=2 => {
                        let req = format!("CONNECT allowed.test:{port} HTTP/1.1\r\n\r\n");
                        c.write_all(req.as_bytes()).await.ok()?;
                        let head = read_head(&mut c).await;
                        if head.starts_with("HTTP/1.1 200") {
                            c.write_all(b"ping").await.ok()?;
                            let mut b = [0u8; 4];
                            c.read_exact(&mut b).await.ok()?;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Some(if &b == b"ping" { "tunnel" } else { "closed" })
                        } else if head.starts_with("HTTP/1.1 503") {
                            Some("503")
                        } else {
                            Some("closed")
                        }
                    }
                    3 => {
                        c.write_all(b"\x00\x01garbage\r\n\r\n").await.ok()?;
                        let head = read_head(&mut c).await;
                        Some(if head.starts_with("HTTP/1.1 400") {
                            "400"
                        } else if head.starts_with("HTTP/1.1 503") {
                            "503"
                        } else {
                            "closed"
                        })
                    }
                    _ => {
                        c.write_all(&[5, 1, 0]).await.ok()?;
                        let mut m = [0u8; 2];
                        c.read_exact(&mut m).await.ok()?;
                        let mut req = vec![5, 1, 0, 3, 12];
                        req.extend_from_slice(b"allowed.test");
                        req.extend_from_slice(&port.to_be_bytes());
                        c.write_all(&req).await.ok()?;
                        let mut rep = [0u8; 10];
                        c.read_exact(&mut rep).await.ok()?;
                        Some(match rep[1] {
                            0 => "socks_ok",
                            1 => "socks_busy",
                            _ => "closed",
                        })
                    }
                }
            })
            .await;
            match res {
                Ok(Some(r)) => r,
                Ok(None) => "closed",
                Err(_) => "hung",
            }
        });
    }
    let mut t = Tally::default();
    while let Some(r) = clients.join_next().await {
        match r.expect("client task") {
            "tunnel" => t.tunnels += 1,
            "503" => t.busy_503 += 1,
            "400" => t.bad_400 += 1,
            "socks_ok" => t.socks_ok += 1,
            "socks_busy" => t.socks_busy += 1,
            "closed" => t.closed += 1,
            other => panic!("client {other}"),
        }
    }
    eprintln!("flood outcome: {t:?}");
    assert!(t.tunnels + t.socks_ok >= 1, "some were served: {t:?}");
    assert!(t.busy_503 + t.socks_busy >= 1, "limit was enforced: {t:?}");

    // Every socket of the flood is released.
    let mut now = fd_count();
    for _ in 0..100 {
        if now <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = fd_count();
    }
    assert!(now <= baseline, "fd leak: baseline {baseline}, now {now}");

    // And the proxy still serves.
    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"after flood").await;
    assert_eq!(p.proxy.dropped_events(), 0);
}
