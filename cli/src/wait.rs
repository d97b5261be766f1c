//! Waiting on the cluster after an action: until a coordinator answers as active under a new
//! epoch (failover, the drill), until commands reach a state in the ledger (command verbs,
//! the drill), and following a rollout until it ends (`rollout start|abort|undo`).

use std::time::{Duration, Instant};

use opsfleet_proto::api::{
    CommandView, CommandsRequest, LeaderRole, Responder, RolloutView, RolloutsRequest,
};

use crate::client::{Api, ClientError};

/// How long each gathering of status replies listens while waiting for a new active.
const ACTIVE_POLL: Duration = Duration::from_millis(25);

/// Asks every coordinator's status until one answers as active at an epoch above
/// `above_epoch` (and is `to`, when named); `None` if none did by `deadline`.
pub async fn active_after(
    api: &Api,
    to: Option<&str>,
    above_epoch: u64,
    deadline: Instant,
) -> Result<Option<Responder>, ClientError> {
    loop {
        let replies = api.status_all(ACTIVE_POLL).await?;
        let winner = replies.into_iter().map(|r| r.responder).find(|r| {
            r.role == LeaderRole::Active && r.epoch > above_epoch && to.is_none_or(|t| t == r.name)
        });
        if winner.is_some() {
            return Ok(winner);
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
    }
}

/// How to poll the ledger: until when, and how often.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub until: Instant,
    pub every: Duration,
}

/// Reads the ledger's views of `ids` until `done` holds for them or `poll.until` passes,
/// showing each read to `seen`. Returns the last views and whether `done` held.
pub async fn commands_until(
    api: &Api,
    ids: &[String],
    poll: Poll,
    done: impl Fn(&[CommandView]) -> bool,
    mut seen: impl FnMut(&[CommandView]),
) -> Result<(Vec<CommandView>, bool), ClientError> {
    loop {
        let views = api
            .commands(&CommandsRequest {
                ids: ids.to_vec(),
                ..Default::default()
            })
            .await?
            .commands;
        seen(&views);
        if done(&views) {
            return Ok((views, true));
        }
        if Instant::now() >= poll.until {
            return Ok((views, false));
        }
        tokio::time::sleep(poll.every).await;
    }
}

/// How a rollout is followed: how often it is read, and how long reads may fail in a row
/// (a coordinator failover, a NATS restart) before the follow gives up.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    pub every: Duration,
    pub give_up_after: Duration,
}

/// Reads the rollout `first` names (`ops.api.rollouts` with its id) every `f.every`, showing
/// each read with the one before to `seen`, until `done` holds for one; returns it. A read
/// that fails is retried (told once to `lost`) until reads failed for `f.give_up_after`; a
/// read that does not show the rollout yet (an answering coordinator behind) counts as no
/// change.
pub async fn rollout_until(
    api: &Api,
    first: RolloutView,
    f: Follow,
    done: impl Fn(&RolloutView) -> bool,
    mut seen: impl FnMut(&RolloutView, &RolloutView),
    mut lost: impl FnMut(&ClientError),
) -> Result<RolloutView, ClientError> {
    let mut last = first;
    let mut failing_since: Option<Instant> = None;
    while !done(&last) {
        tokio::time::sleep(f.every).await;
        let req = RolloutsRequest {
            id: Some(last.id.clone()),
            service: None,
            limit: Some(1),
        };
        match api.rollouts(&req).await {
            Ok(reply) => {
                failing_since = None;
                if let Some(next) = reply.rollouts.into_iter().find(|v| v.id == last.id) {
                    seen(&last, &next);
                    last = next;
                }
            }
            Err(e)
                if matches!(
                    e,
                    ClientError::Refused { .. } | ClientError::BadReply { .. }
                ) =>
            {
                return Err(e);
            }
            Err(e) => match failing_since {
                None => {
                    failing_since = Some(Instant::now());
                    lost(&e);
                }
                Some(since) if since.elapsed() >= f.give_up_after => return Err(e),
                Some(_) => {}
            },
        }
    }
    Ok(last)
}
