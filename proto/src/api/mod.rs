//! JSON request/reply types of the coordinators' query API (`ops.api.*`).
//!
//! JSON rather than protobuf: these are read by operators' scripts through `opsctl --output
//! json`, and the same structs serialise both. Fields are only ever added.

mod command;
mod configs;
mod console;
mod drills;
mod groups;
mod page;
mod rollouts;
mod rows;
mod services;
mod silences;
mod states;
mod status;

pub use command::*;
pub use configs::*;
pub use console::*;
pub use drills::*;
pub use groups::*;
pub use page::*;
pub use rollouts::*;
pub use rows::*;
pub use services::*;
pub use silences::*;
pub use states::*;
pub use status::*;

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

/// Default page size of `ops.api.status` (a host with its disks and modules is ~1 KB).
pub const STATUS_PAGE_DEFAULT: usize = 200;
/// Largest page of `ops.api.status`: keeps a reply well under NATS's 1 MB `max_payload`.
pub const STATUS_PAGE_MAX: usize = 300;
/// Default page size of `ops.api.hosts` (one summary row is ~300 bytes).
pub const HOSTS_PAGE_DEFAULT: usize = 1000;
/// Largest page of `ops.api.hosts`.
pub const HOSTS_PAGE_MAX: usize = 2000;
/// Default page size of `ops.api.backups`, `ops.api.incidents`, `ops.api.alerts` and
/// `ops.api.services`.
pub const ROWS_PAGE_DEFAULT: usize = 200;
/// Largest page of `ops.api.backups`, `ops.api.incidents`, `ops.api.alerts` and
/// `ops.api.services`.
pub const ROWS_PAGE_MAX: usize = 500;
/// Log excerpts in `ops.api.incidents` are cut to this many bytes (on a char boundary).
pub const EXCERPT_MAX_BYTES: usize = 1024;
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
