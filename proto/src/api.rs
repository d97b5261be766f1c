//! JSON request/reply types of the coordinators' query API (`ops.api.*`).
//!
//! JSON rather than protobuf: these are read by operators' scripts through `opsctl --output
//! json`, and the same structs serialise both. Fields are only ever added.

use serde::{Deserialize, Serialize};

/// Which coordinator answered and how current it is; part of every API reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responder {
    pub name: String,
    pub color: String,
    pub role: LeaderRole,
    /// The epoch (lease revision) this coordinator acts under, 0 if none.
    pub epoch: u64,
    /// Last stream sequence of `OPS_EVENTS` persisted by this coordinator.
    pub applied_stream_seq: u64,
    /// Messages in the stream this coordinator has not persisted yet.
    pub behind: u64,
}

/// Request for `ops.api.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Restrict the answer to this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// At most this many hosts (default [`STATUS_PAGE_DEFAULT`], capped at [`PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only hosts whose name sorts after this one: the `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Reply to `ops.api.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    pub responder: Responder,
    /// sha256 over the persisted projections; equals `ops-coordinator rebuild`'s digest.
    pub digest: String,
    /// Events persisted in this coordinator's log.
    pub log_events: u64,
    /// Duplicates dropped by (host, incarnation, seq) since this process started.
    pub duplicates_dropped: u64,
    /// Malformed messages parked on the dead-letter subject since this process started.
    pub malformed_parked: u64,
    /// API requests this coordinator refused since it started (see [`ApiRefusals`]).
    #[serde(default)]
    pub api_refused: ApiRefusals,
    /// Valid events refused by the ingest admission check (who may say what) and parked on
    /// the dead-letter subject since this process started.
    #[serde(default)]
    pub refused_parked: u64,
    pub hosts: Vec<HostView>,
    /// Coordinators as the log knows them (from their leadership events).
    #[serde(default)]
    pub coordinators: Vec<CoordinatorView>,
    /// Set when more hosts follow: pass it as `after` to get the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// API requests one coordinator refused since it started, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRefusals {
    /// Requests whose reply subject is not the requester's inbox (`_INBOX.`, or
    /// `_INBOX.<operator>.` on identified subjects): dropped without an answer.
    #[serde(default)]
    pub foreign_reply: u64,
    /// Actions asked for in a role below the one they need.
    #[serde(default)]
    pub role: u64,
    /// Plain `ops.api.command` / `ops.api.failover` while `[api] allow_unidentified` is off.
    #[serde(default)]
    pub unidentified: u64,
}

/// One coordinator as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorView {
    pub name: String,
    pub color: String,
    /// Role per the newest leadership event.
    pub role: LeaderRole,
    pub epoch: u64,
    /// Leadership changes, oldest first.
    pub history: Vec<LeadershipChangeView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadershipChangeView {
    pub epoch: u64,
    pub role: LeaderRole,
    pub reason: String,
    pub at_unix_ms: i64,
    /// Who asked for a released step-down (`opsctl failover`), as recorded by the coordinator.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_role: String,
}

/// One host as the coordinator's projection knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub host: String,
    /// Agent's clock at its latest event.
    pub last_seen_unix_ms: i64,
    pub last_seq: u64,
    pub incarnation: String,
    pub events: u64,
    /// Seq ranges (inclusive) never received.
    pub gaps: Vec<SeqRange>,
    pub disks: Vec<DiskView>,
    pub modules: Vec<ModuleView>,
    /// What the coordinator left out of this host's state (absent when nothing was).
    #[serde(default, skip_serializing_if = "Truncated::is_empty")]
    pub truncated: Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

/// What the coordinator dropped from one host's state because the host went past a cap on
/// what it may grow there (incarnations, gap ranges, modules, disks, ...): counts since the
/// host first reported, each an event-determined number (every coordinator folding the same
/// log shows the same counts). A host that stays within the caps shows none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    /// Agent incarnations evicted, oldest first; their late events are dropped as duplicates.
    #[serde(default)]
    pub incarnations: u64,
    /// Seq gap ranges closed, oldest first (their seqs count as seen) ...
    #[serde(default)]
    pub gap_ranges: u64,
    /// ... and the seqs in them.
    #[serde(default)]
    pub gap_seqs: u64,
    /// Module names evicted or not taken in (over the cap, or over-long); likewise disk paths,
    /// health checks, log files, sentinel paths, backup jobs and janitor roots below.
    #[serde(default)]
    pub modules: u64,
    #[serde(default)]
    pub disks: u64,
    #[serde(default)]
    pub health_checks: u64,
    #[serde(default)]
    pub log_files: u64,
    #[serde(default)]
    pub sentinels: u64,
    #[serde(default)]
    pub backup_jobs: u64,
    #[serde(default)]
    pub janitor_roots: u64,
    /// Labels left out of current heartbeats (over the cap or over-long; counted per
    /// heartbeat).
    #[serde(default)]
    pub labels: u64,
    /// Finished command records pruned from the ledger, oldest first.
    #[serde(default)]
    pub commands: u64,
    /// Module configs too large to keep for rollbacks.
    #[serde(default)]
    pub configs: u64,
    /// Resolved alerts about this host pruned, oldest first.
    #[serde(default)]
    pub alerts: u64,
}

impl Truncated {
    /// Every count with its name, in a fixed order.
    pub fn counts(&self) -> [(&'static str, u64); 14] {
        [
            ("incarnations", self.incarnations),
            ("gap_ranges", self.gap_ranges),
            ("gap_seqs", self.gap_seqs),
            ("modules", self.modules),
            ("disks", self.disks),
            ("health_checks", self.health_checks),
            ("log_files", self.log_files),
            ("sentinels", self.sentinels),
            ("backup_jobs", self.backup_jobs),
            ("janitor_roots", self.janitor_roots),
            ("labels", self.labels),
            ("commands", self.commands),
            ("configs", self.configs),
            ("alerts", self.alerts),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }

    /// The non-zero counts as `name N`, comma-separated (`incarnations 92, disks 3`).
    pub fn describe(&self) -> String {
        self.counts()
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskView {
    pub path: String,
    pub used_percent: f64,
    pub inodes_used_percent: f64,
    pub level: DiskLevel,
    pub total_bytes: u64,
    pub avail_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleView {
    pub name: String,
    pub kind: String,
    pub state: ModuleState,
}

wire_state! {
    /// A module's run state as its agent last reported it (`ModuleRunState` on the wire); in
    /// JSON and in stored rows `running`, `paused`, `disabled`, `failed` or `unknown`.
    ModuleState from ModuleRunState {
        Running => "running",
        Paused => "paused",
        Disabled => "disabled",
        Failed => "failed",
    }
}

wire_state! {
    /// A coordinator's role (`LeaderRole` on the wire): `active`, `standby`, or `unknown` while
    /// no election runs.
    LeaderRole from LeaderRole {
        Active => "active",
        Standby => "standby",
    }
}

wire_state! {
    /// A disk's level as its agent last reported it (`DiskLevel` on the wire); in JSON and in
    /// stored rows `ok`, `warn`, `crit` or `unknown`.
    DiskLevel from DiskLevel {
        Ok => "ok",
        Warn => "warn",
        Crit => "crit",
    }
}

/// Request for `ops.api.failover`: the active coordinator releases its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// Hand the lease to this coordinator; otherwise whichever standby is first takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Informational, like `CommandRequest::issued_by`: the coordinator records the operator
    /// named by the subject; on a plain subject (only with `[api] allow_unidentified`) this
    /// name marked " (unverified)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Reply to `ops.api.failover`, from the coordinator that released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverReply {
    pub responder: Responder,
    /// The epoch that ended.
    pub released_epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What an operator identity may do. Roles are ordered: each includes the rights of the ones
/// before it. They are enforced by NATS permissions on `ops.api.as.<operator>.<role>.>` (the
/// coordinator reads the role from the subject, never from a body) and recorded on every
/// command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read verbs and `opsctl events --follow`.
    Viewer,
    /// Run-time control: pause/resume/disable/enable, noop, drain, backup run, failover.
    Operator,
    /// Changes what runs on hosts: config apply/rollback, restore.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The role a command action needs; `None` for an unknown action.
    pub fn required_for_action(action: &str) -> Option<Role> {
        match action {
            "pause" | "resume" | "disable" | "enable" | "noop" | "drain" | "backup_run" => {
                Some(Role::Operator)
            }
            "restore" | "config_apply" | "config_rollback" => Some(Role::Admin),
            _ => None,
        }
    }

    /// The role `ops.api.failover` needs.
    pub const FAILOVER: Role = Role::Operator;
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Request for `ops.api.command`: one action for a set of hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// `pause`, `resume`, `disable`, `enable`, `noop`, `drain`, `backup_run`, `restore`,
    /// `config_apply` or `config_rollback`.
    pub action: String,
    /// The module the action is about (not for `noop` and `drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Target hosts; with `all`, every host the coordinator knows.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// The command expires this long after it is issued, in milliseconds: required (0 is
    /// refused) and at most the coordinator's `[api] max_deadline`.
    pub deadline_ms: u64,
    /// Informational: the coordinator records the operator named by the request's subject
    /// (`ops.api.as.<operator>.<role>.command`); on a plain subject (allowed only by
    /// `[api] allow_unidentified`) it records this value marked " (unverified)".
    pub issued_by: String,
    /// `backup_run` / `restore`: the backup job (empty: every job of the module for a run,
    /// the archive's job for a restore). The module is optional for both: an agent with one
    /// backup module (or one holding the job) infers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// `restore`: the archive file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// `restore`: the directory to restore into, on the agent's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `config_apply`: the module's `[[modules]]` entry as TOML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_toml: Option<String>,
    /// `config_rollback`: the fingerprint to go back to, found in the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Also every host whose heartbeat labels include all of these (`role=web`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One command as issued to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCommand {
    pub host: String,
    pub command_id: String,
}

/// Reply to `ops.api.command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    pub responder: Responder,
    /// The epoch every command was stamped with.
    pub epoch: u64,
    pub commands: Vec<IssuedCommand>,
}

/// Request for `ops.api.commands`: the ledger, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandsRequest {
    /// Only these command ids.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Only commands for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Reply to `ops.api.commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandsReply {
    pub responder: Responder,
    pub commands: Vec<CommandView>,
}

/// One command's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandView {
    pub id: String,
    pub target: String,
    pub epoch: u64,
    pub issued_by: String,
    /// The role the operator acted in (`operator`, `admin`); empty for an unverified request.
    #[serde(default)]
    pub issued_role: String,
    pub action: String,
    pub module: String,
    pub deadline_unix_ms: i64,
    pub state: CommandState,
    pub detail: String,
    /// More than 1 means the command ran twice.
    pub accepted_count: u32,
    pub history: Vec<CommandStepView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStepView {
    pub state: CommandState,
    pub at_unix_ms: i64,
    pub by: String,
    pub detail: String,
}

impl CommandView {
    /// Completed, failed, rejected or expired: nothing more will happen.
    pub fn is_final(&self) -> bool {
        self.state.is_final()
    }
}

/// Where a command is in its lifecycle; in JSON and in stored rows the lowercase name.
/// `unknown`: a lifecycle event arrived for a command whose issue event is not in the log.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Issued,
    Accepted,
    Completed,
    Failed,
    Rejected,
    Expired,
    #[default]
    #[serde(other)]
    Unknown,
}

impl CommandState {
    /// Completed, failed, rejected or expired: nothing moves it any more.
    pub fn is_final(self) -> bool {
        self.rank() == 3
    }

    /// Lifecycle order: unknown, issued, accepted, then every final state alike.
    pub fn rank(self) -> u8 {
        match self {
            CommandState::Unknown => 0,
            CommandState::Issued => 1,
            CommandState::Accepted => 2,
            CommandState::Completed
            | CommandState::Failed
            | CommandState::Rejected
            | CommandState::Expired => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Unknown => "unknown",
            CommandState::Issued => "issued",
            CommandState::Accepted => "accepted",
            CommandState::Completed => "completed",
            CommandState::Failed => "failed",
            CommandState::Rejected => "rejected",
            CommandState::Expired => "expired",
        }
    }
}

impl std::str::FromStr for CommandState {
    type Err = String;

    /// The lowercase name, as `as_str` writes it.
    fn from_str(text: &str) -> Result<Self, String> {
        use CommandState::*;
        [
            Issued, Accepted, Completed, Failed, Rejected, Expired, Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| format!("no command state {text:?}"))
    }
}

impl std::fmt::Display for CommandState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default page size of `ops.api.status` (a host with its disks and modules is ~1 KB).
pub const STATUS_PAGE_DEFAULT: usize = 200;
/// Largest page of `ops.api.status`: keeps a reply well under NATS's 1 MB `max_payload`.
pub const STATUS_PAGE_MAX: usize = 300;
/// Default page size of `ops.api.hosts` (one summary row is ~300 bytes).
pub const HOSTS_PAGE_DEFAULT: usize = 1000;
/// Largest page of `ops.api.hosts`.
pub const HOSTS_PAGE_MAX: usize = 2000;
/// Default page size of `ops.api.backups`, `ops.api.incidents` and `ops.api.alerts`.
pub const ROWS_PAGE_DEFAULT: usize = 200;
/// Largest page of `ops.api.backups`, `ops.api.incidents` and `ops.api.alerts`.
pub const ROWS_PAGE_MAX: usize = 500;
/// Log excerpts in `ops.api.incidents` are cut to this many bytes (on a char boundary).
pub const EXCERPT_MAX_BYTES: usize = 1024;

/// Request for `ops.api.hosts`: one summary row per host, paged by host name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsRequest {
    /// Host name or glob (`web-*`, `db-0?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only hosts in this liveness state: `up`, `late`, `lost` (or `unknown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// At most this many (default [`HOSTS_PAGE_DEFAULT`], capped at [`HOSTS_PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Only hosts whose name sorts after this one: the `next` cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
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
    pub liveness: String,
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
    /// Log incidents (matching events) on this host, all files together.
    pub incidents: u64,
    /// Backup jobs whose latest outcome is a failure.
    pub failing_backups: u64,
    /// The active coordinator declared this host lost and it has not reported since.
    #[serde(default)]
    pub declared_lost: bool,
    /// What the coordinator left out of this host's state (absent when nothing was).
    #[serde(default, skip_serializing_if = "Truncated::is_empty")]
    pub truncated: Truncated,
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
    /// At most this many rows (default [`ROWS_PAGE_DEFAULT`], capped at [`ROWS_PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Rows after this cursor: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
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
    /// `ok` (latest outcome a success), `failed`, `running` or `never`.
    pub state: String,
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
    /// At most this many rows (default [`ROWS_PAGE_DEFAULT`], capped at [`ROWS_PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Rows after this cursor: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
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
    /// At most this many rows (default [`ROWS_PAGE_DEFAULT`], capped at [`ROWS_PAGE_MAX`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Rows after this cursor: the `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
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
    pub state: String,
    /// When the current state began.
    pub since_unix_ms: i64,
    /// Latest transition as `from -> to`.
    pub last_transition: String,
    pub last_transition_unix_ms: i64,
    /// Notifications delivered for this alert (outcome `sent`).
    pub notifications_sent: u64,
    /// The rule's summary of the current state.
    pub detail: String,
    #[serde(default)]
    pub severity: String,
    /// State changes folded so far.
    #[serde(default)]
    pub transitions: u64,
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

/// Error reply of any API verb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub responder: String,
    pub error: String,
    /// Set when the request was refused for its role: the role the action needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_role: Option<Role>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_states_are_the_strings_they_were() {
        use crate::pb::ModuleRunState as W;
        for (wire, text) in [
            (W::Running, "running"),
            (W::Paused, "paused"),
            (W::Disabled, "disabled"),
            (W::Failed, "failed"),
            (W::Unspecified, "unknown"),
        ] {
            let state = ModuleState::from_wire(wire as i32);
            assert_eq!(state.as_str(), text);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ModuleState>(&json).unwrap(), state);
        }
        // A value a newer version might write reads as unknown, not as an error.
        let v: ModuleState = serde_json::from_str("\"hibernating\"").unwrap();
        assert_eq!(v, ModuleState::Unknown);
        assert_eq!(ModuleState::from_wire(99), ModuleState::Unknown);
        use crate::pb::DiskLevel as D;
        for (wire, text) in [
            (D::Ok, "ok"),
            (D::Warn, "warn"),
            (D::Crit, "crit"),
            (D::Unspecified, "unknown"),
        ] {
            let level = DiskLevel::from_wire(wire as i32);
            assert_eq!(
                serde_json::to_string(&level).unwrap(),
                format!("\"{text}\"")
            );
        }
    }

    #[test]
    fn status_request_defaults_from_empty_json() {
        let req: StatusRequest = serde_json::from_slice(b"{}").unwrap();
        assert_eq!(req, StatusRequest::default());
    }

    #[test]
    fn excerpts_are_cut_on_char_boundaries() {
        assert_eq!(truncate_excerpt("short", 10), "short");
        let cut = truncate_excerpt("ééééé", 6);
        assert!(cut.len() <= 6, "{cut}");
        assert_eq!(cut, "é…");
    }

    #[test]
    fn new_requests_default_from_empty_json() {
        let h: HostsRequest = serde_json::from_slice(b"{}").unwrap();
        assert_eq!(h, HostsRequest::default());
        let i: IncidentsRequest = serde_json::from_slice(b"{}").unwrap();
        assert_eq!(i, IncidentsRequest::default());
    }
}
