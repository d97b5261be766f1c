//! The silence verdict: examples, and a proptest driving a simulated delivery loop over random
//! alert states and silences through the real fold.

use std::collections::BTreeMap;

use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::projection::Alerts;

const ID: &str = "disk_crit/web-01//data";
const MAX_AGE: i64 = 60_000;

struct World {
    alerts: Alerts,
    silences: Silences,
    seq: u64,
    labels: BTreeMap<String, String>,
}

impl World {
    fn new() -> Self {
        World {
            alerts: Alerts::default(),
            silences: Silences::default(),
            seq: 0,
            labels: [("env".to_owned(), "prod".to_owned())].into(),
        }
    }

    fn fold(&mut self, at: i64, body: Body) -> String {
        self.seq += 1;
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: "blue".into(),
            seq: self.seq,
            time_unix_ms: at,
            module: COORDINATOR_MODULE.into(),
            incarnation: Uuid::nil(),
            body,
        };
        match &ev.body {
            Body::SilenceAdded(a) => {
                self.silences.add(a, "blue");
            }
            Body::SilenceExpired(x) => {
                self.silences.expire(x);
            }
            _ => {
                self.alerts.apply(&ev);
            }
        }
        ev.id.to_string()
    }

    fn transition(&mut self, at: i64, state: pb::AlertState) {
        let previous = self
            .rec()
            .and_then(|r| r.state)
            .map_or(pb::AlertState::Unspecified, |s| match s {
                AlertState::Pending => pb::AlertState::Pending,
                AlertState::Firing => pb::AlertState::Firing,
                _ => pb::AlertState::Resolved,
            });
        self.fold(
            at,
            Body::AlertTransition(pb::AlertTransition {
                alert_id: ID.into(),
                rule: "disk_crit".into(),
                target_host: "web-01".into(),
                subject: "/data".into(),
                state: state as i32,
                severity: "critical".into(),
                epoch: 1,
                at_unix_ms: at,
                previous: previous as i32,
                ..Default::default()
            }),
        );
    }

    fn silence(&mut self, id: &str, host: &str, starts: i64, ends: i64) {
        self.fold(
            starts,
            Body::SilenceAdded(pb::SilenceAdded {
                silence_id: id.into(),
                host_glob: host.into(),
                labels: vec!["env=prod".into()],
                starts_unix_ms: starts,
                ends_unix_ms: ends,
                reason: "maintenance".into(),
                created_by: "alice".into(),
                created_role: "operator".into(),
                epoch: 1,
                ..Default::default()
            }),
        );
    }

    fn expire(&mut self, id: &str, at: i64) {
        self.fold(
            at,
            Body::SilenceExpired(pb::SilenceExpired {
                silence_id: id.into(),
                by: "bob".into(),
                role: "operator".into(),
                at_unix_ms: at,
                epoch: 1,
            }),
        );
    }

    fn rec(&self) -> Option<&AlertRecord> {
        self.alerts.alerts.get(ID)
    }

    fn verdict(&self, now: i64) -> Verdict {
        let rec = self.rec().expect("alert");
        verdict(rec, "ops", &self.silences, &self.labels, now, MAX_AGE)
    }

    /// One delivery tick: what the loop sends (and records) on route `ops`.
    fn deliver(&mut self, now: i64) -> Option<AlertState> {
        if self.rec().is_none() || self.verdict(now) != Verdict::Send {
            return None;
        }
        let rec = self.rec().expect("alert");
        let (tid, state) = (rec.transition_id.clone(), rec.state);
        self.fold(
            now,
            Body::NotificationSent(pb::NotificationSent {
                alert_id: ID.into(),
                transition_id: tid,
                route: "ops".into(),
                outcome: pb::NotifyOutcome::Sent as i32,
                attempts: 1,
                epoch: 1,
                ..Default::default()
            }),
        );
        state
    }
}

#[test]
fn a_silenced_firing_is_held_then_sent_when_the_silence_is_expired() {
    let mut w = World::new();
    w.silence("s1", "web-*", 0, 7_200_000);
    w.transition(1_000, pb::AlertState::Firing);
    assert_eq!(
        w.verdict(2_000),
        Verdict::Hold {
            silence: "s1".into()
        }
    );
    assert_eq!(w.deliver(2_000), None);
    // Held longer than deliver_max_age: the age counts from the silence's end.
    w.expire("s1", 500_000);
    assert_eq!(w.deliver(500_100), Some(AlertState::Firing));
    assert_eq!(w.deliver(500_200), None, "once");
    w.transition(600_000, pb::AlertState::Resolved);
    assert_eq!(w.deliver(600_100), Some(AlertState::Resolved));
}

#[test]
fn a_silence_that_reaches_its_end_releases_the_firing() {
    let mut w = World::new();
    w.silence("s1", "web-01", 0, 10_000);
    w.transition(1_000, pb::AlertState::Firing);
    assert_eq!(w.deliver(9_999), None);
    assert_eq!(w.deliver(10_000), Some(AlertState::Firing));
}

#[test]
fn a_firing_silenced_and_resolved_during_the_silence_sends_nothing_ever() {
    let mut w = World::new();
    w.silence("s1", "web-*", 0, 10_000);
    w.transition(1_000, pb::AlertState::Firing);
    w.transition(5_000, pb::AlertState::Resolved);
    for now in [5_000, 10_000, 20_000] {
        assert_eq!(w.deliver(now), None, "{now}");
    }
    assert_eq!(w.verdict(20_000), Verdict::Drop);
}

#[test]
fn a_firing_that_was_only_rate_limited_gets_no_resolve() {
    let mut w = World::new();
    w.transition(1_000, pb::AlertState::Firing);
    let tid = w.rec().expect("alert").transition_id.clone();
    w.fold(
        1_100,
        Body::NotificationSent(pb::NotificationSent {
            alert_id: ID.into(),
            transition_id: tid,
            route: "ops".into(),
            outcome: pb::NotifyOutcome::RateLimited as i32,
            epoch: 1,
            ..Default::default()
        }),
    );
    w.transition(2_000, pb::AlertState::Resolved);
    assert_eq!(
        w.verdict(2_100),
        Verdict::Drop,
        "the route never heard the firing"
    );
}

#[test]
fn a_resolve_of_a_notified_firing_waits_for_the_silence() {
    let mut w = World::new();
    w.transition(1_000, pb::AlertState::Firing);
    assert_eq!(w.deliver(1_000), Some(AlertState::Firing));
    w.silence("s1", "web-*", 2_000, 10_000);
    w.transition(3_000, pb::AlertState::Resolved);
    assert_eq!(w.deliver(3_000), None);
    assert_eq!(w.deliver(10_000), Some(AlertState::Resolved));
}

#[test]
fn silences_of_other_hosts_labels_or_rules_do_not_hold() {
    let mut w = World::new();
    w.silence("s1", "db-*", 0, 10_000);
    w.transition(1_000, pb::AlertState::Firing);
    assert_eq!(w.verdict(1_000), Verdict::Send);
    w.labels.clear();
    w.silence("s2", "web-*", 0, 10_000);
    assert_eq!(w.verdict(1_000), Verdict::Send, "the label does not match");
    // A silence that begins later does not hold it yet.
    w.expire("s2", 1_000);
    w.labels = [("env".to_owned(), "prod".to_owned())].into();
    w.silence("s3", "web-*", 5_000, 10_000);
    assert_eq!(w.verdict(1_000), Verdict::Send);
    assert!(matches!(w.verdict(5_000), Verdict::Hold { .. }));
}

#[test]
fn an_ack_does_not_stop_the_resolve() {
    let mut w = World::new();
    w.transition(1_000, pb::AlertState::Firing);
    assert_eq!(w.deliver(1_000), Some(AlertState::Firing));
    let tid = w.rec().unwrap().transition_id.clone();
    w.fold(
        1_500,
        Body::AlertAcked(pb::AlertAcked {
            alert_id: ID.into(),
            transition_id: tid,
            by: "alice".into(),
            role: "operator".into(),
            at_unix_ms: 1_500,
            ..Default::default()
        }),
    );
    assert!(w.rec().unwrap().ack.is_some());
    w.transition(2_000, pb::AlertState::Resolved);
    assert_eq!(w.deliver(2_000), Some(AlertState::Resolved));
}

#[derive(Debug, Clone)]
enum Step {
    Fire,
    Resolve,
    Silence { starts_in: i64, lasts: i64 },
    Expire,
    Wait(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Fire),
        Just(Step::Resolve),
        (0i64..5_000, 1i64..20_000)
            .prop_map(|(starts_in, lasts)| Step::Silence { starts_in, lasts }),
        Just(Step::Expire),
        (1i64..5_000).prop_map(Step::Wait),
    ]
}

proptest! {
    /// Whatever the states and silences: nothing is sent while a matching silence is active,
    /// each transition at most once, no resolve whose firing was not sent, and a firing that
    /// outlasts every silence is sent once they end.
    #[test]
    fn silences_hold_and_release_exactly(steps in proptest::collection::vec(step(), 1..60)) {
        let mut w = World::new();
        let mut now = 0i64;
        let mut sent: Vec<(String, AlertState)> = Vec::new();
        let mut silences = 0;
        for s in steps {
            match s {
                Step::Fire if w.rec().and_then(|r| r.state) != Some(AlertState::Firing) => {
                    w.transition(now, pb::AlertState::Firing);
                }
                Step::Resolve if w.rec().and_then(|r| r.state) == Some(AlertState::Firing) => {
                    w.transition(now, pb::AlertState::Resolved);
                }
                Step::Silence { starts_in, lasts } => {
                    silences += 1;
                    w.silence(&format!("s{silences}"), "web-*", now + starts_in, now + starts_in + lasts);
                }
                Step::Expire if silences > 0 => w.expire(&format!("s{silences}"), now),
                Step::Wait(ms) => now += ms,
                _ => {}
            }
            let silenced = w.silences.silencing("disk_crit", "web-01", &w.labels, now).count() > 0;
            if let Some(state) = w.deliver(now) {
                prop_assert!(!silenced, "sent under a silence at {}", now);
                let rec = w.rec().unwrap();
                if state == AlertState::Resolved {
                    prop_assert!(sent.iter().any(|(t, _)| *t == rec.firing_transition_id), "orphan resolve");
                }
                prop_assert!(!sent.iter().any(|(t, _)| *t == rec.transition_id), "sent twice");
                sent.push((rec.transition_id.clone(), state));
            }
        }
        // Past every silence's end, a still-firing alert is sent.
        let last_end = w.silences.iter().map(|s| s.end_unix_ms()).max().unwrap_or(0);
        now = now.max(last_end);
        w.deliver(now);
        if let Some(rec) = w.rec() {
            if rec.state == Some(AlertState::Firing) {
                prop_assert!(rec.notified(&rec.transition_id, "ops"), "a firing that outlasted its silences was never sent");
            }
        }
    }
}
