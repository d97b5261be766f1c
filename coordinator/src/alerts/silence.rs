//! What the delivery loop does with an alert's current transition on one route, given the
//! silences in the projection and `now` (pure): send it, hold it (a matching silence is
//! active: skipped, nothing recorded, decided again next tick), or drop it (never sent).
//! Everything comes from the folded log, so a newly active coordinator honours silences
//! created under the previous one.

use std::collections::BTreeMap;

use opsfleet_proto::api::AlertState;

use crate::projection::{AlertRecord, Silences};

/// The delivery loop's choice for one (alert, route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send it now, then record the outcome.
    Send,
    /// A matching silence is active: skip it, record nothing, look again later.
    Hold { silence: String },
    /// Nothing to send: not notifiable, already recorded for the route, too old, or a resolve
    /// whose firing this route never got (no orphan resolve).
    Drop,
}

/// Decides for `rec`'s current transition on `route`, the host's labels being `labels`.
///
/// * A firing or a resolve is held while any silence matching the alert is active.
/// * A transition is sent once no silence holds it, if it is younger than `max_age_ms`
///   counted from when it began or from when the last silence that held it ended (so a
///   2-hour silence over a 1-hour `deliver_max_age` still notifies a still-firing alert at
///   its end).
/// * A resolve is sent only on a route that has a record for the alert's newest firing: a
///   firing silenced (or dropped) throughout and resolved sends nothing at all; a firing
///   notified before a silence gets its resolve once the silence ends (receivers like
///   PagerDuty would otherwise keep an incident open).
/// * An ack changes nothing here: the engine notifies each transition once (no repeats), and
///   a resolve after an ack still goes out.
pub fn verdict(
    rec: &AlertRecord,
    route: &str,
    silences: &Silences,
    labels: &BTreeMap<String, String>,
    now_unix_ms: i64,
    max_age_ms: i64,
) -> Verdict {
    if !rec.notifiable() || rec.notified(&rec.transition_id, route) {
        return Verdict::Drop;
    }
    if rec.state == Some(AlertState::Resolved) && !rec.heard(&rec.firing_transition_id, route) {
        return Verdict::Drop;
    }
    if let Some(s) = silences
        .silencing(&rec.rule, &rec.host, labels, now_unix_ms)
        .next()
    {
        return Verdict::Hold {
            silence: s.id.clone(),
        };
    }
    // When the last matching silence let go of it (after it began, by now).
    let released = silences
        .iter()
        .filter(|s| s.matches(&rec.rule, &rec.host, labels))
        .map(|s| s.end_unix_ms())
        .filter(|end| (rec.since_unix_ms..=now_unix_ms).contains(end))
        .max();
    let from = released.unwrap_or(rec.since_unix_ms).max(rec.since_unix_ms);
    if now_unix_ms.saturating_sub(from) > max_age_ms {
        return Verdict::Drop;
    }
    Verdict::Send
}

#[cfg(test)]
#[path = "silence_tests.rs"]
mod tests;
