//! Unit tests of the rules and the alert state machine, and property tests with flapping input.

use super::*;
use crate::alerts::{liveness_body, notification_of, transition_body, undelivered};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use proptest::prelude::*;
use uuid::Uuid;

const T0: i64 = 1_790_000_000_000;

struct World {
    fleet: Fleet,
    seq: u64,
    own_seq: u64,
}

impl World {
    fn new() -> Self {
        World {
            fleet: Fleet::new(),
            seq: 0,
            own_seq: 0,
        }
    }

    fn agent(&mut self, host: &str, module: &str, at: i64, body: Body) {
        self.seq += 1;
        self.fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq: self.seq,
            time_unix_ms: at,
            module: module.to_owned(),
            incarnation: Uuid::nil(),
            body,
        });
    }

    fn heartbeat(&mut self, host: &str, at: i64) {
        self.heartbeat_every(host, at, 1000);
    }

    /// A heartbeat declaring `ms` as its interval (the disk module reports every 2 s).
    fn heartbeat_every(&mut self, host: &str, at: i64, ms: u64) {
        let module = |name: &str, ms| pb::ModuleStatus {
            name: name.to_owned(),
            kind: name.to_owned(),
            state: pb::ModuleRunState::Running as i32,
            expected_interval_ms: ms,
        };
        self.agent(
            host,
            "heartbeat",
            at,
            Body::Heartbeat(pb::Heartbeat {
                interval_ms: ms,
                modules: vec![module("heartbeat", ms), module("disk", 2000)],
                ..Default::default()
            }),
        );
    }

    fn disk(&mut self, host: &str, at: i64, level: pb::DiskLevel, bp: u32) {
        self.agent(
            host,
            "disk",
            at,
            Body::Disk(pb::DiskUsage {
                path: "/data".to_owned(),
                level: level as i32,
                used_basis_points: bp,
                ..Default::default()
            }),
        );
    }

    /// Records transitions the way the edge does: as coordinator events folded back.
    fn record(&mut self, ts: &[Transition]) {
        for t in ts {
            let mut bodies = vec![transition_body(t, 3)];
            bodies.extend(liveness_body(t, 3));
            for body in bodies {
                self.own_seq += 1;
                self.fleet.apply(&EventEnvelope {
                    id: Uuid::now_v7(),
                    host: "blue".to_owned(),
                    seq: self.own_seq,
                    time_unix_ms: t.at_unix_ms,
                    module: COORDINATOR_MODULE.to_owned(),
                    incarnation: Uuid::nil(),
                    body,
                });
            }
        }
    }

    fn tick(&mut self, rules: &Rules, memory: &mut Memory, now: i64) -> Vec<Transition> {
        let ts = evaluate(rules, &self.fleet, memory, now);
        self.record(&ts);
        ts
    }
}

fn rules_with(kind: RuleKind, for_ms: i64, resolve_after_ms: i64) -> Rules {
    let mut rules = Rules::default();
    for r in &mut rules.rules {
        if r.kind == kind {
            r.timing.for_ms = for_ms;
            r.timing.resolve_after_ms = resolve_after_ms;
        }
    }
    rules
}

fn states(ts: &[Transition]) -> Vec<(String, State)> {
    ts.iter().map(|t| (t.alert_id.clone(), t.to)).collect()
}

#[test]
fn disk_crit_goes_pending_firing_resolved_with_for_and_resolve_after() {
    let rules = rules_with(RuleKind::DiskCrit, 3000, 2000);
    let mut w = World::new();
    let mut mem = Memory::default();
    let id = "disk_crit/web-01//data".to_owned();
    w.heartbeat("web-01", T0);
    w.disk("web-01", T0, pb::DiskLevel::Crit, 9700);
    assert_eq!(
        states(&w.tick(&rules, &mut mem, T0)),
        [(id.clone(), State::Pending)]
    );
    assert!(w.tick(&rules, &mut mem, T0 + 1000).is_empty(), "too early");
    w.heartbeat("web-01", T0 + 2000);
    let fired = w.tick(&rules, &mut mem, T0 + 3000);
    assert_eq!(states(&fired), [(id.clone(), State::Firing)]);
    assert_eq!(fired[0].value, "97.0%");
    assert_eq!(fired[0].severity, Severity::Critical);
    // Folded back: evaluating again decides nothing new.
    assert!(w.tick(&rules, &mut mem, T0 + 3500).is_empty());

    w.disk("web-01", T0 + 4000, pb::DiskLevel::Ok, 5000);
    w.heartbeat("web-01", T0 + 4000);
    assert!(
        w.tick(&rules, &mut mem, T0 + 4000).is_empty(),
        "clear, waiting"
    );
    assert!(w.tick(&rules, &mut mem, T0 + 5000).is_empty());
    let resolved = w.tick(&rules, &mut mem, T0 + 6000);
    assert_eq!(states(&resolved), [(id.clone(), State::Resolved)]);
    let rec = &w.fleet.alerts().alerts[&id];
    assert!(rec.notifiable());
    let n = notification_of(rec, "blue", 3);
    assert_eq!(
        (n.state.as_str(), n.id.as_str()),
        ("resolved", rec.transition_id.as_str())
    );
}

#[test]
fn a_pending_alert_that_clears_resolves_quietly() {
    let rules = rules_with(RuleKind::DiskCrit, 10_000, 0);
    let mut w = World::new();
    let mut mem = Memory::default();
    w.heartbeat("web-01", T0);
    w.disk("web-01", T0, pb::DiskLevel::Crit, 9700);
    w.tick(&rules, &mut mem, T0);
    w.disk("web-01", T0 + 1000, pb::DiskLevel::Ok, 100);
    let ts = w.tick(&rules, &mut mem, T0 + 1000);
    assert_eq!(ts[0].to, State::Resolved);
    let rec = &w.fleet.alerts().alerts["disk_crit/web-01//data"];
    assert!(!rec.notifiable());
    assert!(undelivered(&w.fleet, |_| vec!["ops".into()], T0 + 1000, 60_000).is_empty());
}

#[test]
fn dead_man_host_lost_and_module_silent() {
    let rules = Rules {
        min_silence_ms: 0,
        ..Rules::default()
    };
    let mut w = World::new();
    let mut mem = Memory::default();
    w.heartbeat("web-01", T0);
    w.disk("web-01", T0, pb::DiskLevel::Ok, 100);
    w.heartbeat("db-01", T0);
    w.disk("db-01", T0, pb::DiskLevel::Ok, 100);
    assert!(
        w.tick(&rules, &mut mem, T0 + 2000).is_empty(),
        "2 intervals is not more"
    );
    // web-01 keeps its heartbeat but its disk module goes quiet; db-01 goes silent.
    w.heartbeat("web-01", T0 + 4000);
    assert!(
        evaluate(
            &Rules::default(),
            &w.fleet,
            &mut Memory::default(),
            T0 + 4500
        )
        .is_empty(),
        "below the default min_silence floor"
    );
    let ts = w.tick(&rules, &mut mem, T0 + 4500);
    assert_eq!(
        states(&ts),
        [
            ("host_lost/db-01/".to_owned(), State::Firing),
            ("module_silent/web-01/disk".to_owned(), State::Firing)
        ]
    );
    assert_eq!(ts[0].liveness, Some((T0, 1000)));
    let live = &w.fleet.alerts().liveness["db-01"];
    assert!(live.lost);
    // db-01 returns: lost resolves and liveness says so.
    w.heartbeat("db-01", T0 + 5000);
    w.disk("db-01", T0 + 5000, pb::DiskLevel::Ok, 100);
    let ts = w.tick(&rules, &mut mem, T0 + 5000);
    assert_eq!(
        states(&ts),
        [("host_lost/db-01/".to_owned(), State::Resolved)]
    );
    assert!(!w.fleet.alerts().liveness["db-01"].lost);
}

#[test]
fn dead_man_rules_go_by_arrival_not_by_the_agents_clock() {
    let rules = Rules {
        min_silence_ms: 0,
        ..Rules::default()
    };
    let mut w = World::new();
    let mut mem = Memory::default();
    // web-01's clock is ten minutes behind, db-01's ten minutes ahead; both report every
    // second and their events reach the bus on time.
    let skew = 600_000;
    for t in (0..=4).map(|i| T0 + i * 1000) {
        w.heartbeat("web-01", t - skew);
        w.disk("web-01", t - skew, pb::DiskLevel::Ok, 100);
        w.heartbeat("db-01", t + skew);
        w.disk("db-01", t + skew, pb::DiskLevel::Ok, 100);
        for (host, module) in [
            ("web-01", "heartbeat"),
            ("web-01", "disk"),
            ("db-01", "heartbeat"),
            ("db-01", "disk"),
        ] {
            w.fleet.note_arrival(host, module, t);
        }
    }
    assert!(
        w.tick(&rules, &mut mem, T0 + 4500).is_empty(),
        "a clock set back is not silence"
    );
    // db-01 stops: its stamps from the future must not keep it alive.
    for t in (5..=8).map(|i| T0 + i * 1000) {
        w.heartbeat("web-01", t - skew);
        w.disk("web-01", t - skew, pb::DiskLevel::Ok, 100);
        w.fleet.note_arrival("web-01", "heartbeat", t);
        w.fleet.note_arrival("web-01", "disk", t);
    }
    let ts = w.tick(&rules, &mut mem, T0 + 8500);
    assert_eq!(
        states(&ts),
        [("host_lost/db-01/".to_owned(), State::Firing)],
        "a clock set forward does not hide a silent host"
    );
    assert_eq!(ts[0].liveness, Some((T0 + 4000, 1000)));
}

#[test]
fn log_errors_count_over_the_window() {
    let mut rules = Rules::default();
    for r in &mut rules.rules {
        if r.kind == RuleKind::LogErrors {
            r.threshold = 2;
            r.window_ms = 10_000;
        }
    }
    let mut w = World::new();
    let mut mem = Memory::default();
    let err = |excerpt: &str| {
        Body::LogMatch(pb::LogMatch {
            path: "/var/log/app.log".to_owned(),
            pattern: "error".to_owned(),
            excerpt: excerpt.to_owned(),
            lines: 1,
            ..Default::default()
        })
    };
    w.agent("web-01", "log", T0, err("ERROR one"));
    assert!(
        w.tick(&rules, &mut mem, T0 + 100).is_empty(),
        "below threshold"
    );
    w.agent("web-01", "log", T0 + 1000, err("ERROR two"));
    let ts = w.tick(&rules, &mut mem, T0 + 1100);
    assert_eq!(
        states(&ts),
        [(
            "log_errors/web-01//var/log/app.log".to_owned(),
            State::Firing
        )]
    );
    assert!(ts[0].summary.contains("ERROR two"), "{}", ts[0].summary);
    assert!(w.tick(&rules, &mut mem, T0 + 9000).is_empty());
    let ts = w.tick(&rules, &mut mem, T0 + 10_500);
    assert_eq!(ts[0].to, State::Resolved);
}

#[test]
fn backup_health_and_sentinel_rules() {
    let rules = rules_with(RuleKind::HealthFailed, 0, 0);
    let rules = {
        let mut r = rules;
        for rule in &mut r.rules {
            if rule.kind == RuleKind::SentinelStale {
                rule.timing.for_ms = 0;
            }
        }
        r
    };
    let mut w = World::new();
    let mut mem = Memory::default();
    w.agent(
        "db-01",
        "backup",
        T0,
        Body::BackupFailed(pb::BackupFailed {
            job: "pg".into(),
            run_id: "r1".into(),
            reason: "disk full".into(),
        }),
    );
    w.agent(
        "db-01",
        "health",
        T0,
        Body::Health(pb::HealthCheck {
            check: "api".into(),
            status: pb::HealthStatus::Failed as i32,
            detail: "503".into(),
            ..Default::default()
        }),
    );
    w.agent(
        "db-01",
        "sentinel",
        T0,
        Body::Sentinel(pb::SentinelState {
            path: "/run/app.beat".into(),
            status: pb::SentinelStatus::Stale as i32,
            ..Default::default()
        }),
    );
    let mut got: Vec<String> = w
        .tick(&rules, &mut mem, T0)
        .into_iter()
        .map(|t| t.alert_id)
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "backup_failed/db-01/pg",
            "health_failed/db-01/api",
            "sentinel_stale/db-01//run/app.beat"
        ]
    );
    // A later success clears the failure; an old success is stale.
    w.agent(
        "db-01",
        "backup",
        T0 + 1000,
        Body::BackupCompleted(pb::BackupCompleted {
            job: "pg".into(),
            run_id: "r2".into(),
            archive: "pg-2.tar.zst".into(),
            ..Default::default()
        }),
    );
    let ts = w.tick(&rules, &mut mem, T0 + 1000);
    assert_eq!(
        states(&ts),
        [("backup_failed/db-01/pg".to_owned(), State::Resolved)]
    );
    let day = 27 * 3_600_000;
    let ts = w.tick(&rules, &mut mem, T0 + day);
    assert!(
        states(&ts).contains(&("backup_stale/db-01/pg".to_owned(), State::Firing)),
        "{ts:?}"
    );
}

#[test]
fn a_flapping_disk_is_held_firing_by_flap_suppression() {
    let mut rules = rules_with(RuleKind::DiskCrit, 0, 0);
    for r in &mut rules.rules {
        if r.kind == RuleKind::DiskCrit {
            r.timing.flap_max = 2;
            r.timing.flap_window_ms = 60_000;
        }
    }
    let mut w = World::new();
    let mut mem = Memory::default();
    let mut notifications = 0;
    for i in 0..60i64 {
        let now = T0 + i * 1000;
        let level = if i % 2 == 0 {
            pb::DiskLevel::Crit
        } else {
            pb::DiskLevel::Ok
        };
        w.disk("web-01", now, level, 9000);
        notifications += w
            .tick(&rules, &mut mem, now)
            .iter()
            .filter(|t| t.to != State::Pending)
            .count();
    }
    // fire, resolve, fire — then held firing for the rest of the window.
    assert_eq!(notifications, 3);
    assert_eq!(
        w.fleet.alerts().alerts["disk_crit/web-01//data"].state,
        Some(State::Firing)
    );
}

#[test]
fn undelivered_lists_each_current_transition_once_per_route() {
    let rules = rules_with(RuleKind::DiskCrit, 0, 0);
    let mut w = World::new();
    let mut mem = Memory::default();
    w.disk("web-01", T0, pb::DiskLevel::Crit, 9700);
    w.tick(&rules, &mut mem, T0);
    let routes = |_: &crate::projection::AlertRecord| vec!["ops".to_owned(), "chat".to_owned()];
    let todo = undelivered(&w.fleet, routes, T0, 60_000);
    assert_eq!(todo.len(), 2);
    let tid = todo[0].0.transition_id.clone();
    w.own_seq += 1;
    w.fleet.apply(&EventEnvelope {
        id: Uuid::now_v7(),
        host: "blue".to_owned(),
        seq: w.own_seq,
        time_unix_ms: T0,
        module: COORDINATOR_MODULE.to_owned(),
        incarnation: Uuid::nil(),
        body: Body::NotificationSent(pb::NotificationSent {
            alert_id: "disk_crit/web-01//data".into(),
            transition_id: tid,
            route: "ops".into(),
            outcome: pb::NotifyOutcome::Sent as i32,
            attempts: 1,
            epoch: 3,
            ..Default::default()
        }),
    });
    let todo = undelivered(&w.fleet, routes, T0, 60_000);
    assert_eq!(
        todo.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
        ["chat"]
    );
    assert!(
        undelivered(&w.fleet, routes, T0 + 60_001, 60_000).is_empty(),
        "too old"
    );
}

proptest! {
    /// The same bound end to end: disk samples folded into the fleet, `evaluate`, and the
    /// transitions folded back as events (what receivers would be sent).
    #[test]
    fn flapping_disk_through_the_fold_is_bounded(
        levels in proptest::collection::vec(any::<bool>(), 1..120),
        flap_max in 1u32..4,
    ) {
        let mut rules = rules_with(RuleKind::DiskCrit, 0, 0);
        for r in &mut rules.rules {
            if r.kind == RuleKind::DiskCrit {
                r.timing.flap_max = flap_max;
                r.timing.flap_window_ms = 20_000;
            }
        }
        let mut w = World::new();
        let mut mem = Memory::default();
        let mut firings = Vec::new();
        for (i, crit) in levels.iter().enumerate() {
            let now = T0 + i as i64 * 1000;
            let level = if *crit { pb::DiskLevel::Crit } else { pb::DiskLevel::Ok };
            w.disk("web-01", now, level, 9000);
            for t in w.tick(&rules, &mut mem, now) {
                if t.to == State::Firing {
                    firings.push(now);
                }
            }
            // Folded back, the same instant decides nothing more.
            prop_assert!(evaluate(&rules, &w.fleet, &mut mem.clone(), now).is_empty());
        }
        for f in &firings {
            let n = firings.iter().filter(|g| **g > f - 20_000 && *g <= f).count();
            prop_assert!(n <= flap_max as usize, "{n} firings within 20 s: {firings:?}");
        }
    }
}

#[path = "machine_truth_tests.rs"]
mod truth;
