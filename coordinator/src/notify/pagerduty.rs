//! PagerDuty Events API v2: a `trigger` for a firing alert, a `resolve` for its resolve, both
//! with `dedup_key` = the alert id, so PagerDuty folds them into one incident. Field rules
//! kept: `summary` at most 1,024 characters (cut said), `source` and `severity` always set,
//! `severity` one of `critical`/`error`/`warning`/`info`, `timestamp` ISO 8601, `dedup_key`
//! at most 255 characters. PagerDuty answers `202 Accepted`; 429 is retried, other 4xx not.

use opsfleet_proto::api::{AlertState, Severity};
use serde_json::json;

use super::alertmanager::rfc3339;
use super::limits::{cut, PAGERDUTY_DEDUP_KEY, PAGERDUTY_SUMMARY};
use super::transport::HttpPost;
use super::{one_line, Notification};

/// Events v2's severity for ours: unknown pages as `error` (something is wrong, not sure how
/// bad), never silently as `info`.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
        _ => "error",
    }
}

/// The alert id if it fits in 255 characters; else its head and a stable hash of the whole
/// (the same alert always gets the same key).
pub fn dedup_key(alert_id: &str) -> String {
    if alert_id.chars().count() <= PAGERDUTY_DEDUP_KEY {
        return alert_id.to_owned();
    }
    // FNV-1a 64: stable across builds and platforms.
    let hash = alert_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let head: String = alert_id.chars().take(PAGERDUTY_DEDUP_KEY - 17).collect();
    format!("{head}#{hash:016x}")
}

/// The event for `n`.
pub fn body(routing_key: &str, n: &Notification) -> serde_json::Value {
    let action = match n.state {
        AlertState::Resolved => "resolve",
        _ => "trigger",
    };
    let source = if n.host.is_empty() {
        &n.coordinator
    } else {
        &n.host
    };
    json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": dedup_key(&n.alert_id),
        "payload": {
            "summary": cut(&one_line(n), PAGERDUTY_SUMMARY),
            "source": source,
            "severity": severity(n.severity),
            "timestamp": rfc3339(n.at_unix_ms),
            "component": n.subject,
            "class": n.rule,
            "custom_details": {
                "alert_id": n.alert_id,
                "transition_id": n.id,
                "rule": n.rule,
                "host": n.host,
                "subject": n.subject,
                "state": n.state.as_str(),
                "labels": n.labels,
                "coordinator": n.coordinator,
                "epoch": n.epoch,
            },
        },
        "client": "opsfleet",
    })
}

pub(super) fn target(url: String, routing_key: String) -> HttpPost {
    HttpPost {
        url,
        body: Box::new(move |n| body(&routing_key, n).to_string()),
        idempotency_key: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::sample;

    const KEY: &str = "R0123456789abcdefghijklmnopqrstu";

    #[test]
    fn trigger_then_resolve_with_the_alert_id() {
        let t = body(KEY, &sample());
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["dedup_key"], "a1");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "db-01");
        assert_eq!(t["payload"]["timestamp"], "2025-12-02T00:00:00.000Z");
        assert_eq!(
            t["payload"]["summary"],
            "[CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full"
        );
        let mut n = sample();
        n.state = AlertState::Resolved;
        let r = body(KEY, &n);
        assert_eq!(
            (r["event_action"].as_str(), r["dedup_key"].as_str()),
            (Some("resolve"), Some("a1"))
        );
    }

    #[test]
    fn field_limits_and_severities() {
        let mut n = sample();
        n.summary = "ü".repeat(2000);
        n.alert_id = "x".repeat(300);
        let b = body(KEY, &n);
        let summary = b["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), PAGERDUTY_SUMMARY);
        assert!(summary.contains("(cut: "), "{summary}");
        let key = b["dedup_key"].as_str().unwrap();
        assert_eq!(key.chars().count(), PAGERDUTY_DEDUP_KEY);
        assert_eq!(key, dedup_key(&n.alert_id), "stable");
        n.alert_id.push('y');
        assert_ne!(dedup_key(&n.alert_id), key, "another alert, another key");
        assert_eq!(severity(Severity::Unknown), "error");
        assert_eq!(severity(Severity::Info), "info");
        assert_eq!(severity(Severity::Warning), "warning");
    }
}
