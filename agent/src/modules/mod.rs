//! The module contract: a module observes something on this host and returns event bodies.
//! Modules never touch NATS or sled; the runner schedules them and the outbox stores their output.

pub mod backup;
pub mod disk;
pub mod health;
pub mod heartbeat;
pub mod janitor;
pub mod log;
pub mod sentinel;
pub mod service;

use std::time::{Duration, SystemTime};

use opsfleet_proto::pb;

use crate::config::ModuleConfig;

pub use backup::BackupModule;
pub use disk::DiskModule;
pub use health::{HealthBoard, HealthModule};
pub use heartbeat::HeartbeatModule;
pub use janitor::JanitorModule;
pub use log::LogModule;
pub use sentinel::SentinelModule;
pub use service::{ServiceBoard, ServiceModule};

/// Why one run of a module failed. The runner logs and counts it; the agent keeps going.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot stat {path}")]
    Stat {
        path: String,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What a module sees of the agent when it runs.
#[derive(Debug, Clone)]
pub struct ModuleCtx {
    /// Wall clock time of this run.
    pub now: SystemTime,
    /// Time since the agent started.
    pub uptime: Duration,
    /// Snapshot of every module's status (name, kind, state, expected interval).
    pub statuses: Vec<pb::ModuleStatus>,
    /// Events in the outbox not yet acknowledged by JetStream.
    pub outbox_pending: u64,
    /// Current state of every health probe (for the heartbeat).
    pub health: Vec<pb::HealthSummary>,
    /// Current state of every service module (for the heartbeat).
    pub services: Vec<pb::ServiceSummary>,
    /// The host's labels from the agent config (for the heartbeat).
    pub labels: std::sync::Arc<std::collections::BTreeMap<String, String>>,
    /// The services' config files as last reported (shared with the command handler).
    pub service_configs: service::ConfigBoard,
    /// The services' group roles and live slots (shared with the command handler).
    pub service_roles: service::RoleBoard,
    /// The agent's `data_dir` (a backup module's restore tests make their scratch
    /// directories under it).
    pub data_dir: std::sync::Arc<std::path::Path>,
}

#[cfg(test)]
impl ModuleCtx {
    /// A context with nothing in it, at the current time (unit tests of one module).
    pub(crate) fn empty() -> Self {
        ModuleCtx {
            now: SystemTime::now(),
            uptime: Duration::ZERO,
            statuses: Vec::new(),
            outbox_pending: 0,
            health: Vec::new(),
            services: Vec::new(),
            labels: Default::default(),
            service_configs: Default::default(),
            service_roles: Default::default(),
            data_dir: std::env::temp_dir().into(),
        }
    }
}

/// One module instance.
#[async_trait::async_trait]
pub trait Module: Send {
    /// The module's type (`heartbeat`, `disk`).
    fn kind(&self) -> &'static str;

    /// Observes once and returns the event bodies to publish (possibly none).
    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError>;

    /// Called once before the first run with the state this module persisted earlier
    /// (see `take_state`), keyed as the module wrote it.
    fn restore(&mut self, _saved: Vec<(String, Vec<u8>)>) {}

    /// State to persist atomically with the bodies of the run that just ended (e.g. a log
    /// cursor): the runner takes it after every successful run and commits it in the same
    /// outbox batch and flush as those bodies (keys `s/<module>/<key>`), so a crash loses or
    /// keeps both. Return only what changed; `None` deletes the key.
    fn take_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        Vec::new()
    }

    /// Current state of this module's health checks; the runner copies it to the shared
    /// `HealthBoard` after every run (only the health module has any).
    fn health(&self) -> Vec<pb::HealthSummary> {
        Vec::new()
    }

    /// The service's current summary; the runner copies it to the shared `ServiceBoard`
    /// after every run (only service modules have one).
    fn service(&self) -> Option<pb::ServiceSummary> {
        None
    }

    /// Called once when the agent stops (not on a reconfiguration): ends what the module runs
    /// and returns the events that tell it (a service module: its child's stopped state). The
    /// runner commits them, with `take_state`, before the agent exits.
    fn shutdown(&mut self) -> Vec<pb::event::Body> {
        Vec::new()
    }

    /// Starts an on-demand request `what` (for the backup module: run a job, through the same
    /// code as a scheduled run; for a service module: a lifecycle action) at `now`. Its events
    /// come out of `run_once` like those of a scheduled run; the receiver resolves to the
    /// detail (archive names, the service's new state) or the failure reason once the request
    /// is done. `Err` when this module cannot do `what` or refuses now (a job already running).
    fn run_now(&mut self, what: &OnDemand, _now: SystemTime) -> Result<RunNowTicket, String> {
        Err(format!(
            "a {} module cannot {}",
            self.kind(),
            what.describe()
        ))
    }
}

/// What an on-demand request asks of a module (see `Module::run_now`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDemand {
    /// backup: run a job now (empty = every job of the module).
    Run(String),
    /// backup: a restore test of a job now (as its `verify_restore` schedule would), its
    /// scratch directory under `scratch_root`; `requested_by` is the asking command's id.
    VerifyRestore {
        job: String,
        requested_by: String,
        scratch_root: std::path::PathBuf,
    },
    /// service: a lifecycle action.
    Service(service::ServiceOp),
    /// service: a deploy's activation (restart, reload, or a compose `up -d`), done after
    /// `ready_samples` consecutive ready probe rounds (0: as `Service`).
    Activate {
        op: service::ServiceOp,
        ready_samples: u32,
    },
}

impl OnDemand {
    /// What is asked, in words (`run on demand`, `restart`).
    pub fn describe(&self) -> String {
        match self {
            OnDemand::Run(_) => "run on demand".to_owned(),
            OnDemand::VerifyRestore { .. } => "run a restore test".to_owned(),
            OnDemand::Service(op) | OnDemand::Activate { op, .. } => op.as_str().to_owned(),
        }
    }
}

/// Resolves to the detail or failure reason of an on-demand run (see `Module::run_now`).
pub type RunNowTicket = tokio::sync::oneshot::Receiver<Result<String, String>>;

/// Builds the module a config entry describes.
pub fn build(cfg: &ModuleConfig) -> Box<dyn Module> {
    match cfg {
        ModuleConfig::Heartbeat(c) => Box::new(HeartbeatModule::new(c.interval)),
        ModuleConfig::Disk(c) => Box::new(DiskModule::new(c)),
        ModuleConfig::Health(c) => Box::new(HealthModule::new(c)),
        ModuleConfig::Backup(c) => Box::new(BackupModule::new(c)),
        ModuleConfig::Janitor(c) => Box::new(JanitorModule::new(c)),
        ModuleConfig::Log(c) => Box::new(LogModule::new(c)),
        ModuleConfig::Sentinel(c) => Box::new(SentinelModule::new(c)),
        ModuleConfig::Service(c) => Box::new(ServiceModule::new(cfg.name(), c)),
    }
}
