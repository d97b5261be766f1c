//! Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat): `{"text": ...}` with a
//! readable one-liner (`&`, `<` and `>` escaped as Slack's message format requires) and the
//! same line as one section block; each kept within Slack's limits (`text` 40,000
//! characters, a section's text 3,000), a cut said at its end.

use opsfleet_proto::api::AlertState;

use super::limits::{cut, SLACK_SECTION, SLACK_TEXT};
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
    let text = text(n);
    serde_json::json!({
        "text": cut(&text, SLACK_TEXT),
        "blocks": [{
            "type": "section",
            "text": { "type": "mrkdwn", "text": cut(&text, SLACK_SECTION) },
        }],
    })
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
            r#"{"blocks":[{"text":{"text":":red_circle: [CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full","type":"mrkdwn"},"type":"section"}],"text":":red_circle: [CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full"}"#
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

    #[test]
    fn long_summaries_are_cut_to_slack_limits() {
        let mut n = sample();
        n.summary = "ß".repeat(50_000);
        let b = body(&n);
        let text = b["text"].as_str().unwrap();
        let section = b["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(text.chars().count(), SLACK_TEXT);
        assert_eq!(section.chars().count(), SLACK_SECTION);
        assert!(text.ends_with(" more characters)") && section.contains("(cut: "));
    }
}
