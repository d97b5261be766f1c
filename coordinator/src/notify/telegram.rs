//! Telegram Bot API: POST `<api_base>/bot<token>/sendMessage` with `chat_id` and plain `text`
//! (no parse mode, so nothing needs escaping), at most 4,096 characters (a cut said at its end). The URL holds the token: it never appears in a
//! log line or a `Delivery` reason.

use super::limits::{cut_utf16, TELEGRAM_TEXT};
use super::transport::HttpPost;
use super::{one_line, Notification};

/// Two lines: the one-liner, then the alert id and who sent it; cut to Telegram's limit.
pub fn text(n: &Notification) -> String {
    let full = format!(
        "{}\nalert {} · coordinator {} (epoch {})",
        one_line(n),
        n.alert_id,
        n.coordinator,
        n.epoch
    );
    cut_utf16(&full, TELEGRAM_TEXT)
}

pub fn body(chat_id: &str, n: &Notification) -> serde_json::Value {
    serde_json::json!({ "chat_id": chat_id, "text": text(n) })
}

/// `<api_base>/bot<token>/sendMessage`.
pub fn url(api_base: &str, token: &str) -> String {
    format!("{}/bot{token}/sendMessage", api_base.trim_end_matches('/'))
}

pub(super) fn target(api_base: &str, token: &str, chat_id: String) -> HttpPost {
    HttpPost {
        url: url(api_base, token),
        body: Box::new(move |n| body(&chat_id, n).to_string()),
        idempotency_key: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests::sample;

    #[test]
    fn golden_url_and_body() {
        assert_eq!(
            url("https://api.telegram.org/", "123:abc"),
            "https://api.telegram.org/bot123:abc/sendMessage"
        );
        assert_eq!(
            body("-1001", &sample()).to_string(),
            r#"{"chat_id":"-1001","text":"[CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full\nalert a1 · coordinator blue (epoch 7)"}"#
        );
    }

    #[test]
    fn a_long_summary_is_cut_to_4096_characters() {
        let mut n = sample();
        n.summary = "я".repeat(5000);
        let t = text(&n);
        assert_eq!(t.chars().count(), TELEGRAM_TEXT);
        assert!(t.ends_with(" more characters)"), "{}", &t[t.len() - 60..]);
        n.summary = "я".repeat(100);
        assert!(!text(&n).contains("(cut: "));
    }
}
