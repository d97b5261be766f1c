//! `ops.api.drills` (each declared drill: schedule, next due, last runs, from the log) and
//! `ops.api.drill` (an operator's run now: role-checked, the name checked by any coordinator,
//! run by the active one's drill driver and answered when it ended).

use std::sync::Arc;

use super::serve::{Incoming, Server};
use super::{error_reply, guard, parse, to_json};
use crate::drills::ask::Refused;
use crate::drills::schedule::next_due;
use crate::drills::DrillConfig;
use crate::projection::Fleet;
use opsfleet_proto::api::{
    DrillRunReply, DrillRunRequest, DrillRunView, DrillView, DrillsReply, DrillsRequest, Responder,
};

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The declared drills as `fleet` shows them at `now_unix_ms` (pure).
pub fn drills(
    drills: &[DrillConfig],
    fleet: &Fleet,
    req: &DrillsRequest,
    responder: Responder,
    now_unix_ms: i64,
) -> DrillsReply {
    let views = (drills.iter())
        .filter(|d| req.drill.as_ref().is_none_or(|n| *n == d.name))
        .map(|d| {
            let h = fleet.drills().get(&d.name);
            DrillView {
                name: d.name.clone(),
                kind: d.kind.as_str().to_owned(),
                every_ms: ms(d.every),
                jitter_ms: ms(d.jitter),
                overdue_after_ms: ms(d.overdue_after()),
                enabled: d.enabled,
                group: d.group.clone(),
                next_due_unix_ms: if d.enabled {
                    next_due(d, h, now_unix_ms)
                } else {
                    0
                },
                running: h.is_some_and(|h| h.open().next().is_some()),
                last_passed_unix_ms: h.map_or(0, |h| h.last_passed_unix_ms),
                last_failed_unix_ms: h.map_or(0, |h| h.last_failed_unix_ms),
                runs: (h.map(|h| h.runs.as_slice()).unwrap_or_default().iter())
                    .map(|r| DrillRunView {
                        run_id: r.run_id.clone(),
                        slot_unix_ms: r.slot_unix_ms,
                        epoch: r.epoch,
                        requested_by: r.requested_by.clone(),
                        phase: r.phase.clone(),
                        started_unix_ms: r.started_unix_ms,
                        ended_unix_ms: r.ended_unix_ms,
                        took_ms: r.took_ms,
                        detail: r.detail.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    DrillsReply {
        responder,
        drills: views,
    }
}

impl Server {
    /// `ops.api.drills`, from this coordinator's config and fleet.
    pub(super) async fn drills(&self, payload: &[u8]) -> Vec<u8> {
        let req = match parse::<DrillsRequest>(payload) {
            Ok(req) => req,
            Err(e) => return error_reply(&self.shared, format!("bad drills request: {e}")),
        };
        let responder = (self.shared).responder(super::behind(&self.shared, &self.events).await);
        let now = opsfleet_proto::time::now_unix_ms();
        let fleet = self.shared.fleet();
        to_json(&drills(self.drills.drills(), &fleet, &req, responder, now))
    }

    /// `ops.api.drill`: refused for a viewer and for an unknown drill by every coordinator
    /// alike; run by the active one (standbys stay silent on the broadcast subject), answered
    /// from a task once the run ended.
    pub(super) fn drill_run(&self, req: Incoming) -> Option<Vec<u8>> {
        let body: DrillRunRequest = match self.request(&req.msg.payload, "drill") {
            Ok(body) => body,
            Err(reply) => return Some(reply),
        };
        let allowed = guard::check_drill_run(req.operator.as_ref(), self.policy.allow_unidentified);
        if let Err(r) = allowed {
            return Some(self.refuse(&req, r));
        }
        if let Err(e) = self.drills.check(&body.drill) {
            return Some(error_reply(&self.shared, e.to_string()));
        }
        if !self.acts_on(&req) {
            return None;
        }
        let claimed = body.requested_by.clone().unwrap_or_default();
        let issuer = crate::identity::issuer(&claimed, req.operator.as_ref());
        let (handle, shared) = (self.drills.clone(), Arc::clone(&self.shared));
        let addressed_to_me = req.addressed_to_me;
        self.answer_later(req.reply_to, async move {
            Some(match handle.run(body.drill, issuer.name).await {
                Ok(ran) => to_json(&DrillRunReply {
                    responder: shared.responder(0),
                    drill: ran.drill,
                    kind: ran.kind,
                    run_id: ran.run_id,
                    phase: ran.phase,
                    took_ms: ran.took_ms,
                    detail: ran.detail,
                }),
                Err(Refused::NotActive) if !addressed_to_me => return None,
                Err(e) => error_reply(&shared, e.to_string()),
            })
        });
        None
    }
}
