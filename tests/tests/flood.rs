//! One misbehaving host cannot exhaust the coordinator's memory: against a real nats-server
//! and the real `ops-coordinator`, a client publishing as host `flood-01` on
//! `ops.evt.flood-01.<kind>` sends 100,000 events — first one incarnation whose seqs jump by
//! two (a gap per event), then ever-new incarnations, each opening with a gap, every event
//! naming a new module, disk, health check, log file, sentinel, backup job, janitor root or
//! label, and some events of incarnations older than every tracked one — while two real agents
//! report throughout.
//!
//! The bound on the coordinator's RSS (VmRSS of the child) is measured in the same test: first
//! a well-behaved host (`steady-01`: one incarnation, no gap, eight names per kind) publishes
//! as many events of the same shape and size, and the RSS it adds (the log in sled's cache,
//! batches) is the allowance; the flood may then add no more than 1.5 times that plus
//! `SLACK`. (The projection itself stops growing: see `a_flooding_host_row_stops_growing_once_
//! the_caps_are_full` in the coordinator's `projection/caps_tests.rs`.) Without the caps the
//! flood adds several times the allowance. The flooding host's state must be within the
//! caps with what was dropped counted in the status API; the agents' last seq must advance
//! while the flood is folded and after; and `rebuild --verify` must find the stored projection
//! equal to a refold. `--features slow-tests` floods 300,000 events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, context::PublishAckFuture};
use opsfleet_coordinator::projection::bounds::{
    DISKS_KEPT, GAP_RANGES_KEPT, INCARNATIONS_KEPT, MODULES_KEPT,
};
use opsfleet_proto::api::StatusReply;
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{AgentSpec, Cluster, CoordinatorSpec};
use uuid::Uuid;

const FLOOD_HOST: &str = "flood-01";
const STEADY_HOST: &str = "steady-01";
#[cfg(not(feature = "slow-tests"))]
const FLOOD_EVENTS: u64 = 100_000;
#[cfg(feature = "slow-tests")]
const FLOOD_EVENTS: u64 = 300_000;
/// The first part of the flood: one incarnation, a gap before every event.
const GAPPED: u64 = FLOOD_EVENTS / 10;
/// Every this many events of the second part belongs to an incarnation older than every one
/// tracked (once the host has `INCARNATIONS_KEPT` newer ones): a closed incarnation.
const STALE_EVERY: u64 = 10;
/// RSS the flood may add beyond what as many well-behaved events added: half as much again
/// (every name of the flood is allocated anew and later evicted, which fragments the heap,
/// and its fold is slower, so more is in flight), plus this.
const SLACK: u64 = 32 << 20;
/// PubAcks outstanding while publishing.
const IN_FLIGHT: usize = 512;
/// How long publishing and folding one burst may take on a loaded 2-core machine.
const BURST_TIMEOUT: Duration = Duration::from_secs(120);

/// A UUIDv7-shaped incarnation started at `ms`; ordered by `ms`, then `n`.
fn incarnation(ms: u64, n: u64) -> Uuid {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    b[10..].copy_from_slice(&n.to_be_bytes()[2..]);
    Uuid::from_bytes(b)
}

/// Who publishes: the control host, which stays within every cap (one incarnation, no gap,
/// eight names per kind), or the flooding host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sender {
    Steady,
    Flood,
}

/// The `i`-th event of `sender`: its incarnation, seq, module and a body naming something
/// (new, for the flooding host). Both senders' events have the same shape and size.
fn event(sender: Sender, i: u64, base_ms: u64) -> EventEnvelope {
    let (host, inc, seq, n) = match sender {
        Sender::Steady => (STEADY_HOST, incarnation(base_ms, 0), i + 1, i % 8),
        Sender::Flood if i < GAPPED => (FLOOD_HOST, incarnation(base_ms, 0), 2 * i + 2, i),
        Sender::Flood if is_stale(i) => {
            // Older than the flood's first incarnation: closed once 8 newer ones exist.
            (FLOOD_HOST, incarnation(base_ms - 1, i), 5, i)
        }
        // A new incarnation every event, opening with a gap of 1..=40 seqs.
        Sender::Flood => (FLOOD_HOST, incarnation(base_ms + i, i), 2 + i % 40, i),
    };
    let name = format!("{n:08}");
    let (module, body) = match n % 8 {
        0 => (
            "heartbeat",
            pb::event::Body::Heartbeat(pb::Heartbeat {
                agent_version: "flood".to_owned(),
                interval_ms: 1000,
                modules: vec![pb::ModuleStatus {
                    name: format!("m{n}"),
                    kind: "heartbeat".to_owned(),
                    state: pb::ModuleRunState::Running as i32,
                    expected_interval_ms: 1000,
                }],
                health: vec![pb::HealthSummary {
                    check: format!("hb-{name}"),
                    status: pb::HealthStatus::Ready as i32,
                    ..Default::default()
                }],
                labels: [(format!("label-{name}"), name.clone())].into(),
                ..Default::default()
            }),
        ),
        1 => (
            "disk",
            pb::event::Body::Disk(pb::DiskUsage {
                path: format!("/flood/{name}"),
                used_basis_points: 100,
                level: pb::DiskLevel::Ok as i32,
                ..Default::default()
            }),
        ),
        2 => (
            "log",
            pb::event::Body::LogMatch(pb::LogMatch {
                path: format!("/var/log/{name}.log"),
                pattern: "ERROR".to_owned(),
                excerpt: format!("ERROR {name}"),
                lines: 1,
                ..Default::default()
            }),
        ),
        3 => (
            "health",
            pb::event::Body::Health(pb::HealthCheck {
                check: name,
                probe: "tcp".to_owned(),
                status: pb::HealthStatus::Failed as i32,
                ..Default::default()
            }),
        ),
        4 => (
            "sentinel",
            pb::event::Body::Sentinel(pb::SentinelState {
                path: format!("/run/{name}"),
                status: pb::SentinelStatus::Missing as i32,
                ..Default::default()
            }),
        ),
        5 => (
            "backup",
            pb::event::Body::BackupStarted(pb::BackupStarted {
                job: name,
                run_id: format!("r{n}"),
                sources: vec![],
            }),
        ),
        6 => (
            "janitor",
            pb::event::Body::Janitor(pb::JanitorReport {
                root: format!("/srv/{name}"),
                removed_files: 1,
                ..Default::default()
            }),
        ),
        _ => (
            "log",
            pb::event::Body::ModuleState(pb::ModuleState {
                module: format!("m{n}"),
                kind: "log".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                config_fingerprint: format!("{n:064x}"),
                config_toml: format!("type = \"log\"\nname = \"m{n}\"\npaths = [\"/{name}\"]\n"),
                ..Default::default()
            }),
        ),
    };
    EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq,
        time_unix_ms: i64::try_from(base_ms).unwrap_or(i64::MAX),
        module: module.to_owned(),
        incarnation: inc,
        body,
    }
}

/// Whether the flood's `i`-th event belongs to a closed incarnation.
fn is_stale(i: u64) -> bool {
    i >= GAPPED + 10 * INCARNATIONS_KEPT as u64 && i.is_multiple_of(STALE_EVERY)
}

/// Events of closed incarnations the flood sends (dropped as duplicates, never folded).
fn stale_events() -> u64 {
    (0..FLOOD_EVENTS).filter(|i| is_stale(*i)).count() as u64
}

/// Publishes `FLOOD_EVENTS` events of `sender` with `IN_FLIGHT` PubAcks outstanding; counts
/// what was acked.
async fn flood(
    js: jetstream::Context,
    sender: Sender,
    base_ms: u64,
    acked: Arc<AtomicU64>,
) -> Result<()> {
    let mut pending: std::collections::VecDeque<PublishAckFuture> =
        std::collections::VecDeque::with_capacity(IN_FLIGHT);
    for i in 0..FLOOD_EVENTS {
        let ev = event(sender, i, base_ms);
        let subject = subjects::event_subject(&ev.host, ev.kind());
        let ack = js
            .publish(subject, ev.encode_to_vec().into())
            .await
            .with_context(|| format!("publish flood event {i}"))?;
        pending.push_back(ack);
        if pending.len() >= IN_FLIGHT {
            if let Some(ack) = pending.pop_front() {
                ack.await.context("flood PubAck")?;
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    while let Some(ack) = pending.pop_front() {
        ack.await.context("flood PubAck")?;
        acked.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// VmRSS of `pid` in bytes.
fn rss_bytes(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")?;
    Ok(kb * 1024)
}

/// Samples the RSS every 100 ms into `max` until `stop` is set.
async fn sample_rss(pid: i32, max: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rss) = rss_bytes(pid) {
            max.fetch_max(rss, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn last_seqs(reply: &StatusReply, hosts: &[&str]) -> BTreeMap<String, u64> {
    reply
        .hosts
        .iter()
        .filter(|h| hosts.contains(&h.host.as_str()))
        .map(|h| (h.host.clone(), h.last_seq))
        .collect()
}

fn events_of(reply: &StatusReply, host: &str) -> u64 {
    reply
        .hosts
        .iter()
        .find(|h| h.host == host)
        .map_or(0, |h| h.events)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// What one burst did.
struct Burst {
    reply: StatusReply,
    published_secs: f64,
    folded_secs: f64,
    /// The agents' last seqs seen while the burst was being folded, once both had advanced.
    during: Option<BTreeMap<String, u64>>,
}

/// Publishes `sender`'s burst and polls the status until the coordinator has folded `folded`
/// of its events, failing as soon as the sampled RSS exceeds `bound`.
async fn burst(
    c: &mut Cluster,
    sender: Sender,
    folded: u64,
    base_ms: u64,
    rss: &Arc<AtomicU64>,
    bound: u64,
    agents: &[&str],
) -> Result<Burst> {
    let host = match sender {
        Sender::Steady => STEADY_HOST,
        Sender::Flood => FLOOD_HOST,
    };
    let before = last_seqs(&c.status(Some("blue")).await?, agents);
    let mut js = jetstream::new(async_nats::connect(c.nats_url()).await?);
    js.set_timeout(Duration::from_secs(30));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut publisher = tokio::spawn(flood(js, sender, base_ms, Arc::clone(&acked)));
    let mut published_secs = None;
    let mut during = None;
    loop {
        if published_secs.is_none() {
            tokio::select! {
                r = &mut publisher => {
                    r.context("publisher task")??;
                    published_secs = Some(started.elapsed().as_secs_f64());
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let peak = rss.load(Ordering::Relaxed);
        ensure!(
            peak <= bound,
            "{host}: coordinator RSS reached {:.1} MiB (bound {:.1} MiB) with {} events acked",
            mib(peak),
            mib(bound),
            acked.load(Ordering::Relaxed)
        );
        ensure!(
            started.elapsed() < BURST_TIMEOUT,
            "{host}: not folded in {BURST_TIMEOUT:?} ({} events acked)",
            acked.load(Ordering::Relaxed)
        );
        let reply = c.status(Some("blue")).await?;
        let now = last_seqs(&reply, agents);
        let host_events = events_of(&reply, host);
        if host_events < folded && agents.iter().all(|h| now.get(*h) > before.get(*h)) {
            during.get_or_insert(now);
        }
        if let Some(published_secs) = published_secs {
            if reply.responder.behind == 0 && host_events == folded {
                return Ok(Burst {
                    reply,
                    published_secs,
                    folded_secs: started.elapsed().as_secs_f64(),
                    during,
                });
            }
        }
    }
}

/// The current RSS, the highest of a few samples a little apart.
async fn settled_rss(pid: i32) -> Result<u64> {
    let mut rss = 0;
    for _ in 0..5 {
        rss = rss.max(rss_bytes(pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(rss)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_host_leaves_coordinator_memory_bounded_and_other_hosts_flowing() {
    Cluster::run("flood", async |c: &mut Cluster| {
        let agents = ["web-01", "web-02"];
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        for host in agents {
            c.add_agent(AgentSpec::new(host).heartbeat(Duration::from_millis(200)))?;
        }
        let warm: BTreeMap<String, u64> = agents.iter().map(|h| ((*h).to_owned(), 10)).collect();
        c.wait_hosts_at_least("blue", &warm).await?;
        let pid = c.coordinator("blue")?.proc().pid().context("coordinator pid")?;
        c.status(Some("blue")).await?;
        let base_ms = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis(),
        )?;

        // The allowance: what as many well-behaved events of the same shape add.
        let baseline = settled_rss(pid).await?;
        let rss = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn(sample_rss(pid, Arc::clone(&rss), Arc::clone(&stop)));
        let steady = burst(c, Sender::Steady, FLOOD_EVENTS, base_ms, &rss, u64::MAX, &agents)
            .await?;
        let steady_peak = rss.load(Ordering::Relaxed);
        let allowance = steady_peak.saturating_sub(baseline);
        let before_flood = settled_rss(pid).await?.max(steady_peak);
        rss.store(before_flood, Ordering::Relaxed);
        let bound = before_flood + allowance + allowance / 2 + SLACK;

        // The flood.
        let stale = stale_events();
        let folded = FLOOD_EVENTS - stale;
        let flood = burst(c, Sender::Flood, folded, base_ms, &rss, bound, &agents).await?;
        let during = flood.during.clone().with_context(|| {
            "the agents' last seq did not advance while the flood was folded".to_owned()
        })?;
        let reply = &flood.reply;
        let h = reply
            .hosts
            .iter()
            .find(|h| h.host == FLOOD_HOST)
            .context("flood host missing")?;
        let t = h.truncated;
        // Incarnations accepted: the gapped one, then one per event but the stale ones.
        let incarnations = 1 + (FLOOD_EVENTS - GAPPED - stale);
        ensure!(
            t.incarnations == incarnations - INCARNATIONS_KEPT as u64,
            "truncated incarnations {} (expected {})",
            t.incarnations,
            incarnations - INCARNATIONS_KEPT as u64
        );
        ensure!(
            t.gap_ranges >= GAPPED - GAP_RANGES_KEPT as u64 && t.gap_seqs >= t.gap_ranges,
            "gap ranges closed: {t:?}"
        );
        // Modules do not pile up to their cap here: each heartbeat lists the host's modules
        // and the others are forgotten (`projection/host/forget.rs`); the bound on them is
        // checked below, their cap by `caps_tests::module_names_beyond_the_cap_evict_the_oldest`.
        let named = [
            t.disks,
            t.health_checks,
            t.log_files,
            t.sentinels,
            t.backup_jobs,
            t.janitor_roots,
        ];
        ensure!(named.iter().all(|n| *n > 0), "a named map was not capped: {t:?}");
        ensure!(h.gaps.len() <= GAP_RANGES_KEPT, "{} gap ranges", h.gaps.len());
        ensure!(h.modules.len() <= MODULES_KEPT, "{} modules", h.modules.len());
        ensure!(h.disks.len() <= DISKS_KEPT, "{} disks", h.disks.len());
        ensure!(
            reply.duplicates_dropped >= stale,
            "duplicates_dropped {} < {stale} events of closed incarnations",
            reply.duplicates_dropped
        );
        let steady_host = steady
            .reply
            .hosts
            .iter()
            .find(|h| h.host == STEADY_HOST)
            .context("steady host missing")?;
        ensure!(
            steady_host.truncated.is_empty(),
            "the well-behaved host was truncated: {:?}",
            steady_host.truncated
        );

        // The agents go on being folded after the flood.
        let after_flood = last_seqs(reply, &agents);
        let later = after_flood.iter().map(|(h, s)| (h.clone(), s + 5)).collect();
        c.wait_hosts_at_least("blue", &later).await?;
        stop.store(true, Ordering::Relaxed);
        sampler.await?;
        let peak = rss.load(Ordering::Relaxed);
        ensure!(peak <= bound, "peak RSS {:.1} MiB > bound", mib(peak));
        eprintln!(
            "flood: {FLOOD_EVENTS} events each; RSS baseline {:.1} MiB, steady burst peak {:.1} \
             MiB (published {:.1}s, folded {:.1}s), before the flood {:.1} MiB, flood peak \
             {:.1} MiB (bound {:.1} MiB; published {:.1}s, folded {:.1}s); agents during {during:?}, \
             after {after_flood:?}; truncated: {}",
            mib(baseline),
            mib(steady_peak),
            steady.published_secs,
            steady.folded_secs,
            mib(before_flood),
            mib(peak),
            mib(bound),
            flood.published_secs,
            flood.folded_secs,
            t.describe()
        );

        // The capped fold is deterministic: the stored projection equals a refold.
        c.stop_agents().await?;
        let blue = c.coordinator("blue")?;
        blue.stop().await?;
        let (report, out) = blue.rebuild(true).await?;
        ensure!(report.matches, "rebuild --verify: {report:?}\n{}", out.stderr);
        Ok(())
    })
    .await;
}
