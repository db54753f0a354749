//! `--ask` at the proxy: a connection that no rule decides is held until
//! the asker answers, other connections go on meanwhile, "always" answers
//! are remembered, and no answer is a denial.

mod common;

use std::time::Duration;

use common::*;
use sbx::proxy::ask::{Answer, AskRequest, Asker};
use tokio::sync::mpsc;

async fn proxy_with_ask(wait: Duration) -> (Running, mpsc::Receiver<AskRequest>) {
    let (tx, rx) = mpsc::channel(16);
    let mut config = test_config();
    config.ask = Some(Asker { requests: tx, wait });
    (start_proxy(config).await, rx)
}

async fn next_ask(rx: &mut mpsc::Receiver<AskRequest>) -> AskRequest {
    tokio::time::timeout(T, rx.recv()).await.expect("no ask arrived").expect("ask channel closed")
}

#[tokio::test]
async fn a_held_connection_blocks_no_other_and_answers_are_kept() {
    let echo = tcp_echo().await;
    let (mut p, mut asks) = proxy_with_ask(T).await;
    let target = format!("127.0.0.1:{}", echo.port());

    // Held: nobody has answered yet.
    let held = tokio::spawn({
        let (proxy, target) = (p.http, target.clone());
        async move { http_connect(proxy, &target).await }
    });
    let ask = next_ask(&mut asks).await;
    assert_eq!((ask.host.as_str(), ask.port, ask.protocol), ("127.0.0.1", echo.port(), sbx::proxy::Protocol::Connect));
    // Meanwhile an allowed connection works, and a denied one is refused
    // without asking.
    let (head, mut c) = http_connect(p.http, &format!("allowed.test:{}", echo.port())).await;
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"not blocked by the held one").await;
    assert!(http_exchange(p.http, "CONNECT evil.example:443 HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 403"));
    assert!(!held.is_finished());
    assert!(asks.try_recv().is_err(), "a decided destination was asked about");

    ask.reply.send(Answer::AllowOnce).unwrap();
    let (head, mut c) = held.await.unwrap();
    assert_eq!(head, "HTTP/1.1 200 Connection established\r\n\r\n");
    assert_echo(&mut c, b"allowed once").await;

    // "Once" is not remembered: the next one asks again.
    let again = tokio::spawn({
        let (proxy, target) = (p.http, target.clone());
        async move { http_exchange(proxy, &format!("CONNECT {target} HTTP/1.1\r\n\r\n")).await }
    });
    next_ask(&mut asks).await.reply.send(Answer::DenyAlways).unwrap();
    assert!(again.await.unwrap().starts_with("HTTP/1.1 403"));
    // "Always" is: refused at once.
    assert!(http_exchange(p.http, &format!("CONNECT {target} HTTP/1.1\r\n\r\n")).await.starts_with("HTTP/1.1 403"));
    assert!(asks.try_recv().is_err());

    let mut rules = Vec::new();
    while let Ok(ev) = p.events.try_recv() {
        rules.push((ev.host, ev.allowed, ev.rule));
    }
    let asked: Vec<_> = rules.iter().filter(|(h, _, _)| h == "127.0.0.1").map(|(_, a, r)| (*a, r.as_str())).collect();
    assert_eq!(asked, [(true, "asked: allowed once"), (false, "asked: denied always"), (false, "asked: denied always")]);
}

#[tokio::test]
async fn no_answer_is_a_denial() {
    let (mut p, mut asks) = proxy_with_ask(Duration::from_millis(300)).await;
    let req = tokio::spawn({
        let proxy = p.http;
        async move { http_exchange(proxy, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n").await }
    });
    let ask = next_ask(&mut asks).await;
    assert!(req.await.unwrap().starts_with("HTTP/1.1 403"));
    drop(ask);
    let ev = p.event().await;
    assert_eq!((ev.allowed, ev.rule.as_str()), (false, "asked: no answer in time, denied"));
}
