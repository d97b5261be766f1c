//! Golden files for opsctl's human output. `UPDATE_GOLDEN=1 cargo test -p opsfleet-cli`
//! rewrites them; review the diff.

use opsfleet_cli::render;
use opsfleet_proto::api::{
    DiskView, HostView, ModuleView, Responder, SeqRange, StatusReply, Truncated,
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
            level: "ok".into(),
            total_bytes: 100 << 30,
            avail_bytes: 58 << 30,
        }],
        modules: vec![
            ModuleView {
                name: "disk".into(),
                kind: "disk".into(),
                state: "running".into(),
            },
            ModuleView {
                name: "heartbeat".into(),
                kind: "heartbeat".into(),
                state: "running".into(),
            },
        ],
        truncated: Truncated::default(),
    }
}

fn reply(hosts: Vec<HostView>) -> StatusReply {
    StatusReply {
        responder: Responder {
            name: "blue".into(),
            color: "blue".into(),
            role: "unknown".into(),
            epoch: 0,
            applied_stream_seq: 1234,
            behind: 0,
        },
        digest: "ab".repeat(32),
        log_events: 1200,
        duplicates_dropped: 3,
        malformed_parked: 0,
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
    db.disks[0].level = "warn".into();
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
fn status_with_no_hosts() {
    check("status-empty.txt", &render::status(&reply(vec![]), NOW));
}
