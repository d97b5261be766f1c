//! The request handlers of `ops.api.silence` and `ops.api.alert_ack`: role-checked here, then
//! answered from a task by the active coordinator (`silences::silence` / `silences::ack`
//! record and wait for the fold); standbys stay silent on the broadcast subject.

use std::sync::Arc;

use opsfleet_proto::api::{AlertAckRequest, SilenceRequest};
use opsfleet_report::ErrorChain;
use tracing::warn;

use super::serve::{Incoming, Server};
use super::silences::{SharedGate, SilenceApiError};
use super::{error_reply, guard, parse, silences, to_json};
use crate::emit::Emitter;
use crate::state::Shared;

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
        self.answer_when_recorded(req, move |shared, emitter, gate| async move {
            silences::silence(&shared, &emitter, &gate, body, &issuer).await
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
        self.answer_when_recorded(req, move |shared, emitter, gate| async move {
            silences::ack(&shared, &emitter, &gate, body, &issuer).await
        });
        None
    }

    /// Runs `act` (record, then wait for the fold) in a task and sends its reply; a standby
    /// stays silent on the broadcast subject.
    fn answer_when_recorded<R, F, Fut>(&self, req: Incoming, act: F)
    where
        R: serde::Serialize,
        F: FnOnce(Arc<Shared>, Emitter, Arc<SharedGate>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<R, SilenceApiError>> + Send + 'static,
    {
        let (emitter, client, shared, gate) = (
            self.dispatcher.emitter().clone(),
            self.client.clone(),
            Arc::clone(&self.shared),
            Arc::clone(&self.gate),
        );
        let (reply_to, addressed_to_me) = (req.reply_to, req.addressed_to_me);
        tokio::spawn(async move {
            let reply = match act(Arc::clone(&shared), emitter, gate).await {
                Ok(reply) => to_json(&reply),
                Err(e) if e.is_not_active() && !addressed_to_me => return,
                Err(e) => error_reply(&shared, opsfleet_report::error_chain(&e)),
            };
            if let Err(e) = client.publish(reply_to, reply.into()).await {
                warn!(error = %ErrorChain(&e), "cannot send API reply");
            }
        });
    }
}
