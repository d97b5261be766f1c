//! Projection snapshots: when ingest persists the projection rows (`SnapshotPolicy`, pure), and
//! how a coordinator loads them back (`load_fleet`: the stored rows plus a fold of the log
//! entries after the snapshot's position — event sourcing's snapshot + tail replay).
//!
//! The log is the source of truth; the rows only save refolding it. Between two snapshots the
//! rows lag behind the log, never ahead of it: a snapshot is written in the same sled batch as
//! the log entries and applied position it reflects. So after a crash the tail fold rebuilds
//! exactly what the lost in-memory state held, dedup state included.

use std::time::{Duration, Instant};

use opsfleet_proto::{EventEnvelope, WireError};

use crate::projection::{fold_version, Fleet, RowError, FOLD_VERSION};
use crate::store::{EventStore, StoreError};
use tracing::info;

/// Why the persisted state could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the store")]
    Store(#[from] StoreError),
    #[error(
        "stored projection is unreadable; run `ops-coordinator rebuild` to refold it from the log"
    )]
    Rows(#[from] RowError),
    #[error("cannot fold the log after the snapshot")]
    Tail(#[from] TailError),
}

/// Why the log after a snapshot could not be folded.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot read the log")]
    Store(#[from] StoreError),
    #[error("log entry at stream sequence {stream_seq} is not a valid event")]
    Log {
        stream_seq: u64,
        #[source]
        source: WireError,
    },
}

/// A fleet as loaded: rows at `rows_at`, plus `tail` log entries folded on top.
#[derive(Debug)]
pub struct Loaded {
    /// Rows touched by the tail are dirty: the next snapshot writes them.
    pub fleet: Fleet,
    pub rows_at: u64,
    pub tail: u64,
}

/// Loads the stored rows and folds the log entries after their position.
/// Rows written by an older fold (`FOLD_VERSION`) are not loaded: the whole log is refolded
/// and its rows replace them, so what a coordinator serves always equals a refold.
pub fn load_fleet(store: &dyn EventStore) -> Result<Loaded, LoadError> {
    let rows = store.rows()?;
    let version = fold_version(&rows);
    if version < FOLD_VERSION {
        if version > 0 {
            info!(
                stored = version,
                current = FOLD_VERSION,
                "projection rows from an older fold: refolding the log"
            );
        }
        let mut fleet = Fleet::new();
        let tail = fold_into(&mut fleet, store, 0)?;
        store.replace_rows(fleet.stored_rows())?;
        fleet.take_dirty_rows();
        return Ok(Loaded {
            fleet,
            rows_at: store.rows_at()?,
            tail,
        });
    }
    let rows_at = store.rows_at()?;
    let mut fleet = Fleet::from_rows(rows)?;
    let tail = fold_into(&mut fleet, store, rows_at + 1)?;
    Ok(Loaded {
        fleet,
        rows_at,
        tail,
    })
}

/// Folds the log entries with stream_seq >= `from` into `fleet`; returns how many.
pub fn fold_into(fleet: &mut Fleet, store: &dyn EventStore, from: u64) -> Result<u64, TailError> {
    let mut n = 0;
    for entry in store.log_from(from) {
        let (stream_seq, bytes) = entry?;
        let ev = EventEnvelope::decode(&bytes)
            .map_err(|source| TailError::Log { stream_seq, source })?;
        fleet.apply(&ev);
        n += 1;
    }
    Ok(n)
}

/// When ingest writes the dirty rows: on its first batch, then every `every_batches` batches or
/// `interval`, whichever comes first (and on a clean stop, which the caller handles). Pure:
/// the caller passes the clock.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    every_batches: u32,
    interval: Duration,
    batches_since: u32,
    last: Option<Instant>,
}

impl SnapshotPolicy {
    pub fn new(every_batches: u32, interval: Duration) -> Self {
        SnapshotPolicy {
            every_batches: every_batches.max(1),
            interval,
            batches_since: 0,
            last: None,
        }
    }

    /// Should the batch about to be committed carry a snapshot?
    pub fn due(&self, now: Instant) -> bool {
        match self.last {
            None => true,
            Some(last) => {
                self.batches_since + 1 >= self.every_batches
                    || now.saturating_duration_since(last) >= self.interval
            }
        }
    }

    /// Records a committed batch, with or without a snapshot.
    pub fn committed(&mut self, snapshot: bool, now: Instant) {
        if snapshot {
            self.batches_since = 0;
            self.last = Some(now);
        } else {
            self.batches_since += 1;
        }
    }
}

#[cfg(test)]
mod tests;
