//! The real `opsctl rollout ...` against a scripted stand-in for the coordinator's rollout API
//! (the JSON contract of `proto::api::rollouts`, served on a real nats-server): which subject
//! and role each verb asks on and what it sends, the follow printing each change and ending
//! with the exit code of the rollout's end, `-o json`, a refusal naming the role, and exit 3
//! when no coordinator answers. The coordinator's own side is tested in its crate.

use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use opsfleet_proto::api::{RolloutRequest, RolloutView, RolloutsRequest};
use opsfleet_tests::{NatsServer, Opsctl};
use serde_json::{json, Value};

const ID: &str = "0193a4c2-7d1e-7abc-9def-0123456789ab";

/// A rollout of web 2.4.1 on web-01 (canary) and web-02 (wave 1), in `phase`, with the waves'
/// and hosts' states given.
fn view(phase: &str, wave: u32, waves: [&str; 2], hosts: [&str; 2], reason: &str) -> Value {
    json!({
        "id": ID, "service": "web", "version": "2.4.1", "strategy": "canary",
        "phase": phase, "reason": reason, "started_by": "carol",
        "started_at_unix_ms": 1_790_000_000_000_i64, "wave": wave,
        "waves": [
            {"wave": 0, "hosts": ["web-01"], "state": waves[0]},
            {"wave": 1, "hosts": ["web-02"], "state": waves[1]}
        ],
        "hosts": [
            {"host": "web-01", "wave": 0, "state": hosts[0], "previous": "2.4.0", "deploys": 0},
            {"host": "web-02", "wave": 1, "state": hosts[1], "previous": "2.4.0", "deploys": 0}
        ],
        "skipped": [{"host": "web-07", "reason": "in maintenance"}],
        "gates": {"ready_samples": 3, "soak_ms": 60000, "manual": false, "two_person": false,
                  "max_unavailable": 1},
        "history": []
    })
}

fn responder() -> Value {
    json!({"name": "blue", "color": "blue", "role": "active", "epoch": 9,
           "applied_stream_seq": 10, "behind": 0})
}

/// What the stand-in answers: the reply to an action, and the views `ops.api.rollouts` gives
/// one after the other (the last one again and again).
struct Script {
    action: Value,
    reads: Vec<Value>,
}

/// Requests the stand-in got: (subject, body).
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// Serves `script` on `ops.api.rollouts` and every `ops.api.as.*.*.rollout` until dropped.
async fn stand_in(url: &str, script: Script) -> Result<(Seen, tokio::task::JoinHandle<()>)> {
    let client = async_nats::connect(url).await.context("connect stand-in")?;
    let mut reads = client.subscribe("ops.api.rollouts").await?;
    let mut acts = client.subscribe("ops.api.as.*.*.rollout").await?;
    client.flush().await?;
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut next = 0;
        loop {
            let (msg, reply) = tokio::select! {
                Some(m) = reads.next() => {
                    let v = script.reads[next.min(script.reads.len() - 1)].clone();
                    next += 1;
                    let r = json!({"responder": responder(), "rollouts": [v]});
                    (m, r)
                }
                Some(m) = acts.next() => {
                    let r = script.action.clone();
                    (m, r)
                }
                else => return,
            };
            let body = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
            log.lock().unwrap().push((msg.subject.to_string(), body));
            if let Some(to) = msg.reply {
                let _ = client
                    .publish(to, serde_json::to_vec(&reply).unwrap().into())
                    .await;
            }
        }
    });
    Ok((seen, task))
}

fn acted(v: Value) -> Value {
    json!({"responder": responder(), "rollout": v})
}

fn code(out: &opsfleet_tests::procs::CmdOutput) -> Option<i32> {
    out.status.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_follows_each_change_and_exits_1_when_it_rolled_back() -> Result<()> {
    let nats = NatsServer::start().await?;
    let pending = ["pending", "pending"];
    let script = Script {
        action: acted(view("running", 0, pending, pending, "")),
        reads: vec![
            view(
                "running",
                0,
                ["soaking", "pending"],
                ["updated", "pending"],
                "",
            ),
            view(
                "running",
                1,
                ["passed", "updating"],
                ["updated", "failed"],
                "",
            ),
            view(
                "rolled_back",
                1,
                ["passed", "failed"],
                ["rolled_back", "rolled_back"],
                "wave 1 failed its gates: web-02 not ready",
            ),
        ],
    };
    let (seen, task) = stand_in(&nats.url(), script).await?;
    let opsctl = Opsctl::new(&nats.url())?.with_args(["--operator".into(), "carol".into()]);
    let out = opsctl
        .run(&[
            "rollout",
            "start",
            "web",
            "--version",
            "2.4.1",
            "--label",
            "role=web",
        ])
        .await?;
    task.abort();
    ensure!(code(&out) == Some(1), "{out:?}");
    for line in [
        &format!("rollout {ID} of web 2.4.1 (canary): 2 host(s) in 2 wave(s)"),
        "  skipped web-07: in maintenance",
        "web-01: updated to 2.4.1 (was 2.4.0)",
        "canary soaking 1m\n",
        "wave 1 started: web-02 (1 host(s))",
        "web-02: FAILED",
        "web-01: rolled back to 2.4.0",
    ] {
        ensure!(out.stdout.contains(line), "no {line:?} in {}", out.stdout);
    }
    ensure!(
        out.stderr
            .contains("rolled_back: wave 1 failed its gates: web-02 not ready"),
        "{}",
        out.stderr
    );
    let seen = seen.lock().unwrap().clone();
    let (subject, body) = &seen[0];
    ensure!(subject == "ops.api.as.carol.admin.rollout", "{subject}");
    let req: RolloutRequest = serde_json::from_value(body.clone())?;
    let start = req.start.clone().context("a start without its rollout")?;
    ensure!(req.requested_by == "carol", "{req:?}");
    ensure!(start.labels.get("role").map(String::as_str) == Some("web"));
    ensure!(
        start.waves == [25, 50, 100] && start.soak_ms == 60_000,
        "{start:?}"
    );
    // Every read after the start asks for this rollout by its id.
    for (subject, body) in &seen[1..] {
        ensure!(subject == "ops.api.rollouts", "{subject}");
        let r: RolloutsRequest = serde_json::from_value(body.clone())?;
        ensure!(r.id.as_deref() == Some(ID), "{r:?}");
    }
    ensure!(seen.len() == 4, "{} requests: {seen:?}", seen.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_wave_ends_the_follow_and_json_is_the_last_view() -> Result<()> {
    let nats = NatsServer::start().await?;
    let pending = ["pending", "pending"];
    let script = Script {
        action: acted(view("running", 0, pending, pending, "")),
        reads: vec![view(
            "waiting_promote",
            0,
            ["waiting_promote", "pending"],
            ["updated", "pending"],
            "",
        )],
    };
    let (_seen, task) = stand_in(&nats.url(), script).await?;
    let opsctl = Opsctl::new(&nats.url())?.with_args(["--operator".into(), "carol".into()]);
    let args = [
        "-o",
        "json",
        "rollout",
        "start",
        "web",
        "--version",
        "2.4.1",
        "--all",
        "--manual",
    ];
    let out = opsctl.run(&args).await?;
    task.abort();
    ensure!(code(&out) == Some(0), "{out:?}");
    let last: RolloutView = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("stdout is not one RolloutView: {}", out.stdout))?;
    ensure!(last.phase.as_str() == "waiting_promote", "{last:?}");
    // Progress and the hint go to stderr under -o json.
    ensure!(
        out.stderr
            .contains(&format!("`opsctl rollout promote {ID}` to go on")),
        "{}",
        out.stderr
    );
    ensure!(out.stderr.contains("web-01: updated"), "{}", out.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_verbs_name_the_rollout_and_ask_in_their_role() -> Result<()> {
    let nats = NatsServer::start().await?;
    let running = view(
        "running",
        0,
        ["updating", "pending"],
        ["deploying", "pending"],
        "",
    );
    let script = Script {
        action: acted(view(
            "paused",
            0,
            ["updating", "pending"],
            ["deploying", "pending"],
            "",
        )),
        reads: vec![running],
    };
    let (seen, task) = stand_in(&nats.url(), script).await?;
    let opsctl = Opsctl::new(&nats.url())?.with_args(["--operator".into(), "alice".into()]);
    // No id: the newest rollout's id is read first, then sent.
    let out = opsctl.run(&["rollout", "pause"]).await?;
    ensure!(code(&out) == Some(0), "{out:?}");
    ensure!(
        out.stdout.contains(&format!(
            "pause recorded by blue: rollout {ID} of web 2.4.1 is paused"
        )),
        "{}",
        out.stdout
    );
    let out = opsctl
        .run(&["rollout", "promote", "--service", "web"])
        .await?;
    ensure!(code(&out) == Some(0), "{out:?}");
    let out = opsctl
        .run(&["rollout", "abort", "0193a4c2", "--no-wait"])
        .await?;
    ensure!(code(&out) == Some(0), "{out:?}");
    task.abort();
    let seen = seen.lock().unwrap().clone();
    let subjects: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
    ensure!(
        subjects
            == [
                "ops.api.rollouts",
                "ops.api.as.alice.operator.rollout",
                "ops.api.as.alice.admin.rollout",
                "ops.api.as.alice.operator.rollout",
            ],
        "{subjects:?}"
    );
    let reqs: Vec<RolloutRequest> = seen[1..]
        .iter()
        .map(|(_, b)| serde_json::from_value(b.clone()))
        .collect::<Result<_, _>>()?;
    ensure!(reqs[0].op.as_str() == "pause" && reqs[0].id.as_deref() == Some(ID));
    ensure!(reqs[1].op.as_str() == "promote" && reqs[1].service.as_deref() == Some("web"));
    ensure!(reqs[1].id.is_none(), "{:?}", reqs[1]);
    ensure!(reqs[2].op.as_str() == "abort" && reqs[2].id.as_deref() == Some("0193a4c2"));
    ensure!(reqs
        .iter()
        .all(|r| r.start.is_none() && r.requested_by == "alice"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_exits_1_with_its_reason_and_silence_exits_3() -> Result<()> {
    let nats = NatsServer::start().await?;
    let opsctl = Opsctl::new(&nats.url())?.with_args(["--operator".into(), "alice".into()]);
    // Nobody answers: unreachable, like every action verb.
    let out = opsctl
        .run(&["rollout", "start", "web", "--version", "2.4.1", "--all"])
        .await?;
    ensure!(code(&out) == Some(3), "{out:?}");
    let out = opsctl.run(&["rollouts"]).await?;
    ensure!(code(&out) == Some(3), "{out:?}");

    let script = Script {
        action: json!({"responder": "blue", "error": "rollout start needs role admin (asked as operator)",
                       "needs_role": "admin"}),
        reads: vec![view(
            "running",
            0,
            ["pending", "pending"],
            ["pending", "pending"],
            "",
        )],
    };
    let (_seen, task) = stand_in(&nats.url(), script).await?;
    let out = opsctl
        .run(&[
            "--role",
            "operator",
            "rollout",
            "start",
            "web",
            "--version",
            "2.4.1",
            "--all",
        ])
        .await?;
    ensure!(code(&out) == Some(1), "{out:?}");
    ensure!(
        out.stderr
            .contains("refused the request: rollout start needs role admin"),
        "{}",
        out.stderr
    );
    // The reads: status as JSON is the view, the table lists it.
    let out = opsctl
        .run(&["-o", "json", "rollout", "status", "--service", "web"])
        .await?;
    ensure!(code(&out) == Some(0), "{out:?}");
    let v: RolloutView = serde_json::from_str(out.stdout.trim())?;
    ensure!(v.id == ID, "{v:?}");
    let out = opsctl.run(&["rollouts"]).await?;
    ensure!(code(&out) == Some(0), "{out:?}");
    ensure!(out.stdout.contains(&format!("{ID}  web")), "{}", out.stdout);
    task.abort();
    Ok(())
}
