//! Console actions: a POST form (CSRF- and origin-checked) names a verb and its fields; the
//! login's role is checked here first (a refusal records nothing), then the request is
//! forwarded to the active coordinator on `ops.api.console.<verb>` as `{via, operator, role,
//! request}`, its reply read from this coordinator's own inbox. A new action is one line in
//! `plan` and a form on a page.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::Form;
use futures::StreamExt;
use opsfleet_proto::api::{
    AlertAckReply, ApiError, CommandReply, CommandsRequest, ConsoleRequest, FailoverReply, Role,
    SilenceReply,
};
use opsfleet_proto::subjects;
use serde::Deserialize;
use serde_json::{json, Value};

use super::handlers::{check_post, frame, require, responder};
use super::pages;
use super::Console;

/// Deadline of a command issued from the console.
const COMMAND_DEADLINE_MS: u64 = 5 * 60 * 1000;
/// How long the console waits for the active coordinator's answer.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// The command actions the console's buttons issue.
const CONSOLE_ACTIONS: [&str; 5] = ["pause", "resume", "disable", "enable", "noop"];

/// An action ready to forward: the verb, the role it needs, what to call it, its request.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub verb: &'static str,
    pub needs: Role,
    pub what: String,
    pub request: Value,
}

fn field<'a>(form: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

/// The action a form asks for, as `operator` (pure). Unknown verbs and actions are refused.
pub fn plan(form: &BTreeMap<String, String>, operator: &str) -> Result<Planned, String> {
    match field(form, "verb") {
        Some("command") => {
            let action = field(form, "action").unwrap_or_default();
            if !CONSOLE_ACTIONS.contains(&action) {
                return Err(format!("the console does not issue {action:?}"));
            }
            let host = field(form, "host").ok_or("a command needs a host")?;
            let needs = Role::required_for_action(action).ok_or("unknown action")?;
            let mut request = json!({
                "action": action,
                "hosts": [host],
                "deadline_ms": COMMAND_DEADLINE_MS,
                "issued_by": operator,
            });
            if let Some(module) = field(form, "module") {
                request["module"] = json!(module);
            }
            Ok(Planned {
                verb: "command",
                needs,
                what: action.to_owned(),
                request,
            })
        }
        Some("failover") => Ok(Planned {
            verb: "failover",
            needs: Role::FAILOVER,
            what: "failover".to_owned(),
            request: json!({ "requested_by": operator }),
        }),
        Some("silence") => plan_silence(form),
        Some("alert_ack") => {
            let id = field(form, "id").ok_or("an ack needs the alert's id")?;
            let mut request = json!({ "id": id });
            if let Some(comment) = field(form, "comment") {
                request["comment"] = json!(comment);
            }
            Ok(Planned {
                verb: "alert_ack",
                needs: Role::Operator,
                what: "ack".to_owned(),
                request,
            })
        }
        other => Err(format!("unknown action verb {:?}", other.unwrap_or(""))),
    }
}

/// Longest silence the console's form asks for (the active coordinator has its own bound).
const SILENCE_FOR_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Items of a list field: separated by commas or white space.
fn items(form: &BTreeMap<String, String>, name: &str) -> Vec<String> {
    field(form, name)
        .map(|v| {
            v.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `silence add` (host glob, labels, rules, `for` as `2h`, reason) or `silence expire` (id).
fn plan_silence(form: &BTreeMap<String, String>) -> Result<Planned, String> {
    let request = match field(form, "action") {
        Some("add") => {
            let text = field(form, "for").unwrap_or("2h");
            let duration = humantime::parse_duration(text)
                .map_err(|e| format!("silence for {text:?}: {e}"))?;
            if duration.is_zero() || duration > SILENCE_FOR_MAX {
                return Err(format!("silence for {text:?}: between 1s and 30 days"));
            }
            let (host, labels, rules) = (
                field(form, "host"),
                items(form, "labels"),
                items(form, "rules"),
            );
            if host.is_none() && labels.is_empty() && rules.is_empty() {
                return Err("a silence needs a host, a label or a rule".to_owned());
            }
            let reason = field(form, "reason").ok_or("a silence needs a reason")?;
            let mut request = json!({
                "action": "add",
                "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                "reason": reason,
            });
            if let Some(host) = host {
                request["host"] = json!(host);
            }
            if !labels.is_empty() {
                request["labels"] = json!(labels);
            }
            if !rules.is_empty() {
                request["rules"] = json!(rules);
            }
            request
        }
        Some("expire") => {
            let id = field(form, "id").ok_or("expiring a silence needs its id")?;
            json!({ "action": "expire", "id": id })
        }
        other => return Err(format!("unknown silence action {:?}", other.unwrap_or(""))),
    };
    let what = format!("silence {}", request["action"].as_str().unwrap_or_default());
    Ok(Planned {
        verb: "silence",
        needs: Role::Operator,
        what,
        request,
    })
}

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot subscribe to the reply inbox")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("cannot send the request")]
    Publish(#[source] async_nats::PublishError),
    #[error("no coordinator answered within {0:?} (is one active?)")]
    Timeout(Duration),
}

/// Sends `request` on `ops.api.console.<verb>` for `operator` in `role`; the reply comes to
/// `_INBOX.<this coordinator>.console.<uuid>`, the only inbox the serving side answers.
pub async fn forward(
    c: &Console,
    verb: &str,
    operator: &str,
    role: Role,
    request: Value,
) -> Result<Vec<u8>, ForwardError> {
    let body = ConsoleRequest {
        via: c.shared.name.clone(),
        operator: operator.to_owned(),
        role,
        request,
    };
    let payload = serde_json::to_vec(&body).unwrap_or_default();
    let inbox = format!(
        "_INBOX.{}.console.{}",
        c.shared.name,
        uuid::Uuid::now_v7().simple()
    );
    let mut sub = c
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(ForwardError::Subscribe)?;
    c.client
        .publish_with_reply(subjects::api_console(verb), inbox, payload.into())
        .await
        .map_err(ForwardError::Publish)?;
    let reply = tokio::time::timeout(FORWARD_TIMEOUT, sub.next()).await;
    let _ = sub.unsubscribe().await;
    match reply {
        Ok(Some(msg)) => Ok(msg.payload.to_vec()),
        _ => Err(ForwardError::Timeout(FORWARD_TIMEOUT)),
    }
}

/// `POST /console/act`: check, plan, refuse or forward, show the answer.
pub async fn act(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let l = match require(&c, &headers) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if let Err(r) = check_post(&l, &headers, form.get("csrf").map(String::as_str)) {
        return *r;
    }
    let leader = responder(&c);
    let f = frame(&l, &leader);
    let (operator, role) = (l.session.operator.as_str(), l.session.role);
    let planned = match plan(&form, operator) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Html(pages::message(&f, "Not done", "action-error", &e)),
            )
                .into_response()
        }
    };
    if role < planned.needs {
        tracing::warn!(operator, role = role.as_str(), needs = planned.needs.as_str(), what = %planned.what, "console action refused");
        let text = format!(
            "{} needs role {}; you are {}",
            planned.what,
            planned.needs.as_str(),
            role.as_str()
        );
        return (
            StatusCode::FORBIDDEN,
            Html(pages::message(&f, "Refused", "refused", &text)),
        )
            .into_response();
    }
    let reply = match forward(&c, planned.verb, operator, role, planned.request).await {
        Ok(r) => r,
        Err(e) => {
            let text = opsfleet_report::error_chain(&e);
            return (
                StatusCode::BAD_GATEWAY,
                Html(pages::message(&f, "Not done", "action-error", &text)),
            )
                .into_response();
        }
    };
    answer_page(&f, planned.verb, &reply)
}

/// The active coordinator's answer as a page.
fn answer_page(f: &super::html::Frame, verb: &str, reply: &[u8]) -> Response {
    if let Ok(e) = serde_json::from_slice::<ApiError>(reply) {
        let status = if e.needs_role.is_some() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::CONFLICT
        };
        let id = if e.needs_role.is_some() {
            "refused"
        } else {
            "action-error"
        };
        return (
            status,
            Html(pages::message(
                f,
                "Not done",
                id,
                &format!("{} answered: {}", e.responder, e.error),
            )),
        )
            .into_response();
    }
    match verb {
        "command" => match serde_json::from_slice::<CommandReply>(reply) {
            Ok(r) => {
                let skipped: Vec<String> = r
                    .skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.host, s.reason))
                    .collect();
                Html(pages::command_result(f, &r.commands, &skipped)).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("unexpected answer: {e}")).into_response(),
        },
        "failover" => match serde_json::from_slice::<FailoverReply>(reply) {
            Ok(r) => {
                let text = format!(
                    "{} released the lease (epoch {}); a standby takes over",
                    r.responder.name, r.released_epoch
                );
                Html(pages::message(f, "Failover", "action-done", &text)).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("unexpected answer: {e}")).into_response(),
        },
        "silence" => match serde_json::from_slice::<SilenceReply>(reply) {
            Ok(r) => {
                let s = &r.silence;
                let text = format!(
                    "silence {} is {} until {} ({})",
                    s.id,
                    s.state,
                    super::html::time(s.ends_unix_ms),
                    s.reason
                );
                Html(pages::message(f, "Silence", "action-done", &text)).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("unexpected answer: {e}")).into_response(),
        },
        "alert_ack" => match serde_json::from_slice::<AlertAckReply>(reply) {
            Ok(r) => {
                let text = format!(
                    "{} acked by {}",
                    r.alert.key,
                    r.alert.acked_by.as_deref().unwrap_or("?")
                );
                Html(pages::message(f, "Acknowledged", "action-done", &text)).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, format!("unexpected answer: {e}")).into_response(),
        },
        _ => Html(pages::message(
            f,
            "Done",
            "action-done",
            &String::from_utf8_lossy(reply),
        ))
        .into_response(),
    }
}

#[derive(Deserialize)]
pub struct IdsQuery {
    #[serde(default)]
    ids: String,
}

/// `GET /console/api/commands?ids=a,b`: those commands from this coordinator's ledger, as
/// JSON (`ops.api.commands` rows), for the result page's polling.
pub async fn command_states(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<IdsQuery>,
) -> Response {
    if c.session(&headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let ids: Vec<String> = q
        .ids
        .split(',')
        .filter(|s| !s.is_empty())
        .take(100)
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Json(json!({ "commands": [] })).into_response();
    }
    let req = CommandsRequest {
        ids,
        ..Default::default()
    };
    let commands = crate::api::command_views(&c.shared.fleet(), &req);
    Json(json!({ "commands": commands })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms_become_requests_with_the_role_they_need() {
        let p = plan(
            &form(&[
                ("verb", "command"),
                ("action", "pause"),
                ("host", "web-01"),
                ("module", "log"),
            ]),
            "olga",
        )
        .unwrap();
        assert_eq!((p.verb, p.needs), ("command", Role::Operator));
        assert_eq!(
            p.request,
            json!({"action": "pause", "hosts": ["web-01"], "module": "log", "deadline_ms": 300000, "issued_by": "olga"})
        );
        let p = plan(&form(&[("verb", "failover")]), "olga").unwrap();
        assert_eq!((p.verb, p.needs), ("failover", Role::Operator));
        let p = plan(
            &form(&[
                ("verb", "silence"),
                ("action", "add"),
                ("host", "web-*"),
                ("rules", "disk_crit, disk_warn"),
                ("for", "2h"),
                ("reason", "disk swap"),
            ]),
            "olga",
        )
        .unwrap();
        assert_eq!((p.verb, p.needs), ("silence", Role::Operator));
        assert_eq!(
            p.request,
            json!({"action": "add", "host": "web-*", "rules": ["disk_crit", "disk_warn"], "duration_ms": 7_200_000, "reason": "disk swap"})
        );
        let p = plan(
            &form(&[
                ("verb", "silence"),
                ("action", "expire"),
                ("id", "0193a4c2"),
            ]),
            "olga",
        )
        .unwrap();
        assert_eq!(p.request, json!({"action": "expire", "id": "0193a4c2"}));
        let p = plan(
            &form(&[("verb", "alert_ack"), ("id", "disk_crit/web-01//data")]),
            "olga",
        )
        .unwrap();
        assert_eq!((p.verb, p.needs), ("alert_ack", Role::Operator));
        for bad in [
            form(&[("verb", "silence"), ("action", "add"), ("reason", "r")]),
            form(&[("verb", "silence"), ("action", "add"), ("host", "h")]),
            form(&[
                ("verb", "silence"),
                ("action", "add"),
                ("host", "h"),
                ("reason", "r"),
                ("for", "0s"),
            ]),
            form(&[
                ("verb", "silence"),
                ("action", "add"),
                ("host", "h"),
                ("reason", "r"),
                ("for", "31days"),
            ]),
            form(&[
                ("verb", "silence"),
                ("action", "add"),
                ("host", "h"),
                ("reason", "r"),
                ("for", "soon"),
            ]),
            form(&[("verb", "silence"), ("action", "expire")]),
            form(&[("verb", "silence"), ("action", "mute")]),
            form(&[("verb", "alert_ack")]),
            form(&[("verb", "command"), ("action", "restore"), ("host", "h")]),
            form(&[("verb", "command"), ("action", "pause")]),
            form(&[("verb", "rm")]),
            form(&[]),
        ] {
            assert!(plan(&bad, "olga").is_err(), "{bad:?}");
        }
    }
}
