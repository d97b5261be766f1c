//! The rollout driver (active coordinator only, once caught up with the stream): every tick,
//! each rollout that has not ended is decided from the projection (`decide`), and its acts
//! are carried out in order — a step is recorded as an event; a command is recorded with its
//! new id (`host_command`), then issued with that id through the dispatcher, stamped with this
//! term's epoch. Until every step it recorded is folded back, a rollout is not decided again
//! (a decision on a state that lacks a recorded command would send it again); a new term
//! starts afresh once caught up with the stream, which holds every acknowledged step. The
//! lease is checked again before each step. A new active continues from the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use opsfleet_proto::api::Role;
use opsfleet_proto::pb::{self, event::Body, rollout_step::Step};
use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::ErrorChain;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::decide::{decide, Act};
use crate::acting::Gate;
use crate::dispatch::Dispatcher;
use crate::emit::Emitter;
use crate::identity::Issuer;
use crate::projection::rollouts::Plan;
use crate::state::Shared;

/// How often rollouts are decided.
pub const TICK: Duration = Duration::from_millis(100);
/// Patience of one recorded step.
const EMIT_PATIENCE: Duration = Duration::from_secs(10);

/// Drives every rollout while this coordinator is active.
pub struct Driver {
    shared: Arc<Shared>,
    emitter: Emitter,
    dispatcher: Dispatcher,
    stream: Stream,
}

/// Who a rollout's commands are issued as: its starter, marked with the rollout.
pub fn issuer_of(plan: &Plan, rollout_id: &str) -> Issuer {
    let short: String = rollout_id.chars().take(8).collect();
    Issuer {
        name: format!("{} (rollout {short})", plan.started_by),
        role: Role::parse(&plan.started_role),
    }
}

impl Driver {
    pub fn new(
        shared: Arc<Shared>,
        emitter: Emitter,
        dispatcher: Dispatcher,
        stream: Stream,
    ) -> Self {
        Driver {
            shared,
            emitter,
            dispatcher,
            stream,
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let mut gate = Gate::new(Arc::clone(&self.shared), self.stream.clone(), "rollouts");
        // Rollout id → the step count it reaches once every step recorded for it is folded.
        let mut waiting: HashMap<String, u64> = HashMap::new();
        let mut term = 0;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(epoch) = gate.open().await else {
                continue;
            };
            if epoch != term {
                term = epoch;
                waiting.clear();
            }
            let work = self.decide_all(&mut waiting);
            for (id, steps, plan, acts) in work {
                if !gate.still(epoch) {
                    break;
                }
                let (recorded, result) = self.act(&id, &plan, epoch, &gate, acts).await;
                waiting.insert(id.clone(), steps + recorded);
                if let Err(e) = result {
                    warn!(rollout = %id, epoch, error = %e, "rollout step not carried out; will decide again");
                }
            }
        }
    }

    /// The acts of every rollout that has not ended and is not waiting for its own step.
    fn decide_all(&self, waiting: &mut HashMap<String, u64>) -> Vec<(String, u64, Plan, Vec<Act>)> {
        let fleet = self.shared.fleet();
        let now = now_unix_ms();
        let mut work = Vec::new();
        for r in fleet.rollouts().iter().filter(|r| !r.is_ended()) {
            if let Some(expected) = waiting.get(&r.id) {
                if r.steps < *expected {
                    continue;
                }
                waiting.remove(&r.id);
            }
            let acts = decide(r, &*fleet, now);
            if !acts.is_empty() {
                work.push((r.id.clone(), r.steps, r.plan.clone(), acts));
            }
        }
        work
    }

    /// Carries out `acts` in order while still active in `epoch`; how many steps were
    /// recorded (acknowledged by the stream), and the first failure.
    async fn act(
        &self,
        id: &str,
        plan: &Plan,
        epoch: u64,
        gate: &Gate,
        acts: Vec<Act>,
    ) -> (u64, Result<(), String>) {
        let mut recorded = 0;
        for act in acts {
            if !gate.still(epoch) {
                return (recorded, Err(format!("no longer active in epoch {epoch}")));
            }
            let result = self.act_one(id, plan, epoch, act, &mut recorded).await;
            if result.is_err() {
                return (recorded, result);
            }
        }
        (recorded, Ok(()))
    }

    async fn act_one(
        &self,
        id: &str,
        plan: &Plan,
        epoch: u64,
        act: Act,
        recorded: &mut u64,
    ) -> Result<(), String> {
        {
            match act {
                Act::Record(step) => {
                    info!(rollout = %id, epoch, step = step_name(&step), "rollout step");
                    self.record(id, epoch, step).await?;
                    *recorded += 1;
                }
                Act::Send {
                    host,
                    purpose,
                    wave,
                    version,
                    action,
                } => {
                    let command_id = Uuid::now_v7().to_string();
                    let deadline_after = Duration::from_millis(plan.command_deadline_ms.max(1));
                    let deadline = now_unix_ms().saturating_add(
                        i64::try_from(deadline_after.as_millis()).unwrap_or(i64::MAX),
                    );
                    let step = Step::HostCommand(pb::RolloutHostCommand {
                        host: host.clone(),
                        command_id: command_id.clone(),
                        purpose: purpose.to_owned(),
                        wave,
                        version,
                        deadline_unix_ms: deadline,
                    });
                    self.record(id, epoch, step).await?;
                    *recorded += 1;
                    info!(rollout = %id, epoch, host = %host, purpose, cmd_id = %command_id, "rollout command");
                    let issuer = issuer_of(plan, id);
                    self.dispatcher
                        .issue_one(&command_id, &host, &action, &issuer, deadline_after, id)
                        .await
                        .map_err(|e| format!("{host}: {}", ErrorChain(&e)))?;
                }
            }
        }
        Ok(())
    }

    async fn record(&self, id: &str, epoch: u64, step: Step) -> Result<(), String> {
        let body = Body::Rollout(pb::RolloutStep {
            rollout_id: id.to_owned(),
            epoch,
            at_unix_ms: now_unix_ms(),
            step: Some(step),
        });
        self.emitter
            .emit(body, EMIT_PATIENCE)
            .await
            .map(|_| ())
            .map_err(|e| ErrorChain(&e).to_string())
    }
}

pub fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Started(_) => "started",
        Step::WaveStarted(_) => "wave_started",
        Step::HostCommand(_) => "host_command",
        Step::Gate(_) => "gate",
        Step::Control(_) => "control",
        Step::Ended(_) => "ended",
        Step::HostSkipped(_) => "host_skipped",
    }
}
