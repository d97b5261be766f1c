//! Unit tests of the pure parts of dispatching: actions, targets, labels, expiry.

use super::*;
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
    assert!(err.to_string().contains("web-9"), "{err}");
    assert!(matches!(
        resolve_targets(&fleet, &[], false),
        Err(DispatchError::NoTargets)
    ));
    assert!(matches!(
        resolve_targets(&Fleet::new(), &[], true),
        Err(DispatchError::NoTargets)
    ));
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
