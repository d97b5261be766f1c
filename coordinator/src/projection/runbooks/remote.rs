//! The remote copy of a backup job: folds `backup_synced`, `backup_sync_failed` and
//! `backup_discrepancy` into `BackupJob::remote`. Pure; the newest outcome (agent clock)
//! wins, counters count every accepted event once.

use opsfleet_proto::api::{
    RemoteBackupView, RemoteReconcileView, RemoteSyncFailureView, RemoteSyncView,
    DISCREPANCY_NAMES_KEPT,
};
use opsfleet_proto::pb;

use super::super::bounds::clip;

fn names(list: &[String]) -> Vec<String> {
    list.iter()
        .take(DISCREPANCY_NAMES_KEPT)
        .map(|n| clip(n))
        .collect()
}

fn remote<'r>(
    slot: &'r mut Option<RemoteBackupView>,
    destination: &str,
) -> &'r mut RemoteBackupView {
    let r = slot.get_or_insert_with(RemoteBackupView::default);
    r.destination = clip(destination);
    r
}

pub(super) fn synced(slot: &mut Option<RemoteBackupView>, s: &pb::BackupSynced, at: i64) {
    let r = remote(slot, &s.destination);
    r.remote_pruned += s.remote_pruned.len() as u64;
    if r.last_synced.as_ref().is_none_or(|l| l.at_unix_ms <= at) {
        r.last_synced = Some(RemoteSyncView {
            archive: clip(&s.archive),
            bytes: s.bytes,
            at_unix_ms: at,
        });
    }
}

pub(super) fn sync_failed(slot: &mut Option<RemoteBackupView>, f: &pb::BackupSyncFailed, at: i64) {
    let r = remote(slot, &f.destination);
    if r.last_sync_failure
        .as_ref()
        .is_none_or(|l| l.at_unix_ms <= at)
    {
        r.last_sync_failure = Some(RemoteSyncFailureView {
            archive: clip(&f.archive),
            reason: clip(&f.reason),
            at_unix_ms: at,
        });
    }
}

pub(super) fn discrepancy(slot: &mut Option<RemoteBackupView>, d: &pb::BackupDiscrepancy, at: i64) {
    let r = remote(slot, &d.destination);
    if r.reconciled.as_ref().is_none_or(|l| l.at_unix_ms <= at) {
        r.reconciled = Some(RemoteReconcileView {
            missing: names(&d.missing),
            extra: names(&d.extra),
            mismatched: names(&d.mismatched),
            missing_count: d.missing.len() as u64,
            extra_count: d.extra.len() as u64,
            mismatched_count: d.mismatched.len() as u64,
            remote_archives: d.remote_archives,
            at_unix_ms: at,
        });
    }
}
