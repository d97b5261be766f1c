//! The schedule's rules as properties: jitter within bounds and stable, at most one run per
//! slot however the ticks (and the terms running them) fall, maintenance deferring without
//! losing the slot, and the abandon rule of a run whose term ended.

use std::collections::BTreeMap;
use std::time::Duration;

use opsfleet_proto::pb;
use proptest::prelude::*;

use super::config::{DrillConfig, DrillKind};
use super::schedule::*;
use crate::projection::drills::{fold, DrillHistory};

fn drill(every_s: u64, jitter_s: u64) -> DrillConfig {
    DrillConfig {
        name: "notify".into(),
        kind: DrillKind::NotificationTest,
        every: Duration::from_secs(every_s),
        jitter: Duration::from_secs(jitter_s),
        grace: None,
        enabled: true,
        timeout: Duration::from_secs(60),
        group: None,
        hosts: Vec::new(),
        labels: Default::default(),
        job: None,
        module: None,
    }
}

fn event(phase: &str, run: &str, slot: i64, epoch: u64) -> pb::DrillRun {
    pb::DrillRun {
        drill: "notify".into(),
        kind: "notification_test".into(),
        phase: phase.into(),
        run_id: run.into(),
        slot_unix_ms: slot,
        epoch,
        requested_by: "schedule".into(),
        took_ms: 0,
        detail: String::new(),
    }
}

#[test]
fn a_slot_runs_once_then_waits_for_the_next() {
    let d = drill(60, 0);
    let mut drills: BTreeMap<String, DrillHistory> = BTreeMap::new();
    let now = 120_500;
    assert_eq!(
        decide(&d, None, None, 1, false, now),
        Due::Run {
            slot_unix_ms: 120_000
        }
    );
    fold(&mut drills, &event("started", "r1", 120_000, 1), now);
    let h = drills.get("notify");
    assert!(matches!(
        decide(&d, h, None, 1, false, now + 10),
        Due::Running { .. }
    ));
    // A new term finds the run open: it ended with its term.
    assert!(matches!(
        decide(&d, h, None, 2, false, now + 10),
        Due::Abandon { .. }
    ));
    fold(&mut drills, &event("passed", "r1", 120_000, 1), now + 20);
    let h = drills.get("notify");
    assert_eq!(
        decide(&d, h, None, 2, false, now + 30),
        Due::Wait {
            next_unix_ms: 180_000
        }
    );
    assert_eq!(next_due(&d, h, now + 30), 180_000);
    // Held by maintenance: deferred, and the slot still runs once maintenance ends.
    assert_eq!(
        decide(&d, h, None, 2, true, 180_001),
        Due::Deferred {
            slot_unix_ms: 180_000
        }
    );
    assert_eq!(
        decide(&d, h, None, 2, false, 200_000),
        Due::Run {
            slot_unix_ms: 180_000
        }
    );
    let mut off = d.clone();
    off.enabled = false;
    assert_eq!(decide(&off, h, None, 2, false, 200_000), Due::Disabled);
}

#[test]
fn a_coordinator_failover_run_survives_its_own_term_changes_until_its_timeout() {
    let d = DrillConfig {
        kind: DrillKind::CoordinatorFailover,
        ..drill(60, 0)
    };
    let mut drills = BTreeMap::new();
    let mut started = event("started", "r1", 60_000, 1);
    started.kind = "coordinator_failover".into();
    fold(&mut drills, &started, 60_000);
    let h = drills.get("notify");
    assert!(matches!(
        decide(&d, h, None, 5, false, 61_000),
        Due::Running { .. }
    ));
    assert!(matches!(
        decide(&d, h, None, 5, false, 60_000 + 60_000 + 30_001),
        Due::Abandon { .. }
    ));
}

#[test]
fn overdue_counts_from_the_last_pass_or_from_when_it_was_known() {
    let d = drill(10, 0); // overdue after 15 s
    assert_eq!(overdue(&d, None, 1_000, 16_000), None);
    assert_eq!(overdue(&d, None, 1_000, 16_001), Some(15_001));
    let mut drills = BTreeMap::new();
    fold(&mut drills, &event("started", "r1", 0, 1), 2_000);
    fold(&mut drills, &event("failed", "r1", 0, 1), 3_000);
    assert!(
        overdue(&d, drills.get("notify"), 50_000, 20_000).is_some(),
        "a failed run is no pass"
    );
    fold(&mut drills, &event("started", "r2", 10_000, 1), 19_000);
    fold(&mut drills, &event("passed", "r2", 10_000, 1), 19_500);
    assert_eq!(overdue(&d, drills.get("notify"), 0, 34_000), None);
    assert!(overdue(&d, drills.get("notify"), 0, 34_501).is_some());
}

proptest! {
    #[test]
    fn jitter_stays_within_bounds_and_is_stable(
        name in "[a-z]{1,12}", slot in 0i64..4_000_000_000_000, j in 0i64..100_000_000
    ) {
        let a = jitter_ms(&name, slot, j);
        prop_assert_eq!(a, jitter_ms(&name, slot, j));
        if j == 0 {
            prop_assert_eq!(a, 0);
        } else {
            prop_assert!((0..j).contains(&a));
        }
    }

    /// Any sequence of ticks, with terms changing and maintenance on and off, half the runs
    /// left open (a crash): every slot is claimed at most once, never before its jittered
    /// start, never while maintenance holds it.
    #[test]
    fn one_run_per_slot_across_terms_and_maintenance(
        every_s in 5u64..120,
        jitter_frac in 0u64..100,
        steps in proptest::collection::vec((1i64..20_000, any::<bool>(), 0u8..8), 1..300),
    ) {
        let jitter_s = every_s * jitter_frac / 100;
        let d = drill(every_s, jitter_s.min(every_s - 1));
        let mut drills = BTreeMap::new();
        let mut now = 1_700_000_000_000i64;
        let mut epoch = 1;
        let mut runs: Vec<i64> = Vec::new();
        for (i, (advance, held, flip)) in steps.into_iter().enumerate() {
            now += advance;
            if flip == 0 {
                epoch += 1;
            }
            let h = drills.get("notify");
            match decide(&d, h, None, epoch, held, now) {
                Due::Run { slot_unix_ms } => {
                    prop_assert!(now >= start_of(&d, slot_unix_ms));
                    prop_assert!(!runs.contains(&slot_unix_ms), "slot {} run twice", slot_unix_ms);
                    runs.push(slot_unix_ms);
                    let id = format!("r{i}");
                    fold(&mut drills, &event("started", &id, slot_unix_ms, epoch), now);
                    // Half the runs end in the same tick, the others stay open (a crash).
                    if i % 2 == 0 {
                        fold(&mut drills, &event("passed", &id, slot_unix_ms, epoch), now);
                    }
                }
                Due::Abandon { run_id, .. } => {
                    fold(&mut drills, &event("failed", &run_id, 0, epoch), now);
                }
                Due::Deferred { .. } => prop_assert!(held),
                Due::Wait { next_unix_ms } => prop_assert!(next_unix_ms > now),
                Due::Running { .. } | Due::Disabled => {}
            }
        }
        let mut sorted = runs.clone();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), runs.len());
    }
}
