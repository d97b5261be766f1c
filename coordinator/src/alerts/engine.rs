//! The alert engine's edges (active coordinator only, and only once caught up with the
//! stream): the evaluator loop records transitions and liveness verdicts through the
//! `Emitter`; the delivery loop sends every folded, notifiable transition that lacks a
//! notification record for a route, then records what happened. Both act on the projection,
//! so a newly active coordinator continues from what the previous one recorded.

use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::ErrorChain;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::subjects;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::acting::Gate;
use crate::emit::Emitter;
use crate::notify::{Delivery, Notifier};
use crate::state::Shared;

use super::rules::Condition;
use super::{
    evaluate_with, liveness_body, notification_for, stream_condition, transition_body, undelivered,
    AlertsConfig, Memory, Rules, State, StreamUsage, Transition,
};

/// How long a recorded transition may take to come back through ingest before the evaluator
/// decides it again (a retry is harmless: the fold ignores a repeated state).
const FOLD_BACK_WAIT: Duration = Duration::from_secs(30);

/// Alert id → (state and value recorded, when): not decided again until folded back (a
/// firing alert's refreshed value too).
type InFlight = HashMap<String, (State, String, Instant)>;
/// Patience of one emit.
const EMIT_PATIENCE: Duration = Duration::from_secs(10);

/// The evaluator and delivery loops of one coordinator.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    emitter: Emitter,
    stream: Stream,
    rules: Rules,
    cfg: AlertsConfig,
    notifier: Arc<Notifier>,
    /// `[[drills]]`: `drill_overdue` and `drill_failed` are judged against them.
    drills: Arc<Vec<crate::drills::DrillConfig>>,
}

impl Engine {
    pub fn new(
        shared: Arc<Shared>,
        emitter: Emitter,
        stream: Stream,
        cfg: &AlertsConfig,
        notifier: Arc<Notifier>,
    ) -> Self {
        Engine {
            shared,
            emitter,
            stream,
            rules: cfg.rules(),
            cfg: cfg.clone(),
            notifier,
            drills: Arc::new(Vec::new()),
        }
    }

    /// The drills whose schedule the engine judges (`drill_overdue`, `drill_failed`).
    pub fn with_drills(mut self, drills: &[crate::drills::DrillConfig]) -> Self {
        self.drills = Arc::new(drills.to_vec());
        self
    }

    /// Runs both loops until `cancel` fires (returns at once when alerts are disabled).
    pub async fn run(self, cancel: CancellationToken) {
        if !self.cfg.enabled {
            info!("alerts disabled");
            return;
        }
        info!(routes = ?self.notifier.routes(), "alert engine started");
        let evaluator = tokio::spawn(self.clone().evaluate_loop(cancel.clone()));
        self.deliver_loop(cancel).await;
        let _ = evaluator.await;
    }

    /// Every `interval` while active: decide transitions and record them as events.
    async fn evaluate_loop(self, cancel: CancellationToken) {
        let mut gate = Gate::new(Arc::clone(&self.shared), self.stream.clone(), "alerts");
        let mut memory = Memory::default();
        // alert id → (state and value recorded, when): not decided again until folded back
        // (a firing alert's refreshed value too).
        let mut in_flight = InFlight::new();
        let mut term = 0;
        let mut term_since = now_unix_ms();
        let mut usage: Option<StreamUsage> = None;
        let mut tick = tokio::time::interval(self.cfg.interval);
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
                // The liveness grace runs from here: the term's first evaluation.
                term_since = now_unix_ms();
                memory = Memory::since(term_since);
                in_flight.clear();
            }
            usage = self.stream_usage(usage).await;
            let extra =
                usage.and_then(|u| stream_condition(&self.rules, subjects::EVENTS_STREAM, u));
            let decided = self.decide(&mut memory, &mut in_flight, extra, term_since);
            if decided.is_empty() {
                continue;
            }
            // Fencing at the source: evaluation read state; record only in the same term.
            if !gate.still(epoch) {
                continue;
            }
            self.record(decided, epoch, &mut in_flight).await;
        }
    }

    /// The events stream's fill level against its byte limit (`events_stream_full`).
    /// Unreadable: the `last` reading stands, rather than a clear condition.
    async fn stream_usage(&self, last: Option<StreamUsage>) -> Option<StreamUsage> {
        match self.stream.get_info().await {
            Ok(info) => Some(StreamUsage {
                bytes: info.state.bytes,
                max_bytes: info.config.max_bytes,
            }),
            Err(e) => {
                warn!(error = %ErrorChain(&e), "cannot read the event stream's usage; using the last reading");
                last
            }
        }
    }

    /// The transitions to record at `now`: the rules' decisions, less those recorded and not
    /// folded back yet (`in_flight`, pruned of what was folded or waited for too long).
    fn decide(
        &self,
        memory: &mut Memory,
        in_flight: &mut InFlight,
        extra: Option<Condition>,
        term_since: i64,
    ) -> Vec<Transition> {
        let now = now_unix_ms();
        let decided = {
            let fleet = self.shared.fleet();
            let mut extra: Vec<Condition> = extra.into_iter().collect();
            super::drill_rules::drill_conditions(
                &self.rules,
                &self.drills,
                &fleet,
                now,
                term_since,
                &mut extra,
            );
            let records = &fleet.alerts().alerts;
            in_flight.retain(|id, (state, value, at)| {
                let folded =
                    (records.get(id)).is_some_and(|r| r.state == Some(*state) && r.value == *value);
                !folded && at.elapsed() < FOLD_BACK_WAIT
            });
            let started = Instant::now();
            let decided = evaluate_with(&self.rules, &fleet, extra, memory, now);
            let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            debug!(hosts = fleet.len(), took_ms, "alert evaluation pass");
            decided
        };
        decided
            .into_iter()
            .filter(|t| {
                in_flight
                    .get(&t.alert_id)
                    .is_none_or(|(s, _, _)| *s != t.to)
            })
            .collect()
    }

    /// Records `decided` as events of term `epoch` (with the liveness events that go with
    /// them); each is in flight until folded back.
    async fn record(&self, decided: Vec<Transition>, epoch: u64, in_flight: &mut InFlight) {
        let mut bodies = Vec::with_capacity(decided.len());
        for t in &decided {
            bodies.push(transition_body(t, epoch));
            bodies.extend(liveness_body(t, epoch));
        }
        match self.emitter.emit_all(bodies, EMIT_PATIENCE).await {
            Ok(_) => {
                for t in decided {
                    info!(alert = %t.alert_id, state = %t.to, epoch, summary = %t.summary, "alert transition");
                    in_flight.insert(t.alert_id, (t.to, t.value, Instant::now()));
                }
            }
            Err(e) => {
                warn!(error = %ErrorChain(&e), "cannot record alert transitions; will retry")
            }
        }
    }

    /// While active: send each folded transition that lacks a notification record for a
    /// route, then record the outcome.
    async fn deliver_loop(self, cancel: CancellationToken) {
        let mut gate = Gate::new(Arc::clone(&self.shared), self.stream.clone(), "alerts");
        // (transition id, route) handled in this term; never sent twice by one term.
        let mut handled: HashSet<(String, String)> = HashSet::new();
        let mut term = 0;
        let max_age_ms = i64::try_from(self.cfg.deliver_max_age.as_millis()).unwrap_or(i64::MAX);
        let mut tick = tokio::time::interval(self.cfg.interval.min(Duration::from_millis(500)));
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
                handled.clear();
            }
            let todo: Vec<_> = {
                let fleet = self.shared.fleet();
                let name = &self.shared.name;
                undelivered(
                    &fleet,
                    |rec| (self.notifier).routes_for(&notification_for(rec, &fleet, name, epoch)),
                    now_unix_ms(),
                    max_age_ms,
                )
                .into_iter()
                .filter(|(rec, route)| {
                    !handled.contains(&(rec.transition_id.clone(), route.clone()))
                })
                .map(|(rec, route)| (notification_for(rec, &fleet, name, epoch), route))
                .collect()
            };
            for (n, route) in todo {
                if cancel.is_cancelled() || !gate.still(epoch) {
                    break;
                }
                let key = (n.id.clone(), route.clone());
                handled.insert(key.clone());
                // Each attempt only while acting in this term (a shorter fast-takeover
                // window can end mid-retry): abandoned, it is unmarked and the next active
                // (or this one, acting again) sends it.
                let still = || !cancel.is_cancelled() && gate.still(epoch);
                let delivery = self.notifier.send_while(&route, &n, &still).await;
                let (outcome, attempts, detail) = match delivery {
                    Delivery::Sent { attempts } => {
                        (pb::NotifyOutcome::Sent, attempts, String::new())
                    }
                    Delivery::DryRun => (pb::NotifyOutcome::DryRun, 1, String::new()),
                    Delivery::RateLimited => (pb::NotifyOutcome::RateLimited, 0, String::new()),
                    Delivery::Failed { attempts, reason } => {
                        (pb::NotifyOutcome::Failed, attempts, reason)
                    }
                    Delivery::Skipped { reason } => {
                        debug!(route, id = %n.id, reason, "notification skipped");
                        continue;
                    }
                    Delivery::Abandoned { .. } => {
                        handled.remove(&key);
                        break;
                    }
                };
                let body = Body::NotificationSent(pb::NotificationSent {
                    alert_id: n.alert_id.clone(),
                    transition_id: n.id.clone(),
                    route: route.clone(),
                    outcome: outcome as i32,
                    attempts,
                    detail,
                    epoch,
                });
                // Recorded even if the term just ended: it happened.
                if let Err(e) = self.emitter.emit(body, Duration::from_secs(30)).await {
                    warn!(error = %ErrorChain(&e), alert = %n.alert_id, route, "notification sent but not recorded; a later term may send it again");
                }
            }
            // Alertmanager routes post firing alerts again while they fire (notify::refresh).
            if self.notifier.re_sends() && !cancel.is_cancelled() && gate.still(epoch) {
                let firing = super::firing(&self.shared.fleet(), &self.shared.name, epoch);
                let still = || !cancel.is_cancelled() && gate.still(epoch);
                self.notifier.refresh(&firing, &still).await;
            }
            // Alertmanager routes keep their silences in step with opsfleet's.
            if self.notifier.mirrors_silences() && !cancel.is_cancelled() && gate.still(epoch) {
                let silences = self.shared.fleet().silences().clone();
                let still = || !cancel.is_cancelled() && gate.still(epoch);
                (self.notifier)
                    .mirror_silences(&silences, now_unix_ms(), &still)
                    .await;
            }
        }
    }
}
