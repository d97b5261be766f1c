//! The events of a job's copies off the host: a sync after a run (`backup_synced` or
//! `backup_sync_failed`) and a reconciliation (`backup_discrepancy`, or `backup_sync_failed`
//! when the remote cannot be read). Blocking code.

use std::time::SystemTime;

use opsfleet_proto::pb;
use opsfleet_report::error_chain;
use tracing::{info, warn};

use super::remote;
use super::RunOutcome;
use crate::config::{BackupJobConfig, RemoteConfig};

/// Copies a run's archive to the job's remote destination: `backup_synced` or
/// `backup_sync_failed`. Blocking.
pub(super) fn sync_bodies(
    job: &BackupJobConfig,
    cfg: &RemoteConfig,
    out: &RunOutcome,
    now: SystemTime,
) -> Vec<pb::event::Body> {
    let archive = out.written.manifest.archive.clone();
    let dest = match remote::open(cfg) {
        Ok(d) => d,
        Err(e) => {
            let reason = error_chain(&e);
            warn!(job = %job.name, destination = %cfg.label(), reason = %reason, "backup sync failed");
            return vec![pb::event::Body::BackupSyncFailed(pb::BackupSyncFailed {
                job: job.name.clone(),
                archive,
                destination: cfg.label(),
                reason,
            })];
        }
    };
    match remote::sync(job, dest.as_ref(), &archive, now) {
        Ok(s) => {
            info!(job = %job.name, destination = dest.label(), copied = s.copied.len(), bytes = s.bytes, "backup synced");
            vec![pb::event::Body::BackupSynced(pb::BackupSynced {
                job: job.name.clone(),
                archive,
                destination: dest.label().to_owned(),
                bytes: s.bytes,
                duration_ms: u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
                remote_pruned: s.pruned,
            })]
        }
        Err(e) => {
            let reason = error_chain(&e);
            warn!(job = %job.name, destination = dest.label(), reason = %reason, "backup sync failed");
            vec![pb::event::Body::BackupSyncFailed(pb::BackupSyncFailed {
                job: job.name.clone(),
                archive,
                destination: dest.label().to_owned(),
                reason,
            })]
        }
    }
}

/// One reconciliation of `job` against its remote destination, as a `backup_discrepancy`
/// (all lists empty when both sides agree) or, when the remote cannot be read, a
/// `backup_sync_failed` without archive. Blocking.
pub(super) fn reconcile_body(job: &BackupJobConfig, cfg: &RemoteConfig) -> pb::event::Body {
    let label = cfg.label();
    match remote::open(cfg).and_then(|dest| remote::reconcile(job, dest.as_ref())) {
        Ok(d) => {
            if d.missing.is_empty() && d.extra.is_empty() && d.mismatched.is_empty() {
                info!(job = %job.name, destination = %label, remote_archives = d.remote_archives, "backup reconciled");
            } else {
                warn!(job = %job.name, destination = %label, missing = d.missing.len(), extra = d.extra.len(), mismatched = d.mismatched.len(), "backup discrepancy");
            }
            pb::event::Body::BackupDiscrepancy(pb::BackupDiscrepancy {
                job: job.name.clone(),
                destination: label,
                missing: d.missing,
                extra: d.extra,
                mismatched: d.mismatched,
                remote_archives: d.remote_archives,
            })
        }
        Err(e) => {
            let reason = error_chain(&e);
            warn!(job = %job.name, destination = %label, reason = %reason, "backup reconciliation failed");
            pb::event::Body::BackupSyncFailed(pb::BackupSyncFailed {
                job: job.name.clone(),
                archive: String::new(),
                destination: label,
                reason: format!("reconciliation: {reason}"),
            })
        }
    }
}
