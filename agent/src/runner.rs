//! Schedules the modules (interval, per-run timeout, tracing span per module), tracks their
//! status, and funnels their event bodies through one writer task that group-commits them to
//! the outbox and wakes the publisher. This file owns the `Runner` and its inputs; `status`
//! owns the status board, `worker` one module's task, `writer` the group-committing writer,
//! `control` run-time control of the running modules (pause, resume, reconfigure, run now).

pub mod control;
mod status;
mod worker;
mod writer;

use opsfleet_report::ErrorChain;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsfleet_proto::pb;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info_span, Instrument};

use crate::config::{AgentConfig, HostPolicy, ModuleConfig};
use crate::modules::{self, HealthBoard, Module, ServiceBoard};
use crate::outbox::{NewEvent, Outbox, StateWrite};
use control::{ControlHandle, Controller, Request};

pub use status::{ModuleSlot, StatusBoard};
use worker::ModuleWorker;
use writer::writer_loop;

/// Most events one outbox append (one flush) takes.
pub const GROUP_MAX: usize = 256;
const CHANNEL_CAPACITY: usize = 1024;

/// What one module run hands to the writer: its events and its state changes, committed in
/// one outbox batch (never split across groups).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutput {
    pub events: Vec<NewEvent>,
    pub state: Vec<StateWrite>,
}

impl From<NewEvent> for RunOutput {
    fn from(ev: NewEvent) -> Self {
        RunOutput {
            events: vec![ev],
            state: Vec::new(),
        }
    }
}

/// An on-demand run asked of one module's worker (see `Module::run_now`).
pub(crate) struct Trigger {
    pub(crate) what: crate::modules::OnDemand,
    pub(crate) done: oneshot::Sender<Result<String, String>>,
}

/// One module ready to run.
pub struct ModuleEntry {
    pub name: String,
    pub interval: Duration,
    /// sha256 of the module's canonical config.
    pub fingerprint: String,
    pub module: Box<dyn Module>,
}

impl ModuleEntry {
    /// The configured modules of an agent config, in file order.
    pub fn from_config(cfg: &AgentConfig) -> Vec<ModuleEntry> {
        cfg.modules
            .iter()
            .map(|m| ModuleEntry {
                name: m.name().to_owned(),
                interval: m.interval(),
                fingerprint: m.fingerprint(),
                module: modules::build(m),
            })
            .collect()
    }
}

/// Runs an agent's modules until cancelled.
pub struct Runner {
    host: String,
    outbox: Arc<Outbox>,
    notify: Arc<Notify>,
    modules: Vec<ModuleEntry>,
    board: StatusBoard,
    started: Instant,
    health: HealthBoard,
    services: ServiceBoard,
    /// File config of each module by name (what run-time overrides are checked against).
    configs: BTreeMap<String, ModuleConfig>,
    control: ControlHandle,
    control_rx: mpsc::Receiver<Request>,
    /// The host's labels from the agent config (heartbeats carry them).
    labels: Arc<BTreeMap<String, String>>,
    /// The agent's `data_dir` (the modules' `ModuleCtx::data_dir`).
    data_dir: Arc<std::path::Path>,
    /// `[policy]` and the file's own modules: what remote reconfigurations may do.
    policy: Arc<HostPolicy>,
}

impl Runner {
    /// The runner of an agent config's modules (with their configs, so they can be
    /// reconfigured at run time).
    pub fn from_config(
        host: &str,
        outbox: Arc<Outbox>,
        notify: Arc<Notify>,
        cfg: &AgentConfig,
    ) -> Self {
        let mut runner = Runner::new(host, outbox, notify, ModuleEntry::from_config(cfg));
        runner.configs = cfg
            .modules
            .iter()
            .map(|m| (m.name().to_owned(), m.clone()))
            .collect();
        runner.labels = Arc::new(cfg.labels.clone());
        runner.data_dir = cfg.data_dir.as_path().into();
        runner.policy = Arc::new(HostPolicy::from_config(cfg));
        (runner.control.service_configs()).set_root(cfg.data_dir.join("service-config"));
        runner
    }

    /// `notify` wakes the publisher after each group commit.
    pub fn new(
        host: &str,
        outbox: Arc<Outbox>,
        notify: Arc<Notify>,
        modules: Vec<ModuleEntry>,
    ) -> Self {
        let slots = modules
            .iter()
            .map(|m| ModuleSlot {
                name: m.name.clone(),
                kind: m.module.kind(),
                interval: m.interval,
                fingerprint: m.fingerprint.clone(),
                state: pb::ModuleRunState::Running,
                runs: 0,
                failures: 0,
            })
            .collect();
        let (control, control_rx) = ControlHandle::channel();
        Runner {
            host: host.to_owned(),
            outbox,
            notify,
            modules,
            board: StatusBoard(Arc::new(Mutex::new(slots))),
            started: Instant::now(),
            health: HealthBoard::default(),
            services: ServiceBoard::default(),
            configs: BTreeMap::new(),
            control,
            control_rx,
            labels: Arc::default(),
            data_dir: std::env::temp_dir().into(),
            policy: Arc::default(),
        }
    }

    pub fn status(&self) -> StatusBoard {
        self.board.clone()
    }

    /// Pause / resume / disable / enable / reconfigure modules while `run` runs.
    pub fn control(&self) -> ControlHandle {
        self.control.clone()
    }

    /// Current state of every health check (what heartbeats report).
    pub fn health(&self) -> HealthBoard {
        self.health.clone()
    }

    /// Emits one `module_state` (RUNNING) per module, runs them until `cancel`, then waits
    /// for every produced event to be committed to the outbox.
    pub async fn run(mut self, cancel: CancellationToken) {
        let (tx, rx) = mpsc::channel::<RunOutput>(CHANNEL_CAPACITY);
        let writer = tokio::spawn(
            writer_loop(rx, self.outbox.clone(), self.notify.clone())
                .instrument(info_span!("outbox_writer", host = %self.host)),
        );
        // Persisted run-time control (state, config overrides) applies before the first run.
        let (mut controller, starts) = Controller::restore(
            self.outbox.clone(),
            self.board.clone(),
            self.health.clone(),
            tx.clone(),
            &mut self.modules,
            &self.configs,
            self.policy.clone(),
        );
        for ev in starts {
            if tx.send(ev.into()).await.is_err() {
                error!(host = %self.host, "outbox writer stopped early");
            }
        }
        let mut tasks = JoinSet::new();
        for (idx, entry) in self.modules.into_iter().enumerate() {
            let span = info_span!("module", host = %self.host, module = %entry.name);
            let (swap_tx, swaps) = mpsc::channel(4);
            controller.attach(idx, swap_tx);
            let (trigger_tx, triggers) = mpsc::channel(4);
            controller.attach_trigger(idx, trigger_tx);
            let worker = ModuleWorker {
                idx,
                entry,
                tx: tx.clone(),
                board: self.board.clone(),
                outbox: self.outbox.clone(),
                started: self.started,
                health: self.health.clone(),
                services: self.services.clone(),
                swaps,
                triggers,
                labels: self.labels.clone(),
                data_dir: self.data_dir.clone(),
                service_configs: self.control.service_configs(),
                service_roles: self.control.service_roles(),
            };
            tasks.spawn(worker.run(cancel.clone()).instrument(span));
        }
        tasks.spawn(
            controller
                .serve(self.control_rx, cancel.clone())
                .instrument(info_span!("control", host = %self.host)),
        );
        drop(tx);
        while let Some(res) = tasks.join_next().await {
            if let Err(e) = res {
                error!(host = %self.host, error = %ErrorChain(&e), "module task ended abnormally");
            }
        }
        if let Err(e) = writer.await {
            error!(host = %self.host, error = %ErrorChain(&e), "outbox writer ended abnormally");
        }
    }
}

#[cfg(test)]
mod tests;
