//! Waiting on the cluster after an action: until a coordinator answers as active under a new
//! epoch (failover, the drill), and until commands reach a state in the ledger (command
//! verbs, the drill).

use std::time::{Duration, Instant};

use opsfleet_proto::api::{CommandView, CommandsRequest, LeaderRole, Responder};

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
