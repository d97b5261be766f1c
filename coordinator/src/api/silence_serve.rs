//! The request handlers of `ops.api.silence` and `ops.api.alert_ack`: role-checked here, then
//! answered from a task by the active coordinator (`silences::silence` / `silences::ack`
//! record and wait for the fold); standbys stay silent on the broadcast subject.

use std::sync::Arc;

use opsfleet_proto::api::{AlertAckRequest, SilenceRequest};
use opsfleet_report::ErrorChain;
use tracing::warn;

use super::serve::{Incoming, Server};
use super::{error_reply, guard, parse, silences, to_json};

impl Server {
    /// `ops.api.silence`: add or expire a silence.
    pub(super) fn silence(&self, req: Incoming) -> Option<Vec<u8>> {
        let body: SilenceRequest = match serde_json::from_slice(&req.msg.payload) {
            Ok(body) => body,
            Err(e) => {
                let error = format!("bad silence request: {e}");
                return Some(error_reply(&self.shared, error));
            }
        };
        let allowed = guard::check_silence(
            req.operator.as_ref(),
            body.what(),
            self.policy.allow_unidentified,
        );
        if let Err(r) = allowed {
            return Some(self.refuse(&req, r));
        }
        let issuer = crate::identity::issuer("", req.operator.as_ref());
        let gate = Arc::clone(&self.gate);
        let (emitter, client, shared) = (
            self.dispatcher.emitter().clone(),
            self.client.clone(),
            Arc::clone(&self.shared),
        );
        let (reply_to, addressed_to_me) = (req.reply_to, req.addressed_to_me);
        tokio::spawn(async move {
            let reply = match silences::silence(&shared, &emitter, &gate, body, &issuer).await {
                Ok(reply) => to_json(&reply),
                Err(e) if e.is_not_active() && !addressed_to_me => return,
                Err(e) => error_reply(&shared, opsfleet_report::error_chain(&e)),
            };
            if let Err(e) = client.publish(reply_to, reply.into()).await {
                warn!(error = %ErrorChain(&e), "cannot send API reply");
            }
        });
        None
    }

    /// `ops.api.alert_ack`: acknowledge an alert's current transition.
    pub(super) fn alert_ack(&self, req: Incoming) -> Option<Vec<u8>> {
        let body: AlertAckRequest = match parse(&req.msg.payload) {
            Ok(body) => body,
            Err(e) => {
                let error = format!("bad alert_ack request: {e}");
                return Some(error_reply(&self.shared, error));
            }
        };
        let allowed = guard::check_alert_ack(req.operator.as_ref(), self.policy.allow_unidentified);
        if let Err(r) = allowed {
            return Some(self.refuse(&req, r));
        }
        let issuer = crate::identity::issuer("", req.operator.as_ref());
        let gate = Arc::clone(&self.gate);
        let (emitter, client, shared) = (
            self.dispatcher.emitter().clone(),
            self.client.clone(),
            Arc::clone(&self.shared),
        );
        let (reply_to, addressed_to_me) = (req.reply_to, req.addressed_to_me);
        tokio::spawn(async move {
            let reply = match silences::ack(&shared, &emitter, &gate, body, &issuer).await {
                Ok(reply) => to_json(&reply),
                Err(e) if e.is_not_active() && !addressed_to_me => return,
                Err(e) => error_reply(&shared, opsfleet_report::error_chain(&e)),
            };
            if let Err(e) = client.publish(reply_to, reply.into()).await {
                warn!(error = %ErrorChain(&e), "cannot send API reply");
            }
        });
        None
    }
}
