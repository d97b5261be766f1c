//! `ops.api.failover` (the active coordinator releases its lease) and `ops.api.commands` (the
//! command ledger).

use opsfleet_proto::api::{
    CommandStepView, CommandView, CommandsRequest, FailoverReply, FailoverRequest,
};

use crate::election::{ReleaseHandle, Requester};
use crate::identity::Issuer;
use crate::projection::Fleet;
use crate::state::Shared;

/// Releases the lease if this coordinator is active, on behalf of `issuer` (recorded on the
/// step-down's leadership event).
pub(super) async fn failover(
    shared: &Shared,
    release: &ReleaseHandle,
    req: FailoverRequest,
    issuer: &Issuer,
) -> Result<FailoverReply, String> {
    let view = shared.leadership.view();
    let Some(epoch) = view.acting_epoch(tokio::time::Instant::now()) else {
        return Err(format!(
            "{} is not active (lease holder: {})",
            shared.name,
            view.holder.as_deref().unwrap_or("unknown")
        ));
    };
    if req.to.as_deref() == Some(shared.name.as_str()) {
        return Err(format!("{} is already active", shared.name));
    }
    let by = Requester {
        name: issuer.name.clone(),
        role: issuer.role_text(),
    };
    tracing::info!(epoch, to = ?req.to, requested_by = %by.name, requested_role = %by.role, "failover requested");
    if !release.release(req.to.clone(), Some(by)).await {
        return Err("the election task has stopped".to_owned());
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
