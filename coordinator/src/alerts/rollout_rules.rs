//! `rollout_failed`: a rollout that ended rolled back (a failed gate, a host that could not
//! take the new version) or failed, or that left a host it could not roll back, raised for
//! `window` after its end (one alert per rollout, subject = its id, no host) unless a later
//! rollout of the same service completed since. Its notification is how an operator hears
//! that a deploy undid itself. Pure.

use super::rules::{alert_id, Condition, RuleKind, Rules};
use crate::projection::Fleet;

/// Whether an ended rollout is worth a page: rolled back or failed, or any outcome whose
/// reason says a host was not rolled back.
fn failed(outcome: &str, reason: &str) -> bool {
    matches!(outcome, "rolled_back" | "failed") || reason.contains("not rolled back")
}

/// The rollout conditions at `now`.
pub fn rollout_conditions(rules: &Rules, fleet: &Fleet, now: i64, out: &mut Vec<Condition>) {
    let Some(rule) = rules.get(RuleKind::RolloutFailed) else {
        return;
    };
    for r in fleet.rollouts().iter() {
        let Some((outcome, reason, at)) = &r.ended else {
            continue;
        };
        if !failed(outcome, reason) || now.saturating_sub(*at) >= rule.window_ms {
            continue;
        }
        let superseded = fleet.rollouts().iter().any(|later| {
            later.plan.service == r.plan.service
                && later.started_at_unix_ms > r.started_at_unix_ms
                && later
                    .ended
                    .as_ref()
                    .is_some_and(|(o, _, _)| o == "completed")
        });
        if superseded {
            continue;
        }
        out.push(Condition {
            alert_id: alert_id(rule.kind, "", &r.id),
            rule: rule.kind,
            host: String::new(),
            subject: r.id.clone(),
            summary: format!(
                "rollout {} of {} {} ended {outcome}: {reason}",
                r.id, r.plan.service, r.plan.version
            ),
            value: outcome.clone(),
            liveness: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use opsfleet_proto::pb::{self, rollout_step::Step};
    use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
    use uuid::Uuid;

    use super::*;
    use crate::alerts::AlertsConfig;

    fn step(fleet: &mut Fleet, seq: u64, id: &str, at: i64, step: Step) {
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: "blue".into(),
            seq,
            time_unix_ms: at,
            module: COORDINATOR_MODULE.into(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::Rollout(pb::RolloutStep {
                rollout_id: id.into(),
                epoch: 1,
                at_unix_ms: at,
                step: Some(step),
            }),
        });
    }

    fn started() -> Step {
        Step::Started(pb::RolloutStarted {
            service: "web".into(),
            version: "2.0".into(),
            ..Default::default()
        })
    }

    fn ended(outcome: &str, reason: &str) -> Step {
        Step::Ended(pb::RolloutEnded {
            outcome: outcome.into(),
            reason: reason.into(),
        })
    }

    #[test]
    fn a_rolled_back_rollout_fires_until_its_window_passes_or_a_later_one_completes() {
        let rules = AlertsConfig::default().rules();
        let mut fleet = Fleet::new();
        step(&mut fleet, 1, "web-1", 1_000, started());
        step(
            &mut fleet,
            2,
            "web-1",
            2_000,
            ended("rolled_back", "wave 0 soak gate failed"),
        );
        let ids = |fleet: &Fleet, now| {
            let mut out = Vec::new();
            rollout_conditions(&rules, fleet, now, &mut out);
            out.into_iter().map(|c| c.alert_id).collect::<Vec<_>>()
        };
        assert_eq!(ids(&fleet, 3_000), ["rollout_failed//web-1"]);
        assert!(ids(&fleet, 2_000 + 3_600_000).is_empty());

        step(&mut fleet, 3, "web-2", 4_000, started());
        assert_eq!(ids(&fleet, 5_000).len(), 1, "a later rollout still running");
        step(
            &mut fleet,
            4,
            "web-2",
            6_000,
            ended("completed", "4 host(s) run 2.0"),
        );
        assert!(ids(&fleet, 7_000).is_empty());

        step(&mut fleet, 5, "web-3", 8_000, started());
        step(
            &mut fleet,
            6,
            "web-3",
            9_000,
            ended("completed", "2 host(s) run 2.0"),
        );
        step(&mut fleet, 7, "web-4", 10_000, started());
        step(
            &mut fleet,
            8,
            "web-4",
            11_000,
            ended("aborted", "aborted by bob"),
        );
        assert!(
            ids(&fleet, 12_000).is_empty(),
            "an abort that put every host back"
        );
    }
}
