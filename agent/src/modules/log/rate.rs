//! Per-file rate limit of the log module (pure): a fixed window of `limit` matches; the excess
//! is counted and reported once the window ends, so suppression is never silent.

use serde::{Deserialize, Serialize};

/// `limit` matches per `window_ms`; `limit == 0` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub window_ms: i64,
}

/// One file's window; persisted with the cursors so a restart neither forgets nor repeats a
/// suppressed count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateState {
    pub window_start_ms: i64,
    pub count: u64,
    pub suppressed: u64,
    /// When the first suppressed match of this window was seen.
    pub since_ms: i64,
}

impl RateState {
    /// No window open.
    pub fn is_idle(&self) -> bool {
        self.count == 0 && self.suppressed == 0
    }

    /// Closes the window when it is over (or the clock went back); returns
    /// `(suppressed, since_ms)` when it held anything back.
    pub fn roll(&mut self, now_ms: i64, lim: RateLimit) -> Option<(u64, i64)> {
        if self.is_idle() {
            return None;
        }
        let elapsed = now_ms - self.window_start_ms;
        if elapsed < lim.window_ms && elapsed >= 0 {
            return None;
        }
        let out = (self.suppressed > 0).then_some((self.suppressed, self.since_ms));
        *self = RateState::default();
        out
    }

    /// Whether one more match may be reported now (call `roll` first).
    pub fn admit(&mut self, now_ms: i64, lim: RateLimit) -> bool {
        if lim.limit == 0 {
            return true;
        }
        if self.is_idle() {
            self.window_start_ms = now_ms;
        }
        if self.count < lim.limit {
            self.count += 1;
            true
        } else {
            if self.suppressed == 0 {
                self.since_ms = now_ms;
            }
            self.suppressed += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIM: RateLimit = RateLimit {
        limit: 3,
        window_ms: 1000,
    };

    #[test]
    fn limit_then_count_then_report_once() {
        let mut r = RateState::default();
        let admitted = (0..10).filter(|i| r.admit(100 + i, LIM)).count();
        assert_eq!(admitted, 3);
        assert_eq!(r.roll(999, LIM), None, "window still open");
        assert_eq!(r.roll(1100, LIM), Some((7, 103)));
        assert!(r.is_idle());
        assert_eq!(r.roll(5000, LIM), None, "reported once");
        assert!(r.admit(5000, LIM));
    }

    #[test]
    fn unlimited_never_suppresses() {
        let mut r = RateState::default();
        let lim = RateLimit {
            limit: 0,
            window_ms: 1,
        };
        assert!((0..1000).all(|_| r.admit(0, lim)));
        assert!(r.is_idle());
    }

    proptest! {
        /// Every match is either admitted or reported as suppressed: nothing vanishes.
        #[test]
        fn admitted_plus_reported_is_everything(times in proptest::collection::vec(0i64..100, 0..300)) {
            let mut now = 0;
            let mut r = RateState::default();
            let (mut admitted, mut reported) = (0u64, 0u64);
            for dt in &times {
                now += dt;
                if let Some((n, _)) = r.roll(now, LIM) { reported += n; }
                if r.admit(now, LIM) { admitted += 1; }
            }
            if let Some((n, _)) = r.roll(now + LIM.window_ms, LIM) { reported += n; }
            prop_assert_eq!(admitted + reported, times.len() as u64);
        }
    }
}
