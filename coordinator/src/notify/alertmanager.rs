//! Alertmanager's v2 API: `POST <base>/api/v2/alerts` with a JSON array of alerts. Labels are
//! the alert's identity (`alertname` = rule, `host`, `subject`, `severity`, then the host's
//! labels, bounded and renamed to Prometheus label rules); a firing alert's `endsAt` lies
//! [`ENDS_AFTER_INTERVALS`] re-send intervals ahead and the route posts it again every
//! interval while it fires ([`due`]), as Prometheus does; a resolve sets `endsAt` to the
//! resolve time, which Alertmanager takes as resolved at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

use opsfleet_proto::api::AlertState;
use serde_json::{json, Value};

use super::limits::cut;
use super::transport::HttpPost;
use super::Notification;

/// A firing alert's `endsAt` is this many re-send intervals after the post: two re-sends may
/// be lost (or a failover pass) before Alertmanager resolves it on its own.
pub const ENDS_AFTER_INTERVALS: u32 = 4;
/// Most host labels copied onto an alert (the projection keeps up to 64 per host).
pub const MAX_HOST_LABELS: usize = 32;
/// Longest label value sent; longer ones are cut (and the cut said).
pub const MAX_LABEL_VALUE: usize = 256;
/// Most alerts in one re-send POST.
pub const MAX_BATCH: usize = 256;
/// The labels opsfleet sets itself; a host label of the same name is left out.
const OWN_LABELS: [&str; 4] = ["alertname", "host", "subject", "severity"];

/// `<base>/api/v2/alerts`.
pub fn url(base: &str) -> String {
    format!("{}/api/v2/alerts", base.trim_end_matches('/'))
}

/// A host label's name under Prometheus' rules (`[a-zA-Z_][a-zA-Z0-9_]*`, `__` prefix
/// reserved): other characters become `_`, a leading digit or `__` gets a `label_` prefix.
pub fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) || out.starts_with("__") {
        out.insert_str(0, "label_");
    }
    out
}

/// The alert's label set: its own labels, then up to [`MAX_HOST_LABELS`] host labels by name
/// (renamed, a clash with an earlier one or an own label left out, values cut).
pub fn labels(n: &Notification) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("alertname".to_owned(), n.rule.clone());
    out.insert("host".to_owned(), n.host.clone());
    if !n.subject.is_empty() {
        out.insert("subject".to_owned(), n.subject.clone());
    }
    out.insert("severity".to_owned(), n.severity.as_str().to_owned());
    let mut copied = 0;
    for (name, value) in &n.labels {
        if copied == MAX_HOST_LABELS {
            break;
        }
        let name = label_name(name);
        if OWN_LABELS.contains(&name.as_str()) || out.contains_key(&name) || value.is_empty() {
            continue;
        }
        out.insert(name, cut(value, MAX_LABEL_VALUE));
        copied += 1;
    }
    for v in out.values_mut() {
        *v = cut(v, MAX_LABEL_VALUE);
    }
    out
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager parses it.
pub fn rfc3339(unix_ms: i64) -> String {
    let ms = u64::try_from(unix_ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// One alert of the posted array, at `now_unix_ms`, for a route re-sending every `interval`.
pub fn alert(n: &Notification, now_unix_ms: i64, interval: Duration) -> Value {
    let starts = if n.firing_since_unix_ms > 0 {
        n.firing_since_unix_ms
    } else {
        n.at_unix_ms
    };
    let ends = match n.state {
        AlertState::Resolved => n.at_unix_ms.max(starts),
        _ => {
            let ahead = interval.saturating_mul(ENDS_AFTER_INTERVALS);
            now_unix_ms.saturating_add(i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX))
        }
    };
    json!({
        "labels": labels(n),
        "annotations": {
            "summary": cut(&n.summary, MAX_LABEL_VALUE * 4),
            "coordinator": n.coordinator,
            "alert_id": n.alert_id,
        },
        "startsAt": rfc3339(starts),
        "endsAt": rfc3339(ends),
    })
}

/// The body of a post of `alerts`.
pub fn body(alerts: &[&Notification], now_unix_ms: i64, interval: Duration) -> String {
    let array: Vec<Value> = alerts
        .iter()
        .map(|n| alert(n, now_unix_ms, interval))
        .collect();
    Value::Array(array).to_string()
}

pub(super) fn target(base: &str, interval: Duration) -> HttpPost {
    HttpPost {
        url: url(base),
        body: Box::new(move |n| body(&[n], opsfleet_proto::time::now_unix_ms(), interval)),
        idempotency_key: false,
    }
}

/// Re-send bookkeeping of one route: alert id → when it was last posted (or first seen
/// firing by this coordinator).
pub type LastPosts = HashMap<String, Instant>;

/// Which of the `firing` alert ids are due for a re-send at `now` (pure): first seen → not
/// due yet (just posted by the delivery, or by the previous active coordinator less than an
/// interval ago), due once `interval` has passed since the last post. Alerts no longer firing
/// are forgotten, so the map never outgrows the firing alerts.
pub fn due(
    last: &mut LastPosts,
    firing: &HashSet<&str>,
    now: Instant,
    interval: Duration,
) -> Vec<String> {
    last.retain(|id, _| firing.contains(id.as_str()));
    let mut out = Vec::new();
    for id in firing {
        match last.get_mut(*id) {
            None => {
                last.insert((*id).to_owned(), now);
            }
            Some(at) if now.saturating_duration_since(*at) >= interval => {
                *at = now;
                out.push((*id).to_owned());
            }
            Some(_) => {}
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::sample;

    #[test]
    fn firing_and_resolved_alerts() {
        let mut n = sample();
        n.labels = [
            ("env", "prod"),
            ("9zone", "a"),
            ("team.name", "db"),
            ("host", "spoof"),
            ("__meta", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let now = n.at_unix_ms + 5000;
        let a = alert(&n, now, Duration::from_secs(60));
        assert_eq!(
            a.to_string(),
            r#"{"annotations":{"alert_id":"a1","coordinator":"blue","summary":"/var is 95% full"},"endsAt":"2025-12-02T00:04:05.000Z","labels":{"alertname":"disk_pressure","env":"prod","host":"db-01","label_9zone":"a","label___meta":"x","severity":"critical","subject":"/var","team_name":"db"},"startsAt":"2025-12-02T00:00:00.000Z"}"#
        );
        n.state = AlertState::Resolved;
        n.firing_since_unix_ms = n.at_unix_ms;
        n.at_unix_ms += 90_000;
        let r = alert(&n, n.at_unix_ms + 1, Duration::from_secs(60));
        assert_eq!(r["startsAt"], "2025-12-02T00:00:00.000Z");
        assert_eq!(r["endsAt"], "2025-12-02T00:01:30.000Z");
        assert_eq!(
            url("http://127.0.0.1:9093/"),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
    }

    #[test]
    fn host_labels_are_bounded_and_values_cut() {
        let mut n = sample();
        n.labels = (0..100)
            .map(|i| (format!("l{i:03}"), "v".repeat(300)))
            .collect();
        let l = labels(&n);
        assert_eq!(l.len(), 4 + MAX_HOST_LABELS);
        assert!(l.values().all(|v| v.chars().count() <= MAX_LABEL_VALUE));
        assert!(
            l["l000"].ends_with("(cut: 72 more characters)"),
            "{}",
            l["l000"]
        );
    }

    proptest::proptest! {
        /// Whatever an agent's label is called, the name sent follows Prometheus' rules.
        #[test]
        fn label_names_follow_prometheus_rules(name in "\\PC{0,20}") {
            let out = label_name(&name);
            let mut chars = out.chars();
            let first = chars.next().unwrap();
            proptest::prop_assert!(first.is_ascii_alphabetic() || first == '_', "{}", out);
            proptest::prop_assert!(chars.all(|c| c.is_ascii_alphanumeric() || c == '_'), "{}", out);
            proptest::prop_assert!(!out.starts_with("__"), "{}", out);
        }
    }

    #[test]
    fn resends_are_due_every_interval_and_forgotten_when_resolved() {
        let t0 = Instant::now();
        let i = Duration::from_secs(60);
        let mut last = LastPosts::new();
        let firing: HashSet<&str> = ["a", "b"].into();
        assert!(
            due(&mut last, &firing, t0, i).is_empty(),
            "first sight waits"
        );
        assert!(due(&mut last, &firing, t0 + i / 2, i).is_empty());
        assert_eq!(due(&mut last, &firing, t0 + i, i), ["a", "b"]);
        assert!(due(&mut last, &firing, t0 + i + i / 2, i).is_empty());
        let only_b: HashSet<&str> = ["b"].into();
        assert_eq!(due(&mut last, &only_b, t0 + 2 * i, i), ["b"]);
        assert_eq!(last.len(), 1, "a resolved alert is forgotten");
    }
}
