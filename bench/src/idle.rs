//! Idle footprint of the real `ops-agent` binary with the default modules (heartbeat every
//! 10 s and disk of `/` every 60 s, their default intervals) connected to a real nats-server
//! and coordinator. Several agents run side by side for the same window; RSS is sampled from
//! `/proc/<pid>/status` every second and CPU is the change of utime + stime in
//! `/proc/<pid>/stat` over the window.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opsfleet_tests::{Agent, AgentSpec, Coordinator, CoordinatorSpec, NatsServer};

use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::stats;

pub const RSS: FigSpec = FigSpec {
    key: "agent_idle_rss_mb",
    label: "agent idle RSS (default modules)",
    unit: "MB",
    target: Target::at_most(10.0),
};
pub const CPU: FigSpec = FigSpec {
    key: "agent_idle_cpu_pct",
    label: "agent idle CPU (default modules)",
    unit: "% core",
    target: Target::at_most(0.15),
};
pub const FIGURES: [&FigSpec; 2] = [&RSS, &CPU];

/// Clock ticks per second of the times in `/proc/<pid>/stat`: Linux's `USER_HZ`, 100 on every
/// architecture this project builds for (`getconf CLK_TCK`).
pub(crate) const USER_HZ: f64 = 100.0;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub agents: usize,
    pub warmup_secs: u64,
    pub window_secs: u64,
}

/// Resident set size in MB (10^6 bytes) from `/proc/<pid>/status`.
pub fn parse_vm_rss_mb(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// utime + stime in clock ticks from `/proc/<pid>/stat` (fields 14 and 15; the command name
/// in field 2 may contain spaces, so count from its closing parenthesis).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(crate) fn proc_file(pid: i32, name: &str) -> Result<String> {
    let path = PathBuf::from(format!("/proc/{pid}/{name}"));
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let ticks_per_s = USER_HZ;
    let nats = NatsServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-idle-")
        .tempdir()
        .context("cannot create temp dir")?;
    // The coordinator creates the streams; agents never do.
    let mut coordinator =
        Coordinator::spawn(dir.path(), &CoordinatorSpec::new("blue"), &nats.url())?;
    let mut agents = Vec::new();
    for i in 0..sizes.agents.max(1) {
        let spec = AgentSpec::new(&format!("idle-{i:02}"))
            .heartbeat(Duration::from_secs(10))
            .disk(Duration::from_secs(60), vec![PathBuf::from("/")]);
        agents.push(Agent::spawn(dir.path(), &spec, &nats.url())?);
    }
    tokio::time::sleep(Duration::from_secs(sizes.warmup_secs)).await;
    let pids: Vec<i32> = agents
        .iter()
        .map(|a| a.proc().pid().context("agent is not running"))
        .collect::<Result<_>>()?;
    let start_ticks: Vec<u64> = pids
        .iter()
        .map(|p| parse_cpu_ticks(&proc_file(*p, "stat")?).context("unreadable stat"))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); pids.len()];
    while t0.elapsed() < Duration::from_secs(sizes.window_secs) {
        for (i, p) in pids.iter().enumerate() {
            let mb = parse_vm_rss_mb(&proc_file(*p, "status")?).context("no VmRSS")?;
            rss[i].push(mb);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    for (p, before) in pids.iter().zip(&start_ticks) {
        let after = parse_cpu_ticks(&proc_file(*p, "stat")?).context("unreadable stat")?;
        cpu.push((after.saturating_sub(*before)) as f64 / ticks_per_s / secs * 100.0);
    }
    for a in &mut agents {
        if !a.is_running() {
            bail!("agent {} exited during the window", a.host);
        }
        let _ = a.stop().await;
    }
    let _ = coordinator.stop().await;
    let per_agent_rss: Vec<f64> = rss.iter().filter_map(|v| stats::median(v)).collect();
    let peak = rss.iter().filter_map(|v| stats::max(v)).fold(0.0, f64::max);
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| fmt_num(*x))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    Ok(vec![
        RSS.measured(
            stats::median(&per_agent_rss).context("no samples")?,
            format!(
                "median of {} agents (each the median of 1 s samples over {} s); agents {}; peak {} MB",
                pids.len(),
                sizes.window_secs,
                list(&per_agent_rss),
                fmt_num(peak)
            ),
        ),
        CPU.measured(
            stats::median(&cpu).context("no samples")?,
            format!(
                "median of {} agents over {secs:.0} s ({ticks_per_s} ticks/s); agents {}",
                pids.len(),
                list(&cpu)
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_cpu_ticks() {
        let status = "Name:\tops-agent\nVmHWM:\t   9000 kB\nVmRSS:\t   8192 kB\n";
        let mb = parse_vm_rss_mb(status).unwrap();
        assert!((mb - 8.388608).abs() < 1e-9);
        let stat = "4242 (ops agent) S 1 4242 4242 0 -1 4194560 900 0 0 0 17 5 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }
}
