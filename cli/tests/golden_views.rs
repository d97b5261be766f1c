//! Golden files for `opsctl hosts|backups|incidents|alerts|services` tables.
//! `UPDATE_GOLDEN=1 cargo test -p opsfleet-cli --test golden_views` rewrites them; review the diff.

use opsfleet_cli::views::render;
use opsfleet_proto::api::{
    AlertView, AlertsReply, BackupFailureView, BackupSuccessView, BackupView, BackupsReply,
    CheckCondition, CheckConditionKind, DiskView, HostSummary, HostsReply, IncidentView,
    IncidentsReply, ModuleState, ModuleView, RemoteBackupView, RemoteReconcileView,
    RemoteSyncFailureView, RemoteSyncView, Responder, RestoreTestResultView, RestoreTestView,
    ServiceView, ServicesReply, Severity, Truncated,
};

const NOW: i64 = 1_790_000_000_000;

fn check(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create)",
            path.display()
        )
    });
    assert_eq!(actual, expected, "golden file {} differs", path.display());
}

fn standby() -> Responder {
    Responder {
        name: "green".into(),
        color: "green".into(),
        role: opsfleet_proto::api::LeaderRole::Standby,
        epoch: 4,
        applied_stream_seq: 5120,
        behind: 2,
    }
}

fn module(name: &str, state: ModuleState) -> ModuleView {
    ModuleView {
        name: name.into(),
        kind: name.into(),
        state,
    }
}

fn host(name: &str, liveness: &str, ago_ms: i64) -> HostSummary {
    HostSummary {
        host: name.into(),
        liveness: liveness.parse().unwrap(),
        last_seen_unix_ms: NOW - ago_ms,
        heartbeat_interval_ms: 10_000,
        agent_version: "0.1.0".into(),
        last_seq: 812,
        events: 812,
        missing_events: 0,
        outbox_pending: 0,
        worst_disk: Some(DiskView {
            path: "/".into(),
            used_percent: 42.17,
            inodes_used_percent: 3.0,
            level: opsfleet_proto::api::DiskLevel::Ok,
            total_bytes: 100 << 30,
            avail_bytes: 58 << 30,
        }),
        modules: vec![
            module("disk", ModuleState::Running),
            module("heartbeat", ModuleState::Running),
        ],
        unhealthy: vec![],
        check_conditions: vec![],
        incidents: 0,
        failing_backups: 0,
        down_services: vec![],
        declared_lost: false,
        truncated: Truncated::default(),
        maintenance: false,
    }
}

#[test]
fn hosts_table() {
    let mut db = host("db-01", "lost", 95_000);
    db.declared_lost = true;
    db.unhealthy = vec!["postgres:failed".into()];
    db.failing_backups = 1;
    db.missing_events = 3;
    db.modules.push(module("log", ModuleState::Paused));
    let mut web2 = host("web-02", "up", 4_000);
    web2.worst_disk = None;
    web2.incidents = 7;
    web2.truncated.disks = 12;
    web2.check_conditions = vec![
        CheckCondition {
            check: "api".into(),
            condition: CheckConditionKind::Slow,
            detail: "p95 900ms > 250ms".into(),
        },
        CheckCondition {
            check: "tls".into(),
            condition: CheckConditionKind::CertWarn,
            detail: "certificate expires in 5 day(s)".into(),
        },
    ];
    let reply = HostsReply {
        responder: standby(),
        now_unix_ms: NOW,
        hosts: vec![db, host("web-01", "up", 2_000), web2],
        next: None,
    };
    check("hosts.txt", &render::hosts(&reply, NOW));
}

#[test]
fn hosts_table_shows_maintenance_and_a_lost_hosts_modules_as_unknown() {
    let mut web1 = host("web-01", "up", 1_000);
    web1.maintenance = true;
    web1.modules[0].state = ModuleState::Paused;
    let mut web2 = host("web-02", "lost", 95_000);
    web2.declared_lost = true;
    web2.modules
        .iter_mut()
        .for_each(|m| m.state = ModuleState::Unknown);
    let reply = HostsReply {
        responder: standby(),
        now_unix_ms: NOW,
        hosts: vec![web1, web2],
        next: None,
    };
    check("hosts-maintenance.txt", &render::hosts(&reply, NOW));
}

#[test]
fn hosts_table_counts_services_not_running_as_trouble() {
    let mut web1 = host("web-01", "up", 1_000);
    web1.down_services = vec![
        "app:failed".into(),
        "worker:stopped".into(),
        "api:degraded".into(),
    ];
    let reply = HostsReply {
        responder: standby(),
        now_unix_ms: NOW,
        hosts: vec![web1, host("web-02", "up", 2_000)],
        next: None,
    };
    check("hosts-services.txt", &render::hosts(&reply, NOW));
}

fn service(host: &str, name: &str, state: &str, pid: u32, restarts: u64) -> ServiceView {
    ServiceView {
        host: host.into(),
        service: name.into(),
        manager: "process".into(),
        state: state.parse().unwrap(),
        pid,
        since_unix_ms: NOW - 12_000,
        restarts,
        exit_detail: String::new(),
        instance: String::new(),
        version: String::new(),
        health: None,
    }
}

#[test]
fn services_table() {
    let mut app = service("web-01", "app", "failed", 0, 4);
    app.exit_detail = "exited with status 1".into();
    let mut worker = service("web-01", "worker", "running", 4242, 1);
    worker.exit_detail = "killed by signal 9".into();
    worker.health = Some(opsfleet_proto::api::ProbeStatus::Degraded);
    let mut web2 = service("web-02", "app", "running", 917, 0);
    web2.version = "1.4.2".into();
    web2.health = Some(opsfleet_proto::api::ProbeStatus::Ready);
    let mut api = service("web-02", "shop-api", "running", 5120, 2);
    api.manager = "compose".into();
    api.instance = "3f2a9c1b7d0e".into();
    api.version = "1.4.2".into();
    let reply = ServicesReply {
        responder: standby(),
        services: vec![app, worker, web2, api],
        next: Some("web-02/app".into()),
    };
    check("services.txt", &render::services(&reply, NOW));
    let empty = ServicesReply {
        responder: standby(),
        services: vec![],
        next: None,
    };
    check("services-empty.txt", &render::services(&empty, NOW));
}

#[test]
fn hosts_table_empty() {
    let reply = HostsReply {
        responder: standby(),
        now_unix_ms: NOW,
        hosts: vec![],
        next: None,
    };
    check("hosts-empty.txt", &render::hosts(&reply, NOW));
}

#[test]
fn backups_table() {
    let ok = BackupView {
        host: "db-01".into(),
        job: "nightly".into(),
        state: "ok".parse().unwrap(),
        last_success: Some(BackupSuccessView {
            run_id: "r-2".into(),
            archive: "nightly-20260101T020000Z.tar.zst".into(),
            size_bytes: 734_003_200,
            files: 1_204,
            duration_ms: 83_500,
            sha256: "cd".repeat(32),
            at_unix_ms: NOW - 3 * 3_600_000,
        }),
        last_failure: Some(BackupFailureView {
            run_id: "r-1".into(),
            reason: "source /var/lib/pg missing\nsecond line".into(),
            at_unix_ms: NOW - 2 * 86_400_000,
        }),
        running: None,
        archives_kept: 7,
        pruned_archives: 3,
        pruned_bytes: 2 << 30,
        last_restore: None,
        archives: Vec::new(),
        remote: Some(RemoteBackupView {
            destination: "path:/mnt/nas/nightly".into(),
            last_synced: Some(RemoteSyncView {
                archive: "nightly-20260101T020000Z.tar.zst".into(),
                bytes: 734_003_500,
                at_unix_ms: NOW - 3 * 3_600_000 + 60_000,
            }),
            last_sync_failure: None,
            remote_pruned: 3,
            reconciled: Some(RemoteReconcileView {
                missing: vec!["nightly-20251230T020000Z.tar.zst".into()],
                missing_count: 1,
                remote_archives: 6,
                at_unix_ms: NOW - 600_000,
                ..RemoteReconcileView::default()
            }),
        }),
        restore_test: Some(RestoreTestView {
            every_ms: Some(7 * 86_400_000),
            module: "backup".into(),
            declared_at_unix_ms: NOW - 30 * 86_400_000,
            last: Some(RestoreTestResultView {
                archive: "nightly-20260101T020000Z.tar.zst".into(),
                source: "path:/mnt/nas/nightly".into(),
                passed: true,
                files: 1_204,
                bytes: 900_000_000,
                duration_ms: 95_000,
                check: "passed".into(),
                requested_by: "schedule".into(),
                at_unix_ms: NOW - 2 * 3_600_000,
                ..RestoreTestResultView::default()
            }),
            last_passed_at_unix_ms: Some(NOW - 2 * 3_600_000),
        }),
    };
    let failed = BackupView {
        host: "web-01".into(),
        job: "site".into(),
        state: "failed".parse().unwrap(),
        last_success: None,
        last_failure: Some(BackupFailureView {
            run_id: "r-9".into(),
            reason: "destination full".into(),
            at_unix_ms: NOW - 600_000,
        }),
        running: None,
        archives_kept: 0,
        pruned_archives: 0,
        pruned_bytes: 0,
        last_restore: None,
        archives: Vec::new(),
        remote: Some(RemoteBackupView {
            destination: "path:/mnt/nas/site".into(),
            last_sync_failure: Some(RemoteSyncFailureView {
                archive: "site-20260101T020000Z.tar.zst".into(),
                reason: "path:/mnt/nas/site: cannot write \"site-...\": No space left".into(),
                at_unix_ms: NOW - 300_000,
            }),
            ..RemoteBackupView::default()
        }),
        restore_test: Some(RestoreTestView {
            every_ms: Some(86_400_000),
            last: Some(RestoreTestResultView {
                archive: "site-20251231T020000Z.tar.zst".into(),
                source: "local".into(),
                check: "failed".into(),
                reason: "the verify_check command failed: \"/usr/local/bin/check-site\" exited 1; stderr: index.html missing".into(),
                requested_by: "0190f3c2-7d1e-7000-8000-000000000001".into(),
                at_unix_ms: NOW - 5 * 60_000,
                ..RestoreTestResultView::default()
            }),
            ..RestoreTestView::default()
        }),
    };
    let reply = BackupsReply {
        responder: standby(),
        backups: vec![ok, failed],
        next: None,
    };
    check("backups.txt", &render::backups(&reply, NOW));
    // `--archives`: every archive kept, newest first per job (file names, as restore takes).
    let mut listed = reply.clone();
    listed.backups[0].archives = ["0100", "0200", "0300"]
        .map(|t| format!("/srv/backup/nightly-2026010{}T{t}00Z.tar.zst", &t[1..2]))
        .to_vec();
    check("backups-archives.txt", &render::archives(&listed));
    check("backups-archives-none.txt", &render::archives(&reply));
    let empty = BackupsReply {
        responder: standby(),
        backups: vec![],
        next: None,
    };
    check("backups-empty.txt", &render::backups(&empty, NOW));
}

#[test]
fn incidents_table() {
    let reply = IncidentsReply {
        responder: standby(),
        incidents: vec![
            IncidentView {
                host: "web-01".into(),
                path: "/var/log/app.log".into(),
                pattern: "traceback".into(),
                count: 12,
                suppressed: 40,
                first_seen_unix_ms: NOW - 5 * 3_600_000,
                last_seen_unix_ms: NOW - 90_000,
                last_excerpt: "Traceback (most recent call last):\n  File \"shop.py\", line 3"
                    .into(),
            },
            IncidentView {
                host: "web-02".into(),
                path: "/var/log/nginx/error.log".into(),
                pattern: "error".into(),
                count: 1,
                suppressed: 0,
                first_seen_unix_ms: NOW - 30_000,
                last_seen_unix_ms: NOW - 30_000,
                last_excerpt: format!("ERROR upstream timed out {}", "x".repeat(80)),
            },
        ],
        next: None,
    };
    check("incidents.txt", &render::incidents(&reply, NOW));
    let empty = IncidentsReply {
        responder: standby(),
        incidents: vec![],
        next: None,
    };
    check("incidents-empty.txt", &render::incidents(&empty, NOW));
}

#[test]
fn alerts_table() {
    let reply = AlertsReply {
        responder: Responder {
            role: opsfleet_proto::api::LeaderRole::Active,
            name: "blue".into(),
            color: "blue".into(),
            behind: 0,
            ..standby()
        },
        alerts: vec![
            AlertView {
                key: "disk_full/db-01//".into(),
                rule: "disk_full".into(),
                host: "db-01".into(),
                subject: "/".into(),
                state: "firing".parse().unwrap(),
                since_unix_ms: NOW - 600_000,
                last_transition: "pending -> firing".into(),
                last_transition_unix_ms: NOW - 600_000,
                notifications_sent: 2,
                detail: "/ is 97.0% full".into(),
                severity: Some(Severity::Critical),
                transitions: 2,
                silenced_by: vec!["0193a4c2-7d1e-7abc-9def-0123456789ab".into()],
                acked_by: Some("alice".into()),
                acked_at_unix_ms: Some(NOW - 60_000),
                ack_comment: Some("swapping the disk".into()),
            },
            AlertView {
                key: "host_lost/web-02/".into(),
                rule: "host_lost".into(),
                host: "web-02".into(),
                subject: String::new(),
                state: "resolved".parse().unwrap(),
                since_unix_ms: NOW - 3 * 86_400_000,
                last_transition: "firing -> resolved".into(),
                last_transition_unix_ms: NOW - 3 * 86_400_000,
                notifications_sent: 1,
                detail: "web-02 reports again".into(),
                severity: Some(Severity::Warning),
                transitions: 3,
                silenced_by: vec![],
                acked_by: None,
                acked_at_unix_ms: None,
                ack_comment: None,
            },
        ],
        // `--limit 2` left rows out.
        next: Some("web-02/host_lost/web-02/".into()),
    };
    check("alerts.txt", &render::alerts(&reply, NOW));
}

#[test]
fn silences_table() {
    use opsfleet_proto::api::{SilenceView, SilencesReply};
    let active = SilenceView {
        id: "0193a4c2-7d1e-7abc-9def-0123456789ab".into(),
        state: "active".into(),
        host: "web-*".into(),
        labels: vec!["env=prod".into()],
        rules: vec!["disk_crit".into()],
        starts_unix_ms: NOW - 600_000,
        ends_unix_ms: NOW + 7_200_000,
        reason: "disk swap".into(),
        created_by: "alice".into(),
        created_role: "operator".into(),
        expired_by: None,
        expired_unix_ms: None,
    };
    let reply = SilencesReply {
        responder: standby(),
        now_unix_ms: NOW,
        silences: vec![
            active.clone(),
            SilenceView {
                id: "0193a4c2-8000-7abc-9def-0123456789ab".into(),
                state: "expired".into(),
                host: String::new(),
                labels: vec![],
                rules: vec!["host_lost".into()],
                reason: "rack move\nsecond line".into(),
                expired_by: Some("bob".into()),
                expired_unix_ms: Some(NOW - 300_000),
                ..active
            },
        ],
        next: None,
    };
    check("silences.txt", &opsfleet_cli::silences::render(&reply));
    let empty = SilencesReply {
        silences: vec![],
        ..reply
    };
    assert!(opsfleet_cli::silences::render(&empty).ends_with("no silences\n"));
}

/// A hostile excerpt: clear screen, cursor home, carriage return over the line, a title-setting
/// OSC, an 8-bit CSI; plus control characters in the other host-provided fields.
const HOSTILE: &str = "ERROR \x1b[2J\x1b[H\rall good\x1b]0;owned\x07 \u{9b}31mred\x7f";

/// No character a terminal acts on, except the line ends the renderer puts there.
fn assert_inert(text: &str) {
    for (i, line) in text.split('\n').enumerate() {
        assert!(
            !line.chars().any(char::is_control),
            "line {i} has a control character: {line:?}"
        );
    }
}

#[test]
fn control_characters_from_hosts_render_inert() {
    let reply = IncidentsReply {
        responder: standby(),
        incidents: vec![IncidentView {
            host: "web-01".into(),
            path: "/var/log/\x1b[31mapp.log".into(),
            pattern: "err\ror".into(),
            count: 1,
            suppressed: 0,
            first_seen_unix_ms: NOW - 30_000,
            last_seen_unix_ms: NOW - 30_000,
            last_excerpt: HOSTILE.into(),
        }],
        next: Some("web-01\x1b[2J".into()),
    };
    let text = render::incidents(&reply, NOW);
    assert_inert(&text);
    assert!(
        text.contains("ERROR ␛[2J␛[H␍all good␛]0;owned␇ �31mred␡"),
        "{text}"
    );
    check("incidents-hostile.txt", &text);
    // JSON stays exact: serde escapes the controls and they read back unchanged.
    let json = serde_json::to_string_pretty(&reply).expect("json");
    assert!(
        json.contains(r"ERROR \u001b[2J\u001b[H\rall good"),
        "{json}"
    );
    let back: IncidentsReply = serde_json::from_str(&json).expect("parse");
    assert_eq!(back.incidents[0].last_excerpt, HOSTILE);

    let mut alerts = AlertsReply {
        responder: standby(),
        alerts: vec![],
        next: None,
    };
    alerts.alerts.push(AlertView {
        key: "k".into(),
        rule: "log\x1b[8m".into(),
        host: "web-01".into(),
        subject: "/var\r".into(),
        state: "firing".parse().unwrap(),
        since_unix_ms: NOW - 1_000,
        last_transition: "firing\x1b[0m".into(),
        last_transition_unix_ms: NOW - 1_000,
        notifications_sent: 0,
        detail: HOSTILE.into(),
        severity: Some(Severity::Critical),
        transitions: 1,
        silenced_by: vec![HOSTILE.into()],
        acked_by: Some(HOSTILE.into()),
        acked_at_unix_ms: Some(NOW),
        ack_comment: Some(HOSTILE.into()),
    });
    assert_inert(&render::alerts(&alerts, NOW));

    let backups = BackupsReply {
        responder: standby(),
        backups: vec![BackupView {
            host: "db-01".into(),
            job: "nightly\x1b[1A".into(),
            state: "failed".parse().unwrap(),
            last_success: None,
            last_failure: Some(BackupFailureView {
                run_id: "r-1".into(),
                reason: HOSTILE.into(),
                at_unix_ms: NOW - 600_000,
            }),
            running: None,
            archives_kept: 0,
            pruned_archives: 0,
            pruned_bytes: 0,
            last_restore: None,
            archives: Vec::new(),
            remote: Some(RemoteBackupView {
                destination: HOSTILE.into(),
                last_sync_failure: Some(RemoteSyncFailureView {
                    archive: HOSTILE.into(),
                    reason: HOSTILE.into(),
                    at_unix_ms: NOW - 60_000,
                }),
                ..RemoteBackupView::default()
            }),
            restore_test: Some(RestoreTestView {
                last: Some(RestoreTestResultView {
                    source: HOSTILE.into(),
                    reason: HOSTILE.into(),
                    at_unix_ms: NOW - 60_000,
                    ..RestoreTestResultView::default()
                }),
                ..RestoreTestView::default()
            }),
        }],
        next: None,
    };
    assert_inert(&render::backups(&backups, NOW));

    let mut h = host("web-01", "up", 1_000);
    h.unhealthy = vec!["probe\x1b[2J:failed".into()];
    h.modules = vec![module("log\r", ModuleState::Paused)];
    let hosts = HostsReply {
        responder: Responder {
            name: "green\x1b]0;x\x07".into(),
            ..standby()
        },
        now_unix_ms: NOW,
        hosts: vec![h],
        next: None,
    };
    assert_inert(&render::hosts(&hosts, NOW));
}

#[test]
fn service_config_history_table() {
    use opsfleet_cli::service_config::render_history;
    use opsfleet_proto::api::{ServiceConfigView, ServiceConfigsReply};
    let snap = |fp: &str, cause: &str, cmd: &str, ago_ms: i64| ServiceConfigView {
        host: "web-01".into(),
        service: "app".into(),
        file: "/etc/app/app.json".into(),
        fingerprint: fp.into(),
        previous_fingerprint: String::new(),
        size: 42,
        cause: cause.into(),
        command_id: cmd.into(),
        at_unix_ms: NOW - ago_ms,
    };
    let reply = ServiceConfigsReply {
        responder: standby(),
        snapshots: vec![
            snap(&"3fa2c1d0".repeat(8), "start", "", 7_200_000),
            snap(&"9b7e55aa".repeat(8), "applied", "0190aa-cmd-1", 3_600_000),
            snap(&"c0ffee00".repeat(8), "drift", "", 600_000),
            snap(&"3fa2c1d0".repeat(8), "rolled_back", "0190aa-cmd-2", 60_000),
            snap("", "drift", "", 5_000),
        ],
        next: None,
    };
    check("service-config-history.txt", &render_history(&reply, NOW));
    let empty = ServiceConfigsReply {
        responder: standby(),
        snapshots: Vec::new(),
        next: None,
    };
    check(
        "service-config-history-empty.txt",
        &render_history(&empty, NOW),
    );
}

#[test]
fn service_groups_and_failover() {
    use opsfleet_cli::groups::{render_failover, render_groups};
    use opsfleet_proto::api::{
        GroupFailoverView, GroupMemberView, GroupView, GroupsReply, Liveness, ProbeStatus,
        ServiceFailoverReply, ServiceRunState,
    };
    let member = |host: &str, role: &str, state, health, liveness, fitness: &str, why: &str| {
        GroupMemberView {
            host: host.into(),
            service: "router".into(),
            role: role.into(),
            state,
            health,
            liveness,
            maintenance: false,
            fitness: fitness.into(),
            why: why.into(),
        }
    };
    let failover =
        |from: &str, to: &str, phase: &str, drill: bool, ago_ms: i64| GroupFailoverView {
            service: "router".into(),
            from_host: from.into(),
            to_host: to.into(),
            reason: if drill {
                "drill requested by alice".into()
            } else {
                "active router on edge-01: service failed".into()
            },
            phase: phase.into(),
            drill,
            epoch: 41,
            requested_by: if drill { "alice".into() } else { String::new() },
            started_unix_ms: NOW - ago_ms,
            ended_unix_ms: NOW - ago_ms + 1800,
            took_ms: if phase == "completed" { 1830 } else { 0 },
            detail: if phase == "failed" {
                "edge-03 did not report the active role within 1m".into()
            } else {
                String::new()
            },
        };
    let reply = GroupsReply {
        responder: standby(),
        groups: vec![GroupView {
            name: "router".into(),
            members: vec![
                member(
                    "edge-01",
                    "standby",
                    ServiceRunState::Failed,
                    None,
                    Liveness::Up,
                    "unfit",
                    "service failed",
                ),
                member(
                    "edge-02",
                    "active",
                    ServiceRunState::Running,
                    Some(ProbeStatus::Ready),
                    Liveness::Up,
                    "healthy",
                    "",
                ),
                member(
                    "edge-03",
                    "",
                    ServiceRunState::Running,
                    None,
                    Liveness::Lost,
                    "unfit",
                    "host lost",
                ),
            ],
            failovers: vec![
                failover("", "edge-01", "completed", false, 7_200_000),
                failover("edge-01", "edge-03", "failed", false, 3_600_000),
                failover("edge-01", "edge-02", "completed", false, 600_000),
                failover("edge-02", "edge-01", "completed", true, 60_000),
            ],
        }],
    };
    check("service-groups.txt", &render_groups(&reply, NOW));
    let empty = GroupsReply {
        responder: standby(),
        groups: Vec::new(),
    };
    check("service-groups-empty.txt", &render_groups(&empty, NOW));
    let done = ServiceFailoverReply {
        responder: standby(),
        group: "router".into(),
        service: "router".into(),
        from: "edge-02".into(),
        to: "edge-01".into(),
        took_ms: 1830,
        drill: true,
        epoch: 41,
    };
    let mut text = render_failover(&done);
    text.push_str(&render_failover(&ServiceFailoverReply {
        from: String::new(),
        drill: false,
        ..done
    }));
    check("service-failover.txt", &text);
}
