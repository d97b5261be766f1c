//! Caps on what one host can grow in the projection, and the capped-map helper the fold uses.
//!
//! An agent names its incarnations, modules, disks, checks, log files and jobs itself, so
//! without caps one host could grow the coordinator's memory (and its rows, and every snapshot)
//! without end. Each structure keyed by an agent-chosen name keeps at most its cap of entries;
//! what does not fit is dropped and counted in the host's `Truncated` counts, which travel in
//! the host row, so a refold reproduces them. Every decision depends on the state and the event
//! only (no clock, no randomness): the fold stays deterministic.

use std::collections::BTreeMap;

/// Agent incarnations tracked per host (the newest by UUID order; UUIDv7, so by start time).
/// An event of an older incarnation than all of them, once the host has this many, belongs
/// to a closed incarnation: it is dropped as a duplicate, never folded (twice or at all).
pub const INCARNATIONS_KEPT: usize = 8;
/// Seq gap ranges tracked per incarnation. Beyond it the oldest range is closed: its seqs
/// count as seen, so a late arrival there is dropped as a duplicate.
pub const GAP_RANGES_KEPT: usize = 64;
/// Modules per host.
pub const MODULES_KEPT: usize = 64;
/// Disk paths per host (the disk module may report every real mount).
pub const DISKS_KEPT: usize = 128;
/// Health checks per host.
pub const HEALTH_CHECKS_KEPT: usize = 64;
/// Log files with incidents per host (log paths may be globs over rotated files).
pub const LOG_FILES_KEPT: usize = 128;
/// Sentinel files per host.
pub const SENTINELS_KEPT: usize = 64;
/// Backup jobs per host.
pub const BACKUP_JOBS_KEPT: usize = 32;
/// Supervised services per host.
pub const SERVICES_KEPT: usize = 64;
/// Janitor roots per host.
pub const JANITOR_ROOTS_KEPT: usize = 32;
/// Labels kept from a heartbeat (the first ones by name).
pub const LABELS_KEPT: usize = 64;
/// Finished (or never issued) command records kept per host; open ones are never pruned.
pub const COMMANDS_KEPT: usize = 256;
/// Resolved alerts kept per host; pending and firing ones are never pruned.
pub const ALERTS_KEPT: usize = 256;
/// Silences kept (fleet-wide; operators make them, never agents). The API refuses a new one
/// while this many are active, so the fold's pruning drops only ended ones.
pub const SILENCES_KEPT: usize = 1024;
/// Label and rule matchers kept per silence (the API refuses more).
pub const SILENCE_MATCHERS_KEPT: usize = 16;
/// Longest name (path, check, job, label) taken in; a longer one is dropped like one beyond
/// its map's cap. Paths are at most `PATH_MAX` (4096) bytes on Linux.
pub const NAME_BYTES_KEPT: usize = 4096;
/// Free text (excerpts, reasons, details, probes) is kept up to this many bytes.
pub const TEXT_BYTES_KEPT: usize = 1024;
/// A module config (its TOML) larger than this is not kept for rollbacks (counted).
pub const CONFIG_BYTES_KEPT: usize = 16 * 1024;

/// `text` cut to at most `TEXT_BYTES_KEPT` bytes, at a character boundary.
pub fn clip(text: &str) -> String {
    clipped(text).to_owned()
}

/// `text` cut to `TEXT_BYTES_KEPT` bytes at a character boundary, borrowed.
fn clipped(text: &str) -> &str {
    let mut end = text.len().min(TEXT_BYTES_KEPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Sets `dst` to `clip(text)`, without allocating when it already holds that (the common
/// case on the ingest path: a host repeats its version, kinds and names) or when its buffer
/// is large enough.
pub fn set_clipped(dst: &mut String, text: &str) {
    let text = clipped(text);
    if dst != text {
        dst.clear();
        dst.push_str(text);
    }
}

/// The entry for `key` in `map`, which holds at most `cap` entries: the existing one; a new
/// one (`make`) while there is room; when full, a new one in place of the entry whose
/// `recency` is the oldest, if that is older than `recency`. Otherwise (or for a name longer
/// than `NAME_BYTES_KEPT`) `None`, and `dropped` counts the name not taken in (an eviction
/// counts the evicted one). Costs a scan of the map only when a new name arrives at a full
/// map.
pub(super) fn capped_entry<'m, V, R: Ord + ?Sized>(
    map: &'m mut BTreeMap<String, V>,
    key: &str,
    cap: usize,
    recency: &R,
    recency_of: impl Fn(&V) -> &R,
    make: impl FnOnce() -> V,
    dropped: &mut u64,
) -> Option<&'m mut V> {
    if map.contains_key(key) {
        return map.get_mut(key);
    }
    if key.len() > NAME_BYTES_KEPT {
        *dropped = dropped.saturating_add(1);
        return None;
    }
    if map.len() >= cap {
        let oldest = map
            .iter()
            .min_by(|a, b| recency_of(a.1).cmp(recency_of(b.1)).then(a.0.cmp(b.0)))
            .filter(|(_, v)| recency_of(v) < recency)
            .map(|(k, _)| k.clone());
        *dropped = dropped.saturating_add(1);
        let oldest = oldest?;
        map.remove(&oldest);
    }
    Some(map.entry(key.to_owned()).or_insert_with(make))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(map: &mut BTreeMap<String, u64>, key: &str, at: u64, dropped: &mut u64) -> bool {
        match capped_entry(map, key, 3, &at, |v| v, || 0, dropped) {
            Some(v) => {
                *v = at;
                true
            }
            None => false,
        }
    }

    #[test]
    fn a_full_map_evicts_its_oldest_entry_for_a_newer_one_and_refuses_an_older_one() {
        let mut map = BTreeMap::new();
        let mut dropped = 0;
        assert!(put(&mut map, "a", 5, &mut dropped));
        assert!(put(&mut map, "b", 6, &mut dropped));
        assert!(put(&mut map, "c", 7, &mut dropped));
        assert_eq!(dropped, 0);
        // An existing name is always updated in place.
        assert!(put(&mut map, "a", 8, &mut dropped));
        assert_eq!(dropped, 0);
        // A newer name takes the place of the oldest ("b" at 6).
        assert!(put(&mut map, "d", 9, &mut dropped));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
        assert_eq!(dropped, 1);
        // A name no newer than every kept one is refused.
        assert!(!put(&mut map, "e", 7, &mut dropped));
        assert_eq!(map.len(), 3);
        assert_eq!(dropped, 2);
        // An over-long name is refused even with room.
        map.clear();
        assert!(!put(
            &mut map,
            &"n".repeat(NAME_BYTES_KEPT + 1),
            1,
            &mut dropped
        ));
        assert_eq!((map.len(), dropped), (0, 3));
    }

    #[test]
    fn clip_cuts_at_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(TEXT_BYTES_KEPT);
        let cut = clip(&long);
        assert!(cut.len() <= TEXT_BYTES_KEPT && cut.len() >= TEXT_BYTES_KEPT - 1);
        assert!(long.starts_with(&cut));
    }

    proptest::proptest! {
        #[test]
        fn set_clipped_leaves_what_clip_gives(
            before in "\\PC{0,40}",
            text in "\\PC{0,600}",
        ) {
            let mut dst = before;
            set_clipped(&mut dst, &text);
            proptest::prop_assert_eq!(dst, clip(&text));
        }
    }
}
