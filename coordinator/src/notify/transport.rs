//! HTTP POST with retries: backon exponential backoff (capped, jittered), retrying only
//! connection errors, timeouts, 429 and 5xx, honouring `Retry-After` (delta-seconds, or
//! Telegram's `parameters.retry_after`) up to the route's `retry_max_delay`; each attempt only
//! while the caller still may send (acting in its term).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;

use super::{Delivery, Notification, RouteConfig};

/// How a route POSTs one notification.
pub(super) struct HttpPost {
    /// May contain a secret (Slack URL, Telegram token): never logged.
    pub url: String,
    /// The JSON body (text, so fields keep their declared order).
    pub body: Box<dyn Fn(&Notification) -> String + Send + Sync>,
    /// Send `Idempotency-Key: <notification id>`.
    pub idempotency_key: bool,
}

/// Attempts, per-attempt timeout and backoff of one route.
#[derive(Debug, Clone)]
pub(super) struct RetryPolicy {
    pub max_attempts: u32,
    pub timeout: Duration,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    pub fn from_route(r: &RouteConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: r.max_attempts.max(1),
            timeout: r.timeout,
            min_delay: r.retry_min_delay,
            max_delay: r.retry_max_delay.max(r.retry_min_delay),
        }
    }

    /// One attempt (dry-run).
    pub fn single() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            timeout: Duration::from_secs(1),
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub(super) struct AttemptError {
    pub retryable: bool,
    /// Not attempted: the caller no longer may send.
    pub abandoned: bool,
    pub retry_after: Option<Duration>,
    pub reason: String,
}

/// Longest answer body quoted in a failure reason.
const MAX_QUOTED_BODY: usize = 200;

/// POSTs `n` with retries and reports the outcome.
pub(super) async fn send(
    client: &reqwest::Client,
    policy: &RetryPolicy,
    post: &HttpPost,
    n: &Notification,
    still: &(dyn Fn() -> bool + Sync),
) -> Delivery {
    let attempts = AtomicU32::new(0);
    let body = (post.body)(n);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_attempts.saturating_sub(1) as usize)
        .with_jitter();
    let cap = policy.max_delay;
    let result = (|| async {
        if !still() {
            return Err(AttemptError {
                retryable: false,
                abandoned: true,
                retry_after: None,
                reason: "no longer acting".to_owned(),
            });
        }
        attempts.fetch_add(1, Ordering::Relaxed);
        let key = post.idempotency_key.then_some(n.id.as_str());
        attempt(client, policy.timeout, &post.url, &body, key).await
    })
    .retry(backoff)
    .sleep(tokio::time::sleep)
    .when(|e: &AttemptError| e.retryable)
    .notify(|e: &AttemptError, delay: Duration| {
        tracing::debug!(id = %n.id, reason = %e.reason, ?delay, "notification attempt failed, retrying");
    })
    .adjust(|e: &AttemptError, delay| delay.map(|d| e.retry_after.map_or(d, |ra| ra.min(cap))))
    .await;
    let attempts = attempts.load(Ordering::Relaxed);
    match result {
        Ok(()) => Delivery::Sent { attempts },
        Err(e) if e.abandoned => Delivery::Abandoned { attempts },
        Err(e) => Delivery::Failed {
            attempts,
            reason: e.reason,
        },
    }
}

/// One POST of `body` to `url` (which may hold a secret: never in the error).
pub(super) async fn attempt(
    client: &reqwest::Client,
    timeout: Duration,
    url: &str,
    body: &str,
    idempotency_key: Option<&str>,
) -> Result<(), AttemptError> {
    let mut req = client
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(id) = idempotency_key {
        req = req.header("Idempotency-Key", id);
    }
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let header_retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The body is only for the reason (and Telegram's retry_after); a failure to read it is
    // not worth another attempt of its own.
    let text = tokio::time::timeout(timeout, resp.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let retry_after = header_retry_after.or_else(|| body_retry_after(&text));
    Err(AttemptError {
        retryable: status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
        abandoned: false,
        retry_after,
        reason: format!("HTTP {}: {}", status.as_u16(), quote(&text)),
    })
}

/// Any error before a status arrived: connection refused/reset, DNS, TLS, timeout. Only a
/// request that could not be built or an endless redirect is permanent. The URL is stripped.
fn transport_error(e: reqwest::Error) -> AttemptError {
    let retryable = !(e.is_builder() || e.is_redirect());
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let reason = format!("{kind}: {}", opsfleet_report::ErrorChain(&e));
    AttemptError {
        retryable,
        abandoned: false,
        retry_after: None,
        reason,
    }
}

/// Telegram's `{"ok":false,"parameters":{"retry_after":N}}`.
fn body_retry_after(text: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("parameters")?
        .get("retry_after")?
        .as_u64()
        .map(Duration::from_secs)
}

/// The first [`MAX_QUOTED_BODY`] characters of an answer, on one line.
fn quote(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_QUOTED_BODY)
        .collect();
    let one_line = one_line.trim();
    if one_line.is_empty() {
        "(empty answer)".to_owned()
    } else if text.chars().count() > MAX_QUOTED_BODY {
        format!("{one_line}…")
    } else {
        one_line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_retry_after_and_quoting() {
        assert_eq!(
            body_retry_after(r#"{"ok":false,"error_code":429,"parameters":{"retry_after":3}}"#),
            Some(Duration::from_secs(3))
        );
        assert_eq!(body_retry_after("busy"), None);
        assert_eq!(quote(""), "(empty answer)");
        assert_eq!(quote("bad\nrequest"), "bad request");
        assert_eq!(quote(&"x".repeat(300)).chars().count(), MAX_QUOTED_BODY + 1);
    }
}
