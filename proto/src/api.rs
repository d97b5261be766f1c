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
    /// `active`, `standby`, or `unknown` while no election runs.
    pub role: String,
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
    pub hosts: Vec<HostView>,
    /// Coordinators as the log knows them (from their leadership events).
    #[serde(default)]
    pub coordinators: Vec<CoordinatorView>,
}

/// One coordinator as the log knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorView {
    pub name: String,
    pub color: String,
    /// Role per the newest leadership event: `active`, `standby` or `unknown`.
    pub role: String,
    pub epoch: u64,
    /// Leadership changes, oldest first.
    pub history: Vec<LeadershipChangeView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadershipChangeView {
    pub epoch: u64,
    pub role: String,
    pub reason: String,
    pub at_unix_ms: i64,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    pub first: u64,
    pub last: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskView {
    pub path: String,
    pub used_percent: f64,
    pub inodes_used_percent: f64,
    /// `ok`, `warn`, `crit` or `unknown`.
    pub level: String,
    pub total_bytes: u64,
    pub avail_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleView {
    pub name: String,
    pub kind: String,
    /// `running`, `paused`, `disabled`, `failed` or `unknown`.
    pub state: String,
}

/// Request for `ops.api.failover`: the active coordinator releases its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// Hand the lease to this coordinator; otherwise whichever standby is first takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
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

/// Request for `ops.api.command`: one action for a set of hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequest {
    /// `pause`, `resume`, `disable`, `enable`, `noop` or `drain`.
    pub action: String,
    /// The module the action is about (not for `noop` and `drain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Target hosts; with `all`, every host the coordinator knows.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub all: bool,
    /// The command expires this long after it is issued, in milliseconds.
    pub deadline_ms: u64,
    /// The operator's identity, recorded on every command.
    pub issued_by: String,
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
    pub action: String,
    pub module: String,
    pub deadline_unix_ms: i64,
    /// `issued`, `accepted`, `completed`, `failed`, `rejected`, `expired` or `unknown`.
    pub state: String,
    pub detail: String,
    /// More than 1 means the command ran twice.
    pub accepted_count: u32,
    pub history: Vec<CommandStepView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStepView {
    pub state: String,
    pub at_unix_ms: i64,
    pub by: String,
    pub detail: String,
}

impl CommandView {
    /// Completed, failed, rejected or expired: nothing more will happen.
    pub fn is_final(&self) -> bool {
        matches!(
            self.state.as_str(),
            "completed" | "failed" | "rejected" | "expired"
        )
    }
}

/// Error reply of any API verb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub responder: String,
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_request_defaults_from_empty_json() {
        let req: StatusRequest = serde_json::from_slice(b"{}").unwrap();
        assert_eq!(req, StatusRequest::default());
    }
}
