//! Ingest's pipeline over one consumer stream: chunks are folded as they arrive, and handed to
//! the persist stage one commit at a time, in order. While a commit is in flight (being
//! written and flushed), the chunks that arrive are folded and gathered into the next commit
//! (group commit), so the number of flushes adapts to the disk's latency instead of costing
//! one per consumer batch; each group's acknowledgement still waits for its own flush.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{fold, messages_of, park, persist, Cursor};
use crate::config::IngestConfig;
use crate::snapshot::SnapshotPolicy;
use crate::state::Shared;
use crate::store::Commit;

/// A group is handed over (waiting for the commit in flight) once it holds this many consumer
/// batches' worth of messages: a disk that stalls holds back ingest instead of memory growing.
pub(super) const GROUP_BATCHES: usize = 16;

/// What ended one consumer stream in `persist_stream`.
pub(super) enum StreamEnd {
    /// The stream ended or skipped a sequence: reposition the consumer at the cursor.
    Reopen,
    /// Cancelled; `consistent` as `consume` returns it.
    Stopped { consistent: bool },
}

/// A batch whose commit is running (`persist::persist`), polled alongside the next chunk.
pub(super) type InFlight<'a> =
    Pin<Box<dyn Future<Output = Result<(), persist::Cancelled>> + Send + 'a>>;

/// Runs the in-flight batch to its end; never resolves when there is none.
pub(super) async fn in_flight_done(
    in_flight: &mut Option<InFlight<'_>>,
) -> Result<(), persist::Cancelled> {
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
pub(super) async fn start_after<'a>(
    in_flight: &mut Option<InFlight<'a>>,
    next: InFlight<'a>,
) -> bool {
    if !settle(in_flight.take()).await {
        return false;
    }
    *in_flight = Some(next);
    true
}

/// `end`, once the in-flight batch (if any) is persisted; if it was cancelled first, stopped
/// with the fold ahead of the store.
pub(super) async fn end_after(in_flight: Option<InFlight<'_>>, end: StreamEnd) -> StreamEnd {
    if settle(in_flight).await {
        end
    } else {
        StreamEnd::Stopped { consistent: false }
    }
}

/// Folded chunks not handed to the persist stage yet: one commit (their log entries, in
/// stream order, up to the last one's applied sequence), what it adds to the counters, and
/// the last message to acknowledge once it is flushed (AckAll covers the ones before).
pub(super) struct Group {
    pub commit: Commit,
    pub tally: persist::Tally,
    pub ack: Option<jetstream::Message>,
    /// Messages of the chunks gathered (for the `GROUP_BATCHES` bound).
    pub messages: usize,
}

impl Group {
    /// A group of one folded chunk of `messages` messages.
    pub(super) fn of(
        folded: fold::Folded,
        ack: Option<jetstream::Message>,
        messages: usize,
    ) -> Self {
        let tally = persist::Tally::of(&folded);
        Group {
            commit: folded.commit,
            tally,
            ack,
            messages,
        }
    }

    /// Adds the next folded chunk (folded after everything in this group).
    pub(super) fn absorb(
        &mut self,
        folded: fold::Folded,
        ack: Option<jetstream::Message>,
        messages: usize,
    ) {
        self.tally.add(persist::Tally::of(&folded));
        let mut commit = folded.commit;
        self.commit.log.append(&mut commit.log);
        self.commit.applied_stream_seq = commit.applied_stream_seq;
        if ack.is_some() {
            self.ack = ack;
        }
        self.messages += messages;
    }
}

/// The persist future of `group`. The projection rows go with it when a snapshot is due:
/// taken now, when the fleet's fold has reached exactly the group's last event (chunks are
/// folded only by this pipeline, after their group's predecessors), so they reflect the log
/// up to the group's applied sequence and no further.
fn hand_over(
    shared: &Arc<Shared>,
    group: Group,
    policy: &mut SnapshotPolicy,
    cancel: &CancellationToken,
) -> InFlight<'static> {
    let mut commit = group.commit;
    let now = Instant::now();
    if policy.due(now) {
        commit.rows = shared.fleet_mut().take_dirty_rows();
        commit.snapshot = true;
    }
    policy.committed(commit.snapshot, now);
    Box::pin(persist::persist(
        Arc::clone(shared),
        Arc::new(commit),
        group.tally,
        group.ack,
        cancel.clone(),
    ))
}

/// Hands `group` (if any) over once the batch in flight is persisted; false when that one was
/// cancelled first (the group is dropped unacknowledged: the fold is ahead of the store).
async fn hand_over_after(
    shared: &Arc<Shared>,
    in_flight: &mut Option<InFlight<'static>>,
    group: &mut Option<Group>,
    policy: &mut SnapshotPolicy,
    cancel: &CancellationToken,
) -> bool {
    match group.take() {
        Some(g) => start_after(in_flight, hand_over(shared, g, policy, cancel)).await,
        None => true,
    }
}

/// What woke `persist_stream` up.
enum Wake {
    Cancelled,
    Persisted(Result<(), persist::Cancelled>),
    Chunk(Option<Vec<jetstream::Message>>),
}

/// Persists the chunks of one consumer stream (ready chunks of up to `batch_max` messages)
/// until it ends, skips a sequence or `cancel` fires. One commit is in flight at a time; the
/// chunks folded meanwhile form the next one (`Group`), handed over as soon as the one in
/// flight is persisted, or awaited for once it holds `GROUP_BATCHES` batches. Whatever ends
/// the stream, the folded chunks are persisted first (or the stream ends inconsistent).
pub(super) async fn persist_stream<E: std::error::Error>(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    messages: impl futures::Stream<Item = Result<jetstream::Message, E>> + Unpin,
    cfg: &IngestConfig,
    cursor: &mut Cursor,
    cancel: &CancellationToken,
    policy: &mut SnapshotPolicy,
) -> StreamEnd {
    let mut chunks = messages.ready_chunks(cfg.batch_max).map(messages_of);
    let mut in_flight: Option<InFlight<'static>> = None;
    let mut group: Option<Group> = None;
    let group_max = cfg.batch_max.saturating_mul(GROUP_BATCHES);
    // The applied position of the last chunk folded (persisted, in flight or in the group).
    let mut folded_to = shared.applied();
    loop {
        let wake = tokio::select! {
            _ = cancel.cancelled() => Wake::Cancelled,
            done = in_flight_done(&mut in_flight) => Wake::Persisted(done),
            next = chunks.next() => Wake::Chunk(next),
        };
        let end = match wake {
            Wake::Cancelled => StreamEnd::Stopped { consistent: true },
            Wake::Persisted(done) => {
                in_flight = None;
                if done.is_err() {
                    return StreamEnd::Stopped { consistent: false };
                }
                if let Some(g) = group.take() {
                    in_flight = Some(hand_over(shared, g, policy, cancel));
                }
                continue;
            }
            Wake::Chunk(None) => {
                warn!("consumer stream ended, reopening");
                StreamEnd::Reopen
            }
            Wake::Chunk(Some(batch)) => {
                if batch.is_empty() {
                    continue;
                }
                let messages = batch.len();
                let (folded, ack) = fold_and_park(shared, js, batch, cursor, folded_to).await;
                folded_to = folded.commit.applied_stream_seq;
                let outcome = folded.outcome;
                match group.as_mut() {
                    Some(g) => g.absorb(folded, ack, messages),
                    None => group = Some(Group::of(folded, ack, messages)),
                }
                let full = group.as_ref().is_some_and(|g| g.messages >= group_max);
                if (in_flight.is_none() || full)
                    && !hand_over_after(shared, &mut in_flight, &mut group, policy, cancel).await
                {
                    return StreamEnd::Stopped { consistent: false };
                }
                if outcome != Outcome::Reposition {
                    continue;
                }
                warn!(
                    next_stream_seq = cursor.next,
                    "stream sequence skipped in flight; repositioning consumer"
                );
                StreamEnd::Reopen
            }
        };
        // The stream ends: what was folded is persisted first.
        if !hand_over_after(shared, &mut in_flight, &mut group, policy, cancel).await {
            return StreamEnd::Stopped { consistent: false };
        }
        return end_after(in_flight, end).await;
    }
}

/// How a chunk's fold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Continue,
    /// Folded up to a skipped sequence; the consumer must be repositioned.
    Reposition,
}

/// Folds the contiguous prefix of one chunk (`fold::fold_batch`, no I/O) under the fleet's
/// lock, from `applied` (the last stream sequence folded before), and parks the dead letters.
/// Returns the fold and the message to acknowledge once it is persisted.
async fn fold_and_park(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    batch: Vec<jetstream::Message>,
    cursor: &mut Cursor,
    applied: u64,
) -> (fold::Folded, Option<jetstream::Message>) {
    let folded = {
        let mut fleet = shared.fleet_mut();
        fold::fold_batch(&mut fleet, &batch, cursor, applied)
    };
    park::park_all(js, &shared.name, &folded.parked).await;
    let ack = folded.ack_upto.and_then(|i| batch.into_iter().nth(i));
    (folded, ack)
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
