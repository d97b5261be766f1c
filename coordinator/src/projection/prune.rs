//! Which command and alert records may be pruned, per host, oldest first. Records are keyed
//! by ids, not per host, so a host's share is tracked in a `PruneIndex` derived from the
//! records themselves (never stored: `Fleet::from_rows` rebuilds it, so a reloaded fleet
//! prunes exactly as a refold does).

use std::collections::{BTreeMap, BTreeSet};

use super::alerts::AlertRecord;
use super::commands::CommandRecord;

/// A prunable record's owner (a host name) and place in its owner's order: (time, id).
pub(super) type Slot = (String, (i64, String));

/// Prunable records per owner, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct PruneIndex(BTreeMap<String, BTreeSet<(i64, String)>>);

impl PruneIndex {
    pub(super) fn insert(&mut self, slot: Slot) {
        self.0.entry(slot.0).or_default().insert(slot.1);
    }

    /// Moves a record from `before` to `after` (either may be `None`: not prunable) and
    /// returns the owner of `after` with the ids beyond `cap` it must drop, oldest first
    /// (already gone from the index).
    pub(super) fn update(
        &mut self,
        before: Option<Slot>,
        after: Option<Slot>,
        cap: usize,
    ) -> Option<(String, Vec<String>)> {
        if before == after {
            return None;
        }
        if let Some((owner, place)) = before {
            if let Some(set) = self.0.get_mut(&owner) {
                set.remove(&place);
                if set.is_empty() {
                    self.0.remove(&owner);
                }
            }
        }
        let (owner, place) = after?;
        let set = self.0.entry(owner.clone()).or_default();
        set.insert(place);
        let mut pruned = Vec::new();
        while set.len() > cap {
            match set.pop_first() {
                Some((_, id)) => pruned.push(id),
                None => break,
            }
        }
        Some((owner, pruned))
    }
}

/// A command record's slot, if it may be pruned: a finished one, or one never issued
/// (lifecycle events without a `command_issued`: nothing will finish it). Its owner is the
/// target host, or for one never issued the host that last reported on it; its place is the
/// time of its newest step. An open command has none: it is never pruned.
pub(super) fn command_slot(id: &str, r: &CommandRecord) -> Option<Slot> {
    let issued = !r.target.is_empty();
    if issued && !r.is_finished() {
        return None;
    }
    let newest = r.history.last();
    let owner = if issued {
        r.target.clone()
    } else {
        newest.map(|s| s.by.clone()).unwrap_or_default()
    };
    Some((owner, (newest.map_or(0, |s| s.at_unix_ms), id.to_owned())))
}

/// An alert record's slot, if it may be pruned: resolved (or never transitioned: only
/// notifications seen). Its owner is the alert's host; its place is when the current state
/// began. Pending and firing alerts are never pruned.
pub(super) fn alert_slot(id: &str, r: &AlertRecord) -> Option<Slot> {
    use opsfleet_proto::api::AlertState::{Firing, Pending};
    if matches!(r.state, Some(Pending | Firing)) {
        return None;
    }
    Some((r.host.clone(), (r.since_unix_ms, id.to_owned())))
}
