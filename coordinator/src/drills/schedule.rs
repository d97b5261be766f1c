//! When a drill is due (pure: its config, its history folded from the log, `now`, the term and
//! whether maintenance holds it). Slots are `every` long and aligned to the Unix epoch; a slot's
//! run may start at its start plus a jitter derived from the drill's name and the slot, the
//! same on every coordinator. A slot is run at most once: a `started` event claims it
//! (`DrillHistory::last_slot_unix_ms`), whoever recorded it, so a coordinator that becomes
//! active after a failover finds the slot already claimed. A slot missed entirely (no
//! active coordinator, maintenance through it) is not made up: the current slot runs.

use crate::drills::config::DrillConfig;
use crate::projection::drills::{DrillHistory, DrillRecord};

/// What the driver should do about one drill now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Start a run for this slot (unix ms of the slot's start).
    Run { slot_unix_ms: i64 },
    /// Nothing before `next_unix_ms`.
    Wait { next_unix_ms: i64 },
    /// Due, but held by maintenance; tried again on the next tick.
    Deferred { slot_unix_ms: i64 },
    /// Switched off (`enabled = false`); it goes overdue.
    Disabled,
    /// A run is open and still within its time.
    Running { run_id: String },
    /// A run that can no longer end by itself: close it as failed with this reason.
    Abandon { run_id: String, why: String },
}

const fn ms(d: std::time::Duration) -> i64 {
    // Config durations are bounded far below i64::MAX ms; saturate anyway.
    let v = d.as_millis();
    if v > i64::MAX as u128 {
        i64::MAX
    } else {
        v as i64
    }
}

/// The start of the slot holding `now`.
pub fn slot_of(every_ms: i64, now: i64) -> i64 {
    let every = every_ms.max(1);
    now.div_euclid(every) * every
}

/// The offset into slot `slot` at which drill `name` starts, in `[0, jitter_ms)` (0 with no
/// jitter). FNV-1a of the name and the slot: stable across coordinators and releases.
pub fn jitter_ms(name: &str, slot: i64, jitter_ms: i64) -> i64 {
    if jitter_ms <= 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain(slot.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % jitter_ms as u64) as i64
}

/// When slot `slot` of `d` may start.
pub fn start_of(d: &DrillConfig, slot: i64) -> i64 {
    slot.saturating_add(jitter_ms(&d.name, slot, ms(d.jitter)))
}

/// When the next run of `d` is due: the current slot's start if it is not claimed yet (may be
/// in the past: due now), else the next slot's.
pub fn next_due(d: &DrillConfig, h: Option<&DrillHistory>, now: i64) -> i64 {
    let every = ms(d.every).max(1);
    let slot = slot_of(every, now);
    let claimed = h.is_some_and(|h| h.last_slot_unix_ms >= slot);
    if claimed {
        start_of(d, slot.saturating_add(every))
    } else {
        start_of(d, slot)
    }
}

/// Whether an open run can no longer end by itself, and why. A run of another term ended with
/// its term (its coordinator stopped or lost the lease mid-run) — except a coordinator
/// failover, whose own handovers change terms: it is given its `timeout`, as every run is.
/// `margin_ms` leaves the running coordinator time to record its own timeout first.
fn abandoned(r: &DrillRecord, d: Option<&DrillConfig>, epoch: u64, now: i64) -> Option<String> {
    let timeout = d.map_or(600_000, |d| ms(d.timeout));
    let margin_ms = 30_000;
    if now.saturating_sub(r.started_unix_ms) > timeout.saturating_add(margin_ms) {
        return Some(format!(
            "abandoned: no result within its timeout ({} ms) of epoch {}",
            timeout, r.epoch
        ));
    }
    let changes_terms = r.kind == "coordinator_failover";
    if r.epoch != epoch && !changes_terms {
        return Some(format!(
            "abandoned: the term (epoch {}) that ran it ended before its result",
            r.epoch
        ));
    }
    None
}

/// What to do about `d` at `now`, in term `epoch`, `held` by maintenance or not. Open runs of
/// any drill are looked at first (`open_elsewhere`: one drill runs at a time, fleet-wide).
pub fn decide(
    d: &DrillConfig,
    h: Option<&DrillHistory>,
    open_elsewhere: Option<&DrillRecord>,
    epoch: u64,
    held: bool,
    now: i64,
) -> Due {
    if let Some(r) = h.and_then(|h| h.open().next()) {
        return match abandoned(r, Some(d), epoch, now) {
            Some(why) => Due::Abandon {
                run_id: r.run_id.clone(),
                why,
            },
            None => Due::Running {
                run_id: r.run_id.clone(),
            },
        };
    }
    if !d.enabled {
        return Due::Disabled;
    }
    let every = ms(d.every).max(1);
    let slot = slot_of(every, now);
    let next = next_due(d, h, now);
    if next > now {
        return Due::Wait { next_unix_ms: next };
    }
    if let Some(r) = open_elsewhere {
        return Due::Running {
            run_id: r.run_id.clone(),
        };
    }
    if held {
        return Due::Deferred { slot_unix_ms: slot };
    }
    Due::Run { slot_unix_ms: slot }
}

/// An open run of a drill no longer declared: whether to close it, and why (pure).
pub fn orphan(r: &DrillRecord, epoch: u64, now: i64) -> Option<String> {
    abandoned(r, None, epoch, now)
}

/// Whether `d` is overdue at `now`: no run passed within `every` + `grace` — counted from the
/// last pass, else from `since` (when the drill was first known to this term's fold: the
/// first `started` of it, or the term's start when it never ran).
pub fn overdue(d: &DrillConfig, h: Option<&DrillHistory>, since: i64, now: i64) -> Option<i64> {
    let from = match h {
        Some(h) if h.last_passed_unix_ms > 0 => h.last_passed_unix_ms,
        Some(h) => h
            .runs
            .first()
            .map_or(since, |r| r.started_unix_ms.min(since)),
        None => since,
    };
    let age = now.saturating_sub(from);
    (age > ms(d.overdue_after())).then_some(age)
}
