//! Unit and property tests of the admission check: each forgery the issue names is refused
//! under its rule, legitimate traffic is admitted, and in any sequence nothing refused is
//! folded.

use super::*;
use opsfleet_proto::pb;
use opsfleet_proto::subjects::parse_any_event_subject;
use proptest::prelude::*;
use uuid::Uuid;

#[test]
fn a_server_relay_copy_is_refused_before_decoding() {
    let subject = "ops.evt.web-02.heartbeat";
    let refusal = published(subject, ["Nats-Msg-Id", "Nats-Stream", "Nats-Sequence"])
        .expect_err("relay copy");
    assert_eq!(refusal.reason(), "relay_copy");
    assert_eq!(
        refusal,
        Refusal::RelayCopy {
            subject: subject.to_owned(),
            header: "Nats-Stream",
        }
    );
    assert_eq!(published(subject, ["Nats-Msg-Id"]), Ok(()));
    assert_eq!(published(subject, []), Ok(()));
}

fn ev(host: &str, module: &str, seq: u64, body: Body) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::from_u128(u128::from(seq) | (u128::from(host.len() as u8) << 64)),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: module.to_owned(),
        incarnation: Uuid::from_u128(7),
        body,
    }
}

fn agent(host: &str) -> Publisher<'_> {
    Publisher::Agent { host, kind: "x" }
}

fn coordinator(name: &str) -> Publisher<'_> {
    Publisher::Coordinator { name, kind: "x" }
}

fn issued(id: &str, target: &str) -> Body {
    issued_by(id, target, "alice")
}

fn issued_by(id: &str, target: &str, by: &str) -> Body {
    Body::CommandIssued(pb::CommandIssued {
        command_id: id.into(),
        target: target.into(),
        epoch: 3,
        issued_by: by.into(),
        action: "noop".into(),
        module: String::new(),
        deadline_unix_ms: 1,
        issued_role: "operator".into(),
    })
}

fn completed(id: &str) -> Body {
    Body::CommandCompleted(pb::CommandCompleted {
        command_id: id.into(),
        detail: "done".into(),
    })
}

fn accepted(id: &str) -> Body {
    Body::CommandAccepted(pb::CommandAccepted {
        command_id: id.into(),
        epoch: 3,
    })
}

fn expired(id: &str) -> Body {
    Body::CommandExpired(pb::CommandExpired {
        command_id: id.into(),
        deadline_unix_ms: 1,
    })
}

fn transition(epoch: u64) -> Body {
    Body::AlertTransition(pb::AlertTransition {
        alert_id: "disk_crit/db-01//".into(),
        rule: "disk_crit".into(),
        target_host: "db-01".into(),
        subject: "/".into(),
        state: pb::AlertState::Firing as i32,
        severity: "critical".into(),
        summary: "click here".into(),
        value: String::new(),
        epoch,
        at_unix_ms: 1,
        previous: 0,
    })
}

fn liveness(epoch: u64) -> Body {
    Body::HostLiveness(pb::HostLiveness {
        target_host: "db-01".into(),
        lost: true,
        last_seen_unix_ms: 0,
        interval_ms: 1000,
        epoch,
    })
}

fn leadership() -> Body {
    Body::Leadership(pb::LeadershipChanged {
        coordinator: "blue".into(),
        color: "blue".into(),
        role: pb::LeaderRole::Active as i32,
        epoch: u64::MAX,
        reason: "forged".into(),
        ..Default::default()
    })
}

fn notification() -> Body {
    Body::NotificationSent(pb::NotificationSent {
        alert_id: "a".into(),
        transition_id: "t".into(),
        route: "hook".into(),
        outcome: pb::NotifyOutcome::Sent as i32,
        attempts: 1,
        detail: String::new(),
        epoch: 1,
    })
}

fn silence_added() -> Body {
    Body::SilenceAdded(pb::SilenceAdded {
        silence_id: "0193a4c2-7d1e-7abc-9def-0123456789ab".into(),
        host_glob: "*".into(),
        starts_unix_ms: 0,
        ends_unix_ms: i64::MAX,
        reason: "forged: mute every page".into(),
        created_by: "alice".into(),
        created_role: "operator".into(),
        epoch: u64::MAX,
        ..Default::default()
    })
}

fn silence_expired() -> Body {
    Body::SilenceExpired(pb::SilenceExpired {
        silence_id: "0193a4c2-7d1e-7abc-9def-0123456789ab".into(),
        by: "alice".into(),
        at_unix_ms: 1,
        ..Default::default()
    })
}

fn alert_acked() -> Body {
    Body::AlertAcked(pb::AlertAcked {
        alert_id: "a".into(),
        transition_id: "t".into(),
        by: "alice".into(),
        ..Default::default()
    })
}

fn heartbeat() -> Body {
    Body::Heartbeat(pb::Heartbeat::default())
}

/// A fleet whose ledger holds command `c1` for web-01, issued by blue.
fn with_command() -> Fleet {
    let mut fleet = Fleet::new();
    let e = ev("blue", COORDINATOR_MODULE, 1, issued("c1", "web-01"));
    assert_eq!(admit(&fleet, &e, coordinator("blue")), Ok(()));
    fleet.apply(&e);
    fleet
}

fn reason(r: Result<(), Refusal>) -> &'static str {
    r.err().map_or("admitted", |e| e.reason())
}

#[test]
fn coordinator_bodies_are_refused_from_agent_subjects() {
    let fleet = with_command();
    // The issue's forgeries, each from web-01's own subject space.
    for (module, body) in [
        ("agent", issued("c9", "db-01")),
        ("agent", transition(u64::MAX)),
        ("agent", liveness(u64::MAX)),
        ("agent", notification()),
        ("agent", leadership()),
        ("agent", silence_added()),
        ("agent", silence_expired()),
        ("agent", alert_acked()),
        ("disk", silence_added()),
    ] {
        let e = ev("web-01", module, 2, body);
        assert_eq!(
            reason(admit(&fleet, &e, agent("web-01"))),
            "coordinator_body_from_agent",
            "{}",
            e.kind()
        );
    }
    // An agent named like a coordinator is still an agent, whatever module it claims.
    for module in ["agent", COORDINATOR_MODULE] {
        let e = ev("blue", module, 2, leadership());
        assert_eq!(
            reason(admit(&fleet, &e, agent("blue"))),
            "coordinator_body_from_agent"
        );
    }
    // ... and may not borrow the coordinators' module name for anything.
    let e = ev("web-01", COORDINATOR_MODULE, 2, heartbeat());
    assert_eq!(reason(admit(&fleet, &e, agent("web-01"))), "wrong_module");
}

#[test]
fn coordinator_subjects_carry_only_coordinator_bodies_and_expiries() {
    let fleet = with_command();
    for body in [
        leadership(),
        issued("c2", "db-01"),
        transition(4),
        liveness(4),
        notification(),
        silence_added(),
        silence_expired(),
        alert_acked(),
        expired("c1"),
        // An expiry of a command the ledger does not know is still the coordinator's word.
        expired("c404"),
    ] {
        let e = ev("blue", COORDINATOR_MODULE, 2, body);
        assert_eq!(
            admit(&fleet, &e, coordinator("blue")),
            Ok(()),
            "{}",
            e.kind()
        );
    }
    for body in [heartbeat(), completed("c1"), accepted("c1")] {
        let e = ev("blue", COORDINATOR_MODULE, 2, body);
        assert_eq!(
            reason(admit(&fleet, &e, coordinator("blue"))),
            "agent_body_from_coordinator",
            "{}",
            e.kind()
        );
    }
    let e = ev("blue", "log", 2, leadership());
    assert_eq!(
        reason(admit(&fleet, &e, coordinator("blue"))),
        "wrong_module"
    );
    let e = ev("green", COORDINATOR_MODULE, 2, leadership());
    assert_eq!(
        reason(admit(&fleet, &e, coordinator("blue"))),
        "publisher_mismatch"
    );
}

#[test]
fn lifecycle_bodies_only_from_the_commands_target() {
    let fleet = with_command();
    for body in [
        accepted("c1"),
        completed("c1"),
        expired("c1"),
        Body::CommandFailed(pb::CommandFailed {
            command_id: "c1".into(),
            reason: "x".into(),
        }),
        Body::CommandRejected(pb::CommandRejected {
            command_id: "c1".into(),
            reason: "stale epoch".into(),
            epoch: 1,
            highest_epoch_seen: 3,
        }),
    ] {
        let own = ev("web-01", "agent", 2, body.clone());
        assert_eq!(
            admit(&fleet, &own, agent("web-01")),
            Ok(()),
            "{}",
            own.kind()
        );
        // Another host answering for web-01's command: the "first terminal wins" forgery.
        let other = ev("db-01", "agent", 2, body);
        assert_eq!(
            reason(admit(&fleet, &other, agent("db-01"))),
            "lifecycle_not_target"
        );
    }
    // A lifecycle event for a command never issued (an agent cannot invent ledger rows).
    let e = ev("web-01", "agent", 2, completed("c404"));
    assert_eq!(
        reason(admit(&fleet, &e, agent("web-01"))),
        "lifecycle_unknown_command"
    );
}

#[test]
fn an_issue_earlier_in_the_same_stream_order_counts() {
    // What ingest does within one batch: admit, fold, next.
    let mut fleet = Fleet::new();
    let batch = [
        (
            ev("web-01", "agent", 1, accepted("c7")),
            "ops.evt.web-01.command_accepted",
        ),
        (
            ev("blue", COORDINATOR_MODULE, 1, issued("c7", "web-01")),
            "ops.coord.blue.command_issued",
        ),
        (
            ev("web-01", "agent", 2, accepted("c7")),
            "ops.evt.web-01.command_accepted",
        ),
        (
            ev("web-01", "agent", 3, completed("c7")),
            "ops.evt.web-01.command_completed",
        ),
    ];
    let mut verdicts = Vec::new();
    for (e, subject) in &batch {
        let publisher = parse_any_event_subject(subject).expect("subject");
        let r = admit(&fleet, e, publisher);
        if r.is_ok() {
            fleet.apply(e);
        }
        verdicts.push(reason(r));
    }
    assert_eq!(
        verdicts,
        [
            "lifecycle_unknown_command",
            "admitted",
            "admitted",
            "admitted"
        ]
    );
    let c = fleet.command("c7").expect("ledger row");
    assert_eq!((c.state.as_str(), c.accepted_count), ("completed", 1));
}

#[test]
fn envelope_host_must_be_the_publisher() {
    let fleet = Fleet::new();
    let e = ev("db-01", "heartbeat", 1, heartbeat());
    assert_eq!(
        reason(admit(&fleet, &e, agent("web-01"))),
        "publisher_mismatch"
    );
    assert_eq!(admit(&fleet, &e, agent("db-01")), Ok(()));
}

/// One generated message: who publishes (agents web-01/db-01/blue-the-agent, coordinator
/// blue), which body, which command id.
#[derive(Debug, Clone)]
struct Msg {
    from: u8,
    body: u8,
    cmd: u8,
    target: u8,
}

fn msg() -> impl Strategy<Value = Msg> {
    (0u8..4, 0u8..14, 0u8..3, 0u8..2).prop_map(|(from, body, cmd, target)| Msg {
        from,
        body,
        cmd,
        target,
    })
}

const AGENTS: [&str; 3] = ["web-01", "db-01", "blue"];

impl Msg {
    fn build(&self, seq: u64) -> (EventEnvelope, String) {
        let id = format!("c{}", self.cmd);
        let target = ["web-01", "db-01"][usize::from(self.target)];
        let body = match self.body {
            0 => leadership(),
            // Agents forge their issue events in someone else's name.
            1 if self.from == 3 => issued(&id, target),
            1 => issued_by(&id, target, "mallory"),
            2 => transition(u64::MAX),
            3 => liveness(u64::MAX),
            4 => notification(),
            5 => accepted(&id),
            6 => completed(&id),
            7 => expired(&id),
            8 => Body::CommandRejected(pb::CommandRejected {
                command_id: id.clone(),
                reason: "x".into(),
                epoch: 0,
                highest_epoch_seen: 0,
            }),
            12 => silence_added(),
            13 => silence_expired(),
            _ => heartbeat(),
        };
        let kind = opsfleet_proto::body_kind(&body);
        if self.from == 3 {
            let e = ev("blue", COORDINATOR_MODULE, seq, body);
            (e, format!("ops.coord.blue.{kind}"))
        } else {
            let host = AGENTS[usize::from(self.from)];
            // Agents sometimes try the coordinators' module name too.
            let module = if self.body == 11 {
                COORDINATOR_MODULE
            } else {
                "agent"
            };
            (
                ev(host, module, seq, body),
                format!("ops.evt.{host}.{kind}"),
            )
        }
    }
}

proptest! {
    /// Any sequence: an agent-subject event with a coordinator body is never folded; a
    /// lifecycle event from an agent is folded only for a command a coordinator issued to
    /// that agent earlier; the coordinators' and alerts' rows come only from the coordinator;
    /// and folding just the admitted events again (what `rebuild` does with the log) gives
    /// the same fleet.
    #[test]
    fn nothing_refused_is_folded(msgs in proptest::collection::vec(msg(), 0..60)) {
        let mut fleet = Fleet::new();
        let mut log = Vec::new();
        let mut issued_to: std::collections::BTreeMap<String, String> = Default::default();
        for (i, m) in msgs.iter().enumerate() {
            let (e, subject) = m.build(i as u64 + 1);
            let publisher = parse_any_event_subject(&subject).expect("subject");
            let verdict = admit(&fleet, &e, publisher);
            if verdict.is_err() {
                continue;
            }
            match publisher {
                Publisher::Agent { host, .. } => {
                    prop_assert_ne!(class(&e.body), BodyClass::Coordinator);
                    prop_assert_ne!(e.module.as_str(), COORDINATOR_MODULE);
                    if class(&e.body) == BodyClass::Lifecycle {
                        let id = commands::command_id(&e.body).unwrap_or_default();
                        prop_assert_eq!(issued_to.get(id).map(String::as_str), Some(host));
                    }
                }
                Publisher::Coordinator { .. } => {
                    prop_assert!(
                        class(&e.body) == BodyClass::Coordinator
                            || matches!(e.body, Body::CommandExpired(_))
                    );
                    // The ledger takes the newest issue of an id (coordinators never reuse one).
                    if let Body::CommandIssued(c) = &e.body {
                        issued_to.insert(c.command_id.clone(), c.target.clone());
                    }
                }
            }
            if fleet.apply(&e).is_accepted() {
                log.push(e);
            }
        }
        prop_assert!(fleet.coordinators().all(|c| c.name == "blue"));
        prop_assert!(fleet.commands().all(|c| c.issued_by != "mallory"));
        // Alert rows and liveness verdicts come from the coordinator's own transitions only.
        let from_blue = log.iter().any(|e| {
            e.host == "blue"
                && e.module == COORDINATOR_MODULE
                && matches!(
                    e.body,
                    Body::AlertTransition(_) | Body::HostLiveness(_) | Body::NotificationSent(_)
                )
        });
        prop_assert!(from_blue || fleet.alerts().alerts.is_empty());
        prop_assert!(from_blue || fleet.alerts().liveness.is_empty());
        // Silences come from the coordinator's own subject only.
        let silenced_by_blue = log.iter().any(|e| {
            e.host == "blue" && matches!(e.body, Body::SilenceAdded(_))
        });
        prop_assert!(silenced_by_blue || fleet.silences().iter().next().is_none());
        let mut refold = Fleet::new();
        for e in &log {
            refold.apply(e);
        }
        prop_assert_eq!(refold.digest(), fleet.digest());
    }
}
