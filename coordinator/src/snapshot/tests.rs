//! Tests of the snapshot policy and of snapshot + tail replay after a crash between snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opsfleet_proto::pb::{self, event::Body};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::projection::Verdict;
use crate::rebuild;
use crate::store::{Commit, MemStore, SledStore};

fn inc(n: u8) -> Uuid {
    Uuid::from_bytes([0x01, 0x90, 0, 0, 0, n, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, n])
}

fn event(host: &str, incarnation: u8, seq: u64) -> EventEnvelope {
    let body = if seq.is_multiple_of(5) {
        Body::Disk(pb::DiskUsage {
            path: "/".to_owned(),
            used_basis_points: (seq * 37 % 10_000) as u32,
            level: pb::DiskLevel::Ok as i32,
            ..Default::default()
        })
    } else {
        Body::Heartbeat(pb::Heartbeat {
            uptime_ms: seq * 1000,
            agent_version: "0.1.0".to_owned(),
            interval_ms: 1000,
            ..Default::default()
        })
    };
    EventEnvelope {
        id: Uuid::from_u128(((incarnation as u128) << 64) | seq as u128),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: if seq.is_multiple_of(5) {
            "disk"
        } else {
            "heartbeat"
        }
        .to_owned(),
        incarnation: inc(incarnation),
        body,
    }
}

/// `store` as a coordinator of this build leaves it at its first start: rows stamped with
/// this fold's version.
fn stamped<S: EventStore>(store: S) -> S {
    store.replace_rows(Fleet::new().stored_rows()).unwrap();
    store
}

/// What ingest does per batch, minus NATS: fold, log the accepted events, carry the dirty rows
/// only when the policy says so, commit, flush. Returns how many events were accepted.
fn ingest(
    store: &dyn EventStore,
    fleet: &mut Fleet,
    policy: &mut SnapshotPolicy,
    next_stream_seq: &mut u64,
    batch: &[EventEnvelope],
    now: Instant,
) -> usize {
    let mut commit = Commit {
        applied_stream_seq: *next_stream_seq - 1,
        ..Default::default()
    };
    for ev in batch {
        let seq = *next_stream_seq;
        *next_stream_seq += 1;
        commit.applied_stream_seq = seq;
        if fleet.apply(ev).is_accepted() {
            commit.log.push((seq, ev.encode_to_vec().into()));
        }
    }
    if policy.due(now) {
        commit.rows = fleet.take_dirty_rows();
        commit.snapshot = true;
    }
    let accepted = commit.log.len();
    store.commit(&commit).unwrap();
    store.flush().unwrap();
    policy.committed(commit.snapshot, now);
    accepted
}

/// A stream with re-published duplicates, a restarted agent (new incarnation) and a gap.
fn stream() -> Vec<EventEnvelope> {
    let mut out = Vec::new();
    for seq in 1..=40u64 {
        for host in ["web-01", "web-02", "db-01"] {
            if host == "web-02" && seq == 17 {
                continue; // a gap, filled late below
            }
            out.push(event(host, 1, seq));
            if seq.is_multiple_of(7) {
                out.push(event(host, 1, seq)); // re-published copy
            }
        }
        if seq > 20 {
            out.push(event("web-03", 2, seq - 20));
        }
    }
    out.push(event("web-02", 1, 17));
    out
}

#[test]
fn policy_snapshots_the_first_batch_then_every_n_batches_or_interval() {
    let t0 = Instant::now();
    let mut p = SnapshotPolicy::new(3, Duration::from_secs(5));
    assert!(p.due(t0), "the first batch after start is a snapshot");
    p.committed(true, t0);
    assert!(!p.due(t0));
    p.committed(false, t0);
    assert!(!p.due(t0));
    p.committed(false, t0);
    assert!(p.due(t0), "the third batch after a snapshot is one");
    p.committed(true, t0);
    assert!(!p.due(t0 + Duration::from_secs(4)));
    assert!(p.due(t0 + Duration::from_secs(5)), "interval elapsed");
    p.committed(true, t0 + Duration::from_secs(5));
    assert!(!p.due(t0), "an earlier `now` is no interval");
}

#[test]
fn crash_between_snapshots_reloads_the_full_refold_and_accepts_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sled");
    let events = stream();
    let now = Instant::now();
    let (live_digest, live_rows, applied) = {
        let store = stamped(SledStore::open(&path).unwrap());
        let mut fleet = Fleet::new();
        let mut policy = SnapshotPolicy::new(4, Duration::from_secs(3600));
        let mut next = 1;
        for batch in events.chunks(7) {
            ingest(&store, &mut fleet, &mut policy, &mut next, batch, now);
        }
        // The crash: no final snapshot; the last batches' rows never reached the store.
        assert!(store.rows_at().unwrap() < store.applied_stream_seq().unwrap());
        (fleet.digest(), fleet.rows(), next - 1)
    };

    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.applied_stream_seq().unwrap(), applied);
    let loaded = load_fleet(&store).unwrap();
    assert!(loaded.tail > 0, "some log entries were after the snapshot");
    let (refold, _) = rebuild::fold_log(&store).unwrap();
    assert_eq!(loaded.fleet.digest(), refold.digest());
    assert_eq!(loaded.fleet.digest(), live_digest);
    assert_eq!(loaded.fleet.rows(), live_rows);
    // `rebuild --verify` sees the stored projection (with its tail) as matching.
    let report = rebuild::rebuild(&store, false).unwrap();
    assert!(report.matches, "{report:?}");

    // Every event delivered again (the stream redelivers what was not acknowledged, agents
    // re-publish) is a duplicate, including those only in the tail.
    let mut fleet = loaded.fleet;
    for ev in &events {
        assert_eq!(
            fleet.apply(ev),
            Verdict::Duplicate,
            "{} {}",
            ev.host,
            ev.seq
        );
    }
    // And the next new one is accepted.
    assert!(fleet.apply(&event("web-01", 1, 41)).is_accepted());
}

#[test]
fn a_clean_stop_leaves_no_tail_and_the_next_start_snapshots_the_tail_it_folded() {
    let store = Arc::new(stamped(MemStore::new()));
    let events = stream();
    let now = Instant::now();
    let mut fleet = Fleet::new();
    let mut policy = SnapshotPolicy::new(1000, Duration::from_secs(3600));
    let mut next = 1;
    for batch in events.chunks(10) {
        ingest(
            store.as_ref(),
            &mut fleet,
            &mut policy,
            &mut next,
            batch,
            now,
        );
    }
    assert!(store.rows_at().unwrap() < store.applied_stream_seq().unwrap());

    // Restart: the tail is folded and its rows are dirty, so the first snapshot writes them.
    let mut loaded = load_fleet(store.as_ref()).unwrap();
    assert!(loaded.tail > 0);
    let mut policy = SnapshotPolicy::new(1000, Duration::from_secs(3600));
    ingest(
        store.as_ref(),
        &mut loaded.fleet,
        &mut policy,
        &mut next,
        &[],
        now,
    );
    assert_eq!(
        store.rows_at().unwrap(),
        store.applied_stream_seq().unwrap()
    );
    let again = load_fleet(store.as_ref()).unwrap();
    assert_eq!(again.tail, 0);
    assert_eq!(again.fleet.digest(), fleet.digest());
    assert_eq!(store.rows().unwrap(), fleet.stored_rows());
}

/// A store as an older build left it: one event of web-01 in the log, with `rows` (given the
/// fold of that event) committed beside it, without a fold version.
fn old_store(
    snapshot: bool,
    rows: impl FnOnce(&mut Fleet) -> Vec<(String, Vec<u8>)>,
) -> (MemStore, Fleet) {
    let store = MemStore::new();
    let mut fleet = Fleet::new();
    let ev = event("web-01", 1, 1);
    fleet.apply(&ev);
    store
        .commit(&Commit {
            log: vec![(1, ev.encode_to_vec().into())],
            rows: rows(&mut fleet),
            applied_stream_seq: 1,
            snapshot,
        })
        .unwrap();
    (store, fleet)
}

#[test]
fn a_store_written_before_snapshots_is_refolded_at_its_first_load() {
    // Old stores carried rows in every commit, no `rows_at` and no fold version.
    let (store, fleet) = old_store(false, Fleet::take_dirty_rows);
    let loaded = load_fleet(&store).unwrap();
    assert_eq!((loaded.rows_at, loaded.tail), (1, 1));
    assert_eq!(loaded.fleet.digest(), fleet.digest());
    let again = load_fleet(&store).unwrap();
    assert_eq!((again.rows_at, again.tail), (1, 0));
    assert_eq!(store.rows().unwrap(), fleet.stored_rows());
}

#[test]
fn rows_of_an_older_fold_are_replaced_by_the_refold_and_rows_of_this_one_are_loaded() {
    // Rows as an older fold wrote them: not what this fold makes of the same log.
    let (store, fleet) = old_store(true, |_| vec![("host/web-01".into(), b"{}".to_vec())]);
    assert_eq!(crate::projection::fold_version(&store.rows().unwrap()), 1);
    assert!(!rebuild::rebuild(&store, false).unwrap().matches);
    assert!(rebuild::rebuild(&store, false).unwrap().older_fold());
    let loaded = load_fleet(&store).unwrap();
    assert_eq!(loaded.fleet.rows(), fleet.rows());
    assert_eq!(store.rows().unwrap(), fleet.stored_rows());
    let report = rebuild::rebuild(&store, false).unwrap();
    assert!(report.matches && !report.older_fold(), "{report:?}");
    // Rows stamped with this fold's version are loaded as they are (a damaged row stays
    // damaged until `rebuild` repairs it: the load does not refold every time).
    let mut damaged = fleet.stored_rows();
    damaged.retain(|(k, _)| k != "host/web-01");
    store.replace_rows(damaged).unwrap();
    let loaded = load_fleet(&store).unwrap();
    assert!(loaded.fleet.host("web-01").is_none());
}

/// A flooding host's log: ever-new incarnations, and commands finished beyond the ledger's
/// cap (so snapshots delete pruned command rows).
fn capped_stream() -> Vec<EventEnvelope> {
    use crate::projection::bounds::{COMMANDS_KEPT, INCARNATIONS_KEPT};
    let mut out = Vec::new();
    for i in 0..(INCARNATIONS_KEPT as u8 * 3) {
        out.push(event("flood-01", i + 1, 3));
    }
    let command = |host: &str, seq: u64, module: &str, body: Body| EventEnvelope {
        id: Uuid::from_u128(0xc0de_0000_0000 + seq as u128 + ((host.len() as u128) << 40)),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: module.to_owned(),
        incarnation: inc(200),
        body,
    };
    for i in 0..(COMMANDS_KEPT as u64 + 20) {
        let id = format!("c{i:04}");
        out.push(command(
            "blue",
            i + 1,
            opsfleet_proto::COORDINATOR_MODULE,
            Body::CommandIssued(pb::CommandIssued {
                command_id: id.clone(),
                target: "flood-01".to_owned(),
                epoch: 1,
                action: "noop".to_owned(),
                deadline_unix_ms: 1_790_000_900_000,
                ..Default::default()
            }),
        ));
        out.push(command(
            "flood-01",
            i + 1,
            "agent",
            Body::CommandCompleted(pb::CommandCompleted {
                command_id: id,
                detail: "ok".to_owned(),
            }),
        ));
    }
    out
}

#[test]
fn pruned_rows_are_deleted_by_snapshots_and_a_reload_equals_the_refold() {
    let dir = tempfile::tempdir().unwrap();
    let store = stamped(SledStore::open(&dir.path().join("c.sled")).unwrap());
    let events = capped_stream();
    let mut fleet = Fleet::new();
    let mut policy = SnapshotPolicy::new(3, Duration::from_secs(3600));
    let mut next = 1;
    for batch in events.chunks(11) {
        ingest(
            &store,
            &mut fleet,
            &mut policy,
            &mut next,
            batch,
            Instant::now(),
        );
    }
    let h = fleet.host("flood-01").unwrap();
    assert!(
        h.truncated.incarnations > 0 && h.truncated.commands > 0,
        "{:?}",
        h.truncated
    );
    let loaded = load_fleet(&store).unwrap();
    let (refold, _) = rebuild::fold_log(&store).unwrap();
    assert_eq!(loaded.fleet.rows(), refold.rows());
    assert_eq!(loaded.fleet.rows(), fleet.rows());
    assert!(rebuild::rebuild(&store, false).unwrap().matches);
    // The stored rows hold no pruned command once a snapshot covers everything.
    let rows = fleet.take_dirty_rows();
    store
        .commit(&Commit {
            rows,
            applied_stream_seq: next - 1,
            snapshot: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.rows().unwrap(), fleet.stored_rows());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the snapshot cadence and batch sizes, and wherever the process dies, the
    /// reloaded fleet equals the full refold of the log and the live fleet.
    #[test]
    fn reload_after_any_crash_point_equals_the_refold(
        picks in proptest::collection::vec((0usize..4, 1u64..30, 1u8..3), 1..120),
        every in 1u32..6,
        batch in 1usize..9,
        crash_after in 0usize..40,
    ) {
        let hosts = ["web-01", "web-02", "db-01", "db-02"];
        let events: Vec<_> = picks.iter().map(|(h, s, i)| event(hosts[*h], *i, *s)).collect();
        let store = stamped(MemStore::new());
        let mut fleet = Fleet::new();
        let mut policy = SnapshotPolicy::new(every, Duration::from_secs(3600));
        let mut next = 1;
        let now = Instant::now();
        for chunk in events.chunks(batch).take(crash_after.max(1)) {
            ingest(&store, &mut fleet, &mut policy, &mut next, chunk, now);
        }
        let loaded = load_fleet(&store).unwrap();
        let (refold, _) = rebuild::fold_log(&store).unwrap();
        prop_assert_eq!(loaded.fleet.rows(), refold.rows());
        prop_assert_eq!(loaded.fleet.rows(), fleet.rows());
        let mut reloaded = loaded.fleet;
        for ev in &events {
            prop_assert_eq!(reloaded.apply(ev), fleet.apply(ev));
        }
    }
}
