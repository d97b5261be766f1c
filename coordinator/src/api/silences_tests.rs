//! What the silence and ack verbs refuse before anything is recorded, and the list's states.

use opsfleet_proto::api::{AlertAckRequest, PageRequest, Role, SilenceAdd, SilencesRequest};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use uuid::Uuid;

use super::*;

const NOW: i64 = 1_000_000;

fn alice() -> Issuer {
    Issuer {
        name: "alice".into(),
        role: Some(Role::Operator),
    }
}

fn add(host: Option<&str>, duration_ms: i64, reason: &str) -> SilenceAdd {
    SilenceAdd {
        host: host.map(str::to_owned),
        labels: vec![],
        rules: vec![],
        duration_ms,
        reason: reason.into(),
    }
}

fn fold(fleet: &mut Fleet, seq: u64, body: Body) -> String {
    let ev = EventEnvelope {
        id: Uuid::now_v7(),
        host: "blue".into(),
        seq,
        time_unix_ms: NOW,
        module: COORDINATOR_MODULE.into(),
        incarnation: Uuid::nil(),
        body,
    };
    fleet.apply(&ev);
    ev.id.to_string()
}

#[test]
fn a_silence_needs_a_matcher_a_sane_duration_and_a_reason() {
    let fleet = Fleet::default();
    let refused = |req: SilenceAdd| {
        plan_add(&fleet, &req, &alice(), 3, NOW)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(add(None, 60_000, "x")).contains("at least one matcher"));
    assert!(refused(add(Some("web-[0-9]"), 60_000, "x")).contains("is not a glob"));
    assert!(refused(add(Some("web.01"), 60_000, "x")).contains("is not a glob"));
    assert!(refused(add(Some("web-*"), 0, "x")).contains("not within 1 ms and 30 days"));
    assert!(refused(add(Some("web-*"), -5, "x")).contains("not within"));
    assert!(refused(add(Some("web-*"), SILENCE_MAX_MS + 1, "x")).contains("not within"));
    assert!(refused(add(Some("web-*"), 60_000, "  ")).contains("reason is required"));
    assert!(refused(add(Some("web-*"), 60_000, &"r".repeat(600))).contains("reason"));
    assert!(refused(add(Some("web-*"), 60_000, "a\nb")).contains("reason"));
    let mut bad_label = add(None, 60_000, "x");
    bad_label.labels = vec!["env".into()];
    assert!(refused(bad_label).contains("is not key=value"));
    let mut bad_rule = add(None, 60_000, "x");
    bad_rule.rules = vec!["disk crit".into()];
    assert!(refused(bad_rule).contains("is not a rule name"));

    let mut ok = add(Some("web-*"), SILENCE_MAX_MS, " swap the disk ");
    ok.labels = vec!["env=prod".into()];
    ok.rules = vec!["disk_crit".into()];
    let a = plan_add(&fleet, &ok, &alice(), 3, NOW).unwrap();
    assert_eq!(
        (
            a.host_glob.as_str(),
            a.reason.as_str(),
            a.created_by.as_str(),
            a.created_role.as_str()
        ),
        ("web-*", "swap the disk", "alice", "operator")
    );
    assert_eq!(
        (a.starts_unix_ms, a.ends_unix_ms, a.epoch),
        (NOW, NOW + SILENCE_MAX_MS, 3)
    );
    assert!(Uuid::parse_str(&a.silence_id).is_ok());
}

#[test]
fn expiring_needs_a_known_silence_that_has_not_ended() {
    let mut fleet = Fleet::default();
    let a = plan_add(&fleet, &add(Some("web-*"), 60_000, "x"), &alice(), 3, NOW).unwrap();
    let id = a.silence_id.clone();
    fold(&mut fleet, 1, Body::SilenceAdded(a));
    assert_eq!(find(&fleet, &id, NOW).unwrap().id, id);
    assert_eq!(find(&fleet, &id[..8], NOW).unwrap().id, id, "a prefix of 8");
    let short = find(&fleet, &id[..7], NOW).unwrap_err();
    assert!(matches!(short, SilenceApiError::Unknown { .. }), "{short}");
    let unknown = find(&fleet, "0193a4c2-0000-7000-8000-000000000000", NOW).unwrap_err();
    assert!(
        unknown.to_string().contains(&id),
        "names the active ones: {unknown}"
    );
    let ended = find(&fleet, &id, NOW + 60_000).unwrap_err();
    assert!(matches!(ended, SilenceApiError::Ended { .. }), "{ended}");
    fold(
        &mut fleet,
        2,
        Body::SilenceExpired(pb::SilenceExpired {
            silence_id: id.clone(),
            by: "bob".into(),
            role: "operator".into(),
            at_unix_ms: NOW + 10,
            epoch: 3,
        }),
    );
    let expired = find(&fleet, &id, NOW + 20).unwrap_err();
    assert!(expired.to_string().contains("already ended"), "{expired}");

    // The list: active by default, ended ones with `all`.
    let list = |all, now| {
        let req = SilencesRequest {
            all,
            page: PageRequest::default(),
        };
        req.answer(
            &fleet,
            Responder {
                name: "blue".into(),
                color: String::new(),
                role: Default::default(),
                epoch: 0,
                applied_stream_seq: 0,
                behind: 0,
            },
            now,
        )
        .silences
    };
    assert_eq!(list(false, NOW + 5).len(), 1);
    assert_eq!(list(false, NOW + 5)[0].state, "active");
    assert!(list(false, NOW + 20).is_empty());
    let all = list(true, NOW + 20);
    assert_eq!(
        (all[0].state.as_str(), all[0].expired_by.as_deref()),
        ("expired", Some("bob"))
    );
}

#[test]
fn only_an_open_unacknowledged_alert_is_acked() {
    let mut fleet = Fleet::default();
    let req = |id: &str| AlertAckRequest {
        id: id.into(),
        comment: Some("on it".into()),
    };
    let id = "disk_crit/web-01//data";
    let unknown = plan_ack(&fleet, &req(id), &alice(), 3, NOW).unwrap_err();
    assert!(matches!(unknown, SilenceApiError::UnknownAlert { .. }));
    let transition = |state: pb::AlertState| {
        Body::AlertTransition(pb::AlertTransition {
            alert_id: id.into(),
            rule: "disk_crit".into(),
            target_host: "web-01".into(),
            subject: "/data".into(),
            state: state as i32,
            severity: "critical".into(),
            epoch: 3,
            at_unix_ms: NOW,
            ..Default::default()
        })
    };
    let firing = fold(&mut fleet, 1, transition(pb::AlertState::Firing));
    let k = plan_ack(&fleet, &req(id), &alice(), 3, NOW).unwrap();
    assert_eq!(
        (k.transition_id.as_str(), k.comment.as_str()),
        (firing.as_str(), "on it")
    );
    fold(&mut fleet, 2, Body::AlertAcked(k));
    let again = plan_ack(&fleet, &req(id), &alice(), 3, NOW).unwrap_err();
    assert!(
        again.to_string().contains("already acknowledged by alice"),
        "{again}"
    );
    fold(&mut fleet, 3, transition(pb::AlertState::Resolved));
    let resolved = plan_ack(&fleet, &req(id), &alice(), 3, NOW).unwrap_err();
    assert!(resolved.to_string().contains("is resolved"), "{resolved}");
}
