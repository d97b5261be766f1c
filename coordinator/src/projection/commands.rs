//! The command ledger: every command's lifecycle (issued → accepted → completed / failed /
//! rejected / expired), folded from the coordinator's `command_issued` and the agents' lifecycle
//! events. A state never moves backwards, and `accepted_count` > 1 would mean a command ran
//! twice (what failover drills check).

use std::collections::{BTreeMap, BTreeSet};

use opsfleet_proto::api::{ActionName, CommandState, Role};
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::EventEnvelope;
use serde::{Deserialize, Serialize};

/// How many steps of one command's history are kept.
pub const HISTORY: usize = 16;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStep {
    pub state: CommandState,
    pub at_unix_ms: i64,
    /// Host or coordinator that reported it.
    pub by: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub id: String,
    pub target: String,
    pub epoch: u64,
    pub issued_by: String,
    /// The role the operator acted in, from the request's subject; empty when unverified
    /// (and in records folded before roles were recorded).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opsfleet_proto::api::empty_is_none"
    )]
    pub issued_role: Option<Role>,
    pub action: String,
    pub module: String,
    pub deadline_unix_ms: i64,
    pub state: CommandState,
    pub detail: String,
    /// How many times an agent accepted it: 1 normally; more means it ran twice.
    pub accepted_count: u32,
    pub history: Vec<CommandStep>,
}

impl CommandRecord {
    /// Completed, failed, rejected or expired: nothing moves it any more.
    pub fn is_finished(&self) -> bool {
        self.state.is_final()
    }

    fn step(&mut self, state: CommandState, at: i64, by: &str, detail: &str) {
        let detail = super::bounds::clip(detail);
        self.history.push(CommandStep {
            state,
            at_unix_ms: at,
            by: by.to_owned(),
            detail: detail.clone(),
        });
        if self.history.len() > HISTORY {
            self.history.remove(0);
        }
        // Forward only; the first terminal state wins.
        if state.rank() > self.state.rank() {
            self.state = state;
            self.detail = detail;
        }
    }
}

/// The command id a body is about, if it is a command body.
pub fn command_id(body: &Body) -> Option<&str> {
    Some(match body {
        Body::CommandIssued(c) => &c.command_id,
        Body::CommandAccepted(c) => &c.command_id,
        Body::CommandCompleted(c) => &c.command_id,
        Body::CommandFailed(c) => &c.command_id,
        Body::CommandRejected(c) => &c.command_id,
        Body::CommandExpired(c) => &c.command_id,
        _ => return None,
    })
}

/// The hosts in maintenance (pure): those whose newest `drain` or `undrain` command (by
/// command id, a UUIDv7, so by issue time) is a `drain`. A host is in maintenance from the
/// drain's issue (nothing pages while its agent pauses modules) until an undrain is issued.
pub fn in_maintenance<'a>(records: impl Iterator<Item = &'a CommandRecord>) -> BTreeSet<&'a str> {
    let mut newest: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
    for r in records {
        let on = match r.action.parse::<ActionName>() {
            Ok(ActionName::Drain) => true,
            Ok(ActionName::Undrain) => false,
            _ => continue,
        };
        let slot = newest.entry(&r.target).or_insert((&r.id, on));
        if r.id.as_str() >= slot.0 {
            *slot = (&r.id, on);
        }
    }
    newest
        .into_iter()
        .filter(|(_, (_, on))| *on)
        .map(|(host, _)| host)
        .collect()
}

/// Folds one accepted event into the record of its command (created on first sight).
pub fn apply(record: &mut CommandRecord, ev: &EventEnvelope) {
    let (at, by) = (ev.time_unix_ms, ev.host.as_str());
    match &ev.body {
        Body::CommandIssued(c) => {
            record.id = c.command_id.clone();
            record.target = c.target.clone();
            record.epoch = c.epoch;
            record.issued_by = c.issued_by.clone();
            record.issued_role = c.issued_role.parse().ok();
            record.action = c.action.clone();
            record.module = c.module.clone();
            record.deadline_unix_ms = c.deadline_unix_ms;
            record.step(CommandState::Issued, at, by, "");
        }
        Body::CommandAccepted(c) => {
            record.id = c.command_id.clone();
            record.accepted_count += 1;
            record.step(CommandState::Accepted, at, by, "");
        }
        Body::CommandCompleted(c) => record.step(CommandState::Completed, at, by, &c.detail),
        Body::CommandFailed(c) => record.step(CommandState::Failed, at, by, &c.reason),
        // The stored detail keeps both epochs (rows and the digest of existing logs stay
        // as they were); views drop them unless fencing was the reason (`rejection_reason`).
        Body::CommandRejected(c) => record.step(
            CommandState::Rejected,
            at,
            by,
            &format!(
                "{} (epoch {}, highest seen {})",
                c.reason, c.epoch, c.highest_epoch_seen
            ),
        ),
        Body::CommandExpired(_) => record.step(CommandState::Expired, at, by, "deadline passed"),
        _ => {}
    }
    if record.id.is_empty() {
        if let Some(id) = command_id(&ev.body) {
            record.id = id.to_owned();
        }
    }
}

/// A step's detail as views show it: a rejection's `(epoch E, highest seen H)` suffix only
/// when fencing was the reason (E < H); the stored detail always has it.
pub fn shown_detail(detail: &str) -> &str {
    let fenced_suffix = |detail: &str| -> Option<(usize, bool)> {
        let (reason, tail) = detail.rsplit_once(" (epoch ")?;
        let (epoch, highest) = tail.strip_suffix(')')?.split_once(", highest seen ")?;
        let (epoch, highest) = (epoch.parse::<u64>().ok()?, highest.parse::<u64>().ok()?);
        Some((reason.len(), epoch < highest))
    };
    match fenced_suffix(detail) {
        Some((reason_len, false)) => &detail[..reason_len],
        _ => detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::pb;
    use uuid::Uuid;

    fn ev(by: &str, body: Body) -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            host: by.into(),
            seq: 1,
            time_unix_ms: 5,
            module: "agent".into(),
            incarnation: Uuid::nil(),
            body,
        }
    }

    fn issued() -> Body {
        Body::CommandIssued(pb::CommandIssued {
            command_id: "c1".into(),
            target: "web-01".into(),
            epoch: 7,
            issued_by: "alice".into(),
            action: "pause".into(),
            module: "log".into(),
            deadline_unix_ms: 100,
            issued_role: "operator".into(),
        })
    }

    #[test]
    fn lifecycle_moves_forward_only() {
        let mut r = CommandRecord::default();
        apply(&mut r, &ev("blue", issued()));
        assert_eq!(
            (r.state.as_str(), r.epoch, r.issued_by.as_str()),
            ("issued", 7, "alice")
        );
        assert_eq!(r.issued_role, Some(Role::Operator));
        apply(
            &mut r,
            &ev(
                "web-01",
                Body::CommandAccepted(pb::CommandAccepted {
                    command_id: "c1".into(),
                    epoch: 7,
                }),
            ),
        );
        apply(
            &mut r,
            &ev(
                "web-01",
                Body::CommandCompleted(pb::CommandCompleted {
                    command_id: "c1".into(),
                    detail: "paused".into(),
                }),
            ),
        );
        assert_eq!(
            (r.state.as_str(), r.detail.as_str()),
            ("completed", "paused")
        );
        // A late expiry from the coordinator does not overwrite the agent's result.
        apply(
            &mut r,
            &ev(
                "blue",
                Body::CommandExpired(pb::CommandExpired {
                    command_id: "c1".into(),
                    deadline_unix_ms: 100,
                }),
            ),
        );
        assert_eq!(r.state, CommandState::Completed);
        assert_eq!(r.history.len(), 4);
        assert_eq!(r.accepted_count, 1);
    }

    #[test]
    fn a_second_acceptance_is_counted() {
        let mut r = CommandRecord::default();
        apply(&mut r, &ev("blue", issued()));
        let acc = || {
            Body::CommandAccepted(pb::CommandAccepted {
                command_id: "c1".into(),
                epoch: 7,
            })
        };
        apply(&mut r, &ev("web-01", acc()));
        apply(&mut r, &ev("web-01", acc()));
        assert_eq!(r.accepted_count, 2);
    }

    #[test]
    fn a_lifecycle_event_before_its_issue_event_is_kept() {
        let mut r = CommandRecord::default();
        apply(
            &mut r,
            &ev(
                "web-01",
                Body::CommandRejected(pb::CommandRejected {
                    command_id: "c9".into(),
                    reason: "stale epoch".into(),
                    epoch: 3,
                    highest_epoch_seen: 5,
                }),
            ),
        );
        assert_eq!((r.id.as_str(), r.state.as_str()), ("c9", "rejected"));
        assert!(r.detail.contains("epoch 3, highest seen 5"), "{}", r.detail);
    }

    #[test]
    fn the_stored_detail_keeps_the_epochs_and_views_name_them_only_when_fenced() {
        let mut r = CommandRecord::default();
        let rejected = |reason: &str, epoch, highest_epoch_seen| {
            Body::CommandRejected(pb::CommandRejected {
                command_id: "c8".into(),
                reason: reason.into(),
                epoch,
                highest_epoch_seen,
            })
        };
        apply(
            &mut r,
            &ev("web-01", rejected("unknown module \"nosuch\"", 7, 7)),
        );
        assert_eq!(
            r.detail,
            "unknown module \"nosuch\" (epoch 7, highest seen 7)"
        );
        assert_eq!(shown_detail(&r.detail), "unknown module \"nosuch\"");
        let mut fenced = CommandRecord::default();
        apply(&mut fenced, &ev("web-01", rejected("stale term", 6, 7)));
        assert_eq!(
            shown_detail(&fenced.detail),
            "stale term (epoch 6, highest seen 7)"
        );
        // Text that only looks alike is left alone.
        assert_eq!(
            shown_detail("x (epoch 7, highest seen y)"),
            "x (epoch 7, highest seen y)"
        );
        assert_eq!(shown_detail("done"), "done");
    }
}
