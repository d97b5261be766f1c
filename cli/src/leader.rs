//! `opsctl leader`: every coordinator the cluster knows — those answering now, and those the
//! log knows from their own events that did not answer (shown `not answering`, with when they
//! were last heard from). Pure: the replies and `now` give the same rows and text.

use std::collections::BTreeMap;

use opsfleet_proto::api::{LeaderRole, Responder, StatusReply};
use serde::{Deserialize, Serialize};

use crate::render::ago;
use crate::table::Table;

/// One coordinator in `opsctl leader -o json`: a `Responder` (role `unknown` and zeros when it
/// did not answer) plus whether it answered, its role per the log, and its last contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRow {
    #[serde(flatten)]
    pub responder: Responder,
    /// Answered this `leader` request.
    pub answering: bool,
    /// The role its newest leadership event in the log states.
    pub logged_role: LeaderRole,
    /// When it was last heard from: now when answering, else its newest event in the log.
    pub last_contact_unix_ms: i64,
}

/// The rows: answering coordinators, then the ones only the log knows; active first, then by
/// name.
pub fn rows(replies: &[StatusReply], now_unix_ms: i64) -> Vec<LeaderRow> {
    let mut by_name: BTreeMap<String, LeaderRow> = BTreeMap::new();
    for reply in replies {
        for c in &reply.coordinators {
            let row = by_name.entry(c.name.clone()).or_insert_with(|| LeaderRow {
                responder: Responder {
                    name: c.name.clone(),
                    color: c.color.clone(),
                    role: LeaderRole::Unknown,
                    epoch: 0,
                    applied_stream_seq: 0,
                    behind: 0,
                },
                answering: false,
                logged_role: c.role,
                last_contact_unix_ms: 0,
            });
            if c.last_seen_unix_ms >= row.last_contact_unix_ms {
                row.last_contact_unix_ms = c.last_seen_unix_ms;
                row.logged_role = c.role;
            }
        }
    }
    for reply in replies {
        let r = &reply.responder;
        let logged = by_name.get(&r.name).map(|row| row.logged_role);
        by_name.insert(
            r.name.clone(),
            LeaderRow {
                responder: r.clone(),
                answering: true,
                logged_role: logged.unwrap_or(r.role),
                last_contact_unix_ms: now_unix_ms,
            },
        );
    }
    let mut rows: Vec<LeaderRow> = by_name.into_values().collect();
    rows.sort_by(|a, b| {
        let key = |r: &LeaderRow| (r.responder.role != LeaderRole::Active, !r.answering);
        key(a)
            .cmp(&key(b))
            .then_with(|| a.responder.name.cmp(&b.responder.name))
    });
    rows
}

/// Whether some answering coordinator is active.
pub fn has_active(rows: &[LeaderRow]) -> bool {
    rows.iter()
        .any(|r| r.answering && r.responder.role == LeaderRole::Active)
}

/// The table, and a last line when no coordinator is active.
pub fn render(rows: &[LeaderRow], now_unix_ms: i64) -> String {
    let mut table = Table::new(&[
        "COORDINATOR",
        "COLOR",
        "ROLE",
        "EPOCH",
        "STREAM SEQ",
        "BEHIND",
        "LAST CONTACT",
    ]);
    for r in rows {
        let p = &r.responder;
        if r.answering {
            table.row([
                p.name.clone(),
                p.color.clone(),
                p.role.to_string(),
                crate::render::epoch_cell(p.epoch),
                p.applied_stream_seq.to_string(),
                p.behind.to_string(),
                "answering".to_owned(),
            ]);
        } else {
            table.row([
                p.name.clone(),
                p.color.clone(),
                format!("not answering (last {})", r.logged_role),
                "-".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                ago(now_unix_ms, r.last_contact_unix_ms),
            ]);
        }
    }
    let mut out = table.render();
    if !has_active(rows) {
        let answering = rows.iter().filter(|r| r.answering).count();
        out.push_str(&format!(
            "no coordinator is active ({answering} of {} answering)\n",
            rows.len()
        ));
    }
    out
}
