//! The backup module: per-job schedules, one background run per job at a time (archiving and
//! hashing on the blocking pool, events handed over at the next tick), retention selection as
//! a pure function, and pruning. `run` owns one run of a job (leftovers, archive, retention),
//! `archive` writes archives + manifests, `restore` (with `extract`) verifies and restores
//! them, `naming` owns archive file names, `prestep` a job's pre-backup command, `remote` the
//! copies off the host (sync after a run, remote retention, reconciliation; their events in
//! `remote_bodies`), `verify` one restore test and `verify_sched` their schedule. This file
//! owns finding a job in the config and the module (schedules, background runs and their
//! events).

pub mod archive;
mod extract;
#[cfg(test)]
mod fixtures;
pub mod naming;
pub mod prestep;
pub mod remote;
mod remote_bodies;
mod report;
pub mod restore;
mod run;
pub mod verify;
mod verify_sched;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use opsfleet_proto::pb;
use opsfleet_report::error_chain;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{Module, ModuleCtx, ModuleError, OnDemand, RunNowTicket};
use crate::config::{AgentConfig, BackupConfig, BackupJobConfig, ModuleConfig};
pub use archive::{ArchiveError, Manifest, ManifestEntry, Progress};
pub use naming::ArchiveFile;
pub use naming::MANIFEST_SUFFIX;
use remote_bodies::{reconcile_body, sync_bodies};
pub use restore::{
    restore, ArchiveSelector, Corruption, FileProblem, Problem, RestoreError, RestoreReport,
};
use run::newest_archive;
pub use run::{is_due, run_job, select_prune, RunOutcome};

/// The job named `job` among the config's backup modules (restricted to the module named
/// `module` when given); an error message when there is none or more than one.
pub fn find_job(
    cfg: &AgentConfig,
    job: &str,
    module: Option<&str>,
) -> Result<BackupJobConfig, String> {
    let mut found = Vec::new();
    for m in &cfg.modules {
        let ModuleConfig::Backup(b) = m else { continue };
        if module.is_some_and(|want| want != m.name()) {
            continue;
        }
        found.extend(
            b.jobs
                .iter()
                .filter(|j| j.name == job)
                .map(|j| (m.name().to_owned(), j)),
        );
    }
    match found.as_slice() {
        [(_, j)] => Ok((*j).clone()),
        [] => Err(match module {
            Some(name) => format!("no backup job {job:?} in module {name:?}"),
            None => format!("no backup job {job:?} in the config"),
        }),
        many => Err(format!(
            "backup job {job:?} is in several modules ({}); pick one with --module",
            many.iter()
                .map(|(m, _)| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

struct JobSlot {
    cfg: Arc<BackupJobConfig>,
    /// Start of the last run; `None` until the destination was scanned.
    last_run: Option<SystemTime>,
    scanned: bool,
    running: Arc<AtomicBool>,
    /// Start of the last reconciliation with the remote destination (none yet: due).
    last_reconcile: Option<SystemTime>,
    /// Start of the last restore test (none: not known yet, see `verify_sched`).
    last_verify: Option<SystemTime>,
    /// `last_verify` changed since the module state was last taken.
    verify_dirty: bool,
}

/// The module: checks schedules every tick, starts due jobs in the background, and returns the
/// events their runs produced since the previous tick.
pub struct BackupModule {
    jobs: Vec<JobSlot>,
    tx: mpsc::UnboundedSender<pb::event::Body>,
    rx: mpsc::UnboundedReceiver<pb::event::Body>,
    /// Set when the module is dropped: runs in progress stop and remove their partial files.
    cancel: Arc<AtomicBool>,
    /// Saved state keys of jobs no longer configured (deleted at the next `take_state`).
    stale_keys: Vec<String>,
}

impl BackupModule {
    pub fn new(cfg: &BackupConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        BackupModule {
            jobs: cfg
                .jobs
                .iter()
                .map(|j| JobSlot {
                    cfg: Arc::new(j.clone()),
                    last_run: None,
                    scanned: false,
                    running: Arc::new(AtomicBool::new(false)),
                    last_reconcile: None,
                    last_verify: None,
                    verify_dirty: false,
                })
                .collect(),
            tx,
            rx,
            cancel: Arc::new(AtomicBool::new(false)),
            stale_keys: Vec::new(),
        }
    }

    /// Whether any job is running now.
    pub fn busy(&self) -> bool {
        self.jobs.iter().any(|j| j.running.load(Ordering::SeqCst))
    }

    /// Starts `slot`'s job stamped `at`; `done` (an on-demand run) gets the archive name or
    /// the failure reason after the run's closing events are queued.
    fn start(
        &self,
        slot: &JobSlot,
        at: SystemTime,
        done: Option<oneshot::Sender<Result<String, String>>>,
    ) {
        let job = slot.cfg.clone();
        let run_id = uuid::Uuid::now_v7().to_string();
        let tx = self.tx.clone();
        let running = slot.running.clone();
        let cancel = self.cancel.clone();
        running.store(true, Ordering::SeqCst);
        let _ = tx.send(pb::event::Body::BackupStarted(pb::BackupStarted {
            job: job.name.clone(),
            run_id: run_id.clone(),
            sources: job
                .sources
                .iter()
                .map(|s| s.display().to_string())
                .collect(),
        }));
        info!(job = %job.name, run_id, "backup started");
        tokio::spawn(async move {
            let (job2, id2, tx2) = (job.clone(), run_id.clone(), tx.clone());
            let res = tokio::task::spawn_blocking(move || {
                let mut on_progress = |p: Progress| {
                    let _ = tx2.send(pb::event::Body::BackupProgress(pb::BackupProgress {
                        job: job2.name.clone(),
                        run_id: id2.clone(),
                        files: p.files,
                        bytes: p.bytes,
                    }));
                };
                let res = run_job(&job2, at, &mut on_progress, &cancel);
                let synced = match (&res, &job2.remote) {
                    (Ok(out), Some(cfg)) => Some(sync_bodies(&job2, cfg, out, at)),
                    _ => None,
                };
                (res, synced)
            })
            .await;
            let (res, synced) = match res {
                Ok((res, synced)) => (Ok(res), synced),
                Err(e) => (Err(e), None),
            };
            let detail = outcome_detail(&res);
            for body in outcome_bodies(&job.name, &run_id, res)
                .into_iter()
                .chain(synced.into_iter().flatten())
            {
                let _ = tx.send(body);
            }
            running.store(false, Ordering::SeqCst);
            if let Some(done) = done {
                // The asker may have gone away; the run stands either way.
                let _ = done.send(detail);
            }
        });
    }

    /// Starts the picked jobs now (see `Module::run_now`); refuses if one is running.
    fn start_now(&mut self, what: &str, now: SystemTime) -> Result<RunNowTicket, String> {
        let names = || {
            self.jobs
                .iter()
                .map(|j| j.cfg.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let picked: Vec<usize> = if what.is_empty() {
            (0..self.jobs.len()).collect()
        } else {
            match self.jobs.iter().position(|j| j.cfg.name == what) {
                Some(i) => vec![i],
                None => return Err(format!("no backup job {what:?} here (jobs: {})", names())),
            }
        };
        if picked.is_empty() {
            return Err("this backup module has no jobs".to_owned());
        }
        if let Some(busy) = picked
            .iter()
            .find(|&&i| self.jobs[i].running.load(Ordering::SeqCst))
        {
            return Err(format!(
                "backup job {:?} is already running; try again when it ends",
                self.jobs[*busy].cfg.name
            ));
        }
        let mut waits = Vec::with_capacity(picked.len());
        for i in picked {
            let (tx, rx) = oneshot::channel();
            self.start(&self.jobs[i], now, Some(tx));
            let slot = &mut self.jobs[i];
            // Like a scheduled run: the schedule counts from this start.
            slot.last_run = Some(now);
            slot.scanned = true;
            waits.push((slot.cfg.name.clone(), rx));
        }
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut done, mut failed) = (Vec::new(), Vec::new());
            for (job, wait) in waits {
                match wait.await {
                    Ok(Ok(detail)) => done.push(detail),
                    Ok(Err(reason)) => failed.push(format!("job {job}: {reason}")),
                    Err(_) => failed.push(format!("job {job}: the run was abandoned")),
                }
            }
            let _ = tx.send(if failed.is_empty() {
                Ok(done.join("; "))
            } else {
                failed.extend(done);
                Err(failed.join("; "))
            });
        });
        Ok(rx)
    }
}

/// What an on-demand run answers: the archive written, or why the run failed.
fn outcome_detail(
    res: &Result<Result<RunOutcome, ArchiveError>, tokio::task::JoinError>,
) -> Result<String, String> {
    match res {
        Err(e) => Err(format!("backup task failed: {e}")),
        Ok(Err(e)) => Err(error_chain(e)),
        Ok(Ok(out)) => {
            let m = &out.written.manifest;
            Ok(format!(
                "job {}: archive {} ({} files, {} bytes)",
                m.job, m.archive, m.files, m.archive_size
            ))
        }
    }
}

/// The events closing a run.
fn outcome_bodies(
    job: &str,
    run_id: &str,
    res: Result<Result<RunOutcome, ArchiveError>, tokio::task::JoinError>,
) -> Vec<pb::event::Body> {
    let failed = |reason: String| {
        warn!(job, run_id, reason = %reason, "backup failed");
        vec![pb::event::Body::BackupFailed(pb::BackupFailed {
            job: job.to_owned(),
            run_id: run_id.to_owned(),
            reason,
        })]
    };
    match res {
        Err(e) => failed(format!("backup task failed: {e}")),
        Ok(Err(e)) => failed(error_chain(&e)),
        Ok(Ok(out)) => {
            let w = &out.written;
            info!(job, run_id, archive = %w.manifest.archive, files = w.manifest.files, size = w.manifest.archive_size, "backup completed");
            let mut bodies = vec![pb::event::Body::BackupCompleted(pb::BackupCompleted {
                job: job.to_owned(),
                run_id: run_id.to_owned(),
                archive: w.archive_path.display().to_string(),
                manifest: w.manifest_path.display().to_string(),
                size_bytes: w.manifest.archive_size,
                files: w.manifest.files,
                duration_ms: u64::try_from(w.duration.as_millis()).unwrap_or(u64::MAX),
                sha256: w.manifest.archive_sha256.clone(),
            })];
            if !out.pruned.is_empty() {
                info!(
                    job,
                    pruned = out.pruned.len(),
                    bytes_freed = out.bytes_freed,
                    "archives pruned"
                );
                bodies.push(pb::event::Body::BackupPruned(pb::BackupPruned {
                    job: job.to_owned(),
                    archives: out.pruned,
                    bytes_freed: out.bytes_freed,
                }));
            }
            bodies
        }
    }
}

impl Drop for BackupModule {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Module for BackupModule {
    fn kind(&self) -> &'static str {
        "backup"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        let unscanned: Vec<Arc<BackupJobConfig>> = self
            .jobs
            .iter()
            .filter(|j| !j.scanned)
            .map(|j| j.cfg.clone())
            .collect();
        if !unscanned.is_empty() {
            // Listing a directory can block (network mounts): off the async workers.
            let found = tokio::task::spawn_blocking(move || {
                unscanned
                    .iter()
                    .map(|j| newest_archive(j))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| ModuleError::Other(format!("archive scan task failed: {e}")))?;
            let mut found = found.into_iter();
            for slot in self.jobs.iter_mut().filter(|j| !j.scanned) {
                slot.last_run = found.next().flatten();
                slot.scanned = true;
            }
        }
        for i in 0..self.jobs.len() {
            let slot = &self.jobs[i];
            if slot.running.load(Ordering::SeqCst)
                || !is_due(ctx.now, slot.last_run, slot.cfg.schedule)
            {
                continue;
            }
            self.start(slot, ctx.now, None);
            self.jobs[i].last_run = Some(ctx.now);
        }
        for slot in &mut self.jobs {
            let Some(cfg) = slot.cfg.remote.clone() else {
                continue;
            };
            if slot.running.load(Ordering::SeqCst)
                || !is_due(ctx.now, slot.last_reconcile, cfg.reconcile_every)
            {
                continue;
            }
            slot.last_reconcile = Some(ctx.now);
            // Shares the job's running flag: never at the same time as a run and its sync.
            slot.running.store(true, Ordering::SeqCst);
            let (job, running, tx) = (slot.cfg.clone(), slot.running.clone(), self.tx.clone());
            tokio::spawn(async move {
                let body = tokio::task::spawn_blocking(move || reconcile_body(&job, &cfg)).await;
                if let Ok(body) = body {
                    let _ = tx.send(body);
                }
                running.store(false, Ordering::SeqCst);
            });
        }
        self.start_due_verifies(ctx.now, &ctx.data_dir);
        let mut bodies = Vec::new();
        while let Ok(b) = self.rx.try_recv() {
            bodies.push(b);
        }
        Ok(bodies)
    }

    fn run_now(&mut self, what: &OnDemand, now: SystemTime) -> Result<RunNowTicket, String> {
        match what {
            OnDemand::Run(job) => self.start_now(job, now),
            OnDemand::VerifyRestore {
                job,
                requested_by,
                scratch_root,
            } => self.verify_now(job, requested_by, scratch_root.clone(), now),
            other => Err(format!("a backup module cannot {}", other.describe())),
        }
    }

    fn restore(&mut self, saved: Vec<(String, Vec<u8>)>) {
        self.restore_verify_state(saved);
    }

    fn take_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        self.take_verify_state()
    }
}

#[cfg(test)]
mod tests;
