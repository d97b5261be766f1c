//! A real local HTTP receiver for notifier tests: axum on 127.0.0.1:0 that records every
//! request (method, path, headers, body parsed as JSON), can be scripted to answer the next N
//! requests with an error (status, optional `Retry-After`, optional delay), and lets a test
//! wait for a request count without fixed sleeps.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! let rx = opsfleet_tests::Receiver::start().await?;
//! rx.fail_next(2); // two 500s, then 200
//! // ... point a notifier at rx.url("/hook") ...
//! let requests = rx.wait_for(3, Duration::from_secs(30)).await?;
//! assert_eq!(requests[2].header("idempotency-key"), Some("a1:firing:7"));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One request as the receiver saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/bot123:abc/sendMessage`.
    pub path: String,
    /// Header names lower-cased; a repeated header keeps its last value.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; `Null` when it is not JSON (see `raw`).
    pub body: serde_json::Value,
    pub raw: String,
    /// The status the receiver answered (200 unless scripted).
    pub status: u16,
}

impl Recorded {
    /// A header by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A scripted answer for one upcoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// Sent as `Retry-After: <seconds>`.
    pub retry_after: Option<u64>,
    pub body: String,
    /// Wait this long before answering (to provoke client timeouts).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            retry_after: None,
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Reply>>,
    arrived: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running receiver; stopped when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Binds 127.0.0.1:0 and serves in a background task. Unscripted requests get
    /// `200 {"ok":true}`.
    pub async fn start() -> Result<Receiver> {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(record).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the test receiver on 127.0.0.1:0")?;
        let addr = listener.local_addr().context("receiver address")?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("test receiver stopped: {e}");
            }
        });
        Ok(Receiver { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next `n` requests get `500 Internal Server Error`.
    pub fn fail_next(&self, n: usize) {
        self.answer_next(n, Reply::status(500));
    }

    /// The next `n` requests get `reply` (queued after earlier scripted replies).
    pub fn answer_next(&self, n: usize, reply: Reply) {
        let mut script = lock(&self.shared.script);
        script.extend(std::iter::repeat_n(reply, n));
    }

    /// Drops the scripted replies not used yet: every request from now on gets 200.
    pub fn clear_script(&self) {
        lock(&self.shared.script).clear();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until at least `count` requests arrived, at most `deadline`; returns them all.
    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Result<Vec<Recorded>> {
        let wait = async {
            loop {
                let arrived = self.shared.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                let now = self.requests();
                if now.len() >= count {
                    return now;
                }
                arrived.await;
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(requests) => Ok(requests),
            Err(_) => bail!(
                "receiver got {} of {count} requests within {deadline:?}",
                self.requests().len()
            ),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let reply = lock(&shared.script).pop_front();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null),
        raw,
        status: reply.as_ref().map_or(200, |r| r.status),
    };
    lock(&shared.requests).push(recorded);
    shared.arrived.notify_waiters();
    let Some(reply) = reply else {
        return (StatusCode::OK, r#"{"ok":true}"#).into_response();
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, reply.body).into_response();
    if let Some(secs) = reply.retry_after {
        if let Ok(v) = secs.to_string().parse() {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
    }
    resp
}

/// A coordinator's `[alerts]` and `[notify]` for tests that watch a receiver: evaluated every
/// 500 ms (a host lost after 10 missed heartbeats, no silent kinds), `disk_warn` off,
/// `disk_crit` firing after 1 s plus `disk_crit` keys, then `rules` (more rule tables), and
/// one webhook route `ops` to `hook` plus `route` keys.
pub fn webhook_alerts_toml(hook: &str, disk_crit: &str, rules: &str, route: &str) -> String {
    format!(
        r#"
[alerts]
interval = "500ms"
missed_heartbeats = 10
silent_kinds = []

[alerts.rules.disk_warn]
enabled = false

[alerts.rules.disk_crit]
for = "1s"
{disk_crit}
{rules}
[[notify.routes]]
name = "ops"
kind = "webhook"
url = "{hook}"
{route}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_scripts_answers() -> Result<()> {
        let rx = Receiver::start().await?;
        rx.answer_next(
            1,
            Reply {
                retry_after: Some(2),
                ..Reply::status(429)
            },
        );
        let url = rx.url("/hook?x=1");
        let (status, retry_after) = post(&rx, &url, r#"{"a":1}"#).await?;
        assert_eq!((status, retry_after.as_deref()), (429, Some("2")));
        let (status, _) = post(&rx, &url, "not json").await?;
        assert_eq!(status, 200);
        let got = rx.wait_for(2, Duration::from_secs(30)).await?;
        assert_eq!(got[0].path, "/hook?x=1");
        assert_eq!(got[0].body, serde_json::json!({"a": 1}));
        assert_eq!(got[0].header("X-Test"), Some("yes"));
        assert_eq!(got[1].body, serde_json::Value::Null);
        assert_eq!(got[1].raw, "not json");
        assert!(rx.wait_for(3, Duration::from_millis(200)).await.is_err());
        Ok(())
    }

    /// A minimal HTTP/1.1 POST over a raw socket (the harness has no HTTP client).
    async fn post(rx: &Receiver, url: &str, body: &str) -> Result<(u16, Option<String>)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let path = url.trim_start_matches(&rx.url(""));
        let mut s = tokio::net::TcpStream::connect(rx.addr()).await?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nX-Test: yes\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            rx.addr(),
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).await?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("status line")?;
        let retry_after = answer
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .map(str::to_owned);
        Ok((status, retry_after))
    }
}
