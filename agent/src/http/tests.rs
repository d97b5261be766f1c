//! The HTTP endpoint on a real port-0 listener, driven by a real HTTP client. The admin
//! routes are in `admin_tests`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::Method;
use metrics_exporter_prometheus::PrometheusHandle;

use super::*;
use crate::modules::health::probe::request;
use crate::outbox::NewEvent;

fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| crate::telemetry::install().expect("first recorder in this test binary"))
        .clone()
}

struct Server {
    base: String,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), HttpError>>,
}

impl Server {
    async fn start(state: HttpState) -> Server {
        let (listener, addr) = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let cancel = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state, cancel.clone()));
        Server {
            base: format!("http://{addr}"),
            cancel,
            task,
        }
    }

    async fn call(&self, method: Method, path: &str, body: &str) -> (u16, String) {
        let (code, bytes) = request(&format!("{}{path}", self.base), method, body, true)
            .await
            .expect("request");
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.call(Method::GET, path, "").await
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.expect("join").expect("served");
    }
}

fn state(outbox: Arc<Outbox>, max: u64, nats: Arc<AtomicBool>) -> HttpState {
    HttpState {
        outbox,
        max_events: max,
        nats_connected: Arc::new(move || nats.load(Ordering::SeqCst)),
        metrics: Some(recorder()),
        admin: None,
    }
}

fn event() -> NewEvent {
    NewEvent {
        module: "hb".into(),
        time_unix_ms: 1,
        body: opsfleet_proto::pb::event::Body::Heartbeat(Default::default()),
    }
}

#[tokio::test]
async fn healthz_readyz_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Arc::new(Outbox::open(&dir.path().join("agent.sled"), "web-01", 2).expect("open"));
    let nats = Arc::new(AtomicBool::new(true));
    let srv = Server::start(state(outbox.clone(), 2, nats.clone())).await;

    assert_eq!(srv.get("/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(srv.get("/readyz").await, (200, "ready\n".to_owned()));

    nats.store(false, Ordering::SeqCst);
    let (code, body) = srv.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("nats: not connected"), "{body}");

    nats.store(true, Ordering::SeqCst);
    outbox.append(vec![event(), event()]).await.expect("append");
    let (code, body) = srv.get("/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("outbox: full (2/2 events)"), "{body}");
    // Still alive while not ready.
    assert_eq!(srv.get("/healthz").await.0, 200);

    crate::telemetry::module_run("hb", Duration::from_millis(3), false);
    crate::telemetry::publish_latency(Duration::from_millis(7));
    crate::telemetry::events_dropped(4);
    let (code, body) = srv.get("/metrics").await;
    assert_eq!(code, 200);
    assert!(body.contains("opsfleet_agent_outbox_depth 2"), "{body}");
    assert!(
        body.contains("opsfleet_agent_module_run_seconds_bucket{module=\"hb\""),
        "{body}"
    );
    assert!(
        body.contains("opsfleet_agent_module_errors_total{module=\"hb\"}"),
        "{body}"
    );
    assert!(
        body.contains("opsfleet_agent_publish_latency_seconds_bucket"),
        "{body}"
    );
    assert!(
        body.contains("opsfleet_agent_events_dropped_total"),
        "{body}"
    );
    // No admin routes on TCP unless asked.
    assert_eq!(srv.call(Method::POST, "/modules/hb/pause", "").await.0, 404);
    srv.stop().await;
}

#[test]
fn readiness_reasons() {
    assert!(not_ready_reasons(true, 0, 10).is_empty());
    assert_eq!(not_ready_reasons(false, 10, 10).len(), 2);
    assert_eq!(
        not_ready_reasons(true, 11, 10),
        ["outbox: full (11/10 events)"]
    );
}
