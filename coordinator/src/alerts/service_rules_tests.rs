//! The service rules: down (failed, stopped but not by command), restart loop (threshold
//! restarts within the window, proptested against a plain count) and remediation capped
//! (raised for the window after the cap fired); and the restart-loop alert driven through the
//! fold and the state machine.

use std::collections::BTreeMap;

use opsfleet_proto::api::ServiceRunState;
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::EventEnvelope;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::alerts::machine::evaluate;
use crate::alerts::{AlertsConfig, Memory, State};
use crate::projection::Fleet;

const T0: i64 = 1_790_000_000_000;
const HOUR: i64 = 3_600_000;

fn row(state: ServiceRunState, detail: &str) -> ServiceRow {
    ServiceRow {
        manager: "process".to_owned(),
        state,
        exit_detail: detail.to_owned(),
        ..ServiceRow::default()
    }
}

fn host_with(services: &[(&str, ServiceRow)]) -> HostState {
    let mut h = HostState::new("web-01");
    h.services = services
        .iter()
        .map(|(n, r)| ((*n).to_owned(), r.clone()))
        .collect::<BTreeMap<_, _>>();
    h
}

fn conditions_of(rules: &Rules, host: &HostState, now: i64, lost: bool) -> Vec<Condition> {
    let mut out = Vec::new();
    service_conditions(rules, host, now, lost, &mut out);
    out
}

#[test]
fn failed_and_stopped_are_down_unless_stopped_by_command() {
    assert!(is_down(&row(
        ServiceRunState::Failed,
        "exited with status 1"
    )));
    assert!(is_down(&row(
        ServiceRunState::Stopped,
        "killed by signal 9"
    )));
    assert!(!is_down(&row(
        ServiceRunState::Stopped,
        "stopped by command"
    )));
    for up in [
        ServiceRunState::Running,
        ServiceRunState::Starting,
        ServiceRunState::Stopping,
    ] {
        assert!(!is_down(&row(up, "")), "{up}");
    }
    let rules = Rules::default();
    let host = host_with(&[
        ("app", row(ServiceRunState::Failed, "exited with status 1")),
        ("worker", row(ServiceRunState::Running, "")),
        ("batch", row(ServiceRunState::Stopped, "stopped by command")),
    ]);
    let cs = conditions_of(&rules, &host, T0, false);
    assert_eq!(cs.len(), 1, "{cs:?}");
    assert_eq!(cs[0].alert_id, "service_down/web-01/app");
    assert_eq!(
        cs[0].summary,
        "service app on web-01 is failed (exited with status 1)"
    );
    assert_eq!(cs[0].value, "failed");
    // A lost host's services are not judged: host_lost says it.
    assert!(conditions_of(&rules, &host, T0, true).is_empty());
}

#[test]
fn a_restart_loop_is_threshold_restarts_within_the_window() {
    let rules = Rules::default();
    let loop_rule = rules.get(RuleKind::ServiceRestartLoop).expect("enabled");
    assert_eq!((loop_rule.threshold, loop_rule.window_ms), (3, HOUR));
    let mut app = row(ServiceRunState::Running, "exited with status 1");
    app.restarted_at_unix_ms = vec![T0 - 2 * HOUR, T0 - 50 * 60_000, T0 - 20 * 60_000];
    let host = host_with(&[("app", app.clone())]);
    assert!(
        conditions_of(&rules, &host, T0, false).is_empty(),
        "2 within the hour"
    );
    app.restarted_at_unix_ms.push(T0 - 1000);
    let host = host_with(&[("app", app)]);
    let cs = conditions_of(&rules, &host, T0, false);
    assert_eq!(cs.len(), 1, "{cs:?}");
    assert_eq!(cs[0].alert_id, "service_restart_loop/web-01/app");
    assert_eq!(
        cs[0].summary,
        "service app on web-01 restarted 3 times within 1h (last exit: exited with status 1)"
    );
    // Restarts age out: the condition clears.
    assert!(conditions_of(&rules, &host, T0 + HOUR, false).is_empty());
}

#[test]
fn a_capped_remediation_is_raised_for_the_window() {
    let rules = Rules::default();
    let mut app = row(ServiceRunState::Running, "");
    app.capped_at_unix_ms = T0;
    app.capped_reason = "health check failed 3 times; cap of 3 restarts per hour".to_owned();
    let host = host_with(&[("app", app)]);
    let cs = conditions_of(&rules, &host, T0 + HOUR - 1, false);
    assert_eq!(cs.len(), 1, "{cs:?}");
    assert_eq!(cs[0].alert_id, "service_remediation_capped/web-01/app");
    assert!(
        cs[0].summary.contains("cap of 3 restarts per hour"),
        "{cs:?}"
    );
    assert!(conditions_of(&rules, &host, T0 + HOUR, false).is_empty());
}

#[test]
fn thresholds_windows_and_severities_come_from_the_config() {
    let cfg: AlertsConfig = toml::from_str(
        "[rules.service_restart_loop]\nthreshold = 5\nwindow = \"24h\"\nseverity = \"critical\"\n\
         [rules.service_remediation_capped]\nwindow = \"10m\"\n\
         [rules.service_down]\nfor = \"30s\"\n",
    )
    .expect("config");
    assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    let rules = cfg.rules();
    let r = rules.get(RuleKind::ServiceRestartLoop).expect("loop");
    assert_eq!(
        (r.threshold, r.window_ms, r.severity.as_str()),
        (5, 24 * HOUR, "critical")
    );
    let capped = rules
        .get(RuleKind::ServiceRemediationCapped)
        .expect("capped");
    assert_eq!(capped.window_ms, 600_000);
    let down = rules.get(RuleKind::ServiceDown).expect("down");
    assert_eq!(down.timing.for_ms, 30_000);
    let bad: AlertsConfig =
        toml::from_str("[rules.service_down]\nthreshold = 2\nwindow = \"1h\"\n").expect("config");
    let problems = bad.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].1.contains("log_errors, service_restart_loop"),
        "{problems:?}"
    );
}

/// A `service` event of web-01's `app`.
fn service_event(seq: u64, at: i64, state: pb::ServiceRunState, restarts: u64) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: "web-01".to_owned(),
        seq,
        time_unix_ms: at,
        module: "app".to_owned(),
        incarnation: Uuid::nil(),
        body: Body::Service(pb::ServiceState {
            service: "app".to_owned(),
            manager: "process".to_owned(),
            state: state as i32,
            since_unix_ms: at,
            restarts,
            exit_detail: "exited with status 1".to_owned(),
            ..Default::default()
        }),
    }
}

#[test]
fn a_crash_loop_folded_from_events_fires_the_restart_loop_alert() {
    let rules = Rules::default();
    let mut fleet = Fleet::new();
    let mut memory = Memory::default();
    let mut seq = 0;
    let mut fired = None;
    for restarts in 0..5u64 {
        let at = T0 + restarts as i64 * 10_000;
        seq += 1;
        fleet.apply(&service_event(
            seq,
            at,
            pb::ServiceRunState::Running,
            restarts,
        ));
        seq += 1;
        fleet.apply(&service_event(
            seq,
            at + 5_000,
            pb::ServiceRunState::Failed,
            restarts,
        ));
        let ts = evaluate(&rules, &fleet, &mut memory, at + 6_000);
        if let Some(t) = ts
            .iter()
            .find(|t| t.rule == "service_restart_loop" && t.to == State::Firing)
        {
            fired.get_or_insert((restarts, t.summary.clone()));
        }
    }
    let (at_restart, summary) = fired.expect("the restart loop fired");
    assert_eq!(at_restart, 3, "fires at the third restart");
    assert!(summary.contains("restarted 3 times within 1h"), "{summary}");
}

proptest! {
    /// The rule holds exactly when at least `threshold` restarts lie in (now - window, now].
    #[test]
    fn the_restart_loop_counts_exactly_the_window(
        offsets in proptest::collection::vec(0i64..7_200_000, 0..20),
        threshold in 1u64..6,
        window_ms in 1i64..7_200_000,
    ) {
        let mut rules = Rules::default();
        for r in &mut rules.rules {
            if r.kind == RuleKind::ServiceRestartLoop {
                r.threshold = threshold;
                r.window_ms = window_ms;
            }
        }
        let mut times: Vec<i64> = offsets.iter().map(|o| T0 - o).collect();
        times.sort_unstable();
        let mut app = row(ServiceRunState::Running, "");
        app.restarted_at_unix_ms = times.clone();
        let host = host_with(&[("app", app)]);
        let within = times.iter().filter(|t| **t > T0 - window_ms).count() as u64;
        let holds = conditions_of(&rules, &host, T0, false)
            .iter()
            .any(|c| c.rule == RuleKind::ServiceRestartLoop);
        prop_assert_eq!(holds, within >= threshold);
    }
}
