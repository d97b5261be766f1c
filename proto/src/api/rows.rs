//! `ops.api.hosts`, `ops.api.backups`, `ops.api.incidents` and `ops.api.alerts`: one row per
//! host, backup job, log file or alert, paged by a cursor.

use serde::{Deserialize, Serialize};

use super::{
    AlertState, BackupState, DiskView, Liveness, ModuleView, PageRequest, Responder, Severity,
    Truncated,
};

/// Request for `ops.api.hosts`: one summary row per host, paged by host name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsRequest {
    /// Host name or glob (`web-*`, `db-0?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only hosts in this liveness state: `up`, `late`, `lost` (or `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Which page: at most `limit` rows after the cursor `after`.
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply to `ops.api.hosts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostsReply {
    pub responder: Responder,
    /// The answering coordinator's clock when it judged liveness.
    pub now_unix_ms: i64,
    /// Hosts matching the filter, ascending by name.
    pub hosts: Vec<HostSummary>,
    /// Set when more hosts follow: pass it as `after` to get the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One host in a line: liveness, last report, worst disk, module states and open trouble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    pub host: String,
    /// `up` (reported within 2× its heartbeat interval), `late` (within 5×), `lost` (beyond,
    /// or declared lost by the active coordinator's liveness check and silent since), or
    /// `unknown` (never sent a heartbeat).
    pub liveness: Liveness,
    /// Agent's clock at its latest event.
    pub last_seen_unix_ms: i64,
    /// The heartbeat interval the agent declared, 0 if unknown.
    pub heartbeat_interval_ms: u64,
    pub agent_version: String,
    pub last_seq: u64,
    pub events: u64,
    /// Seqs never received from the current incarnation.
    pub missing_events: u64,
    pub outbox_pending: u64,
    /// Most used disk as `path used% level`, if any disk reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_disk: Option<DiskView>,
    pub modules: Vec<ModuleView>,
    /// Health probes not `ready`, as `name:status`.
    #[serde(default)]
    pub unhealthy: Vec<String>,
    /// Health checks with a condition beside their status (slow, certificate expiring);
    /// absent when none has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub check_conditions: Vec<CheckCondition>,
    /// Log incidents (matching events) on this host, all files together.
    pub incidents: u64,
    /// Backup jobs whose latest outcome is a failure.
    pub failing_backups: u64,
    /// Supervised services not `running` (`name:state`) or running but unhealthy by their own
    /// probes (`name:degraded`, `name:failed`); absent while all run and are healthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down_services: Vec<String>,
    /// The active coordinator declared this host lost and it has not reported since.
    #[serde(default)]
    pub declared_lost: bool,
    /// What the coordinator left out of this host's state (absent when nothing was).
    #[serde(default, skip_serializing_if = "Truncated::is_empty")]
    pub truncated: Truncated,
    /// In maintenance (`opsctl drain`, until `opsctl undrain`): no alert pages for it.
    /// Absent while false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
}

/// A health check's condition beside its status (`HostSummary::check_conditions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCondition {
    pub check: String,
    pub condition: CheckConditionKind,
    /// What it is: `p95 480ms > 250ms`, `certificate expires in 5 day(s)`.
    pub detail: String,
}

/// `slow`: the p95 of the check's latencies is above its bound; `cert_warn` / `cert_crit`:
/// its certificate has `warn_days` / `crit_days` or fewer left (or expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckConditionKind {
    Slow,
    CertWarn,
    CertCrit,
}

impl CheckConditionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckConditionKind::Slow => "slow",
            CheckConditionKind::CertWarn => "cert_warn",
            CheckConditionKind::CertCrit => "cert_crit",
        }
    }
}

/// Request for `ops.api.backups`: the backup catalog per host and job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupsRequest {
    /// Host name or glob (`db-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only this job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Also list every archive the catalog knows is kept (`BackupView::archives`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archives: bool,
    /// Which page: at most `limit` rows after the cursor `after`.
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply to `ops.api.backups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupsReply {
    pub responder: Responder,
    /// One row per (host, job), ascending.
    pub backups: Vec<BackupView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One backup job on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    pub host: String,
    pub job: String,
    pub state: BackupState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<BackupSuccessView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<BackupFailureView>,
    /// Run id of a run in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    /// Archives kept (completed, not pruned) as far as the catalog knows.
    pub archives_kept: u64,
    /// Archives removed by retention, and the bytes that freed.
    pub pruned_archives: u64,
    pub pruned_bytes: u64,
    /// `archive -> target` of the latest restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore: Option<String>,
    /// With `BackupsRequest::archives`: the archives kept (completed, not pruned), oldest
    /// first, as the catalog knows them (the newest 100); the names `opsctl restore --archive`
    /// takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<String>,
    /// The job's remote copy (`backup_synced`, `backup_sync_failed`, `backup_discrepancy`),
    /// when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteBackupView>,
    /// The job's restore tests (`verify_restore`, `restore_tested`), when it declares them or
    /// had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<RestoreTestView>,
}

/// A backup job's restore tests: the declared period and the newest test.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTestView {
    /// The job's `verify_restore` period as its module's config says (absent: none declared,
    /// tests on demand only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_ms: Option<u64>,
    /// The backup module declaring it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub module: String,
    /// When the declaration (this period) was first seen: a job never tested counts from here.
    #[serde(default)]
    pub declared_at_unix_ms: i64,
    /// The newest test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<RestoreTestResultView>,
    /// When the newest passing test ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_passed_at_unix_ms: Option<i64>,
}

impl RestoreTestView {
    /// `passed` or `failed` (the newest test), or `never`.
    pub fn state(&self) -> &'static str {
        match &self.last {
            Some(t) if t.passed => "passed",
            Some(_) => "failed",
            None => "never",
        }
    }
}

/// One restore test as its `restore_tested` told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTestResultView {
    pub archive: String,
    /// `local`, or the remote destination's label.
    pub source: String,
    pub passed: bool,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    /// "" (no check declared), `passed` or `failed`.
    pub check: String,
    pub reason: String,
    /// `schedule`, or the command id that asked.
    pub requested_by: String,
    pub at_unix_ms: i64,
}

/// How many names of each discrepancy list a row keeps (the counts are complete).
pub const DISCREPANCY_NAMES_KEPT: usize = 20;

/// A backup job's remote destination as its events told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBackupView {
    /// `path:/mnt/nas/app`.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced: Option<RemoteSyncView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_failure: Option<RemoteSyncFailureView>,
    /// Remote archives removed by the remote retention (every event counted once).
    pub remote_pruned: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<RemoteReconcileView>,
}

impl RemoteBackupView {
    /// `failed` (the newest sync outcome is a failure), `discrepancy` (the newest
    /// reconciliation found one), `ok` (synced) or `never`.
    pub fn state(&self) -> &'static str {
        let synced_at = self.last_synced.as_ref().map(|s| s.at_unix_ms);
        if let Some(f) = &self.last_sync_failure {
            if synced_at.is_none_or(|s| s < f.at_unix_ms) {
                return "failed";
            }
        }
        if self
            .reconciled
            .as_ref()
            .is_some_and(RemoteReconcileView::found_any)
        {
            return "discrepancy";
        }
        if synced_at.is_some() {
            "ok"
        } else {
            "never"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSyncView {
    pub archive: String,
    pub bytes: u64,
    pub at_unix_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSyncFailureView {
    /// Empty when the reconciliation could not read the remote.
    pub archive: String,
    pub reason: String,
    pub at_unix_ms: i64,
}

/// The newest reconciliation: names (at most `DISCREPANCY_NAMES_KEPT` each) and counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteReconcileView {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    pub mismatched: Vec<String>,
    pub missing_count: u64,
    pub extra_count: u64,
    pub mismatched_count: u64,
    pub remote_archives: u32,
    pub at_unix_ms: i64,
}

impl RemoteReconcileView {
    pub fn found_any(&self) -> bool {
        self.missing_count + self.extra_count + self.mismatched_count > 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSuccessView {
    pub run_id: String,
    pub archive: String,
    pub size_bytes: u64,
    pub files: u64,
    pub duration_ms: u64,
    pub sha256: String,
    pub at_unix_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailureView {
    pub run_id: String,
    pub reason: String,
    pub at_unix_ms: i64,
}

/// Request for `ops.api.incidents`: new `ERROR`/`Traceback` lines per host and log file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentsRequest {
    /// Host name or glob (`web-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only files whose latest match is at or after this time (agent clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_unix_ms: Option<i64>,
    /// Which page: at most `limit` rows after the cursor `after`.
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply to `ops.api.incidents`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentsReply {
    pub responder: Responder,
    /// One row per (host, log file), ascending.
    pub incidents: Vec<IncidentView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Matches in one log file of one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentView {
    pub host: String,
    pub path: String,
    /// The pattern of the latest match (`error`, `traceback`, ...).
    pub pattern: String,
    /// Matching events (a grouped traceback counts once).
    pub count: u64,
    /// Lines the agent's rate limit held back.
    pub suppressed: u64,
    /// First match (agent clock); 0 if it predates this field in the projection.
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// The latest match, cut to [`EXCERPT_MAX_BYTES`].
    pub last_excerpt: String,
}

/// Request for `ops.api.alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsRequest {
    /// Host name or glob (`web-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only alerts in this state (`firing`, `pending`, `resolved`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Which page: at most `limit` rows after the cursor `after`.
    #[serde(flatten)]
    pub page: PageRequest,
}

/// Reply to `ops.api.alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertsReply {
    pub responder: Responder,
    pub alerts: Vec<AlertView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One alert as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    /// Stable key of the alert (rule, host and subject).
    pub key: String,
    pub rule: String,
    pub host: String,
    /// What the alert is about on the host (a disk path, a module, a probe...).
    pub subject: String,
    pub state: AlertState,
    /// When the current state began.
    pub since_unix_ms: i64,
    /// Latest transition as `from -> to`.
    pub last_transition: String,
    pub last_transition_unix_ms: i64,
    /// Notifications delivered for this alert (outcome `sent`, or `dry_run`: printed by the
    /// built-in dry-run route, which is how a setup without routes delivers).
    pub notifications_sent: u64,
    /// The rule's summary of the current state.
    pub detail: String,
    /// The rule's severity; an empty string in JSON when the log has not told it yet.
    #[serde(default, with = "super::empty_is_none")]
    pub severity: Option<Severity>,
    /// State changes folded so far.
    #[serde(default)]
    pub transitions: u64,
    /// Ids of the silences that match it and are active now (it is not notified meanwhile).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silenced_by: Vec<String>,
    /// The operator who acknowledged the current transition (cleared by the next one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at_unix_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_comment: Option<String>,
}

/// Cuts `text` to at most `max` bytes on a char boundary, marking the cut with `…`.
pub fn truncate_excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
