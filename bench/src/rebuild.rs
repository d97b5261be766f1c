//! Rebuild of the projections from the log: writes `events` simulated events (1,000 hosts,
//! 9 heartbeats : 1 disk sample) into a `SledStore` with their projection rows, in ingest-sized
//! batches, then times `opsfleet_coordinator::rebuild::rebuild` (what `ops-coordinator
//! rebuild --verify` runs) including opening the store, and checks it reproduces the digest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opsfleet_coordinator::projection::Fleet;
use opsfleet_coordinator::rebuild;
use opsfleet_coordinator::store::{Commit, EventStore, SledStore};

use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::sim::{self, SimHost};
use crate::stats;

pub const REBUILD: FigSpec = FigSpec {
    key: "rebuild_seconds",
    label: "rebuild projections from the log",
    unit: "s",
    target: Target::below(10.0),
};
pub const WRITE: FigSpec = FigSpec {
    key: "rebuild_fixture_write_rate",
    label: "sled log + rows write (fixture, 1 flush per 1,000)",
    unit: "ev/s",
    target: None,
};
pub const FIGURES: [&FigSpec; 2] = [&REBUILD, &WRITE];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub events: usize,
    pub hosts: usize,
    pub repeats: usize,
}

const BATCH: usize = 1000;

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let sizes = sizes.clone();
    tokio::task::spawn_blocking(move || run_blocking(&sizes))
        .await
        .context("rebuild task panicked")?
}

fn run_blocking(sizes: &Sizes) -> Result<Vec<Figure>> {
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-rebuild-")
        .tempdir()
        .context("cannot create temp dir")?;
    let path = SledStore::path_in(dir.path());
    let (write_rate, digest) = {
        let store = Arc::new(SledStore::open(&path).context("cannot open sled")?);
        let mut hosts: Vec<SimHost> = (0..sizes.hosts.max(1))
            .map(|i| SimHost::new(sim::host_name(i)))
            .collect();
        let n_hosts = hosts.len();
        let mut fleet = Fleet::new();
        let start = Instant::now();
        let mut stream_seq = 0u64;
        let mut i = 0usize;
        while i < sizes.events {
            let mut commit = Commit::default();
            for _ in 0..BATCH.min(sizes.events - i) {
                let body = if i % 10 == 9 {
                    sim::disk(4000 + (i % 1000) as u32)
                } else {
                    sim::heartbeat(i as u64)
                };
                let ev = hosts[i % n_hosts].event("heartbeat", body);
                stream_seq += 1;
                fleet.apply(&ev);
                commit.log.push((stream_seq, ev.encode_to_vec().into()));
                i += 1;
            }
            commit.rows = fleet.take_dirty_rows();
            commit.applied_stream_seq = stream_seq;
            commit.snapshot = true;
            store.commit(&commit).context("commit failed")?;
            store.flush().context("flush failed")?;
        }
        let rate = sizes.events as f64 / start.elapsed().as_secs_f64();
        (rate, fleet.digest())
    };
    // sled lets go of its file lock shortly after the last handle is dropped.
    std::thread::sleep(Duration::from_millis(500));

    let mut times = Vec::new();
    for _ in 0..sizes.repeats {
        let start = Instant::now();
        let store = SledStore::open(&path).context("cannot reopen sled")?;
        let report = rebuild::rebuild(&store, false).context("rebuild failed")?;
        times.push(start.elapsed().as_secs_f64());
        if report.events != sizes.events as u64 || !report.matches || report.digest != digest {
            bail!(
                "rebuild folded {} events, digest match {} (expected {} events)",
                report.events,
                report.matches,
                sizes.events
            );
        }
        drop(store);
        std::thread::sleep(Duration::from_millis(500));
    }
    let list = times
        .iter()
        .map(|x| fmt_num(*x))
        .collect::<Vec<_>>()
        .join(" / ");
    Ok(vec![
        REBUILD.measured(
            stats::median(&times).context("no repeats")?,
            format!(
                "median of {} x {} events ({} hosts), open + fold + digest; runs {list}",
                times.len(),
                sizes.events,
                sizes.hosts
            ),
        ),
        WRITE.measured(write_rate, format!("{} events, one run", sizes.events)),
    ])
}
