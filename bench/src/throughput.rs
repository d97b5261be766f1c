//! Ingest throughput: preloads `OPS_EVENTS` with simulated agents' events, then, alternating
//! in each repeat, drains it with a plain consumer that only acks (the baseline) and with the
//! coordinator's real durable ingest (`opsfleet_coordinator::ingest::run` into a fresh
//! `SledStore`: decode, fold, sled batch, flush, ack). Both consumers have the same shape
//! (durable pull, AckAll, same batch size) and both times include creating the consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_coordinator::config::IngestConfig;
use opsfleet_coordinator::election::Leadership;
use opsfleet_coordinator::ingest;
use opsfleet_coordinator::state::Shared;
use opsfleet_coordinator::store::{EventStore, SledStore};
use tokio_util::sync::CancellationToken;

use crate::report::{FigSpec, Figure, Target};
use crate::sim::{self, SimHost};
use crate::stats;

pub const PUBLISH: FigSpec = FigSpec {
    key: "js_publish_rate",
    label: "JetStream publish, 1,000 acks in flight (preload)",
    unit: "ev/s",
    target: None,
};
pub const RAW: FigSpec = FigSpec {
    key: "raw_consume_rate",
    label: "raw JetStream consume (ack only), baseline",
    unit: "ev/s",
    target: None,
};
pub const INGEST: FigSpec = FigSpec {
    key: "ingest_rate",
    label: "coordinator durable ingest (sled + projections + ack)",
    unit: "ev/s",
    target: Target::at_least(50_000.0),
};
pub const RATIO: FigSpec = FigSpec {
    key: "ingest_ratio",
    label: "durable ingest / raw consume",
    unit: "x",
    target: Target::at_least(0.80),
};
pub const FIGURES: [&FigSpec; 4] = [&PUBLISH, &RAW, &INGEST, &RATIO];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub events: usize,
    pub hosts: usize,
    pub batch_max: usize,
    pub repeats: usize,
}

const IN_FLIGHT: usize = 1000;

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let (_nats, js, topology) = crate::sim::bus_with_topology().await?;

    let (publish_rate, last_seq) = preload(&js, sizes).await?;
    let mut raw = Vec::new();
    let mut durable = Vec::new();
    for r in 0..sizes.repeats {
        raw.push(raw_consume(&topology.events, sizes, r, last_seq).await?);
        durable.push(durable_ingest(&js, &topology.events, sizes, r, last_seq).await?);
    }
    let raw_med = stats::median(&raw).context("no raw repeats")?;
    let ingest_med = stats::median(&durable).context("no ingest repeats")?;
    let how = |v: &[f64]| {
        format!(
            "median of {} x {} events ({} hosts); runs {}",
            v.len(),
            sizes.events,
            sizes.hosts,
            v.iter()
                .map(|x| crate::report::fmt_num(*x))
                .collect::<Vec<_>>()
                .join(" / ")
        )
    };
    Ok(vec![
        PUBLISH.measured(publish_rate, format!("{} events, one run", sizes.events)),
        RAW.measured(raw_med, how(&raw)),
        INGEST.measured(ingest_med, how(&durable)),
        RATIO.measured(
            ingest_med / raw_med,
            format!("ratio of the medians; batch_max {}", sizes.batch_max),
        ),
    ])
}

/// Publishes `events` events (9 heartbeats : 1 disk sample) round-robin over `hosts`
/// simulated hosts with `IN_FLIGHT` PubAcks outstanding; returns (events/s, last stream seq).
async fn preload(js: &jetstream::Context, sizes: &Sizes) -> Result<(f64, u64)> {
    let mut hosts: Vec<SimHost> = (0..sizes.hosts.max(1))
        .map(|i| SimHost::new(sim::host_name(i)))
        .collect();
    let mut acks = sim::InFlight::new(IN_FLIGHT);
    let n_hosts = hosts.len();
    let start = Instant::now();
    for i in 0..sizes.events {
        let h = &mut hosts[i % n_hosts];
        let body = if i % 10 == 9 {
            sim::disk(4000 + (i % 1000) as u32)
        } else {
            sim::heartbeat(i as u64)
        };
        acks.push(js, h.encoded("heartbeat", body)).await?;
    }
    let last = acks.drain().await?;
    let secs = start.elapsed().as_secs_f64();
    Ok((sizes.events as f64 / secs, last))
}

/// A plain durable pull consumer with the coordinator's shape that only acks (AckAll on each
/// batch's last message); returns events/s.
async fn raw_consume(
    events: &jetstream::stream::Stream,
    sizes: &Sizes,
    repeat: usize,
    last_seq: u64,
) -> Result<f64> {
    let name = format!("bench-raw-{repeat}");
    let start = Instant::now();
    let c: consumer::PullConsumer = events
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::All,
            ack_wait: Duration::from_secs(30),
            deliver_policy: consumer::DeliverPolicy::All,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await
        .context("cannot create the raw consumer")?;
    let messages = c
        .stream()
        .max_messages_per_batch(sizes.batch_max)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .context("cannot open the raw consumer")?;
    let mut chunks = messages.ready_chunks(sizes.batch_max);
    let mut n = 0usize;
    'outer: while let Some(items) = tokio::time::timeout(Duration::from_secs(60), chunks.next())
        .await
        .context("raw consumer stalled for 60 s")?
    {
        let mut newest = None;
        for m in items.into_iter().flatten() {
            n += 1;
            newest = Some(m);
        }
        if let Some(m) = newest {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            m.ack()
                .await
                .map_err(|e| anyhow::anyhow!("ack failed: {e}"))?;
            if seq >= last_seq {
                break 'outer;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if n < sizes.events {
        bail!("raw consumer saw {n} of {} events", sizes.events);
    }
    drop(chunks);
    let _ = events.delete_consumer(&name).await;
    Ok(sizes.events as f64 / secs)
}

/// The coordinator's ingest into a fresh sled store until it has persisted `last_seq`;
/// returns events/s.
async fn durable_ingest(
    js: &jetstream::Context,
    events: &jetstream::stream::Stream,
    sizes: &Sizes,
    repeat: usize,
    last_seq: u64,
) -> Result<f64> {
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-ingest-")
        .tempdir()
        .context("cannot create temp dir")?;
    let store: Arc<dyn EventStore> =
        Arc::new(SledStore::open(&SledStore::path_in(dir.path())).context("cannot open sled")?);
    let name = format!("bench-{repeat}");
    let shared = Shared::load(&name, &name, store, Leadership::default())
        .context("cannot load the coordinator state")?;
    let cfg = IngestConfig {
        batch_max: sizes.batch_max,
        ..IngestConfig::default()
    };
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(ingest::run(
        Arc::clone(&shared),
        js.clone(),
        events.clone(),
        cfg,
        cancel.clone(),
    ));
    let deadline = start + Duration::from_secs(600);
    while shared.applied() < last_seq {
        if Instant::now() > deadline || task.is_finished() {
            cancel.cancel();
            bail!(
                "ingest persisted up to stream seq {} of {last_seq}",
                shared.applied()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    cancel.cancel();
    let _ = task.await;
    let logged = shared
        .store
        .log_len()
        .context("cannot read the log length")?;
    if logged != sizes.events as u64 {
        bail!("sled log holds {logged} events, expected {}", sizes.events);
    }
    let _ = events
        .delete_consumer(&opsfleet_proto::subjects::coordinator_consumer(&name))
        .await;
    Ok(sizes.events as f64 / secs)
}
