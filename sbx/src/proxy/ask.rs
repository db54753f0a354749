//! `sbx monitor --ask`: a connection that no rule allows or denies is held
//! while someone decides. The proxy sends an [`AskRequest`] and awaits its
//! answer in the connection's own task, so other connections go on; the
//! session owns the asking (the dashboard's prompt, the timeout, the config
//! file) and answers through the request's one-shot channel. "Always"
//! answers are remembered for the rest of the session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Protocol, rules::Host};

/// The person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    AllowOnce,
    AllowAlways,
    DenyOnce,
    DenyAlways,
    /// Nobody answered in time: denied.
    Timeout,
}

impl Answer {
    pub fn allows(self) -> bool {
        matches!(self, Answer::AllowOnce | Answer::AllowAlways)
    }
}

/// A held connection waiting for an answer.
#[derive(Debug)]
pub struct AskRequest {
    /// Normalised host (see [`Host`]).
    pub host: String,
    pub port: u16,
    pub protocol: Protocol,
    pub client: String,
    pub reply: oneshot::Sender<Answer>,
}

/// How the proxy asks: where requests go, and how long it waits at most
/// (a bound of its own, above the session's prompt timeout, in case the
/// session is gone).
#[derive(Debug, Clone)]
pub struct Asker {
    pub requests: mpsc::Sender<AskRequest>,
    pub wait: Duration,
}

#[derive(Debug)]
pub(crate) struct Ask {
    asker: Asker,
    /// "Always" answers of this session, by destination.
    remembered: Mutex<HashMap<(String, u16), bool>>,
}

impl Ask {
    pub(crate) fn new(asker: Asker) -> Self {
        Ask { asker, remembered: Mutex::new(HashMap::new()) }
    }

    /// Asks about `host:port`; returns whether it is allowed and the rule
    /// text for the decision's event.
    pub(crate) async fn decide(&self, host: &Host, port: u16, protocol: Protocol, client: &str) -> (bool, String) {
        let key = (host.to_string(), port);
        if let Some(&allow) = self.remembered.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return (allow, format!("asked: {} always", if allow { "allowed" } else { "denied" }));
        }
        let (tx, rx) = oneshot::channel();
        let request = AskRequest { host: key.0.clone(), port, protocol, client: client.to_owned(), reply: tx };
        if self.asker.requests.send(request).await.is_err() {
            return (false, "asked: nobody to ask (the dashboard is gone)".into());
        }
        let answer = match tokio::time::timeout(self.asker.wait, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) | Err(_) => Answer::Timeout,
        };
        if matches!(answer, Answer::AllowAlways | Answer::DenyAlways) {
            self.remembered.lock().unwrap_or_else(|e| e.into_inner()).insert(key, answer.allows());
        }
        let rule = match answer {
            Answer::AllowOnce => "asked: allowed once",
            Answer::AllowAlways => "asked: allowed always",
            Answer::DenyOnce => "asked: denied once",
            Answer::DenyAlways => "asked: denied always",
            Answer::Timeout => "asked: no answer in time, denied",
        };
        (answer.allows(), rule.into())
    }
}
