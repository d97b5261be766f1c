//! The service module: one supervised application. `supervisor` owns the child (start,
//! restarts with backoff, stop with grace) on a thread of its own; `adopt` owns the record that
//! lets a restarted agent take over a child a crashed agent left running; `driven` watches and
//! drives a systemd unit or compose service instead; `backend` picks one by manager. This file
//! owns the module, which starts the supervisor on its first run, hands its state changes to
//! the runner and persists the running child's record with them.

pub mod adopt;
pub mod backend;
pub mod config_board;
pub mod config_watch;
pub mod driven;
pub mod logs;
pub mod supervisor;

use std::sync::mpsc;

use opsfleet_proto::pb;
use tracing::warn;

use super::{Module, ModuleCtx, ModuleError};
use crate::config::{ServiceConfig, ServiceManager};
use adopt::{ChildRecord, CHILD_KEY};
use backend::Backend;
pub use config_board::ConfigBoard;
use config_watch::{ConfigWatch, CONFIG_KEY};
pub use supervisor::{exit_detail, next_backoff, Supervisor};

/// A lifecycle action asked of a service (`opsctl service start|stop|restart|reload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceOp {
    Start,
    Stop,
    Restart,
    Reload,
}

impl ServiceOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
            ServiceOp::Reload => "reload",
        }
    }

    /// The `remote` entry of the service's config that allows this action.
    pub fn remote(self) -> crate::config::RemoteOp {
        use crate::config::RemoteOp;
        match self {
            ServiceOp::Start => RemoteOp::Start,
            ServiceOp::Stop => RemoteOp::Stop,
            ServiceOp::Restart => RemoteOp::Restart,
            ServiceOp::Reload => RemoteOp::Reload,
        }
    }
}

/// The module: the supervisor runs continuously; each tick returns the `ServiceState`s it
/// reported since the previous one. Dropping the module (agent stop, reconfiguration) stops
/// a `process` child: SIGTERM, SIGKILL after `stop_grace`; the drop blocks until then (off the
/// async workers' duty on a multi-thread runtime, so other modules stop meanwhile). A systemd
/// unit or compose service is left running (only the watching stops).
pub struct ServiceModule {
    name: String,
    cfg: ServiceConfig,
    supervisor: Option<Backend>,
    tx: mpsc::Sender<pb::ServiceState>,
    rx: mpsc::Receiver<pb::ServiceState>,
    /// The child a previous agent persisted (from `restore`), offered for adoption once.
    restored: Option<ChildRecord>,
    /// The running child now, and as last persisted.
    child: Option<ChildRecord>,
    saved: Option<ChildRecord>,
    /// The declared config files' watch (`[modules.config]`).
    config: ConfigWatch,
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
            restored: None,
            child: None,
            saved: None,
            config: ConfigWatch::default(),
        }
    }

    /// Tracks the running child from a state change (`process` only: nothing else is adopted).
    fn track(&mut self, s: &pb::ServiceState) {
        if self.cfg.manager != ServiceManager::Process {
            return;
        }
        match pb::ServiceRunState::try_from(s.state) {
            Ok(pb::ServiceRunState::Running) => self.child = adopt::record(s.pid, &self.cfg),
            Ok(pb::ServiceRunState::Stopping) => {}
            _ => self.child = None,
        }
    }
}

#[async_trait::async_trait]
impl Module for ServiceModule {
    fn kind(&self) -> &'static str {
        "service"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        if self.supervisor.is_none() {
            let tx = self.tx.clone();
            let on_state = Box::new(move |s| {
                // The module (receiver) is gone only when the supervisor is being stopped.
                let _ = tx.send(s);
            });
            let adopt = self.restored.take();
            let sup = Backend::start(self.name.clone(), &self.cfg, adopt, on_state)
                .map_err(|e| ModuleError::Other(format!("cannot start the supervisor: {e}")))?;
            self.supervisor = Some(sup);
        }
        logs::rotate_logs(&self.name, &self.cfg);
        let states: Vec<pb::ServiceState> = self.rx.try_iter().collect();
        for s in &states {
            self.track(s);
        }
        let mut bodies: Vec<pb::event::Body> =
            states.into_iter().map(pb::event::Body::Service).collect();
        if let Some(files) = &self.cfg.config {
            bodies.extend(self.config.look(&self.name, files, &ctx.service_configs));
        }
        Ok(bodies)
    }

    fn restore(&mut self, saved: Vec<(String, Vec<u8>)>) {
        for (key, value) in saved {
            if key == CONFIG_KEY {
                self.config.restore(&value);
                continue;
            }
            if key != CHILD_KEY {
                continue;
            }
            match serde_json::from_slice::<ChildRecord>(&value) {
                Ok(rec) => {
                    self.saved = Some(rec.clone());
                    self.restored = Some(rec);
                }
                Err(e) => {
                    warn!(service = %self.name, error = %e, "unreadable child record ignored")
                }
            }
        }
    }

    fn take_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        if let Some(files) = &self.cfg.config {
            out.extend(self.config.take_state(&self.name, files));
        }
        if self.child == self.saved {
            return out;
        }
        self.saved = self.child.clone();
        let value = self.child.as_ref().and_then(|c| serde_json::to_vec(c).ok());
        out.push((CHILD_KEY.to_owned(), value));
        out
    }
}

impl Drop for ServiceModule {
    fn drop(&mut self) {
        let Some(mut sup) = self.supervisor.take() else {
            return;
        };
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi {
            tokio::task::block_in_place(|| sup.stop());
        } else {
            sup.stop();
        }
    }
}

#[cfg(test)]
mod tests;
