//! Commands end to end against a real nats-server (skipped when `nats-server` is not on PATH):
//! the real runner and command handler consume `ops.cmd.<host>` from `OPS_CMDS`; lifecycle
//! events are read back from the outbox (no publisher runs, so they stay there).

mod common;

use common::start_server;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use opsfleet_agent::commands::{CommandHandler, RESTARTED, STALE_EPOCH};
use opsfleet_agent::config::{self, AgentConfig};
use opsfleet_agent::outbox::StateWrite;
use opsfleet_agent::{Outbox, Runner};
use opsfleet_bus::{ConnectMode, NatsConfig, TopologyConfig};
use opsfleet_proto::pb::command::Action;
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::{pb, subjects};
use prost::Message;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HOST: &str = "web-01";

fn agent_config(data_dir: &Path, url: &str) -> AgentConfig {
    config::parse_str(&toml_of(data_dir, url)).expect("valid config")
}

fn toml_of(data_dir: &Path, url: &str) -> String {
    format!(
        r#"
host = "{HOST}"
data_dir = "{}"
[nats]
urls = ["{url}"]
[[modules]]
type = "heartbeat"
interval = "60s"
[[modules]]
type = "disk"
interval = "60s"
paths = ["/"]
"#,
        data_dir.display()
    )
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

/// The real runner and command handler of one agent, sharing its outbox.
struct Agent {
    outbox: Arc<Outbox>,
    status: opsfleet_agent::StatusBoard,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    async fn start(cfg: &AgentConfig, js: &jetstream::Context) -> Agent {
        let outbox = Arc::new(Outbox::open(&cfg.sled_path(), HOST, 10_000).expect("outbox"));
        let notify = Arc::new(Notify::new());
        let runner = Runner::from_config(HOST, outbox.clone(), notify.clone(), cfg);
        let status = runner.status();
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
            status,
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

    /// Polls until `cond` holds on the outbox bodies (generous: loaded 2-core machines).
    async fn wait_for(&self, what: &str, cond: impl Fn(&[Body]) -> bool) -> Vec<Body> {
        for _ in 0..600 {
            let bodies = self.bodies();
            if cond(&bodies) {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.bodies());
    }
}

/// A deadline a minute from now (every command must carry one).
fn soon() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_millis()).expect("ms fit") + 60_000
}

fn command(id: &str, epoch: u64, deadline: i64, action: Action) -> pb::Command {
    pb::Command {
        id: id.to_owned(),
        epoch,
        issued_by: "alice".to_owned(),
        target: HOST.to_owned(),
        deadline_unix_ms: deadline,
        issued_unix_ms: 0,
        action: Some(action),
    }
}

fn pause(module: &str) -> Action {
    Action::Pause(pb::ModuleAction {
        module: module.to_owned(),
    })
}

async fn send(js: &jetstream::Context, cmd: &pb::Command, msg_id: &str) {
    let msg = PublishMessage::build()
        .payload(cmd.encode_to_vec().into())
        .message_id(msg_id);
    js.send_publish(subjects::command_subject(HOST), msg)
        .await
        .expect("publish")
        .await
        .expect("pub ack");
}

fn completed(id: &str) -> impl Fn(&[Body]) -> bool + '_ {
    move |b| {
        b.iter()
            .any(|b| matches!(b, Body::CommandCompleted(c) if c.command_id == id))
    }
}

/// Index of the first body matching `f`; panics naming `what` when there is none.
fn position(bodies: &[Body], what: &str, f: impl Fn(&Body) -> bool) -> usize {
    bodies
        .iter()
        .position(f)
        .unwrap_or_else(|| panic!("no {what} in {bodies:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_command_pauses_the_module_once_even_when_sent_twice() {
    let Some(server) = start_server().await else {
        return;
    };
    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(&agent_config(dir.path(), &server.url), &js).await;

    let c1 = command("cmd-pause-1", 1, soon(), pause("disk"));
    send(&js, &c1, "m1").await;
    send(&js, &c1, "m2").await;
    // A later command as a barrier: once it completed, both copies of c1 were handled.
    send(
        &js,
        &command("cmd-noop-2", 1, soon(), Action::Noop(pb::Noop {})),
        "m3",
    )
    .await;
    let bodies = agent
        .wait_for("noop completed", completed("cmd-noop-2"))
        .await;

    let is_c1 = |id: &str| id == "cmd-pause-1";
    let accepted = position(
        &bodies,
        "accepted",
        |b| matches!(b, Body::CommandAccepted(a) if is_c1(&a.command_id) && a.epoch == 1),
    );
    let paused = position(
        &bodies,
        "module_state paused",
        |b| matches!(b, Body::ModuleState(m) if m.module == "disk" && m.state == pb::ModuleRunState::Paused as i32),
    );
    let done = position(
        &bodies,
        "completed",
        |b| matches!(b, Body::CommandCompleted(c) if is_c1(&c.command_id)),
    );
    assert!(
        accepted < paused && paused < done,
        "accepted {accepted} < module_state {paused} < completed {done}"
    );
    let c1_events = bodies
        .iter()
        .filter(|b| match b {
            Body::CommandAccepted(a) => is_c1(&a.command_id),
            Body::CommandCompleted(c) => is_c1(&c.command_id),
            Body::CommandFailed(c) => is_c1(&c.command_id),
            Body::CommandRejected(c) => is_c1(&c.command_id),
            _ => false,
        })
        .count();
    assert_eq!(c1_events, 2, "the duplicate emits nothing: {bodies:#?}");
    let pauses = bodies
        .iter()
        .filter(
            |b| matches!(b, Body::ModuleState(m) if m.state == pb::ModuleRunState::Paused as i32),
        )
        .count();
    assert_eq!(pauses, 1, "paused once");
    let disk = agent.status.slots().into_iter().find(|s| s.name == "disk");
    assert_eq!(disk.map(|s| s.state), Some(pb::ModuleRunState::Paused));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_epochs_are_rejected_and_late_commands_expire() {
    let Some(server) = start_server().await else {
        return;
    };
    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(&agent_config(dir.path(), &server.url), &js).await;

    let noop = || Action::Noop(pb::Noop {});
    send(&js, &command("e5", 5, soon(), noop()), "e5").await;
    send(&js, &command("e3", 3, soon(), noop()), "e3").await;
    send(&js, &command("late", 5, 1_000, noop()), "late").await;
    send(
        &js,
        &command("unknown", 5, soon(), pause("nginx")),
        "unknown",
    )
    .await;
    send(&js, &command("nodeadline", 5, 0, noop()), "nodeadline").await;
    send(&js, &command("last", 6, soon(), noop()), "last").await;
    let bodies = agent.wait_for("last completed", completed("last")).await;

    assert!(bodies.iter().any(|b| matches!(b,
        Body::CommandRejected(r) if r.command_id == "e3" && r.reason == STALE_EPOCH
            && r.epoch == 3 && r.highest_epoch_seen == 5)));
    assert!(!bodies
        .iter()
        .any(|b| matches!(b, Body::CommandAccepted(a) if a.command_id == "e3")));
    assert!(bodies.iter().any(|b| matches!(b,
        Body::CommandExpired(e) if e.command_id == "late" && e.deadline_unix_ms == 1_000)));
    assert!(bodies.iter().any(|b| matches!(b,
        Body::CommandRejected(r) if r.command_id == "unknown" && r.reason.contains("nginx"))));
    assert!(bodies.iter().any(|b| matches!(b,
        Body::CommandRejected(r) if r.command_id == "nodeadline" && r.reason.contains("no deadline"))));
    assert_eq!(
        agent
            .outbox
            .module_state("agent")
            .expect("state")
            .iter()
            .find(|(k, _)| k == "epoch")
            .map(|(_, v)| v.clone()),
        Some(b"6".to_vec())
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_sent_while_the_agent_is_stopped_run_when_it_starts() {
    let Some(server) = start_server().await else {
        return;
    };
    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = agent_config(dir.path(), &server.url);

    // First run: creates the durable consumer, takes one command.
    let agent = Agent::start(&cfg, &js).await;
    send(
        &js,
        &command("before", 1, soon(), Action::Noop(pb::Noop {})),
        "before",
    )
    .await;
    agent.wait_for("first command", completed("before")).await;
    agent.stop().await;

    send(
        &js,
        &command("offline", 2, soon(), pause("heartbeat")),
        "offline",
    )
    .await;

    let agent = Agent::start(&cfg, &js).await;
    let bodies = agent
        .wait_for("offline command", completed("offline"))
        .await;
    let before = bodies
        .iter()
        .filter(|b| matches!(b, Body::CommandAccepted(a) if a.command_id == "before"))
        .count();
    assert_eq!(before, 1, "the earlier command is not run again");
    let hb = agent
        .status
        .slots()
        .into_iter()
        .find(|s| s.name == "heartbeat");
    assert_eq!(hb.map(|s| s.state), Some(pb::ModuleRunState::Paused));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_interrupted_by_a_restart_is_reported_failed() {
    let Some(server) = start_server().await else {
        return;
    };
    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = agent_config(dir.path(), &server.url);
    {
        std::fs::create_dir_all(&cfg.data_dir).expect("data dir");
        let outbox = Outbox::open(&cfg.sled_path(), HOST, 10_000).expect("outbox");
        let row = |id: &str, value: String| StateWrite {
            module: "agent".into(),
            key: format!("cmd/{id}"),
            value: Some(value.into_bytes()),
        };
        // Besides the interrupted command: a finished one older than any deadline can be
        // (pruned with the next record) and a recent one (kept).
        let rows = vec![
            row("half-done", "accepted 1".to_owned()),
            row("ancient", "completed 1".to_owned()),
            row("recent", format!("completed {}", soon() - 60_000)),
        ];
        outbox
            .append_with_state(Vec::new(), rows)
            .await
            .expect("seed");
    }
    let agent = Agent::start(&cfg, &js).await;
    agent
        .wait_for("restart failure", |b| {
            b.iter().any(|b| {
                matches!(b,
                Body::CommandFailed(f) if f.command_id == "half-done" && f.reason == RESTARTED)
            })
        })
        .await;
    let rows: Vec<String> = agent
        .outbox
        .module_state("agent")
        .expect("state")
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("cmd/"))
        .collect();
    assert_eq!(
        rows,
        ["cmd/half-done", "cmd/recent"],
        "the ancient row is pruned"
    );
    agent.stop().await;
}

/// The host's file plus one service `app` with a release dir, a role file and a switch that
/// takes 3s (`remote` lists deploy, role and switch).
fn laned_config(data_dir: &Path, url: &str) -> AgentConfig {
    let d = data_dir.display();
    let base = toml_of(data_dir, url);
    let text = format!(
        r#"{base}
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "2s"
remote = ["deploy", "role", "switch"]
[modules.deploy]
dir = "{d}/app"
[modules.role]
group = "g"
file = "{d}/role"
[modules.traffic]
slot_group = "web"
switch = ["sleep", "3"]
"#
    );
    config::parse_str(&text).expect("valid config")
}

fn completed_at(bodies: &[Body], id: &str) -> usize {
    position(
        bodies,
        id,
        |b| matches!(b, Body::CommandCompleted(c) if c.command_id == id),
    )
}

/// A slow traffic switch runs in its service's lane in the background: a later `noop` is
/// not held behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_switch_does_not_hold_a_later_command() {
    let Some(server) = start_server().await else {
        return;
    };
    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(&laned_config(dir.path(), &server.url), &js).await;
    let switch = Action::TrafficSwitch(pb::TrafficSwitch {
        service: "app".into(),
    });
    send(&js, &command("cmd-switch", 1, soon(), switch), "s1").await;
    let noop = Action::Noop(pb::Noop {});
    send(&js, &command("cmd-noop", 1, soon(), noop), "s2").await;
    let bodies = agent
        .wait_for("both completed", |b| {
            completed("cmd-switch")(b) && completed("cmd-noop")(b)
        })
        .await;
    assert!(
        completed_at(&bodies, "cmd-noop") < completed_at(&bodies, "cmd-switch"),
        "the noop waited for the 3s switch: {bodies:#?}"
    );
    agent.stop().await;
}

/// A role change queued behind a deploy of the same service waits for it (an env-file role
/// would restart the service in the middle of the deploy's activation otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_behind_a_deploy_of_its_service_waits_for_it() {
    use axum::routing::get;
    use sha2::Digest;
    let Some(server) = start_server().await else {
        return;
    };
    // The artifact is served after 3s: the deploy takes at least that long.
    let app = axum::Router::new().route(
        "/app",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            b"#!/bin/sh\nsleep 300\n".to_vec()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sha = hex::encode(sha2::Sha256::digest(b"#!/bin/sh\nsleep 300\n"));

    let js = jetstream_for(&server.url).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::start(&laned_config(dir.path(), &server.url), &js).await;
    let deploy = Action::ServiceDeploy(pb::ServiceDeploy {
        service: "app".into(),
        version: "2.0".into(),
        artifact: format!("http://127.0.0.1:{port}/app"),
        sha256: sha,
        ..Default::default()
    });
    send(&js, &command("cmd-deploy", 1, soon(), deploy), "d1").await;
    let role = Action::ServiceRole(pb::ServiceRole {
        service: "app".into(),
        role: "active".into(),
        group: "g".into(),
    });
    send(&js, &command("cmd-role", 1, soon(), role), "d2").await;
    let noop = Action::Noop(pb::Noop {});
    send(&js, &command("cmd-noop", 1, soon(), noop), "d3").await;
    let done = |b: &[Body]| {
        ["cmd-deploy", "cmd-role", "cmd-noop"]
            .iter()
            .all(|id| completed(id)(b))
    };
    let bodies = agent.wait_for("all three completed", done).await;
    let deployed = completed_at(&bodies, "cmd-deploy");
    assert!(
        deployed < completed_at(&bodies, "cmd-role"),
        "the role change ran beside the deploy: {bodies:#?}"
    );
    assert!(
        completed_at(&bodies, "cmd-noop") < deployed,
        "the noop waited for the deploy"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("role")).expect("role file"),
        "active"
    );
    agent.stop().await;
}
