//! The rules of a health check's conditions beside its status, per host and check (subject =
//! the check's name): `health_slow` (the p95 of its latencies above its `latency_p95`
//! bound), `cert_warn` and `cert_crit` (its certificate has `warn_days` / `crit_days` or
//! fewer left, or expired). A failed check is `health_failed`'s (rules.rs). Pure.

use super::rules::{alert_id, Condition, RuleKind, Rules};
use crate::projection::{checks, HostState};
use opsfleet_proto::api::CheckConditionKind;

/// The check conditions of `host` at `now`. A lost host's are not judged: its last word may
/// be long out of date, and `host_lost` says it already.
pub fn probe_conditions(
    rules: &Rules,
    host: &HostState,
    now: i64,
    lost: bool,
    out: &mut Vec<Condition>,
) {
    if lost {
        return;
    }
    let h = host.host.as_str();
    for (check, s) in &host.runbooks.health {
        for (kind, detail) in checks::conditions(s, now) {
            let (rule, summary, value) = match kind {
                CheckConditionKind::Slow => (
                    RuleKind::HealthSlow,
                    format!("health check {check} on {h} is slow: {detail}"),
                    format!("{}ms", s.latency_p95_ms),
                ),
                CheckConditionKind::CertWarn | CheckConditionKind::CertCrit => (
                    if kind == CheckConditionKind::CertWarn {
                        RuleKind::CertWarn
                    } else {
                        RuleKind::CertCrit
                    },
                    format!("health check {check} on {h}: {detail}"),
                    format!("{}d", checks::days_left(s.cert_not_after_unix_ms, now)),
                ),
            };
            if rules.get(rule).is_none() {
                continue;
            }
            out.push(Condition {
                alert_id: alert_id(rule, h, check),
                rule,
                host: h.to_owned(),
                subject: check.clone(),
                summary,
                value,
                liveness: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::HealthState;
    use opsfleet_proto::api::CertLevel;

    const DAY: i64 = 86_400_000;

    fn host(checks: &[(&str, HealthState)]) -> HostState {
        let mut h = HostState::new("web-01");
        for (name, s) in checks {
            h.runbooks.health.insert((*name).to_owned(), s.clone());
        }
        h
    }

    #[test]
    fn slow_and_certificate_checks_raise_their_own_rules() {
        let now = 100 * DAY;
        let h = host(&[
            (
                "api",
                HealthState {
                    slow: true,
                    latency_p95_ms: 900,
                    latency_bound_ms: 250,
                    ..HealthState::default()
                },
            ),
            (
                "tls",
                HealthState {
                    cert_level: CertLevel::Warn,
                    cert_not_after_unix_ms: now + 5 * DAY + 1,
                    ..HealthState::default()
                },
            ),
            (
                "old",
                HealthState {
                    cert_level: CertLevel::Crit,
                    cert_not_after_unix_ms: now + DAY + 1,
                    ..HealthState::default()
                },
            ),
            ("fine", HealthState::default()),
        ]);
        let mut out = Vec::new();
        probe_conditions(&Rules::default(), &h, now, false, &mut out);
        let got: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|c| (c.alert_id.as_str(), c.summary.as_str(), c.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "health_slow/web-01/api",
                    "health check api on web-01 is slow: p95 900ms > 250ms",
                    "900ms"
                ),
                (
                    "cert_crit/web-01/old",
                    "health check old on web-01: certificate expires in 1 day(s)",
                    "1d"
                ),
                (
                    "cert_warn/web-01/tls",
                    "health check tls on web-01: certificate expires in 5 day(s)",
                    "5d"
                ),
            ]
        );
        let mut none = Vec::new();
        probe_conditions(&Rules::default(), &h, now, true, &mut none);
        assert!(none.is_empty(), "a lost host's checks are not judged");
        let mut off = Rules::default();
        off.rules.retain(|r| r.kind != RuleKind::HealthSlow);
        let mut out = Vec::new();
        probe_conditions(&off, &h, now, false, &mut out);
        assert_eq!(out.len(), 2, "a disabled rule raises nothing");
    }
}
