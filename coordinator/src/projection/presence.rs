//! A host's presence as judged at a given time: `up`, `late`, `lost` or `unknown` from its
//! last report and declared heartbeat interval, and the active coordinator's declared-lost
//! verdict from the log. Pure; every view and the command targeting judge alike.

use opsfleet_proto::api::Liveness;

use super::{Fleet, HostState};

/// A host is `up` while its newest event is at most this many heartbeat intervals old.
pub const UP_INTERVALS: i64 = 2;
/// ... `late` up to this many, `lost` beyond.
pub const LATE_INTERVALS: i64 = 5;

/// `up`, `late`, `lost` or `unknown` (no declared heartbeat interval) at `now_unix_ms`, for a
/// host last heard from at `seen_unix_ms` (`Fleet::seen_unix_ms`).
pub fn liveness(h: &HostState, seen_unix_ms: i64, now_unix_ms: i64) -> Liveness {
    let interval = i64::try_from(h.heartbeat_interval_ms().unwrap_or(0)).unwrap_or(i64::MAX);
    if interval == 0 || seen_unix_ms <= 0 {
        return Liveness::Unknown;
    }
    let age = now_unix_ms.saturating_sub(seen_unix_ms);
    if age <= interval.saturating_mul(UP_INTERVALS) {
        Liveness::Up
    } else if age <= interval.saturating_mul(LATE_INTERVALS) {
        Liveness::Late
    } else {
        Liveness::Lost
    }
}

/// Whether the active coordinator's liveness check declared `h` lost and it stayed silent.
pub fn declared_lost(fleet: &Fleet, h: &HostState) -> bool {
    fleet
        .alerts()
        .liveness
        .get(&h.host)
        .is_some_and(|l| l.lost && fleet.seen_unix_ms(h) <= l.last_seen_unix_ms)
}
