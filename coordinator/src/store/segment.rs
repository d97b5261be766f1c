//! The log segment codec and keys: a run of consecutive log entries (`(stream seq, wire bytes)`,
//! ascending) packed into one sled value, stored under its first entry's stream sequence.
//!
//! Layout: `count: u32 LE`, then `count` index entries `(seq: u64 LE, len: u32 LE)`, then the
//! entries' bytes back to back in index order. A segment's encoded value (header and index
//! included) is at most `MAX_BYTES`, unless it holds one event too large for that alone: sled
//! 0.34 writes any value, and any B-tree node, above a quarter of its 512 KiB log segment as a
//! separate blob file that it never fsyncs, so a leaf of up to 17 values must stay well under
//! 128 KiB to keep the flush-before-ack promise. An event alone above that budget shares the
//! limitation the per-event store always had (its value may end up in an unsynced blob).

use super::StoreError;

/// Key prefix of the log's segments: `s/<first stream seq BE>`.
pub(super) const SEGMENT: &[u8] = b"s/";

/// `prefix` (two bytes) then `seq` big-endian, so keys sort by seq.
pub(super) fn seq_key(prefix: &[u8], seq: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..2].copy_from_slice(prefix);
    k[2..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The seq of a `seq_key`.
pub(super) fn key_seq(k: &[u8]) -> Result<u64, StoreError> {
    k.get(2..)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            what: "log key",
            key: format!("{k:?}"),
        })
}

/// Adds `entries` (ascending, all new) to `batch` as segments of at most `MAX_BYTES` encoded.
pub(super) fn put_segments<B: AsRef<[u8]>>(batch: &mut sled::Batch, entries: &[(u64, B)]) {
    for run in runs(entries) {
        let part = &entries[run];
        batch.insert(&seq_key(SEGMENT, part[0].0)[..], encode(part));
    }
}

/// Largest encoded segment (count, index and event bytes), unless one event alone is larger.
pub(super) const MAX_BYTES: usize = 6 * 1024;

const COUNT_LEN: usize = 4;
const INDEX_ENTRY_LEN: usize = 12;

/// Why a stored value is not a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("shorter than its header")]
    Truncated,
    #[error("entry lengths do not add up to the value's length")]
    Lengths,
    #[error("stream sequences are not ascending from the key's")]
    Order,
}

/// The encoded length of a segment of `count` entries holding `data` event bytes.
fn encoded_len(count: usize, data: usize) -> usize {
    COUNT_LEN + INDEX_ENTRY_LEN * count + data
}

/// Splits `entries` into consecutive runs whose encoding is at most `MAX_BYTES` each (a run
/// holds at least one entry; a single entry may exceed it), as index ranges.
pub(super) fn runs<B: AsRef<[u8]>>(entries: &[(u64, B)]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, (_, b)) in entries.iter().enumerate() {
        let len = b.as_ref().len();
        if i > start && encoded_len(i - start + 1, bytes + len) > MAX_BYTES {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < entries.len() {
        runs.push(start..entries.len());
    }
    runs
}

/// Packs `entries` (ascending by seq, each at most `u32::MAX` bytes) into one segment value.
pub(super) fn encode<B: AsRef<[u8]>>(entries: &[(u64, B)]) -> Vec<u8> {
    let data: usize = entries.iter().map(|(_, b)| b.as_ref().len()).sum();
    let mut out = Vec::with_capacity(COUNT_LEN + INDEX_ENTRY_LEN * entries.len() + data);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (seq, b) in entries {
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(&(b.as_ref().len() as u32).to_le_bytes());
    }
    for (_, b) in entries {
        out.extend_from_slice(b.as_ref());
    }
    out
}

/// A checked segment: iterate its entries with `entries`.
pub(super) struct Segment<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

/// Reads the u32/u64 at `at` (the caller checked the bounds).
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<'a> Segment<'a> {
    /// Checks `value` (stored under `first_seq`): its lengths add up and its sequences start at
    /// `first_seq` and ascend, so that `entries` cannot go out of bounds.
    pub(super) fn parse(value: &'a [u8], first_seq: u64) -> Result<Self, Malformed> {
        if value.len() < COUNT_LEN {
            return Err(Malformed::Truncated);
        }
        let count = le_u32(value, 0) as usize;
        let index_end = count
            .checked_mul(INDEX_ENTRY_LEN)
            .and_then(|n| n.checked_add(COUNT_LEN))
            .filter(|end| *end <= value.len())
            .ok_or(Malformed::Truncated)?;
        let index = &value[COUNT_LEN..index_end];
        let data = &value[index_end..];
        let mut total = 0usize;
        let mut prev: Option<u64> = None;
        for i in 0..count {
            let seq = le_u64(index, i * INDEX_ENTRY_LEN);
            let ordered = match prev {
                None => seq == first_seq,
                Some(p) => seq > p,
            };
            if !ordered {
                return Err(Malformed::Order);
            }
            prev = Some(seq);
            total += le_u32(index, i * INDEX_ENTRY_LEN + 8) as usize;
        }
        if total != data.len() {
            return Err(Malformed::Lengths);
        }
        Ok(Segment { index, data })
    }

    /// The entries, ascending by seq, borrowing the value's bytes.
    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let (index, data) = (self.index, self.data);
        let mut at = 0usize;
        index.chunks_exact(INDEX_ENTRY_LEN).map(move |e| {
            let seq = le_u64(e, 0);
            let len = le_u32(e, 8) as usize;
            let bytes = &data[at..at + len];
            at += len;
            (seq, bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_then_parse_gives_the_entries_back(
            first in 0u64..1_000_000,
            gaps_and_lens in proptest::collection::vec((1u64..5, 0usize..3000), 1..40),
        ) {
            let mut seq = first;
            let mut entries = Vec::new();
            for (i, (gap, len)) in gaps_and_lens.iter().enumerate() {
                if i > 0 {
                    seq += gap;
                }
                entries.push((seq, vec![(i % 251) as u8; *len]));
            }
            let mut back = Vec::new();
            for run in runs(&entries) {
                let part = &entries[run];
                let value = encode(part);
                prop_assert!(part.len() == 1 || value.len() <= MAX_BYTES, "{} entries encode to {}", part.len(), value.len());
                let seg = Segment::parse(&value, part[0].0).unwrap();
                back.extend(seg.entries().map(|(s, b)| (s, b.to_vec())));
            }
            prop_assert_eq!(back, entries);
        }

        #[test]
        fn many_small_events_stay_within_the_cap_index_included(
            lens in proptest::collection::vec(0usize..64, 1..2000),
        ) {
            let entries: Vec<(u64, Vec<u8>)> =
                lens.iter().enumerate().map(|(i, len)| (i as u64 + 1, vec![0u8; *len])).collect();
            let mut covered = 0;
            for run in runs(&entries) {
                prop_assert_eq!(run.start, covered);
                covered = run.end;
                let part = &entries[run];
                prop_assert!(encode(part).len() <= MAX_BYTES);
            }
            prop_assert_eq!(covered, entries.len());
        }

        #[test]
        fn parse_never_panics_on_mutated_segments(
            lens in proptest::collection::vec(0usize..40, 0..8),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
            first in 0u64..4,
        ) {
            let entries: Vec<(u64, Vec<u8>)> =
                lens.iter().enumerate().map(|(i, len)| (i as u64 + first, vec![7u8; *len])).collect();
            let mut value = encode(&entries);
            for (at, byte) in edits {
                if !value.is_empty() {
                    let at = at % value.len();
                    value[at] = byte;
                }
            }
            value.truncate(cut % (value.len() + 1));
            if let Ok(seg) = Segment::parse(&value, first) {
                let total: usize = seg.entries().map(|(_, b)| b.len()).sum();
                prop_assert!(total <= value.len());
            }
        }
    }

    #[test]
    fn a_segment_under_another_key_is_refused() {
        let value = encode(&[(7u64, b"a".to_vec()), (9, b"b".to_vec())]);
        assert!(Segment::parse(&value, 7).is_ok());
        assert_eq!(Segment::parse(&value, 8).err(), Some(Malformed::Order));
        assert_eq!(
            Segment::parse(&value[..value.len() - 1], 7).err(),
            Some(Malformed::Lengths)
        );
        assert_eq!(
            Segment::parse(&value[..10], 7).err(),
            Some(Malformed::Truncated)
        );
    }

    #[test]
    fn one_large_event_gets_a_run_of_its_own() {
        let entries = vec![
            (1u64, vec![0u8; 10]),
            (2, vec![0u8; MAX_BYTES + 1]),
            (3, vec![0u8; 10]),
        ];
        assert_eq!(runs(&entries), vec![0..1, 1..2, 2..3]);
    }
}
