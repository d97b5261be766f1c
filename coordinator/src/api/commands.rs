//! `ops.api.failover` (the active coordinator releases its lease) and `ops.api.commands` (the
//! command ledger).

use opsfleet_proto::api::{
    CommandStepView, CommandView, CommandsRequest, FailoverReply, FailoverRequest,
};

use std::collections::BTreeSet;

use futures::StreamExt;
use opsfleet_proto::api::StatusReply;
use opsfleet_proto::subjects;

use crate::dispatch::hint;
use crate::election::{ReleaseHandle, Requester};
use crate::identity::Issuer;
use crate::projection::commands::shown_detail;
use crate::projection::Fleet;
use crate::state::Shared;

/// Why a failover request is refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum FailoverError {
    /// A standby's answer; it stays silent on the broadcast subject.
    #[error("{name} is not active (lease holder: {holder})")]
    NotActive { name: String, holder: String },
    #[error("{name} is already active; nothing to hand over")]
    AlreadyActive { name: String },
    #[error("coordinator {to} does not answer; the lease was not touched (see `opsctl leader`)")]
    NotAnswering { to: String },
    #[error("unknown coordinator {to}; the lease was not touched (known coordinators: {known})")]
    UnknownCoordinator { to: String, known: String },
    #[error("the election task has stopped")]
    Stopped,
}

/// How long the active coordinator gathers its peers' status answers before a `--to`.
const PEER_WINDOW: std::time::Duration = std::time::Duration::from_millis(2_000);

/// Checks a `--to` name (pure): not this coordinator, and among the coordinators that answer
/// (`answering`); otherwise refused naming every coordinator known (answering or in the log).
pub(super) fn check_failover_target(
    fleet: &Fleet,
    me: &str,
    to: &str,
    answering: &BTreeSet<String>,
) -> Result<(), FailoverError> {
    if to == me {
        return Err(FailoverError::AlreadyActive {
            name: me.to_owned(),
        });
    }
    if answering.contains(to) {
        return Ok(());
    }
    if fleet.coordinators().any(|c| c.name == to) {
        return Err(FailoverError::NotAnswering { to: to.to_owned() });
    }
    let mut known: BTreeSet<&str> = fleet.coordinators().map(|c| c.name.as_str()).collect();
    known.extend(answering.iter().map(String::as_str));
    known.insert(me);
    Err(FailoverError::UnknownCoordinator {
        to: to.to_owned(),
        known: hint(known),
    })
}

/// The names of the coordinators answering `ops.api.status` within `PEER_WINDOW` (sooner
/// once `want` answered). Without a subscription or publish, none.
async fn answering(client: &async_nats::Client, want: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let inbox = client.new_inbox();
    let Ok(mut sub) = client.subscribe(inbox.clone()).await else {
        return names;
    };
    let asked = client
        .publish_with_reply(subjects::API_STATUS, inbox, "{}".into())
        .await;
    if asked.is_err() {
        return names;
    }
    let deadline = tokio::time::Instant::now() + PEER_WINDOW;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(reply) = serde_json::from_slice::<StatusReply>(&msg.payload) {
            let found = reply.responder.name == want;
            names.insert(reply.responder.name);
            if found {
                break;
            }
        }
    }
    names
}

/// Releases the lease if this coordinator is active, on behalf of `issuer` (recorded on the
/// step-down's leadership event). A `--to` naming itself, or a coordinator that does not
/// answer, is refused before the lease is touched.
pub(super) async fn failover(
    shared: &Shared,
    client: &async_nats::Client,
    release: &ReleaseHandle,
    req: FailoverRequest,
    issuer: &Issuer,
) -> Result<FailoverReply, FailoverError> {
    let view = shared.leadership.view();
    let Some(epoch) = view.acting_epoch(tokio::time::Instant::now()) else {
        return Err(FailoverError::NotActive {
            name: shared.name.clone(),
            holder: view.holder.clone().unwrap_or_else(|| "unknown".to_owned()),
        });
    };
    if let Some(to) = req.to.as_deref() {
        let peers = if to == shared.name {
            BTreeSet::new()
        } else {
            answering(client, to).await
        };
        check_failover_target(&shared.fleet(), &shared.name, to, &peers)?;
    }
    let by = Requester {
        name: issuer.name.clone(),
        role: issuer.role_text(),
    };
    tracing::info!(epoch, to = ?req.to, requested_by = %by.name, requested_role = %by.role, "failover requested");
    if !release.release(req.to.clone(), Some(by)).await {
        return Err(FailoverError::Stopped);
    }
    Ok(FailoverReply {
        responder: shared.responder(0),
        released_epoch: epoch,
        to: req.to,
    })
}

/// The ledger, newest first (ids are UUIDv7, so they sort by issue time).
pub fn command_views(fleet: &Fleet, req: &CommandsRequest) -> Vec<CommandView> {
    let mut records: Vec<_> = fleet
        .commands()
        .filter(|c| req.ids.is_empty() || req.ids.contains(&c.id))
        .filter(|c| req.host.as_deref().is_none_or(|h| h == c.target))
        .collect();
    records.sort_by(|a, b| b.id.cmp(&a.id));
    let limit = if req.ids.is_empty() {
        req.limit.unwrap_or(50)
    } else {
        usize::MAX
    };
    records
        .into_iter()
        .take(limit)
        .map(|c| CommandView {
            id: c.id.clone(),
            target: c.target.clone(),
            epoch: c.epoch,
            issued_by: c.issued_by.clone(),
            issued_role: c.issued_role,
            action: c.action.parse().ok(),
            module: c.module.clone(),
            deadline_unix_ms: c.deadline_unix_ms,
            state: c.state,
            detail: shown_detail(&c.detail).to_owned(),
            accepted_count: c.accepted_count,
            history: c
                .history
                .iter()
                .map(|h| CommandStepView {
                    state: h.state,
                    at_unix_ms: h.at_unix_ms,
                    by: h.by.clone(),
                    detail: shown_detail(&h.detail).to_owned(),
                })
                .collect(),
        })
        .collect()
}
