//! `ops.api.alerts`: alerts as the alert engine's events left them in the log (state, rule,
//! host, subject, since, last transition, notifications delivered or dry-run, the silences
//! holding it now, its ack), filtered by host glob and state, paged by (host, alert id).
//! Every coordinator answers from its own fold.

use opsfleet_proto::api::{
    AlertState, AlertView, AlertsReply, AlertsRequest, NotifyOutcome, Responder,
};

use super::{page, Cursor, View};
use crate::glob::glob_match;
use crate::projection::{AlertRecord, Fleet};

/// One alert as a row, with the silences active at `now` that match it and its ack.
pub(super) fn alert_view(fleet: &Fleet, a: &AlertRecord, now_unix_ms: i64) -> AlertView {
    let no_labels = std::collections::BTreeMap::new();
    let labels = fleet.host(&a.host).map_or(&no_labels, |h| &h.labels);
    let silenced_by = (fleet.silences())
        .silencing(&a.rule, &a.host, labels, now_unix_ms)
        .map(|s| s.id.clone())
        .collect();
    let previous = a.previous.map_or("new", AlertState::as_str);
    let state = a.state.unwrap_or_default();
    AlertView {
        key: a.id.clone(),
        rule: a.rule.clone(),
        host: a.host.clone(),
        subject: a.subject.clone(),
        state,
        since_unix_ms: a.since_unix_ms,
        last_transition: format!("{previous} -> {state}"),
        last_transition_unix_ms: a.since_unix_ms,
        notifications_sent: a
            .notifications
            .iter()
            .filter(|n| matches!(n.outcome, NotifyOutcome::Sent | NotifyOutcome::DryRun))
            .count() as u64,
        detail: a.summary.clone(),
        severity: a.severity,
        transitions: a.transitions,
        silenced_by,
        acked_by: a.ack.as_ref().map(|k| k.by.clone()),
        acked_at_unix_ms: a.ack.as_ref().map(|k| k.at_unix_ms),
        ack_comment: (a.ack.as_ref())
            .map(|k| k.comment.clone())
            .filter(|c| !c.is_empty()),
    }
}

/// One page of alerts matching `req`, ascending by (host, id), and the next cursor.
pub fn alerts(
    fleet: &Fleet,
    req: &AlertsRequest,
    now_unix_ms: i64,
) -> (Vec<AlertView>, Option<String>) {
    let mut rows: Vec<(Cursor, &AlertRecord)> = fleet
        .alerts()
        .alerts
        .values()
        // A notification folded before its transition leaves a record without a state.
        .filter(|a| a.state.is_some())
        .filter(|a| req.host.as_deref().is_none_or(|p| glob_match(p, &a.host)))
        .filter(|a| {
            let state = a.state.unwrap_or_default();
            req.state.as_deref().is_none_or(|s| s == state.as_str())
        })
        .map(|a| (Cursor::row(&a.host, &a.id), a))
        .collect();
    rows.sort_by(|x, y| x.0.cmp(&y.0));
    let (page, next) = page(rows.into_iter(), req);
    let rows = page.into_iter().map(|a| alert_view(fleet, a, now_unix_ms));
    (rows.collect(), next)
}

impl View for AlertsRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, now_unix_ms: i64) -> AlertsReply {
        let (alerts, next) = alerts(fleet, self, now_unix_ms);
        AlertsReply {
            responder,
            alerts,
            next,
        }
    }
}
