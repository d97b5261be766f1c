//! Ingest: a durable pull consumer on `OPS_EVENTS`; each batch is decoded, admitted (who may
//! say what, `admit`), folded, committed to the store in one atomic batch, flushed, and only
//! then acknowledged (AckAll on the last persisted message, `persist`). While one batch is
//! being committed and flushed the next is folded; commits stay in order. Malformed and refused
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
//! batch, then every N batches or T, and a final one on a clean stop); every other commit holds
//! just the log entries and the applied position. A restart folds the log after the snapshot.

use opsfleet_report::ErrorChain;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
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

/// What ended one consumer stream in `persist_stream`.
enum StreamEnd {
    /// The stream ended or skipped a sequence: reposition the consumer at the cursor.
    Reopen,
    /// Cancelled; `consistent` as `consume` returns it.
    Stopped { consistent: bool },
}

/// A batch whose commit is running (`persist::persist`), polled alongside the next chunk.
type InFlight<'a> = Pin<Box<dyn Future<Output = Result<(), persist::Cancelled>> + Send + 'a>>;

/// Runs the in-flight batch to its end; never resolves when there is none.
async fn in_flight_done(in_flight: &mut Option<InFlight<'_>>) -> Result<(), persist::Cancelled> {
    match in_flight {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Waits for the in-flight batch, if any: whether it was persisted (false: cancelled first).
async fn settle(in_flight: Option<InFlight<'_>>) -> bool {
    match in_flight {
        Some(f) => f.await.is_ok(),
        None => true,
    }
}

/// Makes `next` the batch in flight once the previous one (if any) is persisted, so commits
/// go in order (`next` is a future: nothing of it runs before); false, leaving none in flight,
/// when the previous one was cancelled first.
async fn start_after<'a>(in_flight: &mut Option<InFlight<'a>>, next: InFlight<'a>) -> bool {
    if !settle(in_flight.take()).await {
        return false;
    }
    *in_flight = Some(next);
    true
}

/// `end`, once the in-flight batch (if any) is persisted; if it was cancelled first, stopped
/// with the fold ahead of the store.
async fn end_after(in_flight: Option<InFlight<'_>>, end: StreamEnd) -> StreamEnd {
    if settle(in_flight).await {
        end
    } else {
        StreamEnd::Stopped { consistent: false }
    }
}

/// What woke `persist_stream` up.
enum Wake {
    Cancelled,
    Persisted(Result<(), persist::Cancelled>),
    Chunk(Option<Vec<jetstream::Message>>),
}

/// Persists the batches of one consumer stream, in ready chunks of up to `batch_max`
/// messages, until it ends, skips a sequence or `cancel` fires. One batch is in flight (being
/// committed and flushed) while the next is folded; a batch's commit starts only after the
/// previous one's has finished, and the stream ends only once the in-flight batch has.
async fn persist_stream<E: std::error::Error>(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    messages: impl futures::Stream<Item = Result<jetstream::Message, E>> + Unpin,
    cfg: &IngestConfig,
    cursor: &mut Cursor,
    cancel: &CancellationToken,
    policy: &mut SnapshotPolicy,
) -> StreamEnd {
    let mut chunks = messages.ready_chunks(cfg.batch_max).map(messages_of);
    let mut in_flight: Option<InFlight<'_>> = None;
    // The applied position of the last batch folded (persisted or in flight).
    let mut folded_to = shared.applied();
    loop {
        let wake = tokio::select! {
            _ = cancel.cancelled() => Wake::Cancelled,
            done = in_flight_done(&mut in_flight) => Wake::Persisted(done),
            next = chunks.next() => Wake::Chunk(next),
        };
        let batch = match wake {
            Wake::Cancelled => {
                return end_after(in_flight, StreamEnd::Stopped { consistent: true }).await;
            }
            Wake::Persisted(done) => {
                in_flight = None;
                if done.is_err() {
                    return StreamEnd::Stopped { consistent: false };
                }
                continue;
            }
            Wake::Chunk(None) => {
                warn!("consumer stream ended, reopening");
                return end_after(in_flight, StreamEnd::Reopen).await;
            }
            Wake::Chunk(Some(batch)) => batch,
        };
        if batch.is_empty() {
            continue;
        }
        let (folded, ack) = fold_and_park(shared, js, batch, cursor, folded_to, policy).await;
        folded_to = folded.commit.applied_stream_seq;
        let outcome = folded.outcome;
        let tally = persist::Tally::of(&folded);
        let snapshot = folded.commit.snapshot;
        let next = Box::pin(persist::persist(
            Arc::clone(shared),
            Arc::new(folded.commit),
            tally,
            ack,
            cancel.clone(),
        ));
        if !start_after(&mut in_flight, next).await {
            return StreamEnd::Stopped { consistent: false };
        }
        policy.committed(snapshot, Instant::now());
        if outcome == Outcome::Reposition {
            warn!(
                next_stream_seq = cursor.next,
                "stream sequence skipped in flight; repositioning consumer"
            );
            return end_after(in_flight, StreamEnd::Reopen).await;
        }
    }
}

/// How a batch's fold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Continue,
    /// Folded up to a skipped sequence; the consumer must be repositioned.
    Reposition,
}

/// Folds the contiguous prefix of one batch (`fold::fold_batch`, no I/O) under the fleet's
/// lock, from `applied` (the last stream sequence folded before), adds the changed rows when a
/// snapshot is due, and parks the dead letters. Returns the fold and the message to
/// acknowledge once it is persisted.
async fn fold_and_park(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    batch: Vec<jetstream::Message>,
    cursor: &mut Cursor,
    applied: u64,
    policy: &SnapshotPolicy,
) -> (fold::Folded, Option<jetstream::Message>) {
    let folded = {
        let mut fleet = shared.fleet_mut();
        let mut folded = fold::fold_batch(&mut fleet, &batch, cursor, applied);
        if policy.due(Instant::now()) {
            folded.commit.rows = fleet.take_dirty_rows();
            folded.commit.snapshot = true;
        }
        folded
    };
    park::park_all(js, &shared.name, &folded.parked).await;
    let ack = folded.ack_upto.and_then(|i| batch.into_iter().nth(i));
    (folded, ack)
}

#[cfg(test)]
mod tests;
