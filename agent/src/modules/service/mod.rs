//! The service module: one supervised application. `supervisor` owns the child (start,
//! restarts with backoff, stop with grace, lifecycle requests) on a thread of its own;
//! `adopt` owns the record that lets a restarted agent take over a child a crashed agent left
//! running; `status` what the module knows of the service now, `probes` its health probes,
//! `gate` the readiness a lifecycle request waits for, `board` what heartbeats carry;
//! `driven` watches and drives a systemd unit or compose service instead, `backend` picks one
//! supervisor by manager; `config_watch` / `config_board` the declared config files; `logs`
//! the rotation of a child's output files. This file owns the module, which starts the
//! supervisor on its first run, hands its state changes to the runner and persists the running
//! child's record (and whether a command stopped it) with them. It talks to the supervisor only
//! through `Backend::request`, `stop` and the state callback.

pub mod adopt;
pub mod backend;
pub mod board;
pub mod command;
pub mod config_board;
pub mod config_watch;
pub mod deploy;
pub mod driven;
pub mod gate;
pub mod logs;
pub mod probes;
pub mod remediation;
pub mod roles;
pub mod status;
pub mod supervisor;

use std::sync::mpsc;
use std::time::SystemTime;

use opsfleet_proto::pb;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Module, ModuleCtx, ModuleError, OnDemand, RunNowTicket};
use crate::config::{ServiceConfig, ServiceManager};
use adopt::{ChildRecord, CHILD_KEY};
use backend::Backend;
pub use board::ServiceBoard;
pub use command::exit_detail;
pub use config_board::ConfigBoard;
use config_watch::{ConfigWatch, CONFIG_KEY};
pub use roles::RoleBoard;
use status::Snapshot;
pub use supervisor::{next_backoff, Boot, Supervisor, STOPPED_BY_COMMAND};

/// Key of the persisted "stopped by command" mark (present: stay down after a restart).
pub const DOWN_KEY: &str = "down";

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
/// the child: SIGTERM, SIGKILL after `stop_grace`; the drop blocks until then (off the async
/// workers' duty on a multi-thread runtime, so other modules stop meanwhile).
pub struct ServiceModule {
    name: String,
    cfg: ServiceConfig,
    supervisor: Option<Backend>,
    tx: mpsc::Sender<pb::ServiceState>,
    rx: mpsc::Receiver<pb::ServiceState>,
    /// Remediation decisions of the probe task.
    remedies_tx: mpsc::Sender<pb::ServiceRemediation>,
    remedies: mpsc::Receiver<pb::ServiceRemediation>,
    /// The service now (filled by the supervisor's callback and the probe task).
    board: watch::Sender<Snapshot>,
    /// Stops the probe task.
    probes: CancellationToken,
    /// The child a previous agent persisted (from `restore`), offered for adoption once.
    restored: Option<ChildRecord>,
    /// The running child now, and as last persisted.
    child: Option<ChildRecord>,
    saved: Option<ChildRecord>,
    /// Stopped by a command (stays down across agent restarts), now and as last persisted.
    down: bool,
    saved_down: bool,
    /// The declared config files' watch (`[modules.config]`).
    config: ConfigWatch,
    /// The group role and live slot (`[modules.role]`, `[modules.traffic]`).
    groups: roles::Groups,
}

impl ServiceModule {
    /// `name` is the module's instance name, also the service's name in its events.
    pub fn new(name: &str, cfg: &ServiceConfig) -> Self {
        let (tx, rx) = mpsc::channel();
        let (board, _) = watch::channel(Snapshot::default());
        let (remedies_tx, remedies) = mpsc::channel();
        ServiceModule {
            name: name.to_owned(),
            cfg: cfg.clone(),
            supervisor: None,
            tx,
            rx,
            remedies_tx,
            remedies,
            board,
            probes: CancellationToken::new(),
            restored: None,
            child: None,
            saved: None,
            down: false,
            saved_down: false,
            config: ConfigWatch::default(),
            groups: roles::Groups::default(),
        }
    }

    /// Tracks the running child and the down mark from a state change (`process` only: a
    /// unit or container is neither adopted nor kept down by the agent).
    fn track(&mut self, s: &pb::ServiceState) {
        if self.cfg.manager != ServiceManager::Process {
            return;
        }
        match pb::ServiceRunState::try_from(s.state) {
            Ok(pb::ServiceRunState::Running) => {
                self.child = adopt::record(s.pid, &self.cfg);
                self.down = false;
            }
            Ok(pb::ServiceRunState::Stopping) => {}
            Ok(pb::ServiceRunState::Stopped) if s.exit_detail == STOPPED_BY_COMMAND => {
                self.child = None;
                self.down = true;
            }
            _ => self.child = None,
        }
    }

    /// Starts the supervisor (and the probe task) unless it runs.
    fn ensure_started(&mut self) -> Result<&Backend, String> {
        if self.supervisor.is_none() {
            let on_state = status::on_state(&self.cfg, self.board.clone(), self.tx.clone());
            let boot = match self.restored.take() {
                _ if self.down => Boot::Down,
                Some(rec) => Boot::Adopt(rec),
                None => Boot::Fresh,
            };
            let sup = Backend::start(self.name.clone(), &self.cfg, boot, on_state)
                .map_err(|e| format!("cannot start the supervisor: {e}"))?;
            self.supervisor = Some(sup);
            if !self.cfg.health.is_empty() {
                let outputs = probes::Outputs {
                    board: self.board.clone(),
                    states: self.tx.clone(),
                    remedies: self.remedies_tx.clone(),
                };
                let remedy = self.cfg.remediation.clone().map(remediation::Remedy::new);
                tokio::spawn(probes::run(
                    self.cfg.health.clone(),
                    self.cfg.health_interval,
                    remedy,
                    outputs,
                    self.probes.clone(),
                ));
            }
        }
        self.supervisor
            .as_ref()
            .ok_or_else(|| "the supervisor is not running".to_owned())
    }
}

#[async_trait::async_trait]
impl Module for ServiceModule {
    fn kind(&self) -> &'static str {
        "service"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        // The role reaches the app before the service starts (once).
        (self.groups).start(&self.name, &self.cfg, &ctx.service_roles);
        self.ensure_started().map_err(ModuleError::Other)?;
        logs::rotate_logs(&self.name, &self.cfg);
        // States first: a stop by command since the probes decided wins over their restart.
        let states: Vec<pb::ServiceState> = self.rx.try_iter().collect();
        for s in &states {
            self.track(s);
        }
        let mut bodies: Vec<pb::event::Body> =
            states.into_iter().map(pb::event::Body::Service).collect();
        let running = self.board.borrow().run_state() == pb::ServiceRunState::Running;
        let decisions: Vec<pb::ServiceRemediation> = self.remedies.try_iter().collect();
        for decision in decisions {
            if self.down || !running {
                // Stopped by command, or already down or restarting: nothing to remedy now.
                debug!(service = %self.name, reason = %decision.reason, "remediation dropped: the service is not running");
                continue;
            }
            if !decision.capped {
                // Nobody waits for an automatic restart; its states say how it went.
                let (done, _) = oneshot::channel();
                if let Some(sup) = &self.supervisor {
                    sup.request(ServiceOp::Restart, done);
                }
            }
            bodies.push(pb::event::Body::ServiceRemediation(decision));
        }
        if let Some(files) = &self.cfg.config {
            bodies.extend(self.config.look(&self.name, files, &ctx.service_configs));
        }
        Ok(bodies)
    }

    fn restore(&mut self, saved: Vec<(String, Vec<u8>)>) {
        for (key, value) in saved {
            if key == DOWN_KEY {
                self.down = true;
                self.saved_down = true;
                continue;
            }
            if key == CONFIG_KEY {
                self.config.restore(&value);
                continue;
            }
            if self.groups.restore(&self.name, &key, &value) {
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
        if self.child != self.saved {
            self.saved = self.child.clone();
            let value = self.child.as_ref().and_then(|c| serde_json::to_vec(c).ok());
            out.push((CHILD_KEY.to_owned(), value));
        }
        if self.down != self.saved_down {
            self.saved_down = self.down;
            out.push((DOWN_KEY.to_owned(), self.down.then(|| b"1".to_vec())));
        }
        out
    }

    fn shutdown(&mut self) -> Vec<pb::event::Body> {
        self.stop_supervisor();
        let states: Vec<pb::ServiceState> = self.rx.try_iter().collect();
        for s in &states {
            self.track(s);
        }
        states.into_iter().map(pb::event::Body::Service).collect()
    }

    fn service(&self) -> Option<pb::ServiceSummary> {
        let snap = self.board.borrow();
        let mut summary = (!snap.state.service.is_empty()).then(|| snap.summary())?;
        // A release activated by a reload starts no new child: the link says what runs.
        if let status::Source::Release(dir) = status::Source::of(&self.cfg) {
            if snap.run_state() == pb::ServiceRunState::Running {
                if let Some(v) = deploy::current_version(&dir) {
                    summary.version = v;
                }
            }
        }
        self.groups.fill(&mut summary);
        Some(summary)
    }

    fn run_now(&mut self, what: &OnDemand, _now: SystemTime) -> Result<RunNowTicket, String> {
        let (op, samples) = match what {
            OnDemand::Service(op) => (*op, 0),
            OnDemand::Activate { op, ready_samples } => (*op, *ready_samples),
            OnDemand::Run(_) | OnDemand::VerifyRestore { .. } => {
                return Err(format!("a service module cannot {}", what.describe()));
            }
        };
        let probed = !self.cfg.health.is_empty();
        if samples > 0 && !probed {
            return Err(format!(
                "{samples} ready samples asked, but service {} declares no health probe \
                 ([[modules.health]])",
                self.name
            ));
        }
        let (answer_tx, answer) = oneshot::channel();
        self.ensure_started()?.request(op, answer_tx);
        let (ticket_tx, ticket) = oneshot::channel();
        let board = self.board.subscribe();
        let timeout = self.cfg.ready_timeout;
        // The supervisor answers within the stop grace and its own settle time; a bound, so a
        // supervisor that died cannot hold the command (and the host's queue) forever.
        let answer_within = self.cfg.stop_grace + gate::SUPERVISOR_ANSWER;
        tokio::spawn(async move {
            let wait = gate::Wait {
                probed,
                timeout,
                samples,
            };
            let outcome = gate::gate(op, (answer, answer_within), board, wait).await;
            let _ = ticket_tx.send(outcome);
        });
        Ok(ticket)
    }
}

impl ServiceModule {
    /// Stops the probes and the supervisor (a `process` child: SIGTERM, SIGKILL after the
    /// grace; blocks until then, off the async workers' duty on a multi-thread runtime).
    fn stop_supervisor(&mut self) {
        self.probes.cancel();
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

impl Drop for ServiceModule {
    fn drop(&mut self) {
        self.stop_supervisor();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(state: pb::ServiceRunState, detail: &str) -> pb::ServiceState {
        pb::ServiceState {
            service: "app".to_owned(),
            state: state as i32,
            exit_detail: detail.to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn a_stop_by_command_is_persisted_and_restored_as_down() {
        let cfg = ServiceConfig::process(vec!["sleep".to_owned(), "30".to_owned()]);
        let mut m = ServiceModule::new("app", &cfg);
        m.track(&state(pb::ServiceRunState::Stopping, ""));
        m.track(&state(pb::ServiceRunState::Stopped, STOPPED_BY_COMMAND));
        let saved = m.take_state();
        assert_eq!(saved, vec![(DOWN_KEY.to_owned(), Some(b"1".to_vec()))]);
        assert!(m.take_state().is_empty(), "only changes");

        // A stop by the agent itself (its own shutdown) is not "down".
        let mut other = ServiceModule::new("app", &cfg);
        other.track(&state(pb::ServiceRunState::Stopped, "killed by signal 15"));
        assert!(other.take_state().is_empty());

        let mut restored = ServiceModule::new("app", &cfg);
        restored.restore(vec![(DOWN_KEY.to_owned(), b"1".to_vec())]);
        assert!(restored.down);
        // Started again (a running state) clears the mark.
        restored.track(&state(pb::ServiceRunState::Running, "started by command"));
        assert_eq!(restored.take_state(), vec![(DOWN_KEY.to_owned(), None)]);
    }

    #[tokio::test]
    async fn a_restart_the_probes_decided_is_dropped_once_a_command_stopped_the_service() {
        let cfg = ServiceConfig::process(vec!["sleep".to_owned(), "30".to_owned()]);
        let mut m = ServiceModule::new("app", &cfg);
        // Decided while it ran; the operator's stop lands before the module's next run.
        let decision = pb::ServiceRemediation {
            service: "app".to_owned(),
            action: "restart".to_owned(),
            reason: "3 failed checks".to_owned(),
            ..Default::default()
        };
        m.remedies_tx.send(decision).expect("queued");
        m.tx.send(state(pb::ServiceRunState::Stopped, STOPPED_BY_COMMAND))
            .expect("queued");
        m.restore(vec![(DOWN_KEY.to_owned(), b"1".to_vec())]);
        let ctx = ModuleCtx::empty();
        let bodies = m.run_once(&ctx).await.expect("ran");
        assert!(
            !bodies
                .iter()
                .any(|b| matches!(b, pb::event::Body::ServiceRemediation(_))),
            "{bodies:?}"
        );
        assert!(m.down, "still down");
    }
}
