//! Scale: one real `ops-coordinator` (the binaries `OPSFLEET_BIN_DIR` names, so old and new
//! builds run the same section) fed `hosts` simulated hosts through NATS (one heartbeat and
//! one disk sample each, then a heartbeat per host every `heartbeat_secs` while the queries
//! run), and what that costs: ingest catch-up, coordinator RSS per host (VmRSS from /proc)
//! after ingest and after the queries, single pages of `ops.api.status` and `ops.api.hosts
//! state=lost` at cursors spread over the fleet, and the whole fleet's `opsctl status` and
//! `opsctl hosts --state lost`. In-process (`inproc`): projection row bytes per host,
//! snapshot, rebuild and one alert evaluation pass over the same fleet.

mod feed;
mod inproc;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opsfleet_proto::api::{HostsReply, StatusReply};
use opsfleet_tests::{bins, procs, Coordinator, CoordinatorSpec, NatsServer};
use tokio_util::sync::CancellationToken;

use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::stats;

const fn spec(
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    target: Option<Target>,
) -> FigSpec {
    FigSpec {
        key,
        label,
        unit,
        target,
    }
}

pub const CATCHUP: FigSpec = spec(
    "scale_ingest_catchup_s",
    "scale: ingest catch-up, 2 events/host",
    "s",
    None,
);
pub const RSS_INGEST: FigSpec = spec(
    "scale_rss_kb_per_host",
    "scale: coordinator RSS per host after ingest",
    "KB",
    Target::below(10.0),
);
pub const RSS_QUERIES: FigSpec = spec(
    "scale_rss_kb_per_host_after_queries",
    "scale: coordinator RSS per host after the queries",
    "KB",
    Target::below(10.0),
);
pub const STATUS_PAGE: FigSpec = spec(
    "scale_status_page_ms",
    "scale: one `status` page (200 hosts), median",
    "ms",
    Target::below(200.0),
);
pub const LOST_PAGE: FigSpec = spec(
    "scale_hosts_lost_page_ms",
    "scale: one `hosts --state lost` page, median",
    "ms",
    Target::below(200.0),
);
pub const STATUS_ALL: FigSpec = spec(
    "scale_status_all_s",
    "scale: `opsctl status`, whole fleet",
    "s",
    Target::below(5.0),
);
pub const LOST_ALL: FigSpec = spec(
    "scale_hosts_lost_all_s",
    "scale: `opsctl hosts --state lost`, whole fleet",
    "s",
    Target::below(5.0),
);
pub const ROW_BYTES: FigSpec = spec(
    "scale_projection_bytes_per_host",
    "scale: projection rows per host (serialised)",
    "B",
    None,
);
pub const SNAPSHOT: FigSpec = spec(
    "scale_snapshot_s",
    "scale: snapshot of every row (sled commit + flush)",
    "s",
    None,
);
pub const REBUILD: FigSpec = spec(
    "scale_rebuild_s",
    "scale: rebuild from the log (open + fold + digest)",
    "s",
    None,
);
pub const ALERTS: FigSpec = spec(
    "scale_alert_eval_ms",
    "scale: one alert evaluation pass, default rules",
    "ms",
    Target::below(1000.0),
);
pub const FIGURES: [&FigSpec; 11] = [
    &CATCHUP,
    &RSS_INGEST,
    &RSS_QUERIES,
    &STATUS_PAGE,
    &LOST_PAGE,
    &STATUS_ALL,
    &LOST_ALL,
    &ROW_BYTES,
    &SNAPSHOT,
    &REBUILD,
    &ALERTS,
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub hosts: usize,
    pub heartbeat_secs: u64,
    /// Single pages timed per view.
    pub pages: usize,
}

/// How long one whole-fleet opsctl command may take (the old code needed minutes).
const WHOLE_FLEET_PATIENCE: Duration = Duration::from_secs(900);
/// How long ingest may take to catch up.
const CATCHUP_PATIENCE: Duration = Duration::from_secs(900);
/// Pause before the last RSS reading: longer than the coordinator's trim period.
const SETTLE: Duration = Duration::from_secs(7);

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let mut figures = live(sizes).await?;
    let hosts = sizes.hosts;
    let m = tokio::task::spawn_blocking(move || inproc::run(hosts))
        .await
        .context("in-process task panicked")??;
    let passes = m
        .alert_passes_ms
        .iter()
        .map(|x| fmt_num(*x))
        .collect::<Vec<_>>()
        .join(" / ");
    figures.extend([
        ROW_BYTES.measured(
            m.row_bytes_per_host,
            format!("{} hosts, keys + JSON values", sizes.hosts),
        ),
        SNAPSHOT.measured(m.snapshot_s, format!("{} rows, one run", m.rows)),
        REBUILD.measured(
            m.rebuild_s,
            format!("{} events, one run, digest matches", m.events),
        ),
        ALERTS.measured(
            m.alert_pass_ms,
            format!(
                "median of {} passes over {} hosts: {passes}",
                m.alert_passes_ms.len(),
                sizes.hosts
            ),
        ),
    ]);
    Ok(figures)
}

/// The real coordinator's figures.
async fn live(sizes: &Sizes) -> Result<Vec<Figure>> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-scale-")
        .tempdir()
        .context("cannot create temp dir")?;
    let mut coordinator =
        Coordinator::spawn(dir.path(), &CoordinatorSpec::new("blue"), &nats.url())?;
    let client = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(120)))
        .connect(nats.url())
        .await
        .context("cannot connect to nats-server")?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(30));
    // The streams, as the coordinator creates them (it may not have yet).
    opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default())
        .await
        .context("cannot create the topology")?;
    let pid = coordinator
        .proc()
        .pid()
        .context("coordinator is not running")?;
    let rss_empty = rss_kb(pid)?;

    let mut hosts = feed::hosts(sizes.hosts);
    let start = Instant::now();
    let last = feed::preload(&js, &mut hosts).await?;
    caught_up(&client, last).await?;
    let catchup = start.elapsed().as_secs_f64();
    let rss_ingest = rss_kb(pid)?;

    let cancel = CancellationToken::new();
    let load = tokio::spawn(feed::steady(
        js.clone(),
        hosts,
        Duration::from_secs(sizes.heartbeat_secs.max(1)),
        cancel.clone(),
    ));
    let queried = queries(&client, &nats.url(), sizes).await;
    let rss_peak = rss_kb(pid)?;
    tokio::time::sleep(SETTLE).await;
    let rss_after = rss_kb(pid)?;
    cancel.cancel();
    let sent = load.await.context("load task panicked")??;
    coordinator.proc_mut().check_running()?;
    let _ = coordinator.stop().await;
    let q = queried?;

    let per_host = |kb: u64| kb as f64 / sizes.hosts.max(1) as f64;
    let pages = |v: &[f64]| {
        format!(
            "{} pages at cursors across the fleet, max {} ms, under {sent} heartbeats of load",
            v.len(),
            stats::max(v).map_or_else(|| "-".to_owned(), fmt_num)
        )
    };
    Ok(vec![
        CATCHUP.measured(catchup, format!("{} events published and persisted", last)),
        RSS_INGEST.measured(
            per_host(rss_ingest),
            format!(
                "VmRSS {} MB / {} hosts (empty: {} MB)",
                rss_ingest / 1024,
                sizes.hosts,
                rss_empty / 1024
            ),
        ),
        RSS_QUERIES.measured(
            per_host(rss_after),
            format!(
                "VmRSS {} MB {} s after the queries (right after: {} MB)",
                rss_after / 1024,
                SETTLE.as_secs(),
                rss_peak / 1024
            ),
        ),
        STATUS_PAGE.measured(
            stats::median(&q.status_pages).context("no pages")?,
            pages(&q.status_pages),
        ),
        LOST_PAGE.measured(
            stats::median(&q.lost_pages).context("no pages")?,
            pages(&q.lost_pages),
        ),
        STATUS_ALL.measured(
            q.status_all_s,
            format!(
                "{} hosts, {:.1} MB of JSON, one run",
                q.status_hosts,
                q.status_bytes as f64 / 1e6
            ),
        ),
        LOST_ALL.measured(
            q.lost_all_s,
            format!("{} lost of {} hosts, one run", q.lost_hosts, sizes.hosts),
        ),
    ])
}

/// What the queries measured.
struct Queried {
    status_pages: Vec<f64>,
    lost_pages: Vec<f64>,
    status_all_s: f64,
    status_hosts: usize,
    status_bytes: usize,
    lost_all_s: f64,
    lost_hosts: usize,
}

async fn queries(client: &async_nats::Client, url: &str, sizes: &Sizes) -> Result<Queried> {
    let n = sizes.pages.max(1);
    let mut status_pages = Vec::with_capacity(n);
    let mut lost_pages = Vec::with_capacity(n);
    for i in 0..n {
        let after = crate::sim::host_name(i * sizes.hosts / n);
        let req = serde_json::json!({ "after": after });
        let (ms, _): (f64, StatusReply) = timed_request(client, "ops.api.status", &req).await?;
        status_pages.push(ms);
        let req = serde_json::json!({ "after": after, "state": "lost" });
        let (ms, _): (f64, HostsReply) = timed_request(client, "ops.api.hosts", &req).await?;
        lost_pages.push(ms);
    }
    let opsctl = bins::bin(bins::OPSCTL)?;
    let (status_all_s, out) = opsctl_timed(&opsctl, url, &["status"]).await?;
    let status: StatusReply = serde_json::from_str(out.trim()).context("status JSON")?;
    let (lost_all_s, lost) = opsctl_timed(&opsctl, url, &["hosts", "--state", "lost"]).await?;
    let lost: HostsReply = serde_json::from_str(lost.trim()).context("hosts JSON")?;
    if status.hosts.len() != sizes.hosts {
        bail!(
            "status listed {} hosts of {}",
            status.hosts.len(),
            sizes.hosts
        );
    }
    Ok(Queried {
        status_pages,
        lost_pages,
        status_all_s,
        status_hosts: status.hosts.len(),
        status_bytes: out.len(),
        lost_all_s,
        lost_hosts: lost.hosts.len(),
    })
}

/// One request's round trip in ms, and its reply.
async fn timed_request<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    req: &serde_json::Value,
) -> Result<(f64, T)> {
    let payload = serde_json::to_vec(req).context("cannot encode the request")?;
    let start = Instant::now();
    let msg = client
        .request(subject.to_owned(), payload.into())
        .await
        .with_context(|| format!("{subject} did not answer"))?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let reply = serde_json::from_slice(&msg.payload)
        .with_context(|| format!("{subject} answered unexpected JSON"))?;
    Ok((ms, reply))
}

/// `opsctl --output json <args>` to completion: seconds and stdout.
async fn opsctl_timed(opsctl: &std::path::Path, url: &str, args: &[&str]) -> Result<(f64, String)> {
    let head = ["--nats", url, "--timeout", "60s", "--output", "json"];
    let all: Vec<&std::ffi::OsStr> = head.iter().chain(args).map(std::ffi::OsStr::new).collect();
    let start = Instant::now();
    let out = procs::run(opsctl, &all, WHOLE_FLEET_PATIENCE).await?.ok()?;
    Ok((start.elapsed().as_secs_f64(), out.stdout))
}

/// Waits until the coordinator has persisted stream sequence `last` (its API may not be up
/// yet: no answer is retried too).
async fn caught_up(client: &async_nats::Client, last: u64) -> Result<()> {
    let start = Instant::now();
    let req = serde_json::json!({ "limit": 1 });
    loop {
        let applied = match timed_request::<StatusReply>(client, "ops.api.status", &req).await {
            Ok((_, reply)) => reply.responder.applied_stream_seq,
            Err(_) => 0,
        };
        if applied >= last {
            return Ok(());
        }
        if start.elapsed() > CATCHUP_PATIENCE {
            bail!("coordinator persisted {applied} of {last} after {CATCHUP_PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// VmRSS of `pid`, KB.
fn rss_kb(pid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")
}
