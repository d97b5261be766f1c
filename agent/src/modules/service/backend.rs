//! Which supervisor runs a service: the `process` manager's own (the child is the agent's) or
//! the driven one (`systemd`, `compose`: the agent drives a unit or container it does not
//! own), chosen by `manager`, behind one start / request / stop.

use super::driven::{Done, DrivenSupervisor};
use super::supervisor::{Boot, OnState, Supervisor};
use super::ServiceOp;
use crate::config::{ServiceConfig, ServiceManager};

/// The running supervisor of one service.
pub enum Backend {
    Process(Supervisor),
    Driven(DrivenSupervisor),
}

impl Backend {
    /// Starts the supervisor `cfg.manager` calls for; `boot` (adopt the child a crashed agent
    /// left running, or stay down after a stop by command) applies to `process` only: a unit
    /// or container outlives the agent by design and is simply observed again.
    pub fn start(
        name: String,
        cfg: &ServiceConfig,
        boot: Boot,
        on_state: OnState,
    ) -> std::io::Result<Self> {
        match cfg.manager {
            ServiceManager::Process => {
                Supervisor::start(name, cfg.clone(), boot, on_state).map(Backend::Process)
            }
            ServiceManager::Systemd | ServiceManager::Compose => {
                DrivenSupervisor::start(name, cfg, on_state).map(Backend::Driven)
            }
        }
    }

    /// Asks for a lifecycle action; `done` gets the outcome (see `DrivenSupervisor::request`).
    pub fn request(&self, op: ServiceOp, done: Done) {
        match self {
            Backend::Process(s) => s.request(op, done),
            Backend::Driven(d) => d.request(op, done),
        }
    }

    /// `process`: stops the child (SIGTERM, SIGKILL after the grace) and its thread. Driven:
    /// ends the watching thread only; the unit or container keeps running.
    pub fn stop(&mut self) {
        match self {
            Backend::Process(s) => s.stop(),
            Backend::Driven(d) => d.stop(),
        }
    }
}
