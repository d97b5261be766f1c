//! Ingest: a durable pull consumer on `OPS_EVENTS`; each batch is decoded, admitted (who may
//! say what, `admit`), folded, committed to the store in one atomic batch, flushed, and only
//! then acknowledged (AckAll on the last persisted message). Malformed and refused messages are
//! parked on the dead-letter stream (`park`); duplicates are dropped.
//!
//! The cursor is the store's `applied` stream sequence, not the consumer's ack floor: messages
//! handed to a process that died (or to a connection that dropped) stay pending on the server
//! and would be acknowledged implicitly by a later AckAll. So ingest accepts stream sequences
//! only contiguously, and repositions the consumer at `applied + 1` at start and whenever a
//! sequence is skipped. A skip seen right after positioning means those messages are no
//! longer in the stream (expired or deleted) and is accepted with a warning.
//!
//! Projection rows travel only in snapshot commits (`snapshot::SnapshotPolicy`: the first
//! batch, then every N batches or T, and a final one on a clean stop); every other commit holds
//! just the log entries and the applied position. A restart folds the log after the snapshot.

use opsfleet_report::ErrorChain;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use opsfleet_proto::{subjects, EventEnvelope, WireError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::admit;
use crate::config::IngestConfig;
use crate::projection::Verdict;
use crate::snapshot::SnapshotPolicy;
use crate::state::Shared;
use crate::store::{Commit, StoreError};

mod park;
pub use park::Parked;

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
                    tokio::select! {
                        _ = cancel.cancelled() => return true,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
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
                tokio::select! {
                    _ = cancel.cancelled() => return true,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut chunks = messages.ready_chunks(cfg.batch_max);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return true,
                next = chunks.next() => next,
            };
            let Some(items) = next else {
                warn!("consumer stream ended, reopening");
                break;
            };
            let mut batch = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Ok(m) => batch.push(m),
                    // Missed heartbeats and the like: the stream recovers by itself.
                    Err(e) => debug!(error = %ErrorChain(&e), "consumer stream hiccup"),
                }
            }
            if batch.is_empty() {
                continue;
            }
            match persist_batch(shared, js, batch, &mut cursor, cancel, policy).await {
                Outcome::Continue => {}
                Outcome::Reposition => {
                    warn!(
                        next_stream_seq = cursor.next,
                        "stream sequence skipped in flight; repositioning consumer"
                    );
                    break;
                }
                Outcome::Cancelled => return false,
            }
        }
        // Fall through with `consumer == None`: reposition at the cursor.
        drop(chunks);
    }
    true
}

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Continue,
    /// Persisted up to a skipped sequence; the consumer must be repositioned.
    Reposition,
    /// Cancelled before the batch was persisted; nothing was acknowledged.
    Cancelled,
}

/// Folds, parks, commits, flushes and acks the contiguous prefix of one batch.
async fn persist_batch(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    batch: Vec<jetstream::Message>,
    cursor: &mut Cursor,
    cancel: &CancellationToken,
    policy: &mut SnapshotPolicy,
) -> Outcome {
    let mut commit = Commit {
        applied_stream_seq: shared.applied(),
        log: Vec::with_capacity(batch.len()),
        ..Default::default()
    };
    let mut parked = Vec::new();
    let mut duplicates = 0u64;
    let mut outcome = Outcome::Continue;
    // Index of the last message persisted or skipped: the one to acknowledge.
    let mut ack_upto = None;
    {
        let mut fleet = shared.fleet_mut();
        for (i, msg) in batch.iter().enumerate() {
            let Ok(info) = msg.info() else {
                warn!(subject = %msg.subject, "message without JetStream metadata, skipped");
                continue;
            };
            let seq = info.stream_sequence;
            match cursor.step(seq) {
                Step::Skip => {
                    ack_upto = Some(i);
                    continue;
                }
                Step::Take => {}
                Step::TakeAfterHole { first, last } => {
                    warn!(first, last, "stream sequences no longer in the stream (expired or deleted) before this coordinator persisted them");
                }
                Step::Reposition => {
                    outcome = Outcome::Reposition;
                    break;
                }
            }
            ack_upto = Some(i);
            commit.applied_stream_seq = seq;
            let (ev, publisher) = match decode_from(&msg.subject, &msg.payload) {
                Ok(decoded) => decoded,
                Err(bad) => {
                    parked.push(park::Letter::new(msg, seq, Parked::Malformed(bad)));
                    continue;
                }
            };
            // Who may say what: checked against the fold so far, so an event earlier in this
            // batch counts. A refused event is parked and never folded.
            if let Err(refusal) = admit::admit(&fleet, &ev, publisher) {
                parked.push(park::Letter::new(msg, seq, Parked::Refused(refusal)));
                continue;
            }
            match fleet.apply(&ev) {
                Verdict::Accepted { gap } => {
                    if let Some(g) = gap {
                        warn!(host = %ev.host, first = g.first, last = g.last, "seq gap");
                    }
                    // Liveness goes by the bus's clock, not the agent's (which may jump).
                    let arrived = info.published.unix_timestamp_nanos() / 1_000_000;
                    fleet.note_arrival(&ev.host, &ev.module, i64::try_from(arrived).unwrap_or(0));
                    commit.log.push((seq, msg.payload.clone()));
                }
                Verdict::Duplicate => duplicates += 1,
            }
        }
        if policy.due(Instant::now()) {
            commit.rows = fleet.take_dirty_rows();
            commit.snapshot = true;
        }
    }

    park::park_all(js, &shared.name, &parked).await;

    let events = commit.log.len();
    let applied_to = commit.applied_stream_seq;
    let snapshot = commit.snapshot;
    // Shared with each attempt's blocking task: a retry commits the same batch, no copy.
    let commit = Arc::new(commit);
    let mut backoff = Duration::from_millis(100);
    // After an I/O failure the store is reopened before the retry (sled refuses every write
    // after one failed, even once the disk has room again).
    let mut recover_first = false;
    loop {
        let store = Arc::clone(&shared.store);
        let attempt = Arc::clone(&commit);
        let recover = recover_first;
        let result = tokio::task::spawn_blocking(move || {
            if recover {
                store.recover()?;
            }
            store.commit(&attempt)?;
            store.flush()
        })
        .await;
        match result {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                shared.store_healthy.store(false, Ordering::Release);
                recover_first = matches!(e, StoreError::Io { .. } | StoreError::Open { .. });
                error!(error = %ErrorChain(&e), stream_seq = applied_to, "cannot persist batch; not acking, will retry");
            }
            Err(e) => {
                shared.store_healthy.store(false, Ordering::Release);
                error!(error = %ErrorChain(&e), "persist task failed; will retry");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return Outcome::Cancelled,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    if !shared.store_healthy.swap(true, Ordering::AcqRel) {
        info!("store accepts writes again");
    }
    policy.committed(snapshot, Instant::now());
    shared.applied.store(applied_to, Ordering::Release);
    shared.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    let refused = parked
        .iter()
        .filter(|l| matches!(l.why, Parked::Refused(_)))
        .count() as u64;
    shared
        .parked
        .fetch_add(parked.len() as u64 - refused, Ordering::Relaxed);
    shared.refused.fetch_add(refused, Ordering::Relaxed);
    debug!(
        events,
        duplicates,
        parked = parked.len(),
        snapshot,
        stream_seq = applied_to,
        "batch persisted"
    );

    // AckAll: acknowledging the last persisted message acknowledges everything before it,
    // all of which is persisted (the cursor only moves contiguously).
    if let Some(last) = ack_upto.and_then(|i| batch.get(i)) {
        if let Err(e) = last.ack().await {
            // Harmless: the batch is redelivered and skipped by stream sequence.
            warn!(error = %ErrorChain(&*e), "ack failed");
        }
    }
    outcome
}

#[cfg(test)]
mod tests;
