//! Alerts that tell the truth: maintenance pages nothing, a newly active coordinator waits
//! out a grace before judging silence, a firing alert's detail follows its value, and a
//! traceback's summary quotes its exception line.

use super::*;
use crate::alerts::rules::{headline, in_grace};

impl World {
    /// The active coordinator issues `action` (drain / undrain) to `host`.
    fn issue(&mut self, host: &str, action: &str, at: i64) {
        self.own_seq += 1;
        self.fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: "blue".to_owned(),
            seq: self.own_seq,
            time_unix_ms: at,
            module: COORDINATOR_MODULE.to_owned(),
            incarnation: Uuid::nil(),
            body: Body::CommandIssued(pb::CommandIssued {
                command_id: format!("c{:06}", self.own_seq),
                target: host.to_owned(),
                epoch: 3,
                action: action.to_owned(),
                ..Default::default()
            }),
        });
    }
}

fn no_floor() -> Rules {
    Rules {
        min_silence_ms: 0,
        startup_grace_ms: 0,
        ..Rules::default()
    }
}

#[test]
fn a_host_in_maintenance_pages_nothing_and_its_open_alerts_resolve() {
    let rules = rules_with(RuleKind::DiskCrit, 0, 0);
    let rules = Rules {
        min_silence_ms: 0,
        ..rules
    };
    let mut w = World::new();
    let mut mem = Memory::default();
    w.heartbeat("web-01", T0);
    w.disk("web-01", T0, pb::DiskLevel::Crit, 9700);
    let ts = w.tick(&rules, &mut mem, T0 + 100);
    assert_eq!(
        states(&ts),
        [("disk_crit/web-01//data".to_owned(), State::Firing)]
    );
    w.issue("web-01", "drain", T0 + 200);
    assert!(w.fleet.maintenance().contains("web-01"));
    // Silent for far longer than the dead-man limit, disk still critical: nothing fires,
    // and the open disk alert resolves.
    let ts = w.tick(&rules, &mut mem, T0 + 60_000);
    assert_eq!(
        states(&ts),
        [("disk_crit/web-01//data".to_owned(), State::Resolved)]
    );
    assert!(w.tick(&rules, &mut mem, T0 + 120_000).is_empty());
    // Undrain: the host is judged again (and it is silent).
    w.issue("web-01", "undrain", T0 + 120_500);
    assert!(w.fleet.maintenance().is_empty());
    let ts = w.tick(&rules, &mut mem, T0 + 121_000);
    assert_eq!(
        states(&ts),
        [
            ("disk_crit/web-01//data".to_owned(), State::Firing),
            ("host_lost/web-01/".to_owned(), State::Firing)
        ]
    );
}

#[test]
fn the_maintenance_set_is_kept_until_the_next_fold() {
    let mut w = World::new();
    w.issue("web-01", "drain", T0);
    let first = w.fleet.maintenance();
    assert!(std::sync::Arc::ptr_eq(&first, &w.fleet.maintenance()));
    w.issue("web-01", "undrain", T0 + 1);
    assert!(w.fleet.maintenance().is_empty());
}

#[test]
fn maintenance_changes_no_row_and_the_newest_of_drain_and_undrain_wins() {
    let mut w = World::new();
    w.heartbeat("web-01", T0);
    let _ = w.fleet.take_dirty_rows();
    w.issue("web-01", "drain", T0);
    w.issue("web-02", "drain", T0);
    w.issue("web-02", "undrain", T0 + 1);
    w.issue("web-01", "noop", T0 + 2);
    assert_eq!(
        w.fleet
            .maintenance()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["web-01"]
    );
    // Only command (and coordinator) rows changed: the host rows (and so the digest of a log without
    // drains) are what they were.
    let dirty = w.fleet.take_dirty_rows();
    let keys: Vec<&str> = dirty.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.iter().all(|k| !k.starts_with("host/")), "{keys:?}");
}

#[test]
fn no_liveness_alert_within_the_grace_after_becoming_active() {
    let rules = Rules {
        startup_grace_ms: 30_000,
        ..no_floor()
    };
    let mut w = World::new();
    w.heartbeat("web-01", T0);
    let active_at = T0 + 20_000;
    let mut mem = Memory::since(active_at);
    // Silent for 20 s (20 intervals) when the term begins: not judged for 30 s.
    assert!(w.tick(&rules, &mut mem, active_at + 1_000).is_empty());
    assert!(w.tick(&rules, &mut mem, active_at + 29_000).is_empty());
    // The agent restarts within the grace and reports: nothing ever fired.
    w.heartbeat("web-01", active_at + 29_500);
    w.disk("web-01", active_at + 29_500, pb::DiskLevel::Ok, 100);
    assert!(w.tick(&rules, &mut mem, active_at + 30_000).is_empty());
    // After the grace, silence counts again.
    let ts = w.tick(&rules, &mut mem, active_at + 40_000);
    assert_eq!(
        states(&ts),
        [("host_lost/web-01/".to_owned(), State::Firing)]
    );
}

#[test]
fn the_grace_is_at_least_three_heartbeat_intervals_and_keeps_open_alerts() {
    let rules = no_floor();
    let mut w = World::new();
    w.heartbeat("web-01", T0);
    let mut mem = Memory::default();
    let ts = w.tick(&rules, &mut mem, T0 + 10_000);
    assert_eq!(
        states(&ts),
        [("host_lost/web-01/".to_owned(), State::Firing)]
    );
    // A new term: the firing alert is neither resolved nor repeated within 3 x 1 s.
    let mut mem = Memory::since(T0 + 20_000);
    assert!(w.tick(&rules, &mut mem, T0 + 22_900).is_empty());
    assert!(in_grace(
        &rules,
        w.fleet.host("web-01").unwrap(),
        T0 + 22_900,
        Some(T0 + 20_000)
    ));
    assert!(!in_grace(
        &rules,
        w.fleet.host("web-01").unwrap(),
        T0 + 23_000,
        Some(T0 + 20_000)
    ));
    assert!(
        w.tick(&rules, &mut mem, T0 + 23_000).is_empty(),
        "still lost"
    );
}

#[test]
fn a_firing_alerts_detail_follows_its_value_without_a_new_transition() {
    let rules = rules_with(RuleKind::DiskCrit, 0, 0);
    let mut w = World::new();
    let mut mem = Memory::default();
    w.heartbeat("web-01", T0);
    w.disk("web-01", T0, pb::DiskLevel::Crit, 9100);
    let ts = w.tick(&rules, &mut mem, T0 + 100);
    assert_eq!(ts.len(), 1);
    let id = "disk_crit/web-01//data";
    let before = w.fleet.alerts().alerts[id].clone();
    assert_eq!(before.summary, "/data on web-01 is 91.0% full");
    assert!(w.tick(&rules, &mut mem, T0 + 200).is_empty(), "same value");
    w.disk("web-01", T0 + 300, pb::DiskLevel::Crit, 9500);
    let ts = w.tick(&rules, &mut mem, T0 + 400);
    assert_eq!(
        (ts.len(), ts[0].from, ts[0].to),
        (1, Some(State::Firing), State::Firing)
    );
    let after = &w.fleet.alerts().alerts[id];
    assert_eq!(after.summary, "/data on web-01 is 95.0% full");
    assert_eq!(after.value, "95.0%");
    // Not a transition: same id (so no new notification), count and since.
    assert_eq!(
        (&after.transition_id, after.transitions, after.since_unix_ms),
        (
            &before.transition_id,
            before.transitions,
            before.since_unix_ms
        )
    );
    assert!(
        w.tick(&rules, &mut mem, T0 + 500).is_empty(),
        "folded: quiet again"
    );
}

#[test]
fn a_traceback_is_summarised_by_its_exception_line() {
    let tb = "Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\n  File \"app.py\", line 2, in main\n    raise ValueError(\"bad input\")\nValueError: bad input";
    assert_eq!(headline(tb), "ValueError: bad input");
    assert_eq!(headline("ERROR db down\nretrying"), "ERROR db down");
    assert_eq!(headline(""), "");
    let chained = format!("{tb}\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'k'");
    assert_eq!(headline(&chained), "KeyError: 'k'");
    let cut = "Traceback (most recent call last):\n  File \"app.py\", line 3…";
    assert_eq!(headline(cut), "Traceback (most recent call last):");
}

#[test]
fn a_disk_dropped_from_the_config_resolves_its_alert() {
    let rules = rules_with(RuleKind::DiskCrit, 0, 0);
    let mut w = World::new();
    let mut mem = Memory::default();
    let config = |toml: &str| {
        Body::ModuleState(pb::ModuleState {
            module: "disk".to_owned(),
            kind: "disk".to_owned(),
            state: pb::ModuleRunState::Running as i32,
            config_fingerprint: format!("fp-{}", toml.len()),
            config_toml: toml.to_owned(),
            ..Default::default()
        })
    };
    w.heartbeat("web-01", T0);
    w.agent(
        "web-01",
        "disk",
        T0,
        config("type = \"disk\"\npaths = [\"/\", \"/data\"]\n"),
    );
    w.disk("web-01", T0, pb::DiskLevel::Crit, 9700);
    let ts = w.tick(&rules, &mut mem, T0 + 100);
    assert_eq!(
        states(&ts),
        [("disk_crit/web-01//data".to_owned(), State::Firing)]
    );
    // Rolled back to one mount: /data leaves the host and its alert resolves.
    w.agent(
        "web-01",
        "disk",
        T0 + 200,
        config("type = \"disk\"\npaths = [\"/\"]\n"),
    );
    w.heartbeat("web-01", T0 + 300);
    assert!(!w.fleet.host("web-01").unwrap().disks.contains_key("/data"));
    let ts = w.tick(&rules, &mut mem, T0 + 400);
    assert_eq!(
        states(&ts),
        [("disk_crit/web-01//data".to_owned(), State::Resolved)]
    );
}

proptest! {
    /// Whatever the silence and the ticks, nothing of liveness fires within the grace after
    /// becoming active, and a host in maintenance never gets any transition to firing.
    #[test]
    fn no_liveness_page_within_the_grace_and_none_in_maintenance(
        silent_for in 0i64..120_000,
        ticks in proptest::collection::vec(0i64..40_000, 1..20),
        drained in any::<bool>(),
    ) {
        let rules = Rules { startup_grace_ms: 30_000, ..no_floor() };
        let mut w = World::new();
        w.heartbeat("web-01", T0);
        w.disk("web-01", T0, pb::DiskLevel::Crit, 9900);
        if drained {
            w.issue("web-01", "drain", T0);
        }
        let active = T0 + silent_for;
        let mut mem = Memory::since(active);
        let mut ticks = ticks;
        ticks.sort_unstable();
        for at in ticks {
            let ts = w.tick(&rules, &mut mem, active + at);
            for t in &ts {
                let liveness = RuleKind::parse(&t.rule).is_some_and(RuleKind::is_liveness);
                prop_assert!(!(liveness && at < 30_000), "{t:?} at +{at}");
                prop_assert!(!(drained && t.to == State::Firing), "{t:?} while drained");
            }
        }
    }

    /// The newest of a host's drain and undrain commands decides its maintenance.
    #[test]
    fn the_newest_drain_or_undrain_decides(actions in proptest::collection::vec(any::<bool>(), 1..12)) {
        let mut w = World::new();
        w.heartbeat("web-01", T0);
        for (i, drain) in actions.iter().enumerate() {
            w.issue("web-01", if *drain { "drain" } else { "undrain" }, T0 + i as i64);
        }
        let last = *actions.last().unwrap_or(&false);
        prop_assert_eq!(w.fleet.maintenance().contains("web-01"), last);
    }
}

#[test]
fn a_sub_second_heartbeat_is_shown_in_milliseconds() {
    let mut w = World::new();
    w.heartbeat_every("web-01", T0, 500);
    let ts = w.tick(&no_floor(), &mut Memory::default(), T0 + 7_000);
    assert_eq!(
        ts[0].summary,
        "web-01 silent for 7s (heartbeat every 500ms)"
    );
}
