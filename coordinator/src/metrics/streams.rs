//! The streams' positions for `/metrics`: every few seconds, `OPS_EVENTS`' last sequence (the
//! ingest lag is it minus the applied sequence) and the messages in `OPS_DLQ`, kept in
//! `Shared::streams` so a scrape reads memory only. A failed reading keeps the last one (its
//! age shows in `opsfleet_ingest_stream_read_age_seconds`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream;
use opsfleet_report::ErrorChain;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::state::Shared;

/// How often the streams are read.
pub const READ_EVERY: Duration = Duration::from_secs(5);

/// Reads both streams every `READ_EVERY` until `cancel`.
pub async fn watch(
    shared: Arc<Shared>,
    events: stream::Stream,
    dlq: stream::Stream,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(READ_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (events_info, dlq_info) = tokio::join!(events.get_info(), dlq.get_info());
        let (events_info, dlq_info) = match (events_info, dlq_info) {
            (Ok(e), Ok(d)) => (e.state.last_sequence, d.state.messages),
            (Err(e), _) | (_, Err(e)) => {
                debug!(error = %ErrorChain(&e), "cannot read the streams for /metrics");
                continue;
            }
        };
        let reading = &shared.streams;
        reading
            .events_last_seq
            .store(events_info, Ordering::Relaxed);
        reading.dlq_messages.store(dlq_info, Ordering::Relaxed);
        let now = opsfleet_proto::time::now_unix_ms();
        reading.read_at_unix_ms.store(now, Ordering::Release);
    }
}
