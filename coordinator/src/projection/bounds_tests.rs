//! Tests of the per-host caps: each structure an agent can grow stays within its cap, what is
//! dropped is counted, an evicted incarnation or closed gap is never folded (again), pruned
//! command rows are deleted from the store, and (proptest) any event sequence keeps every cap
//! while a snapshot-and-reload fold equals a straight refold.

use std::collections::{BTreeMap, BTreeSet};

use opsfleet_proto::pb::{self, event::Body};
use proptest::prelude::*;
use uuid::Uuid;

use super::bounds::*;
use super::*;

/// Incarnation `n`: ordered like UUIDv7s started one after the other.
fn inc(n: u32) -> Uuid {
    let b = n.to_be_bytes();
    Uuid::from_bytes([
        0x01, 0x90, b[0], b[1], b[2], b[3], 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1,
    ])
}

fn ev(host: &str, incarnation: Uuid, seq: u64, module: &str, body: Body) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::from_u128((incarnation.as_u128() << 32) ^ u128::from(seq)),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: module.to_owned(),
        incarnation,
        body,
    }
}

fn heartbeat(modules: &[&str], checks: &[&str], labels: &[&str]) -> Body {
    Body::Heartbeat(pb::Heartbeat {
        agent_version: "0.1.0".to_owned(),
        interval_ms: 1000,
        modules: modules
            .iter()
            .map(|m| pb::ModuleStatus {
                name: (*m).to_owned(),
                kind: "heartbeat".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                expected_interval_ms: 1000,
            })
            .collect(),
        health: checks
            .iter()
            .map(|c| pb::HealthSummary {
                check: (*c).to_owned(),
                status: pb::HealthStatus::Ready as i32,
            })
            .collect(),
        labels: labels
            .iter()
            .map(|l| ((*l).to_owned(), "v".to_owned()))
            .collect(),
        ..Default::default()
    })
}

fn disk(path: &str) -> Body {
    Body::Disk(pb::DiskUsage {
        path: path.to_owned(),
        used_basis_points: 100,
        level: pb::DiskLevel::Ok as i32,
        ..Default::default()
    })
}

/// One body per kind an agent can name things in, the names taken from `name`.
fn named_body(kind: u8, name: &str) -> (&'static str, Body) {
    match kind % 10 {
        0 => ("heartbeat", heartbeat(&[name], &[name], &[name])),
        1 => ("disk", disk(name)),
        2 => (
            "mod",
            Body::ModuleState(pb::ModuleState {
                module: name.to_owned(),
                kind: "log".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                config_fingerprint: format!("fp-{name}"),
                config_toml: format!("name = \"{name}\""),
                ..Default::default()
            }),
        ),
        3 => (
            "log",
            Body::LogMatch(pb::LogMatch {
                path: name.to_owned(),
                excerpt: "ERROR".to_owned(),
                ..Default::default()
            }),
        ),
        4 => (
            "log",
            Body::LogSuppressed(pb::LogSuppressed {
                path: name.to_owned(),
                count: 2,
                since_unix_ms: 1,
            }),
        ),
        5 => (
            "health",
            Body::Health(pb::HealthCheck {
                check: name.to_owned(),
                status: pb::HealthStatus::Failed as i32,
                ..Default::default()
            }),
        ),
        6 => (
            "sentinel",
            Body::Sentinel(pb::SentinelState {
                path: name.to_owned(),
                ..Default::default()
            }),
        ),
        7 => (
            "backup",
            Body::BackupStarted(pb::BackupStarted {
                job: name.to_owned(),
                run_id: "r".to_owned(),
                sources: vec![],
            }),
        ),
        8 => (
            "janitor",
            Body::Janitor(pb::JanitorReport {
                root: name.to_owned(),
                removed_files: 1,
                ..Default::default()
            }),
        ),
        _ => (
            "agent",
            Body::CommandAccepted(pb::CommandAccepted {
                command_id: format!("cmd-{name}"),
                epoch: 1,
            }),
        ),
    }
}

/// Every per-host structure is within its cap.
fn within_caps(fleet: &Fleet) -> Result<(), String> {
    for h in fleet.hosts() {
        let rb = &h.runbooks;
        let sizes = [
            ("incarnations", h.streams.len(), INCARNATIONS_KEPT),
            ("modules", h.modules.len(), MODULES_KEPT),
            ("disks", h.disks.len(), DISKS_KEPT),
            ("labels", h.labels.len(), LABELS_KEPT),
            ("health", rb.health.len(), HEALTH_CHECKS_KEPT),
            ("incidents", rb.incidents.len(), LOG_FILES_KEPT),
            ("sentinels", rb.sentinels.len(), SENTINELS_KEPT),
            ("backups", rb.backups.len(), BACKUP_JOBS_KEPT),
            ("janitor", rb.janitor.len(), JANITOR_ROOTS_KEPT),
        ];
        for (what, n, cap) in sizes {
            if n > cap {
                return Err(format!("{}: {n} {what} > {cap}", h.host));
            }
        }
        for (inc, t) in &h.streams {
            if t.gaps.len() > GAP_RANGES_KEPT {
                return Err(format!("{} {inc}: {} gap ranges", h.host, t.gaps.len()));
            }
            let sorted = t.gaps.windows(2).all(|w| w[0].last + 1 < w[1].first);
            let below = t
                .gaps
                .iter()
                .all(|g| g.first <= g.last && g.last < t.last_seq);
            if !(sorted && below) {
                return Err(format!("{} {inc}: gaps out of order {:?}", h.host, t.gaps));
            }
        }
    }
    let mut prunable: BTreeMap<&str, usize> = BTreeMap::new();
    for c in fleet.commands() {
        let issued = !c.target.is_empty();
        if !issued || c.is_finished() {
            let owner = if issued {
                c.target.as_str()
            } else {
                c.history.last().map_or("", |s| s.by.as_str())
            };
            *prunable.entry(owner).or_default() += 1;
        }
    }
    if let Some((owner, n)) = prunable.iter().find(|(_, n)| **n > COMMANDS_KEPT) {
        return Err(format!("{owner}: {n} prunable commands"));
    }
    let mut resolved: BTreeMap<&str, usize> = BTreeMap::new();
    for a in fleet.alerts().alerts.values() {
        if a.state != "pending" && a.state != "firing" {
            *resolved.entry(a.host.as_str()).or_default() += 1;
        }
    }
    match resolved.iter().find(|(_, n)| **n > ALERTS_KEPT) {
        Some((host, n)) => Err(format!("{host}: {n} resolved alerts")),
        None => Ok(()),
    }
}

#[test]
fn only_the_newest_incarnations_are_tracked_and_an_evicted_one_stays_closed() {
    let mut fleet = Fleet::new();
    let extra = 5;
    let total = INCARNATIONS_KEPT as u32 + extra;
    for n in 1..=total {
        let e = ev("web-01", inc(n), 3, "heartbeat", heartbeat(&[], &[], &[]));
        assert!(fleet.apply(&e).is_accepted());
    }
    let h = fleet.host("web-01").unwrap();
    assert_eq!(h.streams.len(), INCARNATIONS_KEPT);
    assert_eq!(h.truncated.incarnations, u64::from(extra));
    assert_eq!(h.incarnation, inc(total).to_string());
    // Each first event started at seq 3: one gap each, tracked for kept incarnations only.
    assert_eq!(h.current().unwrap().gaps.len(), 1);

    // A late event of an evicted incarnation, even one that would fill its gap, is a
    // duplicate: its incarnation is closed. So is a never-seen incarnation older than all
    // kept ones.
    for n in [1, extra, 0] {
        let late = ev("web-01", inc(n), 1, "heartbeat", heartbeat(&[], &[], &[]));
        assert!(fleet.is_duplicate(&late), "incarnation {n}");
        assert_eq!(fleet.apply(&late), Verdict::Duplicate, "incarnation {n}");
    }
    // The kept ones still take new seqs and gap fills.
    let kept = ev(
        "web-01",
        inc(extra + 1),
        1,
        "heartbeat",
        heartbeat(&[], &[], &[]),
    );
    assert!(!fleet.is_duplicate(&kept));
    assert!(fleet.apply(&kept).is_accepted());
    assert_eq!(fleet.apply(&kept), Verdict::Duplicate);
    let h = fleet.host("web-01").unwrap();
    assert_eq!(h.events, u64::from(total) + 1);
    assert_eq!(h.truncated.incarnations, u64::from(extra));
}

#[test]
fn gap_ranges_beyond_the_cap_close_the_oldest_and_count_their_seqs() {
    let mut fleet = Fleet::new();
    let extra = 3u64;
    let ranges = GAP_RANGES_KEPT as u64 + extra;
    // seq 1, then every third seq: each jump leaves a gap of two.
    for i in 0..=ranges {
        let e = ev("web-01", inc(1), 1 + 3 * i, "disk", disk("/"));
        assert!(fleet.apply(&e).is_accepted());
    }
    let h = fleet.host("web-01").unwrap();
    let t = h.current().unwrap();
    assert_eq!(t.gaps.len(), GAP_RANGES_KEPT);
    assert_eq!(
        t.gaps[0],
        SeqRange {
            first: 11,
            last: 12
        }
    );
    assert_eq!(
        (h.truncated.gap_ranges, h.truncated.gap_seqs),
        (extra, 2 * extra)
    );
    // A seq of a closed range counts as seen; one of an open range is still taken.
    let closed = ev("web-01", inc(1), 2, "disk", disk("/"));
    assert_eq!(fleet.apply(&closed), Verdict::Duplicate);
    let open = ev("web-01", inc(1), 11, "disk", disk("/"));
    assert!(fleet.apply(&open).is_accepted());
    let t = fleet.host("web-01").unwrap().current().unwrap().clone();
    assert_eq!(
        t.gaps[0],
        SeqRange {
            first: 12,
            last: 12
        }
    );
    // Splitting a range in the middle at the cap closes the oldest one again.
    let mut fleet = Fleet::new();
    fleet.apply(&ev("web-01", inc(1), 1, "disk", disk("/")));
    for i in 1..GAP_RANGES_KEPT as u64 {
        fleet.apply(&ev("web-01", inc(1), 10 * i + 10, "disk", disk("/")));
    }
    fleet.apply(&ev("web-01", inc(1), 10_000, "disk", disk("/")));
    assert!(fleet
        .apply(&ev("web-01", inc(1), 5_000, "disk", disk("/")))
        .is_accepted());
    let h = fleet.host("web-01").unwrap();
    assert_eq!(h.current().unwrap().gaps.len(), GAP_RANGES_KEPT);
    // The oldest range, 2..=19, was closed.
    assert_eq!((h.truncated.gap_ranges, h.truncated.gap_seqs), (1, 18));
}

#[test]
fn every_named_structure_keeps_its_newest_names_and_counts_the_rest() {
    let mut fleet = Fleet::new();
    let names = 300u64;
    let mut seq = 0;
    for i in 0..names {
        for kind in 0..9u8 {
            seq += 1;
            let (module, body) = named_body(kind, &format!("n{i:04}"));
            assert!(fleet
                .apply(&ev("web-01", inc(1), seq, module, body))
                .is_accepted());
        }
    }
    within_caps(&fleet).unwrap();
    let h = fleet.host("web-01").unwrap();
    let rb = &h.runbooks;
    // The newest names are the ones kept.
    assert!(h.disks.contains_key(&format!("n{:04}", names - 1)));
    assert!(!h.disks.contains_key("n0000"));
    assert!(rb.health.contains_key(&format!("n{:04}", names - 1)));
    let t = h.truncated;
    // Each new name beyond the cap evicted one kept before it (a name seen again, as the
    // heartbeat's module in a later module_state event, is no new name).
    assert_eq!(t.modules, names - MODULES_KEPT as u64);
    assert_eq!(t.disks, names - DISKS_KEPT as u64);
    assert_eq!(t.health_checks, names - HEALTH_CHECKS_KEPT as u64);
    assert_eq!(t.log_files, names - LOG_FILES_KEPT as u64);
    assert_eq!(t.sentinels, names - SENTINELS_KEPT as u64);
    assert_eq!(t.backup_jobs, names - BACKUP_JOBS_KEPT as u64);
    assert_eq!(t.janitor_roots, names - JANITOR_ROOTS_KEPT as u64);
    assert_eq!(t.labels, 0, "one label per heartbeat fits");

    // Labels: the first LABELS_KEPT by name of the current heartbeat.
    let many: Vec<String> = (0..LABELS_KEPT + 6).map(|i| format!("l{i:03}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    seq += 1;
    fleet.apply(&ev(
        "web-01",
        inc(1),
        seq,
        "heartbeat",
        heartbeat(&[], &[], &many),
    ));
    let h = fleet.host("web-01").unwrap();
    assert_eq!(h.labels.len(), LABELS_KEPT);
    assert!(h.labels.contains_key("l000"));
    assert_eq!(h.truncated.labels, 6);
}

#[test]
fn a_name_older_than_every_kept_one_is_refused_at_a_full_map() {
    let mut fleet = Fleet::new();
    for i in 0..DISKS_KEPT as u64 {
        fleet.apply(&ev(
            "web-01",
            inc(2),
            i + 1,
            "disk",
            disk(&format!("/d{i}")),
        ));
    }
    // A late event of an older incarnation names a new disk: it is older than all kept.
    let late = ev("web-01", inc(1), 1, "disk", disk("/late"));
    assert!(fleet.apply(&late).is_accepted());
    let h = fleet.host("web-01").unwrap();
    assert!(!h.disks.contains_key("/late"));
    assert!(h.disks.contains_key("/d0"));
    assert_eq!(h.truncated.disks, 1);
}

#[test]
fn over_long_names_big_configs_and_long_texts_are_not_kept_whole() {
    let mut fleet = Fleet::new();
    let long_name = format!("/{}", "p".repeat(NAME_BYTES_KEPT));
    let long_text = "e".repeat(TEXT_BYTES_KEPT * 4);
    let log = [
        ev("web-01", inc(1), 1, "disk", disk(&long_name)),
        ev(
            "web-01",
            inc(1),
            2,
            "heartbeat",
            heartbeat(&[], &[], &[long_name.as_str(), "ok"]),
        ),
        ev(
            "web-01",
            inc(1),
            3,
            "log",
            Body::ModuleState(pb::ModuleState {
                module: "log".to_owned(),
                kind: "log".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                reason: long_text.clone(),
                config_fingerprint: "ab".repeat(32),
                config_toml: "#".repeat(CONFIG_BYTES_KEPT + 1),
            }),
        ),
        ev(
            "web-01",
            inc(1),
            4,
            "log",
            Body::LogMatch(pb::LogMatch {
                path: "/var/log/app.log".to_owned(),
                excerpt: long_text.clone(),
                ..Default::default()
            }),
        ),
    ];
    for e in &log {
        assert!(fleet.apply(e).is_accepted());
    }
    let h = fleet.host("web-01").unwrap();
    assert!(h.disks.is_empty());
    assert_eq!(h.labels.keys().collect::<Vec<_>>(), ["ok"]);
    let m = &h.modules["log"];
    assert!(m.configs.is_empty(), "a too large config is not kept");
    assert_eq!(m.reason.len(), TEXT_BYTES_KEPT);
    let inc = &h.runbooks.incidents["/var/log/app.log"];
    assert_eq!(inc.last_excerpt.len(), TEXT_BYTES_KEPT);
    let t = h.truncated;
    assert_eq!((t.disks, t.labels, t.configs), (1, 1, 1));
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

#[test]
fn a_flooding_host_row_stops_growing_once_the_caps_are_full() {
    let mut fleet = Fleet::new();
    let row_len = |fleet: &Fleet| {
        let key = format!("{HOST_ROW_PREFIX}flood-01");
        fleet
            .rows()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map_or(0, |(_, v)| v.len())
    };
    let (filled, total) = (10_000u64, 50_000u64);
    let mut at_filled = 0;
    let mut largest = 0;
    for i in 0..total {
        // Every event a new incarnation opening with a gap, and a new name.
        let (module, body) = named_body((i % 9) as u8, &format!("{i:08}"));
        fleet.apply(&ev("flood-01", inc(i as u32 + 1), 2 + i % 40, module, body));
        if i + 1 == filled {
            at_filled = row_len(&fleet);
        } else if i + 1 > filled && (i + 1) % 5_000 == 0 {
            largest = largest.max(row_len(&fleet));
        }
    }
    within_caps(&fleet).unwrap();
    // Only counters gain digits.
    assert!(
        largest <= at_filled + 256,
        "row grew from {at_filled} to {largest} bytes"
    );
}

#[test]
fn a_host_within_its_caps_serialises_as_before() {
    let mut fleet = Fleet::new();
    fleet.apply(&ev("web-01", inc(1), 1, "disk", disk("/")));
    let (_, row) = fleet.rows().pop().unwrap();
    let text = String::from_utf8(row).unwrap();
    assert!(!text.contains("truncated"), "{text}");
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
