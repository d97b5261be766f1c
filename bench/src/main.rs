//! opsfleet-bench: measures what opsfleet costs and what it survives against a real
//! nats-server on loopback (ingest vs raw JetStream consume, publish-to-persisted latency,
//! `pause --all` fan-out, crash failover and graceful handover, agent idle footprint,
//! projection rebuild, a rollout of simulated hosts in waves, one coordinator under 100,000
//! simulated hosts), prints a table with each
//! DESIGN.md target and writes JSON.
//!
//! Like the integration harness it drives, this is a measuring instrument, not a daemon:
//! errors are `anyhow` with context, and a section that fails is reported as `error` while
//! the others still run.

mod failover;
mod fanout;
mod idle;
mod latency;
mod rebuild;
mod report;
mod rollout;
mod scale;
mod sim;
mod stats;
mod throughput;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;

use report::{FigSpec, Figure, Machine, Report};

const SECTIONS: [&str; 8] = [
    "ingest", "latency", "fanout", "failover", "idle", "rebuild", "rollout", "scale",
];

/// Benchmark opsfleet against a real nats-server; every size has a full and a `--quick`
/// default.
#[derive(Debug, Parser)]
#[command(name = "opsfleet-bench", version)]
struct Args {
    /// Small sizes (under a minute): what the smoke test runs.
    #[arg(long)]
    quick: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run only these sections (comma separated): ingest, latency, fanout, failover, idle,
    /// rebuild, rollout, scale.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Repeats of every section that repeats (default 3, quick 1); the per-section flags
    /// below override it.
    #[arg(long)]
    repeats: Option<usize>,
    /// Events preloaded for the ingest comparison (default 200,000).
    #[arg(long)]
    ingest_events: Option<usize>,
    /// Simulated hosts those events come from (default 1,000).
    #[arg(long)]
    ingest_hosts: Option<usize>,
    /// Messages per consumer batch and per sled commit (the coordinator's default: 1,000).
    #[arg(long, default_value_t = 1000)]
    batch_max: usize,
    /// Offered rate of the latency run, events/s (default 1,000).
    #[arg(long, default_value_t = 1000)]
    latency_rate: u32,
    /// Simulated hosts of the latency run (default 10,000).
    #[arg(long)]
    latency_hosts: Option<usize>,
    /// Seconds per latency window (default 10).
    #[arg(long)]
    latency_window_secs: Option<u64>,
    /// Simulated agents of the fan-out (default 1,000).
    #[arg(long)]
    fanout_agents: Option<usize>,
    /// kill -9 repeats (default 5).
    #[arg(long)]
    crash_repeats: Option<usize>,
    /// Fast takeover of the failover section's coordinators, ms (`[topology]
    /// takeover_after`; the local cluster's 1 s).
    #[arg(long, default_value_t = 1000)]
    takeover_after_ms: u64,
    /// Directory holding an older `ops-coordinator` for the failover section's TTL baseline
    /// (e.g. main's release build); without it the baseline is this build with fast takeover
    /// off (the same TTL lease).
    #[arg(long)]
    failover_baseline_bin: Option<PathBuf>,
    /// Graceful handover repeats, each by API and by SIGTERM (default 5).
    #[arg(long)]
    handover_repeats: Option<usize>,
    /// Agents measured side by side for the idle footprint (default 3).
    #[arg(long)]
    idle_agents: Option<usize>,
    /// Idle window in seconds (default 60).
    #[arg(long)]
    idle_secs: Option<u64>,
    /// Events in the rebuilt log (default 1,000,000).
    #[arg(long)]
    rebuild_events: Option<usize>,
    /// Simulated hosts of the rollout (default 100).
    #[arg(long)]
    rollout_hosts: Option<usize>,
    /// Simulated time of one host's deploy, ms.
    #[arg(long, default_value_t = 50)]
    rollout_deploy_ms: u64,
    /// Hosts of a wave deployed at once.
    #[arg(long, default_value_t = 10)]
    rollout_max_unavailable: u32,
    /// Heartbeat interval of the rollout's simulated hosts, ms (the agent's default: 10 s).
    #[arg(long, default_value_t = 10_000)]
    rollout_heartbeat_ms: u64,
    /// Simulated hosts fed to one coordinator in the scale section (default 100,000).
    #[arg(long)]
    scale_hosts: Option<usize>,
    /// Each scale host's heartbeat period while the queries run, s (100,000 hosts: 3.3k ev/s).
    #[arg(long, default_value_t = 30)]
    scale_heartbeat_secs: u64,
    /// Single pages timed per view in the scale section.
    #[arg(long, default_value_t = 20)]
    scale_pages: usize,
}

impl Args {
    fn pick<T>(&self, flag: Option<T>, full: T, quick: T) -> T {
        flag.unwrap_or(if self.quick { quick } else { full })
    }
    fn repeats(&self, full: usize) -> usize {
        self.repeats.unwrap_or(if self.quick { 1 } else { full })
    }
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for s in &args.only {
        anyhow::ensure!(
            SECTIONS.contains(&s.as_str()),
            "unknown section {s:?}; use {}",
            SECTIONS.join(", ")
        );
    }
    let all = Sizes::from_args(&args);
    let sizes = serde_json::to_value(&all).context("cannot encode the sizes")?;

    let machine = machine()?;
    eprintln!(
        "opsfleet-bench: {} cores, {:.1} GiB, kernel {}, load {}, nats-server {}",
        machine.nproc,
        machine.mem_total_gib,
        machine.kernel,
        machine.load_avg_at_start,
        machine.nats_server
    );
    let started_unix_ms = sim::now_unix_ms();
    let start = Instant::now();
    let mut figures: Vec<Figure> = Vec::new();

    macro_rules! section {
        ($name:literal, $module:ident, $sizes:expr) => {
            if args.wants($name) {
                let t = Instant::now();
                eprintln!("==> {}", $name);
                let result = $module::run(&$sizes).await;
                figures.extend(collect(result, &$module::FIGURES));
                eprintln!("    {} took {:.1} s", $name, t.elapsed().as_secs_f64());
            }
        };
    }
    section!("ingest", throughput, all.ingest);
    section!("latency", latency, all.latency);
    section!("fanout", fanout, all.fanout);
    section!("failover", failover, all.failover);
    section!("idle", idle, all.idle);
    section!("rebuild", rebuild, all.rebuild);
    section!("rollout", rollout, all.rollout);
    section!("scale", scale, all.scale);

    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix_ms,
        elapsed_s: start.elapsed().as_secs_f64(),
        quick: args.quick,
        machine,
        sizes,
        figures,
    };
    println!("{}", report::table(&report.figures));
    println!("{}", verdicts(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if report.figures.iter().any(|f| f.verdict == "error") {
        std::process::exit(2);
    }
    Ok(())
}

/// The sizes of every section, from the command line (`--quick` picks the small ones).
#[derive(serde::Serialize)]
struct Sizes {
    ingest: throughput::Sizes,
    latency: latency::Sizes,
    fanout: fanout::Sizes,
    failover: failover::Sizes,
    idle: idle::Sizes,
    rebuild: rebuild::Sizes,
    rollout: rollout::Sizes,
    scale: scale::Sizes,
}

impl Sizes {
    fn from_args(args: &Args) -> Sizes {
        let ingest = throughput::Sizes {
            events: args.pick(args.ingest_events, 200_000, 20_000),
            hosts: args.pick(args.ingest_hosts, 1000, 100),
            batch_max: args.batch_max,
            repeats: args.repeats(3),
        };
        let latency = latency::Sizes {
            rate: args.latency_rate,
            hosts: args.pick(args.latency_hosts, 10_000, 1000),
            window_secs: args.pick(args.latency_window_secs, 10, 3),
            repeats: args.repeats(3),
        };
        let fanout = fanout::Sizes {
            agents: args.pick(args.fanout_agents, 1000, 50),
            repeats: args.repeats(3),
            idle_secs: if args.quick { 3 } else { 30 },
        };
        let failover = failover::Sizes {
            crash_repeats: args.pick(args.crash_repeats, 5, 1),
            handover_repeats: args.pick(args.handover_repeats, 5, 1),
            takeover_after_ms: args.takeover_after_ms,
            baseline_bin: args.failover_baseline_bin.clone(),
        };
        let idle = idle::Sizes {
            agents: args.pick(args.idle_agents, 3, 1),
            warmup_secs: if args.quick { 2 } else { 5 },
            window_secs: args.pick(args.idle_secs, 60, 5),
        };
        let rebuild = rebuild::Sizes {
            events: args.pick(args.rebuild_events, 1_000_000, 20_000),
            hosts: 1000,
            repeats: args.repeats(3),
        };
        let rollout = rollout::Sizes {
            hosts: args.pick(args.rollout_hosts, 100, 10),
            repeats: args.repeats(3),
            deploy_ms: args.rollout_deploy_ms,
            max_unavailable: args.rollout_max_unavailable.max(1),
            heartbeat_ms: args.rollout_heartbeat_ms.max(100),
        };
        let scale = scale::Sizes {
            hosts: args.pick(args.scale_hosts, 100_000, 1000).max(1),
            heartbeat_secs: args.scale_heartbeat_secs.max(1),
            pages: args.scale_pages.max(1),
        };
        Sizes {
            scale,
            ingest,
            latency,
            fanout,
            failover,
            idle,
            rebuild,
            rollout,
        }
    }
}

/// `N figures, P pass, M miss, E error, in S s`.
fn verdicts(report: &Report) -> String {
    let count = |v: &str| report.figures.iter().filter(|f| f.verdict == v).count();
    format!(
        "{} figures, {} pass, {} miss, {} error, in {:.0} s",
        report.figures.len(),
        count("pass"),
        count("miss"),
        count("error"),
        report.elapsed_s
    )
}

/// A section's figures, or each of its figures marked as failed with the section's error.
fn collect(result: Result<Vec<Figure>>, specs: &[&FigSpec]) -> Vec<Figure> {
    match result {
        Ok(figs) => figs,
        Err(e) => {
            eprintln!("    failed: {e:#}");
            specs.iter().map(|s| s.failed(&e)).collect()
        }
    }
}

fn machine() -> Result<Machine> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mem_kb: f64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let nats_server = opsfleet_tests::nats::ensure_supported_version()?;
    Ok(Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        mem_total_gib: mem_kb / 1024.0 / 1024.0,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        load_avg_at_start: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        nats_server,
    })
}
