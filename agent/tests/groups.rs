//! `service_role` and `traffic_switch` end to end against a real nats-server (skipped when
//! `nats-server` is not on PATH): the real runner and command handler, a `process` service
//! with `[modules.role]` (a file) and `[modules.traffic]`; the role file, the heartbeat's
//! group fields, the persisted role across an agent restart, and every refusal and failure.

mod common;

use common::start_server;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use opsfleet_agent::commands::CommandHandler;
use opsfleet_agent::config::{self, AgentConfig};
use opsfleet_agent::{Outbox, Runner};
use opsfleet_bus::{ConnectMode, NatsConfig, TopologyConfig};
use opsfleet_proto::pb::command::Action;
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::{pb, subjects};
use prost::Message;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HOST: &str = "edge-01";

fn agent_config(dir: &Path, url: &str) -> AgentConfig {
    let text = format!(
        r#"
host = "{HOST}"
data_dir = "{data}"
[nats]
urls = ["{url}"]
[[modules]]
type = "heartbeat"
interval = "1s"
[[modules]]
type = "service"
name = "router"
argv = ["sleep", "600"]
stop_grace = "1s"
remote = ["role", "switch"]
[modules.role]
group = "edge"
file = "{role}"
[modules.traffic]
slot_group = "web"
switch = ["sh", "-c", "echo $0 > {live}", "{{service}}"]
[[modules]]
type = "service"
name = "green"
argv = ["sleep", "600"]
stop_grace = "1s"
remote = ["switch"]
[modules.traffic]
slot_group = "web"
switch = ["sh", "-c", "echo no upstream named $0 >&2; exit 3", "{{service}}"]
[[modules]]
type = "service"
name = "slow"
argv = ["sleep", "600"]
stop_grace = "1s"
remote = ["switch"]
[modules.traffic]
slot_group = "slow"
switch = ["sleep", "30"]
switch_timeout = "300ms"
"#,
        data = dir.join("data").display(),
        role = dir.join("role").display(),
        live = dir.join("live").display(),
    );
    config::parse_str(&text).expect("valid config")
}

async fn jetstream_for(url: &str) -> jetstream::Context {
    let nats = NatsConfig {
        urls: vec![url.to_owned()],
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let client = opsfleet_bus::connect(&nats, "test", ConnectMode::FailFast)
        .await
        .expect("connects");
    let js = opsfleet_bus::jetstream(client, &nats);
    opsfleet_bus::ensure_topology(&js, &TopologyConfig::default())
        .await
        .expect("topology");
    js
}

struct Agent {
    outbox: Arc<Outbox>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    async fn start(cfg: &AgentConfig, js: &jetstream::Context) -> Agent {
        let outbox = Arc::new(Outbox::open(&cfg.sled_path(), HOST, 10_000).expect("outbox"));
        let notify = Arc::new(Notify::new());
        let runner = Runner::from_config(HOST, outbox.clone(), notify.clone(), cfg);
        let handler = CommandHandler::new(
            outbox.clone(),
            notify,
            runner.control(),
            runner.status(),
            Arc::new(cfg.clone()),
        )
        .expect("handler");
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(runner.run(cancel.clone())),
            tokio::spawn(handler.run(js.clone(), cancel.clone())),
        ];
        Agent {
            outbox,
            cancel,
            tasks,
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            t.await.expect("task ends cleanly");
        }
    }

    fn bodies(&self) -> Vec<Body> {
        let events = self.outbox.pending_events().expect("events");
        events.into_iter().map(|e| e.body).collect()
    }

    /// Polls until `find` finds something in the outbox bodies (generous bound).
    async fn wait_for<T>(&self, what: &str, find: impl Fn(&[Body]) -> Option<T>) -> T {
        for _ in 0..600 {
            if let Some(found) = find(&self.bodies()) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.bodies());
    }
}

fn command(id: &str, epoch: u64, action: Action) -> pb::Command {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    pb::Command {
        id: id.to_owned(),
        epoch,
        issued_by: "alice".to_owned(),
        target: HOST.to_owned(),
        deadline_unix_ms: i64::try_from(now.as_millis()).expect("ms fit") + 60_000,
        issued_unix_ms: 0,
        action: Some(action),
    }
}

async fn send(js: &jetstream::Context, cmd: &pb::Command) {
    let msg = PublishMessage::build()
        .payload(cmd.encode_to_vec().into())
        .message_id(&cmd.id);
    js.send_publish(subjects::command_subject(HOST), msg)
        .await
        .expect("publish")
        .await
        .expect("pub ack");
}

fn role(role: &str, group: &str) -> Action {
    Action::ServiceRole(pb::ServiceRole {
        service: "router".into(),
        role: role.into(),
        group: group.into(),
    })
}

fn switch(service: &str) -> Action {
    Action::TrafficSwitch(pb::TrafficSwitch {
        service: service.into(),
    })
}

/// The outcome of command `id`: Ok(detail) or Err(reason), rejected as `Err("rejected: ...")`.
fn outcome(id: &str) -> impl Fn(&[Body]) -> Option<Result<String, String>> + '_ {
    move |bodies| {
        bodies.iter().find_map(|b| match b {
            Body::CommandCompleted(c) if c.command_id == id => Some(Ok(c.detail.clone())),
            Body::CommandFailed(c) if c.command_id == id => Some(Err(c.reason.clone())),
            Body::CommandRejected(c) if c.command_id == id => {
                Some(Err(format!("rejected: {}", c.reason)))
            }
            _ => None,
        })
    }
}

/// The router's summary in a heartbeat matching `f`.
fn heartbeat_with(
    f: impl Fn(&pb::ServiceSummary) -> bool,
) -> impl Fn(&[Body]) -> Option<pb::ServiceSummary> {
    move |bodies| {
        bodies.iter().rev().find_map(|b| match b {
            Body::Heartbeat(h) => h.services.iter().find(|s| f(s)).cloned(),
            _ => None,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_switches_reach_the_app_and_the_heartbeat_and_refusals_are_reported() {
    let Some(server) = start_server().await else {
        return;
    };
    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = agent_config(dir.path(), &server.url);
    let role_file = dir.path().join("role");
    let agent = Agent::start(&cfg, &js).await;

    // At start, before any command: standby (the default `initial`), in file and heartbeat.
    let s = (agent)
        .wait_for(
            "standby heartbeat",
            heartbeat_with(|s| s.service == "router" && s.role == "standby"),
        )
        .await;
    assert_eq!(s.group, "edge");
    assert_eq!(
        std::fs::read_to_string(&role_file).expect("role file"),
        "standby"
    );

    send(&js, &command("r1", 1, role("active", "edge"))).await;
    let done = agent.wait_for("r1", outcome("r1")).await;
    let detail = done.expect("role given");
    assert!(
        detail.starts_with("role active (group edge) written to"),
        "{detail}"
    );
    assert_eq!(
        std::fs::read_to_string(&role_file).expect("role file"),
        "active"
    );
    agent
        .wait_for(
            "active heartbeat",
            heartbeat_with(|s| s.service == "router" && s.role == "active"),
        )
        .await;

    // Refusals: the wrong group and an unknown role are rejected at admission; the file stays.
    send(&js, &command("r2", 1, role("standby", "core"))).await;
    let err = agent.wait_for("r2", outcome("r2")).await.unwrap_err();
    assert!(
        err.contains("rejected") && err.contains("in group \"edge\", not \"core\""),
        "{err}"
    );
    send(&js, &command("r3", 1, role("leader", "edge"))).await;
    let err = agent.wait_for("r3", outcome("r3")).await.unwrap_err();
    assert!(err.contains("rejected") && err.contains("leader"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&role_file).expect("role file"),
        "active"
    );

    // Switches: success makes the router live; a failing one carries its stderr; a slow one
    // is killed at its timeout.
    send(&js, &command("s1", 1, switch("router"))).await;
    let detail = agent.wait_for("s1", outcome("s1")).await.expect("switched");
    assert!(
        detail.contains("slot group web now goes to router (not green)"),
        "{detail}"
    );
    let live = std::fs::read_to_string(dir.path().join("live")).expect("switch ran");
    assert_eq!(live.trim(), "router", "{{service}} substituted");
    agent
        .wait_for(
            "live heartbeat",
            heartbeat_with(|s| s.service == "router" && s.live && s.slot_group == "web"),
        )
        .await;
    send(&js, &command("s2", 1, switch("green"))).await;
    let err = agent.wait_for("s2", outcome("s2")).await.unwrap_err();
    assert!(
        err.contains("switch to green failed: exited with status 3: no upstream named green"),
        "{err}"
    );
    let started = std::time::Instant::now();
    send(&js, &command("s3", 1, switch("slow"))).await;
    let err = agent.wait_for("s3", outcome("s3")).await.unwrap_err();
    assert!(
        err.contains("switch to slow failed: timed out after 300ms"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed, not waited for"
    );
    agent.stop().await;

    // An agent restart keeps the role given (not `initial`) and the live slot.
    std::fs::write(&role_file, "tampered").expect("write");
    let agent = Agent::start(&cfg, &js).await;
    let before = agent.bodies().len();
    let fresh = heartbeat_with(|s| s.service == "router" && s.role == "active" && s.live);
    agent
        .wait_for("restarted heartbeat", |b: &[Body]| fresh(b.get(before..)?))
        .await;
    assert_eq!(
        std::fs::read_to_string(&role_file).expect("role file"),
        "active"
    );
    agent.stop().await;
}
