//! What the coordinators keep in the KV bucket `ops_leader`: the lease's key and value.

use serde::{Deserialize, Serialize};

/// The single key of the lease in `ops_leader`.
pub const LEADER_KEY: &str = "leader";

/// What the lease's value says (informational: leadership is decided by revisions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub holder: String,
    pub color: String,
    /// Set when the previous holder handed the lease over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_by: Option<String>,
    /// Fast takeover: the writer promises to act at most this many milliseconds after sending
    /// this write (on its monotonic clock). A standby may CAS this revision once that window
    /// plus its slack has passed since it first saw it. Absent (older coordinators, fast
    /// takeover off): only the TTL ends the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_window_ms: Option<u64>,
}
