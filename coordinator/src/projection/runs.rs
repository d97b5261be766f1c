//! What the run histories of the projection share (drills' runs, groups' failovers): per
//! name, a bounded list of records, each opened by a `started` event and closed by a later
//! ending event of the same run; an ending with nothing open is a record of its own. Pure.

use std::collections::BTreeMap;

/// One event of a run as the history needs it.
pub(super) struct Step<'a> {
    /// `started`, or an ending phase (`passed`, `failed`, `completed`...).
    pub phase: &'a str,
    /// When it was recorded.
    pub at_unix_ms: i64,
    pub took_ms: u64,
    pub detail: &'a str,
}

/// A record of one run.
pub(super) trait Run {
    fn is_running(&self) -> bool;
    /// Closes the run with its ending `step`.
    fn close(&mut self, step: &Step<'_>);
}

/// The history of `name`, made if `all` holds fewer than `kept` names; `None` for an empty
/// name or no room left.
pub(super) fn history<'m, H: Default>(
    all: &'m mut BTreeMap<String, H>,
    name: &str,
    kept: usize,
) -> Option<&'m mut H> {
    if name.is_empty() || (!all.contains_key(name) && all.len() >= kept) {
        return None;
    }
    Some(all.entry(name.to_owned()).or_default())
}

/// Folds `step` into `runs`: an ending phase (one of `ends`) closes the newest open record
/// that is `same` run; anything else — a start, or an ending with nothing open — appends
/// `open(ended_unix_ms)` (0 for a start) and keeps the newest `kept`.
pub(super) fn fold<R: Run>(
    runs: &mut Vec<R>,
    step: &Step<'_>,
    ends: [&str; 2],
    kept: usize,
    same: impl Fn(&R) -> bool,
    open: impl FnOnce(i64) -> R,
) {
    let ending = ends.contains(&step.phase);
    let newest_open = (runs.iter_mut().rev()).find(|r| r.is_running() && same(r));
    match newest_open {
        Some(r) if ending => r.close(step),
        _ => {
            let ended = if step.phase == "started" {
                0
            } else {
                step.at_unix_ms
            };
            runs.push(open(ended));
            let excess = runs.len().saturating_sub(kept);
            runs.drain(..excess);
        }
    }
}
