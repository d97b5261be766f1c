//! `app` commands: an action forwarded to a service's own control endpoint (an HTTP POST of
//! JSON or a NATS request), allowed only when the host's file allows `app` on the service and
//! the service declares the action and each argument; the app's answer (status, body excerpt)
//! is the command's result.

use std::time::Duration;

use hyper::body::Bytes;
use opsfleet_proto::pb;

use super::exec::Execution;
use super::CommandHandler;
use crate::config::{ControlConfig, ControlEndpoint, HostPolicy, RemoteOp};
use crate::modules::health::probe::post_json;

/// How much of the app's answer the command's result shows.
pub const EXCERPT_CHARS: usize = 300;
/// How much of the app's answer is read at most.
const ANSWER_LIMIT: usize = 64 * 1024;
/// The header a NATS service sets on an error reply (the NATS micro convention).
const NATS_SERVICE_ERROR: &str = "Nats-Service-Error";

/// The file's control section of `a.service`, when `a` may be sent to it: `app` is in the
/// service's `remote`, it declares a control endpoint, the action and every argument. The
/// refusal names what is allowed. Pure.
pub fn permitted<'p>(
    policy: &'p HostPolicy,
    a: &pb::AppAction,
) -> Result<&'p ControlConfig, String> {
    policy
        .check_service_op(&a.service, RemoteOp::App)
        .map_err(|v| format!("refused by {}: {}", v.rule, v.reason))?;
    let control = (policy.service(&a.service))
        .and_then(|s| s.control.as_ref())
        .ok_or_else(|| {
            format!(
                "service {:?} declares no control endpoint ([modules.control] in the host's file)",
                a.service
            )
        })?;
    control
        .permit(&a.action, &a.args)
        .map_err(|r| format!("service {:?}: {r}", a.service))?;
    Ok(control)
}

/// The JSON the app gets: `{"action": ..., "args": {...}}`.
pub fn request_body(a: &pb::AppAction) -> String {
    let args: serde_json::Map<String, serde_json::Value> = (a.args.iter())
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({ "action": a.action, "args": args }).to_string()
}

/// At most `EXCERPT_CHARS` characters of `body`, control characters (newlines included)
/// dropped, whitespace trimmed; `…` when cut. Pure.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    let mut out: String = clean.chars().take(EXCERPT_CHARS).collect();
    if clean.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// The command's result for an HTTP answer: done on 2xx, failed otherwise. Pure.
pub fn judge_http(status: u16, body: &[u8]) -> Result<String, String> {
    let line = format!("app answered {status}: {}", excerpt(body));
    if (200..300).contains(&status) {
        Ok(line)
    } else {
        Err(line)
    }
}

impl CommandHandler {
    pub(super) async fn app(&self, a: &pb::AppAction) -> Execution {
        Execution::done(self.forward(a).await)
    }

    /// Checked when the command was accepted; again here, the trust boundary's last word.
    async fn forward(&self, a: &pb::AppAction) -> Result<String, String> {
        let control = permitted(&self.policy, a)?;
        let body = request_body(a);
        let timeout = control.timeout;
        match control.endpoint() {
            Some(ControlEndpoint::Http(url)) => {
                match tokio::time::timeout(timeout, post_json(url, &body)).await {
                    Err(_) => Err(format!(
                        "app did not answer within {} ({url})",
                        humantime::format_duration(timeout)
                    )),
                    Ok(Err(e)) => Err(format!("cannot reach the app: {e}")),
                    Ok(Ok((status, answer))) => judge_http(status, &answer),
                }
            }
            Some(ControlEndpoint::Nats(subject)) => self.nats_request(subject, body, timeout).await,
            None => Err(format!("service {:?}: no control endpoint", a.service)),
        }
    }

    /// A NATS request on `subject`; the reply is the answer (failed when it carries a
    /// `Nats-Service-Error` header).
    async fn nats_request(
        &self,
        subject: &str,
        body: String,
        timeout: Duration,
    ) -> Result<String, String> {
        let Some(client) = &self.nats else {
            return Err("no NATS connection to reach the app with".to_owned());
        };
        let request = client.request(subject.to_owned(), Bytes::from(body));
        let reply = match tokio::time::timeout(timeout, request).await {
            Err(_) => {
                return Err(format!(
                    "app did not answer within {} (nats {subject})",
                    humantime::format_duration(timeout)
                ))
            }
            Ok(Err(e)) => return Err(format!("nats request on {subject}: {e}")),
            Ok(Ok(reply)) => reply,
        };
        let shown = excerpt(&reply.payload[..reply.payload.len().min(ANSWER_LIMIT)]);
        let error = (reply.headers.as_ref())
            .and_then(|h| h.get(NATS_SERVICE_ERROR))
            .map(|v| v.to_string());
        match error {
            Some(e) => Err(format!(
                "app answered error {}: {shown}",
                excerpt(e.as_bytes())
            )),
            None => Ok(format!("app answered: {shown}")),
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;
