//! A local PagerDuty Events API v2 receiver for notifier tests: axum on 127.0.0.1:0 that checks
//! every event against the Events v2 field rules ([`problems`]) and answers like PagerDuty —
//! `202 {"status":"success",...}` for a valid event, `400 {"status":"invalid event",...}`
//! naming the problems otherwise — or `400` for everything when told to refuse.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// One event as it arrived, with what was wrong with it (empty = valid).
#[derive(Debug, Clone)]
pub struct Event {
    pub body: Value,
    pub problems: Vec<String>,
}

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<Event>>,
    refuse: AtomicBool,
}

/// The running receiver; stopped when dropped.
pub struct PagerDuty {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for PagerDuty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PagerDuty {
    /// Binds 127.0.0.1:0 and serves `POST /v2/enqueue`.
    pub async fn start() -> Result<PagerDuty> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v2/enqueue", post(enqueue))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the PagerDuty receiver")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("PagerDuty receiver stopped: {e}");
            }
        });
        Ok(PagerDuty { addr, shared, task })
    }

    /// `http://127.0.0.1:<port>/v2/enqueue`, a route's `url`.
    pub fn url(&self) -> String {
        format!("http://{}/v2/enqueue", self.addr)
    }

    /// From now on every event gets `400 Bad Request` (as PagerDuty answers an invalid one).
    pub fn refuse_all(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
    }

    /// Every event received so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.shared
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn enqueue(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut problems = problems(&parsed);
    if shared.refuse.load(Ordering::SeqCst) {
        problems.push("refused by the test".into());
    }
    let dedup = parsed["dedup_key"].clone();
    shared
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Event {
            body: parsed,
            problems: problems.clone(),
        });
    if problems.is_empty() {
        let answer = json!({"status": "success", "message": "Event processed", "dedup_key": dedup});
        (StatusCode::ACCEPTED, Json(answer))
    } else {
        let answer = json!({"status": "invalid event", "message": "Event object is invalid", "errors": problems});
        (StatusCode::BAD_REQUEST, Json(answer))
    }
}

/// What breaks the Events v2 rules for an alert event (empty = valid): `routing_key` a
/// 32-character integration key; `event_action` trigger, acknowledge or resolve; `dedup_key`
/// at most 255 characters (required to resolve or acknowledge); for a trigger, `payload` with
/// `summary` (1–1,024 characters), `source` (non-empty), `severity` (critical, error, warning,
/// info), optional `timestamp` in ISO 8601, optional object `custom_details`.
pub fn problems(event: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let text = |v: &Value| v.as_str().map(str::to_owned);
    match text(&event["routing_key"]) {
        Some(k) if k.len() == 32 && k.chars().all(|c| c.is_ascii_alphanumeric()) => {}
        other => out.push(format!("routing_key must be 32 characters: {other:?}")),
    }
    let action = text(&event["event_action"]).unwrap_or_default();
    if !["trigger", "acknowledge", "resolve"].contains(&action.as_str()) {
        out.push(format!("event_action {action:?}"));
    }
    match text(&event["dedup_key"]) {
        Some(k) if !k.is_empty() && k.chars().count() <= 255 => {}
        None if action == "trigger" => {}
        other => out.push(format!("dedup_key must be 1 to 255 characters: {other:?}")),
    }
    if action != "trigger" {
        return out;
    }
    let p = &event["payload"];
    match text(&p["summary"]) {
        Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
        other => out.push(format!(
            "payload.summary must be 1 to 1024 characters: {:?}",
            other.map(|s| s.chars().count())
        )),
    }
    if text(&p["source"]).is_none_or(|s| s.is_empty()) {
        out.push("payload.source is required".into());
    }
    let severity = text(&p["severity"]).unwrap_or_default();
    if !["critical", "error", "warning", "info"].contains(&severity.as_str()) {
        out.push(format!("payload.severity {severity:?}"));
    }
    if let Some(ts) = p.get("timestamp") {
        if !ts.as_str().is_some_and(iso8601) {
            out.push(format!("payload.timestamp {ts} is not ISO 8601"));
        }
    }
    if let Some(d) = p.get("custom_details") {
        if !d.is_object() {
            out.push("payload.custom_details must be an object".into());
        }
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
fn iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(digits(0..4) && at(4, b'-') && digits(5..7) && at(7, b'-') && digits(8..10))
        || !(at(10, b'T') && digits(11..13) && at(13, b':') && digits(14..16) && at(16, b':'))
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && (rest.starts_with('+') || rest.starts_with('-'))
            && rest.as_bytes()[3] == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_refuse_what_pagerduty_refuses() {
        let good = json!({
            "routing_key": "R0123456789abcdefghijklmnopqrstu",
            "event_action": "trigger",
            "dedup_key": "disk_crit/web-01/",
            "payload": {"summary": "x", "source": "web-01", "severity": "critical",
                        "timestamp": "2026-12-06T02:00:00.123Z", "custom_details": {}},
        });
        assert!(problems(&good).is_empty(), "{:?}", problems(&good));
        let mut bad = good.clone();
        bad["routing_key"] = json!("short");
        bad["payload"]["severity"] = json!("fatal");
        bad["payload"]["summary"] = json!("x".repeat(1025));
        bad["payload"]["timestamp"] = json!("yesterday");
        bad["dedup_key"] = json!("k".repeat(256));
        assert_eq!(problems(&bad).len(), 5, "{:?}", problems(&bad));
        let resolve = json!({"routing_key": "R0123456789abcdefghijklmnopqrstu",
                             "event_action": "resolve", "dedup_key": "a"});
        assert!(problems(&resolve).is_empty());
        assert!(iso8601("2026-12-06T02:00:00+01:00") && !iso8601("2026-12-06 02:00:00Z"));
    }
}
