//! Notifier tests against a real local HTTP receiver (axum on 127.0.0.1:0, from the
//! integration harness): delivery, idempotency header, retries, permanent failures, rate
//! limits, Telegram and Slack bodies, and the dry-run line.

use super::config::RateLimitConfig;
use super::*;
use opsfleet_proto::api::AlertState;

/// The notification used by the golden tests.
pub(crate) fn sample() -> Notification {
    Notification {
        id: "a1:firing:7".into(),
        alert_id: "a1".into(),
        rule: "disk_pressure".into(),
        host: "db-01".into(),
        subject: "/var".into(),
        state: AlertState::Firing,
        severity: Severity::Critical,
        summary: "/var is 95% full".into(),
        at_unix_ms: 1_764_633_600_000,
        coordinator: "blue".into(),
        epoch: 7,
        labels: Default::default(),
        firing_since_unix_ms: 0,
        routes_before: Vec::new(),
    }
}

use std::time::{Duration, Instant};

use opsfleet_tests::{Receiver, Reply};

pub(super) const WAIT: Duration = Duration::from_secs(30);

/// A route with fast retries so the tests do not wait for production backoff.
pub(super) fn route(name: &str, kind: RouteKind, url: &str) -> RouteConfig {
    let mut r = RouteConfig::new(name, kind);
    match kind {
        RouteKind::Telegram => {
            r.api_base = url.to_owned();
            r.bot_token = Some(Secret("123:secret-token".into()));
            r.chat_id = Some("-1001".into());
        }
        _ => r.url = Some(Secret(url.to_owned())),
    }
    r.retry_min_delay = Duration::from_millis(20);
    r.retry_max_delay = Duration::from_millis(200);
    r
}

pub(super) fn notifier(routes: Vec<RouteConfig>) -> Notifier {
    Notifier::from_config(&NotifyConfig { routes }).expect("valid notify config")
}

#[tokio::test]
async fn webhook_is_delivered_with_the_idempotency_header() {
    let rx = Receiver::start().await.unwrap();
    let n = notifier(vec![route("hook", RouteKind::Webhook, &rx.url("/hook"))]);
    assert_eq!(n.routes(), ["hook"]);
    assert_eq!(
        n.send("hook", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    let got = rx.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].header("idempotency-key"), Some("a1:firing:7"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].body, serde_json::to_value(sample()).unwrap());
}

#[tokio::test]
async fn two_500s_then_200_is_sent_on_the_third_attempt_with_the_same_key() {
    let rx = Receiver::start().await.unwrap();
    rx.fail_next(2);
    let n = notifier(vec![route("hook", RouteKind::Webhook, &rx.url("/hook"))]);
    assert_eq!(
        n.send("hook", &sample()).await,
        Delivery::Sent { attempts: 3 }
    );
    let got = rx.wait_for(3, WAIT).await.unwrap();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.header("idempotency-key"), Some("a1:firing:7"));
    }
}

#[tokio::test]
async fn a_permanent_400_fails_without_retries() {
    let rx = Receiver::start().await.unwrap();
    rx.answer_next(
        3,
        Reply {
            body: "unknown channel".into(),
            ..Reply::status(400)
        },
    );
    let n = notifier(vec![route("hook", RouteKind::Webhook, &rx.url("/hook"))]);
    let d = n.send("hook", &sample()).await;
    assert_eq!(
        d,
        Delivery::Failed {
            attempts: 1,
            reason: "HTTP 400: unknown channel".into()
        }
    );
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    let rx = Receiver::start().await.unwrap();
    rx.fail_next(10);
    let mut r = route("hook", RouteKind::Webhook, &rx.url("/hook"));
    r.max_attempts = 3;
    let n = notifier(vec![r]);
    let d = n.send("hook", &sample()).await;
    assert_eq!(
        d,
        Delivery::Failed {
            attempts: 3,
            reason: "HTTP 500: (empty answer)".into()
        }
    );
    assert_eq!(rx.requests().len(), 3);
}

#[tokio::test]
async fn a_429_retry_after_is_honoured_within_the_cap() {
    let rx = Receiver::start().await.unwrap();
    // Retry-After: 3600 s is capped at retry_max_delay (300 ms here).
    rx.answer_next(
        1,
        Reply {
            retry_after: Some(3600),
            ..Reply::status(429)
        },
    );
    let mut r = route("hook", RouteKind::Webhook, &rx.url("/hook"));
    r.retry_min_delay = Duration::from_millis(1);
    r.retry_max_delay = Duration::from_millis(300);
    let n = notifier(vec![r]);
    let start = Instant::now();
    assert_eq!(
        n.send("hook", &sample()).await,
        Delivery::Sent { attempts: 2 }
    );
    let took = start.elapsed();
    // The capped Retry-After (300 ms), not the 1 ms backoff, and far from an hour.
    assert!(took >= Duration::from_millis(300), "retried after {took:?}");
    assert!(took < Duration::from_secs(60), "retried after {took:?}");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    let rx = Receiver::start().await.unwrap();
    rx.answer_next(
        1,
        Reply {
            delay: Duration::from_secs(60),
            ..Reply::status(200)
        },
    );
    let mut r = route("hook", RouteKind::Webhook, &rx.url("/hook"));
    r.timeout = Duration::from_secs(1);
    let n = notifier(vec![r]);
    // The first attempt times out; a later one (the second, unless a loaded machine stalls a
    // local answer for a whole second) is answered at once.
    let start = Instant::now();
    match n.send("hook", &sample()).await {
        Delivery::Sent { attempts } => {
            assert!(
                attempts >= 2,
                "the stalled first attempt cannot have succeeded"
            );
            assert_eq!(rx.requests().len(), attempts as usize);
        }
        other => panic!("expected Sent, got {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the timeout did not cut the attempt"
    );

    // Nothing listens on a port just released: every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let mut r = route("hook", RouteKind::Webhook, &gone);
    r.max_attempts = 2;
    let n = notifier(vec![r]);
    match n.send("hook", &sample()).await {
        Delivery::Failed { attempts, reason } => {
            assert_eq!(attempts, 2);
            assert!(reason.starts_with("cannot connect"), "{reason}");
            assert!(!reason.contains("127.0.0.1"), "URL leaked: {reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn the_rate_limit_answers_at_once() {
    let rx = Receiver::start().await.unwrap();
    let mut r = route("hook", RouteKind::Webhook, &rx.url("/hook"));
    r.rate_limit = RateLimitConfig {
        per_minute: 1,
        burst: 2,
    };
    let n = notifier(vec![r]);
    assert_eq!(
        n.send("hook", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    assert_eq!(
        n.send("hook", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    let start = Instant::now();
    assert_eq!(n.send("hook", &sample()).await, Delivery::RateLimited);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a limited send must not block"
    );
    assert_eq!(rx.wait_for(2, WAIT).await.unwrap().len(), 2);
    assert_eq!(rx.requests().len(), 2);
}

#[tokio::test]
async fn telegram_posts_send_message_with_chat_id_and_text() {
    let rx = Receiver::start().await.unwrap();
    // api_base with a trailing slash and a path prefix, as a proxy might have.
    let n = notifier(vec![route("tg", RouteKind::Telegram, &rx.url("/tg/"))]);
    assert_eq!(
        n.send("tg", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    let got = rx.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].path, "/tg/bot123:secret-token/sendMessage");
    assert_eq!(got[0].header("idempotency-key"), None);
    assert_eq!(got[0].body, telegram::body("-1001", &sample()));
    assert_eq!(got[0].body["chat_id"], "-1001");
}

#[tokio::test]
async fn telegram_429_with_retry_after_in_the_body_is_retried() {
    let rx = Receiver::start().await.unwrap();
    rx.answer_next(
        1,
        Reply {
            body: r#"{"ok":false,"error_code":429,"parameters":{"retry_after":1}}"#.into(),
            ..Reply::status(429)
        },
    );
    let n = notifier(vec![route("tg", RouteKind::Telegram, &rx.url(""))]);
    assert_eq!(
        n.send("tg", &sample()).await,
        Delivery::Sent { attempts: 2 }
    );
}

#[tokio::test]
async fn slack_gets_a_text_one_liner_and_a_section_block() {
    let rx = Receiver::start().await.unwrap();
    let n = notifier(vec![route(
        "chat",
        RouteKind::Slack,
        &rx.url("/services/T0/B0/x"),
    )]);
    assert_eq!(
        n.send("chat", &sample()).await,
        Delivery::Sent { attempts: 1 }
    );
    let got = rx.wait_for(1, WAIT).await.unwrap();
    assert_eq!(got[0].path, "/services/T0/B0/x");
    assert_eq!(got[0].body, super::slack::body(&sample()));
}

/// A `Write` whose bytes the test can read back.
#[derive(Clone, Default)]
struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn without_routes_each_notification_is_one_dry_run_json_line() {
    let out = Buffer::default();
    let n = Notifier::from_config(&NotifyConfig::default())
        .unwrap()
        .with_dry_run_sink(Box::new(out.clone()));
    assert_eq!(n.routes(), [DRY_RUN_ROUTE]);
    let mut resolved = sample();
    resolved.state = AlertState::Resolved;
    assert_eq!(n.send(DRY_RUN_ROUTE, &sample()).await, Delivery::DryRun);
    assert_eq!(n.send(DRY_RUN_ROUTE, &resolved).await, Delivery::DryRun);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(text.ends_with('\n'));
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["dry_run"], true);
    assert_eq!(first["route"], DRY_RUN_ROUTE);
    let back: Notification = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(back, resolved);
}

#[tokio::test]
async fn min_severity_filters_routes_and_unknown_routes_fail() {
    let rx = Receiver::start().await.unwrap();
    let mut pager = route("pager", RouteKind::Webhook, &rx.url("/pager"));
    pager.min_severity = Some("critical".into());
    let all = route("all", RouteKind::Webhook, &rx.url("/all"));
    let n = notifier(vec![pager, all]);
    let mut warning = sample();
    warning.severity = Severity::Warning;
    assert_eq!(n.routes_for(&sample()), ["pager", "all"]);
    assert_eq!(n.routes_for(&warning), ["all"]);
    assert!(matches!(
        n.send("pager", &warning).await,
        Delivery::Skipped { .. }
    ));
    assert_eq!(
        n.send("nope", &sample()).await,
        Delivery::Failed {
            attempts: 0,
            reason: "unknown notify route \"nope\"".into()
        }
    );
    assert!(rx.requests().is_empty());
}

#[test]
fn one_line_leaves_out_an_empty_subject_and_summary() {
    let mut n = sample();
    n.subject = String::new();
    n.summary = String::new();
    n.state = AlertState::Resolved;
    n.severity = Severity::Warning;
    assert_eq!(one_line(&n), "[WARNING] RESOLVED disk_pressure on db-01");
}

/// HTTPS goes through rustls on the ring provider (the only one in the tree): building the
/// TLS client does not panic, and a handshake with a plain-HTTP server is a retried
/// connection error whose reason names no URL.
#[tokio::test]
async fn https_uses_rustls_and_a_failed_handshake_is_retried() {
    let rx = Receiver::start().await.unwrap();
    let mut r = route(
        "hook",
        RouteKind::Webhook,
        &format!("https://{}/hook", rx.addr()),
    );
    r.max_attempts = 2;
    let n = notifier(vec![r]);
    match n.send("hook", &sample()).await {
        Delivery::Failed { attempts, reason } => {
            assert_eq!(attempts, 2, "{reason}");
            assert!(!reason.contains("/hook"), "URL leaked: {reason}");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn attempts_are_made_only_while_acting_and_an_abandoned_send_stops_retrying() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let rx = Receiver::start().await.unwrap();
    let mut r = route("hook", RouteKind::Webhook, &rx.url("/hook"));
    r.rate_limit = RateLimitConfig {
        per_minute: 1,
        burst: 1,
    };
    let n = notifier(vec![r]);
    // Not acting: nothing is tried, and the rate-limit token is kept.
    assert_eq!(
        n.send_while("hook", &sample(), &|| false).await,
        Delivery::Abandoned { attempts: 0 }
    );
    // Acting ends after the first attempt (answered 500): no retry is made.
    rx.fail_next(1);
    let checks = AtomicU32::new(0);
    let still = || checks.fetch_add(1, Ordering::SeqCst) < 2;
    assert_eq!(
        n.send_while("hook", &sample(), &still).await,
        Delivery::Abandoned { attempts: 1 }
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.requests().len(), 1, "no attempt after acting ended");
}
