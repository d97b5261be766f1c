//! The controller task behind every `ControlHandle`: serves requests one at a time, persisting
//! each change before it takes effect, emitting its event and updating the status board.

use opsfleet_proto::pb;
use opsfleet_report::ErrorChain;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    join_problems, state_event, transition, Action, ControlError, ControlReply, Controller, Op,
    Origin, Record, Request, RunState, FINGERPRINT_RULE,
};
use crate::config::{fs_resolve, module_problems, ModuleConfig};
use crate::modules::{self, Module};
use crate::outbox::NewEvent;
use crate::runner::ModuleEntry;
use crate::runner::Trigger;
use opsfleet_proto::time::unix_ms;

impl Controller {
    /// Where swapped module instances go for module `idx`.
    pub(crate) fn attach(&mut self, idx: usize, swap: mpsc::Sender<ModuleEntry>) {
        if let Some(m) = self.modules.get_mut(idx) {
            m.swap = Some(swap);
        }
    }

    /// Where on-demand runs go for module `idx`.
    pub(crate) fn attach_trigger(&mut self, idx: usize, trigger: mpsc::Sender<Trigger>) {
        if let Some(m) = self.modules.get_mut(idx) {
            m.trigger = Some(trigger);
        }
    }

    /// Serves requests until `cancel`.
    pub(crate) async fn serve(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        cancel: CancellationToken,
    ) {
        loop {
            let req = tokio::select! {
                _ = cancel.cancelled() => return,
                r = rx.recv() => match r { Some(r) => r, None => return },
            };
            let res = self.handle(&req.module, req.op).await;
            // The caller may have gone away; the change stands either way.
            let _ = req.reply.send(res);
        }
    }

    async fn handle(&mut self, module: &str, op: Op) -> Result<ControlReply, ControlError> {
        if let Op::Emit(output) = op {
            if self.events.send(output).await.is_err() {
                return Err(ControlError::Stopped);
            }
            return Ok(ControlReply {
                module: module.to_owned(),
                kind: String::new(),
                state: RunState::Running,
                fingerprint: String::new(),
                changed: false,
            });
        }
        let idx = self
            .modules
            .iter()
            .position(|m| m.name == module)
            .ok_or_else(|| ControlError::UnknownModule {
                module: module.to_owned(),
            })?;
        match op {
            Op::Act { action, reason } => self.act(idx, action, &reason).await,
            Op::Reconfigure(cfg, origin) => self.reconfigure(idx, *cfg, &origin).await,
            Op::Reject {
                problems,
                fingerprint,
            } => Err(self.reject(idx, problems, &fingerprint, Vec::new()).await),
            Op::Emit(_) => Err(ControlError::Stopped),
            Op::RunNow { what, done } => self.run_now(idx, what, done).await,
        }
    }

    /// Hands an on-demand run to the module's worker (without waiting for it): the worker
    /// answers `done`, refusing unless the module is running.
    async fn run_now(
        &mut self,
        idx: usize,
        what: crate::modules::OnDemand,
        done: oneshot::Sender<Result<String, String>>,
    ) -> Result<ControlReply, ControlError> {
        let m = &self.modules[idx];
        if m.state != RunState::Running {
            let _ = done.send(Err(format!(
                "module {} is {}; resume or enable it first",
                m.name,
                m.state.as_str()
            )));
            return Ok(self.reply(idx, false));
        }
        let Some(trigger) = &m.trigger else {
            let _ = done.send(Err(format!("module {} cannot run on demand", m.name)));
            return Ok(self.reply(idx, false));
        };
        if trigger.send(Trigger { what, done }).await.is_err() {
            return Err(ControlError::Stopped);
        }
        Ok(self.reply(idx, true))
    }

    fn reply(&self, idx: usize, changed: bool) -> ControlReply {
        let m = &self.modules[idx];
        ControlReply {
            module: m.name.clone(),
            kind: m.kind.to_owned(),
            state: m.state,
            fingerprint: m.fingerprint.clone(),
            changed,
        }
    }

    async fn persist(&self, idx: usize, state: RunState, reason: &str) -> Result<(), ControlError> {
        let m = &self.modules[idx];
        let record = Record {
            state,
            reason: reason.to_owned(),
            config: if m.has_override {
                m.config.clone()
            } else {
                None
            },
            file_fingerprint: m.file_fingerprint.clone(),
            changed_unix_ms: unix_ms(std::time::SystemTime::now()),
        };
        // A running module without an override needs no record.
        let value = if state == RunState::Running && record.config.is_none() {
            None
        } else {
            serde_json::to_vec(&record).ok()
        };
        self.outbox
            .put_control(&m.name, value)
            .await
            .map_err(|source| ControlError::Store {
                module: m.name.clone(),
                source,
            })
    }

    async fn emit(&self, ev: NewEvent) {
        if self.events.send(ev.into()).await.is_err() {
            warn!("outbox writer gone; control event not written");
        }
    }

    async fn act(
        &mut self,
        idx: usize,
        action: Action,
        reason: &str,
    ) -> Result<ControlReply, ControlError> {
        let current = self.modules[idx].state;
        let next = transition(current, action).map_err(|hint| ControlError::Conflict {
            module: self.modules[idx].name.clone(),
            action: action.as_str(),
            hint,
        })?;
        let Some(next) = next else {
            return Ok(self.reply(idx, false));
        };
        let why = format!("{} ({reason})", action.as_str());
        self.persist(idx, next, &why).await?;
        let m = &mut self.modules[idx];
        m.state = next;
        self.board.update(idx, |s| s.state = next.to_pb());
        if next == RunState::Disabled {
            self.health.set(&m.name, Vec::new());
        }
        info!(module = %m.name, from = current.as_str(), to = next.as_str(), reason, "module state changed");
        let ev = state_event(&m.name, m.kind, next, &why, &m.fingerprint, None);
        self.emit(ev).await;
        Ok(self.reply(idx, true))
    }

    async fn reject(
        &self,
        idx: usize,
        problems: Vec<(String, String)>,
        rejected_fingerprint: &str,
        rules: Vec<String>,
    ) -> ControlError {
        let m = &self.modules[idx];
        let reason = join_problems(&problems);
        warn!(module = %m.name, reason = %reason, rules = ?rules, "reconfiguration rejected");
        self.emit(NewEvent {
            module: m.name.clone(),
            time_unix_ms: unix_ms(std::time::SystemTime::now()),
            body: pb::event::Body::ConfigRejected(pb::ConfigRejected {
                module: m.name.clone(),
                reason,
                rejected_fingerprint: rejected_fingerprint.to_owned(),
                kept_fingerprint: m.fingerprint.clone(),
                rules: rules.clone(),
            }),
        })
        .await;
        ControlError::Rejected {
            module: m.name.clone(),
            problems,
            rules,
        }
    }

    /// What keeps `cfg` (from `origin`) out of module `idx` beyond the config's own checks:
    /// a claimed fingerprint it does not hash to, and the host policy's rules (checked only
    /// on an otherwise valid config). Returns (problems, distinct rules).
    fn host_rules(
        &self,
        idx: usize,
        cfg: &ModuleConfig,
        origin: &Origin,
        valid: bool,
    ) -> (Vec<(String, String)>, Vec<String>) {
        let mut problems = Vec::new();
        let mut rules: Vec<String> = Vec::new();
        let fingerprint = cfg.fingerprint();
        if let Some(claimed) = origin
            .claimed_fingerprint
            .as_deref()
            .filter(|c| *c != fingerprint)
        {
            problems.push((
                FINGERPRINT_RULE.to_owned(),
                format!(
                    "the config hashes to {fingerprint}, not to the {claimed} its command claims"
                ),
            ));
            rules.push(FINGERPRINT_RULE.to_owned());
        }
        if valid {
            let m = &self.modules[idx];
            let violations =
                self.policy
                    .check_module(&m.name, m.kind, cfg, origin.surface, &fs_resolve);
            for v in violations {
                problems.push(v.problem());
                if !rules.iter().any(|r| r == v.rule) {
                    rules.push(v.rule.to_owned());
                }
            }
        }
        (problems, rules)
    }

    async fn reconfigure(
        &mut self,
        idx: usize,
        cfg: ModuleConfig,
        origin: &Origin,
    ) -> Result<ControlReply, ControlError> {
        let mut problems = self.config_problems(idx, &cfg);
        let (host_problems, rules) = self.host_rules(idx, &cfg, origin, problems.is_empty());
        problems.extend(host_problems);
        let fingerprint = cfg.fingerprint();
        if !problems.is_empty() {
            return Err(self.reject(idx, problems, &fingerprint, rules).await);
        }
        if fingerprint == self.modules[idx].fingerprint {
            return Ok(self.reply(idx, false));
        }
        let (module, same_kind) = self.new_instance(idx, &cfg);
        // Persist first: a crash after the swap must not come back with the old config.
        let state = self.persist_config(idx, &cfg, &fingerprint).await?;
        let entry = ModuleEntry {
            name: self.modules[idx].name.clone(),
            interval: cfg.interval(),
            fingerprint,
            module,
        };
        self.swap_in(idx, entry, &cfg, state, same_kind).await
    }

    /// What is wrong with `cfg` for module `idx` by itself: the config's own checks, a changed
    /// name, a module that cannot be reconfigured at run time.
    fn config_problems(&self, idx: usize, cfg: &ModuleConfig) -> Vec<(String, String)> {
        let m = &self.modules[idx];
        let mut problems = module_problems(cfg);
        if cfg.name() != m.name {
            problems.push((
                "name".to_owned(),
                format!(
                    "must stay {:?} (found {:?}); renaming is a config file change",
                    m.name,
                    cfg.name()
                ),
            ));
        }
        if m.swap.is_none() {
            problems.push((
                "(module)".to_owned(),
                "this module cannot be reconfigured at run time".to_owned(),
            ));
        }
        problems
    }

    /// The instance built from `cfg` for module `idx`, with the module's saved state when it
    /// is of the same kind (returned as the second value).
    fn new_instance(&self, idx: usize, cfg: &ModuleConfig) -> (Box<dyn Module>, bool) {
        let name = &self.modules[idx].name;
        let mut module = modules::build(cfg);
        let same_kind = module.kind() == self.modules[idx].kind;
        if same_kind {
            match self.outbox.module_state(name) {
                Ok(saved) => module.restore(saved),
                Err(e) => {
                    warn!(module = %name, error = %ErrorChain(&e), "cannot read module state for the new instance")
                }
            }
        }
        (module, same_kind)
    }

    /// Records `cfg` (hashing to `fingerprint`) as module `idx`'s config and persists it, or
    /// puts the previous config back when it cannot be persisted. Returns the module's state.
    async fn persist_config(
        &mut self,
        idx: usize,
        cfg: &ModuleConfig,
        fingerprint: &str,
    ) -> Result<RunState, ControlError> {
        let (prev_override, prev_config) = {
            let m = &mut self.modules[idx];
            let prev = (m.has_override, m.config.clone());
            m.has_override = fingerprint != m.file_fingerprint;
            m.config = Some(cfg.clone());
            prev
        };
        let state = self.modules[idx].state;
        if let Err(e) = self.persist(idx, state, "reconfigure").await {
            let m = &mut self.modules[idx];
            m.has_override = prev_override;
            m.config = prev_config;
            return Err(e);
        }
        Ok(state)
    }

    /// Hands the new instance `entry` (built from `cfg`) to module `idx`'s worker, then
    /// updates the controller's and the board's view and emits the `reconfigured` event.
    async fn swap_in(
        &mut self,
        idx: usize,
        entry: ModuleEntry,
        cfg: &ModuleConfig,
        state: RunState,
        same_kind: bool,
    ) -> Result<ControlReply, ControlError> {
        let name = entry.name.clone();
        let fingerprint = entry.fingerprint.clone();
        let kind = entry.module.kind();
        if let Some(swap) = &self.modules[idx].swap {
            if swap.send(entry).await.is_err() {
                return Err(ControlError::Stopped);
            }
        }
        let m = &mut self.modules[idx];
        m.kind = kind;
        m.fingerprint = fingerprint.clone();
        let interval = cfg.interval();
        self.board.update(idx, |s| {
            s.kind = kind;
            s.interval = interval;
            s.fingerprint = fingerprint.clone();
        });
        if !same_kind {
            self.health.set(&name, Vec::new());
        }
        info!(module = %name, fingerprint = %fingerprint, "module reconfigured");
        let ev = state_event(&name, kind, state, "reconfigured", &fingerprint, Some(cfg));
        self.emit(ev).await;
        Ok(self.reply(idx, true))
    }
}
