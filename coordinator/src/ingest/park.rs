//! The dead-letter side of ingest: why a message is parked instead of folded (malformed, or
//! refused by the admission check) and publishing it to `ops.dlq.events.<reason>`.

use async_nats::jetstream;
use async_nats::HeaderMap;
use opsfleet_proto::dlq;
use opsfleet_proto::subjects;
use opsfleet_report::ErrorChain;
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

/// One message to park: where it came from, its bytes, and why.
pub(super) struct Letter {
    stream_seq: u64,
    subject: String,
    payload: bytes::Bytes,
    pub why: Parked,
}

impl Letter {
    pub fn new(msg: &jetstream::Message, stream_seq: u64, why: Parked) -> Letter {
        Letter {
            stream_seq,
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            why,
        }
    }
}

/// Publishes every letter to `ops.dlq.events.<reason>` with the reason in headers, the acks
/// pipelined (a batch full of forgeries costs one round trip, not one per message). Every
/// coordinator parks the same message; `Nats-Msg-Id = dlq-<stream seq>` keeps one copy. A
/// failure is logged: the message stays in `OPS_EVENTS` for forensics either way.
pub(super) async fn park_all(js: &jetstream::Context, coordinator: &str, letters: &[Letter]) {
    let mut acks = Vec::with_capacity(letters.len());
    for letter in letters {
        let dlq = subjects::dlq_subject("events", letter.why.reason());
        match js
            .send_publish(dlq.clone(), publish(coordinator, letter))
            .await
        {
            Ok(ack) => acks.push((dlq, ack)),
            Err(e) => error!(error = %ErrorChain(&e), subject = %dlq, "cannot publish dead letter"),
        }
    }
    for (dlq, ack) in acks {
        if let Err(e) = ack.await {
            error!(error = %ErrorChain(&e), subject = %dlq, "dead-letter publish not acknowledged");
        }
    }
}

/// The dead-letter message of one letter.
fn publish(coordinator: &str, letter: &Letter) -> jetstream::message::PublishMessage {
    let bad = &letter.why;
    let reason = bad.reason();
    let error_text = opsfleet_report::error_chain(bad);
    // The text quotes fields an attacker chose (a command id): one header line, bounded.
    let error_text = header_safe(&error_text);
    let class = bad.class();
    let (subject, stream_seq) = (letter.subject.as_str(), letter.stream_seq);
    warn!(subject, stream_seq, reason, class, error = %error_text, "parking message");
    let mut headers = HeaderMap::new();
    headers.insert(dlq::REASON, reason);
    headers.insert(dlq::CLASS, class);
    headers.insert(dlq::ERROR, error_text.as_str());
    headers.insert(dlq::ORIGINAL_SUBJECT, subject);
    headers.insert(dlq::STREAM_SEQ, stream_seq.to_string().as_str());
    headers.insert(dlq::PARKED_BY, coordinator);
    jetstream::message::PublishMessage::build()
        .payload(letter.payload.clone())
        .headers(headers)
        .message_id(format!("dlq-{stream_seq}"))
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
