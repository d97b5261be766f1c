//! The rollout section's figures: what they are (keys, labels, units; no DESIGN.md target,
//! so every one is a baseline) and how the repeats become medians with every repeat noted.

use anyhow::{Context, Result};

use super::timing::{self, WaveSpan};
use super::{Sizes, CANARY, WAVE_PERCENTS};
use crate::idle::USER_HZ;
use crate::report::{fmt_num, FigSpec, Figure};
use crate::stats;

const fn baseline(key: &'static str, label: &'static str, unit: &'static str) -> FigSpec {
    FigSpec {
        key,
        label,
        unit,
        target: None,
    }
}

pub const TOTAL: FigSpec = baseline("rollout_total_s", "rollout: total time", "s");
pub const WAVES: [FigSpec; 4] = [
    baseline(
        "rollout_wave0_ms",
        "rollout: canary wave (started → deployed)",
        "ms",
    ),
    baseline(
        "rollout_wave1_ms",
        "rollout: wave 1 (started → deployed)",
        "ms",
    ),
    baseline(
        "rollout_wave2_ms",
        "rollout: wave 2 (started → deployed)",
        "ms",
    ),
    baseline(
        "rollout_wave3_ms",
        "rollout: wave 3 (started → deployed)",
        "ms",
    ),
];
pub const OVERHEAD: FigSpec = baseline(
    "rollout_host_overhead_ms",
    "rollout: per-host overhead beside the deploys",
    "ms",
);
pub const CPU: FigSpec = baseline(
    "rollout_coord_cpu_pct",
    "rollout: coordinator CPU during the rollout",
    "% core",
);
pub const IDLE_CPU: FigSpec = baseline(
    "rollout_idle_cpu_pct",
    "rollout: coordinator CPU, same fleet idle",
    "% core",
);
pub const ADDED_CPU: FigSpec = baseline(
    "rollout_added_cpu_ms_per_host",
    "rollout: coordinator CPU added per host",
    "ms",
);
pub const NOOP: FigSpec = baseline(
    "rollout_noop_all_ms",
    "noop --all to the same hosts: all completed",
    "ms",
);
pub const FIGURES: [&FigSpec; 10] = [
    &TOTAL, &WAVES[0], &WAVES[1], &WAVES[2], &WAVES[3], &OVERHEAD, &CPU, &IDLE_CPU, &ADDED_CPU,
    &NOOP,
];

/// One rollout's measurements.
pub(super) struct Round {
    pub(super) total_ms: f64,
    pub(super) spans: Vec<WaveSpan>,
    pub(super) cpu_ticks: u64,
    pub(super) window_s: f64,
    pub(super) idle_ticks: u64,
    pub(super) idle_s: f64,
    pub(super) noop_ms: f64,
}

pub(super) fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| fmt_num(*x))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The section's figures: medians over the repeats, each repeat in the note.
pub(super) fn figures(rounds: &[Round], sizes: &Sizes) -> Result<Vec<Figure>> {
    let med = |v: &[f64]| stats::median(v).context("no repeats");
    let mu = sizes.max_unavailable as usize;
    let deploy_ms = sizes.deploy_ms as f64;
    let hosts = sizes.hosts as f64;
    let total: Vec<f64> = rounds.iter().map(|r| r.total_ms / 1000.0).collect();
    let noop: Vec<f64> = rounds.iter().map(|r| r.noop_ms).collect();
    let waves = rounds.first().map_or(0, |r| r.spans.len());
    let ratio = med(&total)? * 1000.0 / (waves as f64 * med(&noop)?);
    let mut out = vec![TOTAL.measured(
        med(&total)?,
        format!(
            "median of {} rollouts of {} hosts in {waves} waves (canary {CANARY}, then {:?} %, \
             {} at once, deploy {} ms, soak_ms 0 + 3 s settle floor); repeats {}; \
             {} x (waves x noop --all)",
            rounds.len(),
            sizes.hosts,
            WAVE_PERCENTS,
            mu,
            sizes.deploy_ms,
            list(&total),
            fmt_num(ratio)
        ),
    )];
    for (i, spec) in WAVES.iter().enumerate() {
        let ms: Vec<f64> = (rounds.iter())
            .filter_map(|r| r.spans.get(i))
            .map(WaveSpan::ms)
            .collect();
        let (Some(first), Some(m)) = (
            rounds.first().and_then(|r| r.spans.get(i)),
            stats::median(&ms),
        ) else {
            continue;
        };
        let per_host = timing::overhead_per_host_ms(m, first.hosts, deploy_ms, mu);
        out.push(spec.measured(
            m,
            format!(
                "{} hosts in {} rounds of <= {mu}; overhead {} ms/host; repeats {}",
                first.hosts,
                timing::batches(first.hosts, mu),
                fmt_num(per_host),
                list(&ms)
            ),
        ));
    }
    let overhead: Vec<f64> = (rounds.iter())
        .map(|r| {
            let wave_ms: f64 = r.spans.iter().map(WaveSpan::ms).sum();
            let rounds: usize = (r.spans.iter()).map(|s| timing::batches(s.hosts, mu)).sum();
            (wave_ms - deploy_ms * rounds as f64) / hosts
        })
        .collect();
    out.push(OVERHEAD.measured(
        med(&overhead)?,
        format!(
            "(sum of wave times - {} ms x rounds) / {} hosts; repeats {}",
            sizes.deploy_ms,
            sizes.hosts,
            list(&overhead)
        ),
    ));
    let cpu: Vec<f64> = (rounds.iter())
        .map(|r| timing::cpu_pct(r.cpu_ticks, USER_HZ, r.window_s))
        .collect();
    let idle: Vec<f64> = (rounds.iter())
        .map(|r| timing::cpu_pct(r.idle_ticks, USER_HZ, r.idle_s))
        .collect();
    let added: Vec<f64> = (rounds.iter())
        .map(|r| (r.cpu_ticks as f64 - r.idle_ticks as f64) / USER_HZ * 1000.0 / hosts)
        .collect();
    out.push(CPU.measured(
        med(&cpu)?,
        format!(
            "utime+stime of ops-coordinator from the start request to the ended step; repeats {}",
            list(&cpu)
        ),
    ));
    out.push(IDLE_CPU.measured(
        med(&idle)?,
        format!(
            "same coordinator and hosts, heartbeats every {} ms only, as long as the rollout; repeats {}",
            sizes.heartbeat_ms,
            list(&idle)
        ),
    ));
    out.push(ADDED_CPU.measured(
        med(&added)?,
        format!(
            "(rollout CPU - idle CPU) / {} hosts, CPU-ms; repeats {}",
            sizes.hosts,
            list(&added)
        ),
    ));
    out.push(NOOP.measured(
        med(&noop)?,
        format!(
            "ops.api.command noop --all to the {} hosts, until the last command_completed; repeats {}",
            sizes.hosts,
            list(&noop)
        ),
    ));
    Ok(out)
}
