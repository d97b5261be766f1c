//! Golden pins of the query API's JSON: every request and reply type of `ops.api.*`, filled in
//! and left at its defaults, serialised and compared byte for byte with
//! `tests/golden/api_json.txt`, then read back and written again. Refactors of the types (typed
//! states, tagged command actions) must leave every line as it is.

use opsfleet_proto::api::*;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

const GOLDEN: &str = include_str!("golden/api_json.txt");

fn responder() -> Responder {
    Responder {
        name: "coord-blue".into(),
        color: "blue".into(),
        role: LeaderRole::Active,
        epoch: 7,
        applied_stream_seq: 1200,
        behind: 3,
    }
}

fn disk() -> DiskView {
    DiskView {
        path: "/var".into(),
        used_percent: 91.5,
        inodes_used_percent: 12.25,
        level: DiskLevel::Crit,
        total_bytes: 10_000,
        avail_bytes: 850,
    }
}

fn module(name: &str, kind: &str, state: ModuleState) -> ModuleView {
    ModuleView {
        name: name.into(),
        kind: kind.into(),
        state,
    }
}

fn truncated() -> Truncated {
    Truncated {
        incarnations: 1,
        gap_ranges: 2,
        gap_seqs: 3,
        modules: 4,
        disks: 5,
        health_checks: 6,
        log_files: 7,
        sentinels: 8,
        backup_jobs: 9,
        janitor_roots: 10,
        labels: 11,
        commands: 12,
        configs: 13,
        alerts: 14,
        services: 0,
    }
}

/// Each case: a name and the value's JSON, written by the same function that reads it back.
struct Cases(Vec<(String, String, Reread)>);

/// Reads a golden line back into the case's type and writes it again.
type Reread = Box<dyn Fn(&str) -> String>;

impl Cases {
    fn add<T: Serialize + DeserializeOwned + 'static>(&mut self, name: &str, value: T) {
        let json = serde_json::to_string(&value).expect("serialise");
        let reread = |text: &str| {
            let v: T = serde_json::from_str(text).expect("read back");
            serde_json::to_string(&v).expect("serialise again")
        };
        self.0.push((name.to_owned(), json, Box::new(reread)));
    }
}

fn cases() -> Cases {
    let mut c = Cases(Vec::new());
    c.add("responder", responder());
    c.add("status_request.default", StatusRequest::default());
    c.add(
        "status_request.full",
        StatusRequest {
            host: Some("web-01".into()),
            page: PageRequest {
                limit: Some(10),
                after: Some("db-01".into()),
            },
        },
    );
    c.add(
        "status_reply",
        StatusReply {
            responder: responder(),
            digest: "ab12".into(),
            log_events: 99,
            duplicates_dropped: 1,
            malformed_parked: 2,
            api_refused: ApiRefusals {
                foreign_reply: 1,
                role: 2,
                unidentified: 3,
            },
            refused_parked: 4,
            hosts: vec![
                HostView {
                    host: "web-01".into(),
                    last_seen_unix_ms: 1_790_000_000_000,
                    last_seq: 42,
                    incarnation: "0190e0a0-0000-7000-8000-000000000001".into(),
                    events: 40,
                    gaps: vec![SeqRange { first: 3, last: 4 }],
                    disks: vec![disk()],
                    modules: vec![
                        module("hb", "heartbeat", ModuleState::Running),
                        module("logs", "log", ModuleState::Paused),
                        module("d", "disk", ModuleState::Disabled),
                        module("b", "backup", ModuleState::Failed),
                        module("x", "health", ModuleState::Unknown),
                    ],
                    truncated: truncated(),
                    maintenance: false,
                },
                HostView {
                    host: "web-02".into(),
                    last_seen_unix_ms: -5,
                    last_seq: 0,
                    incarnation: String::new(),
                    events: 0,
                    gaps: vec![],
                    disks: vec![],
                    modules: vec![],
                    truncated: Truncated::default(),
                    maintenance: false,
                },
            ],
            coordinators: vec![CoordinatorView {
                name: "coord-green".into(),
                color: "green".into(),
                role: LeaderRole::Standby,
                epoch: 6,
                last_seen_unix_ms: 0,
                history: vec![
                    LeadershipChangeView {
                        epoch: 6,
                        role: LeaderRole::Active,
                        reason: "elected".into(),
                        at_unix_ms: 1_790_000_000_001,
                        requested_by: String::new(),
                        requested_role: None,
                    },
                    LeadershipChangeView {
                        epoch: 6,
                        role: LeaderRole::Unknown,
                        reason: "released".into(),
                        at_unix_ms: 1_790_000_000_002,
                        requested_by: "alice".into(),
                        requested_role: Some(Role::Operator),
                    },
                ],
            }],
            next: Some("web-02".into()),
        },
    );
    c.add("failover_request.default", FailoverRequest::default());
    c.add(
        "failover_request.full",
        FailoverRequest {
            to: Some("green".into()),
            requested_by: Some("alice".into()),
        },
    );
    c.add(
        "failover_reply",
        FailoverReply {
            responder: responder(),
            released_epoch: 7,
            to: Some("green".into()),
        },
    );
    c.add(
        "failover_reply.anyone",
        FailoverReply {
            responder: responder(),
            released_epoch: 7,
            to: None,
        },
    );
    for (name, req) in command_requests() {
        c.add(&format!("command_request.{name}"), req);
    }
    c.add(
        "command_reply",
        CommandReply {
            responder: responder(),
            epoch: 7,
            commands: vec![IssuedCommand {
                host: "web-01".into(),
                command_id: "0190e0a0-0000-7000-8000-0000000000aa".into(),
                liveness: None,
                last_seen_unix_ms: 0,
            }],
            deadline_unix_ms: 0,
            skipped: Vec::new(),
        },
    );
    c.add("commands_request.default", CommandsRequest::default());
    c.add(
        "commands_request.full",
        CommandsRequest {
            ids: vec!["a".into(), "b".into()],
            host: Some("web-01".into()),
            limit: Some(5),
        },
    );
    let states = [
        CommandState::Issued,
        CommandState::Accepted,
        CommandState::Completed,
        CommandState::Failed,
        CommandState::Rejected,
        CommandState::Expired,
        CommandState::Unknown,
    ];
    c.add(
        "commands_reply",
        CommandsReply {
            responder: responder(),
            commands: vec![CommandView {
                id: "0190e0a0-0000-7000-8000-0000000000aa".into(),
                target: "web-01".into(),
                epoch: 7,
                issued_by: "alice".into(),
                issued_role: Some(Role::Operator),
                action: Some(ActionName::Pause),
                module: "logs".into(),
                deadline_unix_ms: 1_790_000_030_000,
                state: CommandState::Completed,
                detail: "paused".into(),
                accepted_count: 1,
                history: states
                    .iter()
                    .enumerate()
                    .map(|(i, s)| CommandStepView {
                        state: *s,
                        at_unix_ms: 1_790_000_000_000 + i as i64,
                        by: "web-01".into(),
                        detail: format!("step {i}"),
                    })
                    .collect(),
            }],
        },
    );
    c.add("hosts_request.default", HostsRequest::default());
    c.add(
        "hosts_request.full",
        HostsRequest {
            host: Some("web-*".into()),
            state: Some("lost".into()),
            page: PageRequest {
                limit: Some(3),
                after: Some("web-01".into()),
            },
        },
    );
    c.add(
        "hosts_reply",
        HostsReply {
            responder: responder(),
            now_unix_ms: 1_790_000_000_500,
            hosts: ["up", "late", "lost", "unknown"]
                .iter()
                .enumerate()
                .map(|(i, liveness)| HostSummary {
                    host: format!("web-0{i}"),
                    liveness: liveness.parse().expect("liveness"),
                    last_seen_unix_ms: 1_790_000_000_000,
                    heartbeat_interval_ms: 5_000,
                    agent_version: "0.1.0".into(),
                    last_seq: 9,
                    events: 9,
                    missing_events: i as u64,
                    outbox_pending: 2,
                    worst_disk: (i == 0).then(disk),
                    modules: vec![module("hb", "heartbeat", ModuleState::Running)],
                    unhealthy: if i == 1 {
                        vec!["api:not_ready".into()]
                    } else {
                        vec![]
                    },
                    check_conditions: if i == 1 {
                        vec![CheckCondition {
                            check: "api".into(),
                            condition: CheckConditionKind::Slow,
                            detail: "p95 900ms > 250ms".into(),
                        }]
                    } else {
                        vec![]
                    },
                    incidents: 3,
                    failing_backups: 1,
                    down_services: vec![],
                    declared_lost: i == 2,
                    truncated: if i == 3 {
                        truncated()
                    } else {
                        Truncated::default()
                    },
                    maintenance: false,
                })
                .collect(),
            next: Some("web-03".into()),
        },
    );
    c.add("backups_request.default", BackupsRequest::default());
    c.add(
        "backups_request.full",
        BackupsRequest {
            host: Some("db-*".into()),
            job: Some("pg".into()),
            archives: false,
            page: PageRequest {
                limit: Some(2),
                after: Some("db-01/pg".into()),
            },
        },
    );
    c.add(
        "backups_reply",
        BackupsReply {
            responder: responder(),
            backups: ["ok", "failed", "running", "never"]
                .iter()
                .map(|state| BackupView {
                    host: "db-01".into(),
                    job: format!("job-{state}"),
                    state: state.parse().expect("backup state"),
                    last_success: (*state == "ok").then(|| BackupSuccessView {
                        run_id: "r1".into(),
                        archive: "pg-20261205T000000Z.tar.zst".into(),
                        size_bytes: 1024,
                        files: 3,
                        duration_ms: 250,
                        sha256: "ff00".into(),
                        at_unix_ms: 1_790_000_000_000,
                    }),
                    last_failure: (*state == "failed").then(|| BackupFailureView {
                        run_id: "r2".into(),
                        reason: "disk full".into(),
                        at_unix_ms: 1_790_000_000_001,
                    }),
                    running: (*state == "running").then(|| "r3".into()),
                    archives_kept: 4,
                    pruned_archives: 1,
                    pruned_bytes: 512,
                    last_restore: (*state == "ok").then(|| "a -> /srv/restore".into()),
                    archives: Vec::new(),
                    remote: (*state == "ok").then(|| RemoteBackupView {
                        destination: "path:/mnt/nas/pg".into(),
                        last_synced: Some(RemoteSyncView {
                            archive: "pg-20261205T000000Z.tar.zst".into(),
                            bytes: 1300,
                            at_unix_ms: 1_790_000_000_100,
                        }),
                        last_sync_failure: None,
                        remote_pruned: 1,
                        reconciled: Some(RemoteReconcileView {
                            mismatched: vec!["pg-20261204T000000Z.tar.zst".into()],
                            mismatched_count: 1,
                            remote_archives: 4,
                            at_unix_ms: 1_790_000_000_200,
                            ..RemoteReconcileView::default()
                        }),
                    }),
                    restore_test: (*state == "ok" || *state == "failed").then(|| RestoreTestView {
                        every_ms: Some(604_800_000),
                        module: "backup".into(),
                        declared_at_unix_ms: 1_789_000_000_000,
                        last: Some(RestoreTestResultView {
                            archive: "pg-20261205T000000Z.tar.zst".into(),
                            source: "path:/mnt/nas/pg".into(),
                            passed: *state == "ok",
                            files: 3,
                            bytes: 2048,
                            duration_ms: 900,
                            check: if *state == "ok" { "passed" } else { "failed" }.into(),
                            reason: if *state == "ok" {
                                String::new()
                            } else {
                                "the verify_check command failed: exited 1".into()
                            },
                            requested_by: "schedule".into(),
                            at_unix_ms: 1_790_000_000_300,
                        }),
                        last_passed_at_unix_ms: (*state == "ok").then_some(1_790_000_000_300),
                    }),
                })
                .collect(),
            next: None,
        },
    );
    c.add("incidents_request.default", IncidentsRequest::default());
    c.add(
        "incidents_request.full",
        IncidentsRequest {
            host: Some("web-*".into()),
            since_unix_ms: Some(-1),
            page: PageRequest {
                limit: Some(9),
                after: Some("web-01/var/log/app.log".into()),
            },
        },
    );
    c.add(
        "incidents_reply",
        IncidentsReply {
            responder: responder(),
            incidents: vec![IncidentView {
                host: "web-01".into(),
                path: "/var/log/app.log".into(),
                pattern: "traceback".into(),
                count: 5,
                suppressed: 1,
                first_seen_unix_ms: 0,
                last_seen_unix_ms: 1_790_000_000_000,
                last_excerpt: "Traceback (most recent call last): \"x\" é".into(),
            }],
            next: Some("web-01/var/log/app.log".into()),
        },
    );
    c.add("alerts_request.default", AlertsRequest::default());
    c.add(
        "alerts_request.full",
        AlertsRequest {
            host: Some("web-*".into()),
            state: Some("firing".into()),
            page: PageRequest {
                limit: Some(1),
                after: Some("k".into()),
            },
        },
    );
    c.add(
        "alerts_reply",
        AlertsReply {
            responder: responder(),
            alerts: ["pending", "firing", "resolved"]
                .iter()
                .map(|state| AlertView {
                    key: format!("disk_full/web-01/{state}"),
                    rule: "disk_full".into(),
                    host: "web-01".into(),
                    subject: "/var".into(),
                    state: state.parse().expect("alert state"),
                    since_unix_ms: 1_790_000_000_000,
                    last_transition: "pending -> firing".into(),
                    last_transition_unix_ms: 1_790_000_000_000,
                    notifications_sent: 2,
                    detail: "91% used".into(),
                    severity: Some(Severity::Critical),
                    transitions: 3,
                    silenced_by: vec![],
                    acked_by: None,
                    acked_at_unix_ms: None,
                    ack_comment: None,
                })
                .collect(),
            next: None,
        },
    );
    let silenced = AlertView {
        key: "disk_crit/web-01//data".into(),
        rule: "disk_crit".into(),
        host: "web-01".into(),
        subject: "/data".into(),
        state: AlertState::Firing,
        since_unix_ms: 1_790_000_000_000,
        last_transition: "pending -> firing".into(),
        last_transition_unix_ms: 1_790_000_000_000,
        notifications_sent: 0,
        detail: "/data is 97% full".into(),
        severity: Some(Severity::Critical),
        transitions: 2,
        silenced_by: vec!["0193a4c2-7d1e-7abc-9def-0123456789ab".into()],
        acked_by: Some("alice".into()),
        acked_at_unix_ms: Some(1_790_000_060_000),
        ack_comment: Some("swapping the disk".into()),
    };
    let silence = SilenceView {
        id: "0193a4c2-7d1e-7abc-9def-0123456789ab".into(),
        state: "active".into(),
        host: "web-*".into(),
        labels: vec!["env=prod".into()],
        rules: vec!["disk_crit".into()],
        starts_unix_ms: 1_790_000_000_000,
        ends_unix_ms: 1_790_007_200_000,
        reason: "disk swap".into(),
        created_by: "alice".into(),
        created_role: "operator".into(),
        expired_by: None,
        expired_unix_ms: None,
    };
    c.add(
        "silence_request_add",
        SilenceRequest::Add(SilenceAdd {
            host: Some("web-*".into()),
            labels: vec!["env=prod".into()],
            rules: vec!["disk_crit".into()],
            duration_ms: 7_200_000,
            reason: "disk swap".into(),
        }),
    );
    c.add(
        "silence_request_expire",
        SilenceRequest::Expire(SilenceExpire {
            id: "0193a4c2".into(),
        }),
    );
    c.add(
        "silence_reply",
        SilenceReply {
            responder: responder(),
            silence: silence.clone(),
        },
    );
    c.add("silences_request", SilencesRequest::default());
    c.add(
        "silences_reply",
        SilencesReply {
            responder: responder(),
            now_unix_ms: 1_790_000_100_000,
            silences: vec![
                silence.clone(),
                SilenceView {
                    state: "expired".into(),
                    expired_by: Some("bob".into()),
                    expired_unix_ms: Some(1_790_000_090_000),
                    ..silence
                },
            ],
            next: Some("0193a4c2-7d1e-7abc-9def-0123456789ab".into()),
        },
    );
    c.add(
        "alert_ack_request",
        AlertAckRequest {
            id: "disk_crit/web-01//data".into(),
            comment: Some("swapping the disk".into()),
        },
    );
    c.add(
        "alert_ack_reply",
        AlertAckReply {
            responder: responder(),
            alert: silenced,
        },
    );
    c.add("configs_request", ConfigsRequest::default());
    c.add(
        "configs_reply",
        ConfigsReply {
            responder: responder(),
            host: "web-01".into(),
            module: "disk".into(),
            current: "b".repeat(64),
            configs: vec![
                ConfigVersion {
                    fingerprint: "a".repeat(64),
                    first_seen_unix_ms: 1_790_000_000_000,
                    last_seen_unix_ms: 1_790_000_060_000,
                    current: false,
                    toml: "type = \"disk\"\n".into(),
                },
                ConfigVersion {
                    fingerprint: "b".repeat(64),
                    first_seen_unix_ms: 1_790_000_100_000,
                    last_seen_unix_ms: 1_790_000_100_000,
                    current: true,
                    toml: "type = \"disk\"\ninterval = \"30s\"\n".into(),
                },
            ],
        },
    );
    c.add(
        "backups_request.archives",
        BackupsRequest {
            host: Some("db-01".into()),
            job: Some("pg".into()),
            archives: true,
            page: PageRequest::default(),
        },
    );
    c.add(
        "services_request",
        ServicesRequest {
            host: Some("web-*".into()),
            state: Some("failed".into()),
            service: Some("app".into()),
            labels: [("role".to_owned(), "web".to_owned())]
                .into_iter()
                .collect(),
            page: PageRequest::default(),
        },
    );
    c.add(
        "services_reply",
        ServicesReply {
            responder: responder(),
            services: vec![ServiceView {
                host: "web-01".into(),
                service: "app".into(),
                manager: "process".into(),
                state: ServiceRunState::Failed,
                pid: 0,
                since_unix_ms: 1_790_000_000_000,
                restarts: 3,
                exit_detail: "exited with status 1".into(),
                instance: String::new(),
                version: "1.4.2".into(),
                health: Some(opsfleet_proto::api::ProbeStatus::Failed),
            }],
            next: Some("web-01/app".into()),
        },
    );
    c.add(
        "service_failover_request",
        opsfleet_proto::api::ServiceFailoverRequest {
            group: "router".into(),
            to: Some("edge-02".into()),
            drill: true,
            requested_by: Some("alice".into()),
        },
    );
    c.add(
        "service_failover_reply",
        opsfleet_proto::api::ServiceFailoverReply {
            responder: responder(),
            group: "router".into(),
            service: "router".into(),
            from: "edge-01".into(),
            to: "edge-02".into(),
            took_ms: 1830,
            drill: true,
            epoch: 7,
        },
    );
    c.add(
        "groups_request",
        opsfleet_proto::api::GroupsRequest {
            group: Some("router".into()),
        },
    );
    c.add(
        "groups_reply",
        opsfleet_proto::api::GroupsReply {
            responder: responder(),
            groups: vec![opsfleet_proto::api::GroupView {
                name: "router".into(),
                members: vec![opsfleet_proto::api::GroupMemberView {
                    host: "edge-01".into(),
                    service: "router".into(),
                    role: "active".into(),
                    state: opsfleet_proto::api::ServiceRunState::Running,
                    health: Some(opsfleet_proto::api::ProbeStatus::Ready),
                    liveness: opsfleet_proto::api::Liveness::Up,
                    maintenance: false,
                    fitness: "healthy".into(),
                    why: String::new(),
                }],
                failovers: vec![opsfleet_proto::api::GroupFailoverView {
                    service: "router".into(),
                    from_host: "edge-02".into(),
                    to_host: "edge-01".into(),
                    reason: "active router on edge-02: service failed".into(),
                    phase: "completed".into(),
                    drill: false,
                    epoch: 7,
                    requested_by: String::new(),
                    started_unix_ms: 1_790_000_000_000,
                    ended_unix_ms: 1_790_000_001_830,
                    took_ms: 1830,
                    detail: String::new(),
                }],
            }],
        },
    );
    c.add(
        "api_error",
        ApiError {
            responder: "coord-blue".into(),
            error: "refused".into(),
            needs_role: Some(Role::Admin),
        },
    );
    c.add(
        "api_error.plain",
        ApiError {
            responder: "coord-blue".into(),
            error: "bad request".into(),
            needs_role: None,
        },
    );
    c
}

/// One request per action, with the fields that action takes.
fn command_requests() -> Vec<(&'static str, CommandRequest)> {
    let req = |action: CommandAction| CommandRequest {
        action,
        targets: Targets {
            hosts: vec!["web-01".into(), "web-02".into()],
            ..Targets::default()
        },
        deadline_ms: 30_000,
        issued_by: "alice".into(),
    };
    let logs = || "logs".to_owned();
    let mut labels = BTreeMap::new();
    labels.insert("role".to_owned(), "web".to_owned());
    labels.insert("zone".to_owned(), "a".to_owned());
    let archive = || "pg-20261205T000000Z.tar.zst".to_owned();
    vec![
        ("pause", req(CommandAction::Pause { module: logs() })),
        ("resume", req(CommandAction::Resume { module: logs() })),
        ("disable", req(CommandAction::Disable { module: logs() })),
        ("enable", req(CommandAction::Enable { module: logs() })),
        (
            "noop.all",
            CommandRequest {
                targets: Targets {
                    all: true,
                    ..Targets::default()
                },
                ..req(CommandAction::Noop)
            },
        ),
        (
            "drain.labels",
            CommandRequest {
                targets: Targets {
                    labels,
                    ..Targets::default()
                },
                ..req(CommandAction::Drain)
            },
        ),
        ("undrain", req(CommandAction::Undrain)),
        ("resume_all", req(CommandAction::ResumeAll)),
        (
            "backup_run",
            req(CommandAction::BackupRun {
                module: None,
                job: None,
            }),
        ),
        (
            "backup_run.job",
            req(CommandAction::BackupRun {
                module: Some("backups".into()),
                job: Some("pg".into()),
            }),
        ),
        (
            "restore_test",
            req(CommandAction::RestoreTest {
                module: None,
                job: "pg".into(),
            }),
        ),
        (
            "restore",
            req(CommandAction::Restore {
                module: Some("backups".into()),
                job: Some("pg".into()),
                archive: archive(),
                target: "/srv/restore".into(),
            }),
        ),
        (
            "restore.inferred",
            req(CommandAction::Restore {
                module: None,
                job: None,
                archive: archive(),
                target: "/srv/restore".into(),
            }),
        ),
        (
            "config_apply",
            req(CommandAction::ConfigApply {
                module: logs(),
                config_toml: "type = \"disk\"\nname = \"d\"\n".into(),
                fingerprint: None,
            }),
        ),
        (
            "config_rollback",
            req(CommandAction::ConfigRollback {
                module: logs(),
                fingerprint: "sha256:ab12".into(),
            }),
        ),
    ]
}

#[test]
fn every_api_json_is_byte_identical_to_its_golden_line() {
    let golden: BTreeMap<&str, &str> = GOLDEN
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split_once(' ').expect("`name json` line"))
        .collect();
    let cases = cases();
    let mut problems = Vec::new();
    for (name, json, reread) in &cases.0 {
        match golden.get(name.as_str()) {
            None => problems.push(format!("{name}: no golden line; now {json}")),
            Some(want) if want != json => {
                problems.push(format!("{name}:\n  golden {want}\n  now    {json}"))
            }
            Some(want) => {
                let again = reread(want);
                if again != *want {
                    problems.push(format!("{name}: reads back as {again}"));
                }
            }
        }
    }
    for name in golden.keys() {
        if !cases.0.iter().any(|(n, _, _)| n == name) {
            problems.push(format!("{name}: golden line without a case"));
        }
    }
    if std::env::var_os("OPSFLEET_PRINT_GOLDEN").is_some() {
        for (name, json, _) in &cases.0 {
            println!("{name} {json}");
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_unverified_issued_role_stays_an_empty_string() {
    let line = GOLDEN
        .lines()
        .find_map(|l| l.strip_prefix("commands_reply "))
        .expect("golden commands_reply");
    let mut reply: CommandsReply = serde_json::from_str(line).expect("golden reads");
    reply.commands[0].issued_role = None;
    let json = serde_json::to_string(&reply).expect("serialise");
    assert_eq!(json, line.replace("\"operator\"", "\"\""));
    let back: CommandsReply = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back.commands[0].issued_role, None);
    // A reply from before the field existed reads as unverified too.
    let older = json.replace("\"issued_role\":\"\",", "");
    let older: CommandsReply = serde_json::from_str(&older).expect("older reply");
    assert_eq!(older.commands[0].issued_role, None);
    // A command known only from its lifecycle (its issue event is not in the log) has no
    // action: written as an empty string, as before actions were typed.
    reply.commands[0].action = None;
    let json = serde_json::to_string(&reply).expect("serialise");
    assert!(json.contains(r#""action":"","#), "{json}");
    let back: CommandsReply = serde_json::from_str(&json).expect("reads back");
    assert_eq!(back.commands[0].action, None);
}

#[test]
fn a_command_request_that_cannot_be_valid_is_refused_with_its_reason() {
    let base = r#""hosts":["web-01"],"deadline_ms":1000,"issued_by":"alice""#;
    for (fields, reason) in [
        (r#""action":"reboot""#, "unknown action \"reboot\""),
        (r#""action":"pause""#, "action pause needs a module name"),
        (
            r#""action":"resume","module":"""#,
            "action resume needs a module name",
        ),
        (
            r#""action":"restore","target":"/srv""#,
            "restore needs --archive",
        ),
        (
            r#""action":"restore","archive":"  ","target":"/srv""#,
            "restore needs --archive",
        ),
        (
            r#""action":"restore","archive":"a.tar.zst""#,
            "restore needs --target",
        ),
        (
            r#""action":"config_apply","module":"d""#,
            "config_apply needs a config (--file)",
        ),
        (
            r#""action":"config_apply","config_toml":"x = 1""#,
            "action config_apply needs a module name",
        ),
        (
            r#""action":"config_rollback","module":"d","fingerprint":"""#,
            "config_rollback needs --to <fingerprint>",
        ),
    ] {
        let json = format!("{{{fields},{base}}}");
        let lenient: CommandRequestJson = serde_json::from_str(&json).expect("lenient form");
        let err = CommandRequest::try_from(lenient).expect_err(&json);
        assert!(err.to_string().starts_with(reason), "{json}: {err}");
        let strict = serde_json::from_str::<CommandRequest>(&json).expect_err(&json);
        assert!(strict.to_string().contains(reason), "{json}: {strict}");
    }
    // Values are kept as sent: the coordinator trims them where it builds the command.
    let json = format!(r#"{{"action":"restore","archive":" a ","target":"/srv\n",{base}}}"#);
    let req: CommandRequest = serde_json::from_str(&json).expect("valid");
    assert_eq!(
        req.action,
        CommandAction::Restore {
            module: None,
            job: None,
            archive: " a ".into(),
            target: "/srv\n".into()
        }
    );
    // Fields an action does not take are not written back.
    let json = format!(r#"{{"action":"noop","module":"m","job":"j",{base}}}"#);
    let req: CommandRequest = serde_json::from_str(&json).expect("valid");
    assert_eq!(
        serde_json::to_string(&req).expect("serialise"),
        format!("{{\"action\":\"noop\",{base},\"all\":false}}").replace(
            r#""hosts":["web-01"],"deadline_ms":1000,"issued_by":"alice","all":false"#,
            r#""hosts":["web-01"],"all":false,"deadline_ms":1000,"issued_by":"alice""#
        )
    );
}
