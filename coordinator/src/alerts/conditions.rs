//! Every condition that holds for the fleet at `now`: each host's own (`rules`), its
//! services' (`service_rules`), its checks' conditions (`probe_rules`) and its backups' remote
//! copies (`backup_rules`); the entry point of the alert state machine. Pure.

use super::backup_rules::backup_remote_conditions;
use super::host_rules::host_conditions;
use super::probe_rules::probe_conditions;
use super::rollout_rules::rollout_conditions;
use super::rules::{in_grace, Condition, Rules};
use super::service_rules::service_conditions;
use crate::projection::Fleet;

/// Every condition that holds at `now` (pure), for a coordinator active since
/// `active_since` (`None`: long enough). A host in maintenance has none: nothing pages for it,
/// and its open alerts resolve. Silence is not judged within the grace (`in_grace`).
pub fn conditions(
    rules: &Rules,
    fleet: &Fleet,
    now_unix_ms: i64,
    active_since: Option<i64>,
) -> Vec<Condition> {
    let mut out = Vec::new();
    let maintenance = fleet.maintenance();
    for host in (fleet.hosts()).filter(|h| !maintenance.contains(h.host.as_str())) {
        let graced = in_grace(rules, host, now_unix_ms, active_since);
        let lost = host_conditions(rules, fleet, host, (now_unix_ms, graced), &mut out);
        service_conditions(rules, host, now_unix_ms, lost, &mut out);
        probe_conditions(rules, host, now_unix_ms, lost, &mut out);
        backup_remote_conditions(rules, host, now_unix_ms, &mut out);
    }
    rollout_conditions(rules, fleet, now_unix_ms, &mut out);
    out
}
