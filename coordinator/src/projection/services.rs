//! Per-host projection of supervised services: the latest `service` event of each, by
//! (incarnation, seq) version so a late, gap-filling event never rolls the state back. Pure.

use std::collections::BTreeMap;

use opsfleet_proto::api::{ProbeStatus, ServiceRunState};
use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::bounds::{capped_entry, clip, SERVICES_KEPT};
use super::seq::Version;

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
    pub version: Version,
    /// The version the service runs (from its declared source), empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app_version: String,
    /// The worst of its own probes; `None` when it declares none (or does not run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ProbeStatus>,
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
    *row = ServiceRow {
        manager: clip(&s.manager),
        state: ServiceRunState::from_wire(s.state),
        pid: s.pid,
        since_unix_ms: s.since_unix_ms,
        restarts: s.restarts,
        exit_detail: clip(&s.exit_detail),
        version: version.clone(),
        app_version: clip(&s.version),
        health: match ProbeStatus::from_wire(s.health) {
            ProbeStatus::Unknown => None,
            h => Some(h),
        },
    };
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
}
