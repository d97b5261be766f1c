//! The backup module's restore tests (`verify_restore`): when each job's test is due, starting
//! one in the background (never beside the job's run, sync or reconciliation: they share the
//! job's running flag), on demand too, and the time of each job's last test, persisted as
//! module state (`verify/<job>`, unix ms) so a restarted agent keeps the schedule. A job that
//! never had a test is first due one period after the module first ran it (that start is
//! persisted too, so restarts do not put the test off forever).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsfleet_proto::pb;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::verify::{restore_test, BY_SCHEDULE, SCRATCH_DIR};
use super::{is_due, BackupModule};
use crate::modules::RunNowTicket;

/// Module-state key prefix of a job's last restore test.
const STATE_PREFIX: &str = "verify/";

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl BackupModule {
    /// Starts the restore tests due at `now` (scratch directories under `data_dir`).
    pub(super) fn start_due_verifies(&mut self, now: SystemTime, data_dir: &std::path::Path) {
        for i in 0..self.jobs.len() {
            let slot = &mut self.jobs[i];
            let Some(every) = slot.cfg.verify_restore else {
                continue;
            };
            let Some(last) = slot.last_verify else {
                // Never tested: the period counts from now.
                slot.last_verify = Some(now);
                slot.verify_dirty = true;
                continue;
            };
            if slot.running.load(Ordering::SeqCst) || !is_due(now, Some(last), every) {
                continue;
            }
            self.start_verify(
                i,
                now,
                data_dir.join(SCRATCH_DIR),
                BY_SCHEDULE.to_owned(),
                None,
            );
        }
    }

    /// A restore test of job `job` now (see `OnDemand::VerifyRestore`); refused when the job
    /// is unknown here or busy.
    pub(super) fn verify_now(
        &mut self,
        job: &str,
        requested_by: &str,
        scratch_root: PathBuf,
        now: SystemTime,
    ) -> Result<RunNowTicket, String> {
        let Some(i) = self.jobs.iter().position(|j| j.cfg.name == job) else {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.cfg.name.as_str()).collect();
            return Err(format!(
                "no backup job {job:?} here (jobs: {})",
                names.join(", ")
            ));
        };
        if self.jobs[i].running.load(Ordering::SeqCst) {
            return Err(format!(
                "backup job {job:?} is running (a backup, sync or restore test); try again when it ends"
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.start_verify(i, now, scratch_root, requested_by.to_owned(), Some(tx));
        Ok(rx)
    }

    /// Starts job `i`'s restore test in the background: its `restore_tested` comes out of the
    /// next `run_once`; `done` (on demand) gets its detail after that event is queued.
    fn start_verify(
        &mut self,
        i: usize,
        at: SystemTime,
        scratch_root: PathBuf,
        requested_by: String,
        done: Option<oneshot::Sender<Result<String, String>>>,
    ) {
        let slot = &mut self.jobs[i];
        slot.last_verify = Some(at);
        slot.verify_dirty = true;
        slot.running.store(true, Ordering::SeqCst);
        let (job, running, tx) = (slot.cfg.clone(), slot.running.clone(), self.tx.clone());
        let cancel = self.cancel.clone();
        info!(job = %job.name, requested_by, "restore test started");
        tokio::spawn(async move {
            let name = job.name.clone();
            let res =
                tokio::task::spawn_blocking(move || restore_test(&job, &scratch_root, &cancel))
                    .await;
            let (body, detail) = match res {
                Ok(report) => {
                    let body = report.to_body(&requested_by);
                    if body.passed {
                        info!(job = %name, archive = %body.archive, source = %body.source, files = body.files, "restore test passed");
                    } else {
                        warn!(job = %name, archive = %body.archive, source = %body.source, reason = %body.reason, "restore test failed");
                    }
                    (body, report.detail())
                }
                Err(e) => {
                    let reason = format!("restore test task failed: {e}");
                    let body = pb::RestoreTested {
                        job: name.clone(),
                        reason: reason.clone(),
                        requested_by: requested_by.clone(),
                        ..Default::default()
                    };
                    (body, Err(reason))
                }
            };
            let _ = tx.send(pb::event::Body::RestoreTested(body));
            running.store(false, Ordering::SeqCst);
            if let Some(done) = done {
                let _ = done.send(detail);
            }
        });
    }

    /// Reads the persisted last test times.
    pub(super) fn restore_verify_state(&mut self, saved: Vec<(String, Vec<u8>)>) {
        for (key, value) in saved {
            let Some(job) = key.strip_prefix(STATE_PREFIX) else {
                continue;
            };
            let ms = std::str::from_utf8(&value)
                .ok()
                .and_then(|t| t.parse::<u64>().ok());
            match (ms, self.jobs.iter_mut().find(|j| j.cfg.name == job)) {
                (Some(ms), Some(slot)) => {
                    slot.last_verify = Some(UNIX_EPOCH + Duration::from_millis(ms));
                }
                (None, _) => warn!(key = %key, "ignoring unreadable saved restore test time"),
                // A job no longer configured: its key goes at the next take_state.
                (Some(_), None) => self.stale_keys.push(key),
            }
        }
    }

    /// The last test times that changed since the previous call (and stale keys to delete).
    pub(super) fn take_verify_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out: Vec<(String, Option<Vec<u8>>)> =
            self.stale_keys.drain(..).map(|k| (k, None)).collect();
        for slot in self.jobs.iter_mut().filter(|j| j.verify_dirty) {
            slot.verify_dirty = false;
            if let Some(at) = slot.last_verify {
                out.push((
                    format!("{STATE_PREFIX}{}", slot.cfg.name),
                    Some(to_ms(at).to_string().into_bytes()),
                ));
            }
        }
        out
    }
}
