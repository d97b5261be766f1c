//! Generic JSON webhook: the [`Notification`] as JSON, POSTed with `Idempotency-Key: <id>` so a
//! receiver can drop the copies that retries (or a failover) may produce.

use super::transport::HttpPost;
use super::Notification;

/// The webhook body: the notification's own JSON form, fields in declared order.
pub fn body(n: &Notification) -> String {
    serde_json::to_string(n).unwrap_or_default()
}

pub(super) fn target(url: String) -> HttpPost {
    HttpPost {
        url,
        body: Box::new(body),
        idempotency_key: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::sample;

    #[test]
    fn body_is_the_notification_json() {
        let golden = r#"{"id":"a1:firing:7","alert_id":"a1","rule":"disk_pressure","host":"db-01","subject":"/var","state":"firing","severity":"critical","summary":"/var is 95% full","at_unix_ms":1764633600000,"coordinator":"blue","epoch":7}"#;
        assert_eq!(body(&sample()), golden);
        let back: Notification = serde_json::from_str(golden).unwrap();
        assert_eq!(back, sample());
    }
}
