//! The live event stream: `GET /console/events/stream?host=&module=&kind=` as server-sent
//! events, read from `OPS_EVENTS` through an ordered consumer (no state left on the server)
//! starting after `Last-Event-ID` (the browser sends it on reconnect) or at the newest. Each
//! event's `id:` is its stream sequence; a keepalive comment every 15 s; at most
//! `[console] max_streams` at once; the consumer pulls small batches only as the client reads.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use opsfleet_proto::subjects::EVENTS_STREAM;
use opsfleet_proto::EventEnvelope;
use serde_json::json;

use super::pages::EventsQuery;
use super::Console;

/// Keepalive comment interval (the issue asks for at most 30 s).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Messages the ordered consumer pulls at a time: the most a slow client leaves buffered.
const BATCH: usize = 64;

/// Longest host, module or kind filter a stream accepts.
pub const FILTER_MAX_CHARS: usize = 64;

/// `*` matches any run of characters (linear time: `crate::glob::glob_match`, never a
/// recursive matcher a long run of stars could make exponential).
pub fn wildcard(pattern: &str, text: &str) -> bool {
    crate::glob::glob_match(pattern, text)
}

/// The server-side subject filter `ops.*.<host|*>.<kind|*>` (as `opsctl events`); partial
/// kind patterns and the module are matched here.
pub fn subject_filter(q: &EventsQuery) -> String {
    let host = q
        .host
        .as_deref()
        .filter(|h| opsfleet_proto::subjects::validate_token(h).is_ok())
        .unwrap_or("*");
    let kind = match q.kind.as_deref() {
        Some(k)
            if !k.is_empty()
                && !k.contains('*')
                && opsfleet_proto::subjects::validate_token(k).is_ok() =>
        {
            k
        }
        _ => "*",
    };
    format!("ops.*.{host}.{kind}")
}

pub fn matches(q: &EventsQuery, ev: &EventEnvelope) -> bool {
    let some = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    some(&q.host).is_none_or(|h| h == ev.host)
        && some(&q.module).is_none_or(|m| m == ev.module)
        && some(&q.kind).is_none_or(|k| wildcard(&k, ev.kind()))
}

/// One event as the SSE data line: JSON the page shows through `textContent`.
pub fn event_json(seq: u64, ev: &EventEnvelope) -> String {
    json!({
        "seq": seq,
        "time_unix_ms": ev.time_unix_ms,
        "host": ev.host,
        "module": ev.module,
        "kind": ev.kind(),
    })
    .to_string()
}

pub async fn stream(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Response {
    let Some((session_id, _)) = c.session(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let too_long = [&q.host, &q.module, &q.kind].iter().any(|v| {
        v.as_deref()
            .is_some_and(|v| v.chars().count() > FILTER_MAX_CHARS)
    });
    if too_long {
        return (
            StatusCode::BAD_REQUEST,
            format!("a filter is at most {FILTER_MAX_CHARS} characters"),
        )
            .into_response();
    }
    let Ok(permit) = Arc::clone(&c.streams).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live event streams; try again later",
        )
            .into_response();
    };
    let last_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let stream = match c.js.get_stream(EVENTS_STREAM).await {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    let start_sequence = match last_id {
        Some(id) => id.saturating_add(1),
        None => match stream.get_info().await {
            Ok(info) => info.state.last_sequence + 1,
            Err(e) => return unavailable(&e),
        },
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            name: Some(format!(
                "console-{}-{}",
                c.shared.name,
                uuid::Uuid::now_v7().simple()
            )),
            filter_subject: subject_filter(&q),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
            max_batch: BATCH as i64,
            ..Default::default()
        })
        .await;
    let messages = match consumer {
        Ok(consumer) => match consumer.messages().await {
            Ok(m) => m,
            Err(e) => return unavailable(&e),
        },
        Err(e) => return unavailable(&e),
    };
    let events = messages
        .take_while(|m| futures::future::ready(m.is_ok()))
        .filter_map(move |m| {
            let q = q.clone();
            async move {
                let msg = m.ok()?;
                let seq = msg.info().ok()?.stream_sequence;
                let ev = EventEnvelope::decode(&msg.payload).ok();
                let data = match ev {
                    Some(ev) if matches(&q, &ev) => event_json(seq, &ev),
                    // Not shown, but the id moves on so a reconnect does not read it again.
                    _ => {
                        return Some(Ok::<_, Infallible>(
                            Event::default().id(seq.to_string()).comment("skipped"),
                        ))
                    }
                };
                Some(Ok(Event::default()
                    .id(seq.to_string())
                    .event("ops")
                    .data(data)))
            }
        })
        .map(move |e| {
            let _held = &permit;
            e
        });
    // A tick every keepalive period, so the session is looked at on a quiet stream too: the
    // stream ends at the first event or tick after a logout or the session's expiry.
    let ticks = futures::stream::unfold((), |()| async {
        tokio::time::sleep(KEEPALIVE).await;
        Some((Ok(Event::default().comment("session")), ()))
    });
    let console = Arc::clone(&c);
    let events = with_ticks(events, ticks, move || console.session_alive(&session_id));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEPALIVE))
        .into_response()
}

/// `events` with `ticks` merged in, ending at the first item after `alive()` turns false, and
/// when `events` ends (a consumer error: the browser reconnects with `Last-Event-ID`) — the
/// ticks alone never keep a stream open.
fn with_ticks<I>(
    events: impl futures::Stream<Item = I>,
    ticks: impl futures::Stream<Item = I>,
    alive: impl Fn() -> bool,
) -> impl futures::Stream<Item = I> {
    let events = events
        .map(Some)
        .chain(futures::stream::once(async { None }));
    futures::stream::select(events, ticks.map(Some))
        .take_while(move |item| futures::future::ready(item.is_some() && alive()))
        .filter_map(futures::future::ready)
}

fn unavailable(e: &dyn std::error::Error) -> Response {
    tracing::warn!(error = %opsfleet_report::ErrorChain(e), "console event stream cannot start");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the events stream is not available",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_ends_with_its_events_or_its_session_never_with_the_ticks() {
        let ticks = || futures::stream::repeat(0);
        let out: Vec<i32> = with_ticks(futures::stream::iter([1, 2, 3]), ticks(), || true)
            .collect()
            .await;
        assert_eq!(
            out.iter().filter(|i| **i > 0).copied().collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let none: Vec<i32> = with_ticks(futures::stream::iter([1, 2]), ticks(), || false)
            .collect()
            .await;
        assert!(none.is_empty());
        // A session that ends mid-stream ends it at the next item.
        let left = std::sync::atomic::AtomicUsize::new(3);
        let alive = || left.fetch_sub(1, std::sync::atomic::Ordering::Relaxed) > 0;
        let cut: Vec<i32> = with_ticks(futures::stream::pending(), ticks(), alive)
            .collect()
            .await;
        assert_eq!(cut.len(), 3);
    }

    #[test]
    fn filters_like_opsctl_events() {
        let q = EventsQuery {
            host: Some("web-01".into()),
            module: None,
            kind: Some("backup_*".into()),
        };
        assert_eq!(subject_filter(&q), "ops.*.web-01.*");
        let q2 = EventsQuery {
            host: Some("a.>".into()),
            module: None,
            kind: Some("heartbeat".into()),
        };
        assert_eq!(subject_filter(&q2), "ops.*.*.heartbeat");
        assert!(wildcard("backup_*", "backup_completed"));
        assert!(wildcard("*", "x"));
        assert!(wildcard("*_done", "a_done"));
        assert!(!wildcard("backup_*", "disk_usage"));
        assert!(!wildcard("disk", "disk_usage"));
        // A long run of stars costs linear time, not exponential.
        let evil = format!("{}z", "*".repeat(FILTER_MAX_CHARS - 1));
        let started = std::time::Instant::now();
        for _ in 0..1000 {
            assert!(!wildcard(&evil, "heartbeat_with_a_long_name"));
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
