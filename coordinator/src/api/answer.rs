//! How the API's verbs answer beyond a plain reply: a request's parse error, a refusal (logged
//! and counted, naming the role needed), whether this coordinator acts on a request (active,
//! or addressed to it), and an answer published from a task once a long action ended.

use opsfleet_proto::api::ApiError;
use opsfleet_report::ErrorChain;
use serde::de::DeserializeOwned;
use tracing::warn;

use super::serve::{Incoming, Server};
use super::{error_reply, guard, parse, to_json};

impl Server {
    /// Logs and counts a refusal; the reply names the role needed.
    pub(super) fn refuse(&self, req: &Incoming, r: guard::Refusal) -> Vec<u8> {
        self.counters.refused(&r);
        let operator = req.operator.as_ref();
        warn!(
            subject = %req.msg.subject,
            operator = operator.map_or("", |i| i.operator.as_str()),
            acted_as = operator.map_or("", |i| i.role.as_str()),
            needs = r.needs_role().map_or("", |n| n.as_str()),
            reason = %r,
            "API request refused"
        );
        to_json(&ApiError {
            responder: self.shared.name.clone(),
            error: r.to_string(),
            needs_role: r.needs_role(),
        })
    }

    /// `payload` as a `what` request, or the error reply saying why not.
    pub(super) fn request<T: Default + DeserializeOwned>(
        &self,
        payload: &[u8],
        what: &str,
    ) -> Result<T, Vec<u8>> {
        parse::<T>(payload)
            .map_err(|e| error_reply(&self.shared, format!("bad {what} request: {e}")))
    }

    /// Whether this coordinator acts on `req` now: it is active, or `req` was addressed to it
    /// (then a standby's refusal reaches the operator). Standbys stay silent on the broadcast
    /// subject.
    pub(super) fn acts_on(&self, req: &Incoming) -> bool {
        req.addressed_to_me
            || (self.shared.leadership.view())
                .acting_epoch(tokio::time::Instant::now())
                .is_some()
    }

    /// Publishes what `answer` yields to `reply_to` from a task, so that a long action does
    /// not hold up the other verbs; `None` answers nothing (a standby on the broadcast
    /// subject).
    pub(super) fn answer_later(
        &self,
        reply_to: async_nats::Subject,
        answer: impl std::future::Future<Output = Option<Vec<u8>>> + Send + 'static,
    ) {
        let client = self.client.clone();
        tokio::spawn(async move {
            let Some(reply) = answer.await else {
                return;
            };
            if let Err(e) = client.publish(reply_to, reply.into()).await {
                warn!(error = %ErrorChain(&e), "cannot send API reply");
            }
        });
    }
}
