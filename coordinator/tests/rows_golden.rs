//! Golden pins of the coordinator's stored rows: a fixed, pseudo-random sequence of every kind
//! of event the projections fold (agents' module reports, command lifecycles, leadership,
//! liveness, alert transitions and notifications, with unknown enum values mixed in), folded
//! into a `Fleet`; every row's key and bytes and the whole digest must equal
//! `tests/golden/rows.txt`, which was written by the code before the projection's states were
//! typed. A change that alters one stored byte (and so `rebuild --verify` of an old store)
//! fails here. The digest line changed once on purpose, rows unchanged: when the digest
//! became a sum of per-row hashes (`projection/digest.rs`), so a status page need not rehash
//! the whole fleet.

use opsfleet_coordinator::projection::Fleet;
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::EventEnvelope;
use uuid::Uuid;

const GOLDEN: &str = include_str!("golden/rows.txt");

/// xorshift64*: the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A wire enum value: mostly known ones, sometimes unspecified or one from the future.
    fn state(&mut self, known: i32) -> i32 {
        match self.below(10) {
            0 => 0,
            1 => 42,
            _ => 1 + self.below(known as u64) as i32,
        }
    }
}

const HOSTS: [&str; 4] = ["web-01", "web-02", "db-01", "cache-01"];
const COORDINATORS: [&str; 2] = ["blue", "green"];
const ACTIONS: [&str; 10] = [
    "pause",
    "resume",
    "disable",
    "enable",
    "noop",
    "drain",
    "backup_run",
    "restore",
    "config_apply",
    "config_rollback",
];

fn events(count: usize) -> Vec<EventEnvelope> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(count);
    let mut seqs = std::collections::BTreeMap::new();
    let mut commands: Vec<String> = Vec::new();
    let mut transitions: Vec<(String, String)> = Vec::new();
    for i in 0..count {
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | i as u128);
        let at = 1_790_000_000_000 + (i as i64) * 500;
        let kind = rng.below(16);
        let (host, module, body) = if kind >= 11 {
            let coordinator = rng.pick(&COORDINATORS);
            let epoch = 1 + rng.below(5);
            let target = rng.pick(&HOSTS).to_owned();
            let body = match kind {
                11 => {
                    let cmd = format!("cmd-{i}");
                    commands.push(cmd.clone());
                    Body::CommandIssued(pb::CommandIssued {
                        command_id: cmd,
                        target,
                        epoch,
                        issued_by: rng.pick(&["alice", "bob (unverified)"]).to_owned(),
                        action: rng.pick(&ACTIONS).to_owned(),
                        module: rng.pick(&["", "log", "disk"]).to_owned(),
                        deadline_unix_ms: at + 60_000,
                        issued_role: rng.pick(&["", "operator", "admin"]).to_owned(),
                    })
                }
                12 => Body::Leadership(pb::LeadershipChanged {
                    coordinator: coordinator.to_owned(),
                    color: coordinator.to_owned(),
                    role: rng.state(2),
                    epoch,
                    reason: rng.pick(&["", "released", "lease_lapsed"]).to_owned(),
                    requested_by: rng.pick(&["", "alice"]).to_owned(),
                    requested_role: rng.pick(&["", "operator"]).to_owned(),
                }),
                13 => Body::HostLiveness(pb::HostLiveness {
                    target_host: target,
                    lost: rng.below(2) == 0,
                    last_seen_unix_ms: at - 20_000,
                    interval_ms: 5_000,
                    epoch,
                }),
                14 => {
                    let alert = format!("disk_crit/{target}//data");
                    transitions.push((alert.clone(), id.to_string()));
                    Body::AlertTransition(pb::AlertTransition {
                        alert_id: alert,
                        rule: "disk_crit".to_owned(),
                        target_host: target,
                        subject: "/data".to_owned(),
                        state: rng.state(3),
                        severity: rng.pick(&["critical", "warning"]).to_owned(),
                        summary: format!("/data at {}%", rng.below(100)),
                        value: "93.1%".to_owned(),
                        epoch,
                        at_unix_ms: at,
                        ..Default::default()
                    })
                }
                _ => {
                    // Sometimes for an alert no transition was folded for yet.
                    let (alert, transition) = if transitions.is_empty() || rng.below(4) == 0 {
                        (format!("log_errors/{target}/app"), "t-none".to_owned())
                    } else {
                        transitions[rng.below(transitions.len() as u64) as usize].clone()
                    };
                    Body::NotificationSent(pb::NotificationSent {
                        alert_id: alert,
                        transition_id: transition,
                        route: rng.pick(&["ops-webhook", "slack"]).to_owned(),
                        outcome: rng.state(4),
                        attempts: 1 + rng.below(3) as u32,
                        detail: String::new(),
                        epoch,
                    })
                }
            };
            (coordinator.to_owned(), "coordinator", body)
        } else {
            let host = rng.pick(&HOSTS);
            let body = match kind {
                0 => Body::Heartbeat(pb::Heartbeat {
                    uptime_ms: i as u64 * 500,
                    agent_version: "0.1.0".to_owned(),
                    interval_ms: rng.pick(&["5000", "10000"]).parse().unwrap_or(5000),
                    modules: vec![pb::ModuleStatus {
                        name: "log".to_owned(),
                        kind: "log".to_owned(),
                        state: rng.state(4),
                        expected_interval_ms: 5_000,
                    }],
                    outbox_pending: rng.below(3),
                    services: vec![],
                    health: vec![pb::HealthSummary {
                        check: "api".to_owned(),
                        status: rng.state(4),
                        ..Default::default()
                    }],
                    labels: [("role".to_owned(), "web".to_owned())]
                        .into_iter()
                        .collect(),
                }),
                1 => Body::Health(pb::HealthCheck {
                    check: rng.pick(&["api", "db"]).to_owned(),
                    probe: "http".to_owned(),
                    status: rng.state(4),
                    previous: rng.state(4),
                    detail: "status 503".to_owned(),
                    consecutive_failures: rng.below(5) as u32,
                    latency_ms: 12,
                    ..Default::default()
                }),
                2 => Body::Sentinel(pb::SentinelState {
                    path: "/run/app/heartbeat".to_owned(),
                    status: rng.state(3),
                    previous: rng.state(3),
                    changed: true,
                    mtime_unix_ms: at - 1_000,
                    age_ms: 1_000,
                    max_age_ms: 60_000,
                }),
                3 => Body::Disk(pb::DiskUsage {
                    path: rng.pick(&["/", "/data"]).to_owned(),
                    total_bytes: 1_000,
                    used_bytes: rng.below(1_000),
                    avail_bytes: 100,
                    inodes_total: 100,
                    inodes_used: 10,
                    level: rng.state(3),
                    previous_level: rng.state(3),
                    ..Default::default()
                }),
                4 => Body::ModuleState(pb::ModuleState {
                    module: "log".to_owned(),
                    kind: "log".to_owned(),
                    state: rng.state(4),
                    reason: String::new(),
                    config_fingerprint: format!("{:064x}", rng.below(4)),
                    config_toml: String::new(),
                }),
                5 => Body::BackupStarted(pb::BackupStarted {
                    job: "pg".to_owned(),
                    run_id: format!("r{i}"),
                    sources: vec!["/var/lib/pg".to_owned()],
                }),
                6 => Body::BackupCompleted(pb::BackupCompleted {
                    job: "pg".to_owned(),
                    run_id: format!("r{i}"),
                    archive: format!("pg-{i}.tar.zst"),
                    manifest: String::new(),
                    size_bytes: 1_024,
                    files: 3,
                    duration_ms: 250,
                    sha256: "ff".to_owned(),
                }),
                7 => Body::BackupFailed(pb::BackupFailed {
                    job: "pg".to_owned(),
                    run_id: format!("r{i}"),
                    reason: "disk full".to_owned(),
                }),
                8 => Body::LogMatch(pb::LogMatch {
                    path: "/var/log/app.log".to_owned(),
                    pattern: "error".to_owned(),
                    excerpt: format!("ERROR request {i} failed"),
                    ..Default::default()
                }),
                _ => {
                    let Some(cmd) = (!commands.is_empty())
                        .then(|| commands[rng.below(commands.len() as u64) as usize].clone())
                    else {
                        continue;
                    };
                    match rng.below(4) {
                        0 => Body::CommandAccepted(pb::CommandAccepted {
                            command_id: cmd,
                            epoch: 1,
                        }),
                        1 => Body::CommandCompleted(pb::CommandCompleted {
                            command_id: cmd,
                            detail: "ok".to_owned(),
                        }),
                        2 => Body::CommandFailed(pb::CommandFailed {
                            command_id: cmd,
                            reason: "no such module".to_owned(),
                        }),
                        _ => Body::CommandExpired(pb::CommandExpired {
                            command_id: cmd,
                            deadline_unix_ms: at,
                        }),
                    }
                }
            };
            let module = match &body {
                Body::Heartbeat(_) => "heartbeat",
                Body::Health(_) => "health",
                Body::Sentinel(_) => "sentinel",
                Body::Disk(_) => "disk",
                Body::BackupStarted(_) | Body::BackupCompleted(_) | Body::BackupFailed(_) => {
                    "backup"
                }
                Body::LogMatch(_) | Body::ModuleState(_) => "log",
                _ => "commands",
            };
            (host.to_owned(), module, body)
        };
        let seq = seqs.entry(host.clone()).or_insert(0u64);
        *seq += 1;
        out.push(EventEnvelope {
            id,
            host,
            seq: *seq,
            time_unix_ms: at,
            module: module.to_owned(),
            incarnation: Uuid::from_u128(1),
            body,
        });
    }
    out
}

fn fold() -> String {
    let mut fleet = Fleet::new();
    for ev in events(3_000) {
        fleet.apply(&ev);
    }
    let mut text = String::new();
    for (key, bytes) in fleet.rows() {
        text.push_str(&key);
        text.push(' ');
        text.push_str(&String::from_utf8_lossy(&bytes));
        text.push('\n');
    }
    text.push_str("digest ");
    text.push_str(&fleet.digest());
    text.push('\n');
    text
}

#[test]
fn stored_rows_and_digest_are_byte_identical_to_the_golden_file() {
    let now = fold();
    if std::env::var_os("OPSFLEET_PRINT_GOLDEN").is_some() {
        print!("{now}");
        return;
    }
    let (golden, now): (Vec<&str>, Vec<&str>) = (GOLDEN.lines().collect(), now.lines().collect());
    for (i, (want, got)) in golden.iter().zip(&now).enumerate() {
        assert_eq!(got, want, "row {i} differs");
    }
    assert_eq!(now.len(), golden.len(), "row count differs");
}
