//! The sled store's on-disk format version (`m/format`) and the conversion of stores written
//! before log segments (format 1: one `l/<stream seq BE>` entry per event) into segments.
//!
//! The conversion runs on open, before anything reads the log, in bounded steps: each step
//! moves the lowest `STEP_ENTRIES` per-event entries into segments and deletes them in the
//! same atomic `sled::Batch`, so a crash at any point leaves every entry exactly once (in a
//! segment or still per-event) and the next open carries on. A store of a newer format than
//! this code knows is refused with `StoreError::Format`, never read.
//!
//! A converted store (and every store marked format 2) holds `LEGACY_GUARD`, a malformed
//! per-event key that sorts after every real `l/<seq>` and inside the range a coordinator built
//! before segments reads its log from: such a coordinator fails on it with a corrupt "log key"
//! instead of folding an empty log over the segments it cannot see.

use std::path::Path;

use tracing::{info, warn};

use super::segment::{key_seq, put_segments, seq_key, Segment, SEGMENT};
use super::StoreError;

/// The format this code writes: 2 = log segments.
pub(super) const FORMAT: u64 = 2;
const FORMAT_KEY: &[u8] = b"m/format";
/// Per-event log entries of format 1.
const LEGACY_LOG: &[u8] = b"l/";
/// `l/` then seven `0xff`: after every `l/<seq>` (8-byte BE seq) below 2^64 - 256, and before
/// `l/` then eight `0xff`, the end of the range the per-event code scans its log in. Its seq
/// does not parse (7 bytes), so that code refuses the store.
pub(super) const LEGACY_GUARD: &[u8] = b"l/\xff\xff\xff\xff\xff\xff\xff";
/// Entries moved per atomic step.
const STEP_ENTRIES: usize = 4096;
/// Steps between two progress lines while converting.
const PROGRESS_STEPS: usize = 64;

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

/// Brings the store at `path` to `FORMAT` (converting per-event entries, flushed) or refuses
/// it. Also converts per-event entries found in a store already marked as segments (an older
/// coordinator ran on it since), and sets `LEGACY_GUARD` where it is missing.
pub(super) fn to_segments(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    convert(db, path).map_err(|e| match e {
        StoreError::Format { .. } => e,
        other => StoreError::Convert {
            path: path.to_path_buf(),
            source: Box::new(other),
        },
    })
}

fn convert(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
    let found = match db.get(FORMAT_KEY).map_err(io("read meta"))? {
        None => None,
        Some(v) => Some(
            <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    what: "format version",
                    key: "m/format".to_owned(),
                })?,
        ),
    };
    if let Some(found) = found.filter(|f| *f > FORMAT) {
        return Err(StoreError::Format {
            path: path.to_path_buf(),
            found,
            supported: FORMAT,
        });
    }
    let mut moved = 0usize;
    for steps in 1usize.. {
        let step = convert_step(db, STEP_ENTRIES)?;
        if step == 0 {
            break;
        }
        moved += step;
        if steps % PROGRESS_STEPS == 0 {
            info!(path = %path.display(), moved, "converting the store's log into segments");
        }
    }
    let guarded = db.contains_key(LEGACY_GUARD).map_err(io("read meta"))?;
    if found != Some(FORMAT) || moved > 0 || !guarded {
        let mut batch = sled::Batch::default();
        batch.insert(FORMAT_KEY, &FORMAT.to_be_bytes()[..]);
        batch.insert(LEGACY_GUARD, &[][..]);
        db.apply_batch(batch).map_err(io("write meta"))?;
        db.flush().map_err(io("flush"))?;
        if moved > 0 {
            info!(path = %path.display(), entries = moved, "store converted to log segments");
        }
    }
    Ok(())
}

/// The last stream seq stored in segments, if any.
fn segments_tail(db: &sled::Db) -> Result<Option<u64>, StoreError> {
    let Some(item) = db.scan_prefix(SEGMENT).next_back() else {
        return Ok(None);
    };
    let (k, v) = item.map_err(io("scan log"))?;
    let first = key_seq(&k)?;
    let seg = Segment::parse(&v, first).map_err(|why| StoreError::Corrupt {
        what: "log segment",
        key: format!("s/{first} ({why})"),
    })?;
    Ok(seg.entries().last().map(|(seq, _)| seq))
}

/// Moves up to `max` of the lowest per-event entries into segments, atomically, and sets
/// `LEGACY_GUARD` in the same batch; how many entries it took off the per-event keys (0: none
/// left). An entry at or below the segments' last seq is already in a segment (the same stream
/// message) and is dropped, never stored twice.
pub(super) fn convert_step(db: &sled::Db, max: usize) -> Result<usize, StoreError> {
    let end = seq_key(LEGACY_LOG, u64::MAX);
    let tail = segments_tail(db)?;
    let mut taken = Vec::new();
    let range = db.range(seq_key(LEGACY_LOG, 0)..=end);
    for item in range
        .filter(|i| !matches!(i, Ok((k, _)) if k == LEGACY_GUARD))
        .take(max)
    {
        let (k, v) = item.map_err(io("scan log"))?;
        taken.push((key_seq(&k)?, v));
    }
    if taken.is_empty() {
        return Ok(0);
    }
    let mut batch = sled::Batch::default();
    for (seq, _) in &taken {
        batch.remove(&seq_key(LEGACY_LOG, *seq)[..]);
    }
    let fresh = &taken[taken.partition_point(|(seq, _)| tail.is_some_and(|t| *seq <= t))..];
    if fresh.len() < taken.len() {
        warn!(
            dropped = taken.len() - fresh.len(),
            segments_tail = tail,
            "per-event log entries already in segments dropped"
        );
    }
    put_segments(&mut batch, fresh);
    batch.insert(LEGACY_GUARD, &[][..]);
    db.apply_batch(batch).map_err(io("convert log"))?;
    Ok(taken.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventStore, SledStore};

    /// The store's sled tree, opened directly. sled lets go of its file lock shortly after the
    /// last handle is dropped (see `SledStore::open_db`): retried for up to 10 s meanwhile.
    fn raw_open(path: &Path) -> sled::Db {
        for _ in 0..500 {
            match sled::open(path) {
                Ok(db) => return db,
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("cannot open {}: {e}", path.display()),
            }
        }
        panic!("{} stays locked", path.display())
    }

    /// Writes what the per-event code wrote for `seqs` and rows, as it laid them out.
    fn write_format_1(path: &Path, seqs: std::ops::RangeInclusive<u64>) {
        let db = raw_open(path);
        let n = seqs.clone().count() as u64;
        for seq in seqs.clone() {
            db.insert(
                &seq_key(LEGACY_LOG, seq)[..],
                format!("event-{seq}").as_bytes(),
            )
            .unwrap();
        }
        db.insert(b"p/host/a", &b"row"[..]).unwrap();
        db.insert(b"m/applied", &seqs.end().to_be_bytes()[..])
            .unwrap();
        db.insert(b"m/log_len", &n.to_be_bytes()[..]).unwrap();
        db.flush().unwrap();
    }

    /// A fresh temp dir holding a format 1 store of `seqs` (the dir lives as long as the guard).
    fn format_1_store(
        seqs: std::ops::RangeInclusive<u64>,
    ) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        write_format_1(&path, seqs);
        (dir, path)
    }

    fn only_the_guard_is_per_event(db: &sled::Db) {
        let legacy: Vec<_> = db
            .scan_prefix(LEGACY_LOG)
            .keys()
            .map(|k| k.unwrap())
            .collect();
        assert_eq!(legacy, vec![sled::IVec::from(LEGACY_GUARD)]);
    }

    fn all(store: &SledStore, from: u64) -> Vec<(u64, Vec<u8>)> {
        store.log_from(from).map(|r| r.unwrap()).collect()
    }

    fn expected(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        seqs.map(|s| (s, format!("event-{s}").into_bytes()))
            .collect()
    }

    #[test]
    fn a_per_event_store_is_converted_on_open() {
        let (_dir, path) = format_1_store(1..=5000);
        let store = SledStore::open(&path).unwrap();
        assert_eq!(all(&store, 0), expected(1..=5000));
        assert_eq!(all(&store, 4097), expected(4097..=5000));
        assert_eq!(store.log_len().unwrap(), 5000);
        assert_eq!(store.applied_stream_seq().unwrap(), 5000);
        assert_eq!(
            store.rows().unwrap(),
            vec![("host/a".to_owned(), b"row".to_vec())]
        );
        drop(store);
        // Nothing per-event is left but the guard, and the format is recorded.
        let db = raw_open(&path);
        only_the_guard_is_per_event(&db);
        assert_eq!(
            db.get(FORMAT_KEY).unwrap().map(|v| v.to_vec()),
            Some(FORMAT.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn a_conversion_cut_short_carries_on_at_the_next_open() {
        let (_dir, path) = format_1_store(1..=300);
        {
            // A crash after two steps: some entries in segments, the rest per-event.
            let db = raw_open(&path);
            assert_eq!(convert_step(&db, 100).unwrap(), 100);
            assert_eq!(convert_step(&db, 100).unwrap(), 100);
            db.flush().unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        assert_eq!(all(&store, 0), expected(1..=300));
        assert_eq!(all(&store, 150), expected(150..=300));
        assert_eq!(store.log_len().unwrap(), 300);
    }

    /// The log read of the coordinator built before segments (commit 10dedb6,
    /// `SledStore::log_from`), key logic copied: every `l/` key from `from` up to `l/` and eight
    /// `0xff`, each key's seq parsed from its 8 bytes after the prefix.
    fn per_event_log_from(db: &sled::Db, from: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let end = [LEGACY_LOG, &[0xff; 8][..]].concat();
        db.range(seq_key(LEGACY_LOG, from)[..].to_vec()..=end)
            .map(|item| {
                let (k, v) = item.map_err(io("scan log"))?;
                let seq: [u8; 8] = k.get(2..).and_then(|s| s.try_into().ok()).ok_or_else(|| {
                    StoreError::Corrupt {
                        what: "log key",
                        key: format!("{k:?}"),
                    }
                })?;
                Ok((u64::from_be_bytes(seq), v.to_vec()))
            })
            .collect()
    }

    fn refused_by_the_per_event_code(path: &Path) {
        let db = raw_open(path);
        for from in [0, 1, 4097, 1 << 40] {
            let err = per_event_log_from(&db, from).expect_err("the old read must fail");
            assert!(
                matches!(
                    err,
                    StoreError::Corrupt {
                        what: "log key",
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_per_event_code_refuses_a_converted_store() {
        let (_dir, path) = format_1_store(1..=5000);
        {
            // Before: the old read sees the whole log.
            let db = raw_open(&path);
            assert_eq!(per_event_log_from(&db, 0).unwrap(), expected(1..=5000));
        }
        drop(SledStore::open(&path).unwrap());
        refused_by_the_per_event_code(&path);
    }

    #[test]
    fn the_per_event_code_refuses_a_fresh_store_and_one_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.sled");
        drop(SledStore::open(&fresh).unwrap());
        refused_by_the_per_event_code(&fresh);

        // The first conversion step already sets the guard: a crash after it leaves a store
        // the old code refuses, although most entries are still per-event.
        let cut = dir.path().join("cut.sled");
        write_format_1(&cut, 1..=300);
        {
            let db = raw_open(&cut);
            assert_eq!(convert_step(&db, 100).unwrap(), 100);
            db.flush().unwrap();
        }
        refused_by_the_per_event_code(&cut);
    }

    /// A store of seqs 1..=10 converted by `SledStore::open`, then changed by `edit` with sled
    /// directly (flushed).
    fn converted_then(edit: impl FnOnce(&sled::Db)) -> (tempfile::TempDir, std::path::PathBuf) {
        let (dir, path) = format_1_store(1..=10);
        drop(SledStore::open(&path).unwrap());
        let db = raw_open(&path);
        edit(&db);
        db.flush().unwrap();
        (dir, path)
    }

    #[test]
    fn a_segment_store_without_the_guard_gets_it_on_open() {
        // As the first segment release left it: format 2, no guard.
        let (_dir, path) = converted_then(|db| {
            db.remove(LEGACY_GUARD).unwrap();
        });
        let store = SledStore::open(&path).unwrap();
        assert_eq!(all(&store, 0), expected(1..=10));
        drop(store);
        refused_by_the_per_event_code(&path);
    }

    #[test]
    fn per_event_entries_already_in_segments_are_not_stored_twice() {
        // Per-event entries written over a converted store: 9 and 10 are in segments.
        let (_dir, path) = converted_then(|db| {
            for seq in 9..=12u64 {
                db.insert(
                    &seq_key(LEGACY_LOG, seq)[..],
                    format!("event-{seq}").as_bytes(),
                )
                .unwrap();
            }
        });
        let store = SledStore::open(&path).unwrap();
        assert_eq!(all(&store, 0), expected(1..=12));
        drop(store);
        let db = raw_open(&path);
        only_the_guard_is_per_event(&db);
    }

    #[test]
    fn conversion_errors_name_the_store_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        {
            let db = raw_open(&path);
            db.insert(&b"l/\x01\x02"[..], &b"short key"[..]).unwrap();
            db.flush().unwrap();
        }
        let err = SledStore::open(&path)
            .err()
            .expect("a malformed per-event key must be refused");
        assert!(matches!(err, StoreError::Convert { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        {
            let db = raw_open(&path);
            db.insert(FORMAT_KEY, &(FORMAT + 1).to_be_bytes()[..])
                .unwrap();
            db.flush().unwrap();
        }
        let err = SledStore::open(&path)
            .err()
            .expect("a newer format must be refused");
        assert!(matches!(err, StoreError::Format { found, .. } if found == FORMAT + 1));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
