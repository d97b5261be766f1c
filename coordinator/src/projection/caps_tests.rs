//! Tests of the per-host caps: each structure an agent can grow stays within its cap, what is
//! dropped is counted, an evicted incarnation or closed gap is never folded (again). Pruned
//! command and alert records, and the proptest over any event sequence: `prune_tests.rs`.

use std::collections::BTreeMap;

use opsfleet_proto::pb::{self, event::Body};
use uuid::Uuid;

use super::bounds::*;
use super::*;

/// Incarnation `n`: ordered like UUIDv7s started one after the other.
pub(super) fn inc(n: u32) -> Uuid {
    let b = n.to_be_bytes();
    Uuid::from_bytes([
        0x01, 0x90, b[0], b[1], b[2], b[3], 0x70, 0, 0x80, 0, 0, 0, 0, 0, 0, 1,
    ])
}

pub(super) fn ev(
    host: &str,
    incarnation: Uuid,
    seq: u64,
    module: &str,
    body: Body,
) -> EventEnvelope {
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

pub(super) fn heartbeat(modules: &[&str], checks: &[&str], labels: &[&str]) -> Body {
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
                ..Default::default()
            })
            .collect(),
        labels: labels
            .iter()
            .map(|l| ((*l).to_owned(), "v".to_owned()))
            .collect(),
        ..Default::default()
    })
}

pub(super) fn disk(path: &str) -> Body {
    Body::Disk(pb::DiskUsage {
        path: path.to_owned(),
        used_basis_points: 100,
        level: pb::DiskLevel::Ok as i32,
        ..Default::default()
    })
}

/// One body per kind an agent can name things in, the names taken from `name`.
pub(super) fn named_body(kind: u8, name: &str) -> (&'static str, Body) {
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
pub(super) fn within_caps(fleet: &Fleet) -> Result<(), String> {
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
        use opsfleet_proto::api::AlertState::{Firing, Pending};
        if !matches!(a.state, Some(Pending | Firing)) {
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
    // Each new name beyond the cap evicted one kept before it. Modules do not pile up here:
    // each heartbeat lists the host's modules and the others are forgotten (`forget.rs`);
    // their cap: `module_names_beyond_the_cap_evict_the_oldest`.
    assert_eq!(t.modules, 0);
    assert!(h.modules.len() <= 2, "{:?}", h.modules.keys());
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

#[test]
fn module_names_beyond_the_cap_evict_the_oldest() {
    let mut fleet = Fleet::new();
    let names = 300u64;
    for i in 0..names {
        let (module, body) = named_body(2, &format!("n{i:04}"));
        assert!(fleet
            .apply(&ev("web-01", inc(1), i + 1, module, body))
            .is_accepted());
    }
    within_caps(&fleet).unwrap();
    let h = fleet.host("web-01").unwrap();
    assert_eq!(h.modules.len(), MODULES_KEPT);
    assert!(h.modules.contains_key(&format!("n{:04}", names - 1)));
    assert_eq!(h.truncated.modules, names - MODULES_KEPT as u64);
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
        // The row's size within the cycle of 9 bodies at `filled` (a heartbeat forgets the
        // modules it does not list, so the size moves within a cycle).
        if i + 1 > filled - 9 && i < filled {
            at_filled = at_filled.max(row_len(&fleet));
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
