//! Group commit against a real nats-server and a store whose flushes wait for the test: while
//! a commit is held in its flush, the chunks that arrive are folded but neither committed nor
//! acknowledged; once it is flushed, all of them go out as one commit, acknowledged only after
//! its own flush, and the log holds every event once, in stream order.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use opsfleet_proto::{pb, subjects, EventEnvelope};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::super::persist::tests::{eventually, Gated};
use super::GROUP_BATCHES;
use crate::config::IngestConfig;
use crate::election::Leadership;
use crate::state::Shared;
use crate::store::EventStore;

const EVENTS: u64 = 2000;
const HOSTS: u64 = 4;

/// Publishes `EVENTS` heartbeats round-robin from `HOSTS` hosts, each PubAck awaited.
async fn publish_events(js: &jetstream::Context) {
    let incarnations: Vec<Uuid> = (0..HOSTS).map(|_| Uuid::now_v7()).collect();
    let mut acks = Vec::new();
    for i in 0..EVENTS {
        let h = i % HOSTS;
        let ev = EventEnvelope {
            id: Uuid::now_v7(),
            host: format!("web-{h}"),
            seq: i / HOSTS + 1,
            time_unix_ms: 1_790_000_000_000,
            module: "heartbeat".into(),
            incarnation: incarnations[h as usize],
            body: pb::event::Body::Heartbeat(pb::Heartbeat {
                agent_version: "test".into(),
                ..Default::default()
            }),
        };
        let subject = subjects::event_subject(&ev.host, ev.kind());
        let ack = js
            .publish(subject, ev.encode_to_vec().into())
            .await
            .expect("publish");
        acks.push(ack);
    }
    for ack in acks {
        ack.await.expect("PubAck");
    }
}

/// The stream sequence the coordinator's consumer has acknowledged up to.
async fn ack_floor(events: &mut jetstream::stream::Stream, name: &str) -> u64 {
    let mut consumer: jetstream::consumer::PullConsumer = events
        .get_consumer(&subjects::coordinator_consumer(name))
        .await
        .expect("consumer");
    consumer
        .info()
        .await
        .expect("consumer info")
        .ack_floor
        .stream_sequence
}

fn folded_events(shared: &Shared) -> u64 {
    shared.fleet().hosts().map(|h| h.events).sum()
}

/// The applied sequence of a `Gated` store's "commit N".
fn committed_at(seen: &str) -> u64 {
    seen.strip_prefix("commit ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a commit: {seen}"))
}

/// The events folded once the count has not moved for a second (bounded: 60 s).
async fn folded_until_still(shared: &Shared) -> u64 {
    let mut last = folded_events(shared);
    let mut still = 0;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = folded_events(shared);
        still = if now == last && now > 0 { still + 1 } else { 0 };
        last = now;
        if still >= 10 {
            break;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_folded_during_a_flush_go_out_as_one_commit_acked_after_its_own_flush() {
    let nats = opsfleet_tests::NatsServer::start()
        .await
        .expect("nats-server");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    let topology = opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default())
        .await
        .expect("topology");
    let mut events = topology.events.clone();
    publish_events(&js).await;

    let (store, go) = Gated::new(true, false);
    let shared = Shared::load(
        "blue",
        "blue",
        Arc::clone(&store) as Arc<dyn EventStore>,
        Leadership::default(),
    )
    .expect("load");
    let cfg = IngestConfig {
        batch_max: 100,
        ..IngestConfig::default()
    };
    let cancel = CancellationToken::new();
    let task = tokio::spawn(super::super::run(
        Arc::clone(&shared),
        js.clone(),
        topology.events.clone(),
        cfg,
        cancel.clone(),
    ));

    // The first chunk's commit is held in its flush; the chunks after it are folded
    // meanwhile, until the group holds `GROUP_BATCHES` batches (backpressure).
    eventually("the first commit", || store.seen().len() == 1).await;
    let first = committed_at(&store.seen()[0]);
    let held = folded_until_still(&shared).await;
    let group_max = 100 * GROUP_BATCHES as u64;
    assert!(
        held - first >= group_max && held < first + group_max + 100,
        "folded {held} events past a commit of {first} held in its flush"
    );
    assert_eq!(
        store.seen().len(),
        1,
        "committed past a held flush: {:?}",
        store.seen()
    );
    assert_eq!(shared.applied(), 0, "applied moved before the flush");
    assert_eq!(
        ack_floor(&mut events, "blue").await,
        0,
        "acked before the flush"
    );

    // Flushed: the group goes out as one commit, whose ack waits for its own flush; the rest
    // is folded meanwhile into the next group.
    go.send(()).unwrap();
    eventually("the group committed", || store.seen().len() == 3).await;
    assert_eq!(committed_at(&store.seen()[2]), held);
    assert_eq!(shared.applied(), first);
    eventually("the rest folded", || folded_events(&shared) == EVENTS).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(store.seen().len(), 3, "{:?}", store.seen());
    assert_eq!(
        ack_floor(&mut events, "blue").await,
        first,
        "the group was acked before its flush"
    );

    go.send(()).unwrap();
    eventually("the last group committed", || store.seen().len() == 5).await;
    assert_eq!(committed_at(&store.seen()[4]), EVENTS);
    assert_eq!(shared.applied(), held);
    go.send(()).unwrap();
    eventually("everything persisted", || shared.applied() == EVENTS).await;
    assert_eq!(store.inner.log_len().unwrap(), EVENTS);
    let seqs: Vec<u64> = store
        .inner
        .log_from(0)
        .map(|e| e.expect("log entry").0)
        .collect();
    assert_eq!(seqs, (1..=EVENTS).collect::<Vec<_>>());
    for _ in 0..50 {
        if ack_floor(&mut events, "blue").await == EVENTS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ack_floor(&mut events, "blue").await, EVENTS);

    // The final snapshot flushes once more.
    go.send(()).unwrap();
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("ingest stops")
        .unwrap();
}
