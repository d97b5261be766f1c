//! Failover of the real `ops-coordinator` binaries (two of them, lease TTL 3 s, the default):
//! takeover after `kill -9` of the active with fast takeover (`takeover_after`, 1 s by default,
//! as the local cluster runs) beside the TTL lease alone (an older build given by
//! `--failover-baseline-bin`, or this one with fast takeover off), in the same run; and
//! graceful handover both through the failover API (what `opsctl failover` sends) and by
//! SIGTERM (a clean stop deletes the lease). Each time runs from the kill, request or signal to
//! the moment a watch on the lease key sees the standby's write that makes it active.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use nix::sys::signal::Signal;
use opsfleet_proto::api::{FailoverRequest, StatusReply};
use opsfleet_proto::kv::{LeaderRecord, LEADER_KEY};
use opsfleet_proto::subjects;
use opsfleet_tests::{Coordinator, CoordinatorSpec, NatsServer};
use tokio::sync::mpsc;

use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::stats;

/// The coordinators' default lease TTL, which the bench runs with.
pub const TTL_S: f64 = 3.0;

pub const CRASH_MEDIAN: FigSpec = FigSpec {
    key: "failover_crash_median",
    label: "crash failover (kill -9), fast takeover, median",
    unit: "s",
    target: Target::at_most(1.0),
};
pub const CRASH_MAX: FigSpec = FigSpec {
    key: "failover_crash_max",
    label: "crash failover (kill -9), fast takeover, max",
    unit: "s",
    target: Target::at_most(1.5),
};
pub const CRASH_TTL_MEDIAN: FigSpec = FigSpec {
    key: "failover_crash_ttl_median",
    label: "crash failover (kill -9), TTL lease only, median",
    unit: "s",
    target: None,
};
pub const CRASH_TTL_MAX: FigSpec = FigSpec {
    key: "failover_crash_ttl_max",
    label: "crash failover (kill -9), TTL lease only, max",
    unit: "s",
    target: None,
};
pub const HANDOVER_API: FigSpec = FigSpec {
    key: "handover_api_median",
    label: "graceful handover (failover API), median",
    unit: "ms",
    target: Target::at_most(50.0),
};
pub const HANDOVER_SIGTERM: FigSpec = FigSpec {
    key: "handover_sigterm_median",
    label: "graceful handover (SIGTERM of the active), median",
    unit: "ms",
    target: Target::at_most(50.0),
};
pub const FIGURES: [&FigSpec; 6] = [
    &CRASH_MEDIAN,
    &CRASH_MAX,
    &CRASH_TTL_MEDIAN,
    &CRASH_TTL_MAX,
    &HANDOVER_API,
    &HANDOVER_SIGTERM,
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub crash_repeats: usize,
    pub handover_repeats: usize,
    /// `[topology] takeover_after` of the fast pair, ms.
    pub takeover_after_ms: u64,
    /// Directory of the baseline's `ops-coordinator`; `None`: this build, fast takeover off.
    pub baseline_bin: Option<PathBuf>,
}

/// A lease write seen by the watch: when, and who holds the lease now (`None`: deleted or aged
/// out).
type Seen = (Instant, Option<String>);

struct Pair {
    coords: Vec<Coordinator>,
    client: async_nats::Client,
    watch: mpsc::UnboundedReceiver<Seen>,
    holder: String,
    /// The holder's renewal period: kills land at random points of it.
    renew_every: Duration,
    /// When the watch last saw the lease deleted or aged out (a marker).
    gone_at: Option<Instant>,
    /// Per crash: (lease age at the kill, marker seen after the kill), seconds.
    crash_detail: Vec<(f64, f64)>,
}

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-failover-")
        .tempdir()
        .context("cannot create temp dir")?;
    // The baseline first: the TTL lease alone.
    let (ttl_spec, ttl_bin, ttl_what) = match &sizes.baseline_bin {
        Some(d) => (
            String::new(),
            Some(d.join(opsfleet_tests::bins::COORDINATOR)),
            format!("the ops-coordinator in {}", d.display()),
        ),
        None => (
            "takeover_after = \"0s\"".to_owned(),
            None,
            "this build, takeover_after = \"0s\"".to_owned(),
        ),
    };
    let ttl_dir = dir.path().join("ttl");
    let mut pair = Pair::start(&ttl_dir, &nats, &ttl_spec, ttl_bin.as_deref(), 1000).await?;
    let mut ttl = Vec::new();
    for _ in 0..sizes.crash_repeats {
        ttl.push(pair.crash_once().await?);
    }
    pair.stop().await;
    let ttl_detail = std::mem::take(&mut pair.crash_detail);
    // The fast pair, on a fresh lease bucket's history (same server, new key holder).
    let after = Duration::from_millis(sizes.takeover_after_ms);
    let fast_spec = format!("takeover_after = \"{}ms\"", sizes.takeover_after_ms);
    let renew = (after - (after / 5).max(Duration::from_millis(200))) / 4;
    let fast_dir = dir.path().join("fast");
    let mut pair =
        Pair::start(&fast_dir, &nats, &fast_spec, None, renew.as_millis() as u64).await?;
    let mut crash = Vec::new();
    for _ in 0..sizes.crash_repeats {
        crash.push(pair.crash_once().await?);
    }
    let mut api = Vec::new();
    for _ in 0..sizes.handover_repeats {
        api.push(pair.handover_api_once().await? * 1000.0);
    }
    let mut term = Vec::new();
    for _ in 0..sizes.handover_repeats {
        term.push(pair.sigterm_once().await? * 1000.0);
    }
    pair.stop().await;
    let runs = Runs {
        crash: &crash,
        crash_detail: &pair.crash_detail,
        takeover_after: after,
        ttl: &ttl,
        ttl_detail: &ttl_detail,
        ttl_what: &ttl_what,
        api: &api,
        term: &term,
    };
    figures(&runs)
}

/// What the section measured (seconds for crashes, ms for handovers).
struct Runs<'a> {
    crash: &'a [f64],
    crash_detail: &'a [(f64, f64)],
    takeover_after: Duration,
    ttl: &'a [f64],
    ttl_detail: &'a [(f64, f64)],
    ttl_what: &'a str,
    api: &'a [f64],
    term: &'a [f64],
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| fmt_num(*x))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The figures from the runs.
fn figures(r: &Runs<'_>) -> Result<Vec<Figure>> {
    let med = |v: &[f64]| stats::median(v).context("no repeats");
    let ages = |d: &[(f64, f64)]| list(&d.iter().map(|d| d.0).collect::<Vec<_>>());
    Ok(vec![
        CRASH_MEDIAN.measured(
            med(r.crash)?,
            format!(
                "median of {} kills at random points of the renewal period, takeover_after {} s, \
                 TTL {TTL_S} s; runs {}; lease age at kill {}; speed-up over the TTL baseline \
                 of this run {}x",
                r.crash.len(),
                fmt_num(r.takeover_after.as_secs_f64()),
                list(r.crash),
                ages(r.crash_detail),
                fmt_num(med(r.ttl)? / med(r.crash)?),
            ),
        ),
        CRASH_MAX.measured(
            stats::max(r.crash).context("no repeats")?,
            format!("max of {} kills", r.crash.len()),
        ),
        CRASH_TTL_MEDIAN.measured(
            med(r.ttl)?,
            format!(
                "baseline, {}: median of {} kills, TTL {TTL_S} s; runs {}; lease age at kill {}; \
                 aged-out marker seen {} s after kill",
                r.ttl_what,
                r.ttl.len(),
                list(r.ttl),
                ages(r.ttl_detail),
                list(&r.ttl_detail.iter().map(|d| d.1).collect::<Vec<_>>()),
            ),
        ),
        CRASH_TTL_MAX.measured(
            stats::max(r.ttl).context("no repeats")?,
            format!("baseline: max of {} kills", r.ttl.len()),
        ),
        HANDOVER_API.measured(
            med(r.api)?,
            format!("median of {}; runs {}", r.api.len(), list(r.api)),
        ),
        HANDOVER_SIGTERM.measured(
            med(r.term)?,
            format!("median of {}; runs {}", r.term.len(), list(r.term)),
        ),
    ])
}

async fn wait_bucket(js: &jetstream::Context) -> Result<kv::Store> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match js.get_key_value(subjects::LEADER_BUCKET).await {
            Ok(b) => return Ok(b),
            Err(e) if Instant::now() > deadline => {
                bail!("KV bucket {} did not appear: {e}", subjects::LEADER_BUCKET)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Forwards every change of the lease key with the instant it was seen.
async fn spawn_watch(bucket: &kv::Store) -> Result<mpsc::UnboundedReceiver<Seen>> {
    let mut w = bucket
        .watch_with_history(LEADER_KEY)
        .await
        .context("cannot watch the lease")?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(entry) = w.next().await {
            let at = Instant::now();
            let Ok(entry) = entry else { continue };
            let holder = match entry.operation {
                kv::Operation::Put => serde_json::from_slice::<LeaderRecord>(&entry.value)
                    .ok()
                    .map(|r| r.holder),
                _ => None,
            };
            if tx.send((at, holder)).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

impl Pair {
    /// Coordinators blue and green on `nats`, with a watch on the lease; waits for the first
    /// holder.
    async fn start(
        dir: &std::path::Path,
        nats: &NatsServer,
        topology: &str,
        bin: Option<&std::path::Path>,
        renew_ms: u64,
    ) -> Result<Pair> {
        let mut coords = Vec::new();
        for name in ["blue", "green"] {
            let spec = CoordinatorSpec::new(name).topology_toml(topology);
            coords.push(match bin {
                Some(bin) => Coordinator::spawn_bin(dir, &spec, &nats.url(), bin)?,
                None => Coordinator::spawn(dir, &spec, &nats.url())?,
            });
        }
        let client = async_nats::connect(nats.url())
            .await
            .context("cannot connect to nats-server")?;
        let js = jetstream::new(client.clone());
        let bucket = wait_bucket(&js).await?;
        let watch = spawn_watch(&bucket).await?;
        let mut pair = Pair {
            coords,
            client,
            watch,
            holder: String::new(),
            renew_every: Duration::from_millis(renew_ms),
            gone_at: None,
            crash_detail: Vec::new(),
        };
        pair.holder = pair.next_holder(None, Duration::from_secs(60)).await?.1;
        Ok(pair)
    }

    async fn stop(&mut self) {
        for c in &mut self.coords {
            let _ = c.stop().await;
        }
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.coords
            .iter()
            .position(|c| c.name == name)
            .with_context(|| format!("no coordinator named {name}"))
    }

    fn standby_name(&self) -> Result<String> {
        self.coords
            .iter()
            .find(|c| c.name != self.holder)
            .map(|c| c.name.clone())
            .context("no standby")
    }

    /// The next lease write naming a holder other than `not` (any holder when `None`).
    async fn next_holder(
        &mut self,
        not: Option<&str>,
        within: Duration,
    ) -> Result<(Instant, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.watch.recv()).await {
                Ok(Some((at, Some(h)))) if Some(h.as_str()) != not => return Ok((at, h)),
                Ok(Some((at, None))) => {
                    self.gone_at.get_or_insert(at);
                }
                Ok(Some(_)) => continue,
                Ok(None) => bail!("the lease watch ended"),
                Err(_) => bail!("no new lease holder within {within:?}"),
            }
        }
    }

    /// Discards what the watch saw so far; returns when the holder last wrote the lease
    /// (its latest renewal).
    fn drain(&mut self) -> Option<Instant> {
        let mut last = None;
        while let Ok((at, h)) = self.watch.try_recv() {
            if h.as_deref() == Some(self.holder.as_str()) {
                last = Some(at);
            }
        }
        last
    }

    /// Waits until `name` answers status as a standby, then lets it settle for 2 s (the
    /// state an operator's standby is in when the active fails).
    async fn wait_standby_ready(&mut self, name: &str) -> Result<()> {
        let subject = subjects::api_subject_for(subjects::API_STATUS, name);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let i = self.index(name)?;
            self.coords[i].proc_mut().check_running()?;
            if let Ok(Ok(msg)) = tokio::time::timeout(
                Duration::from_secs(5),
                self.client.request(subject.clone(), "{}".into()),
            )
            .await
            {
                if serde_json::from_slice::<StatusReply>(&msg.payload)
                    .is_ok_and(|r| r.responder.role == opsfleet_proto::api::LeaderRole::Standby)
                {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("{name} did not answer as standby within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    }

    /// kill -9 of the active; seconds until the standby holds the lease. The killed one is
    /// restarted as the new standby.
    async fn crash_once(&mut self) -> Result<f64> {
        let standby = self.standby_name()?;
        self.wait_standby_ready(&standby).await?;
        // Kill at a random point of the renewal period, not phase-locked to it.
        let jitter_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_millis()) as f64
            / 1000.0
            * self.renew_every.as_millis() as f64;
        tokio::time::sleep(Duration::from_millis(jitter_ms as u64)).await;
        let old = self.holder.clone();
        let i = self.index(&old)?;
        let renewed = self.drain();
        self.gone_at = None;
        let t0 = Instant::now();
        self.coords[i]
            .proc_mut()
            .signal(Signal::SIGKILL)
            .context("cannot kill the active")?;
        let (at, h) = self
            .next_holder(Some(&old), Duration::from_secs(60))
            .await?;
        let took = at.saturating_duration_since(t0).as_secs_f64();
        let age = renewed.map_or(f64::NAN, |r| t0.saturating_duration_since(r).as_secs_f64());
        let gone = self
            .gone_at
            .map_or(f64::NAN, |g| g.saturating_duration_since(t0).as_secs_f64());
        self.crash_detail.push((age, gone));
        self.coords[i]
            .proc_mut()
            .wait_exit(Duration::from_secs(30))
            .await?;
        self.coords[i].restart()?;
        self.holder = h;
        Ok(took)
    }

    /// `ops.api.failover` to the active with `to = standby`; seconds until the standby holds
    /// the lease.
    async fn handover_api_once(&mut self) -> Result<f64> {
        let standby = self.standby_name()?;
        self.wait_standby_ready(&standby).await?;
        let old = self.holder.clone();
        let req = serde_json::to_vec(&FailoverRequest {
            to: Some(standby.clone()),
            requested_by: Some("bench".to_owned()),
        })
        .context("encode request")?;
        self.drain();
        let t0 = Instant::now();
        self.client
            .request(
                subjects::api_subject_for(subjects::API_FAILOVER, &old),
                req.into(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("failover request failed: {e}"))?;
        let (at, h) = self
            .next_holder(Some(&old), Duration::from_secs(60))
            .await?;
        self.holder = h;
        Ok(at.saturating_duration_since(t0).as_secs_f64())
    }

    /// SIGTERM of the active (it deletes the lease on the way out); seconds until the standby
    /// holds the lease. The stopped one is restarted as the new standby.
    async fn sigterm_once(&mut self) -> Result<f64> {
        let standby = self.standby_name()?;
        self.wait_standby_ready(&standby).await?;
        let old = self.holder.clone();
        let i = self.index(&old)?;
        self.drain();
        let t0 = Instant::now();
        self.coords[i]
            .proc_mut()
            .signal(Signal::SIGTERM)
            .context("cannot signal the active")?;
        let (at, h) = self
            .next_holder(Some(&old), Duration::from_secs(60))
            .await?;
        let took = at.saturating_duration_since(t0).as_secs_f64();
        self.coords[i]
            .proc_mut()
            .wait_exit(Duration::from_secs(60))
            .await?;
        self.coords[i].restart()?;
        self.holder = h;
        Ok(took)
    }
}
