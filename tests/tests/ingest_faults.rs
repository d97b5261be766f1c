//! Coordinator ingest under bad input, against a real nats-server and two real coordinators:
//! garbage bytes, subject spoofing and every kind of invalid envelope (no body, bad id, bad
//! host name, seq 0) are parked on the dead-letter stream exactly once, each under its reason,
//! and counted; a re-published event past the server's dedup window is dropped by (host,
//! incarnation, seq), a seq jump is recorded as a gap, and neither coordinator stops.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};
use async_nats::jetstream;
use futures::StreamExt;
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};
use uuid::Uuid;

/// Malformed messages the scenario publishes: garbage, a spoofed subject, and one envelope per
/// validation failure (no body, bad id, bad host name, seq 0).
const PARKED: u64 = 6;

fn heartbeat(host: &str, incarnation: Uuid, seq: u64) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: "heartbeat".to_owned(),
        incarnation,
        body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
    }
}

async fn publish(
    js: &jetstream::Context,
    subject: String,
    payload: Vec<u8>,
    msg_id: &str,
) -> Result<()> {
    let msg = jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .message_id(msg_id);
    js.send_publish(subject.clone(), msg)
        .await
        .with_context(|| format!("publish on {subject}"))?
        .await
        .with_context(|| format!("PubAck on {subject}"))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_parked_and_duplicates_dropped() {
    Cluster::run("ingest-faults", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        // Wait until both answer, so the streams exist before we publish.
        for name in ["blue", "green"] {
            wait_until_default(&format!("{name} to answer"), async || {
                Ok(c.status(Some(name)).await.ok())
            })
            .await?;
        }
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client);
        let inc = Uuid::now_v7();
        let host = "web-07";

        let first = heartbeat(host, inc, 1);
        publish(
            &js,
            subjects::event_subject(host, "heartbeat"),
            first.encode_to_vec(),
            &first.id.to_string(),
        )
        .await?;
        // The same event again under another Nats-Msg-Id: what a retry after the 2-minute
        // dedup window looks like. The server stores it; the coordinators must drop it.
        publish(
            &js,
            subjects::event_subject(host, "heartbeat"),
            first.encode_to_vec(),
            "retry-after-window",
        )
        .await?;
        // Garbage, and a valid event for web-07 published on db-09's subject (spoofing).
        publish(
            &js,
            subjects::event_subject(host, "heartbeat"),
            vec![0xff, 0x00, 0xfe],
            "garbage",
        )
        .await?;
        let spoof = heartbeat(host, inc, 2);
        publish(
            &js,
            subjects::event_subject("db-09", "heartbeat"),
            spoof.encode_to_vec(),
            &spoof.id.to_string(),
        )
        .await?;
        // One message per way an envelope can be invalid, each on web-07's own subject.
        let mut no_body = heartbeat(host, inc, 2).to_pb();
        no_body.body = None;
        let mut bad_id = heartbeat(host, inc, 2).to_pb();
        bad_id.id = "not-a-uuid".to_owned();
        let mut bad_host = heartbeat(host, inc, 2).to_pb();
        bad_host.host = "web 07".to_owned();
        let mut zero_seq = heartbeat(host, inc, 2).to_pb();
        zero_seq.seq = 0;
        for (i, raw) in [no_body, bad_id, bad_host, zero_seq]
            .into_iter()
            .enumerate()
        {
            publish(
                &js,
                subjects::event_subject(host, "heartbeat"),
                prost::Message::encode_to_vec(&raw),
                &format!("invalid-{i}"),
            )
            .await?;
        }
        // seq 2 never arrives properly: seq 3 opens a gap.
        let third = heartbeat(host, inc, 3);
        publish(
            &js,
            subjects::event_subject(host, "heartbeat"),
            third.encode_to_vec(),
            &third.id.to_string(),
        )
        .await?;

        let expected = BTreeMap::from([(host.to_owned(), 3)]);
        for name in ["blue", "green"] {
            let reply = c.wait_caught_up(name, &expected).await?;
            ensure!(
                reply.duplicates_dropped == 1,
                "{name}: duplicates_dropped = {}",
                reply.duplicates_dropped
            );
            ensure!(
                reply.malformed_parked == PARKED,
                "{name}: malformed_parked = {}",
                reply.malformed_parked
            );
            // The log also holds the coordinators' own leadership events; web-07's share is
            // checked through its host view above and the dump below.
            ensure!(
                reply.log_events >= 2,
                "{name}: log_events = {}",
                reply.log_events
            );
            let h = reply
                .hosts
                .iter()
                .find(|h| h.host == host)
                .context("host missing")?;
            ensure!(
                h.gaps.len() == 1 && h.gaps[0].first == 2 && h.gaps[0].last == 2,
                "{name}: gaps {:?}",
                h.gaps
            );
            ensure!(h.events == 2, "{name}: events {}", h.events);
        }

        // Exactly one copy of each parked message, whichever coordinator parked it first.
        let mut reasons = Vec::new();
        let dlq = js.get_stream(subjects::DLQ_STREAM).await?;
        let consumer = dlq
            .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
            .await?;
        let mut msgs = consumer.messages().await?;
        while reasons.len() < PARKED as usize {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(30), msgs.next())
                .await
                .context("dead letters did not arrive")?
                .context("DLQ consumer ended")??;
            let headers = msg.headers.clone().unwrap_or_default();
            let reason = headers
                .get("Ops-Reason")
                .map(|v| v.to_string())
                .unwrap_or_default();
            ensure!(
                msg.subject.as_str() == subjects::dlq_subject("events", &reason),
                "subject {}",
                msg.subject
            );
            reasons.push(reason);
        }
        reasons.sort();
        ensure!(
            reasons
                == [
                    "bad_name",
                    "bad_uuid",
                    "decode",
                    "missing_field",
                    "subject_mismatch",
                    "zero_seq"
                ],
            "reasons {reasons:?}"
        );
        let info = js
            .get_stream(subjects::DLQ_STREAM)
            .await?
            .get_info()
            .await?;
        ensure!(
            info.state.messages == PARKED,
            "DLQ holds {} messages, want {PARKED}",
            info.state.messages
        );

        c.check_alive()?;
        // The log holds seq 1 and 3 once each.
        let blue = c.coordinator("blue")?;
        blue.stop().await?;
        let log = blue.dump_log().await?;
        let seqs: Vec<u64> = log
            .iter()
            .filter(|e| e.host == host)
            .map(|e| e.seq)
            .collect();
        if seqs != [1, 3] {
            bail!("blue's log for {host}: {seqs:?}");
        }
        Ok(())
    })
    .await;
}
