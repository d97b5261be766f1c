//! `/metrics` rendered from folded fleets: the exact text of a small fleet (golden file
//! `golden.prom`, checked by promtool in `tests/tests/prometheus.rs`), label escaping, and the
//! render and gzip time of a 10,000-host fleet.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use uuid::Uuid;

use super::*;
use crate::projection::Fleet;

const T0: i64 = 1_790_000_000_000;

#[derive(Default)]
struct Folder {
    fleet: Fleet,
    seqs: BTreeMap<String, u64>,
}

impl Folder {
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

    /// A heartbeat listing a heartbeat, a disk, a health and a service module.
    fn heartbeat(&mut self, host: &str, at: i64, disk_state: pb::ModuleRunState) {
        let module = |name: &str, kind: &str, state: pb::ModuleRunState| pb::ModuleStatus {
            name: name.into(),
            kind: kind.into(),
            state: state as i32,
            expected_interval_ms: 10_000,
        };
        let body = Body::Heartbeat(pb::Heartbeat {
            agent_version: "0.1.0".into(),
            interval_ms: 10_000,
            outbox_pending: 3,
            modules: vec![
                module("heartbeat", "heartbeat", pb::ModuleRunState::Running),
                module("disk", "disk", disk_state),
                module("health", "health", pb::ModuleRunState::Running),
                module("app", "service", pb::ModuleRunState::Running),
                module("backup", "backup", pb::ModuleRunState::Running),
            ],
            ..Default::default()
        });
        self.fold(host, "heartbeat", at, body);
    }

    fn disk(&mut self, host: &str, path: &str, at: i64, used_bp: u32) {
        let body = Body::Disk(pb::DiskUsage {
            path: path.into(),
            total_bytes: 1000,
            used_bytes: u64::from(used_bp) / 10,
            avail_bytes: 1000 - u64::from(used_bp) / 10,
            used_basis_points: used_bp,
            inodes_used_basis_points: 125,
            level: pb::DiskLevel::Ok as i32,
            ..Default::default()
        });
        self.fold(host, "disk", at, body);
    }

    fn health(&mut self, host: &str, check: &str, at: i64, status: pb::HealthStatus) {
        self.probe(
            host,
            at,
            pb::HealthCheck {
                check: check.into(),
                probe: "http://127.0.0.1/health".into(),
                status: status as i32,
                ..Default::default()
            },
        );
    }

    fn probe(&mut self, host: &str, at: i64, check: pb::HealthCheck) {
        self.fold(host, "health", at, Body::Health(check));
    }

    fn service(&mut self, host: &str, at: i64, state: pb::ServiceRunState, restarts: u64) {
        let body = Body::Service(pb::ServiceState {
            service: "app".into(),
            manager: "process".into(),
            state: state as i32,
            restarts,
            since_unix_ms: at,
            ..Default::default()
        });
        self.fold(host, "app", at, body);
    }

    fn backup_ok(&mut self, host: &str, job: &str, at: i64) {
        let body = Body::BackupCompleted(pb::BackupCompleted {
            job: job.into(),
            run_id: format!("run-{at}"),
            archive: format!("{job}-{at}.tar.gz"),
            ..Default::default()
        });
        self.fold(host, "backup", at, body);
    }

    fn alert(&mut self, id: &str, rule: &str, host: &str, state: pb::AlertState, at: i64) {
        let body = Body::AlertTransition(pb::AlertTransition {
            alert_id: id.into(),
            rule: rule.into(),
            target_host: host.into(),
            subject: "/".into(),
            state: state as i32,
            severity: "critical".into(),
            summary: "disk 93% used".into(),
            epoch: 7,
            at_unix_ms: at,
            ..Default::default()
        });
        self.fold("blue", COORDINATOR_MODULE, at, body);
    }

    fn command(&mut self, id: &str, host: &str, action: &str, done: bool, at: i64) {
        let body = Body::CommandIssued(pb::CommandIssued {
            command_id: id.into(),
            target: host.into(),
            epoch: 7,
            issued_by: "alice".into(),
            action: action.into(),
            module: "disk".into(),
            deadline_unix_ms: at + 60_000,
            issued_role: "operator".into(),
        });
        self.fold("blue", COORDINATOR_MODULE, at, body);
        if done {
            let body = Body::CommandCompleted(pb::CommandCompleted {
                command_id: id.into(),
                detail: "paused".into(),
            });
            self.fold(host, "disk", at + 10, body);
        }
    }
}

/// A ready check whose p95 (1.25 s) is above its 500 ms bound.
fn slow_check() -> pb::HealthCheck {
    pb::HealthCheck {
        check: "slow".into(),
        probe: "http".into(),
        status: pb::HealthStatus::Ready as i32,
        slow: true,
        latency_p95_ms: 1_250,
        latency_bound_ms: 500,
        ..Default::default()
    }
}

/// A certificate check of a certificate 5 days and 12 hours from expiry at `T0 + 5 s` (the
/// render's `now`).
fn cert_check() -> pb::HealthCheck {
    pb::HealthCheck {
        check: "tls".into(),
        probe: "cert".into(),
        status: pb::HealthStatus::Ready as i32,
        cert_level: pb::CertLevel::Warn as i32,
        cert_not_after_unix_ms: T0 + 5_000 + (5 * 24 + 12) * 3_600_000,
        ..Default::default()
    }
}

/// Two hosts (one up, one lost), disks, checks (one slow, one of a certificate), a service, a
/// backup, alerts and commands.
fn small_fleet() -> Fleet {
    let mut f = Folder::default();
    f.heartbeat("web-01", T0, pb::ModuleRunState::Running);
    f.disk("web-01", "/", T0, 9_300);
    f.disk("web-01", "/var/lib/\"data\"", T0, 4_250);
    f.health("web-01", "api", T0, pb::HealthStatus::Ready);
    f.probe("web-01", T0, slow_check());
    f.probe("web-01", T0, cert_check());
    f.service("web-01", T0, pb::ServiceRunState::Running, 2);
    f.backup_ok("web-01", "db", T0 - 3_600_000);
    f.heartbeat("db-01", T0 - 600_000, pb::ModuleRunState::Paused);
    f.disk("db-01", "/", T0 - 600_000, 5_000);
    f.health("db-01", "api", T0 - 600_000, pb::HealthStatus::Failed);
    f.alert("a1", "disk_full", "web-01", pb::AlertState::Firing, T0);
    f.alert("a2", "host_lost", "db-01", pb::AlertState::Firing, T0);
    f.alert("a3", "disk_full", "db-01", pb::AlertState::Resolved, T0);
    f.command("c1", "web-01", "pause", true, T0);
    f.command("c2", "db-01", "pause", false, T0);
    f.command("c3", "web-01", "noop", true, T0);
    f.command("c4", "db-01", "drain", false, T0);
    f.fleet
}

fn process() -> Process<'static> {
    Process {
        coordinator: "blue",
        color: "blue",
        version: "0.1.0",
        active: true,
        epoch: 7,
        store_healthy: true,
        applied_stream_seq: 120,
        events_applied: 118,
        duplicates: 2,
        malformed_parked: 1,
        refused_parked: 0,
        streams: Some(Streams {
            events_last_seq: 125,
            dlq_messages: 1,
            read_at_unix_ms: T0 - 2_500,
        }),
    }
}

#[test]
fn a_small_fleet_renders_exactly_the_golden_text() {
    let text = render(&small_fleet(), &process(), T0 + 5_000);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics/golden.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &text).expect("write golden");
    }
    let golden = std::fs::read_to_string(path).expect("golden.prom (UPDATE_GOLDEN=1 writes it)");
    assert_eq!(text, golden, "UPDATE_GOLDEN=1 regenerates; check the diff");
}

#[test]
fn the_figures_are_the_fleets() {
    let text = render(&small_fleet(), &process(), T0 + 5_000);
    let has = |line: &str| assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    has("opsfleet_coordinator_info{coordinator=\"blue\",color=\"blue\",version=\"0.1.0\"} 1");
    has("opsfleet_coordinator_active 1");
    has("opsfleet_coordinator_epoch 7");
    has("opsfleet_ingest_lag_messages 5");
    has("opsfleet_ingest_stream_read_age_seconds 7.5");
    has("opsfleet_hosts{state=\"up\"} 1");
    has("opsfleet_hosts{state=\"lost\"} 1");
    has("opsfleet_host_state{host=\"db-01\",state=\"lost\"} 1");
    has("opsfleet_host_last_event_age_seconds{host=\"db-01\"} 605");
    has("opsfleet_disk_used_ratio{host=\"web-01\",mount=\"/\"} 0.93");
    has("opsfleet_disk_used_ratio{host=\"web-01\",mount=\"/var/lib/\\\"data\\\"\"} 0.425");
    // A lost host's modules are unknown, as `opsctl hosts` shows them.
    has("opsfleet_module_state{host=\"db-01\",module=\"disk\",kind=\"disk\",state=\"unknown\"} 1");
    has("opsfleet_module_state{host=\"web-01\",module=\"disk\",kind=\"disk\",state=\"running\"} 1");
    has("opsfleet_health_check_status{host=\"db-01\",check=\"api\",status=\"failed\"} 1");
    has("opsfleet_health_check_slow{host=\"web-01\",check=\"slow\"} 1");
    has("opsfleet_health_check_latency_p95_seconds{host=\"web-01\",check=\"slow\"} 1.25");
    has("opsfleet_health_check_latency_bound_seconds{host=\"web-01\",check=\"slow\"} 0.5");
    let expiry = cert_check().cert_not_after_unix_ms as f64 / 1000.0;
    has(&format!(
        "opsfleet_health_check_cert_expiry_timestamp_seconds{{host=\"web-01\",check=\"tls\"}} {expiry}"
    ));
    // Checks without a bound or a certificate have no such sample.
    for family in [
        "slow",
        "latency_p95_seconds",
        "cert_expiry_timestamp_seconds",
    ] {
        let api = format!("opsfleet_health_check_{family}{{host=\"web-01\",check=\"api\"}}");
        assert!(!text.contains(&api), "{api} in\n{text}");
    }
    let tls = "opsfleet_health_check_slow{host=\"web-01\",check=\"tls\"}";
    assert!(!text.contains(tls), "{tls} in\n{text}");
    has("opsfleet_service_state{host=\"web-01\",service=\"app\",state=\"running\"} 1");
    has("opsfleet_backup_last_success_age_seconds{host=\"web-01\",job=\"db\"} 3605");
    has("opsfleet_alerts{rule=\"disk_full\",state=\"firing\",severity=\"critical\"} 1");
    has("opsfleet_alerts{rule=\"disk_full\",state=\"resolved\",severity=\"critical\"} 1");
    has("opsfleet_commands{action=\"pause\",state=\"completed\"} 1");
    has("opsfleet_commands{action=\"pause\",state=\"issued\"} 1");
    has("opsfleet_hosts_in_maintenance 1");
    has("opsfleet_host_maintenance{host=\"db-01\"} 1");
    // No id, free text or time as a label.
    for banned in ["a1", "c1", "disk 93%", "run-", "alice", &T0.to_string()] {
        assert!(!text.contains(banned), "{banned} in\n{text}");
    }
}

#[test]
fn a_standby_before_its_first_stream_reading_omits_the_lag() {
    let p = Process {
        active: false,
        streams: None,
        ..process()
    };
    let text = render(&Fleet::new(), &p, T0);
    assert!(text.contains("\nopsfleet_coordinator_active 0\n"), "{text}");
    assert!(!text.contains("opsfleet_ingest_lag_messages"), "{text}");
    assert!(text.contains("opsfleet_hosts{state=\"up\"} 0"), "{text}");
    // Families without a sample write no header either.
    assert!(!text.contains("opsfleet_disk_used_ratio"), "{text}");
}

#[test]
fn ten_thousand_hosts_render_fast() {
    let mut f = Folder::default();
    for i in 0..10_000 {
        let host = format!("host-{i:05}");
        f.heartbeat(&host, T0, pb::ModuleRunState::Running);
        for path in ["/", "/var", "/srv"] {
            f.disk(&host, path, T0, 4_000 + (i % 5_000) as u32);
        }
        f.health(&host, "api", T0, pb::HealthStatus::Ready);
        f.service(&host, T0, pb::ServiceRunState::Running, 0);
        f.backup_ok(&host, "db", T0 - 60_000);
    }
    let fleet = f.fleet;
    let p = process();
    let started = Instant::now();
    let text = render(&fleet, &p, T0 + 1_000);
    let took = started.elapsed();
    let lines = text.lines().count();
    println!(
        "render of 10,000 hosts: {took:?}, {lines} lines, {} bytes",
        text.len()
    );
    assert!(lines > 150_000, "{lines} lines");
    assert!(text.contains("opsfleet_hosts{state=\"up\"} 10000"));
    // Generous for a debug build on a loaded 2-core machine; see docs/metrics.md for figures.
    assert!(took < Duration::from_secs(5), "render took {took:?}");
    let started = Instant::now();
    let packed = super::gzip::gzip(&text).expect("gzip");
    let took = started.elapsed();
    println!("gzip of it: {took:?}, {} bytes", packed.len());
    assert!(
        packed.len() < text.len() / 8,
        "{} bytes gzipped",
        packed.len()
    );
    assert!(took < Duration::from_secs(10), "gzip took {took:?}");
}
