//! Per-host projection of supervised services: the latest `service` event of each, by
//! (incarnation, seq) version so a late, gap-filling event never rolls the state back; when
//! its restart count last rose (the restart-loop alert) and the last automatic action its
//! remediation cap refused (the remediation-capped alert). Pure.

use std::collections::BTreeMap;

use opsfleet_proto::api::{ProbeStatus, ServiceRunState};
use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::bounds::{capped_entry, clip, SERVICES_KEPT};
use super::seq::Version;

/// How the state after a restart a command asked for begins (the agent's wording).
pub const RESTARTED_BY_COMMAND: &str = "restarted by command";

/// Restart times kept per service: enough for any restart-loop threshold worth alerting on.
pub const RESTARTS_KEPT: usize = 32;

/// One service as its newest event told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRow {
    pub manager: String,
    pub state: ServiceRunState,
    pub pid: u32,
    pub since_unix_ms: i64,
    pub restarts: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exit_detail: String,
    /// The unit or container (driven managers); empty for `process`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance: String,
    /// The version the service runs (not the event's `version` below).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    pub version: Version,
    /// The worst of its own probes; `None` when it declares none (or does not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ProbeStatus>,
    /// When the restart count rose (the `since` of the state that told it), oldest first, at
    /// most `RESTARTS_KEPT`; a rise by n counts n times.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarted_at_unix_ms: Vec<i64>,
    /// The newest `service_remediation` its hourly cap refused: when (event time), and why.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub capped_at_unix_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub capped_reason: String,
    /// Active/standby: the group and the role the agent last passed to the app, as its
    /// newest heartbeat told (empty outside a group).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Blue/green: the slot group and whether this slot has the traffic.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub slot_group: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub live: bool,
    /// p95 of its probe rounds' latency (ms) over its current child's newest rounds, as its
    /// newest heartbeat told; 0 when unknown.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub probe_p95_ms: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl ServiceRow {
    /// Not running (failed, stopping, stopped, starting or unknown): trouble for `opsctl hosts`.
    pub fn is_down(&self) -> bool {
        self.state != ServiceRunState::Running
    }

    /// Running but its probes say degraded or failed: trouble for `opsctl hosts` too.
    pub fn is_unhealthy(&self) -> bool {
        matches!(
            self.health,
            Some(ProbeStatus::Degraded | ProbeStatus::Failed)
        )
    }

    /// Why it is trouble (`failed`, `degraded`), `None` when it is not.
    pub fn trouble(&self) -> Option<&'static str> {
        if self.is_down() {
            Some(self.state.as_str())
        } else if let Some(h) = self.health.filter(|_| self.is_unhealthy()) {
            Some(h.as_str())
        } else {
            None
        }
    }
}

/// Folds one `service` event into `services` (at most `SERVICES_KEPT`; what does not fit is
/// counted in `dropped`).
pub fn fold(
    services: &mut BTreeMap<String, ServiceRow>,
    s: &pb::ServiceState,
    version: &Version,
    dropped: &mut u64,
) {
    let row = capped_entry(
        services,
        &s.service,
        SERVICES_KEPT,
        version,
        |r: &ServiceRow| &r.version,
        ServiceRow::default,
        dropped,
    );
    let Some(row) = row.filter(|r| r.version <= *version) else {
        return;
    };
    let mut restarted = std::mem::take(&mut row.restarted_at_unix_ms);
    // The first state known tells a count, not restarts seen (the log may start later); a
    // count below the last one is a new count (the agent's state was reset): no restart. A
    // restart a command asked for (an operator's, or remediation's) is not the service's own
    // doing: the restart-loop alert does not count it.
    let first = row.version == Version::default();
    let asked = s.exit_detail.starts_with(RESTARTED_BY_COMMAND);
    let rise = if first || asked {
        0
    } else {
        s.restarts
            .saturating_sub(row.restarts)
            .min(RESTARTS_KEPT as u64)
    };
    for _ in 0..rise {
        restarted.push(s.since_unix_ms);
    }
    let excess = restarted.len().saturating_sub(RESTARTS_KEPT);
    restarted.drain(..excess);
    *row = ServiceRow {
        manager: clip(&s.manager),
        state: ServiceRunState::from_wire(s.state),
        pid: s.pid,
        since_unix_ms: s.since_unix_ms,
        restarts: s.restarts,
        exit_detail: clip(&s.exit_detail),
        instance: clip(&s.instance),
        app_version: clip(&s.version),
        version: version.clone(),
        restarted_at_unix_ms: restarted,
        capped_at_unix_ms: row.capped_at_unix_ms,
        capped_reason: std::mem::take(&mut row.capped_reason),
        group: std::mem::take(&mut row.group),
        role: std::mem::take(&mut row.role),
        slot_group: std::mem::take(&mut row.slot_group),
        live: row.live,
        probe_p95_ms: row.probe_p95_ms,
        health: match ProbeStatus::from_wire(s.health) {
            ProbeStatus::Unknown => None,
            h => Some(h),
        },
    };
}

/// Folds the group fields of a heartbeat's service summary into its known service (the
/// caller folds only the host's newest heartbeat). A heartbeat makes no row.
pub fn fold_summary(services: &mut BTreeMap<String, ServiceRow>, s: &pb::ServiceSummary) {
    if let Some(row) = services.get_mut(&s.service) {
        row.group = clip(&s.group);
        row.role = clip(&s.role);
        row.slot_group = clip(&s.slot_group);
        row.live = s.live;
        row.probe_p95_ms = s.probe_p95_ms;
    }
}

/// Folds one `service_remediation` event of a known service: one its cap refused (`capped`)
/// is remembered with the event's time; the newest wins whatever the order. Other
/// remediations change nothing.
pub fn fold_remediation(
    services: &mut BTreeMap<String, ServiceRow>,
    r: &pb::ServiceRemediation,
    at_unix_ms: i64,
) {
    if !r.capped {
        return;
    }
    // Only a service whose state is known: a remediation acts on a running service.
    let row = services.get_mut(&r.service);
    if let Some(row) = row.filter(|row| row.capped_at_unix_ms <= at_unix_ms) {
        row.capped_at_unix_ms = at_unix_ms;
        row.capped_reason = clip(&r.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(service: &str, state: pb::ServiceRunState, restarts: u64) -> pb::ServiceState {
        pb::ServiceState {
            service: service.to_owned(),
            manager: "process".to_owned(),
            state: state as i32,
            pid: if state == pb::ServiceRunState::Running {
                42
            } else {
                0
            },
            since_unix_ms: 1_790_000_000_000,
            restarts,
            exit_detail: "exited with status 1".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn newest_state_wins_and_a_late_event_does_not_roll_back() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        let v = |seq| ("inc".to_owned(), seq);
        fold(
            &mut map,
            &state("app", pb::ServiceRunState::Failed, 1),
            &v(5),
            &mut dropped,
        );
        fold(
            &mut map,
            &state("app", pb::ServiceRunState::Running, 0),
            &v(3),
            &mut dropped,
        );
        let row = &map["app"];
        assert_eq!(row.state, ServiceRunState::Failed);
        assert_eq!(row.restarts, 1);
        assert!(row.is_down());
        fold(
            &mut map,
            &state("app", pb::ServiceRunState::Running, 2),
            &v(6),
            &mut dropped,
        );
        assert_eq!(map["app"].state, ServiceRunState::Running);
        assert_eq!(map["app"].pid, 42);
        assert!(!map["app"].is_down());
        assert_eq!(dropped, 0);
    }

    #[test]
    fn restart_times_are_kept_when_the_count_rises() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        let at = |since: i64, restarts: u64| pb::ServiceState {
            since_unix_ms: since,
            ..state("app", pb::ServiceRunState::Running, restarts)
        };
        fold(&mut map, &at(100, 0), &("inc".to_owned(), 1), &mut dropped);
        fold(&mut map, &at(200, 1), &("inc".to_owned(), 2), &mut dropped);
        // A failed state in between keeps the count: no restart.
        fold(&mut map, &at(250, 1), &("inc".to_owned(), 3), &mut dropped);
        // Two restarts told at once (states coalesced) count twice.
        fold(&mut map, &at(300, 3), &("inc".to_owned(), 4), &mut dropped);
        // A late event does not add one.
        fold(&mut map, &at(150, 2), &("inc".to_owned(), 2), &mut dropped);
        assert_eq!(map["app"].restarted_at_unix_ms, [200, 300, 300]);
        // A restart a command asked for is not the service's own: not counted.
        let asked = pb::ServiceState {
            exit_detail: "restarted by command (previous run killed by signal 15)".to_owned(),
            ..at(350, 4)
        };
        fold(&mut map, &asked, &("inc".to_owned(), 5), &mut dropped);
        assert_eq!(map["app"].restarted_at_unix_ms, [200, 300, 300]);
        assert_eq!(map["app"].restarts, 4);
        // A reset count (0 again) is no restart; the times stay.
        fold(&mut map, &at(400, 0), &("inc2".to_owned(), 1), &mut dropped);
        assert_eq!(map["app"].restarted_at_unix_ms, [200, 300, 300]);
        for i in 1..=(RESTARTS_KEPT as u64 + 5) {
            fold(
                &mut map,
                &at(1000 + i as i64, i),
                &("inc2".to_owned(), 1 + i),
                &mut dropped,
            );
        }
        let kept = &map["app"].restarted_at_unix_ms;
        assert_eq!(kept.len(), RESTARTS_KEPT);
        assert_eq!(kept.last(), Some(&(1000 + RESTARTS_KEPT as i64 + 5)));
    }

    #[test]
    fn a_capped_remediation_is_remembered_newest_first_and_survives_states() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        let rem = |capped: bool, reason: &str| pb::ServiceRemediation {
            service: "app".to_owned(),
            action: "restart".to_owned(),
            reason: reason.to_owned(),
            in_last_hour: 3,
            capped,
        };
        fold_remediation(&mut map, &rem(true, "unknown service"), 50);
        assert!(map.is_empty(), "a remediation makes no row");
        let s = state("app", pb::ServiceRunState::Running, 0);
        fold(&mut map, &s, &("inc".to_owned(), 1), &mut dropped);
        fold_remediation(&mut map, &rem(false, "probe failed"), 100);
        assert_eq!(map["app"].capped_at_unix_ms, 0, "not capped");
        fold_remediation(&mut map, &rem(true, "cap of 3 per hour"), 200);
        fold_remediation(&mut map, &rem(true, "older"), 150);
        assert_eq!(
            (
                map["app"].capped_at_unix_ms,
                map["app"].capped_reason.as_str()
            ),
            (200, "cap of 3 per hour")
        );
        fold(&mut map, &s, &("inc".to_owned(), 2), &mut dropped);
        assert_eq!(map["app"].capped_at_unix_ms, 200);
        assert_eq!(map["app"].state, ServiceRunState::Running);
    }

    #[test]
    fn a_heartbeat_tells_the_group_role_and_live_slot_of_a_known_service() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        let summary = pb::ServiceSummary {
            service: "router".into(),
            group: "edge".into(),
            role: "active".into(),
            slot_group: "web".into(),
            live: true,
            ..Default::default()
        };
        fold_summary(&mut map, &summary);
        assert!(map.is_empty(), "a heartbeat makes no row");
        let s = state("router", pb::ServiceRunState::Running, 0);
        fold(&mut map, &s, &("inc".to_owned(), 1), &mut dropped);
        fold_summary(&mut map, &summary);
        // A newer state keeps them.
        fold(&mut map, &s, &("inc".to_owned(), 2), &mut dropped);
        let row = &map["router"];
        assert_eq!(
            (
                row.group.as_str(),
                row.role.as_str(),
                row.slot_group.as_str(),
                row.live
            ),
            ("edge", "active", "web", true)
        );
    }

    #[test]
    fn services_beyond_the_cap_are_counted() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        for i in 0..SERVICES_KEPT + 3 {
            let s = state(&format!("svc-{i:03}"), pb::ServiceRunState::Running, 0);
            fold(&mut map, &s, &("inc".to_owned(), 1), &mut dropped);
        }
        assert_eq!(map.len(), SERVICES_KEPT);
        assert_eq!(dropped, 3);
    }

    #[test]
    fn a_driven_services_instance_and_version_are_kept() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        let s = pb::ServiceState {
            manager: "compose".to_owned(),
            instance: "3f2a9c1b7d0e".to_owned(),
            version: "1.4.2".to_owned(),
            ..state("api", pb::ServiceRunState::Running, 0)
        };
        fold(&mut map, &s, &("inc".to_owned(), 1), &mut dropped);
        let row = &map["api"];
        assert_eq!(
            (
                row.manager.as_str(),
                row.instance.as_str(),
                row.app_version.as_str()
            ),
            ("compose", "3f2a9c1b7d0e", "1.4.2")
        );
    }
}
