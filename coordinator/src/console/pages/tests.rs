//! Rendering: host-provided text is escaped, the fleet is paged by name, and one page of a
//! 10,000-host fleet renders fast.

use std::time::{Duration, Instant};

use opsfleet_proto::api::{IncidentsRequest, LeaderRole, PageRequest, Responder, Role};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::EventEnvelope;
use uuid::Uuid;

use super::*;
use crate::api::View;
use crate::console::handlers::fleet_page;
use crate::projection::Fleet;

const T0: i64 = 1_790_000_000_000;

fn fold(fleet: &mut Fleet, host: &str, module: &str, seq: u64, body: Body) {
    let ev = EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq,
        time_unix_ms: T0,
        module: module.to_owned(),
        incarnation: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        body,
    };
    assert!(fleet.apply(&ev).is_accepted());
}

fn heartbeat(fleet: &mut Fleet, host: &str, version: &str) {
    let body = Body::Heartbeat(pb::Heartbeat {
        agent_version: version.into(),
        interval_ms: 10_000,
        modules: vec![pb::ModuleStatus {
            name: "heartbeat".into(),
            kind: "heartbeat".into(),
            state: pb::ModuleRunState::Running as i32,
            expected_interval_ms: 10_000,
        }],
        ..Default::default()
    });
    fold(fleet, host, "heartbeat", 1, body);
}

fn responder() -> Responder {
    Responder {
        name: "blue".into(),
        color: "blue".into(),
        role: LeaderRole::Standby,
        epoch: 7,
        applied_stream_seq: 42,
        behind: 0,
    }
}

fn frame(leader: &Responder) -> Frame<'_> {
    Frame {
        operator: "vic",
        role: Role::Viewer,
        csrf: "tok",
        leader,
    }
}

#[test]
fn host_provided_text_is_escaped_on_every_page_that_shows_it() {
    let mut fleet_state = Fleet::new();
    heartbeat(&mut fleet_state, "web-01", "<script>alert('v')</script>");
    let body = Body::LogMatch(pb::LogMatch {
        path: "/var/log/<b>app.log".into(),
        pattern: "error".into(),
        excerpt: "boom <script>alert(1)</script>".into(),
        lines: 1,
        ..Default::default()
    });
    fold(&mut fleet_state, "web-01", "log", 2, body);
    let leader = responder();
    let f = frame(&leader);
    let req = IncidentsRequest {
        page: PageRequest::first(None),
        ..Default::default()
    };
    let reply = req.answer(&fleet_state, leader.clone(), T0);
    let html = incidents(&f, &reply.incidents, None);
    assert!(
        html.contains("boom &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("/var/log/&lt;b&gt;app.log"), "{html}");
    let (hosts, _) = fleet_page(&fleet_state, &FleetQuery::default(), T0);
    let summary = &hosts[0];
    let page = HostPage {
        summary,
        disks: &[],
        services: &[],
        alerts: &[],
        commands: &[],
    };
    let html = host(&f, &page);
    assert!(
        html.contains("&lt;script&gt;alert(&#39;v&#39;)&lt;/script&gt;"),
        "{html}"
    );
    for html in [
        html,
        incidents(&f, &reply.incidents, None),
        fleet(&f, &FleetQuery::default(), &hosts, None),
    ] {
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("data-test=\"leader-epoch\">7<"), "{html}");
        assert!(
            !html.contains("style=") && !html.contains("onclick"),
            "no inline style or script"
        );
    }
}

#[test]
fn ten_thousand_hosts_page_by_name_and_render_fast() {
    let mut fleet_state = Fleet::new();
    for i in 0..10_000 {
        heartbeat(&mut fleet_state, &format!("host-{i:05}"), "0.1.0");
    }
    let leader = responder();
    let f = frame(&leader);
    let started = Instant::now();
    let q = FleetQuery::default();
    let (hosts, next) = fleet_page(&fleet_state, &q, T0 + 1000);
    let html = fleet(&f, &q, &hosts, next.as_deref());
    let first = started.elapsed();
    assert_eq!(hosts.len(), FLEET_PAGE);
    assert_eq!(html.matches("data-test=\"host-row\"").count(), FLEET_PAGE);
    assert_eq!(next.as_deref(), Some("host-00099"));
    assert!(
        html.contains("href=\"/console/fleet?after=host-00099&amp;host=&amp;state=\""),
        "next link"
    );
    // The last page, by cursor, and a glob filter.
    let started = Instant::now();
    let q = FleetQuery {
        after: Some("host-09949".into()),
        ..Default::default()
    };
    let (hosts, next) = fleet_page(&fleet_state, &q, T0 + 1000);
    let _ = fleet(&f, &q, &hosts, next.as_deref());
    let last = started.elapsed();
    assert_eq!((hosts.len(), next), (50, None));
    assert_eq!(hosts[0].host, "host-09950");
    let q = FleetQuery {
        host: Some("host-0001*".into()),
        state: Some("up".into()),
        ..Default::default()
    };
    let (hosts, _) = fleet_page(&fleet_state, &q, T0 + 1000);
    assert_eq!(hosts.len(), 10);
    let q = FleetQuery {
        state: Some("lost".into()),
        ..Default::default()
    };
    assert!(fleet_page(&fleet_state, &q, T0 + 1000).0.is_empty());
    eprintln!("fleet page of 10,000 hosts: first page {first:?}, last page {last:?}");
    // Generous: a debug build on a loaded 2-core machine.
    assert!(
        first < Duration::from_secs(2) && last < Duration::from_secs(2),
        "{first:?} {last:?}"
    );
}
