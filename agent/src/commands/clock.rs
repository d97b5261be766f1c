//! The clock commands are judged by: the NATS server's, read from a consumer-info reply (`ts`)
//! and carried forward on this host's boot clock (`CLOCK_BOOTTIME`: it never jumps and keeps
//! counting through a suspend), so that a host whose wall clock is set forward or back neither
//! expires fresh commands nor runs stale ones. Without a sample yet, the wall clock.

use std::time::Duration;

use serde::Deserialize;

/// How often the server's time is read again (also on every (re)open of the consumer). The
/// boot clock drifts by parts per million, so this bounds drift, not jumps.
pub const RESAMPLE_EVERY: Duration = Duration::from_secs(600);

/// A wall-clock difference from the server worth a warning: beyond the jitter of a sample.
pub const SKEW_WARN_MS: i64 = 2_000;

/// Milliseconds on the boot clock (monotonic, counts suspend). 0 where it cannot be read.
pub fn boot_ms() -> i64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec().saturating_mul(1000) + t.tv_nsec() / 1_000_000)
        .unwrap_or(0)
}

/// The part of a JetStream API reply this needs: the server's time when it answered.
#[derive(Debug, Deserialize)]
pub struct Stamped {
    pub ts: String,
}

/// Parses the `ts` of a reply (RFC 3339, UTC, up to nanoseconds) into Unix milliseconds.
pub fn parse_ts(ts: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(ts.trim_end_matches('Z'))
        .ok()
        .map(opsfleet_proto::time::unix_ms)
}

/// The server's time at one instant of the boot clock. Pure: every reading is an argument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerClock {
    sample: Option<(i64, i64)>,
}

impl ServerClock {
    /// Records a reply stamped `server_unix_ms`, asked at boot time `sent_ms` and answered at
    /// `received_ms`: the stamp is taken to be the midpoint of the round trip.
    pub fn observe(&mut self, server_unix_ms: i64, sent_ms: i64, received_ms: i64) {
        let at = sent_ms + (received_ms.saturating_sub(sent_ms)).max(0) / 2;
        self.sample = Some((server_unix_ms, at));
    }

    /// The server's time now (boot clock at `boot_now_ms`), or `wall_unix_ms` without a sample.
    pub fn now_unix_ms(&self, wall_unix_ms: i64, boot_now_ms: i64) -> i64 {
        match self.sample {
            Some((server, at)) => server.saturating_add(boot_now_ms.saturating_sub(at)),
            None => wall_unix_ms,
        }
    }

    /// How far this host's wall clock is ahead of the server's (negative: behind).
    pub fn skew_ms(&self, wall_unix_ms: i64, boot_now_ms: i64) -> Option<i64> {
        self.sample
            .map(|_| wall_unix_ms.saturating_sub(self.now_unix_ms(wall_unix_ms, boot_now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn without_a_sample_the_wall_clock_is_used() {
        let c = ServerClock::default();
        assert_eq!(c.now_unix_ms(1_234, 99), 1_234);
        assert_eq!(c.skew_ms(1_234, 99), None);
    }

    #[test]
    fn parses_the_servers_stamp() {
        assert_eq!(
            parse_ts("2026-12-05T11:43:48.749043688Z"),
            Some(1_796_471_028_749)
        );
        assert_eq!(parse_ts("2026-12-05T11:43:48Z"), Some(1_796_471_028_000));
        assert_eq!(parse_ts("yesterday"), None);
    }

    proptest! {
        /// Whatever the wall clock does after a sample, the server's time advances exactly
        /// with the boot clock.
        #[test]
        fn wall_clock_jumps_do_not_move_the_servers_time(
            server in 1_600_000_000_000i64..1_900_000_000_000,
            sent in 0i64..1_000_000_000,
            rtt in 0i64..5_000,
            later in 0i64..100_000_000,
            jump in -100_000_000i64..100_000_000,
        ) {
            let mut c = ServerClock::default();
            c.observe(server, sent, sent + rtt);
            let boot_now = sent + rtt + later;
            let wall = server + jump;
            let now = c.now_unix_ms(wall, boot_now);
            prop_assert_eq!(now, server + rtt - rtt / 2 + later);
            prop_assert_eq!(c.skew_ms(wall, boot_now), Some(wall - now));
        }
    }
}
