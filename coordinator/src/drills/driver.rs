//! The drill driver (active coordinator only, once caught up with the stream, through
//! `acting::Gate` like the alert engine and the group driver): every tick it derives from the
//! fleet's drill history what is due (`schedule::decide`), and for a due slot records the run's
//! `started` event — durable in `OPS_EVENTS` (acknowledged) before the drill acts, and only in
//! a term still held — then runs the drill within its `timeout` and records `passed` or
//! `failed` with what it found. One drill runs at a time. A run left open by an ended term is
//! closed `failed` (abandoned); its slot is not run again. Operators' runs (`ask::Ask`, from
//! `opsctl drill run`) arrive on a channel, fill no slot, and are answered when they end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use opsfleet_proto::api::{AlertState, Severity};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::error_chain;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::ask::{Ask, DrillsHandle, Ran, Refused, Running};
use super::config::{DrillConfig, DrillKind};
use super::schedule::{decide, orphan, Due};
use crate::acting::{Gate, Turns};
use crate::dispatch::Dispatcher;
use crate::emit::Emitter;
use crate::groups::ask::GroupsHandle;
use crate::notify::{Delivery, Notification, Notifier};
use crate::state::Shared;

/// Patience of one emit.
const EMIT_PATIENCE: Duration = Duration::from_secs(5);
/// How often what is due is looked at.
const TICK: Duration = Duration::from_millis(500);

/// At most this much of a `restore_test`'s timeout is kept to report which hosts did not
/// answer.
const RESTORE_MARGIN: Duration = Duration::from_secs(5);

/// Who asks for a scheduled run.
pub const SCHEDULE: &str = "schedule";

pub struct Driver {
    shared: Arc<Shared>,
    emitter: Emitter,
    dispatcher: Dispatcher,
    stream: Stream,
    drills: Vec<DrillConfig>,
    notifier: Arc<Notifier>,
    groups: GroupsHandle,
    client: async_nats::Client,
    asks: tokio::sync::mpsc::Receiver<Ask>,
    running: Running,
}

/// A run about to start.
struct Run<'a> {
    drill: &'a DrillConfig,
    run_id: String,
    slot_unix_ms: i64,
    epoch: u64,
    requested_by: String,
}

impl Run<'_> {
    fn body(&self, phase: &str, took_ms: u64, detail: &str) -> Body {
        Body::DrillRun(pb::DrillRun {
            drill: self.drill.name.clone(),
            kind: self.drill.kind.as_str().to_owned(),
            phase: phase.to_owned(),
            run_id: self.run_id.clone(),
            slot_unix_ms: self.slot_unix_ms,
            epoch: self.epoch,
            requested_by: self.requested_by.clone(),
            took_ms,
            detail: detail.to_owned(),
        })
    }
}

impl Driver {
    /// `dispatcher`: the commands a drill sends (and the emitter it records with).
    pub fn new(
        shared: Arc<Shared>,
        dispatcher: Dispatcher,
        stream: Stream,
        drills: &[DrillConfig],
        notifier: Arc<Notifier>,
        groups: GroupsHandle,
        client: async_nats::Client,
    ) -> (Driver, DrillsHandle) {
        let (tx, asks) = tokio::sync::mpsc::channel(4);
        let running = Running::default();
        let handle = DrillsHandle::new(tx, drills, Arc::clone(&running));
        let driver = Driver {
            shared,
            emitter: dispatcher.emitter().clone(),
            dispatcher,
            stream,
            drills: drills.to_vec(),
            notifier,
            groups,
            client,
            asks,
            running,
        };
        (driver, handle)
    }

    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let gate = Gate::new(Arc::clone(&self.shared), self.stream.clone(), "drills");
        let mut turns = Turns::new(gate, TICK);
        // Slots this term recorded, until the fold shows them (drill → slot).
        let mut claimed: HashMap<String, i64> = HashMap::new();
        // Runs this term closed as abandoned, until the fold shows them.
        let mut closed: Vec<String> = Vec::new();
        let mut deferred: BTreeMap<String, i64> = BTreeMap::new();
        while let Some(turn) = turns.next(&mut self.asks, &cancel).await {
            let (epoch, gate) = (turn.epoch, turns.gate());
            if turn.new_term {
                claimed.clear();
                closed.clear();
            }
            if let Some(ask) = turn.ask {
                self.asked(ask, gate, epoch, &closed, &cancel).await;
                continue;
            }
            let now = now_unix_ms();
            let (dues, orphans) = self.dues(epoch, now, &claimed, &closed);
            for (run_id, why, drill, kind) in orphans {
                self.abandon(gate, epoch, &run_id, &why, &drill, &kind)
                    .await;
                closed.push(run_id);
            }
            for (d, due) in dues {
                match due {
                    Due::Abandon { run_id, why } => {
                        let kind = d.kind.as_str();
                        self.abandon(gate, epoch, &run_id, &why, &d.name, kind)
                            .await;
                        closed.push(run_id);
                    }
                    Due::Deferred { slot_unix_ms } => {
                        if deferred.insert(d.name.clone(), slot_unix_ms) != Some(slot_unix_ms) {
                            info!(drill = %d.name, slot_unix_ms, "drill due but deferred: hosts in maintenance");
                        }
                    }
                    Due::Run { slot_unix_ms } => {
                        claimed.insert(d.name.clone(), slot_unix_ms);
                        let run = Run {
                            drill: d,
                            run_id: Uuid::now_v7().to_string(),
                            slot_unix_ms,
                            epoch,
                            requested_by: SCHEDULE.to_owned(),
                        };
                        self.execute(gate, run, &cancel).await;
                        // One drill per tick: the next one sees this one's record.
                        break;
                    }
                    Due::Wait { .. } | Due::Disabled | Due::Running { .. } => {}
                }
            }
        }
    }

    /// An operator's run: refused while any run is open (one at a time), else run now
    /// (no slot) and answered when it ended.
    async fn asked(
        &self,
        ask: Ask,
        gate: &Gate,
        epoch: u64,
        closed: &[String],
        cancel: &CancellationToken,
    ) {
        let Some(d) = self.drills.iter().find(|d| d.name == ask.drill) else {
            let _ = ask.reply.send(Err(Refused::Unknown {
                drill: ask.drill.clone(),
                known: String::new(),
            }));
            return;
        };
        let open = {
            let fleet = self.shared.fleet();
            let open = (fleet.drills().iter())
                .flat_map(|(name, h)| h.open().map(move |r| (name.clone(), r.run_id.clone())))
                .find(|(_, id)| !closed.contains(id));
            open
        };
        if let Some((running, run_id)) = open {
            let _ = ask.reply.send(Err(Refused::Busy { running, run_id }));
            return;
        }
        let run = Run {
            drill: d,
            run_id: Uuid::now_v7().to_string(),
            slot_unix_ms: 0,
            epoch,
            requested_by: ask.requested_by.clone(),
        };
        let result = match self.execute(gate, run, cancel).await {
            Some(ran) => Ok(ran),
            None => Err(Refused::NotRecorded {
                drill: d.name.clone(),
            }),
        };
        let _ = ask.reply.send(result);
    }

    /// What is due for each drill now, and the open runs of drills no longer declared that
    /// must be closed: (run id, why, drill, kind).
    #[allow(clippy::type_complexity)]
    fn dues(
        &self,
        epoch: u64,
        now: i64,
        claimed: &HashMap<String, i64>,
        closed: &[String],
    ) -> (
        Vec<(&DrillConfig, Due)>,
        Vec<(String, String, String, String)>,
    ) {
        let fleet = self.shared.fleet();
        let held = !fleet.maintenance().is_empty();
        let history = fleet.drills();
        let open = (history.values())
            .flat_map(|h| h.open())
            .find(|r| !closed.contains(&r.run_id))
            .cloned();
        let mut dues = Vec::new();
        for d in &self.drills {
            let h = history.get(&d.name);
            let due = decide(d, h, open.as_ref(), epoch, held, now);
            let due = match due {
                // Recorded this term, not folded yet: not again.
                Due::Run { slot_unix_ms } if claimed.get(&d.name) == Some(&slot_unix_ms) => {
                    continue
                }
                Due::Abandon { ref run_id, .. } if closed.contains(run_id) => continue,
                due => due,
            };
            dues.push((d, due));
        }
        let declared = |name: &str| self.drills.iter().any(|d| d.name == name);
        let orphans = (history.iter())
            .filter(|(name, _)| !declared(name))
            .flat_map(|(name, h)| h.open().map(move |r| (name, r)))
            .filter(|(_, r)| !closed.contains(&r.run_id))
            .filter_map(|(name, r)| {
                let why = orphan(r, epoch, now)?;
                Some((r.run_id.clone(), why, name.clone(), r.kind.clone()))
            })
            .collect();
        (dues, orphans)
    }

    /// Closes an open run that can no longer end by itself.
    async fn abandon(
        &self,
        gate: &Gate,
        epoch: u64,
        run_id: &str,
        why: &str,
        drill: &str,
        kind: &str,
    ) {
        if !gate.still(epoch) {
            return;
        }
        warn!(drill, run_id, epoch, why, "drill run abandoned");
        let body = Body::DrillRun(pb::DrillRun {
            drill: drill.to_owned(),
            kind: kind.to_owned(),
            phase: "failed".to_owned(),
            run_id: run_id.to_owned(),
            slot_unix_ms: 0,
            epoch,
            requested_by: SCHEDULE.to_owned(),
            took_ms: 0,
            detail: why.to_owned(),
        });
        if let Err(e) = self.emitter.emit(body, EMIT_PATIENCE).await {
            warn!(drill, run_id, error = %error_chain(&e), "cannot record an abandoned drill run");
        }
    }

    /// Records the start (acknowledged, in a term still held), runs the drill within its
    /// timeout, records the result.
    async fn execute(&self, gate: &Gate, run: Run<'_>, cancel: &CancellationToken) -> Option<Ran> {
        let name = run.drill.name.as_str();
        if !gate.still(run.epoch) {
            return None;
        }
        if let Err(e) = self
            .emitter
            .emit(run.body("started", 0, ""), EMIT_PATIENCE)
            .await
        {
            warn!(drill = name, error = %error_chain(&e), "cannot record a drill's start; not run");
            return None;
        }
        if let Ok(mut r) = self.running.lock() {
            *r = Some((name.to_owned(), run.run_id.clone()));
        }
        let started = Instant::now();
        // The start is durable; act only if the term that recorded it still holds.
        let result = if !gate.still(run.epoch) {
            Err("the coordinator's term ended before the drill acted".to_owned())
        } else {
            info!(drill = name, kind = run.drill.kind.as_str(), run_id = %run.run_id, slot_unix_ms = run.slot_unix_ms, epoch = run.epoch, "drill started");
            tokio::select! {
                r = tokio::time::timeout(run.drill.timeout, self.act(gate, &run)) => match r {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "timed out after {}",
                        humantime::format_duration(run.drill.timeout)
                    )),
                },
                _ = cancel.cancelled() => Err("the coordinator stopped during the drill".to_owned()),
            }
        };
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (phase, detail) = match &result {
            Ok(detail) => ("passed", detail.as_str()),
            Err(detail) => ("failed", detail.as_str()),
        };
        info!(drill = name, run_id = %run.run_id, phase, took_ms, detail, "drill ended");
        if let Err(e) = self
            .emitter
            .emit(run.body(phase, took_ms, detail), EMIT_PATIENCE)
            .await
        {
            warn!(drill = name, error = %error_chain(&e), "cannot record a drill's result");
        }
        if let Ok(mut r) = self.running.lock() {
            *r = None;
        }
        Some(Ran {
            drill: name.to_owned(),
            kind: run.drill.kind.as_str().to_owned(),
            run_id: run.run_id.clone(),
            phase: phase.to_owned(),
            took_ms,
            detail: detail.to_owned(),
        })
    }

    /// Does the drill; what it found, or why it failed.
    async fn act(&self, gate: &Gate, run: &Run<'_>) -> Result<String, String> {
        match run.drill.kind {
            DrillKind::NotificationTest => self.notification_test(gate, run).await,
            DrillKind::AppFailover => {
                let group = run.drill.group.clone().unwrap_or_default();
                let by = format!("drill {}", run.drill.name);
                match self.groups.failover(group, None, true, by).await {
                    Ok(done) => Ok(format!(
                        "group {} {} -> {} in {} ms (epoch {})",
                        done.group, done.from, done.to, done.took_ms, done.epoch
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            DrillKind::CoordinatorFailover => {
                let within = run.drill.timeout / 2;
                super::handover::run(&self.shared, &self.client, &run.drill.name, within).await
            }
            DrillKind::RestoreTest => {
                // The hosts' time, leaving the run time to say which of them did not answer
                // before its own timeout cuts it short.
                let t = run.drill.timeout;
                let within = t.saturating_sub((t / 10).min(RESTORE_MARGIN));
                let still = || gate.still(run.epoch);
                super::restore_run::run(&self.shared, &self.dispatcher, run.drill, within, still)
                    .await
            }
        }
    }

    /// One test notification per route, marked as a test in its rule, labels and summary;
    /// passed when every route took it.
    async fn notification_test(&self, gate: &Gate, run: &Run<'_>) -> Result<String, String> {
        let mut lines = Vec::new();
        let mut ok = true;
        for route in self.notifier.routes() {
            let n = Notification {
                id: format!("drill:{}:{route}", run.run_id),
                alert_id: format!("drill_test//{}", run.drill.name),
                rule: "drill_test".to_owned(),
                host: String::new(),
                subject: run.drill.name.clone(),
                state: AlertState::Firing,
                severity: Severity::Info,
                summary: format!(
                    "TEST ONLY, no action needed: opsfleet drill {} checks that route {route} delivers",
                    run.drill.name
                ),
                at_unix_ms: now_unix_ms(),
                coordinator: self.shared.name.clone(),
                epoch: run.epoch,
                labels: [("test".to_owned(), "true".to_owned())].into(),
                firing_since_unix_ms: 0,
                routes_before: Vec::new(),
            };
            // Each attempt only while this term acts (a shorter fast-takeover window can end
            // mid-retry).
            let still = || gate.still(run.epoch);
            let d = self.notifier.send_test(&route, &n, &still).await;
            let said = match d {
                Delivery::Sent { attempts } => format!("sent ({attempts} attempt(s))"),
                Delivery::DryRun => "printed (dry-run)".to_owned(),
                Delivery::RateLimited => {
                    ok = false;
                    "rate limited".to_owned()
                }
                Delivery::Failed { attempts, reason } => {
                    ok = false;
                    format!("failed after {attempts} attempt(s): {reason}")
                }
                Delivery::Skipped { reason } => {
                    ok = false;
                    format!("skipped: {reason}")
                }
                Delivery::Abandoned { attempts } => {
                    ok = false;
                    format!("abandoned after {attempts} attempt(s): the term ended")
                }
            };
            lines.push(format!("{route}: {said}"));
        }
        let detail = lines.join("; ");
        if ok {
            Ok(detail)
        } else {
            Err(detail)
        }
    }
}
