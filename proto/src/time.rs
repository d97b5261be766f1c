//! Wall-clock times as the wire carries them: signed Unix milliseconds (the `*_unix_ms` fields
//! of events, commands and API replies). The one conversion every crate uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` in Unix milliseconds: negative before 1970, saturating at `i64::MIN`/`MAX`.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Now, in Unix milliseconds (this machine's wall clock).
pub fn now_unix_ms() -> i64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn before_and_after_1970_and_far_out() {
        assert_eq!(unix_ms(UNIX_EPOCH), 0);
        assert_eq!(unix_ms(UNIX_EPOCH + Duration::from_millis(1_500)), 1_500);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(1_500)), -1_500);
        assert_eq!(
            unix_ms(UNIX_EPOCH + Duration::from_secs(u64::MAX / 2)),
            i64::MAX
        );
        assert!(now_unix_ms() > 1_700_000_000_000);
    }
}
