//! Publish-to-persisted latency at a fixed offered rate: `hosts` simulated agents (10,000 at
//! 1,000 events/s: a heartbeat every 10 s each) publish on a fixed schedule while the
//! coordinator's real ingest persists into sled in the same process. An event's latency runs
//! from just before its publish to the moment the coordinator's persisted stream sequence
//! (`Shared::applied`, moved only after flush) covers the PubAck's sequence, sampled every
//! 0.5 ms by a dedicated thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream;
use opsfleet_coordinator::config::IngestConfig;
use opsfleet_coordinator::election::Leadership;
use opsfleet_coordinator::ingest;
use opsfleet_coordinator::state::Shared;
use opsfleet_coordinator::store::{EventStore, SledStore};
use tokio_util::sync::CancellationToken;

use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::sim::{self, SimHost};
use crate::stats;

pub const P50: FigSpec = FigSpec {
    key: "persist_latency_p50",
    label: "publish-to-persisted p50",
    unit: "ms",
    target: None,
};
pub const P99: FigSpec = FigSpec {
    key: "persist_latency_p99",
    label: "publish-to-persisted p99",
    unit: "ms",
    target: Target::below(50.0),
};
pub const FIGURES: [&FigSpec; 2] = [&P50, &P99];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    /// Offered events per second.
    pub rate: u32,
    pub hosts: usize,
    /// Length of one window; the figure is the median over `repeats` consecutive windows.
    pub window_secs: u64,
    pub repeats: usize,
}

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let (_nats, js, topology) = crate::sim::bus_with_topology().await?;

    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-latency-")
        .tempdir()
        .context("cannot create temp dir")?;
    let store: Arc<dyn EventStore> =
        Arc::new(SledStore::open(&SledStore::path_in(dir.path())).context("cannot open sled")?);
    let shared = Shared::load("bench", "bench", store, Leadership::default())
        .context("cannot load the coordinator state")?;
    let cancel = CancellationToken::new();
    let ingest_task = tokio::spawn(ingest::run(
        Arc::clone(&shared),
        js.clone(),
        topology.events.clone(),
        IngestConfig::default(),
        cancel.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_applied(&shared, &stop);

    let result = offer(&js, &shared, sizes).await;
    stop.store(true, Ordering::Relaxed);
    cancel.cancel();
    let _ = ingest_task.await;
    let samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler thread panicked"))?;
    let sent = result?;

    let (p50s, p99s, worst) = windows(&sent, &samples, sizes)?;
    let note = |v: &[f64]| {
        format!(
            "median of {} windows x {} s at {} ev/s over {} hosts; windows {}; max {} ms",
            v.len(),
            sizes.window_secs,
            sizes.rate,
            sizes.hosts,
            v.iter()
                .map(|x| fmt_num(*x))
                .collect::<Vec<_>>()
                .join(" / "),
            fmt_num(worst)
        )
    };
    Ok(vec![
        P50.measured(stats::median(&p50s).context("no windows")?, note(&p50s)),
        P99.measured(stats::median(&p99s).context("no windows")?, note(&p99s)),
    ])
}

/// (instant, applied) each time the persisted position moves, sampled every 0.5 ms on a
/// thread of its own until `stop`.
fn sample_applied(
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(Instant, u64)>> {
    let shared = Arc::clone(shared);
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut out: Vec<(Instant, u64)> = Vec::new();
        let mut seen = 0;
        while !stop.load(Ordering::Relaxed) {
            let a = shared.applied();
            if a != seen {
                out.push((Instant::now(), a));
                seen = a;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        out
    })
}

/// Per window of `sent` events: p50 and p99 of send-to-persisted latency (ms, from the
/// `samples` of the applied position), and the worst latency of all.
fn windows(
    sent: &[(Instant, u64)],
    samples: &[(Instant, u64)],
    sizes: &Sizes,
) -> Result<(Vec<f64>, Vec<f64>, f64)> {
    let per_window = sizes.rate as usize * sizes.window_secs as usize;
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut worst = 0.0f64;
    for window in sent.chunks(per_window.max(1)) {
        let lat: Vec<f64> = window
            .iter()
            .filter_map(|(t, seq)| {
                let i = samples.partition_point(|(_, a)| a < seq);
                samples
                    .get(i)
                    .map(|(at, _)| at.saturating_duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect();
        if lat.len() != window.len() {
            bail!(
                "{} events never showed as persisted",
                window.len() - lat.len()
            );
        }
        let s = stats::summarize(&lat).context("empty window")?;
        p50s.push(s.p50);
        p99s.push(s.p99);
        worst = worst.max(s.max);
    }
    Ok((p50s, p99s, worst))
}

/// Publishes on a fixed schedule (event i at start + i/rate, round-robin over hosts); returns
/// (send instant, stream seq) per event in send order.
async fn offer(
    js: &jetstream::Context,
    shared: &Arc<Shared>,
    sizes: &Sizes,
) -> Result<Vec<(Instant, u64)>> {
    let total = sizes.rate as usize * sizes.window_secs as usize * sizes.repeats;
    let mut hosts: Vec<SimHost> = (0..sizes.hosts.max(1))
        .map(|i| SimHost::new(sim::host_name(i)))
        .collect();
    let n_hosts = hosts.len();
    // Warm-up: measure from the moment ingest has positioned its consumer and persisted one
    // event, not from its start.
    let first = hosts[0].encoded("heartbeat", sim::heartbeat(0));
    let first = sim::publish(js, first)
        .await
        .context("publish failed")?
        .await
        .context("PubAck failed")?
        .sequence;
    wait_persisted(shared, first).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collector = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some((t, ack)) = rx.recv().await {
            let ack: async_nats::jetstream::context::PublishAckFuture = ack;
            match ack.await {
                Ok(a) => out.push((t, a.sequence)),
                Err(e) => return Err(anyhow::anyhow!("PubAck failed: {e}")),
            }
        }
        Ok(out)
    });
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let period = Duration::from_secs_f64(1.0 / f64::from(sizes.rate.max(1)));
    for i in 0..total {
        tokio::time::sleep_until(start + period * i as u32).await;
        let e = hosts[i % n_hosts].encoded("heartbeat", sim::heartbeat(i as u64));
        let t = Instant::now();
        let ack = sim::publish(js, e).await.context("publish failed")?;
        if tx.send((t, ack)).is_err() {
            break;
        }
    }
    drop(tx);
    let sent = collector.await.context("collector panicked")??;
    let last = sent.iter().map(|(_, s)| *s).max().unwrap_or(0);
    wait_persisted(shared, last).await?;
    // Let the sampler see the final position.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(sent)
}

async fn wait_persisted(shared: &Shared, seq: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while shared.applied() < seq {
        if Instant::now() > deadline {
            bail!("ingest did not persist stream seq {seq} within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
