//! The service module: one supervised application. `supervisor` owns the child (start,
//! restarts with backoff, stop with grace) on a thread of its own; this file owns the module,
//! which starts the supervisor on its first run and hands its state changes to the runner.

pub mod supervisor;

use std::sync::mpsc;

use opsfleet_proto::pb;

use super::{Module, ModuleCtx, ModuleError};
use crate::config::ServiceConfig;
pub use supervisor::{exit_detail, next_backoff, Supervisor};

/// The module: the supervisor runs continuously; each tick returns the `ServiceState`s it
/// reported since the previous one. Dropping the module (agent stop, reconfiguration) stops
/// the child: SIGTERM, SIGKILL after `stop_grace`; the drop blocks until then.
pub struct ServiceModule {
    name: String,
    cfg: ServiceConfig,
    supervisor: Option<Supervisor>,
    tx: mpsc::Sender<pb::ServiceState>,
    rx: mpsc::Receiver<pb::ServiceState>,
}

impl ServiceModule {
    /// `name` is the module's instance name, also the service's name in its events.
    pub fn new(name: &str, cfg: &ServiceConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        ServiceModule {
            name: name.to_owned(),
            cfg: cfg.clone(),
            supervisor: None,
            tx,
            rx,
        }
    }
}

#[async_trait::async_trait]
impl Module for ServiceModule {
    fn kind(&self) -> &'static str {
        "service"
    }

    async fn run_once(&mut self, _ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        if self.supervisor.is_none() {
            let tx = self.tx.clone();
            let on_state = Box::new(move |s| {
                // The module (receiver) is gone only when the supervisor is being stopped.
                let _ = tx.send(s);
            });
            let sup = Supervisor::start(self.name.clone(), self.cfg.clone(), on_state)
                .map_err(|e| ModuleError::Other(format!("cannot start the supervisor: {e}")))?;
            self.supervisor = Some(sup);
        }
        Ok(self.rx.try_iter().map(pb::event::Body::Service).collect())
    }
}

#[cfg(test)]
mod tests;
