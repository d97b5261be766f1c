//! One module's task: ticks on its interval, skips runs unless running, bounds each run by one
//! interval, records status and health, hands run outputs to the writer, restores persisted
//! module state before the first run, swaps in reconfigured instances, and starts on-demand
//! runs (`Trigger`), answering each once its events are queued.

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use opsfleet_proto::pb;
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{ModuleEntry, RunOutput, StatusBoard, Trigger};
use crate::modules::service::{ConfigBoard, RoleBoard};
use crate::modules::{HealthBoard, ModuleCtx, ServiceBoard};
use crate::outbox::{NewEvent, Outbox, StateWrite};
use opsfleet_proto::time::unix_ms;

pub(super) struct ModuleWorker {
    pub(super) idx: usize,
    pub(super) entry: ModuleEntry,
    pub(super) tx: mpsc::Sender<RunOutput>,
    pub(super) board: StatusBoard,
    pub(super) outbox: Arc<Outbox>,
    pub(super) started: Instant,
    pub(super) health: HealthBoard,
    pub(super) service_configs: ConfigBoard,
    pub(super) service_roles: RoleBoard,
    /// Every service module's summary (for the heartbeat).
    pub(super) services: ServiceBoard,
    /// New instances from `reconfigure` (already restored by the controller).
    pub(super) swaps: mpsc::Receiver<ModuleEntry>,
    /// On-demand runs (`ControlHandle::run_now`).
    pub(super) triggers: mpsc::Receiver<Trigger>,
    /// The host's labels (for the heartbeat).
    pub(super) labels: Arc<std::collections::BTreeMap<String, String>>,
    /// The agent's `data_dir`.
    pub(super) data_dir: Arc<std::path::Path>,
}

type Answer = oneshot::Sender<Result<String, String>>;
/// An on-demand run in progress: its asker and its outcome.
type Pending = BoxFuture<'static, (Answer, Result<String, String>)>;

fn ticker_for(interval: Duration) -> tokio::time::Interval {
    // Config validation refuses 0; a zero period would make tokio's interval panic.
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

impl ModuleWorker {
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        self.serve(&cancel).await;
        self.finish().await;
    }

    /// The agent is stopping: what the module does at the end (a service module stops its
    /// child) and the events that tells (its stopped state) go to the writer, which commits
    /// them to the outbox before the agent exits; they are published with the rest.
    async fn finish(&mut self) {
        let bodies = self.entry.module.shutdown();
        let out = self.output(bodies, unix_ms(SystemTime::now()));
        if out != RunOutput::default() && self.tx.send(out).await.is_err() {
            warn!("the outbox writer is gone: the module's last events are lost");
        }
    }

    /// A run's bodies (stamped `time_unix_ms`) with the state the module wants persisted.
    fn output(&mut self, bodies: Vec<pb::event::Body>, time_unix_ms: i64) -> RunOutput {
        let events = bodies
            .into_iter()
            .map(|body| NewEvent {
                module: self.entry.name.clone(),
                time_unix_ms,
                body,
            })
            .collect();
        let state = (self.entry.module.take_state().into_iter())
            .map(|(key, value)| StateWrite {
                module: self.entry.name.clone(),
                key,
                value,
            })
            .collect();
        RunOutput { events, state }
    }

    /// Runs the module on its interval and on demand until `cancel`.
    async fn serve(&mut self, cancel: &CancellationToken) {
        // A run may take at most one interval.
        let mut run_timeout = self.entry.interval.max(Duration::from_millis(1));
        let mut ticker = ticker_for(self.entry.interval);
        let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
        self.restore_state();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                Some(entry) = self.swaps.recv() => {
                    // Reconfigured: the new instance runs from now on, on its own interval.
                    self.entry = entry;
                    run_timeout = self.entry.interval.max(Duration::from_millis(1));
                    ticker = ticker_for(self.entry.interval);
                    continue;
                }
                Some(trigger) = self.triggers.recv() => {
                    if let Some(p) = self.start_now(trigger) {
                        pending.push(p);
                    }
                    continue;
                }
                Some((answer, outcome)) = pending.next(), if !pending.is_empty() => {
                    // The run's closing events wait in the module: hand them to the writer
                    // before answering, so they precede the command's result.
                    if self.board.state(self.idx) == pb::ModuleRunState::Running
                        && !self.tick(run_timeout, cancel).await
                    {
                        return;
                    }
                    let _ = answer.send(outcome);
                    continue;
                }
                _ = ticker.tick() => {}
            }
            if self.board.state(self.idx) == pb::ModuleRunState::Paused {
                // A paused service still runs: heartbeats keep carrying its current state.
                (self.services).set(&self.entry.name, self.entry.module.service());
            }
            if self.board.state(self.idx) != pb::ModuleRunState::Running {
                continue;
            }
            if !self.tick(run_timeout, cancel).await {
                return;
            }
        }
    }

    /// Starts an on-demand run, or answers the trigger at once with the module's refusal.
    fn start_now(&mut self, trigger: Trigger) -> Option<Pending> {
        if self.board.state(self.idx) != pb::ModuleRunState::Running {
            let state = self
                .board
                .state(self.idx)
                .as_str_name()
                .to_ascii_lowercase();
            let reason = format!(
                "module {} is {}; resume or enable it first",
                self.entry.name,
                state.trim_start_matches("module_run_state_")
            );
            let _ = trigger.done.send(Err(reason));
            return None;
        }
        match self.entry.module.run_now(&trigger.what, SystemTime::now()) {
            Ok(ticket) => {
                info!(what = %trigger.what.describe(), "on-demand run started");
                let answer = trigger.done;
                Some(
                    ticket
                        .map(move |r| {
                            let outcome = r.unwrap_or_else(|_| {
                                Err("the run was abandoned (module reconfigured or stopping)"
                                    .to_owned())
                            });
                            (answer, outcome)
                        })
                        .boxed(),
                )
            }
            Err(reason) => {
                let _ = trigger.done.send(Err(reason));
                None
            }
        }
    }

    /// One run of the module; false when cancelled or the writer is gone.
    async fn tick(&mut self, run_timeout: Duration, cancel: &CancellationToken) -> bool {
        let now = SystemTime::now();
        let ctx = ModuleCtx {
            now,
            uptime: self.started.elapsed(),
            statuses: self.board.snapshot(),
            outbox_pending: self.outbox.pending(),
            health: self.health.snapshot(),
            services: self.services.snapshot(),
            labels: self.labels.clone(),
            service_configs: self.service_configs.clone(),
            service_roles: self.service_roles.clone(),
            data_dir: self.data_dir.clone(),
        };
        let run_started = Instant::now();
        let res = tokio::select! {
            _ = cancel.cancelled() => return false,
            r = tokio::time::timeout(run_timeout, self.entry.module.run_once(&ctx)) => r,
        };
        crate::telemetry::module_run(
            &self.entry.name,
            run_started.elapsed(),
            matches!(res, Ok(Ok(_))),
        );
        if self.board.state(self.idx) != pb::ModuleRunState::Disabled {
            self.health
                .set(&self.entry.name, self.entry.module.health());
            self.services
                .set(&self.entry.name, self.entry.module.service());
        }
        match res {
            Ok(Ok(bodies)) => {
                self.board.record(self.idx, true);
                debug!(events = bodies.len(), "module ran");
                let out = self.output(bodies, unix_ms(now));
                if out != RunOutput::default() && self.tx.send(out).await.is_err() {
                    return false;
                }
            }
            Ok(Err(e)) => {
                self.board.record(self.idx, false);
                warn!(error = %ErrorChain(&e), "module run failed");
            }
            Err(_) => {
                self.board.record(self.idx, false);
                warn!(timeout = ?run_timeout, "module run timed out");
            }
        }
        true
    }
}

impl ModuleWorker {
    /// Hands the module the state it persisted in an earlier life, before its first run.
    fn restore_state(&mut self) {
        match self.outbox.module_state(&self.entry.name) {
            Ok(saved) => {
                if !saved.is_empty() {
                    debug!(keys = saved.len(), "restoring module state");
                }
                self.entry.module.restore(saved);
            }
            Err(e) => {
                error!(error = %ErrorChain(&e), "cannot read module state; starting without it");
            }
        }
    }
}
