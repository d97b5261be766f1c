//! The election's timing: lease TTL, renewal period, acting window, takeover threshold and
//! announcement period, and how they derive from the configured TTL and takeover threshold.

use std::time::Duration;

/// Lease timing. `renew_every` < the acting window, so a healthy leader renews several times
/// per window; the acting window < `takeover_after`, so a standby's takeover CAS can only
/// succeed after the old active stopped acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// The KV bucket's `max_age`: the lease ages out this long after its last write.
    pub ttl: Duration,
    pub renew_every: Duration,
    /// Safety margin for clock rate differences and scheduling delay (TTL path).
    pub margin: Duration,
    /// An active acts at most this long after the send of its last successful CAS.
    pub act_window: Duration,
    /// `Some(d)`: a standby takes the lease by CAS after `d` without a sign of life of the
    /// holder. `None`: only when the lease is gone (TTL path).
    pub takeover_after: Option<Duration>,
    /// How often the active announces itself.
    pub alive_every: Duration,
}

impl LeaseTiming {
    /// TTL path only: renew every TTL/3; margin TTL/10 (at least 100 ms); act until
    /// TTL - margin after a renewal's send; no takeover before the lease is gone.
    pub fn from_ttl(ttl: Duration) -> Self {
        let margin = (ttl / 10).max(Duration::from_millis(100));
        LeaseTiming {
            ttl,
            renew_every: ttl / 3,
            margin,
            act_window: ttl.saturating_sub(margin),
            takeover_after: None,
            alive_every: ttl / 3,
        }
    }

    /// Fast takeover after `takeover_after` (D) of silence, announcements every `alive_every`.
    /// The acting window is 3/4 of D (the last quarter, at least 100 ms at the default, covers
    /// the delay between an active's last lease check and its send reaching the bus, and clock
    /// rate differences); renewals come every quarter of the window, so three may be late or
    /// lost before a healthy active stops acting. `takeover_after` zero: `from_ttl`.
    pub fn fast(ttl: Duration, takeover_after: Duration, alive_every: Duration) -> Self {
        let base = Self::from_ttl(ttl);
        if takeover_after.is_zero() {
            return base;
        }
        let act_window = (takeover_after * 3 / 4).min(base.act_window);
        LeaseTiming {
            renew_every: (act_window / 4).min(base.renew_every),
            act_window,
            takeover_after: Some(takeover_after),
            alive_every,
            ..base
        }
    }

    pub(super) fn valid_until(&self, sent_at: Duration) -> Duration {
        sent_at + self.act_window
    }
}
