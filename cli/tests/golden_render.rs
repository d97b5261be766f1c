//! Golden files for opsctl's human output. `UPDATE_GOLDEN=1 cargo test -p opsfleet-cli`
//! rewrites them; review the diff.

use opsfleet_cli::{audit, leader, render};
use opsfleet_proto::api::{
    CommandStepView, CommandView, CoordinatorView, DiskView, HostView, LeaderRole, ModuleView,
    Responder, SeqRange, StatusReply, Truncated,
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

fn host(name: &str, ago_ms: i64, seq: u64) -> HostView {
    HostView {
        host: name.into(),
        last_seen_unix_ms: NOW - ago_ms,
        last_seq: seq,
        incarnation: "01900000-0000-7000-8000-000000000001".into(),
        events: seq,
        gaps: vec![],
        disks: vec![DiskView {
            path: "/".into(),
            used_percent: 42.17,
            inodes_used_percent: 3.0,
            level: opsfleet_proto::api::DiskLevel::Ok,
            total_bytes: 100 << 30,
            avail_bytes: 58 << 30,
        }],
        modules: vec![
            ModuleView {
                name: "disk".into(),
                kind: "disk".into(),
                state: opsfleet_proto::api::ModuleState::Running,
            },
            ModuleView {
                name: "heartbeat".into(),
                kind: "heartbeat".into(),
                state: opsfleet_proto::api::ModuleState::Running,
            },
        ],
        truncated: Truncated::default(),
        maintenance: false,
    }
}

fn reply(hosts: Vec<HostView>) -> StatusReply {
    StatusReply {
        responder: Responder {
            name: "blue".into(),
            color: "blue".into(),
            role: opsfleet_proto::api::LeaderRole::Unknown,
            epoch: 0,
            applied_stream_seq: 1234,
            behind: 0,
        },
        digest: "ab".repeat(32),
        log_events: 1200,
        duplicates_dropped: 3,
        malformed_parked: 0,
        api_refused: Default::default(),
        refused_parked: 0,
        hosts,
        coordinators: vec![],
        next: None,
    }
}

#[test]
fn status_table() {
    let mut db = host("db-01", 12_500, 88);
    db.gaps = vec![SeqRange {
        first: 10,
        last: 12,
    }];
    db.disks[0].used_percent = 91.0;
    db.disks[0].level = opsfleet_proto::api::DiskLevel::Warn;
    let mut web2 = host("web-02", 400_000, 7);
    web2.truncated = Truncated {
        incarnations: 92,
        gap_ranges: 3,
        gap_seqs: 40,
        ..Default::default()
    };
    let r = reply(vec![db, host("web-01", 1_200, 1004), web2]);
    check("status.txt", &render::status(&r, NOW));
}

/// What the log knows of a coordinator, last heard from `ago_ms` ago.
fn logged(name: &str, role: LeaderRole, ago_ms: i64) -> CoordinatorView {
    CoordinatorView {
        name: name.into(),
        color: name.into(),
        role,
        epoch: 7,
        last_seen_unix_ms: NOW - ago_ms,
        history: vec![],
    }
}

#[test]
fn leader_shows_a_coordinator_that_stopped_answering() {
    let mut r = reply(vec![]);
    r.responder.name = "green".into();
    r.responder.color = "green".into();
    r.responder.role = LeaderRole::Active;
    r.coordinators = vec![
        logged("blue", LeaderRole::Active, 95_000),
        logged("green", LeaderRole::Active, 2_000),
    ];
    let rows = leader::rows(&[r.clone()], NOW);
    assert!(leader::has_active(&rows));
    check("leader-one-dead.txt", &leader::render(&rows, NOW));
    // Only the dead one is known to be active: nobody is.
    r.responder.role = LeaderRole::Standby;
    let rows = leader::rows(&[r], NOW);
    assert!(!leader::has_active(&rows));
    check("leader-none-active.txt", &leader::render(&rows, NOW));
}

#[test]
fn status_names_hosts_in_maintenance() {
    let mut web = host("web-01", 1_200, 40);
    web.maintenance = true;
    web.modules[0].state = opsfleet_proto::api::ModuleState::Paused;
    let hosts = vec![host("db-01", 900, 88), web];
    check(
        "status-maintenance.txt",
        &render::status(&reply(hosts), NOW),
    );
}

#[test]
fn status_with_no_hosts() {
    check("status-empty.txt", &render::status(&reply(vec![]), NOW));
}

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
fn control_characters_in_status_commands_and_leader_render_inert() {
    let mut h = host("web-01", 1_200, 4);
    h.disks[0].path = "/mnt/\x1b[2J".into();
    h.modules[0].name = "disk\r".into();
    let mut r = reply(vec![h]);
    r.responder.name = "blue\x1b[H".into();
    assert_inert(&render::status(&r, NOW));
    assert_inert(&leader::render(&leader::rows(&[r.clone()], NOW), NOW));

    let cmd = CommandView {
        id: "c1".into(),
        target: "web-01".into(),
        epoch: 3,
        issued_by: "alice".into(),
        issued_role: Some(opsfleet_proto::api::Role::Admin),
        action: Some(opsfleet_proto::api::ActionName::Restore),
        module: "backup\x1b[1A".into(),
        deadline_unix_ms: NOW,
        state: opsfleet_proto::api::CommandState::Failed,
        detail: "archive a.tar.gz is corrupt: \x1b[2J\rstopped at corrupt file x".into(),
        accepted_count: 1,
        history: vec![],
    };
    let text = render::commands(&[cmd], NOW);
    assert_inert(&text);
    check("commands-hostile.txt", &text);
}

fn command(id: &str, target: &str, by: &str, role: &str, state: &str) -> CommandView {
    let issued = NOW - 90_000;
    CommandView {
        id: id.into(),
        target: target.into(),
        epoch: 7,
        issued_by: by.into(),
        issued_role: role.parse().ok(),
        action: Some(opsfleet_proto::api::ActionName::ConfigApply),
        module: "disk".into(),
        deadline_unix_ms: issued + 60_000,
        state: state.parse().unwrap(),
        detail: if state == "completed" {
            "reconfigured".into()
        } else {
            String::new()
        },
        accepted_count: 1,
        history: vec![
            CommandStepView {
                state: opsfleet_proto::api::CommandState::Issued,
                at_unix_ms: issued,
                by: "blue".into(),
                detail: String::new(),
            },
            CommandStepView {
                state: state.parse().unwrap(),
                at_unix_ms: issued + 40,
                by: target.into(),
                detail: String::new(),
            },
        ],
    }
}

fn ledger() -> Vec<CommandView> {
    let mut pause = command("0190-c2", "web-01", "alice", "operator", "completed");
    pause.action = Some(opsfleet_proto::api::ActionName::Pause);
    pause.module = "log".into();
    pause.detail = "paused".into();
    vec![
        command("0190-c3", "db-01", "carol", "admin", "completed"),
        pause,
        command("0190-c1", "web-02", "ops (unverified)", "", "expired"),
    ]
}

#[test]
fn commands_table_shows_who_in_which_role() {
    check("commands.txt", &render::commands(&ledger(), NOW));
}

#[test]
fn audit_table_shows_who_in_which_role() {
    let entries = audit::entries(&ledger(), &audit::AuditFilter::default());
    check("audit.txt", &audit::render(&entries));
    let json = serde_json::to_value(&entries).unwrap();
    assert_eq!(json[0]["issued_role"], "admin", "{json}");
    assert_eq!(json[2]["issued_by"], "ops (unverified)", "{json}");
    assert_eq!(json[2]["issued_role"], "", "{json}");
}

/// What a command verb prints around its table: skipped and lost hosts up front, the progress
/// line counting outcomes by kind, the closing line.
#[test]
fn command_outcome_lines() {
    use opsfleet_cli::outcome;
    use opsfleet_proto::api::{CommandReply, IssuedCommand, Liveness, SkippedHost};
    let issued = |host: &str, liveness: Option<Liveness>| IssuedCommand {
        host: host.into(),
        command_id: format!("c-{host}"),
        liveness,
        last_seen_unix_ms: if liveness.is_some() { NOW - 40_000 } else { 0 },
    };
    let reply = CommandReply {
        responder: reply(vec![]).responder,
        epoch: 7,
        commands: vec![
            issued("web-01", None),
            issued("web-02", None),
            issued("web-03", None),
            issued("db-01", Some(Liveness::Lost)),
        ],
        deadline_unix_ms: NOW + 60_000,
        skipped: vec![SkippedHost {
            host: "cache-01".into(),
            reason: "no module log".into(),
        }],
    };
    let mut views = vec![
        command("c-web-01", "web-01", "alice", "operator", "completed"),
        command("c-web-02", "web-02", "alice", "operator", "rejected"),
        command("c-web-03", "web-03", "alice", "operator", "expired"),
        command("c-db-01", "db-01", "alice", "operator", "issued"),
    ];
    views[1].detail = "refused by policy.restore_targets: /srv is not allowed".into();
    views[2].detail = "deadline passed".into();
    let mut text = outcome::up_front(&reply).join("\n");
    text.push('\n');
    text.push_str(&outcome::progress(&views, 4));
    text.push('\n');
    let summary = outcome::summary("pause", &views, &reply, std::time::Duration::from_secs(30));
    text.push_str(&summary.unwrap_or_default());
    text.push('\n');
    check("command-outcome.txt", &text);
}

// `opsctl config history|show|diff`.

fn config_version(
    n: u8,
    at: i64,
    current: bool,
    interval: &str,
) -> opsfleet_proto::api::ConfigVersion {
    use opsfleet_proto::api::ConfigVersion;
    ConfigVersion {
        fingerprint: format!("{n}").repeat(64),
        first_seen_unix_ms: at,
        last_seen_unix_ms: at + 60_000,
        current,
        toml: format!(
            "type = \"disk\"\nname = \"disk\"\ninterval = \"{interval}\"\npaths = [\"/\"]\n"
        ),
    }
}

fn configs_reply() -> opsfleet_proto::api::ConfigsReply {
    opsfleet_proto::api::ConfigsReply {
        responder: Responder {
            name: "blue".into(),
            color: "blue".into(),
            role: opsfleet_proto::api::LeaderRole::Active,
            epoch: 3,
            applied_stream_seq: 77,
            behind: 0,
        },
        host: "web-01".into(),
        module: "disk".into(),
        current: "2".repeat(64),
        configs: vec![
            config_version(1, NOW, false, "1m"),
            config_version(2, NOW + 3_600_000, true, "30s"),
            config_version(3, NOW + 7_200_000, false, "0s\u{1b}[2J"),
        ],
    }
}

#[test]
fn config_history_marks_the_current_one() {
    check(
        "config-history.txt",
        &opsfleet_cli::configs::history(&configs_reply()),
    );
    let mut empty = configs_reply();
    empty.configs.clear();
    check(
        "config-history-empty.txt",
        &opsfleet_cli::configs::history(&empty),
    );
}

#[test]
fn config_show_and_diff() {
    let r = configs_reply();
    let current = opsfleet_cli::configs::current(&r).unwrap();
    check("config-show.txt", &opsfleet_cli::configs::show(&r, current));
    // Default pair: the newest other config (by last seen) against the current one.
    let (from, to) = opsfleet_cli::configs::pick_pair(&r, None, None).unwrap();
    assert_eq!(
        (from.fingerprint.as_str(), to.current),
        ("3".repeat(64).as_str(), true)
    );
    let (from, to) = opsfleet_cli::configs::pick_pair(&r, Some("11111111"), None).unwrap();
    check("config-diff.txt", &opsfleet_cli::configs::diff(from, to));
    let err = opsfleet_cli::configs::pick_pair(&r, Some("abcdef12"), None).unwrap_err();
    assert!(
        err.contains("no config of module disk on web-01 with fingerprint abcdef12"),
        "{err}"
    );
}
