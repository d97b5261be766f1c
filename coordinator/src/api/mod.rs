//! Query API over NATS request/reply: the serve loop, shared helpers (responder, paging,
//! host globs) and one file per verb family. Every verb is answered on `ops.api.<verb>` (every
//! coordinator answers, standby included; the first reply wins) and on
//! `ops.api.<verb>.<name>` (one coordinator). Replies are JSON from `opsfleet_proto::api`.
//! Before a request is served, `guard` checks that its reply subject is the requester's inbox
//! (else it is dropped unanswered) and that a command or failover comes with the role it needs.

mod alerts;
mod answer;
mod commands;
mod configs;
mod drills;
mod groups;
pub mod guard;
mod hosts;
pub(crate) mod rollouts;
mod runbooks;
mod serve;
mod service_configs;
mod services;
mod silence_serve;
pub(crate) mod silences;
mod status;
#[cfg(test)]
mod tests;

#[cfg(test)]
use alerts::alerts;
pub use commands::command_views;
pub(crate) use hosts::hosts;
#[cfg(test)]
use runbooks::{backups, incidents};
pub use serve::{serve, Actors};
pub(crate) use status::disk_view;
pub use status::status;

use opsfleet_report::ErrorChain;

use async_nats::jetstream::stream;
use opsfleet_proto::api::{ApiError, PagedRequest, Responder};
use serde::de::DeserializeOwned;
use tracing::warn;

use crate::projection::Fleet;
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

/// The host a paged request's cursor names (`after`), where a page of host rows starts.
pub fn after_host(req: &impl PagedRequest) -> Option<&str> {
    let after = req.page().after.as_deref()?;
    Some(after.split_once('/').map_or(after, |(host, _)| host))
}

/// A paged view of the projection: a request that `serve`'s one paged handler parses and
/// answers from this coordinator's fleet.
pub(crate) trait View: PagedRequest + Default + DeserializeOwned {
    /// The page `self` asks for, answered by `responder` from `fleet` at `now_unix_ms`.
    fn answer(&self, fleet: &Fleet, responder: Responder, now_unix_ms: i64) -> Self::Reply;
}

/// The page of `rows` (ascending by cursor) that `req` asks for: those after its cursor, at
/// most its limit, and the cursor to pass as `after` for the next page when more rows follow.
pub fn page<T>(
    rows: impl Iterator<Item = (Cursor, T)>,
    req: &impl PagedRequest,
) -> (Vec<T>, Option<String>) {
    let limit = req.limit();
    let after = req.page().after.as_deref().map(Cursor::parse);
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

pub(super) fn parse<T: Default + serde::de::DeserializeOwned>(
    payload: &[u8],
) -> Result<T, serde_json::Error> {
    if payload.is_empty() {
        Ok(T::default())
    } else {
        serde_json::from_slice(payload)
    }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Our API types are plain structs of strings and numbers: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(super) fn error_reply(shared: &Shared, error: String) -> Vec<u8> {
    to_json(&ApiError {
        responder: shared.name.clone(),
        error,
        needs_role: None,
    })
}
