//! Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): `{"text": ...}` with a
//! readable one-liner; `&`, `<` and `>` escaped as Slack's message format requires.

use opsfleet_proto::api::AlertState;

use super::transport::HttpPost;
use super::{one_line, Notification};

/// `:red_circle: [CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full`.
pub fn text(n: &Notification) -> String {
    let icon = match n.state {
        AlertState::Firing => ":red_circle: ",
        AlertState::Resolved => ":large_green_circle: ",
        _ => "",
    };
    let line = one_line(n)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("{icon}{line}")
}

pub fn body(n: &Notification) -> serde_json::Value {
    serde_json::json!({ "text": text(n) })
}

pub(super) fn target(url: String) -> HttpPost {
    HttpPost {
        url,
        body: Box::new(|n| body(n).to_string()),
        idempotency_key: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::sample;

    #[test]
    fn golden_firing_and_resolved() {
        assert_eq!(
            body(&sample()).to_string(),
            r#"{"text":":red_circle: [CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full"}"#
        );
        let mut n = sample();
        n.state = AlertState::Resolved;
        n.subject = "db-01".into();
        n.summary = "<b> & co".into();
        assert_eq!(
            text(&n),
            ":large_green_circle: [CRITICAL] RESOLVED disk_pressure on db-01: &lt;b&gt; &amp; co"
        );
    }
}
