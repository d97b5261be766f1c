//! `events_stream_full`: the condition against the stream's byte limit, and the alert it
//! drives through the state machine (fires at the threshold, resolves once it drops).

use super::*;
use crate::alerts::{evaluate_with, transition_body, Memory, State};
use crate::projection::Fleet;
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use uuid::Uuid;

const MIB: u64 = 1024 * 1024;

fn usage(bytes: u64, max: i64) -> StreamUsage {
    StreamUsage {
        bytes,
        max_bytes: max,
    }
}

#[test]
fn fires_at_the_rules_percent_of_the_byte_limit() {
    let rules = Rules::default();
    let max = 100 * MIB as i64;
    assert_eq!(
        stream_condition(&rules, "OPS_EVENTS", usage(79 * MIB, max)),
        None
    );
    let c = stream_condition(&rules, "OPS_EVENTS", usage(80 * MIB, max)).expect("80 %");
    assert_eq!(c.alert_id, "events_stream_full//OPS_EVENTS");
    assert_eq!((c.host.as_str(), c.subject.as_str()), ("", "OPS_EVENTS"));
    assert_eq!(c.value, "80%");
    assert!(
        c.summary.contains("80.0 MiB of its 100.0 MiB"),
        "{}",
        c.summary
    );
    // No byte limit (the server's -1, or 0): nothing to measure against.
    assert_eq!(
        stream_condition(&rules, "OPS_EVENTS", usage(u64::MAX, -1)),
        None
    );
    assert_eq!(
        stream_condition(&rules, "OPS_EVENTS", usage(u64::MAX, 0)),
        None
    );
    // Overflow-safe at the extremes.
    assert!(stream_condition(&rules, "OPS_EVENTS", usage(u64::MAX, i64::MAX)).is_some());
}

#[test]
fn percent_and_enabled_come_from_the_config() {
    let cfg: crate::alerts::AlertsConfig =
        toml::from_str("[rules.events_stream_full]\npercent = 50\n").expect("config");
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let rules = cfg.rules();
    assert!(stream_condition(&rules, "OPS_EVENTS", usage(50, 100)).is_some());
    let off: crate::alerts::AlertsConfig =
        toml::from_str("[rules.events_stream_full]\nenabled = false\n").expect("config");
    assert_eq!(
        stream_condition(&off.rules(), "OPS_EVENTS", usage(100, 100)),
        None
    );
    let bad: crate::alerts::AlertsConfig =
        toml::from_str("[rules.events_stream_full]\npercent = 0\n[rules.disk_warn]\npercent = 5\n")
            .expect("config");
    let keys: Vec<String> = bad.problems().into_iter().map(|p| p.0).collect();
    assert_eq!(
        keys,
        [
            "rules.disk_warn.percent",
            "rules.events_stream_full.percent"
        ]
    );
}

#[test]
fn the_alert_fires_and_resolves_with_the_streams_usage() {
    let mut rules = Rules::default();
    for r in &mut rules.rules {
        if r.kind == RuleKind::EventsStreamFull {
            r.timing.resolve_after_ms = 1_000;
        }
    }
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    let mut own_seq = 0;
    let mut tick = |fleet: &mut Fleet, bytes: u64, now: i64| {
        let extra = stream_condition(&rules, "OPS_EVENTS", usage(bytes, 1000));
        let ts = evaluate_with(&rules, fleet, extra.into_iter().collect(), &mut memory, now);
        for t in &ts {
            own_seq += 1;
            fleet.apply(&EventEnvelope {
                id: Uuid::now_v7(),
                host: "blue".into(),
                seq: own_seq,
                time_unix_ms: now,
                module: COORDINATOR_MODULE.into(),
                incarnation: Uuid::nil(),
                body: transition_body(t, 1),
            });
        }
        ts.iter().map(|t| t.to).collect::<Vec<_>>()
    };
    assert_eq!(tick(&mut fleet, 500, 0), []);
    // No `for` by default: the stream filling up is news at once.
    assert_eq!(tick(&mut fleet, 850, 1_000), [State::Firing]);
    // Fuller while firing: recorded again as firing (the detail follows), then quiet.
    assert_eq!(tick(&mut fleet, 900, 2_000), [State::Firing]);
    assert_eq!(tick(&mut fleet, 900, 2_500), []);
    // Drops below the threshold: resolves after `resolve_after` of clear condition.
    assert_eq!(tick(&mut fleet, 100, 3_000), []);
    assert_eq!(tick(&mut fleet, 100, 4_500), [State::Resolved]);
    let rec = &fleet.alerts().alerts["events_stream_full//OPS_EVENTS"];
    assert_eq!(
        (rec.rule.as_str(), rec.state),
        ("events_stream_full", Some(State::Resolved))
    );
}
