//! Tests of the event filters and one-line renderings.

use super::*;
use uuid::Uuid;

pub(super) fn ev(host: &str, module: &str, body: Body) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::nil(),
        host: host.into(),
        seq: 42,
        time_unix_ms: 1_790_000_000_123,
        module: module.into(),
        incarnation: Uuid::nil(),
        body,
    }
}

#[test]
fn events_the_coordinators_refuse_for_their_subject_are_recognised() {
    let mut forged = ev(
        "web-01",
        "coordinator",
        Body::AlertTransition(pb::AlertTransition::default()),
    );
    assert!(refused_by_subject(
        "ops.evt.web-01.alert_transition",
        &forged
    ));
    assert!(!refused_by_subject(
        "ops.coord.web-01.alert_transition",
        &forged
    ));
    forged.module = "agent".into();
    assert!(refused_by_subject(
        "ops.coord.web-01.alert_transition",
        &forged
    ));
    let hb = ev(
        "web-01",
        "heartbeat",
        Body::Heartbeat(pb::Heartbeat::default()),
    );
    assert!(!refused_by_subject("ops.evt.web-01.heartbeat", &hb));
    let mut own = hb.clone();
    own.module = "coordinator".into();
    assert!(refused_by_subject("ops.evt.web-01.heartbeat", &own));
    assert!(refused_by_subject("ops.coord.web-01.heartbeat", &own));
    let expired = ev(
        "blue",
        "coordinator",
        Body::CommandExpired(pb::CommandExpired::default()),
    );
    assert!(!refused_by_subject(
        "ops.coord.blue.command_expired",
        &expired
    ));
}

#[test]
fn wildcards_match_like_shell_globs() {
    assert!(wildcard("*", "heartbeat"));
    assert!(wildcard("backup_*", "backup_completed"));
    assert!(!wildcard("backup_*", "restore_completed"));
    assert!(wildcard("*_completed", "restore_completed"));
    assert!(wildcard("b*u*d", "backup_failed"));
    assert!(!wildcard("disk", "disks"));
    assert!(wildcard("disk", "disk"));
}

#[test]
fn filters_narrow_the_subject_and_match_the_rest() {
    let f = Filter {
        host: Some("web-01".into()),
        module: None,
        kind: Some("backup_*".into()),
    };
    assert_eq!(f.subject(), "ops.*.web-01.*");
    let backup = ev(
        "web-01",
        "nightly",
        Body::BackupStarted(pb::BackupStarted::default()),
    );
    assert!(f.matches(&backup));
    assert!(!f.matches(&ev(
        "web-01",
        "hb",
        Body::Heartbeat(pb::Heartbeat::default())
    )));
    assert!(!f.matches(&ev(
        "db-01",
        "nightly",
        Body::BackupStarted(pb::BackupStarted::default())
    )));
    let exact = Filter {
        kind: Some("disk".into()),
        ..Default::default()
    };
    assert_eq!(exact.subject(), "ops.*.*.disk");
}

#[test]
fn a_group_failover_says_from_where_to_where_and_how_long() {
    let e = ev(
        "blue",
        opsfleet_proto::COORDINATOR_MODULE,
        Body::GroupFailover(pb::GroupFailover {
            group: "router".into(),
            service: "router".into(),
            from_host: "edge-01".into(),
            to_host: "edge-02".into(),
            reason: "active router on edge-01: host lost".into(),
            phase: "completed".into(),
            epoch: 7,
            took_ms: 1830,
            ..Default::default()
        }),
    );
    let line = EventLine::new(7, &e).human();
    assert!(
        line.ends_with(
            "group router failover edge-01 -> edge-02 completed in 1830 ms (epoch 7): active router on edge-01: host lost"
        ),
        "{line}"
    );
}

#[test]
fn human_line_has_time_host_seq_and_summary() {
    let e = ev(
        "web-01",
        "disk",
        Body::Disk(pb::DiskUsage {
            path: "/".into(),
            used_basis_points: 4217,
            level: pb::DiskLevel::Warn as i32,
            previous_level: pb::DiskLevel::Ok as i32,
            level_changed: true,
            ..Default::default()
        }),
    );
    assert_eq!(
        EventLine::new(7, &e).human(),
        "2026-09-21T14:13:20.123Z web-01 #42 disk/disk  / 42.2% used, inodes 0.0%, warn (was ok)"
    );
}

#[test]
fn human_lines_make_host_text_inert_and_json_keeps_it_exact() {
    let e = ev(
        "web-01",
        "log",
        Body::LogMatch(pb::LogMatch {
            path: "/var/log/app.log".into(),
            pattern: "error".into(),
            lines: 1,
            excerpt: "ERROR \x1b[2J\x1b[H\rall good\nsecond".into(),
            ..Default::default()
        }),
    );
    let line = EventLine::new(7, &e);
    let human = line.human();
    assert!(!human.chars().any(char::is_control), "{human:?}");
    assert!(human.ends_with("ERROR ␛[2J␛[H␍all good"), "{human}");
    let failed = ev(
        "web-01",
        "cmd",
        Body::CommandFailed(pb::CommandFailed {
            command_id: "c1".into(),
            reason: "bad\x1b]0;title\x07\u{9b}2J".into(),
        }),
    );
    let human = EventLine::new(8, &failed).human();
    assert!(
        human.ends_with("command c1 failed: bad␛]0;title␇\u{fffd}2J"),
        "{human}"
    );
    let json = serde_json::to_string(&line).expect("json");
    assert!(
        json.contains(r"ERROR \u001b[2J\u001b[H\rall good"),
        "{json}"
    );
}

#[test]
fn a_rejection_names_the_epochs_only_when_fenced() {
    let rejected = |epoch, highest_epoch_seen| {
        lifecycle(&Body::CommandRejected(
            opsfleet_proto::pb::CommandRejected {
                command_id: "c1".into(),
                reason: "why".into(),
                epoch,
                highest_epoch_seen,
            },
        ))
    };
    assert_eq!(rejected(7, 7), "command c1 rejected: why");
    assert_eq!(
        rejected(6, 7),
        "command c1 rejected: why (epoch 6, highest seen 7)"
    );
}

#[test]
fn silences_and_acks_say_who_what_and_for_how_long() {
    let added = summary(&Body::SilenceAdded(pb::SilenceAdded {
        silence_id: "0193a4c2".into(),
        host_glob: "web-*".into(),
        labels: vec!["env=prod".into()],
        rules: vec!["disk_crit".into()],
        starts_unix_ms: 1_000,
        ends_unix_ms: 7_201_000,
        reason: "disk swap".into(),
        created_by: "alice".into(),
        created_role: "operator".into(),
        epoch: 7,
    }));
    assert_eq!(
        added,
        "silence 0193a4c2 added by alice as operator for 7200s (host=web-* env=prod rule=disk_crit): disk swap"
    );
    let expired = summary(&Body::SilenceExpired(pb::SilenceExpired {
        silence_id: "0193a4c2".into(),
        by: "bob".into(),
        role: "operator".into(),
        at_unix_ms: 5,
        epoch: 7,
    }));
    assert_eq!(expired, "silence 0193a4c2 expired by bob as operator");
    let acked = summary(&Body::AlertAcked(pb::AlertAcked {
        alert_id: "disk_crit/web-01//data".into(),
        by: "alice".into(),
        comment: "on it".into(),
        ..Default::default()
    }));
    assert_eq!(
        acked,
        "alert disk_crit/web-01//data acknowledged by alice: on it"
    );
}
