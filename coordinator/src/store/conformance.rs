//! One conformance suite for every `EventStore`: run against `MemStore` and `SledStore`.

use super::{Commit, EventStore, MemStore, SledStore, StoreError};

fn entry(seq: u64) -> (u64, bytes::Bytes) {
    (seq, format!("event-{seq}").into_bytes().into())
}

fn commit_of(seqs: std::ops::RangeInclusive<u64>, rows: &[(&str, &str)]) -> Commit {
    let applied = *seqs.end();
    Commit {
        log: seqs.map(entry).collect(),
        rows: rows
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect(),
        applied_stream_seq: applied,
        // As ingest does: rows travel only in snapshot commits.
        snapshot: !rows.is_empty(),
    }
}

fn suite(store: &dyn EventStore) {
    // Empty store.
    assert_eq!(store.applied_stream_seq().unwrap(), 0);
    assert_eq!(store.log_len().unwrap(), 0);
    assert!(store.rows().unwrap().is_empty());
    assert_eq!(store.rows_at().unwrap(), 0);

    // Commits append in order, rows upsert.
    store.commit(&commit_of(1..=3, &[("host/a", "1")])).unwrap();
    store
        .commit(&commit_of(4..=5, &[("host/b", "2"), ("host/a", "3")]))
        .unwrap();
    store.flush().unwrap();
    assert_eq!(store.applied_stream_seq().unwrap(), 5);
    assert_eq!(store.log_len().unwrap(), 5);
    let seqs: Vec<u64> = store.log_from(0).map(|r| r.unwrap().0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let tail: Vec<u64> = store.log_from(4).map(|r| r.unwrap().0).collect();
    assert_eq!(tail, [4, 5]);
    assert_eq!(
        store.rows().unwrap(),
        vec![
            ("host/a".to_owned(), b"3".to_vec()),
            ("host/b".to_owned(), b"2".to_vec())
        ]
    );

    // An empty value deletes its row (a pruned command); deleting a missing row is fine.
    store
        .commit(&commit_of(5..=5, &[("host/b", ""), ("cmd/x", "")]))
        .unwrap();
    assert_eq!(
        store.rows().unwrap(),
        vec![("host/a".to_owned(), b"3".to_vec())]
    );
    store.commit(&commit_of(5..=5, &[("host/b", "2")])).unwrap();

    // Re-committing stored entries (crash between flush and ack) is idempotent.
    store.commit(&commit_of(5..=5, &[])).unwrap();
    assert_eq!(store.log_len().unwrap(), 5);

    // A commit may account for messages without log entries (duplicates, parked).
    store
        .commit(&Commit {
            applied_stream_seq: 9,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.applied_stream_seq().unwrap(), 9);
    assert_eq!(store.log_len().unwrap(), 5);
    // Commits without a snapshot leave the rows' position where the last snapshot put it.
    assert_eq!(store.rows_at().unwrap(), 5);

    // Never backwards.
    let err = store.commit(&commit_of(2..=2, &[])).unwrap_err();
    assert!(
        matches!(err, StoreError::Backwards { from: 9, to: 2 }),
        "{err}"
    );
    assert_eq!(store.log_len().unwrap(), 5);

    // Gaps in stream seqs are fine; the log stays ordered.
    store.commit(&commit_of(12..=12, &[])).unwrap();
    let seqs: Vec<u64> = store.log_from(0).map(|r| r.unwrap().0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 12]);
    assert_eq!(store.rows_at().unwrap(), 5);
    // A snapshot without changed rows still moves it.
    store
        .commit(&Commit {
            applied_stream_seq: 12,
            snapshot: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.rows_at().unwrap(), 12);
    store
        .commit(&Commit {
            applied_stream_seq: 13,
            ..Default::default()
        })
        .unwrap();

    // Own event identity: a stable incarnation, seqs from 1, never handed out twice.
    let (inc, first) = store.reserve_own_seqs(1).unwrap();
    assert_eq!(first, 1);
    let (inc2, next) = store.reserve_own_seqs(3).unwrap();
    assert_eq!((inc2.as_str(), next), (inc.as_str(), 2));
    assert_eq!(store.reserve_own_seqs(1).unwrap().1, 5);

    // Rows can be replaced wholesale (rebuild).
    store
        .replace_rows(vec![("host/c".to_owned(), b"9".to_vec())])
        .unwrap();
    assert_eq!(
        store.rows().unwrap(),
        vec![("host/c".to_owned(), b"9".to_vec())]
    );
    assert_eq!(store.log_len().unwrap(), 6);
    // Replaced rows reflect the whole log.
    assert_eq!(store.rows_at().unwrap(), 13);
}

/// An entry of `len` bytes that names its seq.
fn sized(seq: u64, len: usize) -> (u64, bytes::Bytes) {
    let mut b = format!("event-{seq}-").into_bytes();
    b.resize(len.max(b.len()), b'.');
    (seq, b.into())
}

fn entries_from(store: &dyn EventStore, from: u64) -> Vec<(u64, bytes::Bytes)> {
    store
        .log_from(from)
        .map(|r| r.map(|(s, b)| (s, b.into())).unwrap())
        .collect()
}

/// Batches large enough to span several of the sled store's segments, reads starting inside
/// and at the edges of them, empty batches and batches re-committed after a crash.
fn segment_suite(store: &dyn EventStore) {
    let mut log: Vec<(u64, bytes::Bytes)> = (1..=3).map(|s| sized(s, 40)).collect();
    let big: Vec<_> = (4..=600)
        .map(|s| sized(s, 100 + (s % 7) as usize * 30))
        .collect();
    store
        .commit(&Commit {
            log: log.clone(),
            applied_stream_seq: 3,
            ..Default::default()
        })
        .unwrap();
    store
        .commit(&Commit {
            log: big.clone(),
            applied_stream_seq: 600,
            ..Default::default()
        })
        .unwrap();
    log.extend(big);
    store.flush().unwrap();
    assert_eq!(store.log_len().unwrap(), 600);
    for from in [0, 1, 2, 3, 4, 5, 99, 300, 599, 600] {
        let want: Vec<_> = log.iter().filter(|(s, _)| *s >= from).cloned().collect();
        assert_eq!(entries_from(store, from), want, "log_from({from})");
    }
    assert!(entries_from(store, 601).is_empty());

    // Empty batches (only duplicates or parked messages) move the position, add nothing.
    for applied in [601, 605] {
        store
            .commit(&Commit {
                applied_stream_seq: applied,
                ..Default::default()
            })
            .unwrap();
    }
    assert!(entries_from(store, 601).is_empty());
    // One event larger than any segment, after a hole.
    let huge = sized(606, 20_000);
    store
        .commit(&Commit {
            log: vec![huge.clone()],
            applied_stream_seq: 606,
            ..Default::default()
        })
        .unwrap();
    log.push(huge);

    // A batch re-committed after a crash, its stored part (including what an earlier commit
    // stored) followed by new entries: stored once, counted once.
    let fresh: Vec<_> = (607..=610).map(|s| sized(s, 50)).collect();
    let mut again: Vec<_> = log.iter().filter(|(s, _)| *s >= 595).cloned().collect();
    again.extend(fresh.iter().cloned());
    let retry = Commit {
        log: again,
        applied_stream_seq: 610,
        ..Default::default()
    };
    store.commit(&retry).unwrap();
    store.commit(&retry).unwrap();
    store.flush().unwrap();
    log.extend(fresh);
    assert_eq!(store.log_len().unwrap(), 605);
    assert_eq!(entries_from(store, 0), log);
    assert_eq!(entries_from(store, 606), log[log.len() - 5..].to_vec());
    assert_eq!(entries_from(store, 602), log[log.len() - 5..].to_vec());
}

#[test]
fn mem_store_conforms() {
    suite(&MemStore::new());
    segment_suite(&MemStore::new());
}

#[test]
fn sled_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(&SledStore::open(&dir.path().join("s.sled")).unwrap());
    segment_suite(&SledStore::open(&dir.path().join("t.sled")).unwrap());
}

#[test]
fn sled_store_segments_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sled");
    let log: Vec<_> = (1..=500).map(|s| sized(s, 120)).collect();
    {
        let store = SledStore::open(&path).unwrap();
        store
            .commit(&Commit {
                log: log.clone(),
                applied_stream_seq: 500,
                ..Default::default()
            })
            .unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.log_len().unwrap(), 500);
    assert_eq!(entries_from(&store, 0), log);
    assert_eq!(entries_from(&store, 250), log[249..].to_vec());
}

#[test]
fn sled_store_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sled");
    {
        let store = SledStore::open(&path).unwrap();
        store.commit(&commit_of(1..=4, &[("host/a", "x")])).unwrap();
        store.flush().unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.applied_stream_seq().unwrap(), 4);
    assert_eq!(store.rows_at().unwrap(), 4);
    let (inc, seq) = store.reserve_own_seqs(2).unwrap();
    drop(store);
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.reserve_own_seqs(1).unwrap(), (inc, seq + 2));
    assert_eq!(store.log_len().unwrap(), 4);
    assert_eq!(
        store.rows().unwrap(),
        vec![("host/a".to_owned(), b"x".to_vec())]
    );
}

#[test]
fn a_second_open_reports_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sled");
    let _first = SledStore::open(&path).unwrap();
    match SledStore::open(&path) {
        Err(StoreError::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("second open of a locked store succeeded"),
    }
}

#[test]
fn sled_store_recovers_to_what_was_flushed_and_takes_the_retry() {
    // What ingest does after a failed write: reopen, then commit the same batch again.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("s.sled")).unwrap();
    store.commit(&commit_of(1..=4, &[("host/a", "x")])).unwrap();
    store.flush().unwrap();
    let retry = commit_of(5..=6, &[("host/a", "y")]);
    store.commit(&retry).unwrap();
    store.recover().unwrap();
    // sled may or may not have flushed the second commit in the background.
    let applied = store.applied_stream_seq().unwrap();
    assert!(applied == 4 || applied == 6, "applied {applied}");
    assert_eq!(store.log_len().unwrap(), applied);
    store.commit(&retry).unwrap();
    store.flush().unwrap();
    assert_eq!(store.applied_stream_seq().unwrap(), 6);
    assert_eq!(store.log_len().unwrap(), 6);
    let seqs: Vec<u64> = store.log_from(0).map(|r| r.unwrap().0).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    assert_eq!(
        store.rows().unwrap(),
        vec![("host/a".to_owned(), b"y".to_vec())]
    );
}

#[test]
fn mem_store_recover_is_a_no_op() {
    let store = MemStore::new();
    store.commit(&commit_of(1..=2, &[])).unwrap();
    store.recover().unwrap();
    assert_eq!(store.applied_stream_seq().unwrap(), 2);
}
