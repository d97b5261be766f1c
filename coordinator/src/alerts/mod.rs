//! The alert engine: rules over the fleet projection (`rules`, the service rules in
//! `service_rules`), the pure state machine
//! (`machine`), `[alerts]` config (`config`), and the active coordinator's evaluator and
//! delivery loops (`engine`). Every transition, liveness verdict and notification is an
//! event in the log, so a coordinator that becomes active continues exactly where the
//! previous one stopped.

pub mod backup_rules;
pub mod conditions;
pub mod config;
pub mod drill_rules;
pub mod engine;
pub mod host_rules;
pub mod machine;
pub mod probe_rules;
pub mod rollout_rules;
pub mod rules;
pub mod service_rules;
pub mod silence;

pub use config::AlertsConfig;
pub use machine::{evaluate_with, Memory, State, Transition};
pub use rules::{stream_condition, RuleKind, Rules, StreamUsage};

use opsfleet_proto::pb::{self, event::Body};

use crate::notify::{Firing, Notification};
use crate::projection::{AlertRecord, Fleet};
use opsfleet_proto::api::AlertState as pb_state;

/// One evaluation pass of the default rules over `fleet` at `now_unix_ms`, as the evaluator
/// loop runs it each tick (a term that began at `now_unix_ms`); how many transitions it
/// decided. What the benchmark times as the alert evaluation period's floor.
pub fn evaluation_pass(fleet: &Fleet, now_unix_ms: i64) -> usize {
    let mut memory = Memory::since(now_unix_ms);
    evaluate_with(
        &Rules::default(),
        fleet,
        Vec::new(),
        &mut memory,
        now_unix_ms,
    )
    .len()
}

fn wire_state(s: Option<State>) -> pb::AlertState {
    match s {
        None | Some(State::Unknown) => pb::AlertState::Unspecified,
        Some(State::Pending) => pb::AlertState::Pending,
        Some(State::Firing) => pb::AlertState::Firing,
        Some(State::Resolved) => pb::AlertState::Resolved,
    }
}

/// The event body recording a transition decided in term `epoch`.
pub fn transition_body(t: &Transition, epoch: u64) -> Body {
    Body::AlertTransition(pb::AlertTransition {
        alert_id: t.alert_id.clone(),
        rule: t.rule.clone(),
        target_host: t.host.clone(),
        subject: t.subject.clone(),
        state: wire_state(Some(t.to)) as i32,
        severity: t.severity.as_str().to_owned(),
        summary: t.summary.clone(),
        value: t.value.clone(),
        epoch,
        at_unix_ms: t.at_unix_ms,
        previous: wire_state(t.from) as i32,
    })
}

/// The liveness event that goes with a `host_lost` transition, if any.
pub fn liveness_body(t: &Transition, epoch: u64) -> Option<Body> {
    if t.rule != RuleKind::HostLost.name() || t.to == State::Pending {
        return None;
    }
    let (last_seen_unix_ms, interval_ms) = t.liveness.unwrap_or_default();
    Some(Body::HostLiveness(pb::HostLiveness {
        target_host: t.host.clone(),
        lost: t.to == State::Firing,
        last_seen_unix_ms,
        interval_ms,
        epoch,
    }))
}

/// What receivers get for an alert's current transition. `id` is the transition event's id:
/// the idempotency key, the same whichever coordinator sends it.
pub fn notification_of(rec: &AlertRecord, coordinator: &str, epoch: u64) -> Notification {
    Notification {
        id: rec.transition_id.clone(),
        alert_id: rec.id.clone(),
        rule: rec.rule.clone(),
        host: rec.host.clone(),
        subject: rec.subject.clone(),
        state: rec.state.unwrap_or_default(),
        severity: rec.severity.unwrap_or_default(),
        summary: rec.summary.clone(),
        at_unix_ms: rec.since_unix_ms,
        coordinator: coordinator.to_owned(),
        epoch,
        labels: Default::default(),
        firing_since_unix_ms: rec.firings.last().copied().unwrap_or(0),
        routes_before: (rec.notifications.iter())
            .filter(|n| n.transition_id != rec.transition_id)
            .map(|n| n.route.clone())
            .collect(),
    }
}

/// [`notification_of`] with the host's labels from the projection (for route matching).
pub fn notification_for(
    rec: &AlertRecord,
    fleet: &Fleet,
    coordinator: &str,
    epoch: u64,
) -> Notification {
    let mut n = notification_of(rec, coordinator, epoch);
    if let Some(host) = fleet.host(&rec.host) {
        n.labels = host.labels.clone();
    }
    n
}

/// Every firing alert with the routes its current transition was handled on: what
/// Alertmanager routes re-send while it fires.
pub fn firing(fleet: &Fleet, coordinator: &str, epoch: u64) -> Vec<Firing> {
    let alerts = fleet.alerts().alerts.values();
    alerts
        .filter(|rec| rec.state == Some(pb_state::Firing))
        .map(|rec| Firing {
            notification: notification_for(rec, fleet, coordinator, epoch),
            routes: (rec.notifications.iter())
                .filter(|n| n.transition_id == rec.transition_id)
                .map(|n| n.route.clone())
                .collect(),
        })
        .collect()
}

/// Transitions folded in the log that still lack a notification on a route (pure): each
/// alert's current transition the silence verdict says to send now (`silence::verdict`:
/// notifiable, not recorded for the route, not held by an active silence, not too old, no
/// orphan resolve). Ascending by alert id.
pub fn undelivered(
    fleet: &Fleet,
    routes_for: impl Fn(&AlertRecord) -> Vec<String>,
    now_unix_ms: i64,
    max_age_ms: i64,
) -> Vec<(&AlertRecord, String)> {
    let no_labels = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for rec in fleet.alerts().alerts.values() {
        if !rec.notifiable() {
            continue;
        }
        let labels = fleet.host(&rec.host).map_or(&no_labels, |h| &h.labels);
        for route in routes_for(rec) {
            let v = silence::verdict(
                rec,
                &route,
                fleet.silences(),
                labels,
                now_unix_ms,
                max_age_ms,
            );
            if v == silence::Verdict::Send {
                out.push((rec, route));
            }
        }
    }
    out
}
