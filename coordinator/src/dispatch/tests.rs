//! Unit tests of the pure parts of dispatching: actions, targets, labels, expiry.

use super::*;
use opsfleet_proto::api::Targets;
use opsfleet_proto::EventEnvelope;

fn fleet_with(hosts: &[&str]) -> Fleet {
    let mut fleet = Fleet::new();
    for (i, h) in hosts.iter().enumerate() {
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: (*h).to_owned(),
            seq: 1,
            time_unix_ms: i as i64,
            module: "heartbeat".to_owned(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
        });
    }
    fleet
}

/// The wire action of a request as the API receives it: checked into a typed request, then
/// built against the fleet.
fn action_of(
    fleet: &Fleet,
    req: &CommandRequestJson,
    targets: &[String],
) -> Result<Action, DispatchError> {
    let req = CommandRequest::try_from(req.clone())?;
    request_action(fleet, &req.action, targets)
}

#[test]
fn actions_need_their_module() {
    let fleet = fleet_with(&["web-01"]);
    let targets = ["web-01".to_owned()];
    let mut pause = request("pause");
    pause.module = Some("log".to_owned());
    assert!(
        matches!(action_of(&fleet, &pause, &targets), Ok(Action::Pause(m)) if m.module == "log")
    );
    assert!(matches!(
        action_of(&fleet, &request("pause"), &targets),
        Err(DispatchError::Request(RequestError::NeedsModule { .. }))
    ));
    assert!(matches!(
        action_of(&fleet, &request("noop"), &targets),
        Ok(Action::Noop(_))
    ));
    let err = action_of(&fleet, &request("reboot"), &targets).unwrap_err();
    assert!(err.to_string().contains("reboot"), "{err}");
}

/// `resolve` of a noop to these host names / `--all`: the targets, or the error.
fn resolve_targets(
    fleet: &Fleet,
    hosts: &[String],
    all: bool,
) -> Result<Vec<String>, DispatchError> {
    let req = Targets {
        hosts: hosts.to_vec(),
        all,
        labels: Default::default(),
    };
    resolve(fleet, &req, &CommandAction::Noop).map(|r| r.targets)
}

fn resolve_request_targets(fleet: &Fleet, req: &Targets) -> Result<Vec<String>, DispatchError> {
    resolve(fleet, req, &CommandAction::Noop).map(|r| r.targets)
}

#[test]
fn targets_are_checked_against_the_fleet() {
    let fleet = fleet_with(&["web-01", "web-02", "db-01"]);
    assert_eq!(
        resolve_targets(&fleet, &[], true).unwrap(),
        ["db-01", "web-01", "web-02"]
    );
    let two = vec![
        "web-02".to_owned(),
        "web-01".to_owned(),
        "web-02".to_owned(),
    ];
    assert_eq!(
        resolve_targets(&fleet, &two, false).unwrap(),
        ["web-01", "web-02"]
    );
    let err = resolve_targets(&fleet, &["web-9".to_owned()], false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown host(s): web-9 (known: db-01, web-01, web-02)"
    );
    assert!(matches!(
        resolve_targets(&fleet, &[], false),
        Err(DispatchError::NoTargets)
    ));
    assert!(matches!(
        resolve_targets(&Fleet::new(), &[], true),
        Err(DispatchError::NoTargets)
    ));
}

#[test]
fn globs_select_hosts_as_in_the_views() {
    let fleet = fleet_with(&["web-01", "web-02", "db-01"]);
    assert_eq!(
        resolve_targets(&fleet, &["web-*".to_owned()], false).unwrap(),
        ["web-01", "web-02"]
    );
    assert_eq!(
        resolve_targets(&fleet, &["db-0?".to_owned(), "web-02".to_owned()], false).unwrap(),
        ["db-01", "web-02"]
    );
    let err = resolve_targets(&fleet, &["cache-*".to_owned()], false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no host matches cache-* (known: db-01, web-01, web-02)"
    );
}

/// `host` reports a module `name` of `kind`.
fn with_module(fleet: &mut Fleet, host: &str, name: &str, kind: &str) {
    fleet.apply(&EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq: 2,
        time_unix_ms: 10,
        module: name.to_owned(),
        incarnation: Uuid::nil(),
        body: pb::event::Body::ModuleState(pb::ModuleState {
            module: name.to_owned(),
            kind: kind.to_owned(),
            ..Default::default()
        }),
    });
}

#[test]
fn hosts_without_the_module_are_refused_by_name_and_skipped_by_all() {
    let mut fleet = fleet_with(&["web-01", "web-02", "db-01"]);
    with_module(&mut fleet, "web-01", "log", "log");
    with_module(&mut fleet, "db-01", "nightly", "backup");
    let pause_log = CommandAction::Pause {
        module: "log".to_owned(),
    };
    let all = Targets {
        hosts: Vec::new(),
        all: true,
        labels: Default::default(),
    };
    let r = resolve(&fleet, &all, &pause_log).unwrap();
    assert_eq!(r.targets, ["web-01"]);
    let skipped: Vec<(&str, &str)> = r
        .skipped
        .iter()
        .map(|s| (s.host.as_str(), s.reason.as_str()))
        .collect();
    assert_eq!(
        skipped,
        [("db-01", "no module log"), ("web-02", "no module log")]
    );
    let named = Targets {
        hosts: vec!["db-01".to_owned()],
        all: false,
        labels: Default::default(),
    };
    let err = resolve(&fleet, &named, &pause_log).unwrap_err();
    assert_eq!(
        err.to_string(),
        "host db-01 has no module log (its modules: nightly)"
    );
    let backup = CommandAction::BackupRun {
        module: None,
        job: None,
    };
    let r = resolve(&fleet, &all, &backup).unwrap();
    assert_eq!(r.targets, ["db-01"]);
    assert_eq!(r.skipped.len(), 2);
    let nosuch = CommandAction::Pause {
        module: "nosuch".to_owned(),
    };
    let err = resolve(&fleet, &all, &nosuch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "none of the 3 matched host(s) can take the command: no module nosuch on any of them"
    );
}

fn request(action: &str) -> CommandRequestJson {
    CommandRequestJson {
        action: action.to_owned(),
        hosts: vec!["web-01".to_owned()],
        deadline_ms: 1_000,
        issued_by: "alice".to_owned(),
        ..Default::default()
    }
}

#[test]
fn labels_select_hosts_from_their_heartbeats() {
    let mut fleet = fleet_with(&["web-01", "web-02", "db-01"]);
    for (host, role) in [("web-01", "web"), ("web-02", "web"), ("db-01", "db")] {
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq: 2,
            time_unix_ms: 10,
            module: "heartbeat".to_owned(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::Heartbeat(pb::Heartbeat {
                labels: [("role".to_owned(), role.to_owned())].into_iter().collect(),
                ..Default::default()
            }),
        });
    }
    let mut req = CommandRequest::try_from(request("noop")).unwrap().targets;
    req.hosts.clear();
    req.labels = [("role".to_owned(), "web".to_owned())]
        .into_iter()
        .collect();
    assert_eq!(
        resolve_request_targets(&fleet, &req).unwrap(),
        ["web-01", "web-02"]
    );
    req.hosts = vec!["db-01".to_owned()];
    assert_eq!(
        resolve_request_targets(&fleet, &req).unwrap(),
        ["db-01", "web-01", "web-02"]
    );
    req.labels = [("role".to_owned(), "cache".to_owned())]
        .into_iter()
        .collect();
    let err = resolve_request_targets(&fleet, &req)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "no host has the labels role=cache (labels in use: role=db, role=web)"
    );
}

#[test]
fn new_actions_check_their_fields_with_clear_errors() {
    let fleet = fleet_with(&["web-01"]);
    let targets = ["web-01".to_owned()];
    let err = action_of(&fleet, &request("restore"), &targets).unwrap_err();
    assert_eq!(err.to_string(), "restore needs --archive");
    let mut restore = request("restore");
    restore.archive = Some("app-20260101T000000.000Z.tar.zst".to_owned());
    let err = action_of(&fleet, &restore, &targets).unwrap_err();
    assert_eq!(err.to_string(), "restore needs --target");
    restore.target = Some("/srv/restore".to_owned());
    assert!(matches!(
        action_of(&fleet, &restore, &targets),
        Ok(Action::Restore(r)) if r.target == "/srv/restore" && r.job.is_empty()
    ));
    let mut run = request("backup_run");
    run.job = Some("app".to_owned());
    assert!(matches!(
        action_of(&fleet, &run, &targets),
        Ok(Action::BackupRun(b)) if b.job == "app" && b.module.is_empty()
    ));
    let mut apply = request("config_apply");
    apply.config_toml = Some("type = \"disk\"".to_owned());
    assert!(matches!(
        action_of(&fleet, &apply, &targets),
        Err(DispatchError::Request(RequestError::NeedsModule { .. }))
    ));
    apply.module = Some("disk".to_owned());
    assert!(matches!(
        action_of(&fleet, &apply, &targets),
        Ok(Action::ConfigApply(c)) if c.module == "disk"
    ));
    apply.config_toml = Some("  ".to_owned());
    let err = action_of(&fleet, &apply, &targets).unwrap_err();
    assert_eq!(err.to_string(), "config_apply needs a config (--file)");
}

#[test]
fn deadlines_are_required_and_capped() {
    let max = Duration::from_secs(3600);
    assert!(matches!(
        check_deadline(0, max),
        Err(DispatchError::NoDeadline)
    ));
    assert_eq!(check_deadline(1, max).unwrap(), Duration::from_millis(1));
    assert_eq!(check_deadline(3_600_000, max).unwrap(), max);
    let err = check_deadline(3_600_001, max).unwrap_err();
    assert!(matches!(err, DispatchError::DeadlineTooLong { .. }));
    assert!(err.to_string().contains("1h"), "{err}");
    let err = check_deadline(u64::MAX, max).unwrap_err().to_string();
    assert!(err.contains("max_deadline"), "{err}");
    assert!(check_deadline(0, max)
        .unwrap_err()
        .to_string()
        .contains("deadline is required"));
}

#[test]
fn only_unanswered_commands_past_deadline_and_grace_expire() {
    let mut fleet = fleet_with(&["web-01"]);
    let issue = |id: &str, deadline: i64, seq: u64| EventEnvelope {
        id: Uuid::now_v7(),
        host: "blue".to_owned(),
        seq,
        time_unix_ms: 0,
        module: opsfleet_proto::COORDINATOR_MODULE.to_owned(),
        incarnation: Uuid::nil(),
        body: pb::event::Body::CommandIssued(pb::CommandIssued {
            command_id: id.to_owned(),
            target: "web-01".to_owned(),
            deadline_unix_ms: deadline,
            ..Default::default()
        }),
    };
    fleet.apply(&issue("late", 1_000, 1));
    fleet.apply(&issue("answered", 1_000, 2));
    fleet.apply(&issue("future", 9_000, 3));
    fleet.apply(&EventEnvelope {
        id: Uuid::now_v7(),
        host: "web-01".to_owned(),
        seq: 2,
        time_unix_ms: 0,
        module: "agent".to_owned(),
        incarnation: Uuid::nil(),
        body: pb::event::Body::CommandAccepted(pb::CommandAccepted {
            command_id: "answered".to_owned(),
            epoch: 1,
        }),
    });
    assert!(
        due_for_expiry(&fleet, 2_500, 2_000).is_empty(),
        "within grace"
    );
    let due: Vec<String> = due_for_expiry(&fleet, 3_001, 2_000)
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(due, ["late"]);
}
