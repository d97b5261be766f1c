//! Reading what is in the events stream from outside the coordinators: every event of one host
//! and kind, decoded, in stream order.

use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_proto::{subjects, EventEnvelope};

/// Every event of `host` with `kind` in `OPS_EVENTS` (server at `url`), in stream order.
pub async fn events_of(url: &str, host: &str, kind: &str) -> Result<Vec<EventEnvelope>> {
    let js = jetstream::new(async_nats::connect(url).await?);
    let stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let mut c = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects::event_subject(host, kind),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut left = c.info().await?.num_pending;
    let mut out = Vec::new();
    if left == 0 {
        return Ok(out);
    }
    let mut messages = c.messages().await?;
    while left > 0 {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading the events stream")?
            .context("stream ended")??;
        left = msg.info().map(|i| i.pending).unwrap_or(0);
        out.push(EventEnvelope::decode(&msg.payload)?);
    }
    Ok(out)
}
