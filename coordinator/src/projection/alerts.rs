//! Projection of the alert engine's own events (module `coordinator`): every alert with its
//! current state and the notifications recorded for its transitions, and every host's
//! liveness verdict. A pure fold, so a rebuild reproduces alerts and what was sent.

use std::collections::BTreeMap;

use opsfleet_proto::api::{empty_is_none, AlertState, NotifyOutcome, Severity};
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::EventEnvelope;
use serde::{Deserialize, Serialize};

use super::bounds::clip;

/// How many firing times an alert keeps (flap suppression looks at them).
pub const FIRINGS_KEPT: usize = 32;
/// How many notification records an alert keeps.
pub const NOTIFICATIONS_KEPT: usize = 64;

/// One notification the active coordinator recorded for one transition and route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Id of the transition event (the idempotency key receivers got).
    pub transition_id: String,
    pub route: String,
    pub outcome: NotifyOutcome,
    pub attempts: u32,
    pub detail: String,
    pub epoch: u64,
    /// Coordinator that recorded it.
    pub by: String,
    pub at_unix_ms: i64,
}

/// One alert (rule + host + subject) as its transitions left it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub id: String,
    pub rule: String,
    pub host: String,
    pub subject: String,
    /// `pending`, `firing` or `resolved`; `""` (none) for an alert known only from a
    /// notification record so far.
    #[serde(with = "empty_is_none")]
    pub state: Option<AlertState>,
    /// The state before the current one (`""` for the first transition).
    #[serde(with = "empty_is_none")]
    pub previous: Option<AlertState>,
    /// The rule's severity; `""` (none) until a transition told it.
    #[serde(with = "empty_is_none")]
    pub severity: Option<Severity>,
    pub summary: String,
    pub value: String,
    /// Evaluator clock of the transition that began the current state.
    pub since_unix_ms: i64,
    /// Epoch of the term that recorded the current state.
    pub epoch: u64,
    /// Event id of the transition that began the current state.
    pub transition_id: String,
    /// Coordinator that recorded it.
    pub by: String,
    /// Transitions folded (every state change counts once).
    pub transitions: u64,
    /// Evaluator clock of recent firing transitions, ascending.
    pub firings: Vec<i64>,
    /// Oldest first.
    pub notifications: Vec<NotificationRecord>,
    /// Event id of the newest firing transition (a resolve is notified on a route only if
    /// this firing was: no orphan resolve).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub firing_transition_id: String,
    /// An operator's acknowledgement of the current transition; cleared by the next state
    /// change (a resolve, or a new firing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Ack>,
}

/// An operator's acknowledgement of one transition of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub by: String,
    pub role: String,
    /// Recording coordinator's clock.
    pub at_unix_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// The transition it acknowledged.
    pub transition_id: String,
}

impl AlertRecord {
    /// Whether a notification for `transition_id` on `route` is already recorded.
    pub fn notified(&self, transition_id: &str, route: &str) -> bool {
        self.notifications
            .iter()
            .any(|n| n.transition_id == transition_id && n.route == route)
    }

    /// Whether `route` may have heard of `transition_id`: a notification recorded as sent, dry
    /// run, or failed (a failed attempt may still have arrived). A rate-limited one never left.
    pub fn heard(&self, transition_id: &str, route: &str) -> bool {
        self.notifications.iter().any(|n| {
            n.transition_id == transition_id
                && n.route == route
                && n.outcome != NotifyOutcome::RateLimited
        })
    }

    /// Whether the current state is one receivers hear about: firing, or resolved after
    /// firing (a pending alert that cleared was never announced).
    pub fn notifiable(&self) -> bool {
        use AlertState::{Firing, Resolved};
        self.state == Some(Firing)
            || (self.state == Some(Resolved) && self.previous == Some(Firing))
    }
}

/// The active coordinator's latest verdict on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub host: String,
    pub lost: bool,
    pub last_seen_unix_ms: i64,
    pub interval_ms: u64,
    pub epoch: u64,
    pub by: String,
    /// Coordinator clock of the verdict.
    pub at_unix_ms: i64,
    /// Times the host was declared lost.
    pub lost_count: u64,
}

/// Every alert and liveness verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alerts {
    pub alerts: BTreeMap<String, AlertRecord>,
    pub liveness: BTreeMap<String, Liveness>,
}

/// Which row an event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Alert(String),
    Liveness(String),
}

impl Alerts {
    /// Folds one accepted coordinator event; returns the row it changed, if any.
    pub fn apply(&mut self, ev: &EventEnvelope) -> Option<Changed> {
        match &ev.body {
            Body::AlertTransition(t) => {
                let state = Some(AlertState::from_wire(t.state));
                let rec = self.alerts.entry(t.alert_id.clone()).or_default();
                // firing → firing: the detail of an alert that stays firing (disk 91% → 95%),
                // not a transition: no notification, same transition id.
                if t.previous == t.state && state == Some(AlertState::Firing) {
                    if t.epoch < rec.epoch || rec.state != state || rec.value == t.value {
                        return None;
                    }
                    rec.summary = t.summary.clone();
                    rec.value = t.value.clone();
                    return Some(Changed::Alert(t.alert_id.clone()));
                }
                // A transition of an older term than the one that recorded the current state
                // arrived late, or two coordinators recorded the same change: the first one
                // folded wins, so its notifications are the only ones.
                if t.epoch < rec.epoch || rec.state == state {
                    return None;
                }
                rec.id = t.alert_id.clone();
                rec.rule = t.rule.clone();
                rec.host = t.target_host.clone();
                rec.subject = t.subject.clone();
                rec.previous = std::mem::replace(&mut rec.state, state);
                rec.severity = t.severity.parse().ok();
                rec.summary = t.summary.clone();
                rec.value = t.value.clone();
                rec.since_unix_ms = t.at_unix_ms;
                rec.epoch = t.epoch;
                rec.transition_id = ev.id.to_string();
                rec.by = ev.host.clone();
                rec.transitions += 1;
                rec.ack = None;
                if state == Some(AlertState::Firing) {
                    rec.firing_transition_id = ev.id.to_string();
                    let pos = rec.firings.partition_point(|f| *f <= t.at_unix_ms);
                    rec.firings.insert(pos, t.at_unix_ms);
                    if rec.firings.len() > FIRINGS_KEPT {
                        rec.firings.remove(0);
                    }
                }
                Some(Changed::Alert(t.alert_id.clone()))
            }
            Body::NotificationSent(n) => {
                let rec = self.alerts.entry(n.alert_id.clone()).or_default();
                if rec.id.is_empty() {
                    rec.id = n.alert_id.clone();
                }
                rec.notifications.push(NotificationRecord {
                    transition_id: n.transition_id.clone(),
                    route: n.route.clone(),
                    outcome: NotifyOutcome::from_wire(n.outcome),
                    attempts: n.attempts,
                    detail: n.detail.clone(),
                    epoch: n.epoch,
                    by: ev.host.clone(),
                    at_unix_ms: ev.time_unix_ms,
                });
                if rec.notifications.len() > NOTIFICATIONS_KEPT {
                    rec.notifications.remove(0);
                }
                Some(Changed::Alert(n.alert_id.clone()))
            }
            Body::AlertAcked(k) => {
                let rec = self.alerts.get_mut(&k.alert_id)?;
                // Only the transition it names, while open, and the first ack of it.
                let open = matches!(rec.state, Some(AlertState::Firing | AlertState::Pending));
                if !open || rec.transition_id != k.transition_id || rec.ack.is_some() {
                    return None;
                }
                rec.ack = Some(Ack {
                    by: clip(&k.by),
                    role: clip(&k.role),
                    at_unix_ms: k.at_unix_ms,
                    comment: clip(&k.comment),
                    transition_id: k.transition_id.clone(),
                });
                Some(Changed::Alert(k.alert_id.clone()))
            }
            Body::HostLiveness(l) => {
                let live = self.liveness.entry(l.target_host.clone()).or_default();
                if l.epoch < live.epoch || (live.lost == l.lost && !live.host.is_empty()) {
                    return None;
                }
                *live = Liveness {
                    host: l.target_host.clone(),
                    lost: l.lost,
                    last_seen_unix_ms: l.last_seen_unix_ms,
                    interval_ms: l.interval_ms,
                    epoch: l.epoch,
                    by: ev.host.clone(),
                    at_unix_ms: ev.time_unix_ms,
                    lost_count: live.lost_count + u64::from(l.lost),
                };
                Some(Changed::Liveness(l.target_host.clone()))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::pb;
    use uuid::Uuid;

    fn ev(seq: u64, coordinator: &str, body: Body) -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            host: coordinator.to_owned(),
            seq,
            time_unix_ms: seq as i64 * 1000,
            module: opsfleet_proto::COORDINATOR_MODULE.to_owned(),
            incarnation: Uuid::nil(),
            body,
        }
    }

    fn transition(state: pb::AlertState, epoch: u64, at: i64) -> Body {
        Body::AlertTransition(pb::AlertTransition {
            alert_id: "disk_crit/web-01//data".into(),
            rule: "disk_crit".into(),
            target_host: "web-01".into(),
            subject: "/data".into(),
            state: state as i32,
            severity: "critical".into(),
            epoch,
            at_unix_ms: at,
            ..Default::default()
        })
    }

    fn sent(transition_id: &str, route: &str) -> Body {
        Body::NotificationSent(pb::NotificationSent {
            alert_id: "disk_crit/web-01//data".into(),
            transition_id: transition_id.into(),
            route: route.into(),
            outcome: pb::NotifyOutcome::Sent as i32,
            attempts: 1,
            epoch: 7,
            ..Default::default()
        })
    }

    #[test]
    fn transitions_move_the_state_and_notifications_attach_to_them() {
        let mut a = Alerts::default();
        let firing = ev(1, "blue", transition(pb::AlertState::Firing, 7, 100));
        assert!(a.apply(&firing).is_some());
        let rec = &a.alerts["disk_crit/web-01//data"];
        assert_eq!((rec.state, rec.previous), (Some(AlertState::Firing), None));
        assert!(rec.notifiable());
        assert_eq!(rec.transition_id, firing.id.to_string());
        a.apply(&ev(2, "blue", sent(&firing.id.to_string(), "ops")));
        let rec = &a.alerts["disk_crit/web-01//data"];
        assert!(rec.notified(&firing.id.to_string(), "ops"));
        assert!(!rec.notified(&firing.id.to_string(), "pager"));

        // The same change recorded again (by a second coordinator) changes nothing.
        assert!(a
            .apply(&ev(1, "green", transition(pb::AlertState::Firing, 8, 150)))
            .is_none());
        assert_eq!(
            a.alerts["disk_crit/web-01//data"].transition_id,
            firing.id.to_string()
        );
        let resolved = ev(3, "green", transition(pb::AlertState::Resolved, 8, 200));
        a.apply(&resolved);
        let rec = &a.alerts["disk_crit/web-01//data"];
        assert_eq!(
            (rec.state, rec.by.as_str()),
            (Some(AlertState::Resolved), "green")
        );
        assert!(rec.notifiable());
        assert_eq!((rec.transitions, rec.firings.clone()), (2, vec![100]));
        // A late transition of an older term is ignored.
        assert!(a
            .apply(&ev(4, "blue", transition(pb::AlertState::Firing, 7, 300)))
            .is_none());
    }

    fn acked(transition_id: &str, by: &str) -> Body {
        Body::AlertAcked(pb::AlertAcked {
            alert_id: "disk_crit/web-01//data".into(),
            transition_id: transition_id.into(),
            by: by.into(),
            role: "operator".into(),
            at_unix_ms: 5,
            comment: "looking".into(),
            epoch: 7,
        })
    }

    #[test]
    fn an_ack_holds_for_its_transition_and_clears_at_the_next() {
        let mut a = Alerts::default();
        let id = "disk_crit/web-01//data";
        assert!(
            a.apply(&ev(1, "blue", acked("x", "alice"))).is_none(),
            "unknown alert"
        );
        let firing = ev(2, "blue", transition(pb::AlertState::Firing, 7, 100));
        a.apply(&firing);
        let fid = firing.id.to_string();
        assert_eq!(a.alerts[id].firing_transition_id, fid);
        assert!(a.apply(&ev(3, "blue", acked("other", "alice"))).is_none());
        assert!(a.apply(&ev(4, "blue", acked(&fid, "alice"))).is_some());
        assert!(
            a.apply(&ev(5, "blue", acked(&fid, "bob"))).is_none(),
            "first wins"
        );
        let ack = a.alerts[id].ack.clone().unwrap();
        assert_eq!(
            (ack.by.as_str(), ack.comment.as_str()),
            ("alice", "looking")
        );
        // A firing → firing refresh keeps it.
        let mut refresh = transition(pb::AlertState::Firing, 7, 150);
        if let Body::AlertTransition(t) = &mut refresh {
            t.previous = pb::AlertState::Firing as i32;
            t.value = "97%".into();
        }
        a.apply(&ev(6, "blue", refresh));
        assert!(a.alerts[id].ack.is_some());
        let resolved = ev(7, "blue", transition(pb::AlertState::Resolved, 7, 200));
        a.apply(&resolved);
        let rec = &a.alerts[id];
        assert_eq!(
            (rec.ack.clone(), rec.firing_transition_id.as_str()),
            (None, fid.as_str())
        );
        assert!(
            a.apply(&ev(8, "blue", acked(&resolved.id.to_string(), "alice")))
                .is_none(),
            "a resolved alert takes no ack"
        );
        let again = ev(9, "blue", transition(pb::AlertState::Firing, 7, 300));
        a.apply(&again);
        assert_eq!(a.alerts[id].ack, None);
        assert_eq!(a.alerts[id].firing_transition_id, again.id.to_string());
    }

    #[test]
    fn a_pending_alert_that_clears_is_not_notifiable() {
        let mut a = Alerts::default();
        a.apply(&ev(1, "blue", transition(pb::AlertState::Pending, 1, 10)));
        assert!(!a.alerts["disk_crit/web-01//data"].notifiable());
        a.apply(&ev(2, "blue", transition(pb::AlertState::Resolved, 1, 20)));
        assert!(!a.alerts["disk_crit/web-01//data"].notifiable());
    }

    #[test]
    fn liveness_records_lost_and_returned_once_each() {
        let mut a = Alerts::default();
        let live = |lost| {
            Body::HostLiveness(pb::HostLiveness {
                target_host: "db-01".into(),
                lost,
                last_seen_unix_ms: 5,
                interval_ms: 1000,
                epoch: 3,
            })
        };
        assert!(a.apply(&ev(1, "blue", live(true))).is_some());
        assert!(a.apply(&ev(2, "green", live(true))).is_none());
        assert!(a.apply(&ev(3, "green", live(false))).is_some());
        assert!(a.apply(&ev(4, "green", live(true))).is_some());
        let l = &a.liveness["db-01"];
        assert_eq!((l.lost, l.lost_count), (true, 2));
    }
}
