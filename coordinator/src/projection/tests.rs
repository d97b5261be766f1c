//! Unit and property tests of the fleet fold.

use super::*;
use opsfleet_proto::api::ModuleState;
use opsfleet_proto::pb::{self, event::Body};
use proptest::prelude::*;
use uuid::Uuid;

pub(super) fn inc(n: u8) -> Uuid {
    // Deterministic, ordered UUIDv7-shaped ids for tests.
    Uuid::from_bytes([0x01, 0x90, 0, 0, 0, n, 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, n])
}

pub(super) fn heartbeat(host: &str, incarnation: Uuid, seq: u64) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::from_u128(seq as u128 | ((incarnation.as_u128() & 0xff) << 64)),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: "heartbeat".to_owned(),
        incarnation,
        body: Body::Heartbeat(pb::Heartbeat {
            uptime_ms: seq * 1000,
            agent_version: "0.1.0".to_owned(),
            interval_ms: 1000,
            modules: vec![pb::ModuleStatus {
                name: "disk".to_owned(),
                kind: "disk".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                expected_interval_ms: 60_000,
            }],
            outbox_pending: 0,
            health: vec![],
            services: vec![],
            labels: Default::default(),
        }),
    }
}

pub(super) fn disk(
    host: &str,
    incarnation: Uuid,
    seq: u64,
    bp: u32,
    level: pb::DiskLevel,
) -> EventEnvelope {
    let mut ev = heartbeat(host, incarnation, seq);
    ev.module = "disk".to_owned();
    ev.body = Body::Disk(pb::DiskUsage {
        path: "/".to_owned(),
        used_basis_points: bp,
        level: level as i32,
        ..Default::default()
    });
    ev
}

#[test]
fn in_order_events_are_accepted_and_counted() {
    let mut fleet = Fleet::new();
    for seq in 1..=5 {
        assert_eq!(
            fleet.apply(&heartbeat("web-01", inc(1), seq)),
            Verdict::Accepted { gap: None }
        );
    }
    let h = fleet.host("web-01").unwrap();
    assert_eq!(h.events, 5);
    assert_eq!(h.current().unwrap().last_seq, 5);
    assert!(h.current().unwrap().gaps.is_empty());
    assert_eq!(h.modules["disk"].state, ModuleState::Running);
    assert_eq!(h.last_seen_unix_ms, 1_790_000_000_005);
}

#[test]
fn duplicates_are_dropped_by_host_incarnation_and_seq() {
    let mut fleet = Fleet::new();
    fleet.apply(&heartbeat("web-01", inc(1), 1));
    fleet.apply(&heartbeat("web-01", inc(1), 2));
    assert!(fleet.is_duplicate(&heartbeat("web-01", inc(1), 2)));
    assert_eq!(
        fleet.apply(&heartbeat("web-01", inc(1), 2)),
        Verdict::Duplicate
    );
    assert_eq!(
        fleet.apply(&heartbeat("web-01", inc(1), 1)),
        Verdict::Duplicate
    );
    // Same seq from another host or another incarnation is new.
    assert!(fleet.apply(&heartbeat("db-01", inc(1), 2)).is_accepted());
    assert!(fleet.apply(&heartbeat("web-01", inc(2), 1)).is_accepted());
    assert_eq!(fleet.host("web-01").unwrap().events, 3);
}

#[test]
fn gaps_are_recorded_and_filled_by_late_arrivals() {
    let mut fleet = Fleet::new();
    fleet.apply(&heartbeat("web-01", inc(1), 1));
    assert_eq!(
        fleet.apply(&heartbeat("web-01", inc(1), 5)),
        Verdict::Accepted {
            gap: Some(SeqRange { first: 2, last: 4 })
        }
    );
    assert!(fleet.apply(&heartbeat("web-01", inc(1), 3)).is_accepted());
    let gaps = &fleet.host("web-01").unwrap().current().unwrap().gaps;
    assert_eq!(
        gaps,
        &vec![
            SeqRange { first: 2, last: 2 },
            SeqRange { first: 4, last: 4 }
        ]
    );
    assert_eq!(
        fleet.apply(&heartbeat("web-01", inc(1), 3)),
        Verdict::Duplicate
    );
}

#[test]
fn a_new_incarnation_becomes_current_and_an_old_one_does_not_take_over() {
    let mut fleet = Fleet::new();
    fleet.apply(&heartbeat("web-01", inc(2), 1));
    fleet.apply(&heartbeat("web-01", inc(1), 7));
    assert_eq!(
        fleet.host("web-01").unwrap().incarnation,
        inc(2).to_string()
    );
    fleet.apply(&heartbeat("web-01", inc(3), 1));
    assert_eq!(
        fleet.host("web-01").unwrap().incarnation,
        inc(3).to_string()
    );
}

#[test]
fn a_late_event_does_not_overwrite_newer_disk_state() {
    let mut fleet = Fleet::new();
    fleet.apply(&disk("web-01", inc(1), 1, 1000, pb::DiskLevel::Ok));
    fleet.apply(&disk("web-01", inc(1), 3, 9600, pb::DiskLevel::Crit));
    // seq 2 arrives late, filling the gap.
    fleet.apply(&disk("web-01", inc(1), 2, 8700, pb::DiskLevel::Warn));
    let d = &fleet.host("web-01").unwrap().disks["/"];
    assert_eq!((d.used_basis_points, d.level.as_str()), (9600, "crit"));
}

#[test]
fn rows_round_trip_and_digest_is_stable() {
    let mut fleet = Fleet::new();
    for seq in 1..=3 {
        fleet.apply(&heartbeat("web-01", inc(1), seq));
        fleet.apply(&disk("db-01", inc(4), seq, 5000, pb::DiskLevel::Ok));
    }
    let rows = fleet.rows();
    let back = Fleet::from_rows(rows.clone()).unwrap();
    assert_eq!(back.rows(), rows);
    assert_eq!(back.digest(), fleet.digest());
    assert_eq!(
        fleet.digest(),
        digest_rows(rows.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    );
}

#[test]
fn the_cached_digest_follows_every_fold() {
    let fresh = |f: &Fleet| digest_rows(f.rows().iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    let mut fleet = Fleet::new();
    let empty = fleet.digest();
    assert_eq!(empty, fresh(&fleet));
    fleet.apply(&heartbeat("web-01", inc(1), 1));
    let one = fleet.digest();
    assert_ne!(one, empty, "a fold clears the cached digest");
    assert_eq!(one, fresh(&fleet));
    assert_eq!(fleet.digest(), one, "asked again: the same, from the cache");
    let copy = fleet.clone();
    fleet.apply(&disk("web-01", inc(1), 2, 5000, pb::DiskLevel::Ok));
    assert_eq!(fleet.digest(), fresh(&fleet));
    assert_eq!(copy.digest(), one, "a clone keeps its own state's digest");
}

#[test]
fn dirty_rows_are_exactly_the_touched_hosts() {
    let mut fleet = Fleet::new();
    fleet.apply(&heartbeat("web-01", inc(1), 1));
    fleet.apply(&heartbeat("db-01", inc(1), 1));
    assert_eq!(fleet.take_dirty_rows().len(), 2);
    fleet.apply(&heartbeat("db-01", inc(1), 1)); // duplicate: not dirty
    assert!(fleet.take_dirty_rows().is_empty());
    fleet.apply(&heartbeat("db-01", inc(1), 2));
    let dirty = fleet.take_dirty_rows();
    assert_eq!(dirty.len(), 1);
    assert_eq!(dirty[0].0, "host/db-01");
}

#[test]
fn a_corrupt_row_is_a_typed_error() {
    let err = Fleet::from_rows(vec![("host/x".to_owned(), b"{nope".to_vec())]).unwrap_err();
    assert_eq!(err.key, "host/x");
}

proptest! {
    /// Any delivery order with any duplicates: each distinct seq is accepted exactly once,
    /// and once all of 1..=n arrived no gap is left.
    #[test]
    fn each_seq_is_accepted_exactly_once(
        n in 1u64..60,
        extra in proptest::collection::vec(0usize..1000, 0..80),
        seed in any::<u64>(),
    ) {
        let mut deliveries: Vec<u64> = (1..=n).collect();
        deliveries.extend(extra.iter().map(|i| (*i as u64 % n) + 1));
        // Deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..deliveries.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            deliveries.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut fleet = Fleet::new();
        let accepted = deliveries
            .iter()
            .filter(|seq| fleet.apply(&heartbeat("web-01", inc(1), **seq)).is_accepted())
            .count();
        prop_assert_eq!(accepted as u64, n);
        let track = fleet.host("web-01").unwrap().current().unwrap().clone();
        prop_assert_eq!(track.last_seq, n);
        prop_assert!(track.gaps.is_empty(), "gaps left: {:?}", track.gaps);
    }

    /// Interleaving different hosts' streams (each in its own order) never changes the state:
    /// the fold is per host.
    #[test]
    fn interleaving_hosts_does_not_change_the_digest(
        a in 1u64..30, b in 1u64..30, picks in proptest::collection::vec(any::<bool>(), 0..60),
    ) {
        let stream = |host: &str, n: u64| -> Vec<EventEnvelope> {
            (1..=n).map(|s| if s % 3 == 0 {
                disk(host, inc(1), s, (s * 100) as u32, pb::DiskLevel::Ok)
            } else {
                heartbeat(host, inc(1), s)
            }).collect()
        };
        let (xs, ys) = (stream("web-01", a), stream("db-01", b));
        let mut sequential = Fleet::new();
        for ev in xs.iter().chain(ys.iter()) { sequential.apply(ev); }

        let mut mixed = Fleet::new();
        let (mut i, mut j) = (0, 0);
        for pick in picks.iter().copied().chain(std::iter::repeat(true)) {
            if i == xs.len() && j == ys.len() { break; }
            if (pick && i < xs.len()) || j == ys.len() { mixed.apply(&xs[i]); i += 1; }
            else { mixed.apply(&ys[j]); j += 1; }
        }
        prop_assert_eq!(mixed.digest(), sequential.digest());
    }
}

fn coordinator_event(name: &str, seq: u64, body: Body) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::from_u128(0xa1e7_0000 + seq as u128),
        host: name.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: COORDINATOR_MODULE.to_owned(),
        incarnation: inc(9),
        body,
    }
}

#[test]
fn alert_rows_round_trip_are_dirty_and_refold_to_the_same_digest() {
    let transition = |state: pb::AlertState| {
        Body::AlertTransition(pb::AlertTransition {
            alert_id: "disk_crit/web-01//data".to_owned(),
            rule: "disk_crit".to_owned(),
            target_host: "web-01".to_owned(),
            subject: "/data".to_owned(),
            state: state as i32,
            severity: "critical".to_owned(),
            epoch: 4,
            ..Default::default()
        })
    };
    let log = vec![
        heartbeat("web-01", inc(1), 1),
        coordinator_event("blue", 1, transition(pb::AlertState::Firing)),
        coordinator_event(
            "blue",
            2,
            Body::NotificationSent(pb::NotificationSent {
                alert_id: "disk_crit/web-01//data".to_owned(),
                transition_id: Uuid::from_u128(0xa1e7_0001).to_string(),
                route: "ops".to_owned(),
                outcome: pb::NotifyOutcome::Sent as i32,
                attempts: 1,
                epoch: 4,
                ..Default::default()
            }),
        ),
        coordinator_event(
            "blue",
            3,
            Body::HostLiveness(pb::HostLiveness {
                target_host: "db-01".to_owned(),
                lost: true,
                epoch: 4,
                ..Default::default()
            }),
        ),
        coordinator_event("blue", 4, transition(pb::AlertState::Resolved)),
    ];
    let mut live = Fleet::new();
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for ev in &log {
        live.apply(ev);
        stored.extend(live.take_dirty_rows());
    }
    let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "alert/disk_crit/web-01//data",
            "coord/blue",
            "host/web-01",
            "live/db-01"
        ]
    );
    let rows = live.rows();
    assert_eq!(rows, stored.into_iter().collect::<Vec<_>>());
    let back = Fleet::from_rows(rows).unwrap();
    assert_eq!(back.digest(), live.digest());
    let rec = &back.alerts().alerts["disk_crit/web-01//data"];
    assert_eq!(
        (rec.state, rec.notifications.len()),
        (Some(opsfleet_proto::api::AlertState::Resolved), 1)
    );
    assert!(back.alerts().liveness["db-01"].lost);

    let mut refolded = Fleet::new();
    for ev in &log {
        refolded.apply(ev);
    }
    assert_eq!(refolded.digest(), live.digest());
}

#[test]
fn silence_and_ack_rows_round_trip_are_dirty_and_refold_to_the_same_digest() {
    let id = Uuid::from_u128(0x5113_0001).to_string();
    let firing = coordinator_event(
        "blue",
        1,
        Body::AlertTransition(pb::AlertTransition {
            alert_id: "disk_crit/web-01//data".to_owned(),
            rule: "disk_crit".to_owned(),
            target_host: "web-01".to_owned(),
            state: pb::AlertState::Firing as i32,
            epoch: 4,
            ..Default::default()
        }),
    );
    let log = vec![
        firing.clone(),
        coordinator_event(
            "blue",
            2,
            Body::SilenceAdded(pb::SilenceAdded {
                silence_id: id.clone(),
                host_glob: "web-*".to_owned(),
                starts_unix_ms: 10,
                ends_unix_ms: 1_000,
                reason: "disk swap".to_owned(),
                created_by: "alice".to_owned(),
                created_role: "operator".to_owned(),
                epoch: 4,
                ..Default::default()
            }),
        ),
        coordinator_event(
            "blue",
            3,
            Body::AlertAcked(pb::AlertAcked {
                alert_id: "disk_crit/web-01//data".to_owned(),
                transition_id: firing.id.to_string(),
                by: "alice".to_owned(),
                role: "operator".to_owned(),
                at_unix_ms: 20,
                ..Default::default()
            }),
        ),
        coordinator_event(
            "blue",
            4,
            Body::SilenceExpired(pb::SilenceExpired {
                silence_id: id.clone(),
                by: "bob".to_owned(),
                role: "operator".to_owned(),
                at_unix_ms: 500,
                epoch: 4,
            }),
        ),
    ];
    let mut live = Fleet::new();
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for ev in &log {
        live.apply(ev);
        stored.extend(live.take_dirty_rows());
    }
    let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
    let silence_row = format!("silence/{id}");
    assert_eq!(
        keys,
        [
            "alert/disk_crit/web-01//data",
            "coord/blue",
            silence_row.as_str()
        ]
    );
    let rows = live.rows();
    assert_eq!(rows, stored.into_iter().collect::<Vec<_>>());
    let back = Fleet::from_rows(rows).unwrap();
    assert_eq!(back.digest(), live.digest());
    assert_eq!(back.silences().get(&id).unwrap().end_unix_ms(), 500);
    let ack = back.alerts().alerts["disk_crit/web-01//data"].ack.clone();
    assert_eq!(ack.map(|a| a.by), Some("alice".to_owned()));
    let mut refolded = Fleet::new();
    for ev in &log {
        refolded.apply(ev);
    }
    assert_eq!(refolded.digest(), live.digest());
}

#[test]
fn command_rows_are_dirty_and_stored_rows_equal_a_full_refold() {
    let issued = Body::CommandIssued(pb::CommandIssued {
        command_id: "0190-c1".to_owned(),
        target: "web-01".to_owned(),
        epoch: 3,
        issued_by: "alice".to_owned(),
        action: "pause".to_owned(),
        module: "log".to_owned(),
        deadline_unix_ms: 1_790_000_100_000,
        issued_role: "operator".to_owned(),
    });
    let mut accepted = heartbeat("web-01", inc(1), 2);
    accepted.module = "agent".to_owned();
    accepted.body = Body::CommandAccepted(pb::CommandAccepted {
        command_id: "0190-c1".to_owned(),
        epoch: 3,
    });
    let log = [
        heartbeat("web-01", inc(1), 1),
        coordinator_event("blue", 1, issued),
        accepted,
    ];
    let mut live = Fleet::new();
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for ev in &log {
        live.apply(ev);
        stored.extend(live.take_dirty_rows());
    }
    assert!(stored.contains_key("cmd/0190-c1"), "{:?}", stored.keys());
    assert_eq!(live.rows(), stored.into_iter().collect::<Vec<_>>());
    let back = Fleet::from_rows(live.rows()).unwrap();
    assert_eq!(
        back.command("0190-c1").map(|c| c.state.as_str()),
        Some("accepted")
    );
    assert_eq!(back.digest(), live.digest());
}

#[test]
fn group_rows_and_heartbeat_roles_round_trip_and_refold_to_the_same_digest() {
    let service = |seq: u64| EventEnvelope {
        id: Uuid::from_u128(0x5e7_0000 + seq as u128),
        module: "router".to_owned(),
        body: Body::Service(pb::ServiceState {
            service: "router".to_owned(),
            manager: "process".to_owned(),
            state: pb::ServiceRunState::Running as i32,
            ..Default::default()
        }),
        ..heartbeat("edge-01", inc(1), seq)
    };
    let mut hb = heartbeat("edge-01", inc(1), 2);
    if let Body::Heartbeat(h) = &mut hb.body {
        h.modules.push(pb::ModuleStatus {
            name: "router".to_owned(),
            kind: "service".to_owned(),
            state: pb::ModuleRunState::Running as i32,
            expected_interval_ms: 1000,
        });
        h.services.push(pb::ServiceSummary {
            service: "router".to_owned(),
            group: "router".to_owned(),
            role: "active".to_owned(),
            ..Default::default()
        });
    }
    let failover = |seq: u64, phase: &str| {
        coordinator_event(
            "blue",
            seq,
            Body::GroupFailover(pb::GroupFailover {
                group: "router".to_owned(),
                service: "router".to_owned(),
                to_host: "edge-01".to_owned(),
                phase: phase.to_owned(),
                epoch: 4,
                took_ms: 900,
                ..Default::default()
            }),
        )
    };
    let log = vec![
        service(1),
        hb,
        failover(1, "started"),
        failover(2, "completed"),
    ];
    let mut live = Fleet::new();
    let mut stored: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for ev in &log {
        live.apply(ev);
        stored.extend(live.take_dirty_rows());
    }
    let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
    assert_eq!(keys, ["coord/blue", "group/router", "host/edge-01"]);
    let rows = live.rows();
    assert_eq!(rows, stored.into_iter().collect::<Vec<_>>());
    let back = Fleet::from_rows(rows).unwrap();
    assert_eq!(back.digest(), live.digest());
    let row = &back.host("edge-01").unwrap().services["router"];
    assert_eq!(
        (row.group.as_str(), row.role.as_str()),
        ("router", "active")
    );
    let history = &back.groups()["router"];
    assert_eq!(history.failovers.len(), 1);
    assert_eq!(
        (
            history.failovers[0].phase.as_str(),
            history.failovers[0].took_ms
        ),
        ("completed", 900)
    );
    let mut refolded = Fleet::new();
    for ev in &log {
        refolded.apply(ev);
    }
    assert_eq!(refolded.digest(), live.digest());
}

#[test]
fn mark_dirty_adds_each_key_once_whatever_its_length() {
    let mut dirty = super::digest::DirtyRows::default();
    let long = "h".repeat(300);
    for _ in 0..2 {
        super::mark_dirty(&mut dirty, HOST_ROW_PREFIX, "web-01");
        super::mark_dirty(&mut dirty, HOST_ROW_PREFIX, &long);
        super::mark_dirty(&mut dirty, COORDINATOR_ROW_PREFIX, "web-01");
    }
    let want: BTreeSet<String> = [
        format!("{HOST_ROW_PREFIX}web-01"),
        format!("{HOST_ROW_PREFIX}{long}"),
        format!("{COORDINATOR_ROW_PREFIX}web-01"),
    ]
    .into();
    let taken = dirty.take();
    assert!(taken.iter().all(|(_, absorbed)| !absorbed));
    let keys: BTreeSet<String> = taken.into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, want);
}
