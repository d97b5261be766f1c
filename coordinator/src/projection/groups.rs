//! Active/standby groups' failover history, folded from the active coordinator's
//! `group_failover` events: per group (row `group/<name>`) the newest `FAILOVERS_KEPT`
//! failovers, each from `started` to `completed` or `failed`. Groups themselves (who is a
//! member, who is active) are read from the hosts' services; only what the coordinators did
//! is kept here. Pure.

use std::collections::BTreeMap;

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::bounds::clip;
use super::runs::{self, Run, Step};

/// Failovers kept per group (oldest dropped first).
pub const FAILOVERS_KEPT: usize = 16;
/// Groups with a history kept (a group beyond it is not recorded; coordinators name groups
/// only after their members' own config, so this is a backstop).
pub const GROUPS_KEPT: usize = 1024;

/// One failover as its events told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRecord {
    pub service: String,
    pub from_host: String,
    pub to_host: String,
    pub reason: String,
    /// "started", "completed", "failed".
    pub phase: String,
    pub drill: bool,
    pub epoch: u64,
    pub requested_by: String,
    /// The coordinator's clock when it started, and when it ended (0 while running).
    pub started_unix_ms: i64,
    #[serde(default)]
    pub ended_unix_ms: i64,
    #[serde(default)]
    pub took_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl FailoverRecord {
    pub fn is_running(&self) -> bool {
        self.phase == "started"
    }
}

impl Run for FailoverRecord {
    fn is_running(&self) -> bool {
        FailoverRecord::is_running(self)
    }
    fn close(&mut self, step: &Step<'_>) {
        self.phase = clip(step.phase);
        self.ended_unix_ms = step.at_unix_ms;
        self.took_ms = step.took_ms;
        self.detail = clip(step.detail);
    }
}

/// A group's failovers, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupHistory {
    pub failovers: Vec<FailoverRecord>,
}

impl GroupHistory {
    /// The newest failover, if any.
    pub fn last(&self) -> Option<&FailoverRecord> {
        self.failovers.last()
    }
}

/// Folds one `group_failover` event recorded at `at_unix_ms`; the group changed, if it did.
/// A `started` opens a record; a `completed` or `failed` closes the newest running one of the
/// same term and target (or, when there is none, is kept as a record of its own).
pub fn fold(
    groups: &mut BTreeMap<String, GroupHistory>,
    g: &pb::GroupFailover,
    at_unix_ms: i64,
) -> Option<String> {
    let history = runs::history(groups, &g.group, GROUPS_KEPT)?;
    let step = Step {
        phase: &g.phase,
        at_unix_ms,
        took_ms: g.took_ms,
        detail: &g.detail,
    };
    let same = |r: &FailoverRecord| r.epoch == g.epoch && r.to_host == g.to_host;
    let ends = ["completed", "failed"];
    runs::fold(
        &mut history.failovers,
        &step,
        ends,
        FAILOVERS_KEPT,
        same,
        |ended| FailoverRecord {
            service: clip(&g.service),
            from_host: clip(&g.from_host),
            to_host: clip(&g.to_host),
            reason: clip(&g.reason),
            phase: clip(&g.phase),
            drill: g.drill,
            epoch: g.epoch,
            requested_by: clip(&g.requested_by),
            started_unix_ms: at_unix_ms,
            ended_unix_ms: ended,
            took_ms: g.took_ms,
            detail: clip(&g.detail),
        },
    );
    Some(g.group.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(phase: &str, to: &str, epoch: u64) -> pb::GroupFailover {
        pb::GroupFailover {
            group: "edge".into(),
            service: "router".into(),
            from_host: "a".into(),
            to_host: to.into(),
            reason: "active failed".into(),
            phase: phase.into(),
            epoch,
            took_ms: if phase == "completed" { 1200 } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn a_failover_opens_and_closes_and_the_history_is_bounded() {
        let mut groups = BTreeMap::new();
        assert_eq!(
            fold(&mut groups, &ev("started", "b", 7), 100),
            Some("edge".into())
        );
        assert!(groups["edge"].failovers[0].is_running());
        fold(&mut groups, &ev("completed", "b", 7), 300);
        let r = &groups["edge"].failovers[0];
        assert_eq!(
            (r.phase.as_str(), r.took_ms, r.ended_unix_ms),
            ("completed", 1200, 300)
        );
        assert_eq!(groups["edge"].failovers.len(), 1);
        // A failed of another term with nothing open is a record of its own.
        fold(&mut groups, &ev("failed", "c", 9), 400);
        assert_eq!(groups["edge"].failovers.len(), 2);
        for i in 0..(FAILOVERS_KEPT as i64 + 3) {
            fold(&mut groups, &ev("started", "b", 10), 500 + i);
        }
        assert_eq!(groups["edge"].failovers.len(), FAILOVERS_KEPT);
        assert_eq!(
            groups["edge"].last().map(|r| r.started_unix_ms),
            Some(500 + FAILOVERS_KEPT as i64 + 2)
        );
        let nameless = pb::GroupFailover::default();
        assert_eq!(fold(&mut groups, &nameless, 1), None);
    }
}
