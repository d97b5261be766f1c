//! `ControlHandle`: the cloneable, async front of a runner's controller (pause, resume,
//! disable, enable, reconfigure from a typed config or TOML text).

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{Action, ControlError, ControlReply, Op, Origin, Request};
use crate::config::{parse_module_toml, ModuleConfig};
use crate::modules::service::{ConfigBoard, RoleBoard, ServiceOp};
use crate::modules::OnDemand;
use crate::runner::RunOutput;

/// Cloneable handle to a runner's modules (admin HTTP routes now, commands in issue 5).
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Request>,
    /// The services' config files (the runner's modules and the command handler share it).
    service_configs: ConfigBoard,
    /// The services' group roles and live slots (modules and the command handler share it).
    service_roles: RoleBoard,
}

impl ControlHandle {
    pub(crate) fn channel() -> (ControlHandle, mpsc::Receiver<Request>) {
        let (tx, rx) = mpsc::channel(64);
        (
            ControlHandle {
                tx,
                service_configs: ConfigBoard::default(),
                service_roles: RoleBoard::default(),
            },
            rx,
        )
    }

    /// The board of the services' config files (see `ConfigBoard`).
    pub fn service_configs(&self) -> ConfigBoard {
        self.service_configs.clone()
    }

    /// The board of the services' group roles and live slots (see `RoleBoard`).
    pub fn service_roles(&self) -> RoleBoard {
        self.service_roles.clone()
    }

    async fn call(&self, module: &str, op: Op) -> Result<ControlReply, ControlError> {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            module: module.to_owned(),
            op,
            reply,
        };
        self.tx.send(req).await.map_err(|_| ControlError::Stopped)?;
        rx.await.map_err(|_| ControlError::Stopped)?
    }

    /// Pause / resume / disable / enable `module`; `reason` goes into the `module_state` event.
    pub async fn act(
        &self,
        module: &str,
        action: Action,
        reason: &str,
    ) -> Result<ControlReply, ControlError> {
        let op = Op::Act {
            action,
            reason: reason.to_owned(),
        };
        self.call(module, op).await
    }

    pub async fn pause(&self, module: &str) -> Result<ControlReply, ControlError> {
        self.act(module, Action::Pause, "control").await
    }
    pub async fn resume(&self, module: &str) -> Result<ControlReply, ControlError> {
        self.act(module, Action::Resume, "control").await
    }
    pub async fn disable(&self, module: &str) -> Result<ControlReply, ControlError> {
        self.act(module, Action::Disable, "control").await
    }
    pub async fn enable(&self, module: &str) -> Result<ControlReply, ControlError> {
        self.act(module, Action::Enable, "control").await
    }

    /// Validates `cfg` like the config file does, checks it against the host's `[policy]`
    /// for `origin` (and its claimed fingerprint), and swaps it in, or refuses it (a
    /// `config_rejected` event naming the rules; the module keeps its config).
    pub async fn reconfigure(
        &self,
        module: &str,
        cfg: ModuleConfig,
        origin: Origin,
    ) -> Result<ControlReply, ControlError> {
        self.call(module, Op::Reconfigure(Box::new(cfg), origin))
            .await
    }

    /// `reconfigure` from the TOML text of one `[[modules]]` entry (`type = "disk"`, ...).
    pub async fn reconfigure_toml(
        &self,
        module: &str,
        text: &str,
        origin: Origin,
    ) -> Result<ControlReply, ControlError> {
        match parse_module_toml(text) {
            Ok(cfg) => self.reconfigure(module, cfg, origin).await,
            Err(problems) => {
                let fingerprint = hex::encode(Sha256::digest(text.as_bytes()));
                let op = Op::Reject {
                    problems,
                    fingerprint,
                };
                self.call(module, op).await
            }
        }
    }

    /// Runs `module` now, outside its schedule (a backup module: job `what`, empty = every
    /// job), through the same code as a scheduled run; returns the run's detail (archive
    /// names) once its events are queued for the outbox, or why it failed or was refused.
    pub async fn run_now(&self, module: &str, what: &str) -> Result<String, ControlError> {
        self.on_demand(module, OnDemand::Run(what.to_owned())).await
    }

    /// A restore test of backup job `job` of `module` now (see `OnDemand::VerifyRestore`);
    /// returns its detail once its `restore_tested` is queued, or why it failed or was refused.
    pub async fn verify_restore(
        &self,
        module: &str,
        job: &str,
        requested_by: &str,
        scratch_root: std::path::PathBuf,
    ) -> Result<String, ControlError> {
        let what = OnDemand::VerifyRestore {
            job: job.to_owned(),
            requested_by: requested_by.to_owned(),
            scratch_root,
        };
        self.on_demand(module, what).await
    }

    /// Asks service module `module` for a lifecycle action; returns its detail once done (the
    /// service in the asked state, and ready when it declares a probe), or why not.
    pub async fn service_op(&self, module: &str, op: ServiceOp) -> Result<String, ControlError> {
        self.on_demand(module, OnDemand::Service(op)).await
    }

    /// Hands `what` to the module's worker and waits for its outcome.
    async fn on_demand(&self, module: &str, what: OnDemand) -> Result<String, ControlError> {
        self.start_on_demand(module, what).await?.await
    }

    /// Like `service_op`, in two steps: returns once the module's worker has the request
    /// (requests handed over one after another keep their order), with the future of its
    /// outcome.
    pub async fn start_service_op(
        &self,
        module: &str,
        op: ServiceOp,
    ) -> Result<impl std::future::Future<Output = Result<String, ControlError>>, ControlError> {
        self.start_on_demand(module, OnDemand::Service(op)).await
    }

    /// A deploy's activation of service module `module` (`op`, then `ready_samples`
    /// consecutive ready probe rounds when > 0), in two steps like `start_service_op`.
    pub async fn start_activation(
        &self,
        module: &str,
        op: ServiceOp,
        ready_samples: u32,
    ) -> Result<impl std::future::Future<Output = Result<String, ControlError>>, ControlError> {
        let what = OnDemand::Activate { op, ready_samples };
        self.start_on_demand(module, what).await
    }

    /// Hands `what` to the module's worker; the future of its outcome.
    async fn start_on_demand(
        &self,
        module: &str,
        what: OnDemand,
    ) -> Result<impl std::future::Future<Output = Result<String, ControlError>>, ControlError> {
        let (done, outcome) = oneshot::channel();
        let op = Op::RunNow { what, done };
        self.call(module, op).await?;
        let module = module.to_owned();
        Ok(async move {
            match outcome.await {
                Ok(Ok(detail)) => Ok(detail),
                Ok(Err(reason)) => Err(ControlError::RunFailed { module, reason }),
                Err(_) => Err(ControlError::Stopped),
            }
        })
    }

    /// Queues `output` for the outbox writer after every control change made before this call
    /// (FIFO with their `module_state` events); queued, not yet committed, when this returns.
    pub async fn emit(&self, output: RunOutput) -> Result<(), ControlError> {
        self.call(crate::config::AGENT_MODULE, Op::Emit(output))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
impl ControlHandle {
    /// A handle whose every on-demand request is answered `answer` at once (anything else:
    /// `Stopped`); what each request asked comes out of the receiver. For command tests.
    pub(crate) fn answering(
        answer: Result<String, String>,
    ) -> (ControlHandle, mpsc::UnboundedReceiver<(String, OnDemand)>) {
        use super::{Op, RunState};
        let (handle, mut rx) = ControlHandle::channel();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let Op::RunNow { what, done } = req.op else {
                    let _ = req.reply.send(Err(ControlError::Stopped));
                    continue;
                };
                let _ = seen_tx.send((req.module.clone(), what));
                let _ = done.send(answer.clone());
                let _ = req.reply.send(Ok(ControlReply {
                    module: req.module,
                    kind: "service".to_owned(),
                    state: RunState::Running,
                    fingerprint: String::new(),
                    changed: true,
                }));
            }
        });
        (handle, seen)
    }
}
