//! The agent's side of commands: a durable JetStream pull consumer `agent-<host>` on
//! `OPS_CMDS` (filter `ops.cmd.<host>`, explicit acks, one in flight, so an agent that was
//! offline gets what was sent meanwhile, in order), and the lifecycle of each command.
//!
//! Per message: undecodable → logged, counted, acked. Otherwise `decide` (target, seen id,
//! epoch fencing, deadline, payload); a duplicate is acked silently; a rejection or expiry is
//! written to the outbox with the id's status (and a raised epoch) in one flushed batch, then
//! acked; an accepted command writes `command_accepted` + status `accepted` + epoch in one
//! flushed batch, is acked, runs, and its `command_completed` / `command_failed` (after any
//! restore result) goes through the runner's writer, after the events of the change itself.
//! At start every id still `accepted` (the agent stopped mid-run) gets `command_failed`.
//! A `backup_run` runs in the background (through the backup module's worker); its result
//! comes back on a channel the consumer drains, so commands behind it are not held up.
//!
//! Deadlines are judged on the NATS server's clock (`clock`), read when the consumer opens
//! and every `RESAMPLE_EVERY`, not on this host's wall clock, which may jump.
//!
//! `decide` owns the pure decisions, `ledger` the persisted epoch and statuses, `exec` the
//! actions.

mod clock;
mod decide;
mod exec;
mod ledger;

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, AckKind};
use futures::StreamExt;
use opsfleet_proto::{pb, subjects};
use prost::Message;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{fs_resolve, AgentConfig, HostPolicy, AGENT_MODULE};
use crate::outbox::{NewEvent, Outbox, OutboxError};
use crate::runner::control::ControlHandle;
use crate::runner::{RunOutput, StatusBoard};
use crate::telemetry;
use opsfleet_proto::time::unix_ms;

use clock::ServerClock;
pub use decide::{
    action_name, check_policy, deadline_problem, decide, delivered_by_own_consumer, validate,
    Catalog, Outcome, Verdict, CLOCK_SKEW_MS, MAX_DEADLINE_AHEAD_MS, STALE_EPOCH,
};
pub use exec::Execution;
pub use ledger::{Ledger, Status, LEDGER_KEEP_MS};

/// How often the ledger is pruned (on the next record after this much time).
const PRUNE_EVERY_MS: i64 = 3600 * 1000;

/// Reason of the `command_failed` for a command the agent stopped in the middle of.
pub const RESTARTED: &str = "agent restarted before the command finished";

/// Errors of the command consumer; each names what it was working on.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot read the command ledger")]
    Ledger(#[source] Box<OutboxError>),
    #[error("cannot record command {id} in the outbox")]
    Record {
        id: String,
        #[source]
        source: Box<OutboxError>,
    },
}

/// A command accepted (and recorded) but not yet run.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub id: String,
    pub kind: &'static str,
    pub action: pb::command::Action,
}

/// The durable consumer's name for `host`: `agent-<host>`.
pub fn consumer_name(host: &str) -> String {
    format!("agent-{host}")
}

/// Handles this host's commands; build it with the runner's control handle and status board.
pub struct CommandHandler {
    host: String,
    outbox: Arc<Outbox>,
    notify: Arc<Notify>,
    control: ControlHandle,
    status: StatusBoard,
    config: Arc<AgentConfig>,
    catalog: Catalog,
    /// `[policy]` of the config file (restore targets).
    policy: HostPolicy,
    ledger: Ledger,
    /// When the ledger is next pruned (its deletions ride along with the next record).
    next_prune_ms: i64,
    /// How long a drain waits for the outbox to empty.
    pub drain_wait: Duration,
    /// The NATS server's time, carried forward on the boot clock: the clock of deadlines.
    clock: ServerClock,
    /// Results of commands run in the background (backup runs, which may take long and must
    /// not hold up the commands behind them); the consumer records them as they come.
    detached_tx: mpsc::UnboundedSender<(String, &'static str, Execution)>,
    detached_rx: mpsc::UnboundedReceiver<(String, &'static str, Execution)>,
}

impl CommandHandler {
    /// Loads the ledger. `notify` wakes the publisher after each direct outbox write.
    pub fn new(
        outbox: Arc<Outbox>,
        notify: Arc<Notify>,
        control: ControlHandle,
        status: StatusBoard,
        config: Arc<AgentConfig>,
    ) -> Result<Self, CommandError> {
        let (ledger, bad) = Ledger::load(&outbox).map_err(|e| CommandError::Ledger(Box::new(e)))?;
        for key in bad {
            warn!(key, "unreadable command ledger entry skipped");
        }
        let (detached_tx, detached_rx) = mpsc::unbounded_channel();
        Ok(CommandHandler {
            detached_tx,
            detached_rx,
            host: outbox.host().to_owned(),
            catalog: Catalog::from_config(&config),
            policy: HostPolicy::from_config(&config),
            outbox,
            notify,
            control,
            status,
            config,
            ledger,
            next_prune_ms: 0,
            clock: ServerClock::default(),
            drain_wait: Duration::from_secs(30),
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Now, on the server's clock once it has been read (see `clock`), else this host's.
    fn now_ms(&self) -> i64 {
        self.clock
            .now_unix_ms(unix_ms(SystemTime::now()), clock::boot_ms())
    }

    /// Reads the server's time from the consumer's info reply; warns when this host's wall
    /// clock is off by more than `SKEW_WARN_MS`. A failure keeps the previous reading.
    async fn sample_server_clock(&mut self, js: &jetstream::Context, durable: &str) {
        let subject = format!("CONSUMER.INFO.{}.{durable}", subjects::COMMANDS_STREAM);
        let sent = clock::boot_ms();
        let reply: Result<jetstream::response::Response<clock::Stamped>, _> =
            js.request(subject, &serde_json::json!({})).await;
        let received = clock::boot_ms();
        let stamped = match reply {
            Ok(jetstream::response::Response::Ok(s)) => s,
            Ok(jetstream::response::Response::Err { error }) => {
                debug!(consumer = %durable, error = %ErrorChain(&error), "cannot read the server's time");
                return;
            }
            Err(e) => {
                debug!(consumer = %durable, error = %ErrorChain(&e), "cannot read the server's time");
                return;
            }
        };
        let Some(server_ms) = clock::parse_ts(&stamped.ts) else {
            debug!(ts = %stamped.ts, "unreadable server time");
            return;
        };
        self.clock.observe(server_ms, sent, received);
        let wall = unix_ms(SystemTime::now());
        if let Some(skew) = self.clock.skew_ms(wall, clock::boot_ms()) {
            if skew.abs() > clock::SKEW_WARN_MS {
                warn!(host = %self.host, skew_ms = skew, "this host's clock differs from the NATS server's; command deadlines follow the server's");
            }
        }
    }

    /// Fails every command left `accepted` by an earlier run.
    pub async fn recover(&mut self) -> Result<(), CommandError> {
        for id in self.ledger.unfinished() {
            warn!(command_id = %id, "command interrupted by a restart; reporting it failed");
            let body = pb::event::Body::CommandFailed(pb::CommandFailed {
                command_id: id.clone(),
                reason: RESTARTED.to_owned(),
            });
            self.record(&id, body, Status::Failed, 0).await?;
            telemetry::command("failed");
        }
        Ok(())
    }

    /// Writes one lifecycle event with the id's new status (and epoch) in one flushed batch.
    async fn record(
        &mut self,
        id: &str,
        body: pb::event::Body,
        status: Status,
        epoch: u64,
    ) -> Result<(), CommandError> {
        let now = self.now_ms();
        let mut writes = self.ledger.writes(id, status, epoch, now);
        let pruned = if now >= self.next_prune_ms {
            let mut ids = self.ledger.prunable(now);
            ids.retain(|p| p != id);
            writes.extend(Ledger::prune_writes(&ids));
            ids
        } else {
            Vec::new()
        };
        let ev = NewEvent {
            module: AGENT_MODULE.to_owned(),
            time_unix_ms: now,
            body,
        };
        self.outbox
            .append_with_state(vec![ev], writes)
            .await
            .map_err(|source| CommandError::Record {
                id: id.to_owned(),
                source: Box::new(source),
            })?;
        self.ledger.commit(id, status, epoch, now);
        if now >= self.next_prune_ms {
            self.ledger.forget(&pruned);
            self.next_prune_ms = now.saturating_add(PRUNE_EVERY_MS);
            if !pruned.is_empty() {
                info!(
                    pruned = pruned.len(),
                    kept = self.ledger.len(),
                    "command ledger pruned"
                );
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// `admit` then, for an accepted command, `complete`: what the consumer does, with the ack
    /// in between.
    pub async fn handle(&mut self, payload: &[u8]) -> Result<(), CommandError> {
        if let Some(accepted) = self.admit(payload).await? {
            self.complete(accepted).await?;
        }
        Ok(())
    }

    /// Decides about one delivered payload and records (flushes) the decision. `Some` for an
    /// accepted command, to be run with `complete`; the message may be acked either way.
    pub async fn admit(&mut self, payload: &[u8]) -> Result<Option<Accepted>, CommandError> {
        let cmd = match pb::Command::decode(payload) {
            Ok(c) if !c.id.is_empty() => c,
            Ok(_) => {
                warn!(host = %self.host, "command without an id dropped");
                telemetry::command("undecodable");
                return Ok(None);
            }
            Err(e) => {
                warn!(host = %self.host, error = %ErrorChain(&e), bytes = payload.len(), "undecodable command dropped");
                telemetry::command("undecodable");
                return Ok(None);
            }
        };
        let action = cmd.action.as_ref();
        let seen = self.ledger.status(&cmd.id).is_some();
        let highest = self.ledger.highest_epoch();
        let valid = validate(action, &self.catalog)
            .and_then(|()| check_policy(action, &self.policy, &fs_resolve));
        let now = self.now_ms();
        let verdict = decide(&self.host, &cmd, highest, seen, now, valid);
        let id = cmd.id.as_str();
        let kind = action_name(action);
        let (body, status) = match verdict.outcome {
            Outcome::Duplicate => {
                debug!(command_id = %id, "duplicate command ignored");
                telemetry::command("duplicate");
                return Ok(None);
            }
            Outcome::Rejected { reason } => {
                warn!(command_id = %id, action = kind, epoch = cmd.epoch, highest, reason = %reason, "command rejected");
                let body = pb::event::Body::CommandRejected(pb::CommandRejected {
                    command_id: id.to_owned(),
                    reason,
                    epoch: cmd.epoch,
                    highest_epoch_seen: highest,
                });
                (body, Status::Rejected)
            }
            Outcome::Expired => {
                warn!(command_id = %id, action = kind, deadline_unix_ms = cmd.deadline_unix_ms, "command expired");
                let body = pb::event::Body::CommandExpired(pb::CommandExpired {
                    command_id: id.to_owned(),
                    deadline_unix_ms: cmd.deadline_unix_ms,
                });
                (body, Status::Expired)
            }
            Outcome::Accept => {
                let body = pb::event::Body::CommandAccepted(pb::CommandAccepted {
                    command_id: id.to_owned(),
                    epoch: cmd.epoch,
                });
                (body, Status::Accepted)
            }
        };
        self.record(id, body, status, verdict.highest_epoch).await?;
        telemetry::command(status.as_str());
        if status != Status::Accepted {
            return Ok(None);
        }
        info!(command_id = %id, action = kind, issued_by = %cmd.issued_by, "command accepted");
        Ok(cmd.action.map(|action| Accepted {
            id: cmd.id,
            kind,
            action,
        }))
    }

    /// Runs an accepted command and queues its result.
    pub async fn complete(&mut self, accepted: Accepted) -> Result<(), CommandError> {
        let run = self.execute(&accepted.action).await;
        self.finish(&accepted.id, accepted.kind, run).await
    }

    /// Queues the result behind the change's own events; falls back to a direct write when
    /// the runner is gone.
    async fn finish(&mut self, id: &str, kind: &str, run: Execution) -> Result<(), CommandError> {
        let now = self.now_ms();
        let (status, last) = match run.result {
            Ok(detail) => {
                info!(command_id = %id, action = kind, detail = %detail, "command completed");
                let body = pb::event::Body::CommandCompleted(pb::CommandCompleted {
                    command_id: id.to_owned(),
                    detail,
                });
                (Status::Completed, body)
            }
            Err(reason) => {
                warn!(command_id = %id, action = kind, reason = %reason, "command failed");
                let body = pb::event::Body::CommandFailed(pb::CommandFailed {
                    command_id: id.to_owned(),
                    reason,
                });
                (Status::Failed, body)
            }
        };
        telemetry::command(status.as_str());
        let event = |body| NewEvent {
            module: AGENT_MODULE.to_owned(),
            time_unix_ms: now,
            body,
        };
        let mut events: Vec<NewEvent> = run.bodies.into_iter().map(event).collect();
        events.push(event(last.clone()));
        let output = RunOutput {
            events,
            state: self.ledger.writes(id, status, 0, now),
        };
        if self.control.emit(output).await.is_ok() {
            self.ledger.commit(id, status, 0, now);
            return Ok(());
        }
        self.record(id, last, status, 0).await
    }

    /// Consumes `ops.cmd.<host>` until `cancel`: reports interrupted commands, then opens (and
    /// on failure re-opens, with backoff) the durable consumer.
    pub async fn run(mut self, js: jetstream::Context, cancel: CancellationToken) {
        while let Err(e) = self.recover().await {
            warn!(host = %self.host, error = %ErrorChain(&e), "cannot report interrupted commands, retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            match self.consume(&js, &cancel).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    debug!(host = %self.host, error = %ErrorChain(&*e), "command consumer unavailable, retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    async fn consume(
        &mut self,
        js: &jetstream::Context,
        cancel: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        let stream = js.get_stream(subjects::COMMANDS_STREAM).await?;
        let durable = consumer_name(&self.host);
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    description: Some(format!("opsfleet agent {}", self.host)),
                    filter_subject: subjects::command_subject(&self.host),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await?;
        let mut messages = consumer
            .stream()
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?;
        info!(host = %self.host, consumer = %durable, "command consumer open");
        self.sample_server_clock(js, &durable).await;
        let mut resample = tokio::time::interval(clock::RESAMPLE_EVERY);
        resample.tick().await;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = resample.tick() => {
                    self.sample_server_clock(js, &durable).await;
                    continue;
                }
                Some((id, kind, run)) = self.detached_rx.recv() => {
                    if let Err(e) = self.finish(&id, kind, run).await {
                        warn!(error = %ErrorChain(&e), "cannot record command result; a restart reports it failed");
                    }
                    continue;
                }
                next = messages.next() => next,
            };
            let msg = match next {
                None => return Ok(()),
                Some(Err(e)) => {
                    debug!(error = %ErrorChain(&e), "command consumer hiccup");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let info = msg.info().ok();
            let ack = info.as_ref().map(|i| (i.stream, i.consumer));
            if !delivered_by_own_consumer(&self.host, msg.subject.as_str(), ack) {
                // Not from agent-<host> on OPS_CMDS: never decoded, never acked (its ack
                // subject, if any, belongs to somebody else's consumer).
                warn!(subject = %msg.subject, stream = ack.map(|a| a.0), consumer = ack.map(|a| a.1), "ignoring a message on the command inbox that its consumer did not deliver");
                continue;
            }
            let accepted = match self.admit(&msg.payload).await {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %ErrorChain(&e), "cannot record command; asking for redelivery");
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    continue;
                }
            };
            // The decision is flushed: a redelivery from here on is a duplicate.
            if let Err(e) = msg.ack().await {
                warn!(error = %ErrorChain(&*e), "cannot ack command; a redelivery will be ignored as a duplicate");
            }
            if let Some(accepted) = accepted {
                if let pb::command::Action::BackupRun(b) = &accepted.action {
                    // A backup may run for minutes: in the background, its result recorded
                    // when it comes; a restart meanwhile reports it failed (`recover`).
                    let run = self.backup_run_task(b.clone());
                    let tx = self.detached_tx.clone();
                    tokio::spawn(async move {
                        let result = run.await;
                        let _ = tx.send((accepted.id, accepted.kind, Execution::done(result)));
                    });
                    continue;
                }
                if let Err(e) = self.complete(accepted).await {
                    warn!(error = %ErrorChain(&e), "cannot record command result; a restart reports it failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
