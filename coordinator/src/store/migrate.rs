//! The sled store's on-disk format version (`m/format`) and the conversion of stores written
//! before log segments (format 1: one `l/<stream seq BE>` entry per event) into segments.
//!
//! The conversion runs on open, before anything reads the log, in bounded steps: each step
//! moves the lowest `STEP_ENTRIES` per-event entries into segments and deletes them in the
//! same atomic `sled::Batch`, so a crash at any point leaves every entry exactly once (in a
//! segment or still per-event) and the next open carries on. A store of a newer format than
//! this code knows is refused with `StoreError::Format`, never read.

use std::path::Path;

use tracing::info;

use super::segment::{key_seq, put_segments, seq_key};
use super::StoreError;

/// The format this code writes: 2 = log segments.
pub(super) const FORMAT: u64 = 2;
const FORMAT_KEY: &[u8] = b"m/format";
/// Per-event log entries of format 1.
const LEGACY_LOG: &[u8] = b"l/";
/// Entries moved per atomic step.
const STEP_ENTRIES: usize = 4096;

fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

/// Brings the store at `path` to `FORMAT` (converting per-event entries, flushed) or refuses
/// it. Also converts per-event entries found in a store already marked as segments (an older
/// coordinator ran on it since).
pub(super) fn to_segments(db: &sled::Db, path: &Path) -> Result<(), StoreError> {
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
    loop {
        let step = convert_step(db, STEP_ENTRIES)?;
        if step == 0 {
            break;
        }
        moved += step;
        info!(path = %path.display(), moved, "converting the store's log into segments");
    }
    if found != Some(FORMAT) || moved > 0 {
        db.insert(FORMAT_KEY, &FORMAT.to_be_bytes()[..])
            .map_err(io("write meta"))?;
        db.flush().map_err(io("flush"))?;
        if moved > 0 {
            info!(path = %path.display(), entries = moved, "store converted to log segments");
        }
    }
    Ok(())
}

/// Moves up to `max` of the lowest per-event entries into segments, atomically; how many it
/// moved (0: none left).
pub(super) fn convert_step(db: &sled::Db, max: usize) -> Result<usize, StoreError> {
    let end = seq_key(LEGACY_LOG, u64::MAX);
    let mut entries = Vec::new();
    for item in db.range(seq_key(LEGACY_LOG, 0)..=end).take(max) {
        let (k, v) = item.map_err(io("scan log"))?;
        entries.push((key_seq(&k)?, v));
    }
    let mut batch = sled::Batch::default();
    for (seq, _) in &entries {
        batch.remove(&seq_key(LEGACY_LOG, *seq)[..]);
    }
    put_segments(&mut batch, &entries);
    db.apply_batch(batch).map_err(io("convert log"))?;
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventStore, SledStore};

    /// Writes what the per-event code wrote for `seqs` and rows, as it laid them out.
    fn write_format_1(path: &Path, seqs: std::ops::RangeInclusive<u64>) {
        let db = sled::open(path).unwrap();
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

    fn all(store: &SledStore, from: u64) -> Vec<(u64, Vec<u8>)> {
        store.log_from(from).map(|r| r.unwrap()).collect()
    }

    fn expected(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        seqs.map(|s| (s, format!("event-{s}").into_bytes()))
            .collect()
    }

    #[test]
    fn a_per_event_store_is_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        write_format_1(&path, 1..=5000);
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
        // Nothing per-event is left, and the format is recorded.
        let db = sled::open(&path).unwrap();
        assert_eq!(db.scan_prefix(LEGACY_LOG).count(), 0);
        assert_eq!(
            db.get(FORMAT_KEY).unwrap().map(|v| v.to_vec()),
            Some(FORMAT.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn a_conversion_cut_short_carries_on_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        write_format_1(&path, 1..=300);
        {
            // A crash after two steps: some entries in segments, the rest per-event.
            let db = sled::open(&path).unwrap();
            assert_eq!(convert_step(&db, 100).unwrap(), 100);
            assert_eq!(convert_step(&db, 100).unwrap(), 100);
            db.flush().unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        assert_eq!(all(&store, 0), expected(1..=300));
        assert_eq!(all(&store, 150), expected(150..=300));
        assert_eq!(store.log_len().unwrap(), 300);
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sled");
        {
            let db = sled::open(&path).unwrap();
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
