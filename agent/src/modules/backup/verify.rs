//! One restore test of a job (`verify_restore`, or on demand): the newest archive — read from
//! the job's remote destination when it has one, else the local one — restored into a private
//! scratch directory under the agent's data dir (never near the job's sources), verified
//! against its manifest by the restore's own code, the job's `verify_check` run on the
//! restored files, and the scratch directory removed whatever happened (`prestep::Scratch`).
//! Blocking code: call it from `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use opsfleet_proto::pb;
use opsfleet_report::error_chain;

use super::prestep::{self, PreStepError, Step};
use super::remote::{self, RemoteError};
use super::restore::{self, ArchiveSelector, RestoreError};
use crate::config::BackupJobConfig;

/// Env var holding the directory of the restored files, for the check.
pub const RESTORE_DIR_ENV: &str = "OPSFLEET_RESTORE_DIR";
/// Directory under the agent's data dir holding the restore tests' scratch directories.
pub const SCRATCH_DIR: &str = "restore-tests";
/// `RestoreTested.source` of an archive read on this host.
pub const LOCAL_SOURCE: &str = "local";
/// `RestoreTested.requested_by` of a scheduled test.
pub const BY_SCHEDULE: &str = "schedule";

/// Why a restore test failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot prepare the scratch directory")]
    Scratch(#[source] PreStepError),
    #[error("cannot read the newest archive from {destination}")]
    Remote {
        destination: String,
        #[source]
        source: Box<RemoteError>,
    },
    #[error("restore failed")]
    Restore(#[source] RestoreError),
    #[error("the verify_check command failed")]
    Check(#[source] PreStepError),
}

/// What one restore test found.
#[derive(Debug)]
pub struct TestReport {
    pub job: String,
    /// Archive file name tested (empty when none was found).
    pub archive: String,
    /// `local`, or the remote destination's label.
    pub source: String,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// "" (no check declared), "passed" or "failed".
    pub check: &'static str,
    pub failure: Option<VerifyError>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The event, `requested_by` = `schedule` or the asking command's id.
    pub fn to_body(&self, requested_by: &str) -> pb::RestoreTested {
        pb::RestoreTested {
            job: self.job.clone(),
            archive: self.archive.clone(),
            source: self.source.clone(),
            passed: self.passed(),
            files: self.files,
            bytes: self.bytes,
            duration_ms: self.duration_ms,
            check: self.check.to_owned(),
            reason: self
                .failure
                .as_ref()
                .map(|e| error_chain(e))
                .unwrap_or_default(),
            requested_by: requested_by.to_owned(),
        }
    }

    /// What an on-demand test answers: its summary, or why it failed.
    pub fn detail(&self) -> Result<String, String> {
        let what = format!(
            "job {}: restore test of {} from {}",
            self.job,
            if self.archive.is_empty() {
                "-"
            } else {
                &self.archive
            },
            self.source
        );
        let check = if self.check.is_empty() {
            String::new()
        } else {
            format!(", check {}", self.check)
        };
        match &self.failure {
            None => Ok(format!(
                "{what} passed ({} files, {} bytes{check})",
                self.files, self.bytes
            )),
            Some(e) => Err(format!("{what} failed: {}", error_chain(e))),
        }
    }
}

/// The scratch directory of `job`'s restore test under `scratch_root`.
pub fn scratch_dir(scratch_root: &Path, job: &str) -> PathBuf {
    scratch_root.join(job)
}

/// Runs one restore test of `job` with its scratch directory under `scratch_root`
/// (`<data_dir>/restore-tests`). The scratch directory is gone when this returns.
pub fn restore_test(job: &BackupJobConfig, scratch_root: &Path, cancel: &AtomicBool) -> TestReport {
    let started = Instant::now();
    let mut report = TestReport {
        job: job.name.clone(),
        archive: String::new(),
        source: job
            .remote
            .as_ref()
            .map_or_else(|| LOCAL_SOURCE.to_owned(), |r| r.label()),
        files: 0,
        bytes: 0,
        duration_ms: 0,
        check: "",
        failure: None,
    };
    report.failure = test_into(job, scratch_root, cancel, &mut report).err();
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    report
}

/// The steps of a test, filling `report` as they go; the scratch guard is dropped (the
/// directory removed) on every way out.
fn test_into(
    job: &BackupJobConfig,
    scratch_root: &Path,
    cancel: &AtomicBool,
    report: &mut TestReport,
) -> Result<(), VerifyError> {
    let dir = scratch_dir(scratch_root, &job.name);
    let _scratch = prestep::fresh_scratch(scratch_root, &dir).map_err(VerifyError::Scratch)?;
    // The restore reads archives from `view.destination`: the job's own destination, or the
    // scratch copy of the remote's newest archive. Never fetched into the job's destination,
    // so a test reads what the remote holds even when the local copy is there.
    let mut view = job.clone();
    view.remote = None;
    report.archive = match &job.remote {
        Some(cfg) => {
            view.destination = dir.join("archive");
            remote::open(cfg)
                .and_then(|dest| remote::fetch(&view, dest.as_ref(), None))
                .map_err(|source| VerifyError::Remote {
                    destination: cfg.label(),
                    source: Box::new(source),
                })?
        }
        None => restore::resolve_archive(&view, &ArchiveSelector::Latest)
            .map_err(VerifyError::Restore)?,
    };
    let restored_dir = dir.join("restored");
    let restored = restore::restore(
        &view,
        &ArchiveSelector::Named(report.archive.clone()),
        &restored_dir,
    )
    .map_err(VerifyError::Restore)?;
    (report.files, report.bytes) = (restored.files, restored.bytes);
    let Some(check) = &job.verify_check else {
        return Ok(());
    };
    let step = Step {
        what: "restore check",
        job: &job.name,
        argv: check.command.clone(),
        dir: &restored_dir,
        env: vec![(RESTORE_DIR_ENV, restored_dir.clone().into_os_string())],
        timeout: check.timeout,
    };
    let res = prestep::run_step(&step, cancel);
    report.check = if res.is_ok() { "passed" } else { "failed" };
    res.map(|_| ()).map_err(VerifyError::Check)
}

#[cfg(test)]
mod tests;
