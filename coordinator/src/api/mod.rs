//! Query API over NATS request/reply: the serve loop, shared helpers (responder, paging,
//! host globs) and one file per verb family. Every verb is answered on `ops.api.<verb>` (every
//! coordinator answers, standby included; the first reply wins) and on
//! `ops.api.<verb>.<name>` (one coordinator). Replies are JSON from `opsfleet_proto::api`.
//! Before a request is served, `guard` checks that its reply subject is the requester's inbox
//! (else it is dropped unanswered) and that a command or failover comes with the role it needs.

mod alerts;
mod commands;
pub mod guard;
mod hosts;
mod runbooks;
mod status;
#[cfg(test)]
mod tests;

pub use alerts::alerts;
pub use commands::command_views;
pub use hosts::{liveness, summary, LATE_INTERVALS, UP_INTERVALS};
pub use runbooks::{backups, incidents};
pub use status::{coordinator_views, host_page, host_views, status};

use opsfleet_proto::time::now_unix_ms;
use opsfleet_report::ErrorChain;
use std::sync::Arc;

use async_nats::jetstream::stream;
use futures::StreamExt;
use opsfleet_proto::api::{
    AlertsReply, AlertsRequest, ApiError, BackupsReply, BackupsRequest, CommandRequestJson,
    CommandsReply, CommandsRequest, FailoverRequest, HostsReply, HostsRequest, IncidentsReply,
    IncidentsRequest, StatusRequest,
};
use opsfleet_proto::subjects;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ApiConfig;
use crate::dispatch::{DispatchError, Dispatcher};
use crate::election::ReleaseHandle;
use crate::state::Shared;

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot subscribe to {subject}")]
pub struct SubscribeError {
    pub subject: String,
    #[source]
    pub source: async_nats::SubscribeError,
}

/// How many messages of `OPS_EVENTS` this coordinator has not persisted yet; 0 (rather than
/// failing the answer) if the server cannot say.
pub async fn behind(shared: &Shared, events: &stream::Stream) -> u64 {
    let applied = shared.applied();
    match events.get_info().await {
        Ok(info) => info.state.last_sequence.saturating_sub(applied),
        Err(e) => {
            warn!(error = %ErrorChain(&e), "cannot read stream info for `behind`");
            0
        }
    }
}

/// A paging position: (host, row key within the host). Rows are ordered by this pair, and
/// the cursor text is `host` or `host/key` (host names never contain `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub String, pub String);

impl Cursor {
    pub fn host(host: &str) -> Self {
        Cursor(host.to_owned(), String::new())
    }

    pub fn row(host: &str, key: &str) -> Self {
        Cursor(host.to_owned(), key.to_owned())
    }

    pub fn parse(text: &str) -> Self {
        match text.split_once('/') {
            Some((host, key)) => Cursor::row(host, key),
            None => Cursor::host(text),
        }
    }

    pub fn text(&self) -> String {
        if self.1.is_empty() {
            self.0.clone()
        } else {
            format!("{}/{}", self.0, self.1)
        }
    }
}

/// One page of `rows` (ascending by cursor): those after `after`, at most `limit`, and the
/// cursor to pass as `after` for the next page when more rows follow.
pub fn page<T>(
    rows: impl Iterator<Item = (Cursor, T)>,
    after: Option<&str>,
    limit: usize,
) -> (Vec<T>, Option<String>) {
    let after = after.map(Cursor::parse);
    let mut rows = rows
        .skip_while(|(c, _)| after.as_ref().is_some_and(|a| c <= a))
        .peekable();
    let mut out = Vec::new();
    let mut last = None;
    while out.len() < limit {
        let Some((cursor, row)) = rows.next() else {
            break;
        };
        out.push(row);
        last = Some(cursor);
    }
    let next = rows.peek().and(last).map(|c| c.text());
    (out, next)
}

/// Does `name` match `pattern`? `*` matches any run of characters, `?` one character;
/// without either, the pattern is an exact name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Answers API requests until `cancel` fires.
pub async fn serve(
    client: async_nats::Client,
    shared: Arc<Shared>,
    events: stream::Stream,
    release: ReleaseHandle,
    dispatcher: Dispatcher,
    policy: ApiConfig,
    cancel: CancellationToken,
) -> Result<(), SubscribeError> {
    let counters = Arc::new(guard::Counters::default());
    let subscribe = |subject: String| {
        let client = client.clone();
        async move {
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| SubscribeError { subject, source })
        }
    };
    let mut subs = Vec::new();
    for verb in [
        subjects::API_STATUS,
        subjects::API_FAILOVER,
        subjects::API_COMMAND,
        subjects::API_COMMANDS,
        subjects::API_HOSTS,
        subjects::API_BACKUPS,
        subjects::API_INCIDENTS,
        subjects::API_ALERTS,
    ] {
        subs.push(subscribe(verb.to_owned()).await?);
        subs.push(subscribe(subjects::api_subject_for(verb, &shared.name)).await?);
    }
    for subject in crate::identity::subscriptions(&shared.name) {
        subs.push(subscribe(subject).await?);
    }
    let mut requests = futures::stream::select_all(subs);
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            msg = requests.next() => msg,
        };
        let Some(msg) = msg else { return Ok(()) };
        let Some(reply_to) = msg.reply.clone() else {
            debug!(subject = %msg.subject, "request without reply subject ignored");
            continue;
        };
        let (subject, operator) = crate::identity::split(&msg.subject);
        // Replies go only to the requester's own inbox: answering on any other subject would
        // have this coordinator publish there with its own (wider) permissions.
        if let Err(e) = guard::check_reply(&reply_to, operator.as_ref()) {
            counters.foreign_reply();
            warn!(
                subject = %msg.subject,
                reply = %e.reply,
                wanted = %e.wanted,
                operator = operator.as_ref().map_or("", |i| i.operator.as_str()),
                refused_total = counters.snapshot().foreign_reply,
                "request with a foreign reply subject refused"
            );
            continue;
        }
        let refuse = |r: guard::Refusal| {
            counters.refused(&r);
            warn!(
                subject = %msg.subject,
                operator = operator.as_ref().map_or("", |i| i.operator.as_str()),
                acted_as = operator.as_ref().map_or("", |i| i.role.as_str()),
                needs = r.needs_role().map_or("", |n| n.as_str()),
                reason = %r,
                "API request refused"
            );
            to_json(&ApiError {
                responder: shared.name.clone(),
                error: r.to_string(),
                needs_role: r.needs_role(),
            })
        };
        let verb = subject
            .strip_suffix(&format!(".{}", shared.name))
            .unwrap_or(&subject);
        let addressed_to_me = verb.len() != subject.len();
        let reply = match verb {
            subjects::API_STATUS => match parse::<StatusRequest>(&msg.payload) {
                Ok(req) => to_json(&status(&shared, &events, &req, counters.snapshot()).await),
                Err(e) => error_reply(&shared, format!("bad status request: {e}")),
            },
            subjects::API_FAILOVER => match parse::<FailoverRequest>(&msg.payload) {
                Ok(req) => {
                    match guard::check_failover(operator.as_ref(), policy.allow_unidentified) {
                        // Every coordinator refuses alike; the first answer wins.
                        Err(r) => refuse(r),
                        Ok(()) => {
                            let claimed = req.requested_by.clone().unwrap_or_default();
                            let issuer = crate::identity::issuer(&claimed, operator.as_ref());
                            match commands::failover(&shared, &release, req, &issuer).await {
                                Ok(reply) => to_json(&reply),
                                // Standbys stay silent on the broadcast subject so the active one
                                // answers.
                                Err(_) if !addressed_to_me => continue,
                                Err(e) => error_reply(&shared, e),
                            }
                        }
                    }
                }
                Err(e) => error_reply(&shared, format!("bad failover request: {e}")),
            },
            subjects::API_COMMAND => match parse::<CommandRequestJson>(&msg.payload) {
                // Issuing may take a while for a large fleet: answer from a task so that
                // status requests are not held up.
                Ok(req) => {
                    let allowed = guard::check_command(
                        operator.as_ref(),
                        &req.action,
                        policy.allow_unidentified,
                    );
                    if let Err(r) = allowed {
                        let reply = refuse(r);
                        if let Err(e) = client.publish(reply_to, reply.into()).await {
                            warn!(error = %ErrorChain(&e), "cannot send API reply");
                        }
                        continue;
                    }
                    let issuer = crate::identity::issuer(&req.issued_by, operator.as_ref());
                    let (dispatcher, client, shared) =
                        (dispatcher.clone(), client.clone(), Arc::clone(&shared));
                    tokio::spawn(async move {
                        let reply = match dispatcher.issue(req, &issuer).await {
                            Ok(reply) => to_json(&reply),
                            // Standbys stay silent on the broadcast subject.
                            Err(DispatchError::NotActive { .. }) if !addressed_to_me => return,
                            Err(e) => error_reply(&shared, opsfleet_report::error_chain(&e)),
                        };
                        if let Err(e) = client.publish(reply_to, reply.into()).await {
                            warn!(error = %ErrorChain(&e), "cannot send API reply");
                        }
                    });
                    continue;
                }
                Err(e) => error_reply(&shared, format!("bad command request: {e}")),
            },
            subjects::API_COMMANDS => match parse::<CommandsRequest>(&msg.payload) {
                Ok(req) => to_json(&CommandsReply {
                    responder: shared.responder(0),
                    commands: command_views(&shared.fleet(), &req),
                }),
                Err(e) => error_reply(&shared, format!("bad commands request: {e}")),
            },
            subjects::API_HOSTS => match parse::<HostsRequest>(&msg.payload) {
                Ok(req) => {
                    let behind = behind(&shared, &events).await;
                    let now = now_unix_ms();
                    let (hosts, next) = hosts::hosts(&shared.fleet(), &req, now);
                    to_json(&HostsReply {
                        responder: shared.responder(behind),
                        now_unix_ms: now,
                        hosts,
                        next,
                    })
                }
                Err(e) => error_reply(&shared, format!("bad hosts request: {e}")),
            },
            subjects::API_BACKUPS => match parse::<BackupsRequest>(&msg.payload) {
                Ok(req) => {
                    let behind = behind(&shared, &events).await;
                    let (backups, next) = backups(&shared.fleet(), &req);
                    to_json(&BackupsReply {
                        responder: shared.responder(behind),
                        backups,
                        next,
                    })
                }
                Err(e) => error_reply(&shared, format!("bad backups request: {e}")),
            },
            subjects::API_INCIDENTS => match parse::<IncidentsRequest>(&msg.payload) {
                Ok(req) => {
                    let behind = behind(&shared, &events).await;
                    let (incidents, next) = incidents(&shared.fleet(), &req);
                    to_json(&IncidentsReply {
                        responder: shared.responder(behind),
                        incidents,
                        next,
                    })
                }
                Err(e) => error_reply(&shared, format!("bad incidents request: {e}")),
            },
            subjects::API_ALERTS => match parse::<AlertsRequest>(&msg.payload) {
                Ok(req) => {
                    let behind = behind(&shared, &events).await;
                    let (alerts, next) = alerts(&shared.fleet(), &req);
                    to_json(&AlertsReply {
                        responder: shared.responder(behind),
                        alerts,
                        next,
                    })
                }
                Err(e) => error_reply(&shared, format!("bad alerts request: {e}")),
            },
            _ => continue,
        };
        if let Err(e) = client.publish(reply_to, reply.into()).await {
            warn!(error = %ErrorChain(&e), "cannot send API reply");
        }
    }
}

fn parse<T: Default + serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, serde_json::Error> {
    if payload.is_empty() {
        Ok(T::default())
    } else {
        serde_json::from_slice(payload)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our API types are plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn error_reply(shared: &Shared, error: String) -> Vec<u8> {
    to_json(&ApiError {
        responder: shared.name.clone(),
        error,
        needs_role: None,
    })
}
