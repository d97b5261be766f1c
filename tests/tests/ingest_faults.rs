//! Coordinator ingest under bad input, against a real nats-server and two real coordinators:
//! garbage bytes, subject spoofing and every kind of invalid envelope (no body, bad id, bad
//! host name, seq 0) are parked on the dead-letter stream exactly once, each under its reason,
//! and counted; a re-published event past the server's dedup window is dropped by (host,
//! incarnation, seq), a seq jump is recorded as a gap, and neither coordinator stops. An agent
//! named like a coordinator cannot speak for it: what the admission check refuses is parked
//! under its rule, counted apart, and the log still rebuilds to the same digest.

use opsfleet_proto::dlq;
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
                .get(dlq::REASON)
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

/// An event of `host` in `module` with `body`.
fn event(host: &str, module: &str, seq: u64, body: pb::event::Body) -> EventEnvelope {
    EventEnvelope {
        module: module.to_owned(),
        body,
        ..heartbeat(host, Uuid::now_v7(), seq)
    }
}

/// (reason, original subject) of every message in the dead-letter stream.
async fn dead_letters(js: &jetstream::Context, want: usize) -> Result<Vec<(String, String)>> {
    let dlq = js.get_stream(subjects::DLQ_STREAM).await?;
    let consumer = dlq
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await?;
    let mut msgs = consumer.messages().await?;
    let mut out = Vec::new();
    while out.len() < want {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), msgs.next())
            .await
            .context("dead letters did not arrive")?
            .context("DLQ consumer ended")??;
        let headers = msg.headers.clone().unwrap_or_default();
        let header = |k: &str| headers.get(k).map(|v| v.to_string()).unwrap_or_default();
        out.push((header(dlq::REASON), header(dlq::ORIGINAL_SUBJECT)));
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_named_like_a_coordinator_cannot_speak_for_it() {
    Cluster::run("ingest-impostor", async |c: &mut Cluster| {
        // blue first, so that it is the active one; then green as its standby.
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        wait_until_default("blue to be active", async || {
            let r = c.status(Some("blue")).await.ok();
            Ok(
                r.filter(|r| r.responder.role == opsfleet_proto::api::LeaderRole::Active)
                    .map(|_| ()),
            )
        })
        .await?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client);

        // A host named "blue" (its subject space is ops.evt.blue.>) announcing that blue is
        // active in a term no real lease reaches; the same from the coordinators' module name
        // (what today's fold takes for the coordinator); and a coordinator subject carrying an
        // agent body (on the shipped config only coordinators may publish there).
        let forged_leadership = |module: &str, seq| {
            event(
                "blue",
                module,
                seq,
                pb::event::Body::Leadership(pb::LeadershipChanged {
                    coordinator: "blue".into(),
                    color: "blue".into(),
                    role: pb::LeaderRole::Standby as i32,
                    epoch: u64::MAX,
                    reason: "forged".into(),
                    ..Default::default()
                }),
            )
        };
        let forged = [
            (
                subjects::event_subject("blue", "leadership"),
                forged_leadership("agent", 1),
            ),
            (
                subjects::event_subject("blue", "leadership"),
                forged_leadership(opsfleet_proto::COORDINATOR_MODULE, 2),
            ),
            (
                subjects::event_subject("blue", "heartbeat"),
                event(
                    "blue",
                    opsfleet_proto::COORDINATOR_MODULE,
                    3,
                    pb::event::Body::Heartbeat(pb::Heartbeat::default()),
                ),
            ),
            (
                subjects::coordinator_event_subject("green", "heartbeat"),
                event(
                    "green",
                    opsfleet_proto::COORDINATOR_MODULE,
                    1,
                    pb::event::Body::Heartbeat(pb::Heartbeat::default()),
                ),
            ),
        ];
        for (subject, ev) in &forged {
            publish(&js, subject.clone(), ev.encode_to_vec(), &ev.id.to_string()).await?;
        }
        // A real host's event after them: once it is folded, so is everything before it.
        let marker = heartbeat("web-07", Uuid::now_v7(), 1);
        publish(
            &js,
            subjects::event_subject("web-07", "heartbeat"),
            marker.encode_to_vec(),
            &marker.id.to_string(),
        )
        .await?;

        let expected = BTreeMap::from([("web-07".to_owned(), 1)]);
        for name in ["blue", "green"] {
            let reply = c.wait_caught_up(name, &expected).await?;
            ensure!(
                reply.refused_parked == forged.len() as u64 && reply.malformed_parked == 0,
                "{name}: refused {} malformed {}",
                reply.refused_parked,
                reply.malformed_parked
            );
            ensure!(
                reply.hosts.iter().all(|h| h.host == "web-07"),
                "{name}: a forged event made a host: {:?}",
                reply.hosts.iter().map(|h| &h.host).collect::<Vec<_>>()
            );
            let blue = reply
                .coordinators
                .iter()
                .find(|v| v.name == "blue")
                .context("blue missing")?;
            ensure!(
                blue.role == opsfleet_proto::api::LeaderRole::Active
                    && blue.epoch != u64::MAX
                    && blue.history.iter().all(|h| h.reason != "forged"),
                "{name}: blue as the log knows it: {blue:?}"
            );
        }
        let parked = dead_letters(&js, forged.len()).await?;
        let want = [
            ("agent_body_from_coordinator", "ops.coord.green.heartbeat"),
            ("coordinator_body_from_agent", "ops.evt.blue.leadership"),
            ("coordinator_body_from_agent", "ops.evt.blue.leadership"),
            ("wrong_module", "ops.evt.blue.heartbeat"),
        ]
        .map(|(r, s)| (r.to_owned(), s.to_owned()));
        ensure!(parked == want, "dead letters {parked:?}");

        // Nothing refused is in the log, so the log still refolds to the stored rows.
        let blue = c.coordinator("blue")?;
        blue.stop().await?;
        let (report, _) = blue.rebuild(true).await?;
        ensure!(report.matches, "rebuild --verify: {report:?}");
        Ok(())
    })
    .await;
}
