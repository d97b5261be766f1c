//! Query API over NATS request/reply: `ops.api.status` (every coordinator answers; the first
//! reply wins) and `ops.api.status.<name>` (one coordinator). Replies are JSON from
//! `opsfleet_proto::api`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_nats::jetstream::stream;
use futures::StreamExt;
use opsfleet_proto::api::{
    ApiError, CommandRequest, CommandStepView, CommandView, CommandsReply, CommandsRequest,
    CoordinatorView, DiskView, FailoverReply, FailoverRequest, HostView, LeadershipChangeView,
    ModuleView, Responder, StatusReply, StatusRequest,
};
use opsfleet_proto::subjects;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::dispatch::{DispatchError, Dispatcher};
use crate::election::ReleaseHandle;
use crate::projection::{Fleet, HostState};
use crate::state::Shared;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot subscribe to {subject}")]
pub struct SubscribeError {
    pub subject: String,
    #[source]
    pub source: async_nats::SubscribeError,
}

/// The host views of a fleet, optionally one host only.
pub fn host_views(fleet: &Fleet, only: Option<&str>) -> Vec<HostView> {
    fleet
        .hosts()
        .filter(|h| only.is_none_or(|o| o == h.host))
        .map(host_view)
        .collect()
}

fn host_view(h: &HostState) -> HostView {
    let current = h.current();
    HostView {
        host: h.host.clone(),
        last_seen_unix_ms: h.last_seen_unix_ms,
        last_seq: current.map_or(0, |t| t.last_seq),
        incarnation: h.incarnation.clone(),
        events: h.events,
        gaps: current.map(|t| t.gaps.clone()).unwrap_or_default(),
        disks: h
            .disks
            .iter()
            .map(|(path, d)| DiskView {
                path: path.clone(),
                used_percent: f64::from(d.used_basis_points) / 100.0,
                inodes_used_percent: f64::from(d.inodes_used_basis_points) / 100.0,
                level: d.level.clone(),
                total_bytes: d.total_bytes,
                avail_bytes: d.avail_bytes,
            })
            .collect(),
        modules: h
            .modules
            .iter()
            .map(|(name, m)| ModuleView {
                name: name.clone(),
                kind: m.kind.clone(),
                state: m.state.clone(),
            })
            .collect(),
    }
}

/// Who answers, in which role, how current.
pub fn responder(shared: &Shared, behind: u64) -> Responder {
    let view = shared.leadership.view();
    let now = tokio::time::Instant::now();
    Responder {
        name: shared.name.clone(),
        color: shared.color.clone(),
        role: view.role(now).to_owned(),
        epoch: view.epoch,
        applied_stream_seq: shared.applied(),
        behind,
    }
}

/// Builds the reply to one status request.
pub async fn status(shared: &Shared, events: &stream::Stream, req: &StatusRequest) -> StatusReply {
    let applied = shared.applied();
    // The stream's last sequence tells how far behind we are; if the server cannot say, we
    // report 0 rather than fail the whole answer.
    let behind = match events.get_info().await {
        Ok(info) => info.state.last_sequence.saturating_sub(applied),
        Err(e) => {
            warn!(error = %e, "cannot read stream info for `behind`");
            0
        }
    };
    let (hosts, coordinators, digest) = {
        let fleet = shared.fleet();
        (
            host_views(&fleet, req.host.as_deref()),
            coordinator_views(&fleet),
            fleet.digest(),
        )
    };
    StatusReply {
        responder: responder(shared, behind),
        digest,
        log_events: shared.store.log_len().unwrap_or(0),
        duplicates_dropped: shared.duplicates.load(Ordering::Relaxed),
        malformed_parked: shared.parked.load(Ordering::Relaxed),
        hosts,
        coordinators,
    }
}

/// The coordinators' leadership as folded from the log.
pub fn coordinator_views(fleet: &Fleet) -> Vec<CoordinatorView> {
    fleet
        .coordinators()
        .map(|c| CoordinatorView {
            name: c.name.clone(),
            color: c.color.clone(),
            role: c.role.clone(),
            epoch: c.epoch,
            history: c
                .history
                .iter()
                .map(|h| LeadershipChangeView {
                    epoch: h.epoch,
                    role: h.role.clone(),
                    reason: h.reason.clone(),
                    at_unix_ms: h.at_unix_ms,
                })
                .collect(),
        })
        .collect()
}

/// Answers API requests until `cancel` fires.
pub async fn serve(
    client: async_nats::Client,
    shared: Arc<Shared>,
    events: stream::Stream,
    release: ReleaseHandle,
    dispatcher: Dispatcher,
    cancel: CancellationToken,
) -> Result<(), SubscribeError> {
    let subscribe = |subject: String| {
        let client = client.clone();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| SubscribeError { subject, source })
        }
    };
    let mut subs = Vec::new();
    for verb in [
        subjects::API_STATUS,
        subjects::API_FAILOVER,
        subjects::API_COMMAND,
        subjects::API_COMMANDS,
    ] {
        subs.push(subscribe(verb.to_owned()).await?);
        subs.push(subscribe(subjects::api_subject_for(verb, &shared.name)).await?);
    }
    for subject in crate::identity::subscriptions(&shared.name) {
        subs.push(subscribe(subject).await?);
    }
    let mut requests = futures::stream::select_all(subs);
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            msg = requests.next() => msg,
        };
        let Some(msg) = msg else { return Ok(()) };
        let Some(reply_to) = msg.reply.clone() else {
            debug!(subject = %msg.subject, "request without reply subject ignored");
            continue;
        };
        let (subject, operator) = crate::identity::split(&msg.subject);
        let verb = subject
            .strip_suffix(&format!(".{}", shared.name))
            .unwrap_or(&subject);
        let addressed_to_me = verb.len() != subject.len();
        let reply = match verb {
            subjects::API_STATUS => match parse::<StatusRequest>(&msg.payload) {
                Ok(req) => to_json(&status(&shared, &events, &req).await),
                Err(e) => error_reply(&shared, format!("bad status request: {e}")),
            },
            subjects::API_FAILOVER => match parse::<FailoverRequest>(&msg.payload) {
                Ok(req) => match failover(&shared, &release, req).await {
                    Ok(reply) => to_json(&reply),
                    // Standbys stay silent on the broadcast subject so the active one answers.
                    Err(_) if !addressed_to_me => continue,
                    Err(e) => error_reply(&shared, e),
                },
                Err(e) => error_reply(&shared, format!("bad failover request: {e}")),
            },
            subjects::API_COMMAND => match parse::<CommandRequest>(&msg.payload) {
                // Issuing may take a while for a large fleet: answer from a task so that
                // status requests are not held up.
                Ok(mut req) => {
                    crate::identity::stamp(&mut req, operator.as_deref());
                    let (dispatcher, client, shared) =
                        (dispatcher.clone(), client.clone(), Arc::clone(&shared));
                    tokio::spawn(async move {
                        let reply = match dispatcher.issue(&req).await {
                            Ok(reply) => to_json(&reply),
                            // Standbys stay silent on the broadcast subject.
                            Err(DispatchError::NotActive { .. }) if !addressed_to_me => return,
                            Err(e) => error_reply(&shared, error_text(&e)),
                        };
                        if let Err(e) = client.publish(reply_to, reply.into()).await {
                            warn!(error = %e, "cannot send API reply");
                        }
                    });
                    continue;
                }
                Err(e) => error_reply(&shared, format!("bad command request: {e}")),
            },
            subjects::API_COMMANDS => match parse::<CommandsRequest>(&msg.payload) {
                Ok(req) => to_json(&CommandsReply {
                    responder: responder(&shared, 0),
                    commands: command_views(&shared.fleet(), &req),
                }),
                Err(e) => error_reply(&shared, format!("bad commands request: {e}")),
            },
            _ => continue,
        };
        if let Err(e) = client.publish(reply_to, reply.into()).await {
            warn!(error = %e, "cannot send API reply");
        }
    }
}

/// Releases the lease if this coordinator is active.
async fn failover(
    shared: &Shared,
    release: &ReleaseHandle,
    req: FailoverRequest,
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
    if !release.release(req.to.clone()).await {
        return Err("the election task has stopped".to_owned());
    }
    Ok(FailoverReply {
        responder: responder(shared, 0),
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
            action: c.action.clone(),
            module: c.module.clone(),
            deadline_unix_ms: c.deadline_unix_ms,
            state: c.state.clone(),
            detail: c.detail.clone(),
            accepted_count: c.accepted_count,
            history: c
                .history
                .iter()
                .map(|h| CommandStepView {
                    state: h.state.clone(),
                    at_unix_ms: h.at_unix_ms,
                    by: h.by.clone(),
                    detail: h.detail.clone(),
                })
                .collect(),
        })
        .collect()
}

/// An error and its causes on one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn parse<T: Default + serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    if payload.is_empty() {
        Ok(T::default())
    } else {
        serde_json::from_slice(payload)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our API types are plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn error_reply(shared: &Shared, error: String) -> Vec<u8> {
    to_json(&ApiError {
        responder: shared.name.clone(),
        error,
    })
}
