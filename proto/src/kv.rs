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
}
