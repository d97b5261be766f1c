//! The command fast path with a real coordinator, the real agent binary and a real
//! nats-server: a command the agent gets over both paths (the stream's republish on
//! `ops.fastcmd.<host>` and its durable consumer) runs once whichever path brings it first,
//! also when it is stored twice and across a kill -9, and the durable consumer still acks its
//! copy; the agent's cursor survives the kill, so the fast path resumes after a durable
//! catch-up; commands sent while the agent was away run before one sent while it catches up,
//! although that one reaches its fast path first.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, consumer};
use opsfleet_proto::{pb, subjects};
use opsfleet_tests::stream::events_of;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use prost::Message;
use serde_json::Value;

const HOST: &str = "web-01";
/// Commands sent while the agent is away, before the one sent on its return: enough that its
/// catch-up through the durable consumer takes far longer than one publish.
const AWAY: usize = 200;
/// Live commands tried until one is taken over the fast path (the stream republishes a
/// command before its consumer delivers it, but nothing orders the two server-side queues).
const TRIES: usize = 3;

/// `opsctl -o json noop --host web-01 --no-wait`: the command's id.
async fn noop(c: &Cluster) -> Result<String> {
    let out = c
        .opsctl
        .run(&[
            "--output",
            "json",
            "noop",
            "--host",
            HOST,
            "--deadline",
            "5m",
            "--no-wait",
        ])
        .await?
        .ok()?;
    let issued: Value = serde_json::from_str(out.stdout.trim())?;
    Ok(issued["commands"][0]["id"]
        .as_str()
        .context("command id")?
        .to_owned())
}

/// The ids of the agent's `command_accepted` events, in stream order.
async fn accepted(c: &Cluster) -> Result<Vec<String>> {
    Ok(events_of(&c.nats_url(), HOST, "command_accepted")
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::CommandAccepted(a) => Some(a.command_id),
            _ => None,
        })
        .collect())
}

/// Waits until `id` was accepted (by whichever path).
async fn wait_accepted(c: &Cluster, id: &str) -> Result<()> {
    wait_until_default(&format!("command {id} accepted"), async || {
        Ok(accepted(c).await?.iter().any(|a| a == id).then_some(()))
    })
    .await
}

/// The agent's log lines about accepting `id`.
fn accept_lines(c: &mut Cluster, id: &str) -> Result<Vec<String>> {
    let log = std::fs::read_to_string(c.agent(HOST)?.proc().log_path())?;
    Ok(log
        .lines()
        .filter(|l| l.contains("command accepted") && l.contains(id))
        .map(str::to_owned)
        .collect())
}

/// Issues noops until one is accepted over the fast path (each exactly once, and only after
/// the durable consumer acked its copy too); its id.
async fn noop_via_fast(c: &mut Cluster, js: &jetstream::Context) -> Result<String> {
    let mut seen = Vec::new();
    for _ in 0..TRIES {
        let id = noop(c).await?;
        wait_accepted(c, &id).await?;
        wait_consumer_drained(js).await?;
        let lines = accept_lines(c, &id)?;
        ensure!(
            lines.len() == 1,
            "command {id} accepted {} times: {lines:?}",
            lines.len()
        );
        if lines[0].contains("via=fast") {
            return Ok(id);
        }
        seen.extend(lines);
    }
    anyhow::bail!("no live command was run by the fast path in {TRIES} tries: {seen:?}")
}

/// How many times the agent's log says its fast path fell behind.
fn behind_lines(c: &mut Cluster) -> Result<usize> {
    let log = std::fs::read_to_string(c.agent(HOST)?.proc().log_path())?;
    Ok(log
        .lines()
        .filter(|l| l.contains("fast path behind"))
        .count())
}

/// Waits until the durable consumer has nothing pending and nothing unacked: it delivered and
/// the agent acked every copy, including those the fast path had run.
async fn wait_consumer_drained(js: &jetstream::Context) -> Result<()> {
    let stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
    wait_until_default("the durable consumer to ack every copy", async || {
        let mut c: consumer::PullConsumer = stream
            .get_consumer(&format!("agent-{HOST}"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let info = c.info().await?;
        Ok((info.num_pending == 0 && info.num_ack_pending == 0).then_some(()))
    })
    .await
}

/// The stored copy of the last command to the host, published again with the same
/// `Nats-Msg-Id` (the stream drops it as a duplicate) or a new one (stored again: both paths
/// carry it).
async fn republish(js: &jetstream::Context, same_msg_id: bool) -> Result<()> {
    let stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
    let stored = stream
        .get_last_raw_message_by_subject(&subjects::command_subject(HOST))
        .await?;
    let msg_id = stored
        .headers
        .get("Nats-Msg-Id")
        .map(|v| v.as_str().to_owned())
        .context("stored command without Nats-Msg-Id")?;
    let msg_id = if same_msg_id {
        msg_id
    } else {
        format!("{msg_id}-again")
    };
    let ack = js
        .send_publish(
            subjects::command_subject(HOST),
            jetstream::message::PublishMessage::build()
                .payload(stored.payload)
                .message_id(msg_id),
        )
        .await?
        .await?;
    ensure!(
        ack.duplicate == same_msg_id,
        "republish stored as new: {}",
        !ack.duplicate
    );
    Ok(())
}

/// A new command like the last one stored for the host (same epoch and deadline, a new id),
/// published at once (no `opsctl` start-up in between); its id.
async fn send_like_last(js: &jetstream::Context) -> Result<String> {
    let stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
    let stored = stream
        .get_last_raw_message_by_subject(&subjects::command_subject(HOST))
        .await?;
    let mut cmd = pb::Command::decode(stored.payload.as_ref())?;
    cmd.id = uuid::Uuid::now_v7().to_string();
    js.send_publish(
        subjects::command_subject(HOST),
        jetstream::message::PublishMessage::build()
            .payload(cmd.encode_to_vec().into())
            .message_id(&cmd.id),
    )
    .await?
    .await?;
    Ok(cmd.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_both_paths_runs_once_and_in_order() {
    Cluster::run("fast_path", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new(HOST).heartbeat(Duration::from_millis(200)))?;
        wait_until_default("the host known", async || {
            let s = c.status(None).await?;
            Ok(s.hosts.iter().any(|h| h.host == HOST).then_some(()))
        })
        .await?;
        let js = jetstream::new(async_nats::connect(c.nats_url()).await?);
        // The agent subscribes to its command subject before it opens its durable consumer,
        // on the same connection: once the consumer exists, the subscription is in place.
        let stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
        wait_until_default("the agent's command consumer", async || {
            Ok(stream
                .get_consumer::<consumer::pull::Config>(&format!("agent-{HOST}"))
                .await
                .ok()
                .map(|_| ()))
        })
        .await?;

        // 1. The agent is up: the fast path runs the command, the durable copy is acked as a
        //    duplicate.
        let live = noop_via_fast(c, &js).await?;

        // 2. The agent is away: its durable consumer runs the command on return; the same
        //    command stored again (a new Nats-Msg-Id, as a retry would) reaches both paths
        //    and is a duplicate on both.
        c.agent(HOST)?.stop().await?;
        let away = noop(c).await?;
        c.agent(HOST)?.restart()?;
        wait_accepted(c, &away).await?;
        let lines = accept_lines(c, &away)?;
        ensure!(
            lines.len() == 1 && lines[0].contains("via=durable"),
            "the command sent while away: {lines:?}"
        );
        wait_consumer_drained(&js).await?;
        republish(&js, false).await?;
        wait_consumer_drained(&js).await?;
        // 3. After a kill -9 and a restart, the same command again over both paths.
        c.agent(HOST)?.sigkill().await?;
        c.agent(HOST)?.restart()?;
        republish(&js, false).await?;
        wait_consumer_drained(&js).await?;
        // Something issued after the republishes, accepted: they were handled before it. It
        // comes right after what the agent handled last (its cursor, kept in its ledger
        // across the kill -9, then moved by the durable consumer), so it runs over the fast
        // path again.
        noop_via_fast(c, &js)
            .await
            .context("after a durable catch-up and a restart")?;
        let ids = accepted(c).await?;
        for id in [&live, &away] {
            let n = ids.iter().filter(|a| *a == id).count();
            ensure!(n == 1, "command {id} accepted {n} times: {ids:?}");
        }

        // 4. Order: commands sent while the agent was away run before one sent while it
        //    catches up (whose copy reaches its fast path at once, before the durable
        //    consumer has delivered the others).
        c.agent(HOST)?.stop().await?;
        let mut sent = Vec::new();
        for _ in 0..AWAY {
            sent.push(send_like_last(&js).await?);
        }
        let behind_before = behind_lines(c)?;
        c.agent(HOST)?.restart()?;
        let stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
        let mut durable: consumer::PullConsumer = stream
            .get_consumer(&format!("agent-{HOST}"))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let started = Instant::now();
        while durable.info().await?.num_pending >= AWAY as u64 {
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the agent did not start catching up"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent.push(send_like_last(&js).await?);
        let last = sent.last().context("sent")?.clone();
        wait_accepted(c, &last).await?;
        let lines = accept_lines(c, &last)?;
        ensure!(
            lines.len() == 1,
            "the command sent during the catch-up was accepted {} times: {lines:?}",
            lines.len()
        );
        let ids = accepted(c).await?;
        let order: Vec<&String> = ids.iter().filter(|a| sent.contains(a)).collect();
        let expected: Vec<&String> = sent.iter().collect();
        ensure!(
            order == expected,
            "accepted out of order or twice:\n{order:?}\nsent:\n{expected:?}"
        );
        wait_consumer_drained(&js).await?;
        ensure!(
            behind_lines(c)? > behind_before,
            "the command sent during the catch-up never met a fast path behind: the order above \
             was not put to the test"
        );
        Ok(())
    })
    .await;
}
