//! In-memory `EventStore` for tests; same contract as the sled store, minus durability.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use super::{Commit, EventStore, LogIter, StoreError};

#[derive(Default)]
struct Inner {
    log: BTreeMap<u64, Vec<u8>>,
    rows: BTreeMap<String, Vec<u8>>,
    applied: u64,
    rows_at: Option<u64>,
    own: Option<(String, u64)>,
}

/// Keeps everything in maps behind a mutex.
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent (every operation is one
        // map call or a validated batch), so poisoning is not an error here.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl EventStore for MemStore {
    fn applied_stream_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock().applied)
    }

    fn log_len(&self) -> Result<u64, StoreError> {
        Ok(self.lock().log.len() as u64)
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if commit.applied_stream_seq < inner.applied {
            return Err(StoreError::Backwards {
                from: inner.applied,
                to: commit.applied_stream_seq,
            });
        }
        inner
            .log
            .extend(commit.log.iter().map(|(s, b)| (*s, b.to_vec())));
        for (key, value) in &commit.rows {
            if value.is_empty() {
                inner.rows.remove(key);
            } else {
                inner.rows.insert(key.clone(), value.clone());
            }
        }
        inner.applied = commit.applied_stream_seq;
        if commit.snapshot {
            inner.rows_at = Some(commit.applied_stream_seq);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn log_from(&self, from: u64) -> LogIter<'_> {
        let entries: Vec<_> = self
            .lock()
            .log
            .range(from..)
            .map(|(k, v)| Ok((*k, v.clone())))
            .collect();
        Box::new(entries.into_iter())
    }

    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .lock()
            .rows
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn rows_at(&self) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner.rows_at.unwrap_or(inner.applied))
    }

    fn replace_rows(&self, rows: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.rows = rows.into_iter().collect();
        inner.rows_at = Some(inner.applied);
        Ok(())
    }

    fn reserve_own_seqs(&self, n: u64) -> Result<(String, u64), StoreError> {
        let mut inner = self.lock();
        let (inc, next) = inner
            .own
            .get_or_insert_with(|| (uuid::Uuid::now_v7().to_string(), 1));
        let first = *next;
        *next += n;
        Ok((inc.clone(), first))
    }
}
