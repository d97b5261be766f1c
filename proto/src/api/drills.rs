//! `ops.api.drills` (the declared drills, their schedule, last runs and next due) and
//! `ops.api.drill` (run one now, as an operator), as `opsctl drills` and `opsctl drill run`
//! speak them.

use serde::{Deserialize, Serialize};

use super::Responder;

/// `drills`: every declared drill (or only `drill`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<String>,
}

/// Reply to `drills`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillsReply {
    pub responder: Responder,
    pub drills: Vec<DrillView>,
}

/// One declared drill (`[[drills]]` of the answering coordinator) and its history from the
/// log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillView {
    pub name: String,
    /// `notification_test`, `app_failover`, ...
    pub kind: String,
    pub every_ms: u64,
    pub jitter_ms: u64,
    /// No passed run within this long raises `drill_overdue`.
    pub overdue_after_ms: u64,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// When the next scheduled run may start (in the past: due now; 0 when switched off).
    pub next_due_unix_ms: i64,
    /// A run is under way.
    pub running: bool,
    /// When a run last passed and last failed (0: never).
    pub last_passed_unix_ms: i64,
    pub last_failed_unix_ms: i64,
    /// The newest runs, newest last.
    pub runs: Vec<DrillRunView>,
}

/// One run of a drill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRunView {
    pub run_id: String,
    /// The scheduled slot it filled (0: asked by an operator).
    pub slot_unix_ms: i64,
    pub epoch: u64,
    /// `schedule` or the operator.
    pub requested_by: String,
    /// `started`, `passed`, `failed`.
    pub phase: String,
    pub started_unix_ms: i64,
    pub ended_unix_ms: i64,
    pub took_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// `drill`: run drill `drill` now (the active coordinator answers once it ended).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRunRequest {
    pub drill: String,
    /// Informational: the coordinator records the operator named by the request's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Reply to `drill`, once the run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrillRunReply {
    pub responder: Responder,
    pub drill: String,
    pub kind: String,
    pub run_id: String,
    /// `passed` or `failed`.
    pub phase: String,
    pub took_ms: u64,
    pub detail: String,
}
