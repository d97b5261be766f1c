//! What one probe attempt saw (shared by the probe kinds in `probe.rs`, `http.rs` and
//! `ws.rs`), and how much of a body or message any of them reads.

/// How much of a response body (or WebSocket message) is read.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What one probe saw, before its latency is added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub success: bool,
    pub detail: String,
    pub cert_not_after_unix_ms: Option<i64>,
}

impl Seen {
    pub fn failed(detail: String) -> Self {
        Seen {
            success: false,
            detail,
            cert_not_after_unix_ms: None,
        }
    }
}
