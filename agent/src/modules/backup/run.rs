//! One run of a backup job: whether it is due, removing an interrupted run's leftovers,
//! the pre-backup step (`prestep`), writing the archive (`archive`), and retention (which archives to delete, and deleting
//! them). Blocking code, except the pure `is_due` and `select_prune`.

use opsfleet_report::ErrorChain;
use std::fs;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::archive::{self, ArchiveError, Progress};
use super::naming::{self, ArchiveFile, MANIFEST_SUFFIX};
use super::prestep;
use crate::config::BackupJobConfig;

/// Whether a job whose last run started at `last` is due at `now`.
pub fn is_due(now: SystemTime, last: Option<SystemTime>, every: Duration) -> bool {
    match last {
        None => true,
        // A last run in the future (clock stepped back) waits until the clock catches up.
        Some(last) => now.duration_since(last).is_ok_and(|d| d >= every),
    }
}

/// Retention (see `BackupJobConfig`): the names of the archives to DELETE. An archive is kept
/// when its age at `now` is below `keep_days` days, or when it is among the `keep_count` newest
/// (by time, ties by name); all others are returned, oldest first.
pub fn select_prune(
    archives: &[ArchiveFile],
    now: SystemTime,
    keep_days: u64,
    keep_count: u64,
) -> Vec<String> {
    let mut sorted: Vec<&ArchiveFile> = archives.iter().collect();
    // Newest first.
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.name.cmp(&a.name)));
    let max_age = Duration::from_secs(keep_days.saturating_mul(86_400));
    let keep_n = usize::try_from(keep_count).unwrap_or(usize::MAX);
    let mut prune: Vec<String> = sorted
        .iter()
        .enumerate()
        .filter(|(rank, a)| *rank >= keep_n && naming::age(now, a.time) >= max_age)
        .map(|(_, a)| a.name.clone())
        .collect();
    prune.reverse();
    prune
}

/// What one successful run did.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub written: archive::Written,
    /// Archives deleted by retention, and the bytes of them and their manifests.
    pub pruned: Vec<String>,
    pub bytes_freed: u64,
}

/// One complete run of `job` stamped `at`: clean leftovers, archive, prune. Blocking.
pub fn run_job(
    job: &BackupJobConfig,
    at: SystemTime,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<RunOutcome, ArchiveError> {
    remove_leftovers(job);
    // Removed (with the scratch dir) when this function returns, whatever happened.
    let pre = match &job.pre_backup {
        Some(pre) => Some(prestep::run(job, pre, cancel).map_err(ArchiveError::PreStep)?),
        None => {
            // A job that lost its step since a crash: its scratch dir goes too.
            prestep::remove_scratch(&prestep::scratch_dir(job));
            None
        }
    };
    let extra = pre.as_ref().map(|o| o.path.as_path());
    let written = archive::write_archive(job, at, extra, on_progress, cancel)?;
    drop(pre);
    let (pruned, bytes_freed) = prune(job, at);
    Ok(RunOutcome {
        written,
        pruned,
        bytes_freed,
    })
}

fn remove_leftovers(job: &BackupJobConfig) {
    match naming::leftovers(&job.destination, &job.name) {
        Ok(names) => {
            for n in names {
                let p = job.destination.join(&n);
                match fs::remove_file(&p) {
                    Ok(()) => {
                        info!(job = %job.name, path = %p.display(), "removed leftover of an interrupted run")
                    }
                    Err(e) => {
                        warn!(job = %job.name, path = %p.display(), error = %ErrorChain(&e), "cannot remove leftover")
                    }
                }
            }
        }
        Err(e) => {
            warn!(job = %job.name, dest = %job.destination.display(), error = %ErrorChain(&e), "cannot list destination")
        }
    }
}

/// Applies retention; returns the deleted archives and the bytes freed.
fn prune(job: &BackupJobConfig, now: SystemTime) -> (Vec<String>, u64) {
    let archives = match naming::list_archives(&job.destination, &job.name) {
        Ok(a) => a,
        Err(e) => {
            warn!(job = %job.name, error = %ErrorChain(&e), "cannot list archives for retention");
            return (Vec::new(), 0);
        }
    };
    let mut deleted = Vec::new();
    let mut freed = 0u64;
    for name in select_prune(&archives, now, job.keep_days, job.keep_count) {
        let archive = job.destination.join(&name);
        let manifest = job.destination.join(format!("{name}{MANIFEST_SUFFIX}"));
        let size = fs::symlink_metadata(&archive).map_or(0, |m| m.len());
        // Archive first: a manifest without archive is never listed, the reverse would be.
        match fs::remove_file(&archive) {
            Ok(()) => {
                freed += size;
                let msize = fs::symlink_metadata(&manifest).map_or(0, |m| m.len());
                if fs::remove_file(&manifest).is_ok() {
                    freed += msize;
                }
                deleted.push(name);
            }
            Err(e) => {
                warn!(job = %job.name, archive = %name, error = %ErrorChain(&e), "cannot prune archive")
            }
        }
    }
    (deleted, freed)
}

/// Newest archive time of a job, from the names in its destination.
pub(super) fn newest_archive(job: &BackupJobConfig) -> Option<SystemTime> {
    match naming::list_archives(&job.destination, &job.name) {
        Ok(list) => list.last().map(|a| a.time),
        Err(e) => {
            warn!(job = %job.name, error = %ErrorChain(&e), "cannot list archives");
            None
        }
    }
}
