//! Seq tracking of one agent (or coordinator) incarnation: the highest seq and the gap
//! ranges below it, at most `GAP_RANGES_KEPT` of them, looked up by binary search.

use opsfleet_proto::api::SeqRange;
use serde::{Deserialize, Serialize};

use super::bounds::GAP_RANGES_KEPT;
use super::Verdict;

/// Seqs seen from one agent incarnation: the highest, and the ranges below it never seen
/// (ascending and disjoint, at most `GAP_RANGES_KEPT`).
/// Which event last wrote a piece of state: (incarnation, seq). Later versions win, so a
/// late gap-filling event never overwrites newer state.
pub type Version = (String, u64);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqTrack {
    pub last_seq: u64,
    pub gaps: Vec<SeqRange>,
}

/// What `SeqTrack::accept` did: the verdict, and the gap ranges it closed to stay within
/// `GAP_RANGES_KEPT`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub verdict: Verdict,
    pub closed: Closed,
}

/// Gap ranges closed (oldest first) and the seqs in them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    pub ranges: u64,
    pub seqs: u64,
}

impl SeqTrack {
    /// The gap holding `seq`: a binary search over the ascending, disjoint ranges.
    fn gap_index(&self, seq: u64) -> Option<usize> {
        let i = self.gaps.partition_point(|g| g.last < seq);
        self.gaps
            .get(i)
            .is_some_and(|g| g.first <= seq)
            .then_some(i)
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.last_seq && self.gap_index(seq).is_none()
    }

    /// Marks `seq` as seen (`Duplicate` if it already was). A gap beyond `GAP_RANGES_KEPT`
    /// ranges closes the oldest one: its seqs count as seen from then on.
    pub fn accept(&mut self, seq: u64) -> Accepted {
        if seq > self.last_seq {
            let gap = (seq > self.last_seq + 1).then(|| SeqRange {
                first: self.last_seq + 1,
                last: seq - 1,
            });
            if let Some(g) = gap {
                self.gaps.push(g);
            }
            self.last_seq = seq;
            return Accepted {
                verdict: Verdict::Accepted { gap },
                closed: self.close_oldest_beyond_cap(),
            };
        }
        let Some(i) = self.gap_index(seq) else {
            return Accepted {
                verdict: Verdict::Duplicate,
                closed: Closed::default(),
            };
        };
        // A late arrival fills part of a gap: shrink it, or split it in two.
        let g = self.gaps[i];
        match (g.first < seq, seq < g.last) {
            (false, false) => {
                self.gaps.remove(i);
            }
            (true, false) => self.gaps[i].last = seq - 1,
            (false, true) => self.gaps[i].first = seq + 1,
            (true, true) => {
                self.gaps[i].last = seq - 1;
                self.gaps.insert(
                    i + 1,
                    SeqRange {
                        first: seq + 1,
                        last: g.last,
                    },
                );
            }
        }
        Accepted {
            verdict: Verdict::Accepted { gap: None },
            closed: self.close_oldest_beyond_cap(),
        }
    }

    /// Closes the oldest ranges beyond `GAP_RANGES_KEPT` (one at most, unless the track
    /// was stored by a version without the cap).
    fn close_oldest_beyond_cap(&mut self) -> Closed {
        let mut closed = Closed::default();
        if self.gaps.len() > GAP_RANGES_KEPT {
            let excess = self.gaps.len() - GAP_RANGES_KEPT;
            for g in self.gaps.drain(..excess) {
                closed.ranges = closed.ranges.saturating_add(1);
                closed.seqs = closed.seqs.saturating_add(g.last - g.first + 1);
            }
        }
        closed
    }
}
