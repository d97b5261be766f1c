//! The remote backup rules driven from folded events through the state machine: a failed
//! copy fires until a later copy succeeds, a copy older than `max_age` is stale, a
//! reconciliation with missing/extra/mismatched archives fires until a clean one; a job
//! without a remote copy raises none of them. The restore test rules: a failed test fires
//! until a later one passes; a declared `verify_restore` without a pass in its period plus
//! `window` is missing; a declaration the config drops expects nothing more.

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

/// The transitions at `now` of the rules `keep` selects, recorded back into the fleet the way
/// the edge does (as coordinator events), so the next evaluation sees them.
fn transitions(
    fleet: &mut Fleet,
    memory: &mut Memory,
    now: i64,
    keep: impl Fn(&str) -> bool,
) -> Vec<(String, State, String)> {
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
        .filter(|t| keep(&t.rule))
        .map(|t| (t.rule.clone(), t.to, t.summary.clone()))
        .collect()
}

/// The remote backup alerts' transitions at `now`.
fn firing(fleet: &mut Fleet, memory: &mut Memory, now: i64) -> Vec<(String, State, String)> {
    transitions(fleet, memory, now, |r| {
        r.starts_with("backup_sync") || r == "backup_discrepancy"
    })
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

/// The backup module's `module_state` carrying `toml` (job `pg`, plus `extra` job keys).
fn backup_module(extra: &str) -> Body {
    let toml = format!(
        "type = \"backup\"\n[[jobs]]\nname = \"pg\"\nsources = [\"/srv/pg\"]\n\
         destination = \"/var/backups/pg\"\n{extra}\n"
    );
    Body::ModuleState(pb::ModuleState {
        module: "backup".to_owned(),
        kind: "backup".to_owned(),
        state: pb::ModuleRunState::Running as i32,
        reason: "started".to_owned(),
        // Any text naming this config uniquely will do here.
        config_fingerprint: toml.replace('\n', "|"),
        config_toml: toml,
    })
}

fn tested(passed: bool, reason: &str) -> Body {
    Body::RestoreTested(pb::RestoreTested {
        job: "pg".to_owned(),
        archive: "pg-20260101T000000.000Z.tar.zst".to_owned(),
        source: DEST.to_owned(),
        passed,
        files: 3,
        check: if passed { "passed" } else { "failed" }.to_owned(),
        reason: reason.to_owned(),
        requested_by: "schedule".to_owned(),
        ..Default::default()
    })
}

/// The restore test alerts' transitions at `now`.
fn restore_alerts(
    fleet: &mut Fleet,
    memory: &mut Memory,
    now: i64,
) -> Vec<(String, State, String)> {
    transitions(fleet, memory, now, |r| r.starts_with("restore_test"))
}

#[test]
fn a_failed_restore_test_fires_until_a_later_test_passes() {
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    fleet.apply(&event(1, T0, tested(true, "")));
    assert!(restore_alerts(&mut fleet, &mut memory, T0 + 1000).is_empty());
    let why = "the verify_check command failed: \"/usr/bin/pg_restore\" exited 1; stderr: bad dump";
    fleet.apply(&event(2, T0 + HOUR, tested(false, why)));
    let ts = restore_alerts(&mut fleet, &mut memory, T0 + HOUR + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("restore_test_failed", State::Firing)
    );
    assert!(
        ts[0].2.contains("bad dump") && ts[0].2.contains(DEST),
        "{ts:?}"
    );
    // No period declared: only the failure, never `missing`, however long.
    assert!(restore_alerts(&mut fleet, &mut memory, T0 + 1000 * HOUR).is_empty());
    fleet.apply(&event(3, T0 + 2 * HOUR, tested(true, "")));
    let ts = restore_alerts(&mut fleet, &mut memory, T0 + 2000 * HOUR);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("restore_test_failed", State::Resolved)
    );
}

#[test]
fn a_declared_test_without_a_pass_in_its_period_plus_window_is_missing() {
    let window = Rules::default()
        .get(RuleKind::RestoreTestMissing)
        .expect("rule")
        .window_ms;
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    fleet.apply(&event(1, T0, backup_module("verify_restore = \"24h\"")));
    {
        let t = fleet.hosts().next().expect("host").runbooks.backups["pg"]
            .restore_test
            .clone()
            .expect("declared");
        assert_eq!(
            (t.every_ms, t.declared_at_unix_ms),
            (Some(24 * HOUR as u64), T0)
        );
    }
    // Never tested: counts from the declaration.
    assert!(restore_alerts(&mut fleet, &mut memory, T0 + 24 * HOUR + window - 1000).is_empty());
    let ts = restore_alerts(&mut fleet, &mut memory, T0 + 24 * HOUR + window + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("restore_test_missing", State::Firing)
    );
    assert!(
        ts[0].2.contains("since verify_restore was declared"),
        "{ts:?}"
    );
    // A pass resolves it; the next one is due a period later.
    let t1 = T0 + 40 * HOUR;
    fleet.apply(&event(2, t1, tested(true, "")));
    let ts = restore_alerts(&mut fleet, &mut memory, t1 + 1000);
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("restore_test_missing", State::Resolved)
    );
    // A failed test does not count as a pass: `failed` fires, and `missing` once the
    // newest pass is too old.
    fleet.apply(&event(
        3,
        t1 + 24 * HOUR,
        tested(false, "archive is corrupt"),
    ));
    let ts = restore_alerts(&mut fleet, &mut memory, t1 + 24 * HOUR + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(ts[0].0, "restore_test_failed");
    let ts = restore_alerts(&mut fleet, &mut memory, t1 + 24 * HOUR + window + 1000);
    assert_eq!(ts.len(), 1, "{ts:?}");
    assert_eq!(
        (ts[0].0.as_str(), ts[0].1),
        ("restore_test_missing", State::Firing)
    );
    assert!(ts[0].2.contains("newest passing restore test is"), "{ts:?}");
}

#[test]
fn a_declaration_the_config_drops_raises_no_missing_test() {
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    fleet.apply(&event(1, T0, backup_module("verify_restore = \"1h\"")));
    // Reconfigured without the test: nothing is expected any more.
    fleet.apply(&event(2, T0 + 1000, backup_module("")));
    assert!(restore_alerts(&mut fleet, &mut memory, T0 + 100 * HOUR).is_empty());
    let host = fleet.hosts().next().expect("host");
    let t = host.runbooks.backups["pg"]
        .restore_test
        .as_ref()
        .expect("row");
    assert_eq!(t.every_ms, None);
    // Declared again with another period: counted from then.
    fleet.apply(&event(
        3,
        T0 + 200 * HOUR,
        backup_module("verify_restore = \"2h\""),
    ));
    let host = fleet.hosts().next().expect("host");
    let t = host.runbooks.backups["pg"]
        .restore_test
        .as_ref()
        .expect("row");
    assert_eq!(
        (t.every_ms, t.declared_at_unix_ms),
        (Some(2 * HOUR as u64), T0 + 200 * HOUR)
    );
}
