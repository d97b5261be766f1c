//! Rollout of N simulated hosts by one real `ops-coordinator` (issue 16): started through
//! `ops.api.rollout` (a `RolloutStart`: canary 1, waves 10,50,100, `max_unavailable` 10,
//! `soak_ms` 0, no ready samples: what is timed is the coordinator's own pace, its tick and the
//! soak's settle floor), its steps watched on the bus (`ops.coord.*.rollout`). Figures: the
//! total time, each wave's `wave_started` → deploy gate passed, the per-host overhead beside
//! the simulated deploys, the coordinator's CPU over the rollout beside the same fleet idle for
//! as long (heartbeats only), and `noop --all` to the same hosts as the command path's baseline.

mod figures;
mod fleet;
mod timing;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use opsfleet_proto::api::{
    ApiError, CommandAction, CommandReply, CommandRequest, RolloutOp, RolloutPhase, RolloutReply,
    RolloutRequest, RolloutStart, RolloutView, RolloutsReply, RolloutsRequest, Targets,
};
use opsfleet_proto::pb::{self, rollout_step::Step};
use opsfleet_proto::{subjects, EventEnvelope};
use opsfleet_tests::{Coordinator, CoordinatorSpec, NatsServer};
use tokio_util::sync::CancellationToken;

use crate::fanout::{wait_active, wait_hosts};
use crate::idle::proc_file;
use crate::report::{fmt_num, Figure};
use crate::sim::now_unix_ms;
pub use figures::FIGURES;
use figures::{figures, list, Round};
use fleet::{DeployCounts, FleetSpec};
use timing::WaveSpan;

/// The rollout's shape: every host after the canary in waves of these cumulative percentages.
const CANARY: u32 = 1;
const WAVE_PERCENTS: [u32; 3] = [10, 50, 100];
/// How long a rollout may take before the section gives up on it.
const ROLLOUT_PATIENCE: Duration = Duration::from_secs(600);
/// Pause between a rollout's end and its idle window, so the last step's fold is not in it.
const SETTLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub hosts: usize,
    pub repeats: usize,
    pub deploy_ms: u64,
    pub max_unavailable: u32,
    pub heartbeat_ms: u64,
}

/// What the watcher saw on the bus: every rollout step by rollout id, and when each command
/// completed.
#[derive(Default)]
struct Seen {
    steps: HashMap<String, Vec<pb::RolloutStep>>,
    completed: HashMap<String, Instant>,
}

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let nats = NatsServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-rollout-")
        .tempdir()
        .context("cannot create temp dir")?;
    // The test spec allows unidentified requests ([api] allow_unidentified), so the start goes
    // to plain `ops.api.rollout` (no operator identity).
    let mut coordinator =
        Coordinator::spawn(dir.path(), &CoordinatorSpec::new("blue"), &nats.url())?;
    let client = async_nats::connect(nats.url())
        .await
        .context("cannot connect to nats-server")?;
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(30));
    wait_active(&client, &mut coordinator).await?;
    let pid = coordinator
        .proc()
        .pid()
        .context("coordinator is not running")?;

    let cancel = CancellationToken::new();
    let result = async {
        let seen = Arc::new(Mutex::new(Seen::default()));
        watch(&client, &seen, &cancel).await?;
        let counts = DeployCounts::default();
        let spec = FleetSpec {
            hosts: sizes.hosts,
            deploy: Duration::from_millis(sizes.deploy_ms),
            heartbeat: Duration::from_millis(sizes.heartbeat_ms),
        };
        fleet::start(&js, &spec, &counts, &cancel).await?;
        wait_hosts(&client, sizes.hosts).await?;
        let mut rounds = Vec::new();
        for r in 0..sizes.repeats {
            let round = one_round(&client, &seen, &counts, pid, r, sizes).await?;
            coordinator.proc_mut().check_running()?;
            rounds.push(round);
        }
        figures(&rounds, sizes)
    }
    .await;
    cancel.cancel();
    let _ = coordinator.stop().await;
    result
}

/// Subscribes (core) to the coordinators' rollout steps and the agents' completions.
async fn watch(
    client: &async_nats::Client,
    seen: &Arc<Mutex<Seen>>,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut steps = client
        .subscribe("ops.coord.*.rollout")
        .await
        .context("cannot subscribe")?;
    let mut done = client
        .subscribe("ops.evt.*.command_completed")
        .await
        .context("cannot subscribe")?;
    client.flush().await.context("cannot flush")?;
    let seen = Arc::clone(seen);
    let cancel = cancel.clone();
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => return,
                Some(m) = steps.next() => m,
                Some(m) = done.next() => m,
                else => return,
            };
            let at = Instant::now();
            let Ok(ev) = EventEnvelope::decode(&msg.payload) else {
                continue;
            };
            let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
            match ev.body {
                pb::event::Body::Rollout(step) => s
                    .steps
                    .entry(step.rollout_id.clone())
                    .or_default()
                    .push(step),
                pb::event::Body::CommandCompleted(c) => {
                    s.completed.insert(c.command_id, at);
                }
                _ => {}
            }
        }
    });
    Ok(())
}

fn coordinator_ticks(pid: i32) -> Result<String> {
    proc_file(pid, "stat")
}

/// Repeat `r`: a rollout of `web` to version `<r+2>.0` over every host, then the same fleet
/// idle for as long, then `noop --all`.
async fn one_round(
    client: &async_nats::Client,
    seen: &Mutex<Seen>,
    counts: &DeployCounts,
    pid: i32,
    r: usize,
    sizes: &Sizes,
) -> Result<Round> {
    let version = format!("{}.0", r + 2);
    let start = RolloutStart {
        canary: CANARY,
        waves: WAVE_PERCENTS.to_vec(),
        max_unavailable: sizes.max_unavailable,
        all: true,
        ready_samples: 0,
        soak_ms: 0,
        ..RolloutStart::new(fleet::SERVICE, &version)
    };
    let req = RolloutRequest {
        op: RolloutOp::Start,
        start: Some(start),
        id: None,
        service: None,
        requested_by: "bench".to_owned(),
    };
    let stat0 = coordinator_ticks(pid)?;
    let t0 = Instant::now();
    let t0_unix_ms = now_unix_ms();
    let reply: RolloutReply = api(client, subjects::API_ROLLOUT, &req).await?;
    let id = reply.rollout.id;
    let ended = wait_ended(seen, &id).await;
    let window = t0.elapsed();
    let stat1 = coordinator_ticks(pid)?;
    let (ended_at, outcome) = match ended {
        Ok(e) => e,
        Err(e) => bail!("{e:#}; {}", describe(&rollout_view(client, &id).await?)),
    };
    // The bus carries the ended step before the coordinator has folded it back.
    let view = folded_view(client, &id).await?;
    check_once(&view, counts, &id, sizes.hosts)?;
    if outcome != "completed" || view.phase != RolloutPhase::Completed {
        bail!("rollout {id} ended {outcome}: {}", describe(&view));
    }
    let steps = (seen.lock().unwrap_or_else(|e| e.into_inner()).steps)
        .get(&id)
        .cloned()
        .unwrap_or_default();
    let spans = timing::wave_spans(&steps);
    if spans.len() != view.waves.len() {
        bail!(
            "saw {} of the {} waves' start and deploy gate on the bus",
            spans.len(),
            view.waves.len()
        );
    }
    let cpu_ticks = timing::cpu_ticks_between(&stat0, &stat1).context("unreadable stat")?;
    eprintln!(
        "    rollout {id} steps (ms after the request): {}",
        timing::timeline(&steps, t0_unix_ms)
    );

    tokio::time::sleep(SETTLE).await;
    let idle0 = coordinator_ticks(pid)?;
    let i0 = Instant::now();
    tokio::time::sleep(window).await;
    let idle1 = coordinator_ticks(pid)?;
    let idle_s = i0.elapsed().as_secs_f64();
    let idle_ticks = timing::cpu_ticks_between(&idle0, &idle1).context("unreadable stat")?;

    let noop_ms = noop_all(client, seen, sizes.hosts).await?;
    let round = Round {
        total_ms: (ended_at - t0_unix_ms) as f64,
        spans,
        cpu_ticks,
        window_s: window.as_secs_f64(),
        idle_ticks,
        idle_s,
        noop_ms,
    };
    eprintln!(
        "    rollout {id}: {} s, waves {} ms, CPU {} ticks over {:.1} s (idle {} ticks), noop --all {} ms",
        fmt_num(round.total_ms / 1000.0),
        list(&round.spans.iter().map(WaveSpan::ms).collect::<Vec<_>>()),
        round.cpu_ticks,
        round.window_s,
        round.idle_ticks,
        fmt_num(round.noop_ms)
    );
    Ok(round)
}

/// Sends `req` to an API subject and decodes the reply (or the coordinator's error).
async fn api<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &str,
    req: &impl serde::Serialize,
) -> Result<T> {
    let body = serde_json::to_vec(req).context("encode request")?;
    let msg = client
        .send_request(
            subject.to_owned(),
            async_nats::Request::new()
                .payload(body.into())
                .timeout(Some(Duration::from_secs(60))),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{subject} failed: {e}"))?;
    serde_json::from_slice(&msg.payload).map_err(|_| {
        match serde_json::from_slice::<ApiError>(&msg.payload) {
            Ok(e) => anyhow::anyhow!("{subject}: {}", e.error),
            Err(_) => anyhow::anyhow!(
                "{subject}: unexpected reply {}",
                String::from_utf8_lossy(&msg.payload)
            ),
        }
    })
}

/// Waits for the rollout's `ended` step on the bus: its time and outcome.
async fn wait_ended(seen: &Mutex<Seen>, id: &str) -> Result<(i64, String)> {
    let deadline = Instant::now() + ROLLOUT_PATIENCE;
    loop {
        {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let ended = (s.steps.get(id).into_iter().flatten()).find_map(|st| match &st.step {
                Some(Step::Ended(e)) => Some((st.at_unix_ms, e.outcome.clone())),
                _ => None,
            });
            if let Some(e) = ended {
                return Ok(e);
            }
        }
        if Instant::now() > deadline {
            bail!("rollout {id} did not end within {ROLLOUT_PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The rollout once the coordinator shows it ended (at most 30 s after the bus did).
async fn folded_view(client: &async_nats::Client, id: &str) -> Result<RolloutView> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = rollout_view(client, id).await?;
        if view.phase.is_final() {
            return Ok(view);
        }
        if Instant::now() > deadline {
            bail!(
                "rollout {id} ended on the bus but not in ops.api.rollouts within 30 s: {}",
                describe(&view)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rollout_view(client: &async_nats::Client, id: &str) -> Result<RolloutView> {
    let req = RolloutsRequest {
        id: Some(id.to_owned()),
        ..RolloutsRequest::default()
    };
    let reply: RolloutsReply = api(client, subjects::API_ROLLOUTS, &req).await?;
    reply
        .rollouts
        .into_iter()
        .next()
        .with_context(|| format!("ops.api.rollouts does not list {id}"))
}

/// Every host deployed exactly once, by the simulated hosts' own count and by the rollout's.
fn check_once(view: &RolloutView, counts: &DeployCounts, id: &str, hosts: usize) -> Result<()> {
    let c = counts.lock().unwrap_or_else(|e| e.into_inner());
    let ran: Vec<(&String, u32)> = (c.iter())
        .filter(|((r, _), _)| r == id)
        .map(|((_, h), n)| (h, *n))
        .collect();
    let twice: Vec<String> = (ran.iter())
        .filter(|(_, n)| *n > 1)
        .map(|(h, n)| format!("{h} x{n}"))
        .collect();
    let counted: Vec<String> = (view.hosts.iter())
        .filter(|h| h.deploys != 1)
        .map(|h| format!("{} deploys={}", h.host, h.deploys))
        .collect();
    if !twice.is_empty() || !counted.is_empty() || ran.len() != hosts {
        bail!(
            "rollout {id}: {} of {hosts} hosts deployed; deployed more than once: [{}]; \
             the rollout counts otherwise: [{}]",
            ran.len(),
            twice.join(", "),
            counted.join(", ")
        );
    }
    Ok(())
}

/// The rollout in a line: phase, reason, waves and the last steps.
fn describe(v: &RolloutView) -> String {
    let waves: Vec<String> = (v.waves.iter())
        .map(|w| format!("{}:{}({})", w.wave, w.state, w.hosts.len()))
        .collect();
    let tail: Vec<String> = (v.history.iter().rev().take(5).rev())
        .map(|s| format!("{} {}", s.step, s.detail))
        .collect();
    format!(
        "phase {} ({}), waves [{}], last steps [{}]",
        v.phase.as_str(),
        v.reason,
        waves.join(" "),
        tail.join("; ")
    )
}

/// `noop --all` through `ops.api.command`: ms from the request until every host completed.
async fn noop_all(client: &async_nats::Client, seen: &Mutex<Seen>, hosts: usize) -> Result<f64> {
    let req = CommandRequest {
        action: CommandAction::Noop,
        targets: Targets {
            all: true,
            ..Targets::default()
        },
        deadline_ms: 120_000,
        issued_by: "bench".to_owned(),
    };
    let t0 = Instant::now();
    let reply: CommandReply = api(client, subjects::API_COMMAND, &req).await?;
    if reply.commands.len() != hosts {
        bail!(
            "noop went to {} hosts, expected {hosts}",
            reply.commands.len()
        );
    }
    let ids: HashSet<String> = reply.commands.into_iter().map(|c| c.command_id).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        {
            let s = seen.lock().unwrap_or_else(|e| e.into_inner());
            let done: Vec<Instant> = ids
                .iter()
                .filter_map(|id| s.completed.get(id).copied())
                .collect();
            if done.len() == ids.len() {
                let last = done.into_iter().max().unwrap_or(t0);
                return Ok(last.saturating_duration_since(t0).as_secs_f64() * 1000.0);
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} noops completed within 120 s",
                    done.len(),
                    ids.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
