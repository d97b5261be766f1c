//! The dead-letter side of ingest: why a message is parked instead of folded (malformed, or
//! refused by the admission check) and publishing it to `ops.dlq.events.<reason>`.

use async_nats::jetstream;
use async_nats::HeaderMap;
use opsfleet_proto::subjects;
use tracing::{error, warn};

use super::Malformed;
use crate::admit::Refusal;

/// Why a message is parked.
#[derive(Debug, thiserror::Error)]
pub enum Parked {
    /// Not a valid event, or its subject does not name it.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// A valid event its publisher may not say (`admit`).
    #[error("refused")]
    Refused(#[source] Refusal),
}

impl Parked {
    /// The dead-letter subject token.
    pub fn reason(&self) -> &'static str {
        match self {
            Parked::Malformed(m) => m.reason(),
            Parked::Refused(r) => r.reason(),
        }
    }

    /// `malformed` or `refused`: the `Ops-Class` header, and which counter it goes to.
    pub fn class(&self) -> &'static str {
        match self {
            Parked::Malformed(_) => "malformed",
            Parked::Refused(_) => "refused",
        }
    }
}

/// Publishes a parked message to `ops.dlq.events.<reason>` with the reason in headers.
/// Every coordinator parks the same message; `Nats-Msg-Id = dlq-<stream seq>` keeps one copy.
pub(super) async fn park(
    js: &jetstream::Context,
    coordinator: &str,
    stream_seq: u64,
    subject: &str,
    payload: &bytes::Bytes,
    bad: &Parked,
) {
    let reason = bad.reason();
    let mut error_text = bad.to_string();
    let mut source = std::error::Error::source(bad);
    while let Some(s) = source {
        error_text.push_str(": ");
        error_text.push_str(&s.to_string());
        source = s.source();
    }
    // The text quotes fields an attacker chose (a command id): one header line, bounded.
    let error_text = header_safe(&error_text);
    let class = bad.class();
    warn!(subject, stream_seq, reason, class, error = %error_text, "parking message");
    let mut headers = HeaderMap::new();
    headers.insert("Ops-Reason", reason);
    headers.insert("Ops-Class", class);
    headers.insert("Ops-Error", error_text.as_str());
    headers.insert("Ops-Original-Subject", subject);
    headers.insert("Ops-Stream-Seq", stream_seq.to_string().as_str());
    headers.insert("Ops-Parked-By", coordinator);
    let publish = jetstream::message::PublishMessage::build()
        .payload(payload.clone())
        .headers(headers)
        .message_id(format!("dlq-{stream_seq}"));
    let dlq = subjects::dlq_subject("events", reason);
    match js.send_publish(dlq.clone(), publish).await {
        Ok(ack) => {
            if let Err(e) = ack.await {
                error!(error = %e, subject = %dlq, "dead-letter publish not acknowledged");
            }
        }
        Err(e) => error!(error = %e, subject = %dlq, "cannot publish dead letter"),
    }
}

/// At most 512 characters with every control character replaced, so a header stays one line.
fn header_safe(text: &str) -> String {
    text.chars()
        .take(512)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_text_is_one_bounded_line() {
        let text = super::header_safe(&format!("a\r\nOps-Reason: fake{}", "x".repeat(600)));
        assert!(!text.contains(['\r', '\n']));
        assert_eq!(text.chars().count(), 512);
        assert!(text.starts_with("a??Ops-Reason: fake"));
    }
}
