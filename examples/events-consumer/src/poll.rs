//! How the example consumer paces its direct gets (pure): the wait when nothing new is there
//! yet, the backoff after an error, and what it says about events lost to retention.

use std::time::Duration;

/// First wait when the stream holds nothing new at the cursor; doubled while idle.
pub const IDLE_MIN: Duration = Duration::from_millis(50);
/// Longest wait while idle: a new event shows at most this late.
pub const IDLE_MAX: Duration = Duration::from_millis(500);
/// First wait after an error (server restart, connection lost); doubled per error.
pub const ERROR_MIN: Duration = Duration::from_millis(200);
pub const ERROR_MAX: Duration = Duration::from_secs(5);

/// A doubling wait between `min` and `max`, back at `min` after a success.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The wait to take now; the following one is twice as long, up to `max`.
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// What to say when the stream no longer holds the events from `cursor` on: its
/// `first_sequence` is past the cursor (retention aged or pushed them out).
pub fn lost_to_retention(cursor: u64, first_sequence: u64) -> Option<String> {
    (first_sequence > cursor).then(|| {
        format!(
            "stream seqs {cursor}..{} were lost to retention (the stream starts at {first_sequence}); \
             take a fresh snapshot before trusting derived state",
            first_sequence - 1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_bound_and_resets() {
        let mut b = Backoff::new(IDLE_MIN, IDLE_MAX);
        let waits: Vec<_> = (0..6).map(|_| b.step()).collect();
        assert_eq!(waits[0], IDLE_MIN);
        assert_eq!(waits[1], IDLE_MIN * 2);
        assert!(waits.iter().all(|w| *w <= IDLE_MAX));
        assert_eq!(waits[5], IDLE_MAX);
        b.reset();
        assert_eq!(b.step(), IDLE_MIN);
    }

    #[test]
    fn only_a_stream_starting_past_the_cursor_lost_events() {
        assert_eq!(lost_to_retention(10, 10), None);
        assert_eq!(lost_to_retention(10, 3), None);
        // A new, empty stream reports first_sequence 0.
        assert_eq!(lost_to_retention(1, 0), None);
        let said = lost_to_retention(10, 25).expect("lost");
        assert!(said.contains("10..24"), "{said}");
    }
}
