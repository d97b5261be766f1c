//! Ingest: a durable pull consumer on `OPS_EVENTS`; each batch is decoded, admitted (who may
//! say what, `admit`), folded, committed to the store in one atomic batch, flushed, and only
//! then acknowledged (AckAll on the last persisted message, `persist`). While one commit is
//! being written and flushed, the chunks that arrive are folded and gathered into the next
//! (group commit, `pipeline`); commits stay in order. Malformed and refused
//! messages are parked on the dead-letter stream (`park`); duplicates are dropped.
//!
//! The cursor is the store's `applied` stream sequence, not the consumer's ack floor: messages
//! handed to a process that died (or to a connection that dropped) stay pending on the server
//! and would be acknowledged implicitly by a later AckAll. So ingest accepts stream sequences
//! only contiguously, and repositions the consumer at `applied + 1` at start and whenever a
//! sequence is skipped. A skip seen right after positioning means those messages are no
//! longer in the stream (expired or deleted) and is accepted with a warning.
//!
//! Projection rows travel only in snapshot commits (`snapshot::SnapshotPolicy`: the first
//! commit, then every N commits or T, and a final one on a clean stop); every other commit holds
//! just the log entries and the applied position. A restart folds the log after the snapshot.

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use opsfleet_proto::{subjects, EventEnvelope, WireError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::IngestConfig;
use crate::snapshot::SnapshotPolicy;
use crate::state::Shared;
use crate::store::Commit;

mod fold;
mod park;
mod persist;
mod pipeline;
pub use park::Parked;
#[cfg(test)]
use pipeline::{end_after, in_flight_done, start_after, InFlight};
use pipeline::{persist_stream, StreamEnd};

/// Why a message is not an event at all (parked like a refused one).
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("invalid event")]
    Wire(#[from] WireError),
    #[error("subject {subject} does not match the event (host {host}, kind {kind})")]
    SubjectMismatch {
        subject: String,
        host: String,
        kind: &'static str,
    },
}

impl Malformed {
    pub fn reason(&self) -> &'static str {
        match self {
            Malformed::Wire(e) => e.reason(),
            Malformed::SubjectMismatch { .. } => "subject_mismatch",
        }
    }
}

/// Decodes one message and checks that its subject (an agent's `ops.evt.<host>.<kind>` or a
/// coordinator's `ops.coord.<name>.<kind>`) names the same host and kind.
pub fn decode_checked(subject: &str, payload: &[u8]) -> Result<EventEnvelope, Malformed> {
    decode_from(subject, payload).map(|(ev, _)| ev)
}

/// `decode_checked`, also returning who published it as the subject says.
pub fn decode_from<'s>(
    subject: &'s str,
    payload: &[u8],
) -> Result<(EventEnvelope, subjects::Publisher<'s>), Malformed> {
    use subjects::Publisher;
    let ev = EventEnvelope::decode(payload)?;
    let publisher = subjects::parse_any_event_subject(subject);
    let names_it = match publisher {
        Some(Publisher::Agent { host, kind } | Publisher::Coordinator { name: host, kind }) => {
            host == ev.host && kind == ev.kind()
        }
        None => false,
    };
    match publisher {
        Some(p) if names_it => Ok((ev, p)),
        _ => Err(Malformed::SubjectMismatch {
            subject: subject.to_owned(),
            host: ev.host.clone(),
            kind: ev.kind(),
        }),
    }
}

/// Errors that stop ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot create or open consumer {consumer} on {stream}")]
    Consumer {
        stream: &'static str,
        consumer: String,
        #[source]
        source: async_nats::Error,
    },
}

/// (Re)creates this coordinator's durable consumer so that it delivers from stream sequence
/// `start` on, whatever it had delivered before.
pub async fn position_consumer(
    events: &stream::Stream,
    name: &str,
    cfg: &IngestConfig,
    start: u64,
) -> Result<consumer::PullConsumer, IngestError> {
    let durable = subjects::coordinator_consumer(name);
    let err = |e: async_nats::Error| IngestError::Consumer {
        stream: subjects::EVENTS_STREAM,
        consumer: durable.clone(),
        source: e,
    };
    // A consumer's start position cannot be updated in place.
    if events.consumer_info(&durable).await.is_ok() {
        events
            .delete_consumer(&durable)
            .await
            .map_err(|e| err(e.into()))?;
    }
    let deliver_policy = if start <= 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: start,
        }
    };
    events
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.clone()),
            description: Some(format!("opsfleet coordinator {name}")),
            ack_policy: consumer::AckPolicy::All,
            ack_wait: cfg.ack_wait,
            deliver_policy,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.into()))
}

/// Where ingest stands: the next stream sequence it will accept, and whether the consumer was
/// just positioned there (so that a skip in what it delivers first is a real hole in the
/// stream, not a message lost in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub next: u64,
    pub fresh: bool,
}

/// What to do with one delivered stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Already persisted (a redelivery): skip.
    Skip,
    /// The next one: take it.
    Take,
    /// The first delivery after positioning skipped `first..=last`: those messages are gone
    /// from the stream. Take this one.
    TakeAfterHole { first: u64, last: u64 },
    /// Something before this one was lost in flight: stop and reposition.
    Reposition,
}

impl Cursor {
    /// Decides about stream sequence `seq` and advances the cursor accordingly. Pure.
    pub fn step(&mut self, seq: u64) -> Step {
        let fresh = std::mem::replace(&mut self.fresh, false);
        if seq < self.next {
            self.fresh = fresh;
            return Step::Skip;
        }
        if seq == self.next {
            self.next += 1;
            return Step::Take;
        }
        if fresh {
            let hole = Step::TakeAfterHole {
                first: self.next,
                last: seq - 1,
            };
            self.next = seq + 1;
            return hole;
        }
        self.fresh = fresh;
        Step::Reposition
    }
}

/// Consumes until `cancel` fires. Never returns an error for a passing fault: the consumer is
/// repositioned and re-opened with backoff, and a failing store is retried until it accepts the
/// batch (without acking meanwhile, so nothing is lost). On the way out it writes a final
/// snapshot of the rows, unless the fold is ahead of the store (cancelled mid-retry).
pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    events: stream::Stream,
    cfg: IngestConfig,
    cancel: CancellationToken,
) {
    let mut policy = SnapshotPolicy::new(cfg.snapshot_batches, cfg.snapshot_interval);
    if consume(&shared, &js, &events, &cfg, &cancel, &mut policy).await {
        final_snapshot(&shared).await;
    }
}

/// Writes every dirty row as a snapshot at the applied position. A failure costs only a longer
/// tail fold at the next start.
async fn final_snapshot(shared: &Arc<Shared>) {
    let rows = shared.fleet_mut().take_dirty_rows();
    let commit = Commit {
        log: Vec::new(),
        rows,
        applied_stream_seq: shared.applied(),
        snapshot: true,
    };
    let applied = commit.applied_stream_seq;
    let rows = commit.rows.len();
    let store = Arc::clone(&shared.store);
    let result = tokio::task::spawn_blocking(move || {
        store.commit(&commit)?;
        store.flush()
    })
    .await;
    match result {
        Ok(Ok(())) => info!(rows, stream_seq = applied, "final snapshot written"),
        Ok(Err(e)) => {
            warn!(error = %ErrorChain(&e), "cannot write the final snapshot; the next start folds the log tail")
        }
        Err(e) => warn!(error = %ErrorChain(&e), "final snapshot task failed"),
    }
}

/// Sleeps `backoff` (then doubles it, up to 2 s) unless `cancel` fires first: false then.
async fn back_off(cancel: &CancellationToken, backoff: &mut Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => return false,
        _ = tokio::time::sleep(*backoff) => {}
    }
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    true
}

/// The messages of one ready chunk; errors (missed heartbeats and the like) are skipped: the
/// stream recovers by itself.
fn messages_of<E: std::error::Error>(
    items: Vec<Result<jetstream::Message, E>>,
) -> Vec<jetstream::Message> {
    let mut batch = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Ok(m) => batch.push(m),
            Err(e) => debug!(error = %ErrorChain(&e), "consumer stream hiccup"),
        }
    }
    batch
}

/// The consume loop of `run`. Returns whether the in-memory fold equals what is persisted
/// (false when cancelled while a batch was folded but not yet committed).
async fn consume(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    events: &stream::Stream,
    cfg: &IngestConfig,
    cancel: &CancellationToken,
    policy: &mut SnapshotPolicy,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    let mut cursor = Cursor {
        next: shared.applied() + 1,
        fresh: true,
    };
    let mut consumer: Option<consumer::PullConsumer> = None;
    while !cancel.is_cancelled() {
        let current = match consumer.take() {
            Some(c) => c,
            None => match position_consumer(events, &shared.name, cfg, cursor.next).await {
                Ok(c) => {
                    cursor.fresh = true;
                    info!(coordinator = %shared.name, from_stream_seq = cursor.next, "consumer positioned");
                    c
                }
                Err(e) => {
                    warn!(error = %ErrorChain(&e), "cannot position consumer, retrying");
                    if !back_off(cancel, &mut backoff).await {
                        return true;
                    }
                    continue;
                }
            },
        };
        let messages = current
            .stream()
            .max_messages_per_batch(cfg.batch_max)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %ErrorChain(&e), "cannot open consumer stream, retrying");
                consumer = Some(current);
                if !back_off(cancel, &mut backoff).await {
                    return true;
                }
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        match persist_stream(shared, js, messages, cfg, &mut cursor, cancel, policy).await {
            // Go round with `consumer == None`: reposition at the cursor.
            StreamEnd::Reopen => {}
            StreamEnd::Stopped { consistent } => return consistent,
        }
    }
    true
}

#[cfg(test)]
mod tests;
