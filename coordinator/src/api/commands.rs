//! `ops.api.failover` (the active coordinator releases its lease) and `ops.api.commands` (the
//! command ledger).

use opsfleet_proto::api::{
    CommandStepView, CommandView, CommandsRequest, FailoverReply, FailoverRequest,
};

use crate::dispatch::hint;
use crate::election::{ReleaseHandle, Requester};
use crate::identity::Issuer;
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
    #[error("unknown coordinator {to}; the lease was not touched (known coordinators: {known})")]
    UnknownCoordinator { to: String, known: String },
    #[error("the election task has stopped")]
    Stopped,
}

/// Checks a `--to` name against this coordinator and the coordinators the log knows (pure).
pub(super) fn check_failover_target(
    fleet: &Fleet,
    me: &str,
    to: Option<&str>,
) -> Result<(), FailoverError> {
    let Some(to) = to else { return Ok(()) };
    if to == me {
        return Err(FailoverError::AlreadyActive {
            name: me.to_owned(),
        });
    }
    if fleet.coordinators().any(|c| c.name == to) {
        return Ok(());
    }
    let mut names: Vec<&str> = fleet.coordinators().map(|c| c.name.as_str()).collect();
    if !names.contains(&me) {
        names.push(me);
    }
    names.sort_unstable();
    Err(FailoverError::UnknownCoordinator {
        to: to.to_owned(),
        known: hint(names),
    })
}

/// Releases the lease if this coordinator is active, on behalf of `issuer` (recorded on the
/// step-down's leadership event). A `--to` naming itself or a coordinator the log does not
/// know is refused before the lease is touched.
pub(super) async fn failover(
    shared: &Shared,
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
    check_failover_target(&shared.fleet(), &shared.name, req.to.as_deref())?;
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
            detail: c.detail.clone(),
            accepted_count: c.accepted_count,
            history: c
                .history
                .iter()
                .map(|h| CommandStepView {
                    state: h.state,
                    at_unix_ms: h.at_unix_ms,
                    by: h.by.clone(),
                    detail: h.detail.clone(),
                })
                .collect(),
        })
        .collect()
}
