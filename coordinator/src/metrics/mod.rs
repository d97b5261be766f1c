//! The coordinator's `/metrics` (on the `[http]` listener): the whole fleet in the Prometheus
//! text format from one scrape, read from this coordinator's own projection, with its own
//! ingest, store and leadership figures. `render` is pure (fleet, figures, now → text);
//! `streams` reads the streams' positions in the background; `access` says who may read,
//! `gzip` packs the text for a scraper that accepts it; this file only gathers.
//! Metric by metric: `docs/metrics.md`.

mod access;
mod gzip;
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

/// Renders that may run at once, across every scraper.
const RENDERS_AT_ONCE: usize = 2;
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(RENDERS_AT_ONCE);

/// The text of one scrape, now.
pub fn scrape(shared: &Shared) -> String {
    let p = process(shared);
    let fleet = shared.fleet();
    render(&fleet, &p, opsfleet_proto::time::now_unix_ms())
}

/// `GET /metrics`: 401 unless `access` allows the request; gzipped when the request accepts
/// it. Rendered off the async workers: a large fleet takes milliseconds.
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
    // At most RENDERS_AT_ONCE renders run (each holds the fleet's read lock and a fleet-sized
    // text); further scrapes wait their turn instead of piling up threads and memory.
    let Ok(_turn) = RENDERS.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let packed = gzip::accepts_gzip(headers.get(header::ACCEPT_ENCODING).map(|v| v.as_bytes()));
    let scraped = tokio::task::spawn_blocking(move || {
        let text = scrape(&shared);
        if !packed {
            return (text.into_bytes(), None);
        }
        match gzip::gzip(&text) {
            Ok(bytes) => (bytes, Some("gzip")),
            Err(e) => {
                tracing::warn!(error = %opsfleet_report::ErrorChain(&e), "cannot gzip metrics; sending them plain");
                (text.into_bytes(), None)
            }
        }
    })
    .await;
    match scraped {
        Ok((body, encoding)) => {
            let mut response = ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response();
            let h = response.headers_mut();
            h.insert(
                header::VARY,
                header::HeaderValue::from_static("accept-encoding"),
            );
            if let Some(e) = encoding {
                h.insert(
                    header::CONTENT_ENCODING,
                    header::HeaderValue::from_static(e),
                );
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %opsfleet_report::ErrorChain(&e), "metrics render failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests;
