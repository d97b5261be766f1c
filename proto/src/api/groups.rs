//! `ops.api.service_failover` (move an active/standby group's active role now, or drill it)
//! and `ops.api.groups` (every group, its members and their roles, the last failovers), as
//! `opsctl service failover` and `opsctl service groups` speak them.

use serde::{Deserialize, Serialize};

use super::{Liveness, ProbeStatus, Responder, ServiceRunState};

/// Failovers of each group a `groups` reply shows (newest last).
pub const GROUP_FAILOVERS_SHOWN: usize = 5;

/// `service_failover`: move group `group`'s active role to `to` (else the healthiest
/// standby). A drill is a real failover, reported as one: its timings are what a failure
/// would cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFailoverRequest {
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default)]
    pub drill: bool,
    /// Informational: the coordinator records the operator named by the request's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Reply to `service_failover`, once the new active reported its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceFailoverReply {
    pub responder: Responder,
    pub group: String,
    pub service: String,
    /// The member that was active (empty when none was).
    pub from: String,
    pub to: String,
    /// From the decision to the new active reporting its role.
    pub took_ms: u64,
    pub drill: bool,
    pub epoch: u64,
}

/// `groups`: every group (or only `group`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Reply to `groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupsReply {
    pub responder: Responder,
    pub groups: Vec<GroupView>,
}

/// One group: its members and its last failovers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub name: String,
    pub members: Vec<GroupMemberView>,
    /// The newest `GROUP_FAILOVERS_SHOWN`, oldest first.
    pub failovers: Vec<GroupFailoverView>,
}

/// One member as the answering coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberView {
    pub host: String,
    pub service: String,
    /// "active", "standby", or empty before the agent reported one.
    pub role: String,
    pub state: ServiceRunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<ProbeStatus>,
    pub liveness: Liveness,
    pub maintenance: bool,
    /// "healthy", "starting", "unfit": how fit it is to be the active one.
    pub fitness: String,
    /// Why it is unfit; empty when it is not.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
}

/// One failover of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFailoverView {
    pub service: String,
    pub from_host: String,
    pub to_host: String,
    pub reason: String,
    /// "started", "completed", "failed".
    pub phase: String,
    pub drill: bool,
    pub epoch: u64,
    pub requested_by: String,
    pub started_unix_ms: i64,
    pub ended_unix_ms: i64,
    pub took_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}
