//! Chaos: three agents keep producing numbered events (heartbeat every 20 ms) to two
//! coordinators while, in turn, the active coordinator is killed -9, the nats-server is
//! restarted, an agent is killed -9, and an agent is cut off from NATS for a while (its network
//! namespace's link taken down; SIGSTOP/SIGCONT where no namespace can be made). Afterwards
//! every coordinator's log holds every (host, seq) 1..=M exactly once and in order, and
//! `rebuild --verify` gives the live digest.
//!
//! The short variant runs in CI (`OPSFLEET_CHAOS_NO_NETNS=1` forces the fallback); `--features slow-tests` adds a long one (three rounds of the
//! four faults, longer outages).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use opsfleet_proto::api::StatusReply;
use opsfleet_tests::{
    check_exactly_once, check_unique_ids, wait_until, wait_until_default, AgentSpec, Cluster,
    CoordinatorSpec, NetNs,
};

const COORDINATORS: [&str; 2] = ["blue", "green"];
const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];
/// The agent killed -9 in each round.
const KILLED_AGENT: &str = "web-01";
/// The agent cut off from NATS in each round.
const CUT_AGENT: &str = "db-01";
/// Set to force the SIGSTOP/SIGCONT fallback even where a network namespace can be made.
const NO_NETNS_ENV: &str = "OPSFLEET_CHAOS_NO_NETNS";
/// Crash takeover bound: lease TTL (3 s) + 1 s, with room for a loaded machine.
const TAKEOVER_BOUND: Duration = Duration::from_secs(30);

/// How hard one run shakes the cluster.
#[derive(Debug, Clone)]
struct Plan {
    name: &'static str,
    /// Rounds of the four faults.
    rounds: u32,
    heartbeat: Duration,
    /// Events every host must add (as every running coordinator sees it) after each fault.
    progress: u64,
    nats_down: Duration,
    cut: Duration,
    /// Each host must have produced at least this many events (M).
    min_events: u64,
}

const SHORT: Plan = Plan {
    name: "chaos-short",
    rounds: 1,
    heartbeat: Duration::from_millis(20),
    progress: 20,
    nats_down: Duration::from_secs(2),
    cut: Duration::from_secs(4),
    min_events: 150,
};

#[cfg(feature = "slow-tests")]
const LONG: Plan = Plan {
    name: "chaos-long",
    rounds: 3,
    heartbeat: Duration::from_millis(20),
    progress: 100,
    nats_down: Duration::from_secs(5),
    cut: Duration::from_secs(10),
    min_events: 1_000,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_faults_in_turn_keep_every_host_seq_exactly_once() {
    chaos(SHORT).await;
}

#[cfg(feature = "slow-tests")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_chaos_keeps_every_host_seq_exactly_once() {
    chaos(LONG).await;
}

/// How the cut-off agent is isolated.
enum Cut<'a> {
    Link(&'a NetNs),
    Stop,
}

impl Cut<'_> {
    fn describe(&self) -> String {
        match self {
            Cut::Link(ns) => format!(
                "network namespace {} (link taken down; NATS at {})",
                ns.name, ns.host_ip
            ),
            Cut::Stop => "SIGSTOP/SIGCONT of the agent".to_owned(),
        }
    }
}

async fn chaos(plan: Plan) {
    let started = Instant::now();
    let netns = if std::env::var_os(NO_NETNS_ENV).is_some_and(|v| v != "0") {
        println!("{}: {NO_NETNS_ENV} is set", plan.name);
        None
    } else {
        match NetNs::create() {
            Ok(ns) => Some(ns),
            Err(e) => {
                println!("{}: cannot create a network namespace ({e:#})", plan.name);
                None
            }
        }
    };
    let cut = netns.as_ref().map_or(Cut::Stop, Cut::Link);
    println!("{}: cut-off uses {}", plan.name, cut.describe());
    let addr = netns
        .as_ref()
        .map_or_else(|| "127.0.0.1".to_owned(), |ns| ns.host_ip.clone());
    Cluster::run_on(plan.name, &addr, async |c: &mut Cluster| {
        scenario(c, &plan, &cut).await
    })
    .await;
    println!("{}: passed in {:?}", plan.name, started.elapsed());
    drop(netns);
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn scenario(c: &mut Cluster, plan: &Plan, cut: &Cut<'_>) -> Result<()> {
    for name in COORDINATORS {
        c.add_coordinator(CoordinatorSpec::new(name).batch_max(10))?;
    }
    for host in HOSTS {
        let mut spec = AgentSpec::new(host).heartbeat(plan.heartbeat);
        if let (Cut::Link(ns), true) = (cut, host == CUT_AGENT) {
            spec = spec.in_netns(&ns.name, &c.nats_url());
        }
        c.add_agent(spec)?;
    }
    wait_progress(c, 10, "start").await?;

    let mut windows = Vec::new();
    for round in 1..=plan.rounds {
        kill_active_coordinator(c, plan, round).await?;
        restart_nats(c, plan, round).await?;
        kill_agent(c, plan, round).await?;
        windows.push(cut_off_agent(c, plan, cut, round).await?);
    }

    finish_and_check(c, plan, cut, &windows).await
}

/// Running coordinators' names.
fn running(c: &mut Cluster) -> Vec<String> {
    c.coordinators
        .iter_mut()
        .filter_map(|k| k.is_running().then(|| k.name.clone()))
        .collect()
}

fn last_seq(reply: &StatusReply, host: &str) -> u64 {
    reply
        .hosts
        .iter()
        .find(|h| h.host == host)
        .map_or(0, |h| h.last_seq)
}

/// Waits until every running coordinator sees every host at least `by` events further than
/// the first of them saw when this was called.
async fn wait_progress(c: &mut Cluster, by: u64, after: &str) -> Result<()> {
    let names = running(c);
    let first = names.first().context("no coordinator is running")?.clone();
    let base = wait_until(
        &format!("{first} to answer after {after}"),
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || Ok(c.status(Some(&first)).await.ok()),
    )
    .await?;
    let target: BTreeMap<String, u64> = HOSTS
        .iter()
        .map(|h| (h.to_string(), last_seq(&base, h) + by))
        .collect();
    for name in &names {
        c.wait_hosts_at_least(name, &target)
            .await
            .with_context(|| format!("no progress after {after}"))?;
    }
    Ok(())
}

/// The one coordinator that reports itself active (waits for the election to settle).
async fn the_active(c: &mut Cluster) -> Result<String> {
    wait_until(
        "exactly one active coordinator",
        Duration::from_secs(60),
        Duration::from_millis(250),
        async || {
            let mut actives = Vec::new();
            for name in running(c) {
                if let Ok(reply) = c.status(Some(&name)).await {
                    if reply.responder.role == opsfleet_proto::api::LeaderRole::Active {
                        actives.push(name);
                    }
                }
            }
            Ok((actives.len() == 1).then(|| actives.remove(0)))
        },
    )
    .await
}

async fn kill_active_coordinator(c: &mut Cluster, plan: &Plan, round: u32) -> Result<()> {
    let active = the_active(c).await?;
    let standby = COORDINATORS
        .iter()
        .find(|n| **n != active)
        .context("no standby")?
        .to_string();
    c.coordinator(&active)?.sigkill().await?;
    let killed = Instant::now();
    wait_until(
        &format!("{standby} to take over from {active}"),
        TAKEOVER_BOUND,
        Duration::from_millis(100),
        async || {
            let reply = c.status(Some(&standby)).await.ok();
            Ok(reply
                .filter(|r| r.responder.role == opsfleet_proto::api::LeaderRole::Active)
                .map(|_| ()))
        },
    )
    .await?;
    println!(
        "round {round}: killed -9 the active {active}; {standby} active after {:?}",
        killed.elapsed()
    );
    wait_progress(c, plan.progress, "the active coordinator was killed").await?;
    c.coordinator(&active)?.restart()?;
    wait_progress(c, plan.progress, "the killed coordinator restarted").await
}

async fn restart_nats(c: &mut Cluster, plan: &Plan, round: u32) -> Result<()> {
    c.nats.stop().await?;
    // Deliberate outage time, not a wait for a condition: agents fill their outboxes. Every
    // daemon must survive it.
    let until = Instant::now() + plan.nats_down;
    while Instant::now() < until {
        c.check_alive()?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    c.nats.restart().await?;
    println!(
        "round {round}: nats-server down for {:?}, restarted",
        plan.nats_down
    );
    wait_progress(c, plan.progress, "the nats-server restarted").await
}

async fn kill_agent(c: &mut Cluster, plan: &Plan, round: u32) -> Result<()> {
    c.agent(KILLED_AGENT)?.sigkill().await?;
    let outbox = c.agent(KILLED_AGENT)?.outbox().await?;
    println!("round {round}: killed -9 agent {KILLED_AGENT}; outbox {outbox:?}");
    c.agent(KILLED_AGENT)?.restart()?;
    wait_progress(c, plan.progress, "an agent was killed").await
}

/// When the cut-off agent was isolated, and what the coordinators saw of it meanwhile.
#[derive(Debug, Clone, Copy)]
struct CutWindow {
    down_ms: i64,
    up_ms: i64,
    /// The agent's highest seq a coordinator had persisted just before the link came back.
    seen_before_up: u64,
}

async fn cut_off_agent(
    c: &mut Cluster,
    plan: &Plan,
    cut: &Cut<'_>,
    round: u32,
) -> Result<CutWindow> {
    let down_ms = now_ms();
    match cut {
        Cut::Link(ns) => ns.link_down()?,
        Cut::Stop => c.agent(CUT_AGENT)?.proc_mut().signal(Signal::SIGSTOP)?,
    }
    let restore = async |c: &mut Cluster| -> Result<()> {
        match cut {
            Cut::Link(ns) => ns.link_up(),
            Cut::Stop => c.agent(CUT_AGENT)?.proc_mut().signal(Signal::SIGCONT),
        }
    };
    // Deliberate isolation time; meanwhile everything else keeps running and progressing.
    let until = Instant::now() + plan.cut;
    let mut problem = None;
    while Instant::now() < until {
        // A SIGSTOPped agent has not exited: it counts as alive.
        if let Err(e) = c.check_alive() {
            problem = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen = c.status(Some(COORDINATORS[0])).await;
    let up_ms = now_ms();
    restore(c).await?;
    if let Some(e) = problem {
        return Err(e.context("a daemon died while an agent was cut off"));
    }
    let seen_before_up = last_seq(&seen?, CUT_AGENT);
    println!(
        "round {round}: agent {CUT_AGENT} cut off for {:?}; {} had its seq {seen_before_up} \
         just before it came back",
        plan.cut, COORDINATORS[0]
    );
    wait_progress(c, plan.progress, "the cut-off agent came back").await?;
    Ok(CutWindow {
        down_ms,
        up_ms,
        seen_before_up,
    })
}

async fn finish_and_check(
    c: &mut Cluster,
    plan: &Plan,
    cut: &Cut<'_>,
    windows: &[CutWindow],
) -> Result<()> {
    let outboxes = c.stop_agents().await?;
    let expected: BTreeMap<String, u64> = outboxes
        .iter()
        .map(|(h, o)| (h.clone(), o.last_seq))
        .collect();
    println!("agents stopped; last seqs {expected:?}");
    let mut live = BTreeMap::new();
    for name in COORDINATORS {
        live.insert(name, c.wait_caught_up(name, &expected).await?);
    }
    // The active one may still record events of its own (alerts about the stopped agents):
    // compare the two folds at the same stream position.
    let same_point = wait_until_default(
        "both coordinators at the same stream position",
        async || {
            let blue = c.status(Some(COORDINATORS[0])).await?;
            let green = c.status(Some(COORDINATORS[1])).await?;
            Ok(
                (blue.responder.applied_stream_seq == green.responder.applied_stream_seq)
                    .then_some((blue, green)),
            )
        },
    )
    .await?;
    live.insert(COORDINATORS[0], same_point.0);
    live.insert(COORDINATORS[1], same_point.1);

    // Every check runs; the failure lists all of them.
    let mut problems = Vec::new();
    for (host, outbox) in &outboxes {
        if outbox.last_seq < plan.min_events {
            problems.push(format!(
                "{host} produced only {} events, the plan wants at least {}",
                outbox.last_seq, plan.min_events
            ));
        }
    }
    for (name, reply) in &live {
        for h in &reply.hosts {
            if !h.gaps.is_empty() {
                problems.push(format!(
                    "{name} live status: {} has gaps {:?}",
                    h.host, h.gaps
                ));
            }
        }
        println!(
            "{name}: digest {} log_events {} duplicates_dropped {} malformed_parked {}",
            reply.digest, reply.log_events, reply.duplicates_dropped, reply.malformed_parked
        );
    }
    if live["blue"].digest != live["green"].digest {
        problems.push(format!(
            "the coordinators folded different states from the same stream: blue {} green {}",
            live["blue"].digest, live["green"].digest
        ));
    }

    for name in COORDINATORS {
        // Stopping the first coordinator publishes leadership events that the second one
        // folds: compare each log with the live state right before its own stop.
        let live_now = c.wait_caught_up(name, &expected).await?;
        let coord = c.coordinator(name)?;
        coord.stop().await?;
        let log = coord.dump_log().await?;
        for (host, outbox) in &outboxes {
            if let Err(e) = check_exactly_once(&log, host, &outbox.incarnation, outbox.last_seq) {
                problems.push(format!("{name} dump-log: {e}"));
            }
        }
        if let Err(e) = check_unique_ids(&log) {
            problems.push(format!("{name} dump-log: {e}"));
        }
        // Between that status and the stop, only coordinators' own events (leadership at the
        // stop, alert transitions of the stopped agents) may still arrive: nothing from agents.
        let live_len = usize::try_from(live_now.log_events).unwrap_or(usize::MAX);
        let late_agent_events: Vec<_> = log
            .iter()
            .skip(live_len)
            .filter(|e| e.module != opsfleet_proto::COORDINATOR_MODULE)
            .map(|e| format!("{}#{} {}", e.host, e.seq, e.kind))
            .collect();
        if log.len() < live_len || !late_agent_events.is_empty() {
            problems.push(format!(
                "{name}: dump-log has {} entries, the live status said log_events = {}; \
                 agent events after it: {late_agent_events:?}",
                log.len(),
                live_now.log_events
            ));
        }
        if name == COORDINATORS[0] {
            problems.extend(check_cut_windows(&log, cut, windows));
        }
        let (report, out) = coord.rebuild(true).await?;
        if !(out.status.success() && report.matches) {
            problems.push(format!(
                "{name}: rebuild --verify reports a mismatch ({}): {report:?}\nstderr:\n{}",
                out.status, out.stderr
            ));
        }
        if log.len() == live_len && report.digest != live_now.digest {
            problems.push(format!(
                "{name}: rebuild digest {} differs from the live digest {}",
                report.digest, live_now.digest
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// The cut really cut: nothing the agent produced more than a second into the isolation had
/// reached the coordinator before the link came back. With a link cut (not a stopped
/// process) the agent also kept producing into its outbox meanwhile.
fn check_cut_windows(
    log: &[opsfleet_tests::LogEntry],
    cut: &Cut<'_>,
    windows: &[CutWindow],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let during: Vec<u64> = log
            .iter()
            .filter(|e| e.host == CUT_AGENT && e.time_unix_ms > w.down_ms + 1_000)
            .filter(|e| e.time_unix_ms < w.up_ms)
            .map(|e| e.seq)
            .collect();
        if let Some(first_late) = during.first() {
            if w.seen_before_up >= *first_late {
                problems.push(format!(
                    "cut {}: the coordinator had seq {} of {CUT_AGENT} while it was cut off, \
                     but seq {first_late} was produced more than 1 s into the cut",
                    i + 1,
                    w.seen_before_up
                ));
            }
        }
        if matches!(cut, Cut::Link(_)) && during.len() < 5 {
            problems.push(format!(
                "cut {}: only {} events of {CUT_AGENT} produced while it was cut off; it should \
                 keep producing into its outbox",
                i + 1,
                during.len()
            ));
        }
    }
    problems
}
