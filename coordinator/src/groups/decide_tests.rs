//! Unit tests and properties of the group decision.

use proptest::prelude::*;

use super::*;

fn m(host: &str, role: Told, fitness: Fitness, since: Option<i64>) -> Member {
    Member {
        host: host.to_owned(),
        service: "router".to_owned(),
        role,
        fitness,
        why: if fitness == Fitness::Unfit {
            "service failed".to_owned()
        } else {
            String::new()
        },
        unhealthy_since_ms: since,
    }
}

fn id(host: &str) -> Ident {
    Ident {
        host: host.to_owned(),
        service: "router".to_owned(),
    }
}

#[test]
fn no_active_makes_the_healthiest_active_ties_by_name() {
    let members = [
        m("c", Told::Standby, Fitness::Healthy, None),
        m("a", Told::Standby, Fitness::Starting, None),
        m("b", Told::Unknown, Fitness::Healthy, None),
    ];
    let Decision::Activate { to, .. } = decide(&members, 0, 10_000, None) else {
        panic!("activate");
    };
    assert_eq!(to, id("b"));
    let all_unfit = [m("a", Told::Standby, Fitness::Unfit, Some(0))];
    assert_eq!(decide(&all_unfit, 0, 10_000, None), Decision::Nothing);
}

#[test]
fn an_unfit_active_fails_over_only_after_failover_after_and_only_to_a_fit_standby() {
    let members = [
        m("a", Told::Active, Fitness::Unfit, Some(1_000)),
        m("b", Told::Standby, Fitness::Unfit, Some(0)),
        m("c", Told::Standby, Fitness::Healthy, None),
    ];
    assert_eq!(
        decide(&members, 10_999, 10_000, None),
        Decision::Nothing,
        "not yet"
    );
    let Decision::Failover { from, to, reason } = decide(&members, 11_000, 10_000, None) else {
        panic!("failover");
    };
    assert_eq!((from, to), (id("a"), id("c")));
    assert!(reason.contains("service failed"), "{reason}");
    let no_standby = [
        m("a", Told::Active, Fitness::Unfit, Some(0)),
        m("b", Told::Standby, Fitness::Unfit, Some(0)),
    ];
    assert_eq!(decide(&no_standby, 99_000, 10_000, None), Decision::Nothing);
    let healthy = [
        m("a", Told::Active, Fitness::Healthy, None),
        m("b", Told::Standby, Fitness::Healthy, None),
    ];
    assert_eq!(decide(&healthy, 99_000, 10_000, None), Decision::Nothing);
    // A crash-looping active (never ready) fails over to a healthy standby, not a starting one.
    let looping = [
        m("a", Told::Active, Fitness::Starting, Some(0)),
        m("b", Told::Standby, Fitness::Starting, Some(0)),
    ];
    assert_eq!(decide(&looping, 99_000, 10_000, None), Decision::Nothing);
    let looping = [
        looping[0].clone(),
        m("c", Told::Standby, Fitness::Healthy, None),
    ];
    let Decision::Failover { to, reason, .. } = decide(&looping, 99_000, 10_000, None) else {
        panic!("failover");
    };
    assert_eq!(to, id("c"));
    assert!(reason.ends_with("not ready"), "{reason}");
}

#[test]
fn two_actives_keep_the_fittest_then_the_preferred() {
    let members = [
        m("a", Told::Active, Fitness::Healthy, None),
        m("b", Told::Active, Fitness::Healthy, None),
        m("c", Told::Active, Fitness::Unfit, Some(0)),
    ];
    assert_eq!(
        decide(&members, 0, 10_000, None),
        Decision::Demote {
            keep: id("a"),
            demote: vec![id("b"), id("c")]
        }
    );
    assert_eq!(
        decide(&members, 0, 10_000, Some("b")),
        Decision::Demote {
            keep: id("b"),
            demote: vec![id("a"), id("c")]
        }
    );
}

fn member() -> impl Strategy<Value = Member> {
    (
        0..5u8,
        prop_oneof![Just(Told::Active), Just(Told::Standby), Just(Told::Unknown)],
        prop_oneof![
            Just(Fitness::Unfit),
            Just(Fitness::Starting),
            Just(Fitness::Healthy)
        ],
        0..30_000i64,
    )
        .prop_map(|(h, role, fitness, since)| {
            m(
                &format!("h{h}"),
                role,
                fitness,
                (fitness != Fitness::Healthy).then_some(since),
            )
        })
}

/// The roles after carrying out `d` (every command delivered).
fn after(members: &[Member], d: &Decision) -> Vec<(Ident, Told)> {
    members
        .iter()
        .map(|m| {
            let i = Ident::of(m);
            let role = match d {
                Decision::Activate { to, .. } if *to == i => Told::Active,
                Decision::Failover { from, .. } if *from == i => Told::Standby,
                Decision::Failover { to, .. } if *to == i => Told::Active,
                Decision::Demote { demote, .. } if demote.contains(&i) => Told::Standby,
                _ => m.role,
            };
            (i, role)
        })
        .collect()
}

proptest! {
    #[test]
    fn never_two_actives_and_never_an_unfit_target(
        members in proptest::collection::vec(member(), 0..6),
        now in 0..60_000i64,
        preferred in proptest::option::of(0..5u8),
    ) {
        // Members are unique by name (one service per host here).
        let mut members = members;
        members.sort_by(|a, b| a.host.cmp(&b.host));
        members.dedup_by(|a, b| a.host == b.host);
        let preferred = preferred.map(|p| format!("h{p}"));
        let d = decide(&members, now, 10_000, preferred.as_deref());
        let roles = after(&members, &d);
        let actives = roles.iter().filter(|(_, r)| *r == Told::Active).count();
        prop_assert!(actives <= 1, "{d:?} leaves {actives} actives: {roles:?}");
        let find = |i: &Ident| members.iter().find(|m| Ident::of(m) == *i).cloned();
        match &d {
            Decision::Activate { to, .. } => {
                let t = find(to).expect("a member");
                prop_assert!(t.fitness != Fitness::Unfit);
                prop_assert!(members.iter().all(|m| m.role != Told::Active));
            }
            Decision::Failover { from, to, .. } => {
                let (f, t) = (find(from).expect("member"), find(to).expect("member"));
                prop_assert!(t.fitness != Fitness::Unfit && from != to);
                prop_assert!(t.fitness > f.fitness, "only to a fitter member");
                prop_assert!(now - f.unhealthy_since_ms.expect("unhealthy since") >= 10_000);
                // The best fit was chosen: no standby fitter than the target.
                prop_assert!(members.iter().filter(|m| Ident::of(m) != *from).all(|m| m.fitness <= t.fitness));
            }
            Decision::Demote { keep, demote } => {
                prop_assert!(!demote.contains(keep));
                prop_assert!(find(keep).expect("member").role == Told::Active);
            }
            Decision::Nothing => {}
        }
    }
}
