//! The remote backup rules driven from folded events through the state machine: a failed
//! copy fires until a later copy succeeds, a copy older than `max_age` is stale, a
//! reconciliation with missing/extra/mismatched archives fires until a clean one; a job
//! without a remote copy raises none of them.

use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use uuid::Uuid;

use super::*;
use crate::alerts::machine::evaluate;
use crate::alerts::{transition_body, Memory, State};
use crate::projection::Fleet;

const T0: i64 = 1_790_000_000_000;
const HOUR: i64 = 3_600_000;
const DEST: &str = "path:/mnt/nas/pg";

fn event(seq: u64, at: i64, body: Body) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: "db-01".to_owned(),
        seq,
        time_unix_ms: at,
        module: "backup".to_owned(),
        incarnation: Uuid::nil(),
        body,
    }
}

fn synced(archive: &str) -> Body {
    Body::BackupSynced(pb::BackupSynced {
        job: "pg".to_owned(),
        archive: archive.to_owned(),
        destination: DEST.to_owned(),
        bytes: 1000,
        duration_ms: 5,
        remote_pruned: Vec::new(),
    })
}

fn sync_failed(reason: &str) -> Body {
    Body::BackupSyncFailed(pb::BackupSyncFailed {
        job: "pg".to_owned(),
        archive: "pg-20260101T000000.000Z.tar.zst".to_owned(),
        destination: DEST.to_owned(),
        reason: reason.to_owned(),
    })
}

fn discrepancy(missing: &[&str]) -> Body {
    Body::BackupDiscrepancy(pb::BackupDiscrepancy {
        job: "pg".to_owned(),
        destination: DEST.to_owned(),
        missing: missing.iter().map(|s| (*s).to_owned()).collect(),
        extra: Vec::new(),
        mismatched: Vec::new(),
        remote_archives: 3,
    })
}

/// The remote backup alerts' transitions at `now`, recorded back into the fleet the way the
/// edge does (as coordinator events), so the next evaluation sees them.
fn firing(fleet: &mut Fleet, memory: &mut Memory, now: i64) -> Vec<(String, State, String)> {
    let ts = evaluate(&Rules::default(), fleet, memory, now);
    for (i, t) in ts.iter().enumerate() {
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: "blue".to_owned(),
            seq: u64::try_from(now).unwrap_or(0) + i as u64,
            time_unix_ms: t.at_unix_ms,
            module: COORDINATOR_MODULE.to_owned(),
            incarnation: Uuid::nil(),
            body: transition_body(t, 3),
        });
    }
    ts.into_iter()
        .filter(|t| t.rule.starts_with("backup_sync") || t.rule == "backup_discrepancy")
        .map(|t| (t.rule.clone(), t.to, t.summary.clone()))
        .collect()
}

#[test]
fn a_failed_copy_fires_until_a_later_copy_succeeds() {
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    fleet.apply(&event(1, T0, synced("pg-a")));
    assert!(firing(&mut fleet, &mut memory, T0 + 1000).is_empty());
    fleet.apply(&event(2, T0 + HOUR, sync_failed("No space left on device")));
    let ts = firing(&mut fleet, &mut memory, T0 + HOUR + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("backup_sync_failed", State::Firing)
    );
    assert!(
        ts[0].2.contains(DEST) && ts[0].2.contains("No space left"),
        "{ts:?}"
    );
    fleet.apply(&event(3, T0 + 2 * HOUR, synced("pg-b")));
    let ts = firing(&mut fleet, &mut memory, T0 + 2 * HOUR + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("backup_sync_failed", State::Resolved)
    );
}

#[test]
fn a_copy_older_than_max_age_is_stale() {
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    fleet.apply(&event(1, T0, synced("pg-a")));
    assert!(firing(&mut fleet, &mut memory, T0 + 25 * HOUR).is_empty());
    let ts = firing(&mut fleet, &mut memory, T0 + 27 * HOUR);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("backup_sync_stale", State::Firing)
    );
    assert!(ts[0].2.contains("27h old"), "{ts:?}");
}

#[test]
fn a_discrepancy_fires_until_a_clean_reconciliation() {
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    fleet.apply(&event(1, T0, synced("pg-a")));
    fleet.apply(&event(2, T0 + 1000, discrepancy(&[])));
    assert!(firing(&mut fleet, &mut memory, T0 + 2000).is_empty());
    fleet.apply(&event(3, T0 + HOUR, discrepancy(&["pg-a"])));
    let ts = firing(&mut fleet, &mut memory, T0 + HOUR + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("backup_discrepancy", State::Firing)
    );
    assert!(
        ts[0].2.contains("1 missing") && ts[0].2.contains("pg-a"),
        "{ts:?}"
    );
    fleet.apply(&event(4, T0 + 2 * HOUR, discrepancy(&[])));
    let ts = firing(&mut fleet, &mut memory, T0 + 2 * HOUR + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("backup_discrepancy", State::Resolved)
    );
}

#[test]
fn a_job_without_a_remote_copy_raises_none() {
    let mut fleet = Fleet::new();
    fleet.apply(&event(
        1,
        T0,
        Body::BackupCompleted(pb::BackupCompleted {
            job: "pg".to_owned(),
            run_id: "r1".to_owned(),
            archive: "pg-a".to_owned(),
            ..Default::default()
        }),
    ));
    let mut out = Vec::new();
    let host = fleet.hosts().next().expect("host");
    backup_remote_conditions(&Rules::default(), host, T0 + 100 * HOUR, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert!(host.runbooks.backups["pg"].remote.is_none());
}
