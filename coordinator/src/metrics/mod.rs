//! The coordinator's `/metrics` (on the `[http]` listener): the whole fleet in the Prometheus
//! text format from one scrape, read from this coordinator's own projection, with its own
//! ingest, store and leadership figures. `render` is pure (fleet, figures, now → text);
//! `streams` reads the streams' positions in the background; `access` says who may read;
//! this file only gathers.
//! Metric by metric: `docs/metrics.md`.

mod access;
mod render;
pub mod streams;
mod text;

pub use access::{Access, TokenError};
pub use render::{render, Process, Streams};
pub use text::CONTENT_TYPE;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::state::Shared;

/// This coordinator's own figures, as they are now.
fn process(shared: &Shared) -> Process<'_> {
    let view = shared.leadership.view();
    let now = tokio::time::Instant::now();
    let read_at = shared.streams.read_at_unix_ms.load(Ordering::Acquire);
    let streams = (read_at > 0).then(|| Streams {
        events_last_seq: shared.streams.events_last_seq.load(Ordering::Relaxed),
        dlq_messages: shared.streams.dlq_messages.load(Ordering::Relaxed),
        read_at_unix_ms: read_at,
    });
    Process {
        coordinator: &shared.name,
        color: &shared.color,
        version: env!("CARGO_PKG_VERSION"),
        active: view.acting_epoch(now).is_some(),
        epoch: view.epoch,
        store_healthy: shared.store_healthy.load(Ordering::Acquire),
        applied_stream_seq: shared.applied(),
        events_applied: shared.events_applied.load(Ordering::Relaxed),
        duplicates: shared.duplicates.load(Ordering::Relaxed),
        malformed_parked: shared.parked.load(Ordering::Relaxed),
        refused_parked: shared.refused.load(Ordering::Relaxed),
        streams,
    }
}

/// The text of one scrape, now.
pub fn scrape(shared: &Shared) -> String {
    let p = process(shared);
    let fleet = shared.fleet();
    render(&fleet, &p, opsfleet_proto::time::now_unix_ms())
}

/// `GET /metrics`: 401 unless `access` allows the request. Rendered off the async workers:
/// a large fleet takes milliseconds.
pub async fn serve(
    State(shared): State<Arc<Shared>>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !access.allows(authorization) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required ([http] metrics_token_file)\n",
        )
            .into_response();
    }
    match tokio::task::spawn_blocking(move || scrape(&shared)).await {
        Ok(body) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %opsfleet_report::ErrorChain(&e), "metrics render failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests;
