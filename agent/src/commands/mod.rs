//! The agent's side of commands: a durable JetStream pull consumer `agent-<host>` on
//! `OPS_CMDS` (filter `ops.cmd.<host>`, explicit acks, one in flight, so an agent that was
//! offline gets what was sent meanwhile, in order), a plain subscription on
//! `ops.fastcmd.<host>` where the stream republishes each command once stored (the fast path;
//! `fastpath` says which copies are the stream's and when one may run without overtaking an
//! earlier command), and the lifecycle of each command. Whichever path brings a command first
//! decides it; the other arrival is a duplicate, which the durable consumer still acks.
//!
//! Per message: a server relay copy (direct-get relay headers, `opsfleet_proto::relay`, or no
//! `Nats-Msg-Id`, which every dispatch sets) or undecodable → logged, counted, acked, never
//! decoded into state. Otherwise `decide` (target, seen id,
//! epoch fencing, deadline, payload); a duplicate is acked silently; a rejection or expiry is
//! written to the outbox with the id's status (and a raised epoch) in one flushed batch, then
//! acked; an accepted command writes `command_accepted` + status `accepted` + epoch in one
//! flushed batch, is acked, runs, and its `command_completed` / `command_failed` (after any
//! restore result) goes through the runner's writer, after the events of the change itself.
//! At start every id still `accepted` (the agent stopped mid-run) gets `command_failed`.
//! A `backup_run` runs in the background (through the backup module's worker), and so does the
//! wait of a service lifecycle command for its readiness gate (the request itself is handed to
//! the service module in order first) and a whole `service_deploy` (fetch, switch, restart,
//! gate); their results come back on a channel the consumer drains, so commands behind them
//! are not held up. Deploys and lifecycle ops of one service stay in order: each waits for
//! the previous one of its service (its lane) before it starts.
//!
//! Deadlines are judged on the NATS server's clock (`clock`), read when the consumer opens
//! and every `RESAMPLE_EVERY`, not on this host's wall clock, which may jump.
//!
//! `decide` owns the pure decisions, `ledger` the persisted epoch and statuses, `exec` the
//! actions, `consumer` the consumer loop that feeds deliveries through `admit` and `complete`.

mod app;
mod appconfig;
mod clock;
mod consumer;
mod decide;
mod deploy;
mod exec;
mod fastpath;
mod ledger;
mod role;
mod traffic;

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opsfleet_proto::pb;
use prost::Message;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use crate::config::{fs_resolve, AgentConfig, HostPolicy, AGENT_MODULE};
use crate::outbox::{NewEvent, Outbox, OutboxError};
use crate::runner::control::ControlHandle;
use crate::runner::{RunOutput, StatusBoard};
use crate::telemetry;
use opsfleet_proto::time::unix_ms;

use clock::ServerClock;
pub use decide::{
    action_name, check_policy, deadline_problem, decide, delivered_by_own_consumer,
    restore_archive, restore_target_problem, validate, Catalog, Outcome, Verdict, CLOCK_SKEW_MS,
    LATEST_ARCHIVE, MAX_DEADLINE_AHEAD_MS, STALE_EPOCH,
};
pub use exec::Execution;
pub use fastpath::{fast_copy, fast_step, relay_problem, FastStep, Placed, Via};
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

/// The module a command's extra event is published under: a service config snapshot under
/// its service (as the module's own snapshots are), anything else under the agent.
fn body_module(body: &pb::event::Body) -> &str {
    match body {
        pb::event::Body::ServiceConfig(s) if !s.service.is_empty() => &s.service,
        pb::event::Body::ServiceDeployed(d) if !d.service.is_empty() => &d.service,
        _ => AGENT_MODULE,
    }
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
    /// The `OPS_CMDS` sequence up to which this host's command subject is handled (decided,
    /// or acked by the durable consumer): a fast copy right after it may run
    /// (`fastpath::fast_step`). Set when a consumer session opens: the ledger's last
    /// decision when it counts in the same stream, else 0.
    cursor: u64,
    /// The identity (creation time) of the `OPS_CMDS` the cursor counts in; `None` before
    /// the first session.
    stream_id: Option<String>,
    /// Whether the fast path is behind (its last copy was left to the durable consumer):
    /// logged once each way.
    fast_behind: bool,
    /// When a refused fast-path copy was last logged as a warning (at most once a minute:
    /// anyone who can aim a relay there could flood the log).
    refusal_warned: Option<std::time::Instant>,
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
    /// The agent's NATS connection (set by `run`): `app` actions to a `nats_subject`.
    nats: Option<async_nats::Client>,
    /// Per service, the end of the last background deploy or lifecycle wait (resolves, or
    /// closes, when it is done): the next one of the same service waits for it.
    lanes: std::collections::HashMap<String, tokio::sync::oneshot::Receiver<()>>,
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
            nats: None,
            lanes: Default::default(),
            host: outbox.host().to_owned(),
            catalog: Catalog::from_config(&config),
            policy: HostPolicy::from_config(&config),
            outbox,
            notify,
            control,
            status,
            config,
            cursor: 0,
            stream_id: None,
            fast_behind: false,
            refusal_warned: None,
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

    /// Fails every command left `accepted` by an earlier run.
    pub async fn recover(&mut self) -> Result<(), CommandError> {
        for id in self.ledger.unfinished() {
            warn!(command_id = %id, "command interrupted by a restart; reporting it failed");
            let body = pb::event::Body::CommandFailed(pb::CommandFailed {
                command_id: id.clone(),
                reason: RESTARTED.to_owned(),
            });
            self.record(&id, body, Status::Failed, 0, None).await?;
            telemetry::command("failed");
        }
        Ok(())
    }

    /// Writes one lifecycle event with the id's new status (and epoch) in one flushed batch;
    /// `decided`: the stream sequence of a delivery whose decision this is (the fast path's
    /// cursor, persisted with it).
    async fn record(
        &mut self,
        id: &str,
        body: pb::event::Body,
        status: Status,
        epoch: u64,
        decided: Option<u64>,
    ) -> Result<(), CommandError> {
        let now = self.now_ms();
        let mut writes = self.ledger.writes(id, status, epoch, now);
        let decided = decided.zip(self.stream_id.clone());
        if let Some((seq, stream)) = &decided {
            writes.push(Ledger::seq_write(*seq, stream));
        }
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
        if let Some((seq, stream)) = &decided {
            self.ledger.decided(*seq, stream);
        }
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
        self.admit_at(payload, Via::Durable, None).await
    }

    /// `admit` of a payload that came `via` the durable consumer or the fast path, stored at
    /// `OPS_CMDS` sequence `seq` (recorded with the decision: the fast path's cursor). The
    /// same decision either way; the consumer loop decides whether a fast copy comes here.
    pub async fn admit_at(
        &mut self,
        payload: &[u8],
        via: Via,
        seq: Option<u64>,
    ) -> Result<Option<Accepted>, CommandError> {
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
                debug!(command_id = %id, via = %via, "duplicate command ignored");
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
        self.record(id, body, status, verdict.highest_epoch, seq)
            .await?;
        telemetry::command(status.as_str());
        if status != Status::Accepted {
            return Ok(None);
        }
        info!(command_id = %id, action = kind, issued_by = %cmd.issued_by, via = %via, "command accepted");
        Ok(cmd.action.map(|action| Accepted {
            id: cmd.id,
            kind,
            action,
        }))
    }

    /// Runs an accepted command and queues its result.
    pub async fn complete(&mut self, accepted: Accepted) -> Result<(), CommandError> {
        let run = self.execute(&accepted.id, &accepted.action).await;
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
        let event = |body: pb::event::Body| NewEvent {
            module: body_module(&body).to_owned(),
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
        self.record(id, last, status, 0, None).await
    }
}

#[cfg(test)]
mod tests;
