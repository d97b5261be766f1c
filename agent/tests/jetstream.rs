//! End-to-end check of outbox + publisher against a real nats-server (skipped when
//! `nats-server` is not on PATH): retries while the stream is missing, then publishes in seq
//! order, deletes after PubAck, and a re-publish with the same id is deduplicated.

mod common;

use common::start_server;
use std::sync::Arc;
use std::time::Duration;

use opsfleet_agent::outbox::NewEvent;
use opsfleet_agent::publisher::EventSink;
use opsfleet_agent::{JetStreamSink, Outbox, Publisher, PublisherControl};
use opsfleet_bus::{ConnectMode, NatsConfig, TopologyConfig};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use tokio::sync::Notify;

fn disk_event(i: u64) -> NewEvent {
    NewEvent {
        module: "disk".into(),
        time_unix_ms: 1_790_000_000_000 + i as i64,
        body: pb::event::Body::Disk(pb::DiskUsage {
            path: "/".into(),
            used_bytes: i,
            ..Default::default()
        }),
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_in_order_after_the_stream_appears_and_dedups() {
    let Some(server) = start_server().await else {
        return;
    };
    let nats = NatsConfig {
        urls: vec![server.url.clone()],
        request_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let client = opsfleet_bus::connect(&nats, "ops-agent web-01", ConnectMode::FailFast)
        .await
        .expect("connects");
    let js = opsfleet_bus::jetstream(client, &nats);

    let dir = tempfile::tempdir().expect("tempdir");
    let outbox =
        Arc::new(Outbox::open(&dir.path().join("agent.sled"), "web-01", 1000).expect("open"));
    let notify = Arc::new(Notify::new());
    let ctl = PublisherControl::default();
    let publisher = Publisher::new(
        outbox.clone(),
        JetStreamSink::new(js.clone(), nats.request_timeout),
        notify.clone(),
    );
    let handle = tokio::spawn(publisher.run(ctl.clone()));

    // No stream yet: the agent does not create topology, so events wait in the outbox.
    outbox
        .append((1..=20).map(disk_event).collect())
        .await
        .expect("append");
    notify.notify_one();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(outbox.pending(), 20);

    let topo = opsfleet_bus::ensure_topology(&js, &TopologyConfig::default())
        .await
        .expect("topology");
    outbox
        .append((21..=30).map(disk_event).collect())
        .await
        .expect("append");
    notify.notify_one();
    wait_until("outbox drained", || outbox.pending() == 0).await;

    let mut events = topo.events;
    assert_eq!(events.info().await.expect("info").state.messages, 30);
    for seq in 1..=30u64 {
        let msg = events.get_raw_message(seq).await.expect("message");
        let env = EventEnvelope::decode(&msg.payload).expect("valid event");
        assert_eq!(env.seq, seq, "stream order equals outbox seq order");
        assert_eq!(env.incarnation, outbox.incarnation());
        assert_eq!(
            msg.subject.as_str(),
            subjects::event_subject("web-01", "disk")
        );
        let id = msg
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .expect("Nats-Msg-Id header");
        assert_eq!(id, env.id.to_string());
    }

    // A re-publish of an already acknowledged event (lost delete, timed-out ack) is deduped.
    ctl.stop.cancel();
    handle.await.expect("publisher stops");
    outbox.append(vec![disk_event(31)]).await.expect("append");
    let again = outbox
        .first_pending()
        .expect("read")
        .expect("pending event");
    let sink = JetStreamSink::new(js.clone(), nats.request_timeout);
    sink.publish(&again).await.expect("first publish");
    sink.publish(&again)
        .await
        .expect("duplicate publish is acknowledged");
    assert_eq!(events.info().await.expect("info").state.messages, 31);
}
