//! The rendering of `/metrics` (pure): from a fleet, this coordinator's own figures and `now`,
//! the whole fleet in the Prometheus text format. Every label value is a name the
//! projection keeps within a cap (`projection/bounds.rs`: hosts, mounts, modules, checks,
//! services, backup jobs) or a fixed vocabulary (states, rules, actions); never an id, free
//! text or a time.

use std::collections::BTreeMap;

use opsfleet_proto::api::{
    ActionName, AlertState, BackupState, CommandState, Liveness, ModuleState, ProbeStatus,
    ServiceRunState, Severity,
};

use super::text::{Kind, Text};
use crate::projection::presence::{declared_lost, liveness};
use crate::projection::{Fleet, HealthState};

/// This coordinator's own figures (what is not in the fleet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Process<'a> {
    pub coordinator: &'a str,
    pub color: &'a str,
    pub version: &'a str,
    /// Holds the lease and may act.
    pub active: bool,
    /// The term's epoch as this coordinator knows it (0 before any).
    pub epoch: u64,
    pub store_healthy: bool,
    pub applied_stream_seq: u64,
    /// Counters since start.
    pub events_applied: u64,
    pub duplicates: u64,
    pub malformed_parked: u64,
    pub refused_parked: u64,
    /// The streams as last read, if they were.
    pub streams: Option<Streams>,
}

/// `OPS_EVENTS`' last sequence and `OPS_DLQ`'s messages, read at `read_at_unix_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    pub events_last_seq: u64,
    pub dlq_messages: u64,
    pub read_at_unix_ms: i64,
}

/// Seconds from `then` to `now` (milliseconds), never negative.
fn age_seconds(now_unix_ms: i64, then_unix_ms: i64) -> f64 {
    (now_unix_ms.saturating_sub(then_unix_ms)).max(0) as f64 / 1000.0
}

fn flag(b: bool) -> u64 {
    u64::from(b)
}

/// The whole text of one scrape.
pub fn render(fleet: &Fleet, p: &Process, now_unix_ms: i64) -> String {
    // About 120 bytes a line and a few dozen lines a host.
    let mut t = Text::with_capacity(4096 + fleet.len() * 2048);
    coordinator(&mut t, p, now_unix_ms);
    let live = host_liveness(fleet, now_unix_ms);
    hosts(&mut t, fleet, &live, now_unix_ms);
    disks(&mut t, fleet);
    modules(&mut t, fleet, &live);
    runbooks(&mut t, fleet, now_unix_ms);
    services(&mut t, fleet);
    alerts_and_commands(&mut t, fleet);
    t.finish()
}

fn coordinator(t: &mut Text, p: &Process, now: i64) {
    t.family(
        "opsfleet_coordinator_info",
        Kind::Gauge,
        "This coordinator: its name, colour and version (always 1).",
    );
    let info = [
        ("coordinator", p.coordinator),
        ("color", p.color),
        ("version", p.version),
    ];
    t.sample_u64(&info, 1);
    t.family(
        "opsfleet_coordinator_active",
        Kind::Gauge,
        "1 while this coordinator holds the lease and may act, else 0.",
    );
    t.sample_u64(&[], flag(p.active));
    t.family(
        "opsfleet_coordinator_epoch",
        Kind::Gauge,
        "The leadership term's epoch (fencing token) this coordinator knows.",
    );
    t.sample_u64(&[], p.epoch);
    t.family(
        "opsfleet_coordinator_store_healthy",
        Kind::Gauge,
        "1 while the store accepts writes, 0 while ingest retries a refused write.",
    );
    t.sample_u64(&[], flag(p.store_healthy));
    t.family(
        "opsfleet_ingest_applied_stream_seq",
        Kind::Gauge,
        "Highest OPS_EVENTS stream sequence persisted by this coordinator.",
    );
    t.sample_u64(&[], p.applied_stream_seq);
    t.family(
        "opsfleet_ingest_events_applied_total",
        Kind::Counter,
        "Events appended to this coordinator's log since it started.",
    );
    t.sample_u64(&[], p.events_applied);
    t.family(
        "opsfleet_ingest_duplicates_dropped_total",
        Kind::Counter,
        "Duplicate events dropped by the fold since start.",
    );
    t.sample_u64(&[], p.duplicates);
    t.family(
        "opsfleet_ingest_parked_total",
        Kind::Counter,
        "Messages parked on the dead-letter stream since start, by reason.",
    );
    t.sample_u64(&[("reason", "malformed")], p.malformed_parked);
    t.sample_u64(&[("reason", "refused")], p.refused_parked);
    let Some(s) = p.streams else {
        return;
    };
    t.family(
        "opsfleet_ingest_stream_last_seq",
        Kind::Gauge,
        "Last stream sequence of OPS_EVENTS, as last read.",
    );
    t.sample_u64(&[], s.events_last_seq);
    t.family(
        "opsfleet_ingest_lag_messages",
        Kind::Gauge,
        "OPS_EVENTS messages not yet persisted by this coordinator (last sequence - applied).",
    );
    t.sample_u64(&[], s.events_last_seq.saturating_sub(p.applied_stream_seq));
    t.family(
        "opsfleet_ingest_stream_read_age_seconds",
        Kind::Gauge,
        "Age of the stream reading behind the lag and dead-letter figures.",
    );
    t.sample(&[], age_seconds(now, s.read_at_unix_ms));
    t.family(
        "opsfleet_dlq_messages",
        Kind::Gauge,
        "Messages in the dead-letter stream OPS_DLQ.",
    );
    t.sample_u64(&[], s.dlq_messages);
}

/// Each host's liveness as `opsctl hosts` judges it, and when it was last heard from.
fn host_liveness(fleet: &Fleet, now: i64) -> Vec<Live<'_>> {
    fleet
        .hosts()
        .map(|h| {
            let seen = fleet.seen_unix_ms(h);
            let live = if declared_lost(fleet, h) {
                Liveness::Lost
            } else {
                liveness(h, seen, now)
            };
            (h.host.as_str(), live, seen)
        })
        .collect()
}

/// Counts by state, every state present (0 included), in the state's order.
fn counts<S: Copy + Ord>(all: &[S], states: impl Iterator<Item = S>) -> BTreeMap<S, u64> {
    let mut by: BTreeMap<S, u64> = all.iter().map(|s| (*s, 0)).collect();
    for s in states {
        *by.entry(s).or_default() += 1;
    }
    by
}

/// A host's name, liveness and when it was last heard from, in the fleet's host order.
type Live<'a> = (&'a str, Liveness, i64);

fn hosts(t: &mut Text, fleet: &Fleet, live: &[Live], now: i64) {
    t.family(
        "opsfleet_hosts",
        Kind::Gauge,
        "Hosts by liveness (up, late, lost, unknown).",
    );
    for (state, n) in counts(Liveness::ALL, live.iter().map(|l| l.1)) {
        t.sample_u64(&[("state", state.as_str())], n);
    }
    t.family(
        "opsfleet_host_state",
        Kind::Gauge,
        "1 per host, labelled with its liveness (up, late, lost, unknown).",
    );
    for (host, state, _) in live {
        t.sample_u64(&[("host", host), ("state", state.as_str())], 1);
    }
    t.family(
        "opsfleet_host_last_event_age_seconds",
        Kind::Gauge,
        "Seconds since the host's newest event reached the bus (0 events: absent).",
    );
    for (host, _, seen) in live.iter().filter(|l| l.2 > 0) {
        t.sample(&[("host", host)], age_seconds(now, *seen));
    }
    let maintenance = fleet.maintenance();
    t.family(
        "opsfleet_hosts_in_maintenance",
        Kind::Gauge,
        "Hosts drained for maintenance.",
    );
    t.sample_u64(&[], maintenance.len() as u64);
    t.family(
        "opsfleet_host_maintenance",
        Kind::Gauge,
        "1 for each host drained for maintenance (absent otherwise).",
    );
    for host in maintenance.iter() {
        t.sample_u64(&[("host", host)], 1);
    }
    t.family(
        "opsfleet_host_outbox_pending",
        Kind::Gauge,
        "Events in the host's outbox not yet published, as its newest heartbeat told.",
    );
    for h in fleet.hosts() {
        t.sample_u64(&[("host", &h.host)], h.outbox_pending);
    }
}

fn disks(t: &mut Text, fleet: &Fleet) {
    type Pick = fn(&crate::projection::DiskState) -> f64;
    let families: [(&'static str, &'static str, Pick); 4] = [
        (
            "opsfleet_disk_used_ratio",
            "Used fraction of the filesystem's space (0..1), as the agent last reported.",
            |d| f64::from(d.used_basis_points) / 10_000.0,
        ),
        (
            "opsfleet_disk_inodes_used_ratio",
            "Used fraction of the filesystem's inodes (0..1), as the agent last reported.",
            |d| f64::from(d.inodes_used_basis_points) / 10_000.0,
        ),
        (
            "opsfleet_disk_avail_bytes",
            "Bytes available to unprivileged users on the filesystem.",
            |d| d.avail_bytes as f64,
        ),
        (
            "opsfleet_disk_size_bytes",
            "Size of the filesystem in bytes.",
            |d| d.total_bytes as f64,
        ),
    ];
    for (name, help, pick) in families {
        t.family(name, Kind::Gauge, help);
        for h in fleet.hosts() {
            for (mount, d) in &h.disks {
                t.sample(&[("host", &h.host), ("mount", mount)], pick(d));
            }
        }
    }
}

fn modules(t: &mut Text, fleet: &Fleet, live: &[Live]) {
    // What a lost host's modules do is not known (as `opsctl hosts` shows them).
    let state_of = |lost: bool, s: ModuleState| if lost { ModuleState::Unknown } else { s };
    let all = fleet.hosts().zip(live).flat_map(|(h, l)| {
        let lost = l.1 == Liveness::Lost;
        (h.modules.values()).map(move |m| state_of(lost, m.state))
    });
    t.family(
        "opsfleet_modules",
        Kind::Gauge,
        "Modules across the fleet by state (running, paused, disabled, failed, unknown).",
    );
    for (state, n) in counts(ModuleState::ALL, all) {
        t.sample_u64(&[("state", state.as_str())], n);
    }
    t.family(
        "opsfleet_module_state",
        Kind::Gauge,
        "1 per module of each host, labelled with its kind and state.",
    );
    for (h, l) in fleet.hosts().zip(live) {
        for (name, m) in &h.modules {
            let state = state_of(l.1 == Liveness::Lost, m.state).as_str();
            let labels = [
                ("host", h.host.as_str()),
                ("module", name),
                ("kind", &m.kind),
                ("state", state),
            ];
            t.sample_u64(&labels, 1);
        }
    }
}

fn runbooks(t: &mut Text, fleet: &Fleet, now: i64) {
    let checks = fleet.hosts().flat_map(|h| h.runbooks.health.values());
    t.family(
        "opsfleet_health_checks",
        Kind::Gauge,
        "Health checks across the fleet by status (starting, ready, degraded, failed, unknown).",
    );
    for (status, n) in counts(ProbeStatus::ALL, checks.map(|c| c.status)) {
        t.sample_u64(&[("status", status.as_str())], n);
    }
    t.family(
        "opsfleet_health_check_status",
        Kind::Gauge,
        "1 per health check of each host, labelled with its status.",
    );
    for h in fleet.hosts() {
        for (check, c) in &h.runbooks.health {
            let labels = [("host", h.host.as_str()), ("check", check)];
            t.sample_u64(&[labels[0], labels[1], ("status", c.status.as_str())], 1);
        }
    }
    probe_conditions(t, fleet);
    t.family(
        "opsfleet_backup_state",
        Kind::Gauge,
        "1 per backup job of each host, labelled with its state (ok, failed, running, never).",
    );
    for h in fleet.hosts() {
        for (job, j) in &h.runbooks.backups {
            let state: BackupState = j.state();
            let labels = [("host", h.host.as_str()), ("job", job)];
            t.sample_u64(&[labels[0], labels[1], ("state", state.as_str())], 1);
        }
    }
    t.family(
        "opsfleet_backup_last_success_age_seconds",
        Kind::Gauge,
        "Seconds since the job's newest successful backup (agent clock); absent before one.",
    );
    for h in fleet.hosts() {
        for (job, j) in &h.runbooks.backups {
            if let Some(ok) = &j.last_success {
                let labels = [("host", h.host.as_str()), ("job", job)];
                t.sample(&labels, age_seconds(now, ok.at_unix_ms));
            }
        }
    }
}

/// A check's latency bound and certificate: `slow` and the p95 for checks with a
/// `latency_p95` bound, when its certificate expires for checks that saw one (a timestamp, as
/// Prometheus' conventions and promtool want: days left are `(it - time()) / 86400`). Checks
/// without them have no sample.
fn probe_conditions(t: &mut Text, fleet: &Fleet) {
    type Pick = fn(&HealthState) -> Option<f64>;
    let families: [(&'static str, &'static str, Pick); 4] = [
        (
            "opsfleet_health_check_slow",
            "1 while the p95 of the check's latencies is above its latency_p95 bound, else 0; checks with a bound only.",
            |c| (c.latency_bound_ms > 0 || c.slow).then_some(f64::from(u8::from(c.slow))),
        ),
        (
            "opsfleet_health_check_latency_p95_seconds",
            "The p95 of the check's successful probes' latencies over its window; absent before the window can judge.",
            |c| (c.latency_p95_ms > 0).then_some(c.latency_p95_ms as f64 / 1000.0),
        ),
        (
            "opsfleet_health_check_latency_bound_seconds",
            "The check's latency_p95 bound; absent for checks without one.",
            |c| (c.latency_bound_ms > 0).then_some(c.latency_bound_ms as f64 / 1000.0),
        ),
        (
            "opsfleet_health_check_cert_expiry_timestamp_seconds",
            "When the check's certificate expires (its notAfter, Unix seconds); absent before one was seen.",
            |c| (c.cert_not_after_unix_ms > 0).then(|| c.cert_not_after_unix_ms as f64 / 1000.0),
        ),
    ];
    for (name, help, pick) in families {
        t.family(name, Kind::Gauge, help);
        for h in fleet.hosts() {
            for (check, c) in &h.runbooks.health {
                if let Some(v) = pick(c) {
                    t.sample(&[("host", &h.host), ("check", check)], v);
                }
            }
        }
    }
}

fn services(t: &mut Text, fleet: &Fleet) {
    let all = fleet.hosts().flat_map(|h| h.services.values());
    t.family(
        "opsfleet_services",
        Kind::Gauge,
        "Supervised services across the fleet by state.",
    );
    for (state, n) in counts(ServiceRunState::ALL, all.map(|s| s.state)) {
        t.sample_u64(&[("state", state.as_str())], n);
    }
    t.family(
        "opsfleet_service_state",
        Kind::Gauge,
        "1 per supervised service of each host, labelled with its state.",
    );
    for h in fleet.hosts() {
        for (name, s) in &h.services {
            let labels = [("host", h.host.as_str()), ("service", name)];
            t.sample_u64(&[labels[0], labels[1], ("state", s.state.as_str())], 1);
        }
    }
    t.family(
        "opsfleet_service_restarts",
        Kind::Gauge,
        "Restarts of the service's current supervision, as its agent reported.",
    );
    for h in fleet.hosts() {
        for (name, s) in &h.services {
            t.sample_u64(&[("host", &h.host), ("service", name)], s.restarts);
        }
    }
}

fn alerts_and_commands(t: &mut Text, fleet: &Fleet) {
    let mut alerts: BTreeMap<(&str, AlertState, Severity), u64> = BTreeMap::new();
    for a in fleet.alerts().alerts.values() {
        let state = a.state.unwrap_or(AlertState::Unknown);
        let severity = a.severity.unwrap_or(Severity::Unknown);
        *alerts.entry((&a.rule, state, severity)).or_default() += 1;
    }
    t.family(
        "opsfleet_alerts",
        Kind::Gauge,
        "Alerts kept in the projection by rule, state and severity.",
    );
    for ((rule, state, severity), n) in alerts {
        let labels = [
            ("rule", rule),
            ("state", state.as_str()),
            ("severity", severity.as_str()),
        ];
        t.sample_u64(&labels, n);
    }
    let mut commands: BTreeMap<(ActionName, CommandState), u64> = BTreeMap::new();
    for c in fleet.commands() {
        let action = c.action.parse().unwrap_or(ActionName::Unknown);
        *commands.entry((action, c.state)).or_default() += 1;
    }
    t.family(
        "opsfleet_commands",
        Kind::Gauge,
        "Commands kept in the ledger by action and outcome (issued, accepted, completed, failed, rejected, expired).",
    );
    for ((action, state), n) in commands {
        let labels = [("action", action.as_str()), ("state", state.as_str())];
        t.sample_u64(&labels, n);
    }
}
