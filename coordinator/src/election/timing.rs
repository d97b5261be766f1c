//! Lease timing: the TTL lease (renew every TTL/3, stop acting at send + TTL - margin) and the
//! optional fast takeover (a short acting window the holder promises in its lease record, and
//! the wait a standby owes that promise before it may CAS a silent holder's revision).

use std::time::Duration;

/// Least slack between the holder's window and a standby's takeover.
const MIN_SLACK: Duration = Duration::from_millis(200);

/// Fast takeover: the holder promises to stop acting `window` after sending its last successful
/// CAS; a standby may CAS a revision `window + slack` after it first saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastTakeover {
    /// How long after the send of its last successful CAS a holder may act.
    pub window: Duration,
    /// Added by a standby to the holder's window: clock-rate differences between the two
    /// machines and scheduling delay.
    pub slack: Duration,
}

impl FastTakeover {
    /// Splits `takeover_after` (>= 1 s) into window and slack: slack = max(1/5, 200 ms).
    pub fn from_takeover_after(takeover_after: Duration) -> Self {
        let slack = (takeover_after / 5).max(MIN_SLACK);
        FastTakeover {
            window: takeover_after.saturating_sub(slack),
            slack,
        }
    }

    /// The slack owed to a holder that promised `window`: ours, and at least a quarter of its
    /// window (so a clock running up to 11 % off the holder's cannot close the gap).
    pub fn slack_for(&self, window: Duration) -> Duration {
        self.slack.max(window / 4).max(MIN_SLACK)
    }
}

/// Lease timing. `renew_every` < the acting window, so a healthy leader renews several times
/// per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub renew_every: Duration,
    /// Safety margin for clock rate differences and scheduling delay.
    pub margin: Duration,
    /// How often a standby tries `create` on its own (TTL/3).
    pub retry_every: Duration,
    /// Fast takeover; `None`: the TTL lease only (records carry no window).
    pub fast: Option<FastTakeover>,
}

impl LeaseTiming {
    /// Renew every TTL/3; margin TTL/10 (at least 100 ms); no fast takeover.
    pub fn from_ttl(ttl: Duration) -> Self {
        LeaseTiming {
            ttl,
            renew_every: ttl / 3,
            margin: (ttl / 10).max(Duration::from_millis(100)),
            retry_every: ttl / 3,
            fast: None,
        }
    }

    /// The TTL lease plus fast takeover after `takeover_after` (zero: TTL only). With it the
    /// holder renews every quarter of its window (and at least every TTL/3).
    pub fn new(ttl: Duration, takeover_after: Duration) -> Self {
        let base = Self::from_ttl(ttl);
        if takeover_after.is_zero() {
            return base;
        }
        let fast = FastTakeover::from_takeover_after(takeover_after);
        let window = fast.window.min(base.ttl_window());
        LeaseTiming {
            renew_every: base.renew_every.min(window / 4),
            fast: Some(FastTakeover { window, ..fast }),
            ..base
        }
    }

    /// TTL - margin: how long the server keeps a write, less the margin.
    fn ttl_window(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }

    /// The acting window our lease records promise; `None` when fast takeover is off.
    pub fn promised_window(&self) -> Option<Duration> {
        self.fast.map(|f| f.window)
    }

    /// How long after sending a successful CAS we may act.
    pub fn acting_window(&self) -> Duration {
        match self.fast {
            Some(f) => f.window.min(self.ttl_window()),
            None => self.ttl_window(),
        }
    }

    /// The end of acting on a CAS sent at `sent_at`.
    pub fn valid_until(&self, sent_at: Duration) -> Duration {
        sent_at + self.acting_window()
    }

    /// When a standby that first saw a revision at `seen_at`, written with the promise
    /// `window`, may CAS it. `None`: never (fast takeover off here, or no promise).
    pub fn takeover_at(&self, seen_at: Duration, window: Option<Duration>) -> Option<Duration> {
        let fast = self.fast?;
        let window = window?;
        Some(seen_at + window + fast.slack_for(window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn one_second_splits_into_800_ms_of_acting_and_200_ms_of_slack() {
        let t = LeaseTiming::new(ms(3000), ms(1000));
        assert_eq!(t.promised_window(), Some(ms(800)));
        assert_eq!(t.acting_window(), ms(800));
        assert_eq!(t.renew_every, ms(200));
        assert_eq!(t.retry_every, ms(1000));
        assert_eq!(t.takeover_at(ms(10), Some(ms(800))), Some(ms(1010)));
    }

    #[test]
    fn without_fast_takeover_nothing_is_promised_and_nothing_taken_early() {
        let t = LeaseTiming::new(ms(3000), Duration::ZERO);
        assert_eq!(t, LeaseTiming::from_ttl(ms(3000)));
        assert_eq!(t.promised_window(), None);
        assert_eq!(t.acting_window(), ms(2700));
        assert_eq!(t.takeover_at(ms(0), Some(ms(800))), None);
        // A holder that promised nothing (older binary, fast takeover off) is never taken.
        let fast = LeaseTiming::new(ms(3000), ms(1000));
        assert_eq!(fast.takeover_at(ms(0), None), None);
    }

    #[test]
    fn a_long_promise_gets_a_proportional_slack_and_the_window_never_passes_the_ttl() {
        let t = LeaseTiming::new(ms(3000), ms(1000));
        assert_eq!(t.takeover_at(ms(0), Some(ms(4000))), Some(ms(5000)));
        let capped = LeaseTiming::new(ms(3000), ms(10_000));
        assert_eq!(capped.acting_window(), ms(2700));
        assert_eq!(capped.promised_window(), Some(ms(2700)));
    }
}
