//! `opsctl failover --drill`: hand the lease to the standby and back, prove at each step that
//! agents execute a no-op under the new epoch, and report the timings, the events lost (new seq
//! gaps on any host) and the commands that ran twice (ledger `accepted_count` > 1); and the
//! report's table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opsfleet_proto::api::{
    CommandAction, CommandRequest, CommandState, CommandView, CommandsRequest, FailoverRequest,
    LeaderRole, Responder, StatusReply, Targets,
};
use serde::Serialize;

use crate::client::{Api, ClientError};
use crate::render::missing_seqs;
use crate::table::Table;
use crate::wait::{active_after, commands_until, Poll};

#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("a drill needs an active coordinator and a standby; coordinators seen: {seen}")]
    NoPair { seen: String },
    #[error("{step}: the no-op was issued under epoch {issued}, not the new epoch {expected}")]
    WrongEpoch {
        step: String,
        issued: u64,
        expected: u64,
    },
    #[error("{step}: {what} within {within:?}")]
    Timeout {
        step: String,
        what: String,
        within: Duration,
    },
}

/// One handover of the drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillStep {
    pub from: String,
    pub to: String,
    pub old_epoch: u64,
    pub new_epoch: u64,
    /// From the failover request until the target answered as active.
    pub takeover_ms: u64,
    /// From the no-op's issue until every agent completed it.
    pub noop_ms: u64,
    pub hosts: usize,
}

/// What `opsctl failover --drill` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DrillReport {
    pub steps: Vec<DrillStep>,
    /// Seqs missing on any host that were not missing before the drill.
    pub events_lost: u64,
    /// Commands an agent accepted more than once.
    pub commands_run_twice: u64,
    pub passed: bool,
}

fn missing(status: &StatusReply) -> BTreeMap<String, u64> {
    status
        .hosts
        .iter()
        .map(|h| (h.host.clone(), missing_seqs(&h.gaps)))
        .collect()
}

/// Seqs missing per host, as `coordinator` sees them (every page of its status).
async fn missing_on(api: &Api, coordinator: &str) -> Result<BTreeMap<String, u64>, DrillError> {
    Ok(missing(
        &crate::views::status(api, None, Some(coordinator)).await?,
    ))
}

/// The active coordinator and a standby, from every coordinator's status.
async fn pair(api: &Api) -> Result<(Responder, Responder), DrillError> {
    let seen: Vec<Responder> = api
        .status_all(Duration::from_millis(300))
        .await?
        .into_iter()
        .map(|r| r.responder)
        .collect();
    let find = |role| seen.iter().find(|r| r.role == role).cloned();
    match (find(LeaderRole::Active), find(LeaderRole::Standby)) {
        (Some(active), Some(standby)) => Ok((active, standby)),
        _ => Err(DrillError::NoPair {
            seen: seen
                .iter()
                .map(|r| format!("{} ({})", r.name, r.role))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Runs the drill. `wait` bounds each wait (takeover, no-op answers).
pub async fn run(api: &Api, issued_by: &str, wait: Duration) -> Result<DrillReport, DrillError> {
    let (first, second) = pair(api).await?;
    let before = missing_on(api, &first.name).await?;
    let mut steps = Vec::new();
    for (from, to) in [(&first, &second), (&second, &first)] {
        steps.push(handover(api, issued_by, from, to, wait).await?);
    }
    // Give the last events a moment to be folded by the coordinator we ask.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = missing_on(api, &first.name).await?;
    let events_lost = after
        .iter()
        .map(|(h, n)| n.saturating_sub(before.get(h).copied().unwrap_or(0)))
        .sum();
    let ledger = api
        .commands(&CommandsRequest {
            limit: Some(10_000),
            ..Default::default()
        })
        .await?
        .commands;
    let commands_run_twice = ledger.iter().filter(|c| c.accepted_count > 1).count() as u64;
    Ok(DrillReport {
        passed: events_lost == 0 && commands_run_twice == 0,
        steps,
        events_lost,
        commands_run_twice,
    })
}

/// One handover: `from` releases its lease to `to`, `to` answers as active, and every agent
/// completes a no-op under the new epoch.
async fn handover(
    api: &Api,
    issued_by: &str,
    from: &Responder,
    to: &Responder,
    wait: Duration,
) -> Result<DrillStep, DrillError> {
    let started = Instant::now();
    let released = api
        .failover(&FailoverRequest {
            to: Some(to.name.clone()),
            requested_by: Some(format!("{issued_by} (drill)")),
        })
        .await?;
    let step = format!("handover {} -> {}", from.name, to.name);
    let Some(active) =
        active_after(api, Some(&to.name), released.released_epoch, started + wait).await?
    else {
        return Err(DrillError::Timeout {
            step,
            what: format!("{} did not become active", to.name),
            within: wait,
        });
    };
    let takeover_ms = started.elapsed().as_millis() as u64;
    let issued = Instant::now();
    let hosts = noop_everywhere(api, issued_by, &step, wait).await?;
    Ok(DrillStep {
        from: from.name.clone(),
        to: to.name.clone(),
        old_epoch: released.released_epoch,
        new_epoch: active.epoch,
        takeover_ms,
        noop_ms: issued.elapsed().as_millis() as u64,
        hosts,
    })
}

/// Issues a no-op to every host and waits until every agent completed it; how many hosts.
async fn noop_everywhere(
    api: &Api,
    issued_by: &str,
    step: &str,
    wait: Duration,
) -> Result<usize, DrillError> {
    let reply = api
        .command(&CommandRequest {
            action: CommandAction::Noop,
            targets: Targets {
                all: true,
                ..Targets::default()
            },
            deadline_ms: wait.as_millis() as u64,
            issued_by: format!("{issued_by} (drill)"),
        })
        .await?;
    let ids: Vec<String> = reply
        .commands
        .iter()
        .map(|c| c.command_id.clone())
        .collect();
    let completed = |views: &[CommandView]| {
        views
            .iter()
            .filter(|v| v.state == CommandState::Completed)
            .count()
    };
    let poll = Poll {
        until: Instant::now() + wait,
        every: Duration::from_millis(20),
    };
    let (views, done) =
        commands_until(api, &ids, poll, |v| completed(v) == ids.len(), |_| {}).await?;
    if !done {
        return Err(DrillError::Timeout {
            step: step.to_owned(),
            what: format!(
                "only {} of {} agents completed the no-op",
                completed(&views),
                ids.len()
            ),
            within: wait,
        });
    }
    Ok(ids.len())
}

/// `opsctl failover --drill`: one row per handover, then the verdict.
pub fn render(report: &DrillReport) -> String {
    let mut table = Table::new(&["STEP", "EPOCH", "TAKEOVER", "NOOP ON ALL", "HOSTS"]);
    for s in &report.steps {
        table.row([
            format!("{} -> {}", s.from, s.to),
            format!("{} -> {}", s.old_epoch, s.new_epoch),
            format!("{} ms", s.takeover_ms),
            format!("{} ms", s.noop_ms),
            s.hosts.to_string(),
        ]);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "events lost: {}, commands run twice: {} -> {}\n",
        report.events_lost,
        report.commands_run_twice,
        if report.passed { "PASSED" } else { "FAILED" }
    ));
    out
}
