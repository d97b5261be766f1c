//! Tests of silence mirroring's pure half: translation, marker reading, the plan, and
//! (proptest) that applying a plan converges and never touches what it must not.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::projection::silences::SilenceEnd;

fn rec(id: &str, starts: i64, ends: i64) -> SilenceRecord {
    SilenceRecord {
        id: id.into(),
        host_glob: "web-*".into(),
        labels: vec!["env=prod".into()],
        rules: vec!["disk_crit".into()],
        starts_unix_ms: starts,
        ends_unix_ms: ends,
        reason: "maintenance".into(),
        created_by: "alice".into(),
        created_role: "operator".into(),
        ..SilenceRecord::default()
    }
}

fn set(recs: &[SilenceRecord]) -> Silences {
    Silences(recs.iter().map(|r| (r.id.clone(), r.clone())).collect())
}

fn live(am: &str, id: &str) -> Found {
    Found {
        am_id: am.into(),
        silence_id: id.into(),
        live: true,
    }
}

#[test]
fn a_silence_becomes_alertmanager_matchers_and_a_marked_comment() {
    let mut s = rec("0190-ab", 1_764_633_600_000, 1_764_634_200_000);
    s.labels = vec!["team.name=db".into(), "env=prod".into()];
    let b = body(&s).unwrap();
    assert_eq!(
        b,
        json!({
            "matchers": [
                {"name": "alertname", "value": "disk_crit", "isRegex": false, "isEqual": true},
                {"name": "host", "value": "^web-.*$", "isRegex": true, "isEqual": true},
                {"name": "env", "value": "prod", "isRegex": false, "isEqual": true},
                {"name": "team_name", "value": "db", "isRegex": false, "isEqual": true},
            ],
            "startsAt": "2025-12-02T00:00:00.000Z",
            "endsAt": "2025-12-02T00:10:00.000Z",
            "createdBy": "alice",
            "comment": "maintenance [opsfleet-silence:0190-ab]",
        })
    );
    s.rules = vec!["disk_crit".into(), "disk.warn".into()];
    s.host_glob = "db-0?.x".into();
    let m = matchers(&s).unwrap();
    assert_eq!(m[0]["value"], "^(?:disk_crit|disk\\.warn)$");
    assert_eq!(m[1]["value"], "^db-0.\\.x$");
    s.expired = Some(SilenceEnd {
        by: "bob".into(),
        role: "operator".into(),
        at_unix_ms: 1_764_633_900_000,
    });
    assert_eq!(body(&s).unwrap()["endsAt"], "2025-12-02T00:05:00.000Z");
}

#[test]
fn unselective_or_unsayable_silences() {
    let mut s = rec("a", 0, 10);
    s.rules.clear();
    s.labels.clear();
    s.host_glob = "*".into();
    assert_eq!(
        matchers(&s).unwrap(),
        [json!({"name": "host", "value": ".+", "isRegex": true, "isEqual": true})],
        "Alertmanager wants one matcher that does not match the empty value"
    );
    s.labels = vec!["host=x".into()];
    assert_eq!(matchers(&s), None, "a host label called host is not sent");
    let mut s = rec("b", 0, 10);
    s.created_by.clear();
    s.reason.clear();
    let b = body(&s).unwrap();
    assert_eq!(b["createdBy"], "opsfleet");
    assert_eq!(b["comment"], "opsfleet-silence:b");
}

#[test]
fn mirrors_are_read_by_their_last_marker() {
    let s = json!({"id": "am1", "status": {"state": "active"},
        "comment": "fake opsfleet-silence:evil [opsfleet-silence:0190-ab]"});
    assert_eq!(found(&s), Some(live("am1", "0190-ab")));
    let gone =
        json!({"id": "am2", "status": {"state": "expired"}, "comment": "x [opsfleet-silence:c]"});
    assert!(!found(&gone).unwrap().live);
    assert_eq!(
        found(&json!({"id": "am3", "comment": "someone else's"})),
        None
    );
    assert_eq!(
        found(&json!({"id": "am4", "comment": "opsfleet-silence:"})),
        None
    );
}

#[test]
fn route_overlap_is_refused_only_on_a_provable_miss() {
    let s = rec("a", 0, 10);
    let mut route = Match::default();
    assert!(overlaps(&s, &route));
    route.rules = vec!["host_lost".into()];
    assert!(!overlaps(&s, &route), "disjoint rules");
    route.rules = vec!["host_lost".into(), "disk_crit".into()];
    assert!(overlaps(&s, &route));
    route.labels = BTreeMap::from([("env".into(), "dev".into())]);
    assert!(!overlaps(&s, &route), "conflicting label");
    route.labels.clear();
    route.hosts = vec!["db-*".into()];
    assert!(overlaps(&s, &route), "two globs may overlap");
    let mut one = rec("b", 0, 10);
    one.host_glob = "web-01".into();
    assert!(
        !overlaps(&one, &route),
        "a named host the route never takes"
    );
}

#[test]
fn the_plan_creates_expires_and_removes_duplicates() {
    let now = 1000;
    let mut ended = rec("ended", 0, 5000);
    ended.expired = Some(SilenceEnd {
        by: "bob".into(),
        role: "operator".into(),
        at_unix_ms: 900,
    });
    let silences = set(&[
        rec("new", 0, 5000),
        rec("kept", 0, 5000),
        ended,
        rec("past", 0, 999),
    ]);
    let found = [
        live("am-k2", "kept"),
        live("am-k1", "kept"),
        live("am-e", "ended"),
        live("am-x", "other-cluster"),
        Found {
            live: false,
            ..live("am-p", "past")
        },
    ];
    let actions = plan(&silences, &Match::default(), &found, now, 16);
    let ids: Vec<(&str, &str)> = actions
        .iter()
        .map(|a| match a {
            Action::Create { silence_id, .. } => ("create", silence_id.as_str()),
            Action::Expire { am_id, .. } => ("expire", am_id.as_str()),
        })
        .collect();
    assert_eq!(
        ids,
        [("expire", "am-e"), ("expire", "am-k2"), ("create", "new")]
    );
    assert_eq!(
        plan(&silences, &Match::default(), &found, now, 1).len(),
        1,
        "bounded"
    );
    let route = Match {
        rules: vec!["host_lost".into()],
        ..Match::default()
    };
    let none_wanted = plan(&silences, &route, &found, now, 16);
    assert!(
        none_wanted
            .iter()
            .all(|a| matches!(a, Action::Expire { .. })),
        "a route that cannot see the silences creates nothing: {none_wanted:?}"
    );
}

/// Carries out `actions` on `found` as Alertmanager would.
fn apply(found: &mut Vec<Found>, actions: &[Action], next: &mut u32) {
    for a in actions {
        match a {
            Action::Create { silence_id, .. } => {
                *next += 1;
                found.push(live(&format!("new{next}"), silence_id));
            }
            Action::Expire { am_id, .. } => {
                for f in found.iter_mut().filter(|f| &f.am_id == am_id) {
                    f.live = false;
                }
            }
        }
    }
}

fn arb_silence() -> impl Strategy<Value = SilenceRecord> {
    (
        0u8..6,
        0i64..100,
        1i64..100,
        proptest::option::of(0i64..200),
        any::<bool>(),
    )
        .prop_map(|(id, starts, len, expired, any_rule)| {
            let mut s = rec(&format!("s{id}"), starts, starts + len);
            if any_rule {
                s.rules.clear();
            }
            s.expired = expired.map(|at| SilenceEnd {
                by: "bob".into(),
                role: "operator".into(),
                at_unix_ms: at,
            });
            s
        })
}

proptest! {
    /// Whatever Alertmanager holds, repeated bounded passes converge: at most `max` actions
    /// each, then nothing to do; every wanted silence has exactly one live mirror, no ended
    /// one has any, and mirrors of silences opsfleet does not know are never touched.
    #[test]
    fn passes_converge_and_leave_foreign_mirrors_alone(
        recs in proptest::collection::vec(arb_silence(), 0..8),
        start in proptest::collection::vec((0u8..8, any::<bool>()), 0..10),
        now in 0i64..250,
        max in 1usize..4,
        rule_route in any::<bool>(),
    ) {
        let silences = set(&recs);
        let route = Match {
            rules: if rule_route { vec!["host_lost".into()] } else { vec![] },
            ..Match::default()
        };
        let mut found: Vec<Found> = start
            .iter()
            .enumerate()
            .map(|(i, (id, alive))| Found { live: *alive, ..live(&format!("old{i}"), &format!("s{id}")) })
            .collect();
        let foreign: Vec<Found> = found.iter().filter(|f| silences.get(&f.silence_id).is_none()).cloned().collect();
        let mut next = 0;
        let mut rounds = 0;
        loop {
            let actions = plan(&silences, &route, &found, now, max);
            prop_assert!(actions.len() <= max);
            if actions.is_empty() { break; }
            apply(&mut found, &actions, &mut next);
            rounds += 1;
            prop_assert!(rounds < 50, "no convergence");
        }
        for s in silences.iter() {
            let mirrors = found.iter().filter(|f| f.live && f.silence_id == s.id).count();
            let wanted = s.end_unix_ms() > now && overlaps(s, &route);
            prop_assert_eq!(mirrors, usize::from(wanted), "silence {:?}", s);
        }
        for f in &foreign {
            prop_assert!(found.contains(f), "foreign mirror touched: {:?}", f);
        }
    }
}

mod edge {
    //! The HTTP edge against a local receiver: a refused create is skipped, a pass is not
    //! repeated within the interval unless the silences change, nothing is done once the
    //! coordinator may not act, and a route without `mirror_silences` sends nothing.

    use super::*;
    use crate::notify::tests::{notifier, route};
    use crate::notify::RouteKind;
    use opsfleet_tests::{Receiver, Reply};

    const NOW: i64 = 1_764_633_600_000;

    fn active(ids: &[&str]) -> Silences {
        let recs: Vec<SilenceRecord> = ids
            .iter()
            .map(|id| rec(id, NOW - 1, NOW + 600_000))
            .collect();
        set(&recs)
    }

    #[tokio::test]
    async fn passes_skip_refusals_wait_for_change_and_stop_when_not_active() {
        let rx = Receiver::start().await.unwrap();
        let mut r = route("am", RouteKind::Alertmanager, &rx.url(""));
        r.resend_interval = std::time::Duration::from_secs(600);
        let n = notifier(vec![r]);
        assert!(n.mirrors_silences());
        let list = Reply {
            body: "[]".into(),
            ..Reply::status(200)
        };
        rx.answer_next(1, list);
        rx.answer_next(1, Reply::status(400));
        let yes = || true;
        assert_eq!(n.mirror_silences(&active(&["a", "b"]), NOW, &yes).await, 1);
        let got = rx.requests();
        let calls: Vec<(&str, &str)> = got
            .iter()
            .map(|r| (r.method.as_str(), r.path.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("GET", "/api/v2/silences"),
                ("POST", "/api/v2/silences"),
                ("POST", "/api/v2/silences")
            ]
        );
        assert_eq!(got[2].body["comment"], "maintenance [opsfleet-silence:b]");
        assert_eq!(n.mirror_silences(&active(&["a", "b"]), NOW, &yes).await, 0);
        assert_eq!(rx.requests().len(), 3, "no pass within the interval");
        let no = || false;
        assert_eq!(
            n.mirror_silences(&active(&["a", "b", "c"]), NOW, &no).await,
            0
        );
        assert_eq!(
            rx.requests().len(),
            4,
            "a changed set lists, but acts only while active"
        );

        let off_rx = Receiver::start().await.unwrap();
        let mut off = route("off", RouteKind::Alertmanager, &off_rx.url(""));
        off.mirror_silences = false;
        let off = notifier(vec![off]);
        assert!(!off.mirrors_silences());
        assert_eq!(off.mirror_silences(&active(&["a"]), NOW, &yes).await, 0);
        assert!(off_rx.requests().is_empty());
    }
}
