//! The alert state machine (pure): pending → firing → resolved with a `for` duration,
//! hysteresis (`resolve_after`) and flap suppression, driven by conditions and `now`. The
//! persisted part of an alert's state is its record in the projection (folded transitions);
//! the evaluator keeps only when a firing alert's condition was first seen clear.

use std::collections::{BTreeMap, BTreeSet};

use opsfleet_proto::api::Severity;

use crate::projection::{AlertRecord, Fleet};

use super::conditions::conditions;
use super::rules::{Condition, Rule, RuleKind, Rules, Timing};

/// The states of an alert: proto's [`AlertState`](opsfleet_proto::api::AlertState), the
/// type its records and the API carry; `Unknown` (a record with a state this version does
/// not know) steps like no state at all.
pub use opsfleet_proto::api::AlertState as State;

/// What the machine needs to know about an alert's past (from its projection record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertView {
    pub state: Option<State>,
    /// When the current state began.
    pub since_unix_ms: i64,
    /// Recent firing times, ascending.
    pub firings: Vec<i64>,
}

impl AlertView {
    pub fn of(rec: &AlertRecord) -> AlertView {
        AlertView {
            state: rec.state.filter(|s| *s != State::Unknown),
            since_unix_ms: rec.since_unix_ms,
            firings: rec.firings.clone(),
        }
    }
}

/// One step of one alert: the state to move to now, if any. `clear_since` is when the
/// condition of a firing alert was first seen clear (kept by the caller between steps).
pub fn step(
    view: &AlertView,
    holds: bool,
    clear_since: &mut Option<i64>,
    t: &Timing,
    now: i64,
) -> Option<State> {
    match view.state {
        None | Some(State::Resolved | State::Unknown) => {
            *clear_since = None;
            match (holds, t.for_ms <= 0) {
                (false, _) => None,
                (true, true) => Some(State::Firing),
                (true, false) => Some(State::Pending),
            }
        }
        Some(State::Pending) => {
            *clear_since = None;
            if !holds {
                Some(State::Resolved)
            } else if now - view.since_unix_ms >= t.for_ms {
                Some(State::Firing)
            } else {
                None
            }
        }
        Some(State::Firing) => {
            if holds {
                *clear_since = None;
                return None;
            }
            let clear = *clear_since.get_or_insert(now);
            let recent = view
                .firings
                .iter()
                .filter(|f| **f > now - t.flap_window_ms)
                .count();
            let wait = if recent >= t.flap_max as usize {
                t.resolve_after_ms.max(t.flap_window_ms)
            } else {
                t.resolve_after_ms
            };
            if now - clear >= wait {
                *clear_since = None;
                Some(State::Resolved)
            } else {
                None
            }
        }
    }
}

/// A transition the evaluator decided; the edge records it as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub alert_id: String,
    pub rule: String,
    pub host: String,
    pub subject: String,
    pub from: Option<State>,
    pub to: State,
    pub severity: Severity,
    pub summary: String,
    pub value: String,
    pub at_unix_ms: i64,
    /// `host_lost`: (last seen, heartbeat interval) for the liveness event.
    pub liveness: Option<(i64, u64)>,
}

/// The evaluator's memory between ticks: when firing alerts were first seen clear, and when
/// this term began (the liveness grace runs from it). Losing the first (restart, failover)
/// only delays a resolve by up to `resolve_after`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    clear_since: BTreeMap<String, i64>,
    /// When the coordinator became active; `None`: long enough ago for no grace.
    active_since: Option<i64>,
}

impl Memory {
    /// The memory of a term that began at `active_since` (coordinator clock).
    pub fn since(active_since: i64) -> Memory {
        Memory {
            active_since: Some(active_since),
            ..Memory::default()
        }
    }
}

/// Evaluates every rule against the fleet at `now` (pure apart from `memory`): one
/// transition per alert whose state should change.
#[cfg(test)]
pub fn evaluate(rules: &Rules, fleet: &Fleet, memory: &mut Memory, now: i64) -> Vec<Transition> {
    evaluate_with(rules, fleet, Vec::new(), memory, now)
}

/// `evaluate`, with conditions observed outside the fleet projection (the events stream's
/// usage) holding as well.
pub fn evaluate_with(
    rules: &Rules,
    fleet: &Fleet,
    extra: Vec<Condition>,
    memory: &mut Memory,
    now: i64,
) -> Vec<Transition> {
    let holding: BTreeMap<String, Condition> = conditions(rules, fleet, now, memory.active_since)
        .into_iter()
        .chain(extra)
        .map(|c| (c.alert_id.clone(), c))
        .collect();
    let records = &fleet.alerts().alerts;
    // Alerts whose condition holds, and alerts not resolved whose condition no longer does.
    let open = records
        .iter()
        .filter(|(_, r)| matches!(r.state, Some(State::Pending | State::Firing)))
        .map(|(id, _)| id);
    let ids: BTreeSet<&String> = holding.keys().chain(open).collect();
    let mut out = Vec::new();
    for id in ids {
        let cond = holding.get(id);
        let rec = records.get(id);
        let Some(rule) = rule_of(rules, cond, rec) else {
            continue;
        };
        if cond.is_none() && rec.is_some_and(|r| unjudged(rules, fleet, &rule, r, now, memory)) {
            continue;
        }
        let view = rec.map(AlertView::of).unwrap_or_default();
        let mut clear = memory.clear_since.get(id).copied();
        let next = step(&view, cond.is_some(), &mut clear, &rule.timing, now);
        match clear {
            Some(t) => memory.clear_since.insert(id.clone(), t),
            None => memory.clear_since.remove(id),
        };
        let Some(to) = next.or_else(|| refreshed(&rule, &view, cond, rec)) else {
            continue;
        };
        let (host, subject, summary, value, liveness) = match (cond, rec) {
            (Some(c), _) => (
                c.host.clone(),
                c.subject.clone(),
                c.summary.clone(),
                c.value.clone(),
                c.liveness,
            ),
            (None, Some(r)) => (
                r.host.clone(),
                r.subject.clone(),
                format!("resolved: {}", r.summary),
                String::new(),
                None,
            ),
            (None, None) => continue,
        };
        out.push(Transition {
            alert_id: id.clone(),
            rule: rule.kind.name().to_owned(),
            host,
            subject,
            from: view.state,
            to,
            severity: rule.severity,
            summary,
            value,
            at_unix_ms: now,
            liveness,
        });
    }
    // Forget alerts that are neither open nor holding.
    memory
        .clear_since
        .retain(|id, _| holding.contains_key(id) || records.contains_key(id));
    out
}

/// An open liveness alert of a host whose silence cannot be judged yet (grace): it keeps its
/// state rather than resolving for want of a condition.
fn unjudged(
    rules: &Rules,
    fleet: &Fleet,
    rule: &Rule,
    rec: &AlertRecord,
    now: i64,
    memory: &Memory,
) -> bool {
    rule.kind.is_liveness()
        && (fleet.host(&rec.host))
            .is_some_and(|h| super::rules::in_grace(rules, h, now, memory.active_since))
}

/// A firing alert whose condition still holds with another value (disk 91% → 95%) is
/// recorded again as firing → firing: the fold updates its detail, not its transition.
fn refreshed(
    rule: &Rule,
    view: &AlertView,
    cond: Option<&Condition>,
    rec: Option<&AlertRecord>,
) -> Option<State> {
    let (c, r) = (cond?, rec?);
    (view.state == Some(State::Firing) && rule.kind.refreshes() && c.value != r.value)
        .then_some(State::Firing)
}

/// The rule of an alert; a disabled rule's open alerts resolve with the default timing.
fn rule_of(rules: &Rules, cond: Option<&Condition>, rec: Option<&AlertRecord>) -> Option<Rule> {
    let kind = match (cond, rec) {
        (Some(c), _) => c.rule,
        (None, Some(r)) => RuleKind::parse(&r.rule)?,
        (None, None) => return None,
    };
    Some(
        rules
            .get(kind)
            .cloned()
            .unwrap_or_else(|| Rule::default_for(kind)),
    )
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "machine_props.rs"]
mod props;
