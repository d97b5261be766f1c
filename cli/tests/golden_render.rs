//! Golden files for opsctl's human output. `UPDATE_GOLDEN=1 cargo test -p opsfleet-cli`
//! rewrites them; review the diff.

use opsfleet_cli::{audit, render};
use opsfleet_proto::api::{
    CommandStepView, CommandView, DiskView, HostView, ModuleView, Responder, SeqRange, StatusReply,
    Truncated,
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
    assert_inert(&render::coordinators(&[r.responder.clone()]));

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
