//! Ingest's persist stage: commits one folded batch (retried until the store takes it), then
//! publishes the new applied position, counts the batch and acknowledges it. `persist_stream`
//! keeps one such batch in flight while it decodes and folds the next, so the fold of batch
//! N+1 overlaps the flush of batch N; commits still happen one after another, in order, and
//! nothing is acknowledged before the flush that covers it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use opsfleet_report::ErrorChain;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::fold::Folded;
use super::Parked;
use crate::state::Shared;
use crate::store::{Commit, StoreError};

/// What a persisted batch adds to the counters.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    pub events: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub refused: u64,
}

impl Tally {
    pub(super) fn of(folded: &Folded) -> Self {
        let refused = folded
            .parked
            .iter()
            .filter(|l| matches!(l.why, Parked::Refused(_)))
            .count() as u64;
        Tally {
            events: folded.commit.log.len() as u64,
            duplicates: folded.duplicates,
            malformed: folded.parked.len() as u64 - refused,
            refused,
        }
    }

    /// Both tallies together (a group of folded chunks committed as one).
    pub(super) fn add(&mut self, other: Tally) {
        self.events += other.events;
        self.duplicates += other.duplicates;
        self.malformed += other.malformed;
        self.refused += other.refused;
    }

    fn add_to(self, shared: &Shared) {
        shared
            .events_applied
            .fetch_add(self.events, Ordering::Relaxed);
        shared
            .duplicates
            .fetch_add(self.duplicates, Ordering::Relaxed);
        shared.parked.fetch_add(self.malformed, Ordering::Relaxed);
        shared.refused.fetch_add(self.refused, Ordering::Relaxed);
    }
}

/// Cancelled before the commit succeeded (nothing of the batch was acknowledged).
#[derive(Debug)]
pub(super) struct Cancelled;

/// Commits and flushes `commit`, then moves the shared applied position, counts `tally` and
/// acknowledges `ack` (AckAll: the batch's last persisted or skipped message).
pub(super) async fn persist(
    shared: Arc<Shared>,
    commit: Arc<Commit>,
    tally: Tally,
    ack: Option<jetstream::Message>,
    cancel: CancellationToken,
) -> Result<(), Cancelled> {
    commit_until_stored(&shared, Arc::clone(&commit), &cancel).await?;
    shared
        .applied
        .store(commit.applied_stream_seq, Ordering::Release);
    tally.add_to(&shared);
    debug!(
        events = tally.events,
        duplicates = tally.duplicates,
        parked = tally.malformed + tally.refused,
        snapshot = commit.snapshot,
        stream_seq = commit.applied_stream_seq,
        "batch persisted"
    );
    // AckAll: acknowledging the last persisted message acknowledges everything before it,
    // all of which is persisted (the cursor only moves contiguously, batches commit in order).
    if let Some(last) = ack {
        if let Err(e) = last.ack().await {
            // Harmless: the batch is redelivered and skipped by stream sequence.
            warn!(error = %ErrorChain(&*e), "ack failed");
        }
    }
    Ok(())
}

/// Commits and flushes `commit`, retrying with backoff until it succeeds; `Err` when
/// `cancel` fires first (nothing was acknowledged then). After an I/O failure the store is
/// reopened before the retry (sled refuses every write after one failed, even once the disk
/// has room again).
async fn commit_until_stored(
    shared: &Arc<Shared>,
    commit: Arc<Commit>,
    cancel: &CancellationToken,
) -> Result<(), Cancelled> {
    let applied_to = commit.applied_stream_seq;
    let mut backoff = Duration::from_millis(100);
    let mut recover_first = false;
    loop {
        // Shared with each attempt's blocking task: a retry commits the same batch, no copy.
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
            _ = cancel.cancelled() => return Err(Cancelled),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    if !shared.store_healthy.swap(true, Ordering::AcqRel) {
        info!("store accepts writes again");
    }
    Ok(())
}

#[cfg(test)]
#[path = "persist_tests.rs"]
pub(super) mod tests;
