//! Unit tests of the runbook modules' fold.

use super::*;
use opsfleet_proto::api::{ProbeStatus, SentinelStatus};
use opsfleet_proto::pb;

fn apply(r: &mut Runbooks, version: &Version, at: i64, body: &Body) -> bool {
    r.apply(version, at, body, &mut Truncated::default())
}

fn v(seq: u64) -> Version {
    ("inc".to_owned(), seq)
}

fn log(path: &str, excerpt: &str) -> Body {
    Body::LogMatch(pb::LogMatch {
        path: path.into(),
        pattern: "error".into(),
        excerpt: excerpt.into(),
        lines: 1,
        ..Default::default()
    })
}

#[test]
fn incidents_count_every_match_and_keep_the_newest_excerpt() {
    let mut r = Runbooks::default();
    apply(&mut r, &v(1), 10, &log("/var/log/app.log", "ERROR one"));
    apply(&mut r, &v(3), 30, &log("/var/log/app.log", "ERROR three"));
    apply(
        &mut r,
        &v(2),
        20,
        &log("/var/log/app.log", "ERROR two (late)"),
    );
    apply(
        &mut r,
        &v(4),
        40,
        &Body::LogSuppressed(pb::LogSuppressed {
            path: "/var/log/app.log".into(),
            count: 17,
            since_unix_ms: 35,
        }),
    );
    let inc = &r.incidents["/var/log/app.log"];
    assert_eq!((inc.count, inc.suppressed), (3, 17));
    assert_eq!(inc.last_excerpt, "ERROR three");
    assert_eq!((inc.first_at_unix_ms, inc.last_at_unix_ms), (10, 30));
    assert_eq!(inc.recent_at_unix_ms, [10, 20, 30]);
}

#[test]
fn health_transitions_and_heartbeat_summaries() {
    let mut r = Runbooks::default();
    apply(
        &mut r,
        &v(1),
        100,
        &Body::Health(pb::HealthCheck {
            check: "api".into(),
            probe: "http".into(),
            status: pb::HealthStatus::Failed as i32,
            detail: "503".into(),
            consecutive_failures: 3,
            ..Default::default()
        }),
    );
    assert_eq!(r.health["api"].status, ProbeStatus::Failed);
    assert_eq!(r.health["api"].since_unix_ms, 100);
    // A heartbeat that agrees keeps `since`; one that disagrees corrects the status.
    let hb = |status: pb::HealthStatus| {
        Body::Heartbeat(pb::Heartbeat {
            health: vec![pb::HealthSummary {
                check: "api".into(),
                status: status as i32,
                ..Default::default()
            }],
            ..Default::default()
        })
    };
    assert!(!apply(&mut r, &v(2), 200, &hb(pb::HealthStatus::Failed)));
    assert_eq!(r.health["api"].since_unix_ms, 100);
    apply(&mut r, &v(3), 300, &hb(pb::HealthStatus::Ready));
    assert_eq!(r.health["api"].status, ProbeStatus::Ready);
}

#[test]
fn slow_and_certificate_conditions_fold_from_events_and_heartbeats() {
    use opsfleet_proto::api::CertLevel;
    let mut r = Runbooks::default();
    let ev = |status: pb::HealthStatus, slow: bool, cert: pb::CertLevel| {
        Body::Health(pb::HealthCheck {
            check: "api".into(),
            probe: "http".into(),
            status: status as i32,
            slow,
            latency_p95_ms: if slow { 900 } else { 20 },
            latency_bound_ms: 250,
            cert_level: cert as i32,
            cert_not_after_unix_ms: 5_000,
            ..Default::default()
        })
    };
    apply(
        &mut r,
        &v(1),
        100,
        &ev(pb::HealthStatus::Ready, false, pb::CertLevel::Ok),
    );
    apply(
        &mut r,
        &v(2),
        200,
        &ev(pb::HealthStatus::Ready, true, pb::CertLevel::Warn),
    );
    let s = &r.health["api"];
    assert!(s.slow);
    assert_eq!((s.latency_p95_ms, s.latency_bound_ms), (900, 250));
    assert_eq!(
        (s.cert_level, s.cert_not_after_unix_ms),
        (CertLevel::Warn, 5_000)
    );
    assert_eq!(s.since_unix_ms, 200, "since the check's last event");
    // The heartbeat carries the conditions too (it corrects a lost event).
    let hb = Body::Heartbeat(pb::Heartbeat {
        health: vec![pb::HealthSummary {
            check: "api".into(),
            status: pb::HealthStatus::Ready as i32,
            slow: false,
            latency_p95_ms: 30,
            cert_level: pb::CertLevel::Crit as i32,
            cert_not_after_unix_ms: 4_000,
        }],
        ..Default::default()
    });
    apply(&mut r, &v(3), 300, &hb);
    let s = &r.health["api"];
    assert!(!s.slow);
    assert_eq!((s.latency_p95_ms, s.latency_bound_ms), (30, 250));
    assert_eq!(
        (s.cert_level, s.cert_not_after_unix_ms),
        (CertLevel::Crit, 4_000)
    );
    assert_eq!(s.since_unix_ms, 200, "a heartbeat that agrees keeps it");
}

#[test]
fn backup_catalog_follows_runs_and_pruning() {
    let mut r = Runbooks::default();
    let started = |run: &str| {
        Body::BackupStarted(pb::BackupStarted {
            job: "db".into(),
            run_id: run.into(),
            sources: vec![],
        })
    };
    let done = |run: &str, archive: &str| {
        Body::BackupCompleted(pb::BackupCompleted {
            job: "db".into(),
            run_id: run.into(),
            archive: archive.into(),
            size_bytes: 10,
            files: 2,
            ..Default::default()
        })
    };
    apply(&mut r, &v(1), 1, &started("r1"));
    assert_eq!(r.backups["db"].running.as_deref(), Some("r1"));
    apply(&mut r, &v(2), 2, &done("r1", "db-1.tar.zst"));
    apply(&mut r, &v(3), 3, &started("r2"));
    apply(
        &mut r,
        &v(4),
        4,
        &Body::BackupFailed(pb::BackupFailed {
            job: "db".into(),
            run_id: "r2".into(),
            reason: "disk full".into(),
        }),
    );
    apply(&mut r, &v(5), 5, &done("r3", "db-3.tar.zst"));
    apply(
        &mut r,
        &v(6),
        6,
        &Body::BackupPruned(pb::BackupPruned {
            job: "db".into(),
            archives: vec!["db-1.tar.zst".into()],
            bytes_freed: 10,
        }),
    );
    let job = &r.backups["db"];
    assert_eq!(job.running, None);
    assert_eq!(job.archives, ["db-3.tar.zst"]);
    assert_eq!((job.pruned_archives, job.pruned_bytes), (1, 10));
    assert_eq!(
        job.last_success.as_ref().map(|s| s.run_id.as_str()),
        Some("r3")
    );
    assert_eq!(
        job.last_failure.as_ref().map(|f| f.reason.as_str()),
        Some("disk full")
    );
}

#[test]
fn sentinel_and_janitor() {
    let mut r = Runbooks::default();
    apply(
        &mut r,
        &v(1),
        5,
        &Body::Sentinel(pb::SentinelState {
            path: "/run/app/heartbeat".into(),
            status: pb::SentinelStatus::Missing as i32,
            ..Default::default()
        }),
    );
    assert_eq!(
        r.sentinels["/run/app/heartbeat"].status,
        SentinelStatus::Missing
    );
    let report = |files, dry_run| {
        Body::Janitor(pb::JanitorReport {
            root: "/srv/runs".into(),
            dry_run,
            removed_files: files,
            bytes: files * 100,
            ..Default::default()
        })
    };
    apply(&mut r, &v(2), 6, &report(3, true));
    apply(&mut r, &v(3), 7, &report(4, false));
    let j = &r.janitor["/srv/runs"];
    assert_eq!(
        (j.total_removed_files, j.total_bytes, j.last_removed_files),
        (4, 400, 4)
    );
}

#[test]
fn the_remote_copy_folds_its_newest_outcomes_and_caps_the_names() {
    let mut r = Runbooks::default();
    let completed = Body::BackupCompleted(pb::BackupCompleted {
        job: "pg".into(),
        run_id: "r1".into(),
        archive: "pg-a".into(),
        ..Default::default()
    });
    apply(&mut r, &v(1), 10, &completed);
    // A job without a remote copy serialises as before (rows and digests unchanged).
    let row = serde_json::to_string(&r.backups["pg"]).expect("json");
    assert!(!row.contains("remote"), "{row}");

    let synced = |archive: &str, pruned: usize| {
        Body::BackupSynced(pb::BackupSynced {
            job: "pg".into(),
            archive: archive.into(),
            destination: "path:/mnt/nas/pg".into(),
            bytes: 100,
            duration_ms: 1,
            remote_pruned: vec!["old".into(); pruned],
        })
    };
    assert!(apply(&mut r, &v(3), 30, &synced("pg-b", 2)));
    // A late, older outcome counts its pruning but does not replace the newer sync.
    assert!(apply(&mut r, &v(2), 20, &synced("pg-a", 1)));
    assert!(apply(
        &mut r,
        &v(4),
        40,
        &Body::BackupDiscrepancy(pb::BackupDiscrepancy {
            job: "pg".into(),
            destination: "path:/mnt/nas/pg".into(),
            missing: (0..50).map(|i| format!("pg-{i}")).collect(),
            extra: vec![],
            mismatched: vec!["pg-b".into()],
            remote_archives: 7,
        }),
    ));
    let remote = r.backups["pg"].remote.clone().expect("remote");
    assert_eq!(remote.destination, "path:/mnt/nas/pg");
    assert_eq!(remote.remote_pruned, 3);
    let s = remote.last_synced.clone().expect("synced");
    assert_eq!((s.archive.as_str(), s.at_unix_ms), ("pg-b", 30));
    let d = remote.reconciled.clone().expect("reconciled");
    assert_eq!(d.missing.len(), opsfleet_proto::api::DISCREPANCY_NAMES_KEPT);
    assert_eq!(
        (d.missing_count, d.mismatched_count, d.extra_count),
        (50, 1, 0)
    );
    assert_eq!(remote.state(), "discrepancy");
    assert!(apply(
        &mut r,
        &v(5),
        50,
        &Body::BackupSyncFailed(pb::BackupSyncFailed {
            job: "pg".into(),
            archive: "pg-c".into(),
            destination: "path:/mnt/nas/pg".into(),
            reason: "No space left on device".into(),
        }),
    ));
    assert_eq!(
        r.backups["pg"].remote.as_ref().map(|r| r.state()),
        Some("failed")
    );
}
