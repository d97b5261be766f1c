//! Per-route token bucket: pure (the caller passes `now`), so a limited send is decided at once
//! and the refill arithmetic is unit- and proptest-tested without a clock.

#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

/// Holds up to `burst` tokens, refilled continuously at `per_minute / 60` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`. Zero rates are raised to 1 (config validation refuses them).
    pub fn new(per_minute: u32, burst: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes one token if there is one at `now`; `false` = rate limited. A `now` earlier than
    /// the last call refills nothing (never panics, never adds tokens).
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long from `now` until a token is available (zero if one is).
    #[cfg(test)]
    pub fn wait_time(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        if now > self.last {
            self.last = now;
        }
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_sec).min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_limited_then_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(60, 3, t0);
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0));
        assert_eq!(b.wait_time(t0), Duration::from_secs(1));
        assert!(!b.try_take(t0 + Duration::from_millis(999)));
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
        assert!(!b.try_take(t0 + Duration::from_millis(1000)));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(b.try_take(later));
        }
        assert!(!b.try_take(later));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(60, 1, t0);
        assert!(b.try_take(t0));
        assert!(!b.try_take(t0 - Duration::from_secs(5)));
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        assert!(b.try_take(t0 + Duration::from_millis(1000)));
    }

    proptest! {
        /// Over any schedule, granted sends never exceed burst + rate * elapsed.
        #[test]
        fn never_exceeds_burst_plus_rate(
            per_minute in 1u32..600,
            burst in 1u32..20,
            steps in proptest::collection::vec(0u64..5_000, 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(per_minute, burst, t0);
            let mut now = t0;
            let mut granted = 0u64;
            for ms in steps {
                now += Duration::from_millis(ms);
                if b.try_take(now) {
                    granted += 1;
                }
            }
            let elapsed = (now - t0).as_secs_f64();
            let bound = f64::from(burst) + elapsed * f64::from(per_minute) / 60.0;
            prop_assert!(granted as f64 <= bound + 1e-9, "granted {granted} > bound {bound}");
        }
    }
}
