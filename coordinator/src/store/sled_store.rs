//! sled-backed `EventStore`: one tree, keys `s/<first stream seq BE>` (log segments, see
//! `segment`), `p/<row key>` (projection rows), `m/applied`, `m/rows_at`, `m/log_len` and
//! `m/format` (meta), so that one `sled::Batch` commits a whole ingest step atomically: the
//! batch's events as a few segment values, not one B-tree entry per event. Stores written
//! before segments are converted on open (`migrate`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::migrate;
use super::segment::{key_seq, put_segments, seq_key, Segment, SEGMENT};
use super::{Commit, EventStore, LogIter, StoreError};
const ROW: &[u8] = b"p/";
const APPLIED: &[u8] = b"m/applied";
const LOG_LEN: &[u8] = b"m/log_len";
const ROWS_AT: &[u8] = b"m/rows_at";
const OWN_INCARNATION: &[u8] = b"m/own_incarnation";
const OWN_NEXT_SEQ: &[u8] = b"m/own_next_seq";

/// The coordinator's durable replica, in `data_dir/coordinator.sled`.
pub struct SledStore {
    path: PathBuf,
    /// Replaced by `recover`: after a failed write (full or read-only disk) sled 0.34 refuses
    /// every later operation, so the way back is a fresh handle that re-reads what is durable.
    /// `None` only between dropping a failed handle and opening its replacement.
    db: RwLock<Option<sled::Db>>,
    /// Cached `m/log_len`; only `commit` changes it and commits are serialised by the caller.
    log_len: AtomicU64,
}

/// The entries of the segment stored under `k` with seq >= `from`, owned.
fn segment_entries(k: &[u8], v: &[u8], from: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let first = key_seq(k)?;
    let seg = Segment::parse(v, first).map_err(|why| StoreError::Corrupt {
        what: "log segment",
        key: format!("s/{first} ({why})"),
    })?;
    Ok(seg
        .entries()
        .filter(|(seq, _)| *seq >= from)
        .map(|(seq, b)| (seq, b.to_vec()))
        .collect())
}

/// Refuses the segment under `k` when its first entry is not above `last` (the previous
/// segment's last seq).
fn ascending_after(
    last: Option<u64>,
    k: &[u8],
    entries: &[(u64, Vec<u8>)],
) -> Result<(), StoreError> {
    match (last, entries.first()) {
        (Some(last), Some((first, _))) if *first <= last => Err(StoreError::Corrupt {
            what: "log segment order",
            key: format!("s/{} (seq {first} after {last})", key_seq(k)?),
        }),
        _ => Ok(()),
    }
}

fn row_key(key: &str) -> Vec<u8> {
    [ROW, key.as_bytes()].concat()
}

fn read_u64(db: &sled::Db, key: &'static [u8]) -> Result<u64, StoreError> {
    Ok(read_opt_u64(db, key)?.unwrap_or(0))
}

fn read_opt_u64(db: &sled::Db, key: &'static [u8]) -> Result<Option<u64>, StoreError> {
    match db.get(key).map_err(|source| StoreError::Io {
        op: "read meta",
        source,
    })? {
        None => Ok(None),
        Some(v) => {
            let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "meta counter",
                key: String::from_utf8_lossy(key).into_owned(),
            })?;
            Ok(Some(u64::from_be_bytes(bytes)))
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Self::open_db(path)?;
        migrate::to_segments(&db, path)?;
        let log_len = read_u64(&db, LOG_LEN)?;
        Ok(SledStore {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            log_len: AtomicU64::new(log_len),
        })
    }

    /// The current handle (a cheap clone of sled's `Arc`).
    fn db(&self) -> Result<sled::Db, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Io {
                op: "use store",
                source: sled::Error::Unsupported(format!(
                    "store {} is closed after a failed reopen",
                    self.path.display()
                )),
            })
    }

    fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
        // sled 0.34 releases its file lock when its background flusher lets go of the
        // database, shortly after the last handle is dropped: a reopen in the same process
        // waits up to 2 s for that. A lock that is really held is still `Locked`.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let db = loop {
            let opened = sled::Config::new()
                .path(path)
                .cache_capacity(256 * 1024 * 1024)
                .open()
                .map_err(|source| match &source {
                    // sled 0.34 reports a held file lock as `Other` with this text.
                    sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                        StoreError::Locked {
                            path: path.to_path_buf(),
                        }
                    }
                    _ => StoreError::Open {
                        path: path.to_path_buf(),
                        source,
                    },
                });
            match opened {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        };
        Ok(db)
    }

    /// Where a coordinator with this data dir keeps its store.
    pub fn path_in(data_dir: &Path) -> PathBuf {
        data_dir.join("coordinator.sled")
    }
}

impl EventStore for SledStore {
    fn applied_stream_seq(&self) -> Result<u64, StoreError> {
        read_u64(&self.db()?, APPLIED)
    }

    fn log_len(&self) -> Result<u64, StoreError> {
        Ok(self.log_len.load(Ordering::Acquire))
    }

    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let db = self.db()?;
        let applied = read_u64(&db, APPLIED)?;
        if commit.applied_stream_seq < applied {
            return Err(StoreError::Backwards {
                from: applied,
                to: commit.applied_stream_seq,
            });
        }
        let mut batch = sled::Batch::default();
        // Every stored entry is at or below `applied` (they move in the same batch), so an
        // entry above it is new and one at or below it is a re-commit (a retry after a failed
        // flush) of bytes already stored: skipped, so it is neither stored nor counted twice.
        // No read per entry.
        let fresh = &commit.log[commit.log.partition_point(|(seq, _)| *seq <= applied)..];
        let added = fresh.len() as u64;
        put_segments(&mut batch, fresh);
        for (key, value) in &commit.rows {
            if value.is_empty() {
                batch.remove(row_key(key));
            } else {
                batch.insert(row_key(key), value.as_slice());
            }
        }
        if commit.snapshot {
            batch.insert(ROWS_AT, &commit.applied_stream_seq.to_be_bytes()[..]);
        }
        let new_len = self.log_len.load(Ordering::Acquire) + added;
        batch.insert(APPLIED, &commit.applied_stream_seq.to_be_bytes()[..]);
        batch.insert(LOG_LEN, &new_len.to_be_bytes()[..]);
        db.apply_batch(batch).map_err(|source| StoreError::Io {
            op: "commit",
            source,
        })?;
        self.log_len.store(new_len, Ordering::Release);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db()?
            .flush()
            .map(|_| ())
            .map_err(|source| StoreError::Io {
                op: "flush",
                source,
            })
    }

    fn log_from(&self, from: u64) -> LogIter<'_> {
        let scan = |source| StoreError::Io {
            op: "scan log",
            source,
        };
        let db = match self.db() {
            Ok(db) => db,
            Err(e) => return Box::new(std::iter::once(Err(e))),
        };
        // `from` may fall inside a segment: start at the last one that begins at or below it.
        let first = seq_key(SEGMENT, 0);
        let start = match db.range(first..=seq_key(SEGMENT, from)).next_back() {
            None => seq_key(SEGMENT, from),
            Some(Ok((k, _))) => match key_seq(&k) {
                Ok(seq) => seq_key(SEGMENT, seq),
                Err(e) => return Box::new(std::iter::once(Err(e))),
            },
            Some(Err(source)) => return Box::new(std::iter::once(Err(scan(source)))),
        };
        // Segments never overlap: a seq at or below the previous segment's last one is refused.
        let mut last: Option<u64> = None;
        let iter = db
            .range(start..=seq_key(SEGMENT, u64::MAX))
            .flat_map(move |item| {
                let entries = item.map_err(scan).and_then(|(k, v)| {
                    let entries = segment_entries(&k, &v, from)?;
                    ascending_after(last, &k, &entries)?;
                    last = entries.last().map(|(seq, _)| *seq).or(last);
                    Ok(entries)
                });
                let (ok, err) = match entries {
                    Ok(entries) => (entries, None),
                    Err(e) => (Vec::new(), Some(Err(e))),
                };
                ok.into_iter().map(Ok).chain(err)
            });
        Box::new(iter)
    }

    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.db()?
            .scan_prefix(ROW)
            .map(|item| {
                let (k, v) = item.map_err(|source| StoreError::Io {
                    op: "scan rows",
                    source,
                })?;
                let key = std::str::from_utf8(&k[ROW.len()..])
                    .map_err(|_| StoreError::Corrupt {
                        what: "row key",
                        key: format!("{k:?}"),
                    })?
                    .to_owned();
                Ok((key, v.to_vec()))
            })
            .collect()
    }

    fn rows_at(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        match read_opt_u64(&db, ROWS_AT)? {
            Some(at) => Ok(at),
            None => read_u64(&db, APPLIED),
        }
    }

    fn reserve_own_seqs(&self, n: u64) -> Result<(String, u64), StoreError> {
        let io = |op| move |source| StoreError::Io { op, source };
        let db = self.db()?;
        let incarnation = match db.get(OWN_INCARNATION).map_err(io("read meta"))? {
            Some(v) => String::from_utf8(v.to_vec()).map_err(|_| StoreError::Corrupt {
                what: "own incarnation",
                key: "m/own_incarnation".to_owned(),
            })?,
            None => {
                let inc = uuid::Uuid::now_v7().to_string();
                db.insert(OWN_INCARNATION, inc.as_bytes())
                    .map_err(io("write meta"))?;
                inc
            }
        };
        let next = read_u64(&db, OWN_NEXT_SEQ)?.max(1);
        db.insert(OWN_NEXT_SEQ, &(next + n).to_be_bytes()[..])
            .map_err(io("write meta"))?;
        self.flush()?;
        Ok((incarnation, next))
    }

    fn recover(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Let go of the failed handle first: sled holds a file lock until it is dropped
        // (`open_db` waits for its flusher to release it).
        drop(slot.take());
        let db = Self::open_db(&self.path)?;
        // What survived is what was flushed; un-flushed commits are gone, and so is their
        // share of the cached log length.
        self.log_len
            .store(read_u64(&db, LOG_LEN)?, Ordering::Release);
        *slot = Some(db);
        Ok(())
    }

    fn replace_rows(&self, rows: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut batch = sled::Batch::default();
        for item in db.scan_prefix(ROW).keys() {
            let key = item.map_err(|source| StoreError::Io {
                op: "scan rows",
                source,
            })?;
            batch.remove(key);
        }
        for (key, value) in rows {
            batch.insert(row_key(&key), value);
        }
        batch.insert(ROWS_AT, &read_u64(&db, APPLIED)?.to_be_bytes()[..]);
        db.apply_batch(batch).map_err(|source| StoreError::Io {
            op: "replace rows",
            source,
        })?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::segment::encode;

    #[test]
    fn overlapping_segments_are_refused_not_read_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        {
            let db = sled::open(&path).unwrap();
            let run = |seqs: std::ops::RangeInclusive<u64>| {
                encode(&seqs.map(|s| (s, vec![s as u8])).collect::<Vec<_>>())
            };
            db.insert(&seq_key(SEGMENT, 1)[..], run(1..=10)).unwrap();
            db.insert(&seq_key(SEGMENT, 5)[..], run(5..=8)).unwrap();
            db.flush().unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        let read: Vec<_> = store.log_from(0).collect();
        assert_eq!(read.len(), 11, "ten entries, then the refusal");
        assert!(read[..10].iter().all(Result::is_ok));
        assert!(
            matches!(
                read[10],
                Err(StoreError::Corrupt {
                    what: "log segment order",
                    ..
                })
            ),
            "{:?}",
            read[10]
        );
    }
}
