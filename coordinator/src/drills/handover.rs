//! The `coordinator_failover` drill, as the active coordinator runs it: hand the lease to a
//! standby and back — each handover asked of whichever coordinator is active, as an operator
//! through the coordinators' own forwarding subject (`ops.api.console.failover`, answered only
//! on this coordinator's inbox, the way the console acts) — timing each takeover from this
//! coordinator's fold of the other's leadership events and from its own lease, then counting
//! what the handovers cost: seqs newly missing on any host, commands accepted more than once.

use std::time::Duration;

use futures::StreamExt;
use opsfleet_proto::api::{
    ApiError, ConsoleRequest, FailoverReply, FailoverRequest, LeaderRole, Role, StatusReply,
};
use opsfleet_proto::subjects;
use tokio::time::Instant;

use crate::projection::Fleet;
use crate::state::Shared;

/// How long one handover's request may wait for its answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(15);

/// Seqs missing per host (every incarnation), and commands accepted more than once.
fn costs(fleet: &Fleet) -> (u64, u64) {
    let missing = (fleet.hosts())
        .flat_map(|h| h.streams.values())
        .flat_map(|s| s.gaps.iter())
        .map(|g| g.last.saturating_sub(g.first) + 1)
        .sum();
    let twice = fleet.commands().filter(|c| c.accepted_count > 1).count() as u64;
    (missing, twice)
}

/// A standby to hand over to: the first other coordinator answering `ops.api.status` as a
/// standby within a second (a standby records no event while nothing changes, so the log
/// alone may not know it).
async fn standby(client: &async_nats::Client, me: &str) -> Option<String> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.ok()?;
    (client
        .publish_with_reply(subjects::API_STATUS, inbox, "{}".into())
        .await)
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(reply) = serde_json::from_slice::<StatusReply>(&msg.payload) {
            let r = reply.responder;
            if r.name != me && r.role == LeaderRole::Standby {
                return Some(r.name);
            }
        }
    }
    None
}

/// Asks the active coordinator (whoever it is) to hand its lease to `to`, as `operator`.
async fn ask(
    client: &async_nats::Client,
    via: &str,
    operator: &str,
    to: &str,
) -> Result<FailoverReply, String> {
    let body = ConsoleRequest {
        via: via.to_owned(),
        operator: operator.to_owned(),
        role: Role::Operator,
        request: serde_json::to_value(FailoverRequest {
            to: Some(to.to_owned()),
            requested_by: Some(operator.to_owned()),
        })
        .map_err(|e| e.to_string())?,
    };
    let payload = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let inbox = format!("_INBOX.{via}.drill.{}", uuid::Uuid::now_v7().simple());
    let mut sub = (client.subscribe(inbox.clone()).await)
        .map_err(|e| format!("cannot subscribe to {inbox}: {e}"))?;
    client
        .publish_with_reply(subjects::api_console("failover"), inbox, payload.into())
        .await
        .map_err(|e| format!("cannot ask for the handover: {e}"))?;
    let reply = tokio::time::timeout(ASK_TIMEOUT, sub.next()).await;
    let _ = sub.unsubscribe().await;
    let Ok(Some(msg)) = reply else {
        return Err(format!(
            "no active coordinator answered within {ASK_TIMEOUT:?}"
        ));
    };
    if let Ok(r) = serde_json::from_slice::<FailoverReply>(&msg.payload) {
        return Ok(r);
    }
    match serde_json::from_slice::<ApiError>(&msg.payload) {
        Ok(e) => Err(format!("{} refused: {}", e.responder, e.error)),
        Err(e) => Err(format!("unreadable answer: {e}")),
    }
}

/// Polls `done` every 20 ms until it holds or `within` passed; how long it took.
async fn until(within: Duration, mut done: impl FnMut() -> bool) -> Option<u64> {
    let started = Instant::now();
    while started.elapsed() < within {
        if done() {
            return Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Runs the drill from the active coordinator `shared`: there and back; what it found.
pub async fn run(
    shared: &Shared,
    client: &async_nats::Client,
    drill: &str,
    within: Duration,
) -> Result<String, String> {
    let me = shared.name.clone();
    let Some(other) = standby(client, &me).await else {
        return Err("no standby coordinator answered; nothing to hand over to".to_owned());
    };
    let operator = format!("{me}-drill-{drill}");
    let (missing_before, twice_before) = costs(&shared.fleet());

    let there = ask(client, &me, &operator, &other).await?;
    let released = there.released_epoch;
    let took_there = until(within, || {
        (shared.fleet().coordinators())
            .any(|c| c.name == other && c.role == LeaderRole::Active && c.epoch > released)
    })
    .await
    .ok_or_else(|| format!("{other} did not become active within {within:?}"))?;

    let back = ask(client, &me, &operator, &me).await?;
    let released_back = back.released_epoch;
    let took_back = until(within, || {
        (shared.leadership.view().acting_epoch(Instant::now())).is_some_and(|e| e > released_back)
    })
    .await
    .ok_or_else(|| format!("{me} did not become active again within {within:?}"))?;

    // The last events of the handovers reach the fold a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (missing_after, twice_after) = costs(&shared.fleet());
    let lost = missing_after.saturating_sub(missing_before);
    let twice = twice_after.saturating_sub(twice_before);
    let detail = format!(
        "{me} -> {other} in {took_there} ms (epoch {released} ended), {other} -> {me} in \
         {took_back} ms (epoch {released_back} ended); events lost {lost}, commands run twice {twice}"
    );
    if lost == 0 && twice == 0 {
        Ok(detail)
    } else {
        Err(detail)
    }
}
