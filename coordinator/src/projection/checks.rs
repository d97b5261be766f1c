//! What a health check says beside its status (pure): `slow` (its latency p95 above its
//! bound) and `cert_warn` / `cert_crit` (its certificate's level), each with the detail views
//! and alert summaries show.

use opsfleet_proto::api::{CertLevel, CheckConditionKind};

use super::HealthState;

const DAY_MS: i64 = 86_400_000;

/// Whole days from `now` to `not_after` (negative once expired).
pub fn days_left(not_after_unix_ms: i64, now_unix_ms: i64) -> i64 {
    (not_after_unix_ms - now_unix_ms).div_euclid(DAY_MS)
}

/// `certificate expires in 5 day(s)` / `certificate expired 2 day(s) ago`.
pub fn cert_detail(s: &HealthState, now_unix_ms: i64) -> String {
    if s.cert_not_after_unix_ms == 0 {
        return "certificate level reported without a date".to_owned();
    }
    let left = days_left(s.cert_not_after_unix_ms, now_unix_ms);
    if left < 0 {
        format!("certificate expired {} day(s) ago", -left)
    } else {
        format!("certificate expires in {left} day(s)")
    }
}

/// `p95 900ms > 250ms` (the bound left out when not known).
pub fn slow_detail(s: &HealthState) -> String {
    if s.latency_bound_ms > 0 {
        format!("p95 {}ms > {}ms", s.latency_p95_ms, s.latency_bound_ms)
    } else {
        format!("p95 {}ms above its bound", s.latency_p95_ms)
    }
}

/// The conditions of one check at `now`, in `CheckConditionKind` order.
pub fn conditions(s: &HealthState, now_unix_ms: i64) -> Vec<(CheckConditionKind, String)> {
    let mut out = Vec::new();
    if s.slow {
        out.push((CheckConditionKind::Slow, slow_detail(s)));
    }
    match s.cert_level {
        CertLevel::Warn => out.push((CheckConditionKind::CertWarn, cert_detail(s, now_unix_ms))),
        CertLevel::Crit => out.push((CheckConditionKind::CertCrit, cert_detail(s, now_unix_ms))),
        CertLevel::Ok | CertLevel::Unknown => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_and_cert_conditions_with_their_details() {
        let now = 1_000 * DAY_MS;
        let mut s = HealthState {
            slow: true,
            latency_p95_ms: 900,
            latency_bound_ms: 250,
            cert_level: CertLevel::Warn,
            cert_not_after_unix_ms: now + 5 * DAY_MS + 3_600_000,
            ..HealthState::default()
        };
        assert_eq!(
            conditions(&s, now),
            [
                (CheckConditionKind::Slow, "p95 900ms > 250ms".to_owned()),
                (
                    CheckConditionKind::CertWarn,
                    "certificate expires in 5 day(s)".to_owned()
                ),
            ]
        );
        s.slow = false;
        s.cert_level = CertLevel::Crit;
        s.cert_not_after_unix_ms = now - 3_600_000;
        assert_eq!(
            conditions(&s, now),
            [(
                CheckConditionKind::CertCrit,
                "certificate expired 1 day(s) ago".to_owned()
            )]
        );
        s.cert_level = CertLevel::Ok;
        assert!(conditions(&s, now).is_empty());
    }
}
