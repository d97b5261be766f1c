//! `ops.api.rollout` (start a rollout, or pause / resume / promote / abort / undo one) and
//! `ops.api.rollouts` (their state and history), as `opsctl rollout ...` and `opsctl rollouts`
//! speak them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Responder, SkippedHost};

/// What a rollout request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutOp {
    Start,
    Pause,
    Resume,
    Promote,
    Abort,
    Undo,
}

impl RolloutOp {
    pub const ALL: [RolloutOp; 6] = [
        RolloutOp::Start,
        RolloutOp::Pause,
        RolloutOp::Resume,
        RolloutOp::Promote,
        RolloutOp::Abort,
        RolloutOp::Undo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutOp::Start => "start",
            RolloutOp::Pause => "pause",
            RolloutOp::Resume => "resume",
            RolloutOp::Promote => "promote",
            RolloutOp::Abort => "abort",
            RolloutOp::Undo => "undo",
        }
    }

    pub fn parse(text: &str) -> Option<RolloutOp> {
        RolloutOp::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// The role it needs: starting, promoting and undoing change what runs (admin); pausing,
    /// resuming and aborting (which rolls back) only hold or stop one (operator).
    pub fn required_role(self) -> super::Role {
        match self {
            RolloutOp::Start | RolloutOp::Promote | RolloutOp::Undo => super::Role::Admin,
            RolloutOp::Pause | RolloutOp::Resume | RolloutOp::Abort => super::Role::Operator,
        }
    }
}

/// How the new version replaces the old one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStrategy {
    /// Hosts in waves (`canary` hosts first), each wave gated before the next.
    #[default]
    Canary,
    /// On each host, the new version starts in the idle slot service beside the live one,
    /// the traffic is switched to it, and the old slot stays up for `keep_old_ms`.
    BlueGreen,
}

impl RolloutStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStrategy::Canary => "canary",
            RolloutStrategy::BlueGreen => "blue-green",
        }
    }

    pub fn parse(text: &str) -> Option<RolloutStrategy> {
        [RolloutStrategy::Canary, RolloutStrategy::BlueGreen]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Default gate: consecutive ready probe results after each restart.
pub const ROLLOUT_READY_SAMPLES_DEFAULT: u32 = 3;
/// Default gate: soak of each wave, in milliseconds.
pub const ROLLOUT_SOAK_MS_DEFAULT: u64 = 60_000;
/// Default deadline of each command a rollout sends, in milliseconds.
pub const ROLLOUT_COMMAND_DEADLINE_MS_DEFAULT: u64 = 300_000;

/// `start`: what to roll out, where, and the gates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStart {
    pub service: String,
    pub version: String,
    /// http(s) URL or absolute path on each host; absent: every host must already keep the
    /// release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// Hosts of the first wave (canary).
    #[serde(default = "default_canary")]
    pub canary: u32,
    /// The later waves, as cumulative percentages of the hosts after the canary (`[25, 50,
    /// 100]`); the last is raised to 100.
    #[serde(default = "default_waves")]
    pub waves: Vec<u32>,
    /// Hosts of a wave updated at once.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: u32,
    /// Target hosts: named, all hosts that have the service, or by labels (like commands).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "default_ready_samples")]
    pub ready_samples: u32,
    #[serde(default = "default_soak_ms")]
    pub soak_ms: u64,
    #[serde(default)]
    pub manual: bool,
    #[serde(default)]
    pub two_person: bool,
    /// A backup job run on each host before its deploy; its failure stops the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_job: Option<String>,
    /// Blue/green: the idle slot service that gets the new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub green_service: Option<String>,
    /// Blue/green: how long the old slot stays up after the switch.
    #[serde(default)]
    pub keep_old_ms: u64,
    #[serde(default = "default_command_deadline_ms")]
    pub command_deadline_ms: u64,
    /// Gate: the soak fails when an updated host's service reports a probe latency p95 above
    /// this (milliseconds, over its newest 64 probe rounds); 0 = no latency gate.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max_p95_ms: u64,
}

fn default_canary() -> u32 {
    1
}
fn default_waves() -> Vec<u32> {
    vec![25, 50, 100]
}
fn default_max_unavailable() -> u32 {
    1
}
fn default_ready_samples() -> u32 {
    ROLLOUT_READY_SAMPLES_DEFAULT
}
fn default_soak_ms() -> u64 {
    ROLLOUT_SOAK_MS_DEFAULT
}
fn default_command_deadline_ms() -> u64 {
    ROLLOUT_COMMAND_DEADLINE_MS_DEFAULT
}

impl RolloutStart {
    /// A start with every default, for `service` at `version`.
    pub fn new(service: &str, version: &str) -> Self {
        RolloutStart {
            service: service.to_owned(),
            version: version.to_owned(),
            artifact: None,
            sha256: None,
            strategy: RolloutStrategy::default(),
            canary: default_canary(),
            waves: default_waves(),
            max_unavailable: default_max_unavailable(),
            hosts: Vec::new(),
            all: false,
            labels: BTreeMap::new(),
            ready_samples: default_ready_samples(),
            soak_ms: default_soak_ms(),
            manual: false,
            two_person: false,
            before_job: None,
            green_service: None,
            keep_old_ms: 0,
            command_deadline_ms: default_command_deadline_ms(),
            max_p95_ms: 0,
        }
    }
}

/// Request for `ops.api.rollout` (answered by the active coordinator only). The operator and
/// role are taken from the subject (`ops.api.as.<operator>.<role>.rollout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRequest {
    pub op: RolloutOp,
    /// `start`: the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<RolloutStart>,
    /// Other ops: the rollout's id (or a unique prefix of it) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// ... or the service whose newest rollout is meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Informational, like `CommandRequest::issued_by`.
    #[serde(default)]
    pub requested_by: String,
}

/// Reply to `ops.api.rollout`: the rollout as the coordinator sees it once the request is
/// recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutReply {
    pub responder: Responder,
    pub rollout: RolloutView,
}

/// Request for `ops.api.rollouts`: newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutsRequest {
    /// One rollout, by id or unique prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Only this service's rollouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// At most this many (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Reply to `ops.api.rollouts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutsReply {
    pub responder: Responder,
    pub rollouts: Vec<RolloutView>,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutPhase {
    /// Updating hosts or soaking a wave.
    #[default]
    Running,
    /// Held by `rollout pause`: no new host is updated (commands in flight finish, and a
    /// failing gate still rolls back).
    Paused,
    /// A wave passed its gates and `--manual` waits for `rollout promote`.
    WaitingPromote,
    /// Putting the previous version back on the updated hosts (a failed gate, abort, undo).
    RollingBack,
    Completed,
    RolledBack,
    Aborted,
    Undone,
    Failed,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Running => "running",
            RolloutPhase::Paused => "paused",
            RolloutPhase::WaitingPromote => "waiting_promote",
            RolloutPhase::RollingBack => "rolling_back",
            RolloutPhase::Completed => "completed",
            RolloutPhase::RolledBack => "rolled_back",
            RolloutPhase::Aborted => "aborted",
            RolloutPhase::Undone => "undone",
            RolloutPhase::Failed => "failed",
        }
    }

    /// Nothing more will happen (undo of a completed rollout starts a rollback again).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RolloutPhase::Completed
                | RolloutPhase::RolledBack
                | RolloutPhase::Aborted
                | RolloutPhase::Undone
                | RolloutPhase::Failed
        )
    }

    /// The final phase an `ended` outcome names.
    pub fn from_outcome(outcome: &str) -> Option<RolloutPhase> {
        Some(match outcome {
            "completed" => RolloutPhase::Completed,
            "rolled_back" => RolloutPhase::RolledBack,
            "aborted" => RolloutPhase::Aborted,
            "undone" => RolloutPhase::Undone,
            "failed" => RolloutPhase::Failed,
            _ => return None,
        })
    }
}

/// Where one host of a rollout is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutHostState {
    /// Its wave has not reached it.
    #[default]
    Pending,
    /// The `--before` step runs.
    Before,
    /// The deploy command is out.
    Deploying,
    /// Runs the new version.
    Updated,
    /// Its before step or deploy failed (or was refused).
    Failed,
    /// The rollback command is out.
    RollingBack,
    /// Back on the previous version.
    RolledBack,
    /// The rollback failed (or no previous version was known): needs an operator.
    RollbackFailed,
}

impl RolloutHostState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutHostState::Pending => "pending",
            RolloutHostState::Before => "before",
            RolloutHostState::Deploying => "deploying",
            RolloutHostState::Updated => "updated",
            RolloutHostState::Failed => "failed",
            RolloutHostState::RollingBack => "rolling_back",
            RolloutHostState::RolledBack => "rolled_back",
            RolloutHostState::RollbackFailed => "rollback_failed",
        }
    }
}

/// One rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: String,
    pub service: String,
    pub version: String,
    pub strategy: RolloutStrategy,
    pub phase: RolloutPhase,
    /// Why it ended, or why it is rolling back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub started_by: String,
    pub started_at_unix_ms: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ended_at_unix_ms: i64,
    /// The wave being updated or gated (0 = the canary).
    pub wave: u32,
    pub waves: Vec<RolloutWaveView>,
    pub hosts: Vec<RolloutHostView>,
    /// Hosts matched but left out, and why (in maintenance, lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedHost>,
    /// The gates as started.
    pub gates: RolloutGates,
    /// Every step, oldest first.
    pub history: Vec<RolloutStepView>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutGates {
    pub ready_samples: u32,
    pub soak_ms: u64,
    pub manual: bool,
    pub two_person: bool,
    pub max_unavailable: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub before_job: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub keep_old_ms: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub max_p95_ms: u64,
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutWaveView {
    pub wave: u32,
    pub hosts: Vec<String>,
    /// `pending`, `updating`, `soaking`, `waiting_promote`, `passed`, `failed`.
    pub state: String,
    /// When its soak ends (while soaking).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub soak_until_unix_ms: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutHostView {
    pub host: String,
    pub wave: u32,
    pub state: RolloutHostState,
    /// The version it ran at start (where a rollback goes).
    pub previous: String,
    /// The version its heartbeat reports now.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub running: String,
    /// The newest command the rollout sent it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// How many deploy commands of this rollout it completed (1 after an update; the
    /// "exactly once" of a failover mid-wave).
    pub deploys: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutStepView {
    pub at_unix_ms: i64,
    pub epoch: u64,
    /// `started`, `wave_started`, `host_command`, `gate`, `control`, `ended`.
    pub step: String,
    pub detail: String,
}
