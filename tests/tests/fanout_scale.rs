//! A fan-out larger than a JetStream context admits acks in flight (async-nats: 5,000): the
//! real coordinator issues `noop --all` to 5,200 hosts and answers with every command issued.
//! Its `command_issued` events used to be all sent before any ack was awaited, so publish
//! 5,001 waited for a permit that only an ack could free, and the request (and every other
//! publish of the coordinator) hung.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use async_nats::jetstream;
use opsfleet_proto::api::{CommandAction, CommandReply, CommandRequest, Targets};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};
use uuid::Uuid;

/// Hosts: past the 5,000 acks a context admits.
const HOSTS: usize = 5_200;
/// First heartbeats awaiting their PubAck at once.
const AT_ONCE: usize = 500;

/// A first heartbeat of `host`, as an agent sends it.
fn heartbeat(host: &str) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq: 1,
        time_unix_ms: opsfleet_proto::time::now_unix_ms(),
        module: "heartbeat".to_owned(),
        incarnation: Uuid::now_v7(),
        body: pb::event::Body::Heartbeat(pb::Heartbeat {
            agent_version: "test".to_owned(),
            interval_ms: 600_000,
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_to_more_hosts_than_acks_in_flight_is_issued_to_all() {
    Cluster::run("fanout_scale", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client.clone());
        wait_until_default("the coordinator's streams", async || {
            Ok(js
                .get_stream(subjects::EVENTS_STREAM)
                .await
                .ok()
                .map(|_| ()))
        })
        .await?;
        let mut acks = Vec::new();
        for i in 0..HOSTS {
            let ev = heartbeat(&format!("node-{i:05}"));
            let msg = jetstream::message::PublishMessage::build()
                .payload(ev.encode_to_vec().into())
                .message_id(ev.id.to_string());
            acks.push(
                js.send_publish(subjects::event_subject(&ev.host, ev.kind()), msg)
                    .await?,
            );
            if acks.len() >= AT_ONCE {
                for a in acks.drain(..) {
                    a.await.context("heartbeat not stored")?;
                }
            }
        }
        for a in acks {
            a.await.context("heartbeat not stored")?;
        }

        // Until the coordinator knows every host, `--all` reaches fewer: ask again (each
        // answer is a whole fan-out, so this also runs it more than once).
        let started = Instant::now();
        loop {
            let req = CommandRequest {
                action: CommandAction::Noop,
                targets: Targets {
                    all: true,
                    ..Targets::default()
                },
                deadline_ms: 600_000,
                issued_by: "test".to_owned(),
            };
            let reply = client
                .send_request(
                    subjects::API_COMMAND.to_owned(),
                    async_nats::Request::new()
                        .payload(serde_json::to_vec(&req)?.into())
                        .timeout(Some(Duration::from_secs(120))),
                )
                .await
                .context("no answer to noop --all within 120 s")?;
            let reply: CommandReply =
                serde_json::from_slice(&reply.payload).with_context(|| {
                    format!(
                        "unexpected answer: {}",
                        String::from_utf8_lossy(&reply.payload)
                    )
                })?;
            if reply.commands.len() == HOSTS {
                return Ok(());
            }
            ensure!(
                started.elapsed() < Duration::from_secs(180),
                "noop --all reached {} of {HOSTS} hosts after 180 s",
                reply.commands.len()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await;
}
