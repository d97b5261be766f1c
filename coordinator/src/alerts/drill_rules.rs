//! `drill_overdue` (no run of a declared drill passed within `every` + `grace`, switched off
//! or not) and `drill_failed` (its newest ended run failed; resolved by a later pass): one
//! alert per drill, subject = the drill's name, no host. Pure: the drills' config (`[[drills]]`,
//! `crate::drills`), the fleet and `now`; the alert engine adds them to its conditions.

use super::rules::{alert_id, Condition, RuleKind, Rules};
use crate::drills::config::DrillConfig;
use crate::drills::schedule::overdue;
use crate::projection::Fleet;

/// Since when the log has known an active coordinator (the oldest leadership change it
/// keeps), else `fallback`: a drill that never ran is overdue counted from there.
fn known_since(fleet: &Fleet, fallback: i64) -> i64 {
    (fleet.coordinators())
        .filter_map(|c| c.history.first().map(|h| h.at_unix_ms))
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(fallback)
        .min(fallback)
}

/// The drill conditions at `now`; `since` is when this coordinator's term began.
pub fn drill_conditions(
    rules: &Rules,
    drills: &[DrillConfig],
    fleet: &Fleet,
    now: i64,
    since: i64,
    out: &mut Vec<Condition>,
) {
    let since = known_since(fleet, since);
    for d in drills {
        let h = fleet.drills().get(&d.name);
        if let Some(rule) = rules.get(RuleKind::DrillOverdue) {
            if let Some(age) = overdue(d, h, since, now) {
                let last = match h.map(|h| h.last_passed_unix_ms) {
                    Some(t) if t > 0 => format!("last passed {} s ago", age / 1000),
                    _ => "never passed".to_owned(),
                };
                let off = if d.enabled { "" } else { " (switched off)" };
                out.push(Condition {
                    alert_id: alert_id(rule.kind, "", &d.name),
                    rule: rule.kind,
                    host: String::new(),
                    subject: d.name.clone(),
                    summary: format!(
                        "drill {} ({}){off} is overdue: {last}; due every {}",
                        d.name,
                        d.kind.as_str(),
                        humantime::format_duration(d.every)
                    ),
                    value: "overdue".to_owned(),
                    liveness: None,
                });
            }
        }
        let Some(rule) = rules.get(RuleKind::DrillFailed) else {
            continue;
        };
        let Some(last) = h.and_then(|h| h.last_ended()) else {
            continue;
        };
        if last.phase != "failed" {
            continue;
        }
        out.push(Condition {
            alert_id: alert_id(rule.kind, "", &d.name),
            rule: rule.kind,
            host: String::new(),
            subject: d.name.clone(),
            summary: format!(
                "drill {} ({}) failed: {}",
                d.name,
                d.kind.as_str(),
                last.detail
            ),
            value: last.run_id.clone(),
            liveness: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opsfleet_proto::pb::{self, event::Body};
    use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
    use uuid::Uuid;

    use super::*;
    use crate::alerts::AlertsConfig;
    use crate::drills::config::DrillKind;

    fn run(fleet: &mut Fleet, seq: u64, phase: &str, id: &str, at: i64) {
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: "blue".into(),
            seq,
            time_unix_ms: at,
            module: COORDINATOR_MODULE.into(),
            incarnation: Uuid::nil(),
            body: Body::DrillRun(pb::DrillRun {
                drill: "dr".into(),
                kind: "notification_test".into(),
                phase: phase.into(),
                run_id: id.into(),
                detail: if phase == "failed" {
                    "route hook: failed".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
        });
    }

    #[test]
    fn overdue_when_never_passed_or_switched_off_and_failed_until_a_pass() {
        let rules = AlertsConfig::default().rules();
        let mut d = DrillConfig {
            name: "dr".into(),
            kind: DrillKind::NotificationTest,
            every: Duration::from_secs(10),
            jitter: Duration::ZERO,
            grace: Some(Duration::from_secs(5)),
            enabled: false,
            timeout: Duration::from_secs(60),
            group: None,
            hosts: Vec::new(),
            labels: Default::default(),
            job: None,
            module: None,
        };
        let mut fleet = Fleet::new();
        let ids = |fleet: &Fleet, d: &DrillConfig, now| {
            let mut out = Vec::new();
            drill_conditions(&rules, std::slice::from_ref(d), fleet, now, 1_000, &mut out);
            out.into_iter().map(|c| c.alert_id).collect::<Vec<_>>()
        };
        assert!(ids(&fleet, &d, 16_000).is_empty());
        assert_eq!(ids(&fleet, &d, 16_001), ["drill_overdue//dr"]);
        d.enabled = true;
        run(&mut fleet, 1, "started", "r1", 17_000);
        run(&mut fleet, 2, "failed", "r1", 17_500);
        assert_eq!(
            ids(&fleet, &d, 18_000),
            ["drill_overdue//dr", "drill_failed//dr"]
        );
        run(&mut fleet, 3, "started", "r2", 19_000);
        run(&mut fleet, 4, "passed", "r2", 19_500);
        assert!(ids(&fleet, &d, 20_000).is_empty());
        assert_eq!(ids(&fleet, &d, 34_501), ["drill_overdue//dr"]);
    }
}
