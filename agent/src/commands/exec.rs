//! Running an accepted command: control actions (and backup runs and restore tests, through
//! the backup module) through the `ControlHandle`, restores on the
//! blocking pool, drains (pause everything but the heartbeat, wait for the outbox to empty),
//! undrains (resume what the drain paused) and resume-all. Returns the detail or the failure
//! reason plus any extra event bodies (restore results).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use opsfleet_proto::pb;
use opsfleet_proto::pb::command::Action as CmdAction;

use super::decide;
use super::CommandHandler;
use crate::config::fs_resolve;
use crate::modules::backup;
use crate::modules::service::ServiceOp;
use crate::runner::control::{paused_for, Action, ControlReply, Origin, RunState};

/// The reason a drain pauses modules with (persisted in each module's control record), so an
/// undrain resumes exactly those.
const DRAIN_REASON: &str = "drain";
/// The module kind a drain leaves running: the host stays visibly alive in maintenance.
const KEPT_RUNNING: &str = "heartbeat";
use opsfleet_report::error_chain;

/// What running a command produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Completed detail, or failure reason.
    pub result: Result<String, String>,
    /// Bodies emitted before the result (restore_completed / restore_failed).
    pub bodies: Vec<pb::event::Body>,
}

impl Execution {
    pub(super) fn done(result: Result<String, String>) -> Self {
        Execution {
            result,
            bodies: Vec::new(),
        }
    }
}

fn describe(reply: &ControlReply) -> String {
    let how = if reply.changed { "now" } else { "already" };
    format!("module {} {how} {}", reply.module, reply.state.as_str())
}

impl CommandHandler {
    pub(super) async fn execute(&self, id: &str, action: &CmdAction) -> Execution {
        let act = |module: String, action: Action| async move {
            match self.control.act(&module, action, "command").await {
                Ok(reply) => Ok(describe(&reply)),
                Err(e) => Err(error_chain(&e)),
            }
        };
        match action {
            CmdAction::Pause(a) => Execution::done(act(a.module.clone(), Action::Pause).await),
            CmdAction::Resume(a) => Execution::done(act(a.module.clone(), Action::Resume).await),
            CmdAction::Disable(a) => Execution::done(act(a.module.clone(), Action::Disable).await),
            CmdAction::Enable(a) => Execution::done(act(a.module.clone(), Action::Enable).await),
            CmdAction::Noop(_) => Execution::done(Ok("noop".to_owned())),
            CmdAction::BackupRun(b) => Execution::done(self.backup_run(b).await),
            CmdAction::RestoreTest(t) => {
                Execution::done(self.restore_test_task(id, t.clone()).await)
            }
            CmdAction::ConfigApply(c) => Execution::done(
                self.reconfigure(&c.module, &c.config_toml, &c.fingerprint)
                    .await,
            ),
            CmdAction::ConfigRollback(c) => Execution::done(
                self.reconfigure(&c.module, &c.config_toml, &c.fingerprint)
                    .await,
            ),
            CmdAction::Restore(r) => self.restore(r).await,
            CmdAction::Drain(_) => Execution::done(Ok(self.drain().await)),
            CmdAction::Undrain(_) => {
                let drained = paused_for(&self.outbox, DRAIN_REASON);
                Execution::done(self.resume_each(drained, "undrain").await)
            }
            CmdAction::ServiceStart(s) => {
                Execution::done(self.service_op(&s.service, ServiceOp::Start).await)
            }
            CmdAction::ServiceStop(s) => {
                Execution::done(self.service_op(&s.service, ServiceOp::Stop).await)
            }
            CmdAction::ServiceRestart(s) => {
                Execution::done(self.service_op(&s.service, ServiceOp::Restart).await)
            }
            CmdAction::ServiceReload(s) => {
                Execution::done(self.service_op(&s.service, ServiceOp::Reload).await)
            }
            CmdAction::App(a) => self.app(a).await,
            CmdAction::ServiceConfigApply(c) => self.service_config_apply(id, c).await,
            CmdAction::ServiceConfigRollback(c) => self.service_config_rollback(id, c).await,
            CmdAction::ServiceDeploy(d) => self.service_deploy(id, d).await,
            CmdAction::ServiceRole(r) => self.service_role(r).await,
            CmdAction::TrafficSwitch(t) => self.traffic_switch(t).await,
            CmdAction::ResumeAll(_) => {
                let paused = (self.status.slots().into_iter())
                    .filter(|s| s.state == pb::ModuleRunState::Paused)
                    .map(|s| s.name)
                    .collect();
                Execution::done(self.resume_each(paused, "resume_all").await)
            }
        }
    }

    /// A lifecycle action through the service module's worker; done when the service is in the
    /// asked state (and ready, when it declares a probe).
    async fn service_op(&self, service: &str, op: ServiceOp) -> Result<String, String> {
        self.control
            .service_op(service, op)
            .await
            .map_err(|e| error_chain(&e))
    }

    /// Through the controller, which recomputes the fingerprint (`claimed`, empty = none) and
    /// checks the host policy for a command.
    async fn reconfigure(&self, module: &str, toml: &str, claimed: &str) -> Result<String, String> {
        match self
            .control
            .reconfigure_toml(module, toml, Origin::command(claimed))
            .await
        {
            Ok(reply) => Ok(format!(
                "module {} config {}{}",
                reply.module,
                reply.fingerprint,
                if reply.changed { "" } else { " (unchanged)" }
            )),
            Err(e) => Err(error_chain(&e)),
        }
    }

    /// Runs a backup job (or every job of the module) now, through the module's worker, so
    /// it is the scheduled run's code and never overlaps a scheduled run of the same job.
    async fn backup_run(&self, b: &pb::BackupRun) -> Result<String, String> {
        self.backup_run_task(b.clone()).await
    }

    /// `backup_run` as a future that borrows nothing (to run in the background).
    pub(super) fn backup_run_task(
        &self,
        b: pb::BackupRun,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send + 'static {
        let control = self.control.clone();
        let resolved = self.catalog.resolve_backup(&b.module, &b.job, None);
        async move {
            let (module, job) = resolved?;
            control
                .run_now(&module, &job)
                .await
                .map_err(|e| error_chain(&e))
        }
    }

    /// `restore_test` as a future that borrows nothing (it runs in the background like a
    /// backup): through the module's worker, the scheduled test's code, never beside a run of
    /// the same job; its `restore_tested` names command `id`.
    pub(super) fn restore_test_task(
        &self,
        id: &str,
        t: pb::RestoreTest,
    ) -> impl std::future::Future<Output = Result<String, String>> + Send + 'static {
        let control = self.control.clone();
        let resolved = self.catalog.resolve_backup(&t.module, &t.job, None);
        let scratch_root = self.config.data_dir.join(backup::verify::SCRATCH_DIR);
        let requested_by = id.to_owned();
        async move {
            let (module, job) = resolved?;
            control
                .verify_restore(&module, &job, &requested_by, scratch_root)
                .await
                .map_err(|e| error_chain(&e))
        }
    }

    async fn restore(&self, r: &pb::Restore) -> Execution {
        let (module, job_name) = match self.catalog.resolve_restore(r) {
            Ok(found) => found,
            Err(reason) => return Execution::done(Err(reason)),
        };
        // Checked when the command was accepted; again here, the trust boundary's last word.
        if let Some(reason) = decide::restore_target_problem(&r.target) {
            return Execution::done(Err(reason));
        }
        let job = match backup::find_job(&self.config, &job_name, Some(&module)) {
            Ok(job) => job,
            Err(reason) => return Execution::done(Err(reason)),
        };
        let selector = match decide::restore_archive(r) {
            None => backup::ArchiveSelector::Latest,
            Some(named) => backup::ArchiveSelector::Named(named.to_owned()),
        };
        let target = PathBuf::from(&r.target);
        // Checked when the command was accepted; again now, right before writing.
        if let Err(v) = self.policy.check_restore_target(&target, &fs_resolve) {
            return Execution::done(Err(format!("refused by {}: {}", v.rule, v.reason)));
        }
        let archive = r.archive.clone();
        let run = {
            let target = target.clone();
            tokio::task::spawn_blocking(move || backup::restore(&job, &selector, &target))
        };
        match run.await {
            Ok(Ok(report)) => Execution {
                result: Ok(format!(
                    "restored {} files ({} bytes) from {} into {}",
                    report.files,
                    report.bytes,
                    report.archive,
                    report.target.display()
                )),
                bodies: vec![pb::event::Body::RestoreCompleted(report.to_body())],
            },
            Ok(Err(e)) => {
                let shown = if archive.is_empty() {
                    decide::LATEST_ARCHIVE
                } else {
                    &archive
                };
                Execution {
                    result: Err(error_chain(&e)),
                    bodies: vec![pb::event::Body::RestoreFailed(
                        e.to_body(&job_name, shown, &target),
                    )],
                }
            }
            Err(e) => Execution::done(Err(format!("restore task ended abnormally: {e}"))),
        }
    }

    /// Resumes `modules` (reason `why`); the detail names them. Fails naming every module
    /// that could not be resumed (the others are resumed).
    async fn resume_each(&self, modules: Vec<String>, why: &str) -> Result<String, String> {
        let mut resumed = Vec::new();
        let mut problems = Vec::new();
        for module in modules {
            match self.control.act(&module, Action::Resume, why).await {
                Ok(reply) if reply.changed => resumed.push(module),
                Ok(_) => {}
                Err(e) => problems.push(error_chain(&e)),
            }
        }
        let names = if resumed.is_empty() {
            "none".to_owned()
        } else {
            resumed.join(", ")
        };
        let detail = format!("resumed {} modules: {names}", resumed.len());
        if problems.is_empty() {
            Ok(detail)
        } else {
            Err(format!("{detail}; {}", problems.join("; ")))
        }
    }

    /// Pauses every running module but the heartbeat (reason "drain"), then waits up to
    /// `drain_wait` for the outbox to empty. The detail says what was paused and what is left.
    async fn drain(&self) -> String {
        let mut paused = 0usize;
        let mut problems = Vec::new();
        for slot in self.status.slots() {
            if slot.state != pb::ModuleRunState::Running || slot.kind == KEPT_RUNNING {
                continue;
            }
            match (self.control)
                .act(&slot.name, Action::Pause, DRAIN_REASON)
                .await
            {
                Ok(reply) if reply.state == RunState::Paused => {
                    paused += usize::from(reply.changed)
                }
                Ok(_) => {}
                Err(e) => problems.push(error_chain(&e)),
            }
        }
        // The pauses' own module_state events go through the writer; give them a moment.
        let started = Instant::now();
        let mut quiet_since: Option<Instant> = None;
        while started.elapsed() < self.drain_wait {
            if self.outbox.pending() == 0 {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_millis(300) {
                    break;
                }
            } else {
                quiet_since = None;
                self.notify.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pending = self.outbox.pending();
        let mut detail = format!("drained: paused {paused} modules, {pending} events pending");
        if pending > 0 {
            detail.push_str(&format!(" after {:?}", self.drain_wait));
        }
        if !problems.is_empty() {
            detail.push_str("; ");
            detail.push_str(&problems.join("; "));
        }
        detail
    }
}
