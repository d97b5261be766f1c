//! `ops.api.silence` (add / expire), `ops.api.alert_ack` and `ops.api.silences`. A request is
//! checked here (pure: `plan_add`, `find`, `plan_ack`), recorded by the active coordinator
//! once caught up (`acting::Gate`) as a `silence_added` / `silence_expired` / `alert_acked`
//! event, and answered once folded back. The list is a paged view of the projection.

use std::time::Duration;

use opsfleet_proto::api::{
    AlertAckReply, AlertAckRequest, AlertState, Responder, SilenceAdd, SilenceReply,
    SilenceRequest, SilenceView, SilencesReply, SilencesRequest, SILENCE_MATCHERS_MAX,
    SILENCE_MAX_MS, SILENCE_TEXT_MAX,
};
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::time::now_unix_ms;
use tracing::info;

use super::{page, Cursor, View};
use crate::acting::{Closed, Gate};
use crate::emit::{EmitError, Emitter};
use crate::identity::Issuer;
use crate::projection::bounds::SILENCES_KEPT;
use crate::projection::{Fleet, SilenceRecord};
use crate::state::Shared;

/// How long a request waits for its event to come back through ingest.
const FOLD_WAIT: Duration = Duration::from_secs(15);
/// Shortest id prefix `silence expire` takes.
pub const ID_PREFIX_MIN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SilenceApiError {
    #[error("{name} is not active; send silence and ack requests to the active coordinator")]
    NotActive { name: String },
    #[error("{name} became active and is still catching up with the event stream; try again in a few seconds")]
    CatchingUp { name: String },
    #[error("bad silence: {0}")]
    Bad(String),
    #[error("no silence {id} (known: {known})")]
    Unknown { id: String, known: String },
    #[error("{id} is ambiguous: it starts {count} silences; give more of it")]
    Ambiguous { id: String, count: usize },
    #[error("silence {id} already ended at {ended_unix_ms} (unix ms)")]
    Ended { id: String, ended_unix_ms: i64 },
    #[error("{active} silences are active, the most kept; expire one first")]
    Full { active: usize },
    #[error("no alert {id} (`opsctl alerts -o json` shows the keys)")]
    UnknownAlert { id: String },
    #[error("alert {id} is {state}: only a pending or firing alert can be acknowledged")]
    NotOpen { id: String, state: String },
    #[error("alert {id} is already acknowledged by {by}")]
    AlreadyAcked { id: String, by: String },
    #[error("cannot record the request")]
    Emit(#[from] EmitError),
    #[error("the request was recorded but did not come back through ingest within {0:?}; `opsctl silence list` shows it")]
    NotFolded(Duration),
}

impl SilenceApiError {
    pub fn is_not_active(&self) -> bool {
        matches!(self, SilenceApiError::NotActive { .. })
    }
}

/// Is `glob` a host glob: name characters, `*` and `?`, 1..=64 of them?
fn valid_glob(glob: &str) -> bool {
    (1..=64).contains(&glob.len())
        && glob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '?'))
}

/// Checks a new silence (pure): the event body to record, created now by `issuer`.
pub fn plan_add(
    fleet: &Fleet,
    req: &SilenceAdd,
    issuer: &Issuer,
    epoch: u64,
    now: i64,
) -> Result<pb::SilenceAdded, SilenceApiError> {
    let bad = |m: String| Err(SilenceApiError::Bad(m));
    let host = req.host.as_deref().map(str::trim).unwrap_or("");
    if host.is_empty() && req.labels.is_empty() && req.rules.is_empty() {
        return bad("give at least one matcher: a host glob, a label or a rule".into());
    }
    if !host.is_empty() && !valid_glob(host) {
        return bad(format!(
            "host glob {host:?} is not a glob of host names (letters, digits, -, _, * and ?; at most 64)"
        ));
    }
    if req.labels.len() > SILENCE_MATCHERS_MAX || req.rules.len() > SILENCE_MATCHERS_MAX {
        return bad(format!(
            "at most {SILENCE_MATCHERS_MAX} labels and {SILENCE_MATCHERS_MAX} rules"
        ));
    }
    for label in &req.labels {
        let ok = label.split_once('=').is_some_and(|(k, v)| {
            opsfleet_proto::subjects::validate_token(k).is_ok()
                && !v.is_empty()
                && v.len() <= 256
                && !v.chars().any(char::is_control)
        });
        if !ok {
            return bad(format!("label {label:?} is not key=value"));
        }
    }
    for rule in &req.rules {
        if opsfleet_proto::subjects::validate_token(rule).is_err() {
            return bad(format!("rule {rule:?} is not a rule name"));
        }
    }
    if req.duration_ms <= 0 || req.duration_ms > SILENCE_MAX_MS {
        return bad(format!(
            "duration {} ms is not within 1 ms and 30 days",
            req.duration_ms
        ));
    }
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > SILENCE_TEXT_MAX || reason.chars().any(char::is_control)
    {
        return bad(format!(
            "a reason is required: one line of at most {SILENCE_TEXT_MAX} bytes"
        ));
    }
    let active = (fleet.silences().iter())
        .filter(|s| s.end_unix_ms() > now)
        .count();
    if active >= SILENCES_KEPT {
        return Err(SilenceApiError::Full { active });
    }
    Ok(pb::SilenceAdded {
        silence_id: uuid::Uuid::now_v7().to_string(),
        host_glob: host.to_owned(),
        labels: req.labels.clone(),
        rules: req.rules.clone(),
        starts_unix_ms: now,
        ends_unix_ms: now.saturating_add(req.duration_ms),
        reason: reason.to_owned(),
        created_by: issuer.name.clone(),
        created_role: issuer.role_text(),
        epoch,
    })
}

/// The silence `id` names (exactly, or a unique prefix of at least 8 characters) that has not
/// ended by `now` (pure).
pub fn find<'a>(
    fleet: &'a Fleet,
    id: &str,
    now: i64,
) -> Result<&'a SilenceRecord, SilenceApiError> {
    let id = id.trim();
    let hits: Vec<&SilenceRecord> = match fleet.silences().get(id) {
        Some(s) => vec![s],
        None if id.len() >= ID_PREFIX_MIN => (fleet.silences().iter())
            .filter(|s| s.id.starts_with(id))
            .collect(),
        None => Vec::new(),
    };
    let s = match hits.as_slice() {
        [one] => *one,
        [] => {
            let active: Vec<&str> = (fleet.silences().iter())
                .filter(|s| s.end_unix_ms() > now)
                .map(|s| s.id.as_str())
                .take(5)
                .collect();
            return Err(SilenceApiError::Unknown {
                id: id.to_owned(),
                known: if active.is_empty() {
                    "no active silence".to_owned()
                } else {
                    active.join(", ")
                },
            });
        }
        many => {
            return Err(SilenceApiError::Ambiguous {
                id: id.to_owned(),
                count: many.len(),
            })
        }
    };
    if s.end_unix_ms() <= now {
        return Err(SilenceApiError::Ended {
            id: s.id.clone(),
            ended_unix_ms: s.end_unix_ms(),
        });
    }
    Ok(s)
}

/// Checks an ack (pure): the event body to record.
pub fn plan_ack(
    fleet: &Fleet,
    req: &AlertAckRequest,
    issuer: &Issuer,
    epoch: u64,
    now: i64,
) -> Result<pb::AlertAcked, SilenceApiError> {
    let id = req.id.trim();
    let Some(rec) = fleet.alerts().alerts.get(id).filter(|r| r.state.is_some()) else {
        return Err(SilenceApiError::UnknownAlert { id: id.to_owned() });
    };
    if !matches!(rec.state, Some(AlertState::Firing | AlertState::Pending)) {
        return Err(SilenceApiError::NotOpen {
            id: id.to_owned(),
            state: rec.state.unwrap_or_default().as_str().to_owned(),
        });
    }
    if let Some(ack) = &rec.ack {
        return Err(SilenceApiError::AlreadyAcked {
            id: id.to_owned(),
            by: ack.by.clone(),
        });
    }
    let comment = req.comment.as_deref().unwrap_or("").trim();
    if comment.len() > SILENCE_TEXT_MAX || comment.chars().any(char::is_control) {
        return Err(SilenceApiError::Bad(format!(
            "the comment must be one line of at most {SILENCE_TEXT_MAX} bytes"
        )));
    }
    Ok(pb::AlertAcked {
        alert_id: id.to_owned(),
        transition_id: rec.transition_id.clone(),
        by: issuer.name.clone(),
        role: issuer.role_text(),
        at_unix_ms: now,
        comment: comment.to_owned(),
        epoch,
    })
}

/// The gate the silence and ack requests share (one per coordinator, so the barrier of a
/// term is read once).
pub type SharedGate = tokio::sync::Mutex<Gate>;

/// The term's epoch if this coordinator may record now (active and caught up).
async fn acting(shared: &Shared, gate: &SharedGate) -> Result<u64, SilenceApiError> {
    let name = shared.name.clone();
    let opened = gate.lock().await.open_or_why().await;
    opened.map_err(|closed| match closed {
        Closed::NotActive => SilenceApiError::NotActive { name },
        Closed::CatchingUp => SilenceApiError::CatchingUp { name },
    })
}

/// Polls the fleet until `done` finds what was recorded.
async fn folded<T>(
    shared: &Shared,
    done: impl Fn(&Fleet) -> Option<T>,
) -> Result<T, SilenceApiError> {
    let deadline = tokio::time::Instant::now() + FOLD_WAIT;
    loop {
        if let Some(t) = done(&shared.fleet()) {
            return Ok(t);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(SilenceApiError::NotFolded(FOLD_WAIT));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `ops.api.silence`: records the add or expiry as the active coordinator and answers with
/// the silence once folded.
pub async fn silence(
    shared: &Shared,
    emitter: &Emitter,
    gate: &SharedGate,
    req: SilenceRequest,
    issuer: &Issuer,
) -> Result<SilenceReply, SilenceApiError> {
    let epoch = acting(shared, gate).await?;
    let now = now_unix_ms();
    let (id, body) = {
        let fleet = shared.fleet();
        match &req {
            SilenceRequest::Add(add) => {
                let a = plan_add(&fleet, add, issuer, epoch, now)?;
                (a.silence_id.clone(), Body::SilenceAdded(a))
            }
            SilenceRequest::Expire(x) => {
                let s = find(&fleet, &x.id, now)?;
                let body = Body::SilenceExpired(pb::SilenceExpired {
                    silence_id: s.id.clone(),
                    by: issuer.name.clone(),
                    role: issuer.role_text(),
                    at_unix_ms: now,
                    epoch,
                });
                (s.id.clone(), body)
            }
        }
    };
    if !gate.lock().await.still(epoch) {
        return Err(SilenceApiError::NotActive {
            name: shared.name.clone(),
        });
    }
    emitter.emit(body, Duration::from_secs(10)).await?;
    info!(silence = %id, what = req.what(), by = %issuer.name, epoch, "silence recorded");
    let expire = matches!(req, SilenceRequest::Expire(_));
    let silence = folded(shared, |fleet| {
        let s = fleet.silences().get(&id)?;
        (!expire || s.expired.is_some()).then(|| silence_view(s, now_unix_ms()))
    })
    .await?;
    Ok(SilenceReply {
        responder: shared.responder(0),
        silence,
    })
}

/// `ops.api.alert_ack`: records the ack as the active coordinator and answers with the alert
/// once folded.
pub async fn ack(
    shared: &Shared,
    emitter: &Emitter,
    gate: &SharedGate,
    req: AlertAckRequest,
    issuer: &Issuer,
) -> Result<AlertAckReply, SilenceApiError> {
    let epoch = acting(shared, gate).await?;
    let body = plan_ack(&shared.fleet(), &req, issuer, epoch, now_unix_ms())?;
    if !gate.lock().await.still(epoch) {
        return Err(SilenceApiError::NotActive {
            name: shared.name.clone(),
        });
    }
    let id = body.alert_id.clone();
    emitter
        .emit(Body::AlertAcked(body), Duration::from_secs(10))
        .await?;
    info!(alert = %id, by = %issuer.name, epoch, "alert acknowledged");
    let alert = folded(shared, |fleet| {
        let rec = fleet.alerts().alerts.get(&id).filter(|r| r.ack.is_some())?;
        Some(super::alerts::alert_view(fleet, rec, now_unix_ms()))
    })
    .await?;
    Ok(AlertAckReply {
        responder: shared.responder(0),
        alert,
    })
}

/// One silence as a row, its state judged at `now`.
pub fn silence_view(s: &SilenceRecord, now: i64) -> SilenceView {
    let state = if s.active_at(now) {
        "active"
    } else if now < s.starts_unix_ms && now < s.end_unix_ms() {
        "pending"
    } else if s
        .expired
        .as_ref()
        .is_some_and(|e| e.at_unix_ms < s.ends_unix_ms)
    {
        "expired"
    } else {
        "ended"
    };
    SilenceView {
        id: s.id.clone(),
        state: state.to_owned(),
        host: s.host_glob.clone(),
        labels: s.labels.clone(),
        rules: s.rules.clone(),
        starts_unix_ms: s.starts_unix_ms,
        ends_unix_ms: s.ends_unix_ms,
        reason: s.reason.clone(),
        created_by: s.created_by.clone(),
        created_role: s.created_role.clone(),
        expired_by: s.expired.as_ref().map(|e| e.by.clone()),
        expired_unix_ms: s.expired.as_ref().map(|e| e.at_unix_ms),
    }
}

impl View for SilencesRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, now_unix_ms: i64) -> SilencesReply {
        let rows = (fleet.silences().iter())
            .filter(|s| self.all || s.end_unix_ms() > now_unix_ms)
            .map(|s| (Cursor::host(&s.id), s));
        let (rows, next) = page(rows, self);
        SilencesReply {
            responder,
            now_unix_ms,
            silences: rows
                .into_iter()
                .map(|s| silence_view(s, now_unix_ms))
                .collect(),
            next,
        }
    }
}

#[cfg(test)]
#[path = "silences_tests.rs"]
mod tests;
