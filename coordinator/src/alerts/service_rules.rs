//! The service rules, per host and service (subject = the service's name): `service_down` (a
//! service failed, or stopped other than by an operator's command), `service_restart_loop`
//! (at least `threshold` restarts within `window`) and `service_remediation_capped` (an
//! automatic action its hourly cap refused, within the last `window`). Pure.

use opsfleet_proto::api::ServiceRunState;

use super::rules::{alert_id, Condition, RuleKind, Rules};
use crate::projection::{HostState, ServiceRow};

/// What the exit detail of a service stopped on an operator's request says: such a service
/// is stopped on purpose, not down.
pub const STOPPED_BY_COMMAND: &str = "by command";

/// Down: `failed` (it exited and waits for its restart, or cannot start), or `stopped` unless
/// its exit detail says an operator's command stopped it. `starting`, `stopping` and `running`
/// are not down.
pub fn is_down(row: &ServiceRow) -> bool {
    match row.state {
        ServiceRunState::Failed => true,
        ServiceRunState::Stopped => !row.exit_detail.contains(STOPPED_BY_COMMAND),
        _ => false,
    }
}

/// Restarts in the window `(now - window_ms, now]`.
pub fn restarts_within(row: &ServiceRow, now_unix_ms: i64, window_ms: i64) -> u64 {
    let since = now_unix_ms.saturating_sub(window_ms);
    row.restarted_at_unix_ms
        .iter()
        .filter(|t| **t > since && **t <= now_unix_ms)
        .count() as u64
}

/// A window as a summary shows it: `1h`, `30m`, `45s`.
fn span(ms: i64) -> String {
    match ms {
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms => format!("{}s", ms / 1000),
    }
}

/// The service conditions of `host` at `now`. A lost host's services are not judged down:
/// their last word may be long out of date, and `host_lost` says it already.
pub fn service_conditions(
    rules: &Rules,
    host: &HostState,
    now: i64,
    lost: bool,
    out: &mut Vec<Condition>,
) {
    let h = host.host.as_str();
    let mut push = |rule: RuleKind, svc: &str, summary: String, value: String| {
        out.push(Condition {
            alert_id: alert_id(rule, h, svc),
            rule,
            host: h.to_owned(),
            subject: svc.to_owned(),
            summary,
            value,
            liveness: None,
        });
    };
    for (svc, row) in &host.services {
        if !lost && rules.get(RuleKind::ServiceDown).is_some() && is_down(row) {
            let how = if row.exit_detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", row.exit_detail)
            };
            push(
                RuleKind::ServiceDown,
                svc,
                format!("service {svc} on {h} is {}{how}", row.state),
                row.state.to_string(),
            );
        }
        if let Some(rule) = rules.get(RuleKind::ServiceRestartLoop) {
            let n = restarts_within(row, now, rule.window_ms);
            if n >= rule.threshold {
                push(
                    RuleKind::ServiceRestartLoop,
                    svc,
                    format!(
                        "service {svc} on {h} restarted {n} times within {} (last exit: {})",
                        span(rule.window_ms),
                        if row.exit_detail.is_empty() {
                            "unknown"
                        } else {
                            &row.exit_detail
                        }
                    ),
                    n.to_string(),
                );
            }
        }
        if let Some(rule) = rules.get(RuleKind::ServiceRemediationCapped) {
            let at = row.capped_at_unix_ms;
            if at > 0 && now.saturating_sub(at) < rule.window_ms {
                push(
                    RuleKind::ServiceRemediationCapped,
                    svc,
                    format!(
                        "automatic remediation of service {svc} on {h} stopped by its hourly \
                         cap: {}",
                        row.capped_reason
                    ),
                    at.to_string(),
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "service_rules_tests.rs"]
mod tests;
