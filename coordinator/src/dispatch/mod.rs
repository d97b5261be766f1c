//! Issuing commands to agents (the active coordinator only): validate the request, resolve the
//! target hosts, record one `command_issued` event per host, and send each command on
//! `ops.cmd.<host>` (stream `OPS_CMDS`, so an offline agent gets it when it returns) as soon as
//! its own event is acknowledged, checking the lease again before each send. A sweep marks
//! commands nobody picked up before their deadline as expired. Deadlines are required and
//! capped (`[api] max_deadline`); configs sent are checked by fingerprint (`configs.rs`).

mod action;
mod configs;
mod targets;
#[cfg(test)]
mod tests;

pub use configs::{apply_fingerprint, find_config};
pub use targets::{hint, not_up, resolve};

use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::ErrorChain;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::stream::{FuturesUnordered, StreamExt};
use opsfleet_proto::api::{
    CommandAction, CommandReply, CommandRequest, CommandRequestJson, IssuedCommand, RequestError,
};
use opsfleet_proto::pb::{self, command::Action};
use opsfleet_proto::subjects;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::emit::{EmitError, Emitter};
use crate::identity::Issuer;
use crate::projection::Fleet;
use crate::state::Shared;

pub use action::request_action;

/// Commands still `issued` this long after their deadline are marked expired by the active
/// coordinator (the grace lets an agent's own answer arrive first).
pub const EXPIRY_GRACE_MS: i64 = 2_000;

/// Command publishes awaiting their JetStream ack at once while a request fans out.
pub const SEND_WINDOW: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(
        "{name} is not active (lease holder: {holder}); send commands to the active coordinator"
    )]
    NotActive { name: String, holder: String },
    #[error("lost the lease while issuing; {sent} command(s) were sent, the other {unsent} were not and will expire")]
    LostLease { sent: usize, unsent: usize },
    #[error("{sent} command(s) were sent, the other {unsent} were not and will expire")]
    PartlyIssued {
        sent: usize,
        unsent: usize,
        #[source]
        source: Box<DispatchError>,
    },
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(
        "a deadline is required: the command would never expire (opsctl --deadline, default 60s)"
    )]
    NoDeadline,
    #[error("deadline {asked} is longer than this coordinator allows ({max}, [api] max_deadline)")]
    DeadlineTooLong { asked: String, max: String },
    #[error("fingerprint {fingerprint} of module {module} was announced only by {hosts} with a config whose fingerprint differs (or that does not parse); it is not sent")]
    ForgedFingerprint {
        module: String,
        fingerprint: String,
        hosts: String,
    },
    #[error("the request's fingerprint {claimed} is not that of its config for module {module} ({computed})")]
    FingerprintMismatch {
        module: String,
        claimed: String,
        computed: String,
    },
    #[error(
        "no config of module {module} with fingerprint {fingerprint} in the log (known: {known}); `opsctl config history {module} --host H` lists them with dates"
    )]
    UnknownFingerprint {
        module: String,
        fingerprint: String,
        known: String,
    },
    #[error("fingerprint {fingerprint} of module {module} is ambiguous: it starts {count} known fingerprints; give more of it")]
    AmbiguousFingerprint {
        module: String,
        fingerprint: String,
        count: usize,
    },
    #[error("no target hosts: give --host, --all or --label")]
    NoTargets,
    #[error("no host matches {pattern} (known: {known})")]
    NoGlobMatch { pattern: String, known: String },
    #[error("host {host} has {reason} (its modules: {modules})")]
    ModuleMissing {
        host: String,
        reason: String,
        modules: String,
    },
    #[error("none of the {matched} matched host(s) can take the command: {reason} on any of them")]
    AllSkipped { matched: usize, reason: String },
    #[error("no host has the labels {labels} (labels in use: {known})")]
    NoLabelMatch { labels: String, known: String },
    #[error("unknown host(s): {unknown} (known: {known})")]
    UnknownHosts { unknown: String, known: String },
    #[error("cannot record the commands")]
    Emit(#[from] EmitError),
    #[error("cannot send command {command_id} to {host}")]
    Publish {
        host: String,
        command_id: String,
        #[source]
        source: async_nats::Error,
    },
}

/// The deadline of a request, checked: required (0 would never expire) and at most `max`.
pub fn check_deadline(deadline_ms: u64, max: Duration) -> Result<Duration, DispatchError> {
    let asked = Duration::from_millis(deadline_ms);
    if asked.is_zero() {
        return Err(DispatchError::NoDeadline);
    }
    if asked > max {
        return Err(DispatchError::DeadlineTooLong {
            asked: humantime::format_duration(asked).to_string(),
            max: humantime::format_duration(max).to_string(),
        });
    }
    Ok(asked)
}

/// Commands still waiting for their target after deadline + grace (pure).
pub fn due_for_expiry(fleet: &Fleet, now_unix_ms: i64, grace_ms: i64) -> Vec<(String, i64)> {
    fleet
        .commands()
        .filter(|c| c.state == opsfleet_proto::api::CommandState::Issued && c.deadline_unix_ms > 0)
        .filter(|c| now_unix_ms > c.deadline_unix_ms + grace_ms)
        .map(|c| (c.id.clone(), c.deadline_unix_ms))
        .collect()
}

/// One command per target host, stamped with `epoch`, the issuer and a deadline
/// `deadline_after` from now.
fn commands_for(
    targets: &[String],
    action: &Action,
    epoch: u64,
    issuer: &Issuer,
    deadline_after: Duration,
) -> Vec<pb::Command> {
    let issued_at = now_unix_ms();
    let deadline =
        issued_at.saturating_add(i64::try_from(deadline_after.as_millis()).unwrap_or(i64::MAX));
    targets
        .iter()
        .map(|host| pb::Command {
            id: Uuid::now_v7().to_string(),
            epoch,
            issued_by: issuer.name.clone(),
            target: host.clone(),
            deadline_unix_ms: deadline,
            issued_unix_ms: issued_at,
            action: Some(action.clone()),
        })
        .collect()
}

/// The `command_issued` event recording each command.
fn issued_events(
    commands: &[pb::Command],
    action: &CommandAction,
    issuer: &Issuer,
) -> Vec<pb::event::Body> {
    commands
        .iter()
        .map(|c| {
            pb::event::Body::CommandIssued(pb::CommandIssued {
                command_id: c.id.clone(),
                target: c.target.clone(),
                epoch: c.epoch,
                issued_by: c.issued_by.clone(),
                action: action.name().as_str().to_owned(),
                module: action.module().unwrap_or_default().to_owned(),
                deadline_unix_ms: c.deadline_unix_ms,
                issued_role: issuer.role_text(),
            })
        })
        .collect()
}

/// Issues commands on behalf of the active coordinator.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    emitter: Emitter,
    js: jetstream::Context,
    max_deadline: Duration,
}

impl Dispatcher {
    /// `max_deadline`: the longest deadline a request may ask for (`[api] max_deadline`).
    pub fn new(
        shared: Arc<Shared>,
        emitter: Emitter,
        js: jetstream::Context,
        max_deadline: Duration,
    ) -> Self {
        Dispatcher {
            shared,
            emitter,
            js,
            max_deadline,
        }
    }

    /// The longest deadline a request may ask for (`[api] max_deadline`).
    pub fn max_deadline(&self) -> Duration {
        self.max_deadline
    }

    /// The emitter commands are recorded with (rollout requests record their steps with it).
    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    fn acting_epoch(&self) -> Result<u64, DispatchError> {
        let view = self.shared.leadership.view();
        view.acting_epoch(tokio::time::Instant::now())
            .ok_or_else(|| DispatchError::NotActive {
                name: self.shared.name.clone(),
                holder: view.holder.clone().unwrap_or_else(|| "unknown".to_owned()),
            })
    }

    /// Records and sends one command per target host, as issued by `issuer` (never the
    /// body's `issued_by`); returns their ids.
    pub async fn issue(
        &self,
        req: CommandRequestJson,
        issuer: &Issuer,
    ) -> Result<CommandReply, DispatchError> {
        let epoch = self.acting_epoch()?;
        let deadline_after = check_deadline(req.deadline_ms, self.max_deadline)?;
        let req = CommandRequest::try_from(req)?;
        let (resolved, action) = {
            let fleet = self.shared.fleet();
            let resolved = resolve(&fleet, &req.targets, &req.action)?;
            let action = request_action(&fleet, &req.action, &resolved.targets)?;
            (resolved, action)
        };
        let targets = &resolved.targets;
        let commands = commands_for(targets, &action, epoch, issuer, deadline_after);
        let records = issued_events(&commands, &req.action, issuer);
        // Pipelined: each command is sent as soon as its own `command_issued` event is
        // acknowledged (durable in the stream), while later events are still in flight.
        let (recorded_tx, recorded_rx) = mpsc::unbounded_channel();
        let (recorded, sent) = tokio::join!(
            self.emitter
                .emit_all_reporting(records, Duration::from_secs(30), Some(recorded_tx)),
            self.send_as_recorded(&commands, epoch, recorded_rx),
        );
        let (sent, send_error) = sent;
        if let Some(e) = send_error.or(recorded.err().map(DispatchError::from)) {
            // Some commands may already be out: say how many, so nobody re-issues blindly.
            if sent > 0 {
                return Err(DispatchError::PartlyIssued {
                    sent,
                    unsent: commands.len() - sent,
                    source: Box::new(e),
                });
            }
            return Err(e);
        }
        if sent != commands.len() {
            return Err(DispatchError::LostLease {
                sent,
                unsent: commands.len() - sent,
            });
        }
        info!(epoch, action = %req.action.name(), hosts = commands.len(), skipped = resolved.skipped.len(), issued_by = %issuer.name, issued_role = %issuer.role_text(), "commands issued");
        let fleet = self.shared.fleet();
        let now = now_unix_ms();
        Ok(CommandReply {
            responder: self.shared.responder(0),
            epoch,
            deadline_unix_ms: commands.first().map_or(0, |c| c.deadline_unix_ms),
            commands: commands
                .into_iter()
                .map(|c| {
                    let not_up = not_up(&fleet, &c.target, now);
                    IssuedCommand {
                        liveness: not_up.map(|(l, _)| l),
                        last_seen_unix_ms: not_up.map_or(0, |(_, seen)| seen),
                        host: c.target,
                        command_id: c.id,
                    }
                })
                .collect(),
            skipped: resolved.skipped,
        })
    }

    /// Records and sends one command to `host` with the given id (a rollout recorded the id
    /// first), as `issuer`, after the same checks as `issue`. A deploy carries `rollout_id`.
    pub async fn issue_one(
        &self,
        command_id: &str,
        host: &str,
        req_action: &CommandAction,
        issuer: &Issuer,
        deadline_after: Duration,
        rollout_id: &str,
    ) -> Result<u64, DispatchError> {
        let epoch = self.acting_epoch()?;
        let mut action = {
            let fleet = self.shared.fleet();
            request_action(&fleet, req_action, &[host.to_owned()])?
        };
        if let Action::ServiceDeploy(d) = &mut action {
            d.rollout_id = rollout_id.to_owned();
        }
        let mut commands = commands_for(&[host.to_owned()], &action, epoch, issuer, deadline_after);
        for c in &mut commands {
            c.id = command_id.to_owned();
        }
        let records = issued_events(&commands, req_action, issuer);
        let (recorded_tx, recorded_rx) = mpsc::unbounded_channel();
        let (recorded, (sent, send_error)) = tokio::join!(
            self.emitter
                .emit_all_reporting(records, Duration::from_secs(30), Some(recorded_tx)),
            self.send_as_recorded(&commands, epoch, recorded_rx),
        );
        if let Some(e) = send_error.or(recorded.err().map(DispatchError::from)) {
            return Err(e);
        }
        if sent != commands.len() {
            return Err(DispatchError::LostLease {
                sent,
                unsent: commands.len() - sent,
            });
        }
        Ok(epoch)
    }

    /// Sends `commands[i]` for every index `i` arriving on `recorded` (its `command_issued`
    /// event is acknowledged by then), with at most `SEND_WINDOW` publish acks in flight. The
    /// lease is checked again before each send: once this coordinator is no longer active in
    /// `epoch`, nothing more is sent. Returns how many commands JetStream acknowledged and the
    /// first publish failure, if any (the others are still sent).
    async fn send_as_recorded(
        &self,
        commands: &[pb::Command],
        epoch: u64,
        mut recorded: mpsc::UnboundedReceiver<usize>,
    ) -> (usize, Option<DispatchError>) {
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0usize;
        let mut first_error: Option<DispatchError> = None;
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                Some((c, acked)) = in_flight.next(), if !in_flight.is_empty() => {
                    let c: &pb::Command = c;
                    match acked {
                        Ok(_) => sent += 1,
                        Err(source) => {
                            first_error.get_or_insert(DispatchError::Publish {
                                host: c.target.clone(),
                                command_id: c.id.clone(),
                                source,
                            });
                        }
                    }
                }
                next = recorded.recv(), if open && in_flight.len() < SEND_WINDOW => {
                    let Some(c) = next.and_then(|i| commands.get(i)) else {
                        open = false;
                        continue;
                    };
                    // Fencing at the source, per command: act only if still active in this term.
                    if self.acting_epoch().ok() != Some(epoch) {
                        open = false;
                        continue;
                    }
                    let msg = jetstream::message::PublishMessage::build()
                        .payload(c.encode_to_vec().into())
                        .message_id(&c.id);
                    match self.js.send_publish(subjects::command_subject(&c.target), msg).await {
                        Ok(ack) => in_flight.push(async move {
                            (c, ack.await.map_err(async_nats::Error::from))
                        }),
                        Err(e) => {
                            first_error.get_or_insert(DispatchError::Publish {
                                host: c.target.clone(),
                                command_id: c.id.clone(),
                                source: e.into(),
                            });
                        }
                    }
                }
                else => break,
            }
        }
        (sent, first_error)
    }

    /// While active, marks commands nobody picked up before their deadline as expired.
    pub async fn sweep_expired(self, every: Duration, cancel: CancellationToken) {
        let mut sent: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.acting_epoch().is_err() {
                continue;
            }
            let due: Vec<(String, i64)> =
                due_for_expiry(&self.shared.fleet(), now_unix_ms(), EXPIRY_GRACE_MS)
                    .into_iter()
                    .filter(|(id, _)| !sent.contains(id))
                    .collect();
            if due.is_empty() {
                continue;
            }
            let bodies = due
                .iter()
                .map(|(id, deadline)| {
                    pb::event::Body::CommandExpired(pb::CommandExpired {
                        command_id: id.clone(),
                        deadline_unix_ms: *deadline,
                    })
                })
                .collect();
            match self.emitter.emit_all(bodies, Duration::from_secs(10)).await {
                Ok(_) => sent.extend(due.into_iter().map(|(id, _)| id)),
                Err(e) => {
                    warn!(error = %ErrorChain(&e), "cannot mark commands expired; will retry")
                }
            }
        }
    }
}
