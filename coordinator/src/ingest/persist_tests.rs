//! Tests of the persist stage against a store that holds its flushes or fails its commits:
//! nothing moves `applied` before the flush that covers it, batches commit in the order they
//! were handed over, a cancel during a retry gives up without moving anything, and a consumer
//! stream ends (`end_after`: reposition, stop) only once its batch in flight is persisted, or
//! as inconsistent when that batch was cancelled.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{persist, Cancelled, Tally};
use crate::election::Leadership;
use crate::state::Shared;
use crate::store::{Commit, EventStore, LogIter, MemStore, StoreError};

/// A `MemStore` whose flushes wait for a go from the test (when `gated`) and whose commits
/// fail while `failing`; it records every commit and flush it saw. (The pipeline's tests use
/// it too.)
pub(in crate::ingest) struct Gated {
    pub inner: MemStore,
    gated: bool,
    failing: std::sync::atomic::AtomicBool,
    go: Mutex<mpsc::Receiver<()>>,
    seen: Mutex<Vec<String>>,
}

impl Gated {
    pub fn new(gated: bool, failing: bool) -> (Arc<Self>, mpsc::Sender<()>) {
        let (tx, rx) = mpsc::channel();
        let store = Gated {
            inner: MemStore::new(),
            gated,
            failing: failing.into(),
            go: Mutex::new(rx),
            seen: Mutex::new(Vec::new()),
        };
        (Arc::new(store), tx)
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl EventStore for Gated {
    fn applied_stream_seq(&self) -> Result<u64, StoreError> {
        self.inner.applied_stream_seq()
    }
    fn log_len(&self) -> Result<u64, StoreError> {
        self.inner.log_len()
    }
    fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        if self.failing.load(Ordering::Acquire) {
            self.seen.lock().unwrap().push("fail".into());
            return Err(StoreError::Backwards { from: 0, to: 0 });
        }
        self.seen
            .lock()
            .unwrap()
            .push(format!("commit {}", commit.applied_stream_seq));
        self.inner.commit(commit)
    }
    fn flush(&self) -> Result<(), StoreError> {
        if self.gated {
            // Bounded: a test that never sends a go fails here instead of hanging.
            let go = self.go.lock().unwrap();
            go.recv_timeout(Duration::from_secs(60))
                .expect("the test never released the flush");
        }
        self.seen.lock().unwrap().push("flush".into());
        self.inner.flush()
    }
    fn log_from(&self, from: u64) -> LogIter<'_> {
        self.inner.log_from(from)
    }
    fn rows(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.rows()
    }
    fn rows_at(&self) -> Result<u64, StoreError> {
        self.inner.rows_at()
    }
    fn replace_rows(&self, rows: Vec<(String, Vec<u8>)>) -> Result<(), StoreError> {
        self.inner.replace_rows(rows)
    }
    fn reserve_own_seqs(&self, n: u64) -> Result<(String, u64), StoreError> {
        self.inner.reserve_own_seqs(n)
    }
}

fn shared(store: Arc<Gated>) -> Arc<Shared> {
    Shared::load("blue", "blue", store, Leadership::default()).expect("load")
}

fn batch(applied: u64) -> Arc<Commit> {
    Arc::new(Commit {
        log: vec![(applied, bytes::Bytes::from_static(b"event"))],
        applied_stream_seq: applied,
        ..Default::default()
    })
}

fn tally() -> Tally {
    Tally {
        events: 1,
        ..Default::default()
    }
}

/// The persist future of a one-event batch up to `applied` (nothing runs before it is polled).
fn in_flight(
    shared: &Arc<Shared>,
    applied: u64,
    cancel: CancellationToken,
) -> super::super::InFlight<'static> {
    Box::pin(persist(
        Arc::clone(shared),
        batch(applied),
        tally(),
        None,
        cancel,
    ))
}

/// Persists a one-event batch up to `applied` in a task of its own.
fn spawn_batch(
    shared: &Arc<Shared>,
    applied: u64,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), Cancelled>> {
    tokio::spawn(in_flight(shared, applied, cancel))
}

/// Polls `cond` for up to 30 s (a loaded machine is slow, never this slow).
pub(in crate::ingest) async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..3000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_moves_only_after_the_flush_and_batches_commit_in_order() {
    let (store, go) = Gated::new(true, false);
    let shared = shared(Arc::clone(&store));
    let cancel = CancellationToken::new();
    let first = spawn_batch(&shared, 1, cancel.clone());
    eventually("batch 1 committed", || store.seen() == ["commit 1"]).await;
    // Held in its flush: committed but not durable, so not applied and not counted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shared.applied(), 0);
    assert_eq!(shared.events_applied.load(Ordering::Relaxed), 0);
    assert!(!first.is_finished());
    go.send(()).unwrap();
    assert!(first.await.unwrap().is_ok());
    assert_eq!(shared.applied(), 1);
    assert_eq!(shared.events_applied.load(Ordering::Relaxed), 1);

    go.send(()).unwrap();
    persist(Arc::clone(&shared), batch(2), tally(), None, cancel)
        .await
        .unwrap();
    assert_eq!(store.seen(), ["commit 1", "flush", "commit 2", "flush"]);
    assert_eq!(shared.applied(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_the_retries_gives_up_without_moving_applied() {
    let (store, _go) = Gated::new(false, true);
    let shared = shared(Arc::clone(&store));
    let cancel = CancellationToken::new();
    let task = spawn_batch(&shared, 1, cancel.clone());
    eventually("two failed attempts", || store.seen().len() >= 2).await;
    assert!(!shared.store_healthy.load(Ordering::Acquire));
    cancel.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("persist must end once cancelled")
        .unwrap();
    assert!(matches!(ended, Err(Cancelled)));
    assert_eq!(shared.applied(), 0);
    assert_eq!(store.inner.applied_stream_seq().unwrap(), 0);
    assert!(store.seen().iter().all(|s| s == "fail"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_retried_until_the_store_takes_it() {
    let (store, _go) = Gated::new(false, true);
    let shared = shared(Arc::clone(&store));
    let task = spawn_batch(&shared, 1, CancellationToken::new());
    eventually("a failed attempt", || !store.seen().is_empty()).await;
    assert_eq!(shared.applied(), 0);
    store.failing.store(false, Ordering::Release);
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the retry must succeed")
        .unwrap()
        .unwrap();
    assert_eq!(shared.applied(), 1);
    assert!(shared.store_healthy.load(Ordering::Acquire));
    assert_eq!(store.seen().last().map(String::as_str), Some("flush"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_only_once_its_batch_in_flight_is_persisted() {
    use super::super::{end_after, StreamEnd};
    let (store, go) = Gated::new(true, false);
    let shared = shared(Arc::clone(&store));
    let pending = in_flight(&shared, 1, CancellationToken::new());
    // A reposition with batch 1 in its flush: the reopen waits for it.
    let end = tokio::spawn(end_after(Some(pending), StreamEnd::Reopen));
    eventually("batch 1 committed", || store.seen() == ["commit 1"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !end.is_finished(),
        "reopened before the batch in flight was flushed"
    );
    go.send(()).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(30), end)
        .await
        .expect("the stream must end once the batch is flushed")
        .unwrap();
    assert!(matches!(end, StreamEnd::Reopen));
    assert_eq!(shared.applied(), 1);
    assert_eq!(store.inner.applied_stream_seq().unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_a_batch_is_retried_ends_the_stream_inconsistent() {
    use super::super::{end_after, StreamEnd};
    let (store, _go) = Gated::new(false, true);
    let shared = shared(Arc::clone(&store));
    let cancel = CancellationToken::new();
    let pending = in_flight(&shared, 1, cancel.clone());
    let end = tokio::spawn(end_after(
        Some(pending),
        StreamEnd::Stopped { consistent: true },
    ));
    eventually("a failed attempt", || !store.seen().is_empty()).await;
    cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(30), end)
        .await
        .expect("the stream must end once cancelled")
        .unwrap();
    // The fold is ahead of the store: the caller must not write a final snapshot from it.
    assert!(matches!(end, StreamEnd::Stopped { consistent: false }));
    assert_eq!(shared.applied(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_batch_commits_only_after_the_one_in_flight_is_flushed() {
    use super::super::{in_flight_done, start_after};
    let (store, go) = Gated::new(true, false);
    let shared = shared(Arc::clone(&store));
    let cancel = CancellationToken::new();
    let first = in_flight(&shared, 1, cancel.clone());
    let second = in_flight(&shared, 2, cancel);
    let task = tokio::spawn(async move {
        let mut slot = Some(first);
        assert!(start_after(&mut slot, second).await);
        in_flight_done(&mut slot).await
    });
    eventually("batch 1 committed", || store.seen() == ["commit 1"]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.seen(),
        ["commit 1"],
        "batch 2 went ahead of batch 1's flush"
    );
    go.send(()).unwrap();
    eventually("batch 2 committed", || {
        store.seen() == ["commit 1", "flush", "commit 2"]
    })
    .await;
    assert_eq!(shared.applied(), 1);
    go.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("batch 2 must be persisted")
        .unwrap()
        .unwrap();
    assert_eq!(store.seen(), ["commit 1", "flush", "commit 2", "flush"]);
    assert_eq!(shared.applied(), 2);
}
