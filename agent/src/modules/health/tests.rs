//! Health module through real sockets and processes: transitions emit events, steady states
//! do not, and `health()` reports every check.

use std::time::Duration;

use opsfleet_proto::pb;

use super::*;
use crate::config::{HealthConfig, ProbeConfig, ProbeType};

fn probe(name: &str, ty: ProbeType) -> ProbeConfig {
    ProbeConfig {
        timeout: Duration::from_millis(300),
        failed_after: 2,
        ..ProbeConfig::new(name, ty)
    }
}

fn ctx() -> ModuleCtx {
    ModuleCtx::empty()
}

fn checks(bodies: &[pb::event::Body]) -> Vec<(String, i32, i32)> {
    bodies
        .iter()
        .filter_map(|b| match b {
            pb::event::Body::Health(h) => Some((h.check.clone(), h.previous, h.status)),
            _ => None,
        })
        .collect()
}

const STARTING: i32 = pb::HealthStatus::Starting as i32;
const READY: i32 = pb::HealthStatus::Ready as i32;
const DEGRADED: i32 = pb::HealthStatus::Degraded as i32;
const FAILED: i32 = pb::HealthStatus::Failed as i32;

#[tokio::test]
async fn tcp_check_goes_ready_degraded_failed_with_events_only_on_transitions() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let mut p = probe("db", ProbeType::Tcp);
    p.address = Some(addr);
    let cfg = HealthConfig {
        name: None,
        interval: Duration::from_secs(1),
        probes: vec![p],
    };
    let mut m = HealthModule::new(&cfg);
    assert_eq!(m.health()[0].status, STARTING);
    let first = m.run_once(&ctx()).await.expect("run");
    assert_eq!(checks(&first), [("db".to_owned(), STARTING, READY)]);
    let steady = m.run_once(&ctx()).await.expect("run");
    assert!(
        steady.is_empty(),
        "no event without a transition: {steady:?}"
    );
    drop(listener);
    let down = m.run_once(&ctx()).await.expect("run");
    assert_eq!(checks(&down), [("db".to_owned(), READY, DEGRADED)]);
    let pb::event::Body::Health(h) = &down[0] else {
        panic!("{down:?}")
    };
    assert_eq!(h.probe, "tcp");
    assert_eq!(h.consecutive_failures, 1);
    assert!(h.detail.contains("connect"), "{}", h.detail);
    let failed = m.run_once(&ctx()).await.expect("run");
    assert_eq!(checks(&failed), [("db".to_owned(), DEGRADED, FAILED)]);
    assert!(m.run_once(&ctx()).await.expect("run").is_empty());
    assert_eq!(m.health()[0].status, FAILED);
}

#[tokio::test]
async fn command_checks_run_concurrently_and_report_separately() {
    let mut ok = probe("ok", ProbeType::Command);
    ok.argv = Some(vec!["sh".into(), "-c".into(), "exit 0".into()]);
    let mut bad = probe("bad", ProbeType::Command);
    bad.argv = Some(vec!["sh".into(), "-c".into(), "exit 3".into()]);
    let mut slow = probe("slow", ProbeType::Command);
    slow.argv = Some(vec!["sleep".into(), "10".into()]);
    slow.timeout = Duration::from_millis(200);
    let cfg = HealthConfig {
        name: None,
        interval: Duration::from_secs(1),
        probes: vec![ok, bad, slow],
    };
    let mut m = HealthModule::new(&cfg);
    let started = std::time::Instant::now();
    let bodies = m.run_once(&ctx()).await.expect("run");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the slow command was killed"
    );
    assert_eq!(
        checks(&bodies),
        [
            ("ok".to_owned(), STARTING, READY),
            ("bad".to_owned(), STARTING, DEGRADED),
            ("slow".to_owned(), STARTING, DEGRADED),
        ]
    );
    let states: Vec<(String, i32)> = m
        .health()
        .into_iter()
        .map(|h| (h.check, h.status))
        .collect();
    assert_eq!(
        states,
        [
            ("ok".into(), READY),
            ("bad".into(), DEGRADED),
            ("slow".into(), DEGRADED)
        ]
    );
}

#[tokio::test]
async fn start_period_holds_starting_for_a_service_still_booting() {
    let mut p = probe("boot", ProbeType::Command);
    p.argv = Some(vec!["false".into()]);
    p.start_period = Duration::from_secs(60);
    let cfg = HealthConfig {
        name: None,
        interval: Duration::from_secs(1),
        probes: vec![p],
    };
    let mut m = HealthModule::new(&cfg);
    for _ in 0..3 {
        assert!(m.run_once(&ctx()).await.expect("run").is_empty());
    }
    assert_eq!(m.health()[0].status, STARTING);
}

#[test]
fn board_flattens_in_module_order_and_forgets_empty() {
    let b = HealthBoard::default();
    let s = |c: &str| pb::HealthSummary {
        check: c.into(),
        status: READY,
        ..Default::default()
    };
    b.set("web", vec![s("b")]);
    b.set("api", vec![s("a1"), s("a2")]);
    let names: Vec<String> = b.snapshot().into_iter().map(|h| h.check).collect();
    assert_eq!(names, ["a1", "a2", "b"]);
    b.set("api", Vec::new());
    assert_eq!(b.snapshot().len(), 1);
}

#[tokio::test]
async fn heartbeats_carry_every_check_through_the_real_runner() {
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let text = format!(
        "host = \"web-01\"\n\
         [[modules]]\ntype = \"health\"\ninterval = \"1s\"\n\
         [[modules.probes]]\nname = \"db\"\ntype = \"tcp\"\naddress = \"{addr}\"\ntimeout = \"1s\"\n\
         [[modules]]\ntype = \"heartbeat\"\ninterval = \"30ms\"\n"
    );
    let cfg = crate::config::parse_str(&text).expect("config");
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(
        crate::outbox::Outbox::open(&dir.path().join("agent.sled"), "web-01", 1000).expect("open"),
    );
    let runner = crate::runner::Runner::from_config(
        "web-01",
        outbox.clone(),
        Arc::new(tokio::sync::Notify::new()),
        &cfg,
    );
    let board = runner.health();
    let slots = runner.status();
    let hb_runs = || {
        slots
            .slots()
            .iter()
            .find(|s| s.name == "heartbeat")
            .map_or(0, |s| s.runs)
    };
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(runner.run(cancel.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while board.snapshot().first().map(|s| s.status) != Some(READY) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe never became ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two heartbeats after readiness carry it.
    let after = hb_runs() + 2;
    while hb_runs() < after {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no heartbeat after readiness"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    task.await.expect("runner");
    let evs = outbox.pending_events().expect("events");
    let transitions = evs
        .iter()
        .filter(|e| matches!(e.body, pb::event::Body::Health(_)))
        .count();
    assert_eq!(transitions, 1, "one starting -> ready event, then silence");
    let last_hb = evs
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            pb::event::Body::Heartbeat(h) => Some(h.clone()),
            _ => None,
        })
        .expect("a heartbeat");
    assert_eq!(
        last_hb.health,
        [pb::HealthSummary {
            check: "db".into(),
            status: READY,
            ..Default::default()
        }]
    );
    drop(listener);
}
