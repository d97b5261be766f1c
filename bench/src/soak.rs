//! Spurious failovers under load: two real coordinators (default election timing) on a
//! machine kept busy by CPU-spinning threads this bench spawns, for a bounded time; every
//! change of lease holder while both stay alive is a failover of a healthy active, which the
//! fast takeover must not cause. Also reports the largest gap between two writes of the lease
//! (renewals) that a watch saw, against the takeover threshold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opsfleet_tests::NatsServer;

use crate::failover::start_pair;
use crate::report::{fmt_num, FigSpec, Figure, Target};

pub const SPURIOUS: FigSpec = FigSpec {
    key: "failover_soak_spurious",
    label: "spurious failovers of a healthy active, loaded soak",
    unit: "",
    target: Target::at_most(0.0),
};
pub const MAX_GAP: FigSpec = FigSpec {
    key: "failover_soak_max_renew_gap",
    label: "largest gap between lease renewals, loaded soak",
    unit: "ms",
    target: None,
};
pub const FIGURES: [&FigSpec; 2] = [&SPURIOUS, &MAX_GAP];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub secs: u64,
    /// CPU-spinning threads beside the coordinators (the machine has 2 cores).
    pub load_threads: usize,
}

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-soak-")
        .tempdir()
        .context("cannot create temp dir")?;
    let (mut coords, _client, mut watch) = start_pair(dir.path(), &nats).await?;
    // The first holder, then a few seconds for the standby to settle.
    let mut holder = loop {
        match tokio::time::timeout(Duration::from_secs(60), watch.recv()).await {
            Ok(Some((_, Some(h)))) => break h,
            Ok(Some(_)) => continue,
            _ => bail!("no lease holder within 60 s"),
        }
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    while watch.try_recv().is_ok() {}

    let stop = Arc::new(AtomicBool::new(false));
    let end = Instant::now() + Duration::from_secs(sizes.secs);
    let spinners: Vec<_> = (0..sizes.load_threads)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || spin(&stop, end))
        })
        .collect();
    let mut changes = Vec::new();
    let mut gone = 0usize;
    let mut last_write = Instant::now();
    let mut max_gap = Duration::ZERO;
    let deadline = tokio::time::Instant::from_std(end);
    let outcome = loop {
        match tokio::time::timeout_at(deadline, watch.recv()).await {
            Ok(Some((at, Some(h)))) => {
                max_gap = max_gap.max(at.saturating_duration_since(last_write));
                last_write = at;
                if h != holder {
                    changes.push(format!("{holder} -> {h}"));
                    holder = h;
                }
            }
            Ok(Some((_, None))) => gone += 1,
            Ok(None) => break Err(anyhow::anyhow!("the lease watch ended")),
            Err(_) => break Ok(()),
        }
    };
    stop.store(true, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    let mut alive = true;
    for c in &mut coords {
        alive &= c.proc_mut().check_running().is_ok();
        let _ = c.stop().await;
    }
    outcome?;
    if !alive {
        bail!("a coordinator died during the soak");
    }
    let detail = format!(
        "{} s, {} spinning threads on {} cores, 2 coordinators, default timing; holder changes: \
         [{}]; lease gone {} times",
        sizes.secs,
        sizes.load_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        changes.join(", "),
        gone
    );
    Ok(vec![
        SPURIOUS.measured(changes.len() as f64, detail),
        MAX_GAP.measured(
            max_gap.as_secs_f64() * 1000.0,
            format!("{} ms", fmt_num(max_gap.as_secs_f64() * 1000.0)),
        ),
    ])
}

/// Burns a core until `end` or `stop`.
fn spin(stop: &AtomicBool, end: Instant) {
    let mut x: u64 = 1;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}
