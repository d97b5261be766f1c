//! Idle footprint of the real `ops-agent` binary with the default modules (heartbeat every
//! 10 s and disk of `/` every 60 s, their default intervals) connected to a real nats-server
//! and coordinator. Several agents run side by side for the same window; RSS (with its
//! anonymous and file-backed parts) and the thread count are sampled from `/proc/<pid>/status`
//! every second, CPU is the change of utime + stime in `/proc/<pid>/stat` over the window (and
//! per thread group from `/proc/<pid>/task`), where the RSS lies (executable, libraries, heap,
//! stack) from `/proc/<pid>/smaps` at the end of the window, and the binary's size is read from
//! disk.
//!
//! Each agent runs from its own copy of the binary, written, synced and dropped from the page
//! cache before it starts: one agent per host, started as after a boot. Agents sharing one file
//! would keep each other's code pages resident (the kernel pages out only pages no other
//! process maps), which no host in a fleet does.

mod procfs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opsfleet_tests::{bins, Agent, AgentSpec, Coordinator, CoordinatorSpec, NatsServer};

pub(crate) use procfs::{parse_cpu_ticks, proc_file, USER_HZ};
use procfs::{
    parse_status_count, parse_status_mb, read_rss_split, thread_ticks, GroupTicks, RssSplit,
};

use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::stats;

pub const RSS: FigSpec = FigSpec {
    key: "agent_idle_rss_mb",
    label: "agent idle RSS (default modules)",
    unit: "MB",
    target: Target::at_most(8.0),
};
pub const CPU: FigSpec = FigSpec {
    key: "agent_idle_cpu_pct",
    label: "agent idle CPU (default modules)",
    unit: "% core",
    target: Target::at_most(0.05),
};
/// No target: the size on disk of the measured binary (which build profile it came from
/// shows in the note), kept beside the RSS it explains.
pub const BINARY: FigSpec = FigSpec {
    key: "agent_binary_mb",
    label: "agent binary size (measured ops-agent)",
    unit: "MB",
    target: None,
};
/// No target: how many threads an idle agent runs, by thread group in the note.
pub const THREADS: FigSpec = FigSpec {
    key: "agent_idle_threads",
    label: "agent idle threads",
    unit: "threads",
    target: None,
};
pub const FIGURES: [&FigSpec; 4] = [&RSS, &CPU, &BINARY, &THREADS];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub agents: usize,
    pub warmup_secs: u64,
    pub window_secs: u64,
}

/// One agent's samples over the window.
#[derive(Debug, Default)]
struct Samples {
    rss: Vec<f64>,
    anon: Vec<f64>,
    file: Vec<f64>,
    threads: Vec<f64>,
}

impl Samples {
    fn read(&mut self, pid: i32) -> Result<()> {
        let status = proc_file(pid, "status")?;
        self.rss
            .push(parse_status_mb(&status, "VmRSS").context("no VmRSS")?);
        self.anon
            .push(parse_status_mb(&status, "RssAnon").context("no RssAnon")?);
        self.file
            .push(parse_status_mb(&status, "RssFile").context("no RssFile")?);
        self.threads
            .push(parse_status_count(&status, "Threads").context("no Threads")? as f64);
        Ok(())
    }
}

/// Per thread group: threads per agent and CPU (% of a core) per agent over the window,
/// averaged over the agents (`before`/`after`: each agent's `thread_ticks`).
fn group_cpu(
    before: &[BTreeMap<String, GroupTicks>],
    after: &[BTreeMap<String, GroupTicks>],
    secs: f64,
) -> String {
    let agents = after.len().max(1) as f64;
    let mut sum: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for (b, a) in before.iter().zip(after) {
        for (name, g) in a {
            let start = b.get(name).map_or(0, |g| g.ticks);
            let e = sum.entry(name).or_default();
            e.0 += g.threads;
            e.1 += g.ticks.saturating_sub(start);
        }
    }
    sum.iter()
        .map(|(name, (threads, ticks))| {
            let pct = *ticks as f64 / agents / USER_HZ / secs * 100.0;
            format!(
                "{name} x{} {} %",
                fmt_num(*threads as f64 / agents),
                fmt_num(pct)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Copies the agent binary `src` into directory `dir` (created) as `ops-agent`, syncs it and
/// drops it from the page cache, so that the agent starts from a file of its own that no
/// other process maps and that is as cold as after a boot.
fn own_copy(src: &std::path::Path, dir: &std::path::Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dst = dir.join(bins::AGENT);
    std::fs::copy(src, &dst)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    let file =
        std::fs::File::open(&dst).with_context(|| format!("cannot open {}", dst.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", dst.display()))?;
    // Advice only: a kernel that keeps the pages cached changes no figure's meaning.
    let _ = nix::fcntl::posix_fadvise(
        std::os::fd::AsRawFd::as_raw_fd(&file),
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    Ok(dst)
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
    // The binary the harness would run (the same lookup as `Agent::spawn`); each agent gets
    // its own copy of it.
    let bin = bins::bin(bins::AGENT)?;
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    let mut agents = Vec::new();
    for i in 0..sizes.agents.max(1) {
        let host = format!("idle-{i:02}");
        let copy = own_copy(&bin, &dir.path().join(format!("bin-{host}")))?;
        let spec = AgentSpec::new(&host)
            .heartbeat(Duration::from_secs(10))
            .disk(Duration::from_secs(60), vec![PathBuf::from("/")])
            .binary(&copy);
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
    let start_groups: Vec<_> = pids
        .iter()
        .map(|p| thread_ticks(*p))
        .collect::<Result<_>>()?;
    let t0 = Instant::now();
    let mut samples: Vec<Samples> = pids.iter().map(|_| Samples::default()).collect();
    while t0.elapsed() < Duration::from_secs(sizes.window_secs) {
        for (s, p) in samples.iter_mut().zip(&pids) {
            s.read(*p)?;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    for (p, before) in pids.iter().zip(&start_ticks) {
        let after = parse_cpu_ticks(&proc_file(*p, "stat")?).context("unreadable stat")?;
        cpu.push((after.saturating_sub(*before)) as f64 / ticks_per_s / secs * 100.0);
    }
    let end_groups: Vec<_> = pids
        .iter()
        .map(|p| thread_ticks(*p))
        .collect::<Result<_>>()?;
    let splits: Vec<RssSplit> = pids
        .iter()
        .map(|p| read_rss_split(*p))
        .collect::<Result<_>>()?;
    for a in &mut agents {
        if !a.is_running() {
            bail!("agent {} exited during the window", a.host);
        }
        let _ = a.stop().await;
    }
    let _ = coordinator.stop().await;
    let bin_bytes = std::fs::metadata(&bin)
        .with_context(|| format!("cannot stat {}", bin.display()))?
        .len();
    let medians = |f: fn(&Samples) -> &Vec<f64>| -> Vec<f64> {
        samples.iter().filter_map(|s| stats::median(f(s))).collect()
    };
    let per_agent_rss = medians(|s| &s.rss);
    let anon = stats::median(&medians(|s| &s.anon)).context("no samples")?;
    let file = stats::median(&medians(|s| &s.file)).context("no samples")?;
    let per_agent_threads = medians(|s| &s.threads);
    let split_mb = |f: fn(&RssSplit) -> u64| -> String {
        let v: Vec<f64> = splits.iter().map(|s| f(s) as f64 * 1024.0 / 1e6).collect();
        stats::median(&v).map_or_else(|| "-".to_owned(), fmt_num)
    };
    let peak = samples
        .iter()
        .filter_map(|s| stats::max(&s.rss))
        .fold(0.0, f64::max);
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
                "median of {} agents, each from its own copy of the binary (each the median \
                 of 1 s samples over {} s); agents {}; anonymous {} + file-backed {} MB; at the \
                 end: executable {} + libraries {} + heap {} + main stack {} MB; peak {} MB",
                pids.len(),
                sizes.window_secs,
                list(&per_agent_rss),
                fmt_num(anon),
                fmt_num(file),
                split_mb(|s| s.exe_kb),
                split_mb(|s| s.libs_kb),
                split_mb(|s| s.heap_kb),
                split_mb(|s| s.stack_kb),
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
        BINARY.measured(
            bin_bytes as f64 / 1e6,
            format!("{bin_bytes} bytes: {}", bin.display()),
        ),
        THREADS.measured(
            stats::median(&per_agent_threads).context("no samples")?,
            format!(
                "median of {} agents; per agent, threads alive at the end and their CPU over \
                 the window: {}",
                pids.len(),
                group_cpu(&start_groups, &end_groups, secs)
            ),
        ),
    ])
}
