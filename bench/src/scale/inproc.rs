//! The scale section's in-process figures, on the projection of the same simulated fleet (one
//! heartbeat and one disk sample per host): the rows' bytes per host, one snapshot of every
//! row into sled, a rebuild of the projection from that log, and one alert evaluation pass
//! with the default rules. These run the bench's own (new) library, whatever binaries the
//! live part runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opsfleet_coordinator::projection::Fleet;
use opsfleet_coordinator::store::{Commit, EventStore, SledStore};
use opsfleet_coordinator::{evaluation_pass, rebuild};

use crate::sim;
use crate::stats;

/// Alert passes timed (the median is the figure).
const ALERT_PASSES: usize = 5;
/// Log entries per sled commit while writing the fixture (the coordinator's batch size).
const BATCH: usize = 1000;

/// What the in-process part measured.
pub struct Measured {
    pub row_bytes_per_host: f64,
    pub snapshot_s: f64,
    pub rows: usize,
    pub rebuild_s: f64,
    pub alert_pass_ms: f64,
    pub alert_passes_ms: Vec<f64>,
    pub events: usize,
}

pub fn run(hosts: usize) -> Result<Measured> {
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-scale-")
        .tempdir()
        .context("cannot create temp dir")?;
    let path = SledStore::path_in(dir.path());
    let mut fleet = Fleet::new();
    let (snapshot_s, rows, events) = {
        let store = Arc::new(SledStore::open(&path).context("cannot open sled")?);
        let mut stream_seq = 0u64;
        let mut commit = Commit::default();
        for (i, mut h) in super::feed::hosts(hosts).into_iter().enumerate() {
            for body in [sim::heartbeat(1), sim::disk(4000 + (i % 1000) as u32)] {
                let ev = h.event("heartbeat", body);
                stream_seq += 1;
                fleet.apply(&ev);
                commit.log.push((stream_seq, ev.encode_to_vec().into()));
                if commit.log.len() >= BATCH {
                    commit.applied_stream_seq = stream_seq;
                    store.commit(&commit).context("commit failed")?;
                    commit = Commit::default();
                }
            }
        }
        commit.applied_stream_seq = stream_seq;
        store.commit(&commit).context("commit failed")?;
        store.flush().context("flush failed")?;
        // The snapshot: every host's row is dirty, as after a catch-up.
        let start = Instant::now();
        let rows = fleet.take_dirty_rows();
        let n_rows = rows.len();
        let snapshot = Commit {
            log: Vec::new(),
            rows,
            applied_stream_seq: stream_seq,
            snapshot: true,
        };
        store.commit(&snapshot).context("snapshot commit failed")?;
        store.flush().context("snapshot flush failed")?;
        (start.elapsed().as_secs_f64(), n_rows, stream_seq as usize)
    };
    let row_bytes: usize = fleet.rows().iter().map(|(k, v)| k.len() + v.len()).sum();

    let now = sim::now_unix_ms();
    let mut alert_passes_ms = Vec::new();
    for _ in 0..ALERT_PASSES {
        let start = Instant::now();
        std::hint::black_box(evaluation_pass(&fleet, now));
        alert_passes_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let digest = fleet.digest();
    drop(fleet);

    // sled lets go of its file lock shortly after the last handle is dropped.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let store = SledStore::open(&path).context("cannot reopen sled")?;
    let report = rebuild::rebuild(&store, false).context("rebuild failed")?;
    let rebuild_s = start.elapsed().as_secs_f64();
    if !report.matches || report.digest != digest {
        bail!("rebuild of {events} events does not reproduce the live digest");
    }
    Ok(Measured {
        row_bytes_per_host: row_bytes as f64 / hosts.max(1) as f64,
        snapshot_s,
        rows,
        rebuild_s,
        alert_pass_ms: stats::median(&alert_passes_ms).context("no alert passes")?,
        alert_passes_ms,
        events,
    })
}
