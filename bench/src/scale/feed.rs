//! The simulated fleet of the scale section: a preload of one heartbeat and one disk sample
//! per host, then a steady heartbeat from every host once per `period` (100,000 hosts every
//! 30 s: 3.3k ev/s) while the queries run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use crate::sim::{self, SimHost};

/// PubAcks outstanding during the preload.
const IN_FLIGHT: usize = 1000;
/// The steady load publishes in ticks of this length.
const TICK: Duration = Duration::from_millis(100);

/// The simulated hosts, named `web-00000`...
pub fn hosts(n: usize) -> Vec<SimHost> {
    (0..n).map(|i| SimHost::new(sim::host_name(i))).collect()
}

/// Publishes a heartbeat and a disk sample for every host with `IN_FLIGHT` acks outstanding;
/// returns the last stream sequence.
pub async fn preload(js: &jetstream::Context, hosts: &mut [SimHost]) -> Result<u64> {
    let mut acks = sim::InFlight::new(IN_FLIGHT);
    for (i, h) in hosts.iter_mut().enumerate() {
        for body in [sim::heartbeat(1), sim::disk(4000 + (i % 1000) as u32)] {
            acks.push(js, h.encoded("heartbeat", body)).await?;
        }
    }
    acks.drain().await
}

/// Heartbeats every host once per `period`, round-robin, until `cancel` fires; returns how
/// many events it sent. Acks are not awaited (the stream takes them; a lost one is only a
/// missing heartbeat), so a slow server does not slow the schedule.
pub async fn steady(
    js: jetstream::Context,
    mut hosts: Vec<SimHost>,
    period: Duration,
    cancel: CancellationToken,
) -> Result<u64> {
    let n = hosts.len().max(1);
    let per_tick = (n as f64 * TICK.as_secs_f64() / period.as_secs_f64()).max(1.0);
    let mut tick = tokio::time::interval(TICK);
    let start = Instant::now();
    let mut sent = 0u64;
    let mut next = 0usize;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(sent),
            _ = tick.tick() => {}
        }
        // Catch up to the schedule rather than drift behind it.
        let due = (start.elapsed().as_secs_f64() / TICK.as_secs_f64() * per_tick) as u64;
        while sent < due && !cancel.is_cancelled() {
            let h = &mut hosts[next % n];
            next += 1;
            let e = h.encoded("heartbeat", sim::heartbeat(sent));
            drop(sim::publish(&js, e).await.context("publish failed")?);
            sent += 1;
        }
    }
}
