//! `ops.api.status`: the whole projection of each host, paged, with the coordinators as the
//! log knows them.

use serde::{Deserialize, Serialize};

use super::{DiskLevel, LeaderRole, ModuleState, PageRequest, Responder, Role};

/// Request for `ops.api.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRequest {
    /// Restrict the answer to this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Which page: at most `limit` rows after the cursor `after`.
    #[serde(flatten)]
    pub page: PageRequest,
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
    /// Time of the newest event this coordinator published (its clock); absent from older
    /// coordinators' replies.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_seen_unix_ms: i64,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_role: Option<Role>,
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
    /// In maintenance (`opsctl drain`, until `opsctl undrain`): no alert pages for it.
    /// Absent while false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
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
    /// Supervised services evicted or not taken in (absent while 0: rows and replies from
    /// before services stay as they were).
    #[serde(default, skip_serializing_if = "no_count")]
    pub services: u64,
}

fn no_count(n: &u64) -> bool {
    *n == 0
}

impl Truncated {
    /// Every count with its name, in a fixed order.
    pub fn counts(&self) -> [(&'static str, u64); 15] {
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
            ("services", self.services),
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

fn is_zero(v: &i64) -> bool {
    *v == 0
}
