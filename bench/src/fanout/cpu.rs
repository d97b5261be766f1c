//! CPU of the fan-out's nats-server and coordinator (issue 18): `utime + stime` from
//! `/proc/<pid>/stat` over an idle window with every agent's durable consumer waiting, and
//! over each `pause --all` round. Figures to quote, not verdicts.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::idle::{parse_cpu_ticks, proc_file, USER_HZ};
use crate::report::{fmt_num, FigSpec, Figure};
use crate::stats;

pub const NATS_IDLE: FigSpec = FigSpec {
    key: "fanout_nats_idle_cpu",
    label: "fan-out idle: nats-server CPU",
    unit: "% core",
    target: None,
};
pub const NATS_IDLE_PER_AGENT: FigSpec = FigSpec {
    key: "fanout_nats_idle_cpu_per_agent",
    label: "fan-out idle: nats-server CPU per agent",
    unit: "µs/s",
    target: None,
};
pub const NATS_ROUND: FigSpec = FigSpec {
    key: "fanout_nats_round_cpu",
    label: "pause --all: nats-server CPU per round",
    unit: "ms",
    target: None,
};
pub const NATS_ROUND_PER_AGENT: FigSpec = FigSpec {
    key: "fanout_nats_round_cpu_per_agent",
    label: "pause --all: nats-server CPU per agent",
    unit: "µs",
    target: None,
};
pub const COORD_ROUND: FigSpec = FigSpec {
    key: "fanout_coordinator_round_cpu",
    label: "pause --all: coordinator CPU per round",
    unit: "ms",
    target: None,
};
/// The two processes whose CPU the fan-out reads.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    pub nats: i32,
    pub coordinator: i32,
}

/// CPU time of `pid` so far, in ms.
pub fn cpu_ms(pid: i32) -> Result<f64> {
    let ticks = parse_cpu_ticks(&proc_file(pid, "stat")?)
        .with_context(|| format!("unreadable /proc/{pid}/stat"))?;
    Ok(ticks as f64 * 1000.0 / USER_HZ)
}

/// Both processes' CPU so far (nats-server, coordinator), in ms.
pub fn sample(p: Pids) -> Result<(f64, f64)> {
    Ok((cpu_ms(p.nats)?, cpu_ms(p.coordinator)?))
}

/// nats-server's CPU over `window` of idleness: % of one core.
pub async fn idle_pct(pid: i32, window: Duration) -> Result<f64> {
    let t0 = Instant::now();
    let c0 = cpu_ms(pid)?;
    tokio::time::sleep(window).await;
    let c1 = cpu_ms(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    Ok((c1 - c0) / 1000.0 / secs * 100.0)
}

/// The figures: idle % (and per agent), and the medians of the per-round CPU-ms.
pub fn figures(
    agents: usize,
    window: Duration,
    idle: f64,
    nats_rounds: &[f64],
    coord_rounds: &[f64],
) -> Result<Vec<Figure>> {
    let n = agents as f64;
    let idle_note = format!(
        "{agents} agents with a waiting durable pull consumer each; {} s window before the first command",
        window.as_secs()
    );
    let rounds = |v: &[f64]| {
        format!(
            "median of {} pause/resume --all rounds to {agents} agents; rounds {}",
            v.len(),
            v.iter()
                .map(|x| fmt_num(*x))
                .collect::<Vec<_>>()
                .join(" / ")
        )
    };
    let nats = stats::median(nats_rounds).context("no rounds")?;
    let coord = stats::median(coord_rounds).context("no rounds")?;
    Ok(vec![
        NATS_IDLE.measured(idle, idle_note.clone()),
        // % of a core → µs of CPU per second per agent: pct / 100 * 1e6 / n.
        NATS_IDLE_PER_AGENT.measured(idle * 1e4 / n, idle_note),
        NATS_ROUND.measured(nats, rounds(nats_rounds)),
        NATS_ROUND_PER_AGENT.measured(nats * 1000.0 / n, rounds(nats_rounds)),
        COORD_ROUND.measured(coord, rounds(coord_rounds)),
    ])
}
