//! The ordering contract of a pipelined fan-out, with a real coordinator on a real nats-server:
//! a command reaches `OPS_CMDS` only after its own `command_issued` event is acknowledged in
//! `OPS_EVENTS`. Once the stream refuses further `command_issued` events (a per-subject limit
//! with discard-new), exactly the commands whose events were stored are sent, and no other.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, consumer, stream::DiscardPolicy};
use futures::StreamExt;
use opsfleet_proto::api::{CommandAction, CommandReply, CommandRequest, StatusReply, Targets};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};
use prost::Message;
use uuid::Uuid;

const HOSTS: usize = 40;
/// How many more `command_issued` events the stream takes in the second fan-out.
const ROOM: usize = 10;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One heartbeat from a simulated host, so that the coordinator knows it.
async fn announce(js: &jetstream::Context, host: &str) -> Result<()> {
    let ev = EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq: 1,
        time_unix_ms: now_ms(),
        module: "heartbeat".to_owned(),
        incarnation: Uuid::now_v7(),
        body: pb::event::Body::Heartbeat(pb::Heartbeat {
            interval_ms: 600_000,
            ..Default::default()
        }),
    };
    let msg = jetstream::message::PublishMessage::build()
        .payload(ev.encode_to_vec().into())
        .message_id(ev.id.to_string());
    js.send_publish(subjects::event_subject(host, ev.kind()), msg)
        .await?
        .await?;
    Ok(())
}

/// `noop` to every host, as `opsctl noop --all` sends it; the raw reply.
async fn noop_all(client: &async_nats::Client) -> Result<Vec<u8>> {
    let req = CommandRequest {
        action: CommandAction::Noop,
        targets: Targets {
            all: true,
            ..Targets::default()
        },
        deadline_ms: 600_000,
        issued_by: "alice".to_owned(),
    };
    let reply = client
        .send_request(
            subjects::API_COMMAND.to_owned(),
            async_nats::Request::new()
                .payload(serde_json::to_vec(&req)?.into())
                .timeout(Some(Duration::from_secs(120))),
        )
        .await
        .context("ops.api.command")?;
    Ok(reply.payload.to_vec())
}

/// Every message of `stream` matching `filter`, through an ephemeral pull consumer.
async fn read_all(
    js: &jetstream::Context,
    stream: &str,
    filter: &str,
) -> Result<Vec<async_nats::jetstream::Message>> {
    let mut s = js.get_stream(stream).await?;
    let last = s.info().await?.state.last_sequence;
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            filter_subject: filter.to_owned(),
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut out = Vec::new();
    let mut messages = c
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(2))
        .messages()
        .await?;
    while let Some(m) = messages.next().await {
        let m = m.map_err(|e| anyhow::anyhow!("fetch: {e}"))?;
        let seq = m
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        out.push(m);
        if seq >= last {
            break;
        }
    }
    Ok(out)
}

/// Command ids in `OPS_CMDS` and in the `command_issued` events of `OPS_EVENTS`.
async fn recorded_and_sent(
    js: &jetstream::Context,
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut issued = BTreeSet::new();
    for m in read_all(
        js,
        subjects::EVENTS_STREAM,
        &subjects::coordinator_event_subject("blue", "command_issued"),
    )
    .await?
    {
        let ev = EventEnvelope::decode(&m.payload).context("stored event")?;
        if let pb::event::Body::CommandIssued(c) = ev.body {
            issued.insert(c.command_id);
        }
    }
    let mut sent = BTreeSet::new();
    for m in read_all(js, subjects::COMMANDS_STREAM, subjects::COMMANDS_ALL).await? {
        sent.insert(pb::Command::decode(m.payload.as_ref())?.id);
    }
    Ok((issued, sent))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_sent_only_after_its_issued_event_is_stored() {
    Cluster::run("command_order", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client.clone());
        wait_until_default("blue active", async || {
            let s = c.status(Some("blue")).await?;
            Ok((s.responder.role == opsfleet_proto::api::LeaderRole::Active).then_some(()))
        })
        .await?;
        for i in 0..HOSTS {
            announce(&js, &format!("web-{i:02}")).await?;
        }
        wait_until_default("every host known", async || {
            let s: StatusReply = c.status(Some("blue")).await?;
            Ok((s.hosts.len() >= HOSTS).then_some(()))
        })
        .await?;

        // 1. A normal fan-out: every command recorded and sent.
        let reply: CommandReply =
            serde_json::from_slice(&noop_all(&client).await?).context("first reply")?;
        ensure!(
            reply.commands.len() == HOSTS,
            "{} commands",
            reply.commands.len()
        );
        let first: BTreeSet<String> = reply.commands.into_iter().map(|c| c.command_id).collect();
        let (issued, sent) = recorded_and_sent(&js).await?;
        ensure!(
            issued == first && sent == first,
            "issued {issued:?} sent {sent:?}"
        );

        // 2. The stream takes only ROOM more `command_issued` events.
        let mut events = js.get_stream(subjects::EVENTS_STREAM).await?;
        let mut config = events.info().await?.config.clone();
        config.max_messages_per_subject = (HOSTS + ROOM) as i64;
        config.discard = DiscardPolicy::New;
        config.discard_new_per_subject = true;
        js.update_stream(config).await.context("limit OPS_EVENTS")?;

        // The coordinator retries the refused events for its patience, then gives up.
        let raw = noop_all(&client).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        ensure!(
            serde_json::from_slice::<CommandReply>(&raw).is_err(),
            "second fan-out succeeded: {text}"
        );
        ensure!(text.contains("cannot record"), "reply: {text}");
        // The operator learns that some commands did go out, so a blind retry is not invited.
        ensure!(
            text.contains(&format!("{ROOM} command(s) were sent")),
            "reply: {text}"
        );
        let (issued, sent) = recorded_and_sent(&js).await?;
        let new_issued: BTreeSet<&String> = issued.difference(&first).collect();
        let new_sent: BTreeSet<&String> = sent.difference(&first).collect();
        ensure!(
            new_issued.len() == ROOM,
            "{} new command_issued events stored, expected {ROOM}",
            new_issued.len()
        );
        ensure!(
            new_sent == new_issued,
            "sent {new_sent:?} but recorded {new_issued:?}"
        );
        Ok(())
    })
    .await;
}
