//! `opsctl failover --drill`: hand the lease to the standby and back, prove at each step that
//! agents execute a no-op under the new epoch, and report the timings, the events lost (new seq
//! gaps on any host) and the commands that ran twice (ledger `accepted_count` > 1).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opsfleet_proto::api::{
    CommandAction, CommandRequest, CommandsRequest, FailoverRequest, Responder, StatusReply,
    Targets,
};
use serde::Serialize;

use crate::client::{Api, ClientError};

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
        .map(|h| {
            let n = h.gaps.iter().map(|g| g.last - g.first + 1).sum();
            (h.host.clone(), n)
        })
        .collect()
}

async fn roles(api: &Api) -> Result<Vec<Responder>, DrillError> {
    Ok(api
        .status_all(Duration::from_millis(300))
        .await?
        .into_iter()
        .map(|r| r.responder)
        .collect())
}

/// Runs the drill. `wait` bounds each wait (takeover, no-op answers).
pub async fn run(api: &Api, issued_by: &str, wait: Duration) -> Result<DrillReport, DrillError> {
    let seen = roles(api).await?;
    let active = seen
        .iter()
        .find(|r| r.role == opsfleet_proto::api::LeaderRole::Active)
        .cloned();
    let standby = seen
        .iter()
        .find(|r| r.role == opsfleet_proto::api::LeaderRole::Standby)
        .cloned();
    let (Some(first), Some(second)) = (active, standby) else {
        return Err(DrillError::NoPair {
            seen: seen
                .iter()
                .map(|r| format!("{} ({})", r.name, r.role))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let before = missing(&api.status(&Default::default(), Some(&first.name)).await?);
    let mut steps = Vec::new();
    let mut noop_ids = Vec::new();
    for (from, to) in [(first.clone(), second.clone()), (second, first.clone())] {
        let started = Instant::now();
        let released = api
            .failover(&FailoverRequest {
                to: Some(to.name.clone()),
                requested_by: Some(format!("{issued_by} (drill)")),
            })
            .await?;
        let step = format!("handover {} -> {}", from.name, to.name);
        let new_epoch = loop {
            let replies = api.status_all(Duration::from_millis(25)).await?;
            if let Some(r) = replies.iter().find(|r| {
                r.responder.name == to.name
                    && r.responder.role == opsfleet_proto::api::LeaderRole::Active
                    && r.responder.epoch > released.released_epoch
            }) {
                break r.responder.epoch;
            }
            if started.elapsed() > wait {
                return Err(DrillError::Timeout {
                    step,
                    what: format!("{} did not become active", to.name),
                    within: wait,
                });
            }
        };
        let takeover_ms = started.elapsed().as_millis() as u64;
        let issued = Instant::now();
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
        loop {
            let views = api
                .commands(&CommandsRequest {
                    ids: ids.clone(),
                    ..Default::default()
                })
                .await?
                .commands;
            let done = views
                .iter()
                .filter(|v| v.state == opsfleet_proto::api::CommandState::Completed)
                .count();
            if done == ids.len() {
                break;
            }
            if issued.elapsed() > wait {
                return Err(DrillError::Timeout {
                    step,
                    what: format!("only {done} of {} agents completed the no-op", ids.len()),
                    within: wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        steps.push(DrillStep {
            from: from.name.clone(),
            to: to.name.clone(),
            old_epoch: released.released_epoch,
            new_epoch,
            takeover_ms,
            noop_ms: issued.elapsed().as_millis() as u64,
            hosts: ids.len(),
        });
        noop_ids.extend(ids);
    }
    // Give the last events a moment to be folded by the coordinator we ask.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = missing(&api.status(&Default::default(), Some(&first.name)).await?);
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
