//! `pause <module> --all` fan-out: one real `ops-coordinator` (active) and N simulated agents
//! in this process, each with the real command protocol: a durable pull consumer
//! `agent-<host>` on `OPS_CMDS` (filter `ops.cmd.<host>`, explicit acks, one in flight), the
//! fast path (a plain subscription on `ops.fastcmd.<host>`, where `OPS_CMDS` republishes each
//! stored command, taken under the agent's own rules,
//! `opsfleet_agent::commands::{fast_copy, fast_step}`), and `command_accepted`
//! then `command_completed` events published through JetStream with `Nats-Msg-Id`. An agent's
//! ack latency runs from sending the `ops.api.command` request (what `opsctl pause --all`
//! sends) to the arrival of that agent's `command_accepted` event on the bus (a core
//! subscription on `ops.evt.*.command_accepted`).
//!
//! Baseline in the same run: rounds alternate between the fast path and the durable consumer
//! alone (the same agents ignore their fast copies, as before the fast path), so both sets of
//! figures come from the same coordinator, server and consumers.
//!
//! Unlike `ops-agent`, a simulated agent keeps no sled outbox, so the figure leaves out the
//! agent's own flush before it accepts (one sled flush per command, about 0.1 ms-10 ms).

mod agent;
mod clock;
mod cpu;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_proto::api::{
    CommandAction, CommandReply, CommandRequest, StatusReply, StatusRequest, Targets,
};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{Coordinator, CoordinatorSpec, NatsServer};
use tokio_util::sync::CancellationToken;

use self::clock::start_arrival_clock;
use self::cpu::Pids;
use crate::report::{fmt_num, FigSpec, Figure, Target};
use crate::sim::{self, SimHost};
use crate::stats;

pub const P50: FigSpec = FigSpec {
    key: "fanout_ack_p50",
    label: "pause --all: per-agent ack p50",
    unit: "ms",
    target: None,
};
pub const P99: FigSpec = FigSpec {
    key: "fanout_ack_p99",
    label: "pause --all: per-agent ack p99",
    unit: "ms",
    target: Target::below(100.0),
};
pub const DURABLE_P50: FigSpec = FigSpec {
    key: "fanout_durable_ack_p50",
    label: "pause --all, durable consumer only (baseline): ack p50",
    unit: "ms",
    target: None,
};
pub const DURABLE_P99: FigSpec = FigSpec {
    key: "fanout_durable_ack_p99",
    label: "pause --all, durable consumer only (baseline): ack p99",
    unit: "ms",
    target: None,
};
pub const MAX: FigSpec = FigSpec {
    key: "fanout_ack_max",
    label: "pause --all: per-agent ack max",
    unit: "ms",
    target: None,
};
pub const COMPLETED_P99: FigSpec = FigSpec {
    key: "fanout_completed_p99",
    label: "pause --all: per-agent completed p99",
    unit: "ms",
    target: None,
};
pub const FIGURES: [&FigSpec; 11] = [
    &P50,
    &P99,
    &MAX,
    &COMPLETED_P99,
    &DURABLE_P50,
    &DURABLE_P99,
    &cpu::NATS_IDLE,
    &cpu::NATS_IDLE_PER_AGENT,
    &cpu::NATS_ROUND,
    &cpu::NATS_ROUND_PER_AGENT,
    &cpu::COORD_ROUND,
];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sizes {
    pub agents: usize,
    pub repeats: usize,
    /// nats-server's idle CPU window once every consumer waits.
    pub idle_secs: u64,
}

/// Arrival instants of lifecycle events by command id.
#[derive(Default)]
struct Arrivals {
    accepted: HashMap<String, Instant>,
    completed: HashMap<String, Instant>,
}

pub async fn run(sizes: &Sizes) -> Result<Vec<Figure>> {
    let mut nats = NatsServer::start().await?;
    let dir = tempfile::Builder::new()
        .prefix("opsfleet-bench-fanout-")
        .tempdir()
        .context("cannot create temp dir")?;
    let mut coordinator =
        Coordinator::spawn(dir.path(), &CoordinatorSpec::new("blue"), &nats.url())?;
    let client = async_nats::connect(nats.url())
        .await
        .context("cannot connect to nats-server")?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(30));

    wait_active(&client, &mut coordinator).await?;
    let pids = Pids {
        nats: nats.proc_mut().pid().context("nats-server has no pid")?,
        coordinator: coordinator
            .proc_mut()
            .pid()
            .context("coordinator has no pid")?,
    };
    let cancel = CancellationToken::new();
    let result = measure(&client, &js, sizes, pids, &cancel).await;
    cancel.cancel();
    let _ = coordinator.stop().await;
    if result.is_err() {
        // The coordinator's log says why a command did not come back.
        let kept = dir.keep();
        eprintln!(
            "    fan-out failed; its coordinator's files are kept in {}",
            kept.display()
        );
    }
    result
}

/// Waits until the coordinator answers status as `active`.
pub(crate) async fn wait_active(client: &async_nats::Client, c: &mut Coordinator) -> Result<()> {
    let subject = subjects::api_subject_for(subjects::API_STATUS, &c.name);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        c.proc_mut().check_running()?;
        if let Ok(Ok(msg)) = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subject.clone(), "{}".into()),
        )
        .await
        {
            if let Ok(r) = serde_json::from_slice::<StatusReply>(&msg.payload) {
                if r.responder.role == opsfleet_proto::api::LeaderRole::Active {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("coordinator {} did not become active within 60 s", c.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(
    client: &async_nats::Client,
    js: &jetstream::Context,
    sizes: &Sizes,
    pids: Pids,
    cancel: &CancellationToken,
) -> Result<Vec<Figure>> {
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    start_arrival_clock(client, &arrivals, cancel).await?;
    let fast_on = Arc::new(AtomicBool::new(true));
    start_agents(js, sizes, &fast_on, cancel).await?;
    wait_hosts(client, sizes.agents).await?;
    let window = Duration::from_secs(sizes.idle_secs);
    let idle = cpu::idle_pct(pids.nats, window).await?;
    let (mut nats_ms, mut coord_ms) = (Vec::new(), Vec::new());

    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    let mut max = Vec::new();
    let mut done99 = Vec::new();
    let mut replies = Vec::new();
    let mut first = Vec::new();
    let (mut durable50, mut durable99) = (Vec::new(), Vec::new());
    let (mut durable_replies, mut durable_first) = (Vec::new(), Vec::new());
    for r in 0..sizes.repeats {
        // The baseline round first: the same agents, their fast copies ignored.
        fast_on.store(false, Ordering::SeqCst);
        let round = one_round(client, &arrivals, 2 * r + 1, sizes).await?;
        let s = stats::summarize(&round.accepted).context("no acks")?;
        durable_replies.push(round.reply_ms);
        durable_first.push(s.min);
        durable50.push(s.p50);
        durable99.push(s.p99);
        fast_on.store(true, Ordering::SeqCst);
        let (n0, c0) = cpu::sample(pids)?;
        let round = one_round(client, &arrivals, 2 * r, sizes).await?;
        let (n1, c1) = cpu::sample(pids)?;
        nats_ms.push(n1 - n0);
        coord_ms.push(c1 - c0);
        replies.push(round.reply_ms);
        let s = stats::summarize(&round.accepted).context("no acks")?;
        first.push(s.min);
        p50.push(s.p50);
        p99.push(s.p99);
        max.push(s.max);
        done99.push(
            stats::summarize(&round.completed)
                .context("no completions")?
                .p99,
        );
    }
    let note_of = |v: &[f64], replies: &[f64], first: &[f64]| {
        format!(
            "median of {} commands to {} agents; repeats {}; API reply after {} ms, \
             first ack after {} ms (medians)",
            v.len(),
            sizes.agents,
            v.iter()
                .map(|x| fmt_num(*x))
                .collect::<Vec<_>>()
                .join(" / "),
            fmt_num(stats::median(replies).unwrap_or(f64::NAN)),
            fmt_num(stats::median(first).unwrap_or(f64::NAN))
        )
    };
    let note = |v: &[f64]| note_of(v, &replies, &first);
    let durable_note = |v: &[f64]| note_of(v, &durable_replies, &durable_first);
    let med = |v: &[f64]| stats::median(v).context("no repeats");
    let mut figs = vec![
        P50.measured(med(&p50)?, note(&p50)),
        P99.measured(med(&p99)?, note(&p99)),
        MAX.measured(med(&max)?, note(&max)),
        COMPLETED_P99.measured(med(&done99)?, note(&done99)),
        DURABLE_P50.measured(med(&durable50)?, durable_note(&durable50)),
        DURABLE_P99.measured(med(&durable99)?, durable_note(&durable99)),
    ];
    figs.extend(cpu::figures(
        sizes.agents,
        window,
        idle,
        &nats_ms,
        &coord_ms,
    )?);
    Ok(figs)
}

/// First heartbeats awaiting their PubAck at once while the agents come up.
const ACKS_AT_ONCE: usize = 1_000;

/// Consumer creations in flight at once while the agents come up.
const CREATE_AT_ONCE: usize = 64;

/// Brings the simulated agents up: a first heartbeat (so the coordinator knows the host),
/// then the command consumer.
async fn start_agents(
    js: &jetstream::Context,
    sizes: &Sizes,
    fast_on: &Arc<AtomicBool>,
    cancel: &CancellationToken,
) -> Result<()> {
    let commands = js
        .get_stream(subjects::COMMANDS_STREAM)
        .await
        .context("no OPS_CMDS stream")?;
    let mut acks = Vec::new();
    let mut agents = Vec::new();
    for i in 0..sizes.agents {
        let mut host = SimHost::new(sim::host_name(i));
        acks.push(sim::publish(js, host.encoded("heartbeat", sim::heartbeat(0))).await?);
        agents.push(host);
        // The context admits 5,000 PubAcks in flight, and a publish past them waits for one
        // to be awaited: drained as we go (all at the end hung at 10,000 agents).
        if acks.len() >= ACKS_AT_ONCE {
            for a in acks.drain(..) {
                a.await.context("PubAck failed")?;
            }
        }
    }
    for a in acks {
        a.await.context("PubAck failed")?;
    }
    // Consumers are created a few dozen at a time: one by one, each waits for the server's
    // write of the consumer's state, which at 10,000 agents alone took minutes.
    let opened: Vec<Result<_>> = futures::stream::iter(agents)
        .map(|host| {
            let commands = commands.clone();
            async move {
                let durable = format!("agent-{}", host.host);
                let c: consumer::PullConsumer = commands
                    .get_or_create_consumer(
                        &durable,
                        consumer::pull::Config {
                            durable_name: Some(durable.clone()),
                            filter_subject: subjects::command_subject(&host.host),
                            ack_policy: consumer::AckPolicy::Explicit,
                            deliver_policy: consumer::DeliverPolicy::All,
                            ack_wait: Duration::from_secs(30),
                            max_ack_pending: 1,
                            ..Default::default()
                        },
                    )
                    .await
                    .with_context(|| format!("cannot create consumer {durable}"))?;
                Ok((host, c))
            }
        })
        .buffer_unordered(CREATE_AT_ONCE)
        .collect()
        .await;
    for opened in opened {
        let (host, c) = opened?;
        // Subscribed before its first command, as `ops-agent` does before opening its
        // consumer.
        let fast = js
            .client()
            .subscribe(subjects::command_copy_subject(&host.host))
            .await
            .context("cannot subscribe to the command subject")?;
        tokio::spawn(agent::sim_agent(
            host,
            c,
            fast,
            Arc::clone(fast_on),
            js.clone(),
            cancel.clone(),
        ));
    }
    Ok(())
}

/// One command to every agent: how long the API took to reply, and when (ms after the
/// request) each agent accepted and completed it.
struct Round {
    reply_ms: f64,
    accepted: Vec<f64>,
    completed: Vec<f64>,
}

/// Round `r`: pause (even) or resume (odd) the heartbeat module on every agent.
async fn one_round(
    client: &async_nats::Client,
    arrivals: &Mutex<Arrivals>,
    r: usize,
    sizes: &Sizes,
) -> Result<Round> {
    let module = "heartbeat".to_owned();
    let action = if r.is_multiple_of(2) {
        CommandAction::Pause { module }
    } else {
        CommandAction::Resume { module }
    };
    let req = CommandRequest {
        action,
        targets: Targets {
            all: true,
            ..Targets::default()
        },
        deadline_ms: 120_000,
        issued_by: "bench".to_owned(),
    };
    let body = serde_json::to_vec(&req).context("encode request")?;
    let t0 = Instant::now();
    let reply = client
        .send_request(
            subjects::API_COMMAND.to_owned(),
            async_nats::Request::new()
                .payload(body.into())
                .timeout(Some(Duration::from_secs(120))),
        )
        .await
        .map_err(|e| anyhow::anyhow!("ops.api.command failed: {e}"))?;
    let reply_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let reply: CommandReply = serde_json::from_slice(&reply.payload).with_context(|| {
        format!(
            "unexpected reply: {}",
            String::from_utf8_lossy(&reply.payload)
        )
    })?;
    if reply.commands.len() != sizes.agents {
        bail!(
            "command went to {} hosts, expected {}",
            reply.commands.len(),
            sizes.agents
        );
    }
    let ids: HashSet<String> = reply.commands.into_iter().map(|c| c.command_id).collect();
    let (accepted, completed) = wait_arrivals(arrivals, &ids, t0).await?;
    Ok(Round {
        reply_ms,
        accepted,
        completed,
    })
}

/// Waits (up to 120 s) until every command of `ids` was accepted and completed; returns the
/// times after `t0`, in ms.
async fn wait_arrivals(
    arrivals: &Mutex<Arrivals>,
    ids: &HashSet<String>,
    t0: Instant,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        {
            let a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
            let after = |at: &Instant| at.saturating_duration_since(t0).as_secs_f64() * 1000.0;
            let acc: Vec<f64> = ids
                .iter()
                .filter_map(|id| a.accepted.get(id))
                .map(after)
                .collect();
            let comp: Vec<f64> = ids
                .iter()
                .filter_map(|id| a.completed.get(id))
                .map(after)
                .collect();
            if acc.len() == ids.len() && comp.len() == ids.len() {
                return Ok((acc, comp));
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} agents accepted, {} completed within 120 s",
                    acc.len(),
                    ids.len(),
                    comp.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the coordinator's status lists at least `n` hosts (over all its pages).
pub(crate) async fn wait_hosts(client: &async_nats::Client, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = 0;
    while Instant::now() < deadline {
        if let Some(count) = count_hosts(client).await {
            seen = count;
            if seen >= n {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("coordinator knows {seen} of {n} hosts after 120 s")
}

/// The hosts in the coordinator's status, following its `next` cursors; `None` when a page
/// does not arrive.
async fn count_hosts(client: &async_nats::Client) -> Option<usize> {
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let mut req = StatusRequest::default();
        req.page.after = after.take();
        let body = serde_json::to_vec(&req).ok()?;
        let msg = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(subjects::API_STATUS, body.into()),
        )
        .await
        .ok()?
        .ok()?;
        let r = serde_json::from_slice::<StatusReply>(&msg.payload).ok()?;
        count += r.hosts.len();
        match r.next {
            Some(next) => after = Some(next),
            None => return Some(count),
        }
    }
}
