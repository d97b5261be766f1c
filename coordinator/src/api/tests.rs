//! Filtering and paging of the query API on a `Fleet` built by folding events.

use super::hosts::summary;
use super::status::{coordinator_views, host_page};
use super::*;
use crate::projection::presence::liveness;
use crate::projection::Fleet;
use opsfleet_proto::api::{
    BackupsRequest, HostsRequest, IncidentsRequest, Liveness, PageRequest, Role, StatusRequest,
};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::EventEnvelope;
use proptest::prelude::*;
use uuid::Uuid;

const T0: i64 = 1_790_000_000_000;

struct Folder {
    fleet: Fleet,
    seqs: std::collections::BTreeMap<String, u64>,
}

impl Folder {
    fn new() -> Self {
        Folder {
            fleet: Fleet::new(),
            seqs: Default::default(),
        }
    }

    /// Folds `body` as the next event of `host`, at agent time `at`.
    fn fold(&mut self, host: &str, module: &str, at: i64, body: Body) {
        let seq = self.seqs.entry(host.to_owned()).or_default();
        *seq += 1;
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq: *seq,
            time_unix_ms: at,
            module: module.to_owned(),
            incarnation: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
            body,
        };
        assert!(self.fleet.apply(&ev).is_accepted());
    }

    fn heartbeat(&mut self, host: &str, at: i64) {
        let body = Body::Heartbeat(pb::Heartbeat {
            agent_version: "0.1.0".into(),
            interval_ms: 10_000,
            modules: vec![pb::ModuleStatus {
                name: "heartbeat".into(),
                kind: "heartbeat".into(),
                state: pb::ModuleRunState::Running as i32,
                expected_interval_ms: 10_000,
            }],
            ..Default::default()
        });
        self.fold(host, "heartbeat", at, body);
    }

    fn log_match(&mut self, host: &str, path: &str, at: i64, excerpt: &str) {
        let body = Body::LogMatch(pb::LogMatch {
            path: path.into(),
            pattern: "error".into(),
            excerpt: excerpt.into(),
            lines: 1,
            ..Default::default()
        });
        self.fold(host, "log", at, body);
    }

    fn backup_ok(&mut self, host: &str, job: &str, at: i64, archive: &str) {
        let body = Body::BackupCompleted(pb::BackupCompleted {
            job: job.into(),
            run_id: format!("run-{at}"),
            archive: archive.into(),
            size_bytes: 4096,
            files: 2,
            duration_ms: 120,
            ..Default::default()
        });
        self.fold(host, "backup", at, body);
    }

    fn backup_failed(&mut self, host: &str, job: &str, at: i64, reason: &str) {
        let body = Body::BackupFailed(pb::BackupFailed {
            job: job.into(),
            run_id: format!("run-{at}"),
            reason: reason.into(),
        });
        self.fold(host, "backup", at, body);
    }
}

#[test]
fn cursors_order_by_host_then_key_and_round_trip() {
    // `web-01/x` must come before `web-01-b/...`: ordering is by the (host, key) pair, not
    // by the cursor text ('-' sorts before '/').
    assert!(Cursor::row("web-01", "/var/log/x") < Cursor::row("web-01-b", "/a"));
    for c in [
        Cursor::host("web-01"),
        Cursor::row("db-01", "/var/log/app.log"),
    ] {
        assert_eq!(Cursor::parse(&c.text()), c);
    }
}

#[test]
fn liveness_follows_the_declared_heartbeat_interval() {
    let mut f = Folder::new();
    f.heartbeat("web-01", T0);
    f.fold("db-01", "disk", T0, Body::Disk(pb::DiskUsage::default()));
    let web = f.fleet.host("web-01").unwrap();
    let seen = f.fleet.seen_unix_ms(web);
    assert_eq!(seen, T0, "no arrival observed: the agent's stamp");
    assert_eq!(liveness(web, seen, T0 + 5_000), Liveness::Up);
    assert_eq!(liveness(web, seen, T0 + 20_000), Liveness::Up);
    assert_eq!(liveness(web, seen, T0 + 20_001), Liveness::Late);
    assert_eq!(liveness(web, seen, T0 + 50_001), Liveness::Lost);
    // No heartbeat ever: no interval to judge by.
    let db = f.fleet.host("db-01").unwrap();
    assert_eq!(
        liveness(db, f.fleet.seen_unix_ms(db), T0),
        Liveness::Unknown
    );
}

#[test]
fn hosts_and_the_host_lost_rule_judge_by_the_same_heartbeat_interval() {
    use crate::alerts::rules::{host_is_lost, Rules};
    let mut h = crate::projection::HostState::new("web-01");
    for (name, ms) in [("a-fast", 1_000), ("z-slow", 10_000)] {
        h.modules.insert(
            name.to_owned(),
            crate::projection::ModuleInfo {
                kind: "heartbeat".to_owned(),
                expected_interval_ms: ms,
                ..Default::default()
            },
        );
    }
    assert_eq!(h.heartbeat_interval_ms(), Some(10_000));
    let rules = Rules {
        min_silence_ms: 0,
        ..Rules::default()
    };
    // 15 s of silence: within 2 x 10 s for both, though 15 x the fast module's interval.
    let now = T0 + 15_000;
    assert_eq!(liveness(&h, T0, now), Liveness::Up);
    assert_eq!(host_is_lost(&rules, &h, T0, now), None);
    assert_eq!(summary(&h, T0, now, false).heartbeat_interval_ms, 10_000);
}

#[test]
fn liveness_goes_by_arrival_on_the_bus_not_by_the_agents_clock() {
    let mut f = Folder::new();
    // The agent's clock is ten minutes behind: its stamps say T0 - 10 min.
    let behind = T0 - 600_000;
    f.heartbeat("web-01", behind);
    f.fleet.note_arrival("web-01", "heartbeat", T0);
    let web = f.fleet.host("web-01").unwrap().clone();
    assert_eq!(f.fleet.seen_unix_ms(&web), T0);
    assert_eq!(
        liveness(&web, f.fleet.seen_unix_ms(&web), T0 + 5_000),
        Liveness::Up
    );
    // An older arrival (a backlog replayed out of order) never moves it back.
    f.fleet.note_arrival("web-01", "heartbeat", T0 - 1_000);
    assert_eq!(f.fleet.seen_unix_ms(&web), T0);
    // Arrivals are observations: folding the same log elsewhere gives an equal fleet.
    let mut other = Folder::new();
    other.heartbeat("web-01", behind);
    assert!(other.fleet == f.fleet);
    assert_eq!(other.fleet.digest(), f.fleet.digest());
}

#[test]
fn hosts_filter_by_glob_and_liveness() {
    let mut f = Folder::new();
    f.heartbeat("web-01", T0);
    f.heartbeat("web-02", T0 - 120_000);
    f.heartbeat("db-01", T0 - 120_000);
    f.log_match("web-01", "/var/log/app.log", T0, "ERROR a");
    f.backup_failed("db-01", "nightly", T0 - 120_000, "disk full");
    let names = |req: &HostsRequest| -> Vec<String> {
        hosts::hosts(&f.fleet, req, T0)
            .0
            .into_iter()
            .map(|h| h.host)
            .collect()
    };
    let req = |host: Option<&str>, state: Option<&str>| HostsRequest {
        host: host.map(Into::into),
        state: state.map(Into::into),
        ..Default::default()
    };
    assert_eq!(names(&req(None, None)), ["db-01", "web-01", "web-02"]);
    assert_eq!(names(&req(Some("web-*"), None)), ["web-01", "web-02"]);
    assert_eq!(names(&req(None, Some("lost"))), ["db-01", "web-02"]);
    assert_eq!(names(&req(Some("web-*"), Some("lost"))), ["web-02"]);
    assert_eq!(names(&req(Some("web-*"), Some("up"))), ["web-01"]);
    let (all, _) = hosts::hosts(&f.fleet, &req(None, None), T0);
    assert_eq!((all[0].failing_backups, all[0].incidents), (1, 0));
    assert_eq!((all[1].failing_backups, all[1].incidents), (0, 1));
    assert_eq!(all[1].heartbeat_interval_ms, 10_000);
}

#[test]
fn hosts_page_through_a_large_fleet_with_a_bounded_default() {
    let mut f = Folder::new();
    for i in 0..2_500 {
        f.heartbeat(&format!("web-{i:04}"), T0);
    }
    let (first, next) = hosts::hosts(&f.fleet, &HostsRequest::default(), T0);
    assert_eq!(first.len(), opsfleet_proto::api::HOSTS_PAGE_DEFAULT);
    assert_eq!(next.as_deref(), Some("web-0999"));
    // A huge limit is capped, and a page stays well under NATS's 1 MB max_payload.
    let req = HostsRequest {
        page: PageRequest::first(Some(1_000_000)),
        ..Default::default()
    };
    let (capped, _) = hosts::hosts(&f.fleet, &req, T0);
    assert_eq!(capped.len(), opsfleet_proto::api::HOSTS_PAGE_MAX);
    let bytes = serde_json::to_vec(&capped).unwrap().len();
    eprintln!("full hosts page: {bytes} bytes");
    assert!(bytes < 900 * 1024, "a full hosts page is {bytes} bytes");
    // Following `next` visits every host once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let req = HostsRequest {
            page: PageRequest {
                limit: Some(700),
                after: after.clone(),
            },
            ..Default::default()
        };
        let (page, next) = hosts::hosts(&f.fleet, &req, T0);
        seen.extend(page.into_iter().map(|h| h.host));
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 2_500);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn status_pages_are_bounded_and_chain() {
    let mut f = Folder::new();
    for i in 0..450 {
        f.heartbeat(&format!("web-{i:03}"), T0);
    }
    let (first, next) = host_page(&f.fleet, &StatusRequest::default());
    assert_eq!(first.len(), opsfleet_proto::api::STATUS_PAGE_DEFAULT);
    let req = StatusRequest {
        page: PageRequest {
            limit: Some(10_000),
            after: next,
        },
        ..Default::default()
    };
    let (rest, next) = host_page(&f.fleet, &req);
    assert_eq!(first.len() + rest.len(), 450);
    assert_eq!(next, None);
    // One host by name is still one host.
    let one = StatusRequest {
        host: Some("web-007".into()),
        ..Default::default()
    };
    assert_eq!(host_page(&f.fleet, &one).0.len(), 1);
}

#[test]
fn backups_show_last_success_failure_and_pruning_per_job() {
    let mut f = Folder::new();
    f.backup_ok("db-01", "nightly", T0, "nightly-1.tar.zst");
    f.backup_ok("db-01", "nightly", T0 + 10, "nightly-2.tar.zst");
    f.fold(
        "db-01",
        "backup",
        T0 + 11,
        Body::BackupPruned(pb::BackupPruned {
            job: "nightly".into(),
            archives: vec!["nightly-1.tar.zst".into()],
            bytes_freed: 4096,
        }),
    );
    f.backup_failed("db-01", "wal", T0 + 20, "source missing");
    f.backup_ok("web-01", "site", T0, "site-1.tar.zst");
    let (all, next) = backups(&f.fleet, &BackupsRequest::default());
    assert_eq!(next, None);
    let rows: Vec<(&str, &str, &str)> = all
        .iter()
        .map(|b| (b.host.as_str(), b.job.as_str(), b.state.as_str()))
        .collect();
    assert_eq!(
        rows,
        [
            ("db-01", "nightly", "ok"),
            ("db-01", "wal", "failed"),
            ("web-01", "site", "ok")
        ]
    );
    let nightly = &all[0];
    let ok = nightly.last_success.as_ref().unwrap();
    assert_eq!(
        (ok.archive.as_str(), ok.size_bytes, ok.files),
        ("nightly-2.tar.zst", 4096, 2)
    );
    assert_eq!(
        (
            nightly.archives_kept,
            nightly.pruned_archives,
            nightly.pruned_bytes
        ),
        (1, 1, 4096)
    );
    assert_eq!(
        all[1].last_failure.as_ref().map(|f| f.reason.as_str()),
        Some("source missing")
    );
    // Host glob, job filter, and paging by (host, job).
    let db = BackupsRequest {
        host: Some("db-*".into()),
        ..Default::default()
    };
    assert_eq!(backups(&f.fleet, &db).0.len(), 2);
    let wal = BackupsRequest {
        job: Some("wal".into()),
        ..Default::default()
    };
    assert_eq!(backups(&f.fleet, &wal).0[0].job, "wal");
    let one = BackupsRequest {
        page: PageRequest::first(Some(1)),
        ..Default::default()
    };
    let (p1, n1) = backups(&f.fleet, &one);
    assert_eq!(
        (p1[0].job.as_str(), n1.as_deref()),
        ("nightly", Some("db-01/nightly"))
    );
    let (p2, n2) = backups(
        &f.fleet,
        &BackupsRequest {
            page: PageRequest {
                limit: Some(1),
                after: n1,
            },
            ..Default::default()
        },
    );
    assert_eq!(
        (p2[0].job.as_str(), n2.as_deref()),
        ("wal", Some("db-01/wal"))
    );
}

#[test]
fn incidents_filter_by_host_and_since_and_cut_excerpts() {
    let mut f = Folder::new();
    f.log_match("web-01", "/var/log/app.log", T0 - 7_200_000, "ERROR old");
    f.log_match("web-01", "/var/log/app.log", T0 - 60_000, "ERROR new");
    f.log_match("web-01", "/var/log/old.log", T0 - 7_200_000, "ERROR stale");
    f.log_match("db-01", "/var/log/pg.log", T0, &"x".repeat(5000));
    let (all, _) = incidents(&f.fleet, &IncidentsRequest::default());
    assert_eq!(all.len(), 3);
    assert!(all[0].last_excerpt.len() <= opsfleet_proto::api::EXCERPT_MAX_BYTES);
    let app = &all[1];
    assert_eq!(
        (app.host.as_str(), app.path.as_str()),
        ("web-01", "/var/log/app.log")
    );
    assert_eq!(app.count, 2);
    assert_eq!(app.first_seen_unix_ms, T0 - 7_200_000);
    assert_eq!(app.last_seen_unix_ms, T0 - 60_000);
    assert_eq!(app.last_excerpt, "ERROR new");
    let recent = IncidentsRequest {
        host: Some("web-*".into()),
        since_unix_ms: Some(T0 - 3_600_000),
        ..Default::default()
    };
    let (rows, _) = incidents(&f.fleet, &recent);
    let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/var/log/app.log"]);
}

fn transition(id: &str, host: &str, state: pb::AlertState, at: i64) -> Body {
    Body::AlertTransition(pb::AlertTransition {
        alert_id: id.into(),
        rule: "disk_full".into(),
        target_host: host.into(),
        subject: "/".into(),
        state: state as i32,
        severity: "critical".into(),
        summary: "/ is 97% full".into(),
        epoch: 3,
        at_unix_ms: at,
        ..Default::default()
    })
}

#[test]
fn alerts_show_state_transition_and_notifications_and_filter() {
    use opsfleet_proto::api::AlertsRequest;
    use opsfleet_proto::COORDINATOR_MODULE as C;
    let mut f = Folder::new();
    let (db, web) = ("disk_full/db-01/root", "disk_full/web-01/root");
    f.fold(
        "blue",
        C,
        T0,
        transition(db, "db-01", pb::AlertState::Pending, T0),
    );
    f.fold(
        "blue",
        C,
        T0 + 1,
        transition(db, "db-01", pb::AlertState::Firing, T0 + 60_000),
    );
    for outcome in [
        pb::NotifyOutcome::Failed,
        pb::NotifyOutcome::Sent,
        pb::NotifyOutcome::DryRun,
        pb::NotifyOutcome::RateLimited,
    ] {
        let body = Body::NotificationSent(pb::NotificationSent {
            alert_id: db.into(),
            route: "ops".into(),
            outcome: outcome as i32,
            epoch: 3,
            ..Default::default()
        });
        f.fold("blue", C, T0 + 2, body);
    }
    f.fold(
        "blue",
        C,
        T0 + 3,
        transition(web, "web-01", pb::AlertState::Pending, T0),
    );
    let (all, next) = alerts(&f.fleet, &AlertsRequest::default(), 0);
    assert_eq!(next, None);
    assert_eq!(all.len(), 2);
    let a = &all[0];
    assert_eq!((a.host.as_str(), a.state.as_str()), ("db-01", "firing"));
    assert_eq!(a.last_transition, "pending -> firing");
    assert_eq!(
        (a.since_unix_ms, a.notifications_sent, a.transitions),
        (T0 + 60_000, 2, 2),
        "sent and dry_run count; failed and rate_limited do not"
    );
    assert_eq!(all[1].last_transition, "new -> pending");
    let firing = AlertsRequest {
        state: Some("firing".into()),
        ..Default::default()
    };
    assert_eq!(alerts(&f.fleet, &firing, 0).0.len(), 1);
    let web_only = AlertsRequest {
        host: Some("web-*".into()),
        ..Default::default()
    };
    assert_eq!(alerts(&f.fleet, &web_only, 0).0[0].key, web);
}

#[test]
fn a_host_declared_lost_stays_lost_until_it_reports_again() {
    use opsfleet_proto::COORDINATOR_MODULE as C;
    let mut f = Folder::new();
    f.heartbeat("web-01", T0);
    let verdict = Body::HostLiveness(pb::HostLiveness {
        target_host: "web-01".into(),
        lost: true,
        last_seen_unix_ms: T0,
        interval_ms: 10_000,
        epoch: 3,
    });
    f.fold("blue", C, T0 + 25_000, verdict);
    let req = HostsRequest::default();
    // By the clock alone the host is merely late; the active coordinator's verdict says lost.
    let (rows, _) = hosts::hosts(&f.fleet, &req, T0 + 25_000);
    assert_eq!(
        (rows[0].liveness.as_str(), rows[0].declared_lost),
        ("lost", true)
    );
    f.heartbeat("web-01", T0 + 26_000);
    let (rows, _) = hosts::hosts(&f.fleet, &req, T0 + 26_000);
    assert_eq!(
        (rows[0].liveness.as_str(), rows[0].declared_lost),
        ("up", false)
    );
}

/// A full page of the bulkiest rows stays under NATS's default 1 MB `max_payload`.
#[test]
fn full_pages_of_bulky_rows_fit_in_one_message() {
    use opsfleet_proto::api::{ROWS_PAGE_MAX, STATUS_PAGE_MAX};
    let mut f = Folder::new();
    for i in 0..STATUS_PAGE_MAX.max(ROWS_PAGE_MAX) + 10 {
        let host = format!("web-{i:04}-with-a-rather-long-host-name-for-the-test");
        let modules = (0..10)
            .map(|m| pb::ModuleStatus {
                name: format!("module-number-{m}"),
                kind: "backup".into(),
                state: pb::ModuleRunState::Running as i32,
                expected_interval_ms: 60_000,
            })
            .collect();
        let hb = Body::Heartbeat(pb::Heartbeat {
            modules,
            ..Default::default()
        });
        f.fold(&host, "heartbeat", T0, hb);
        for d in 0..5 {
            let disk = Body::Disk(pb::DiskUsage {
                path: format!("/srv/data/volume-{d}"),
                used_basis_points: 5000,
                total_bytes: u64::MAX,
                avail_bytes: u64::MAX,
                ..Default::default()
            });
            f.fold(&host, "disk", T0, disk);
        }
        let path = format!("/var/log/applications/service-{i}/current/application.log");
        f.log_match(&host, &path, T0, &"E".repeat(8192));
    }
    let req = StatusRequest {
        page: PageRequest::first(Some(usize::MAX)),
        ..Default::default()
    };
    let (page, next) = host_page(&f.fleet, &req);
    assert_eq!(page.len(), STATUS_PAGE_MAX);
    assert!(next.is_some());
    let bytes = serde_json::to_vec(&page).unwrap().len();
    eprintln!("full status page: {bytes} bytes");
    assert!(bytes < 900 * 1024, "a full status page is {bytes} bytes");
    let req = IncidentsRequest {
        page: PageRequest::first(Some(usize::MAX)),
        ..Default::default()
    };
    let (page, _) = incidents(&f.fleet, &req);
    assert_eq!(page.len(), ROWS_PAGE_MAX);
    let bytes = serde_json::to_vec(&page).unwrap().len();
    eprintln!("full incidents page: {bytes} bytes");
    assert!(bytes < 900 * 1024, "a full incidents page is {bytes} bytes");
}

proptest! {
    /// Whatever the page size, following `next` yields exactly the unpaged rows, in order.
    #[test]
    fn paging_concatenates_to_the_whole(
        hosts in proptest::collection::btree_set("[a-c]{1,2}(-[a-b])?", 0..12),
        jobs in 1usize..4,
        limit in 1usize..6,
    ) {
        let mut f = Folder::new();
        for h in &hosts {
            for j in 0..jobs {
                f.backup_ok(h, &format!("job{j}"), T0, "a.tar.zst");
            }
        }
        let all = |req: BackupsRequest| backups(&f.fleet, &req);
        let (whole, none) = all(BackupsRequest { page: PageRequest::first(Some(ROWS_MAX)), ..Default::default() });
        prop_assert_eq!(none, None);
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = all(BackupsRequest { page: PageRequest { limit: Some(limit), after: after.clone() }, ..Default::default() });
            prop_assert!(page.len() <= limit);
            paged.extend(page);
            match next { Some(n) => after = Some(n), None => break }
        }
        prop_assert_eq!(paged, whole);
    }
}

const ROWS_MAX: usize = opsfleet_proto::api::ROWS_PAGE_MAX;

#[test]
fn the_ledger_and_the_leadership_history_name_who_acted_in_which_role() {
    let mut f = Folder::new();
    let coordinator = opsfleet_proto::COORDINATOR_MODULE;
    f.fold(
        "blue",
        coordinator,
        T0,
        Body::CommandIssued(pb::CommandIssued {
            command_id: "0190-c1".into(),
            target: "web-01".into(),
            epoch: 3,
            issued_by: "carol".into(),
            issued_role: "admin".into(),
            action: "config_apply".into(),
            module: "disk".into(),
            deadline_unix_ms: T0 + 60_000,
        }),
    );
    f.fold(
        "blue",
        coordinator,
        T0 + 1,
        Body::Leadership(pb::LeadershipChanged {
            coordinator: "blue".into(),
            color: "blue".into(),
            role: pb::LeaderRole::Standby as i32,
            epoch: 3,
            reason: "released".into(),
            requested_by: "alice".into(),
            requested_role: "operator".into(),
        }),
    );
    let views = command_views(&f.fleet, &Default::default());
    assert_eq!(
        (views[0].issued_by.as_str(), views[0].issued_role),
        ("carol", Some(Role::Admin))
    );
    let json = serde_json::to_value(&views[0]).unwrap();
    assert_eq!(json["issued_role"], "admin");
    let coordinators = coordinator_views(&f.fleet);
    let step = &coordinators[0].history[0];
    assert_eq!(
        (step.requested_by.as_str(), step.requested_role),
        ("alice", Some(Role::Operator))
    );
}

#[test]
fn failover_targets_are_checked_before_the_lease_is_touched() {
    use commands::{check_failover_target, FailoverError};
    let mut f = Folder::new();
    f.fold(
        "blue",
        opsfleet_proto::COORDINATOR_MODULE,
        T0,
        Body::Leadership(pb::LeadershipChanged {
            coordinator: "blue".into(),
            color: "blue".into(),
            role: pb::LeaderRole::Active as i32,
            epoch: 3,
            ..Default::default()
        }),
    );
    let answering: std::collections::BTreeSet<String> = ["green".to_owned()].into();
    let none = Default::default();
    assert!(check_failover_target(&f.fleet, "blue", "green", &answering).is_ok());
    assert!(matches!(
        check_failover_target(&f.fleet, "blue", "blue", &answering),
        Err(FailoverError::AlreadyActive { .. })
    ));
    let err = check_failover_target(&f.fleet, "red", "nosuch", &answering).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown coordinator nosuch; the lease was not touched (known coordinators: blue, green, red)"
    );
    assert_eq!(
        check_failover_target(&f.fleet, "red", "blue", &none)
            .unwrap_err()
            .to_string(),
        "coordinator blue does not answer; the lease was not touched (see `opsctl leader`)"
    );
}

#[test]
fn a_lost_hosts_modules_show_unknown_not_their_last_state() {
    use opsfleet_proto::api::ModuleState;
    let mut h = crate::projection::HostState::new("web-01");
    h.modules.insert(
        "hb".to_owned(),
        crate::projection::ModuleInfo {
            kind: "heartbeat".to_owned(),
            state: ModuleState::Running,
            expected_interval_ms: 1_000,
            ..Default::default()
        },
    );
    let up = summary(&h, T0, T0 + 500, false);
    assert_eq!(up.liveness, Liveness::Up);
    assert_eq!(up.modules[0].state, ModuleState::Running);
    for (now, declared) in [(T0 + 60_000, false), (T0 + 500, true)] {
        let lost = summary(&h, T0, now, declared);
        assert_eq!(lost.liveness, Liveness::Lost);
        assert_eq!(lost.modules[0].state, ModuleState::Unknown);
    }
}
