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

#[test]
fn mem_store_conforms() {
    suite(&MemStore::new());
}

#[test]
fn sled_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(&SledStore::open(&dir.path().join("s.sled")).unwrap());
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
