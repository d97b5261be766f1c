//! Per-host projections of the runbook modules: log incidents, health probes, sentinel files,
//! the backup catalog (its remote copy in `remote`, its restore tests in `restore_tests`) and janitor reports. Pure folds; newer state wins by (incarnation, seq)
//! version so that a late, gap-filling event never rolls state back, while counters count
//! every accepted event once.

use std::collections::{BTreeMap, BTreeSet};

use opsfleet_proto::api::{
    BackupState, CertLevel, ProbeStatus, RemoteBackupView, RestoreTestView, SentinelStatus,
    Truncated,
};
use opsfleet_proto::pb::event::Body;
use serde::{Deserialize, Serialize};

use super::bounds::{
    capped_entry, clip, BACKUP_JOBS_KEPT, HEALTH_CHECKS_KEPT, JANITOR_ROOTS_KEPT, LOG_FILES_KEPT,
    SENTINELS_KEPT,
};
use super::seq::Version;

/// How many archive names per backup job the catalog keeps.
pub const ARCHIVES_KEPT: usize = 100;

/// New `ERROR`/`Traceback` lines of one log file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Matching events (a grouped traceback counts once).
    pub count: u64,
    /// Lines the agent's rate limit held back.
    pub suppressed: u64,
    pub last_pattern: String,
    pub last_excerpt: String,
    pub last_at_unix_ms: i64,
    pub version: Version,
    /// Earliest match (agent clock); the minimum, so late arrivals count too.
    #[serde(default)]
    pub first_at_unix_ms: i64,
    /// Agent clock of the newest matches, ascending, at most `RECENT_MATCHES` (the
    /// `log_errors` alert rule counts them over its window).
    #[serde(default)]
    pub recent_at_unix_ms: Vec<i64>,
}

/// How many match times per log file an incident keeps for rate rules.
pub const RECENT_MATCHES: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: ProbeStatus,
    pub probe: String,
    pub detail: String,
    pub consecutive_failures: u32,
    /// When the current status began (agent clock), 0 if only known from a heartbeat.
    pub since_unix_ms: i64,
    pub version: Version,
    // The conditions below are left out of the stored row while unset, so the rows of
    // checks without them keep their bytes (tests/rows_golden.rs, `rebuild --verify`).
    /// The p95 of its successful probes' latencies is above `latency_bound_ms`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub slow: bool,
    /// That p95 (0: no bound, or not judged yet).
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub latency_p95_ms: u64,
    /// Its `latency_p95` bound (0: none); known from its events.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub latency_bound_ms: u64,
    /// Its certificate's level (`unknown`: no certificate check).
    #[serde(default, skip_serializing_if = "is_unknown")]
    pub cert_level: CertLevel,
    /// Its certificate's notAfter (0: none seen).
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub cert_not_after_unix_ms: i64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}
fn is_unknown(l: &CertLevel) -> bool {
    *l == CertLevel::Unknown
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentinelView {
    pub status: SentinelStatus,
    pub age_ms: u64,
    pub max_age_ms: u64,
    pub mtime_unix_ms: i64,
    pub at_unix_ms: i64,
    pub version: Version,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSuccess {
    pub run_id: String,
    pub archive: String,
    pub size_bytes: u64,
    pub files: u64,
    pub duration_ms: u64,
    pub sha256: String,
    pub at_unix_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailure {
    pub run_id: String,
    pub reason: String,
    pub at_unix_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupJob {
    pub last_success: Option<BackupSuccess>,
    pub last_failure: Option<BackupFailure>,
    /// Run in progress (started, neither completed nor failed yet).
    pub running: Option<String>,
    /// Archives completed and not pruned, oldest first.
    pub archives: Vec<String>,
    pub last_restore: Option<String>,
    pub version: Version,
    /// Archives removed by retention, and the bytes that freed (every prune counted once).
    #[serde(default)]
    pub pruned_archives: u64,
    #[serde(default)]
    pub pruned_bytes: u64,
    /// The job's remote copy (absent for jobs without one: their rows stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteBackupView>,
    /// The job's restore tests: declared period and newest test (absent for jobs without
    /// either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<RestoreTestView>,
}

impl BackupJob {
    /// `running` while a run is in progress, else the latest outcome: `ok`, `failed` or
    /// `never`.
    pub fn state(&self) -> BackupState {
        if self.running.is_some() {
            return BackupState::Running;
        }
        match (&self.last_success, &self.last_failure) {
            (None, None) => BackupState::Never,
            (Some(_), None) => BackupState::Ok,
            (None, Some(_)) => BackupState::Failed,
            (Some(s), Some(f)) if f.at_unix_ms > s.at_unix_ms => BackupState::Failed,
            (Some(_), Some(_)) => BackupState::Ok,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JanitorState {
    pub last_at_unix_ms: i64,
    pub last_removed_files: u64,
    pub last_bytes: u64,
    pub total_removed_files: u64,
    pub total_bytes: u64,
    pub dry_run: bool,
}

/// Everything the runbook modules told about one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runbooks {
    pub incidents: BTreeMap<String, Incident>,
    pub health: BTreeMap<String, HealthState>,
    pub sentinels: BTreeMap<String, SentinelView>,
    pub backups: BTreeMap<String, BackupJob>,
    pub janitor: BTreeMap<String, JanitorState>,
}

fn incident<'m>(
    map: &'m mut BTreeMap<String, Incident>,
    path: &str,
    version: &Version,
    t: &mut Truncated,
) -> Option<&'m mut Incident> {
    let dropped = &mut t.log_files;
    capped_entry(
        map,
        path,
        LOG_FILES_KEPT,
        version,
        |i| &i.version,
        Incident::default,
        dropped,
    )
}

fn health<'m>(
    map: &'m mut BTreeMap<String, HealthState>,
    check: &str,
    version: &Version,
    t: &mut Truncated,
) -> Option<&'m mut HealthState> {
    let (cap, dropped) = (HEALTH_CHECKS_KEPT, &mut t.health_checks);
    capped_entry(
        map,
        check,
        cap,
        version,
        |h| &h.version,
        HealthState::default,
        dropped,
    )
}

fn backup_job<'m>(
    map: &'m mut BTreeMap<String, BackupJob>,
    job: &str,
    version: &Version,
    t: &mut Truncated,
) -> Option<&'m mut BackupJob> {
    let (cap, dropped) = (BACKUP_JOBS_KEPT, &mut t.backup_jobs);
    capped_entry(
        map,
        job,
        cap,
        version,
        |j| &j.version,
        BackupJob::default,
        dropped,
    )
}

impl Runbooks {
    /// Folds one body; returns false for bodies that are not about runbook modules. A name
    /// beyond its cap (`bounds.rs`) is dropped and counted in `truncated`.
    pub fn apply(&mut self, version: &Version, at: i64, body: &Body, t: &mut Truncated) -> bool {
        match body {
            Body::LogMatch(m) => {
                let Some(inc) = incident(&mut self.incidents, &m.path, version, t) else {
                    return true;
                };
                inc.count += 1;
                if inc.first_at_unix_ms == 0 || at < inc.first_at_unix_ms {
                    inc.first_at_unix_ms = at;
                }
                let pos = inc.recent_at_unix_ms.partition_point(|t| *t <= at);
                inc.recent_at_unix_ms.insert(pos, at);
                if inc.recent_at_unix_ms.len() > RECENT_MATCHES {
                    inc.recent_at_unix_ms.remove(0);
                }
                if inc.version <= *version {
                    inc.last_pattern = clip(&m.pattern);
                    inc.last_excerpt = clip(&m.excerpt);
                    inc.last_at_unix_ms = at;
                    inc.version = version.clone();
                }
            }
            Body::LogSuppressed(s) => {
                if let Some(inc) = incident(&mut self.incidents, &s.path, version, t) {
                    inc.suppressed += s.count;
                }
            }
            Body::Health(h) => {
                let Some(state) = health(&mut self.health, &h.check, version, t) else {
                    return true;
                };
                if state.version <= *version {
                    // `since` is the check's last event, also one that moved only its slow
                    // flag or certificate level (stored rows keep their bytes: rows_golden).
                    *state = HealthState {
                        status: ProbeStatus::from_wire(h.status),
                        probe: clip(&h.probe),
                        detail: clip(&h.detail),
                        consecutive_failures: h.consecutive_failures,
                        since_unix_ms: at,
                        version: version.clone(),
                        slow: h.slow,
                        latency_p95_ms: h.latency_p95_ms,
                        latency_bound_ms: h.latency_bound_ms,
                        cert_level: CertLevel::from_wire(h.cert_level),
                        cert_not_after_unix_ms: h.cert_not_after_unix_ms,
                    };
                }
            }
            Body::Heartbeat(hb) => {
                // The heartbeat carries the current status of every probe; it confirms or
                // corrects the state without moving `since` when nothing changed.
                for s in &hb.health {
                    let Some(state) = health(&mut self.health, &s.check, version, t) else {
                        continue;
                    };
                    if state.version <= *version {
                        let status = ProbeStatus::from_wire(s.status);
                        if state.status != status {
                            state.status = status;
                            state.since_unix_ms = 0;
                        }
                        state.slow = s.slow;
                        state.latency_p95_ms = s.latency_p95_ms;
                        state.cert_level = CertLevel::from_wire(s.cert_level);
                        state.cert_not_after_unix_ms = s.cert_not_after_unix_ms;
                        state.version = version.clone();
                    }
                }
                return false; // the host fold handles the rest of the heartbeat
            }
            Body::Sentinel(s) => {
                let view = capped_entry(
                    &mut self.sentinels,
                    &s.path,
                    SENTINELS_KEPT,
                    version,
                    |v: &SentinelView| &v.version,
                    SentinelView::default,
                    &mut t.sentinels,
                );
                let Some(view) = view else {
                    return true;
                };
                if view.version <= *version {
                    *view = SentinelView {
                        status: SentinelStatus::from_wire(s.status),
                        age_ms: s.age_ms,
                        max_age_ms: s.max_age_ms,
                        mtime_unix_ms: s.mtime_unix_ms,
                        at_unix_ms: at,
                        version: version.clone(),
                    };
                }
            }
            Body::BackupStarted(b) => {
                let Some(job) = backup_job(&mut self.backups, &b.job, version, t) else {
                    return true;
                };
                if job.version <= *version {
                    job.running = Some(clip(&b.run_id));
                    job.version = version.clone();
                }
            }
            Body::BackupProgress(_) => {}
            Body::BackupCompleted(b) => {
                let Some(job) = backup_job(&mut self.backups, &b.job, version, t) else {
                    return true;
                };
                let archive = clip(&b.archive);
                if !job.archives.contains(&archive) {
                    job.archives.push(archive);
                    if job.archives.len() > ARCHIVES_KEPT {
                        job.archives.remove(0);
                    }
                }
                if job.version <= *version {
                    if job.running.as_deref() == Some(clip(&b.run_id).as_str()) {
                        job.running = None;
                    }
                    job.last_success = Some(BackupSuccess {
                        run_id: clip(&b.run_id),
                        archive: clip(&b.archive),
                        size_bytes: b.size_bytes,
                        files: b.files,
                        duration_ms: b.duration_ms,
                        sha256: clip(&b.sha256),
                        at_unix_ms: at,
                    });
                    job.version = version.clone();
                }
            }
            Body::BackupFailed(b) => {
                let Some(job) = backup_job(&mut self.backups, &b.job, version, t) else {
                    return true;
                };
                if job.version <= *version {
                    if job.running.as_deref() == Some(clip(&b.run_id).as_str()) {
                        job.running = None;
                    }
                    job.last_failure = Some(BackupFailure {
                        run_id: clip(&b.run_id),
                        reason: clip(&b.reason),
                        at_unix_ms: at,
                    });
                    job.version = version.clone();
                }
            }
            Body::BackupPruned(p) => {
                let Some(job) = backup_job(&mut self.backups, &p.job, version, t) else {
                    return true;
                };
                // A set: the list comes from the agent and may be long.
                let gone: BTreeSet<&str> = p.archives.iter().map(String::as_str).collect();
                job.archives.retain(|a| !gone.contains(a.as_str()));
                job.pruned_archives += p.archives.len() as u64;
                job.pruned_bytes += p.bytes_freed;
            }
            Body::RestoreCompleted(r) => {
                if let Some(job) = backup_job(&mut self.backups, &r.job, version, t) {
                    job.last_restore = Some(clip(&format!("{} -> {}", r.archive, r.target)));
                }
            }
            Body::RestoreFailed(_) => {}
            Body::BackupSynced(b) => {
                if let Some(job) = backup_job(&mut self.backups, &b.job, version, t) {
                    remote::synced(&mut job.remote, b, at);
                }
            }
            Body::BackupSyncFailed(b) => {
                if let Some(job) = backup_job(&mut self.backups, &b.job, version, t) {
                    remote::sync_failed(&mut job.remote, b, at);
                }
            }
            Body::BackupDiscrepancy(b) => {
                if let Some(job) = backup_job(&mut self.backups, &b.job, version, t) {
                    remote::discrepancy(&mut job.remote, b, at);
                }
            }
            Body::RestoreTested(r) => {
                if let Some(job) = backup_job(&mut self.backups, &r.job, version, t) {
                    restore_tests::tested(&mut job.restore_test, r, at);
                }
            }
            Body::Janitor(j) => {
                let state = capped_entry(
                    &mut self.janitor,
                    &j.root,
                    JANITOR_ROOTS_KEPT,
                    &at,
                    |s: &JanitorState| &s.last_at_unix_ms,
                    JanitorState::default,
                    &mut t.janitor_roots,
                );
                let Some(state) = state else {
                    return true;
                };
                state.total_removed_files += if j.dry_run { 0 } else { j.removed_files };
                state.total_bytes += if j.dry_run { 0 } else { j.bytes };
                if state.last_at_unix_ms <= at {
                    state.last_at_unix_ms = at;
                    state.last_removed_files = j.removed_files;
                    state.last_bytes = j.bytes;
                    state.dry_run = j.dry_run;
                }
            }
            _ => return false,
        }
        true
    }
}

mod remote;
pub mod restore_tests;
#[cfg(test)]
mod tests;
