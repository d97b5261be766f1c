//! Tests of pruning: finished commands and resolved alerts beyond their per-host caps are
//! dropped oldest first (open ones never), counted, and their rows deleted by snapshots. And
//! (proptest) any event sequence keeps every cap, never accepts one (host, incarnation, seq)
//! twice, and a fold that snapshots and reloads equals a straight refold.

use std::collections::{BTreeMap, BTreeSet};

use opsfleet_proto::pb::{self, event::Body};
use proptest::prelude::*;

use super::bounds::*;
use super::caps_tests::{ev, heartbeat, inc, named_body, within_caps};
use super::*;

#[test]
fn finished_commands_beyond_the_cap_are_pruned_oldest_first_and_open_ones_never() {
    let extra = 10;
    let n = COMMANDS_KEPT + extra;
    let mut log = vec![ev(
        "web-01",
        inc(1),
        1,
        "heartbeat",
        heartbeat(&[], &[], &[]),
    )];
    let (mut blue_seq, mut web_seq) = (0, 1);
    // n open commands: none is pruned.
    for i in 0..n {
        blue_seq += 1;
        log.push(command_event(
            "blue",
            blue_seq,
            issued(&format!("c{i:04}"), "web-01"),
        ));
    }
    let (fleet, _) = fold_storing(&log);
    assert_eq!(fleet.commands().count(), n);
    assert!(fleet.host("web-01").unwrap().truncated.is_empty());
    // They finish in order: the oldest finished ones go.
    for i in 0..n {
        web_seq += 1;
        log.push(command_event(
            "web-01",
            web_seq,
            completed(&format!("c{i:04}")),
        ));
    }
    let (live, stored) = fold_storing(&log);
    assert_eq!(live.commands().count(), COMMANDS_KEPT);
    assert!(live.command("c0000").is_none());
    assert!(live.command(&format!("c{:04}", n - 1)).is_some());
    assert_eq!(
        live.host("web-01").unwrap().truncated.commands,
        extra as u64
    );
    // The pruned rows were deleted from what the snapshots stored.
    assert_eq!(live.rows(), stored.clone().into_iter().collect::<Vec<_>>());
    let mut back = Fleet::from_rows(stored.into_iter().collect()).unwrap();
    assert_eq!(back.digest(), live.digest());
    // The reloaded ledger prunes like the live one.
    let mut live = live;
    for fleet in [&mut live, &mut back] {
        fleet.apply(&command_event(
            "blue",
            blue_seq + 1,
            issued("late", "web-01"),
        ));
        fleet.apply(&command_event("web-01", web_seq + 1, completed("late")));
    }
    assert_eq!(back.digest(), live.digest());
    assert!(back.command(&format!("c{extra:04}")).is_none());

    // Lifecycle events for commands never issued are prunable whatever their state.
    let mut fleet = Fleet::new();
    for i in 0..n {
        let (_, body) = named_body(9, &format!("{i:04}"));
        fleet.apply(&command_event("web-02", i as u64 + 1, body));
    }
    assert_eq!(fleet.commands().count(), COMMANDS_KEPT);
    assert_eq!(
        fleet.host("web-02").unwrap().truncated.commands,
        extra as u64
    );
}

fn transition(id: u64, host: &str, state: pb::AlertState) -> Body {
    Body::AlertTransition(pb::AlertTransition {
        alert_id: format!("disk_crit/{host}//d{id}"),
        rule: "disk_crit".to_owned(),
        target_host: host.to_owned(),
        subject: format!("/d{id}"),
        state: state as i32,
        epoch: 1,
        at_unix_ms: 1_790_000_000_000 + id as i64,
        ..Default::default()
    })
}

#[test]
fn resolved_alerts_beyond_the_cap_are_pruned_oldest_first_and_firing_ones_never() {
    let extra = 7;
    let n = (ALERTS_KEPT + extra) as u64;
    let mut log = vec![ev(
        "web-01",
        inc(1),
        1,
        "heartbeat",
        heartbeat(&[], &[], &[]),
    )];
    let mut seq = 0;
    let mut push = |log: &mut Vec<EventEnvelope>, body| {
        seq += 1;
        log.push(command_event("blue", seq, body));
    };
    for i in 0..n {
        push(&mut log, transition(i, "web-01", pb::AlertState::Firing));
    }
    let (fleet, _) = fold_storing(&log);
    assert_eq!(
        fleet.alerts().alerts.len() as u64,
        n,
        "firing alerts are never pruned"
    );
    for i in 0..n {
        push(&mut log, transition(i, "web-01", pb::AlertState::Resolved));
    }
    let (live, stored) = fold_storing(&log);
    let alerts = &live.alerts().alerts;
    assert_eq!(alerts.len(), ALERTS_KEPT);
    assert!(!alerts.contains_key("disk_crit/web-01//d0"));
    assert!(alerts.contains_key(&format!("disk_crit/web-01//d{}", n - 1)));
    assert_eq!(live.host("web-01").unwrap().truncated.alerts, extra as u64);
    assert_eq!(live.rows(), stored.clone().into_iter().collect::<Vec<_>>());
    let back = Fleet::from_rows(stored.into_iter().collect()).unwrap();
    assert_eq!(back.digest(), live.digest());
}

fn command_event(by: &str, seq: u64, body: Body) -> EventEnvelope {
    let module = if by == "blue" {
        COORDINATOR_MODULE
    } else {
        "agent"
    };
    ev(by, inc(1), seq, module, body)
}

fn issued(id: &str, target: &str) -> Body {
    Body::CommandIssued(pb::CommandIssued {
        command_id: id.to_owned(),
        target: target.to_owned(),
        epoch: 1,
        issued_by: "alice".to_owned(),
        action: "noop".to_owned(),
        deadline_unix_ms: 1_790_000_900_000,
        ..Default::default()
    })
}

fn completed(id: &str) -> Body {
    Body::CommandCompleted(pb::CommandCompleted {
        command_id: id.to_owned(),
        detail: "ok".to_owned(),
    })
}

/// Folds `log`, collecting dirty rows the way snapshots store them (empty = deleted).
fn fold_storing(log: &[EventEnvelope]) -> (Fleet, BTreeMap<String, Vec<u8>>) {
    let mut fleet = Fleet::new();
    let mut stored = BTreeMap::new();
    for e in log {
        fleet.apply(e);
        store_rows(&mut stored, fleet.take_dirty_rows());
    }
    (fleet, stored)
}

fn store_rows(stored: &mut BTreeMap<String, Vec<u8>>, rows: Vec<(String, Vec<u8>)>) {
    for (key, value) in rows {
        if value.is_empty() {
            stored.remove(&key);
        } else {
            stored.insert(key, value);
        }
    }
}

/// One step of a generated event sequence.
#[derive(Debug, Clone)]
struct Step {
    host: u8,
    incarnation: u32,
    seq: u64,
    kind: u8,
    name: u16,
    /// Snapshot the dirty rows after this event.
    snapshot: bool,
}

fn step() -> impl Strategy<Value = Step> {
    // Half of the events from the newest incarnation, so that its gap ranges pile up.
    let incarnation = prop_oneof![Just(13u32), 0u32..14];
    let snapshot = prop::bool::weighted(0.05);
    (
        0u8..2,
        incarnation,
        1u64..2000,
        0u8..12,
        0u16..200,
        snapshot,
    )
        .prop_map(|(host, incarnation, seq, kind, name, snapshot)| Step {
            host,
            incarnation,
            seq,
            kind,
            name,
            snapshot,
        })
}

fn event_of(s: &Step, i: usize) -> EventEnvelope {
    let host = ["web-01", "web-02"][usize::from(s.host)];
    let name = format!("n{}", s.name);
    match s.kind {
        // Coordinator command events, so that finished commands pile up on a host.
        10 => command_event("blue", i as u64 + 1, issued(&name, host)),
        11 => {
            let mut e = command_event(host, s.seq, completed(&name));
            e.incarnation = inc(s.incarnation);
            e
        }
        kind => {
            let (module, body) = named_body(kind, &name);
            ev(host, inc(s.incarnation), s.seq, module, body)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any event sequence keeps every per-host structure within its cap, never accepts one
    /// (host, incarnation, seq) twice, and a fold that snapshots and reloads its rows at any
    /// points equals a straight refold of the accepted events.
    #[test]
    fn caps_hold_and_a_reloaded_fold_equals_the_refold(
        steps in proptest::collection::vec(step(), 1..1000),
    ) {
        let mut live = Fleet::new();
        let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut accepted = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, s) in steps.iter().enumerate() {
            let e = event_of(s, i);
            if live.apply(&e).is_accepted() {
                prop_assert!(
                    seen.insert((e.host.clone(), e.incarnation, e.seq)),
                    "accepted twice: {} {} {}", e.host, e.incarnation, e.seq
                );
                accepted.push(e);
            }
            if s.snapshot {
                store_rows(&mut stored, live.take_dirty_rows());
                // A restart: the stored rows come back, nothing else.
                live = Fleet::from_rows(stored.clone().into_iter().collect()).unwrap();
            }
            if let Err(e) = within_caps(&live) {
                prop_assert!(false, "{}", e);
            }
        }
        let mut refold = Fleet::new();
        for e in &accepted {
            prop_assert!(refold.apply(e).is_accepted());
        }
        prop_assert_eq!(live.rows(), refold.rows());
        store_rows(&mut stored, live.take_dirty_rows());
        prop_assert_eq!(stored.into_iter().collect::<Vec<_>>(), refold.rows());
    }
}
