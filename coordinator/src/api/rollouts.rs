//! `ops.api.rollout` (start one, or pause / resume / promote / abort / undo one: checked here,
//! recorded as a step, answered once folded back) and `ops.api.rollouts` (the views). Only
//! the active coordinator records; the driver then acts on what was recorded.

use std::time::Duration;

use opsfleet_proto::api::{
    RolloutOp, RolloutPhase, RolloutReply, RolloutRequest, RolloutsReply, RolloutsRequest,
};
use opsfleet_proto::pb::{self, event::Body, rollout_step::Step};
use opsfleet_proto::time::now_unix_ms;
use tracing::info;

use crate::dispatch::Dispatcher;
use crate::emit::EmitError;
use crate::identity::{Issuer, DRILL, UNVERIFIED};
use crate::projection::rollouts::Rollout;
use crate::projection::Fleet;
use crate::rollout::plan::{plan, PlanError};
use crate::rollout::view::view;
use crate::state::Shared;

/// Default number of rollouts `ops.api.rollouts` lists.
pub const ROLLOUTS_LIMIT_DEFAULT: usize = 20;
/// How long a request waits for its step to come back through ingest.
const FOLD_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum RolloutApiError {
    #[error("{name} is not active (lease holder: {holder}); send rollout requests to the active coordinator")]
    NotActive { name: String, holder: String },
    #[error("cannot start the rollout: {0}")]
    Plan(#[from] PlanError),
    #[error("bad rollout request: {0}")]
    Bad(String),
    #[error("no rollout {id} (known: {known})")]
    Unknown { id: String, known: String },
    #[error("{id} is ambiguous: it starts {count} rollouts; give more of it")]
    Ambiguous { id: String, count: usize },
    #[error("no rollout of {service}")]
    NoneOf { service: String },
    #[error("rollout {id} is {phase}: cannot {op} it{hint}")]
    Phase {
        id: String,
        phase: &'static str,
        op: &'static str,
        hint: String,
    },
    #[error("rollout {id} needs a second person: it was started by {started_by}, so another operator must promote it")]
    TwoPerson { id: String, started_by: String },
    #[error("rollout {id} needs a second person: a promote from an unidentified request (no --operator) cannot be told apart from the one who started it")]
    Unverified { id: String },
    #[error("cannot record the request")]
    Emit(#[from] EmitError),
    #[error("the request was recorded but did not come back through ingest within {0:?}; `opsctl rollout status` shows it")]
    NotFolded(Duration),
}

impl RolloutApiError {
    pub fn is_not_active(&self) -> bool {
        matches!(self, RolloutApiError::NotActive { .. })
    }
}

/// The rollout a request names: by id (or unique prefix), else the service's newest.
pub fn find<'a>(
    fleet: &'a Fleet,
    id: Option<&str>,
    service: Option<&str>,
) -> Result<&'a Rollout, RolloutApiError> {
    let all = fleet.rollouts();
    if let Some(id) = id.map(str::trim).filter(|i| !i.is_empty()) {
        if let Some(r) = all.get(id) {
            return Ok(r);
        }
        let hits: Vec<&Rollout> = all.iter().filter(|r| r.id.starts_with(id)).collect();
        return match hits.as_slice() {
            [one] => Ok(one),
            [] => Err(RolloutApiError::Unknown {
                id: id.to_owned(),
                known: crate::dispatch::hint(newest(fleet, None).map(|r| r.id.as_str())),
            }),
            many => Err(RolloutApiError::Ambiguous {
                id: id.to_owned(),
                count: many.len(),
            }),
        };
    }
    let service = service.map(str::trim).unwrap_or("");
    newest(fleet, (!service.is_empty()).then_some(service))
        .next()
        .ok_or_else(|| RolloutApiError::NoneOf {
            service: if service.is_empty() {
                "any service".to_owned()
            } else {
                service.to_owned()
            },
        })
}

/// Rollouts newest first, of `service` when given.
fn newest<'a>(fleet: &'a Fleet, service: Option<&str>) -> std::vec::IntoIter<&'a Rollout> {
    let mut all: Vec<&Rollout> = (fleet.rollouts().iter())
        .filter(|r| service.is_none_or(|s| r.plan.service == s))
        .collect();
    all.sort_by(|a, b| (b.started_at_unix_ms, &b.id).cmp(&(a.started_at_unix_ms, &a.id)));
    all.into_iter()
}

/// `ops.api.rollouts`.
pub fn list(shared: &Shared, req: &RolloutsRequest) -> Result<RolloutsReply, RolloutApiError> {
    let fleet = shared.fleet();
    let limit = req.limit.unwrap_or(ROLLOUTS_LIMIT_DEFAULT).max(1);
    let rollouts = if req.id.is_some() {
        vec![view(find(&fleet, req.id.as_deref(), None)?, &fleet)]
    } else {
        newest(&fleet, req.service.as_deref())
            .take(limit)
            .map(|r| view(r, &fleet))
            .collect()
    };
    Ok(RolloutsReply {
        responder: shared.responder(0),
        rollouts,
    })
}

/// A rollout id: the service and the start time, with a random tail.
fn new_id(service: &str) -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let (day, time) = digits.split_at(digits.len().min(8));
    let random = uuid::Uuid::now_v7().simple().to_string();
    let tail = &random[random.len() - 4..];
    format!("{service}-{day}-{time}-{tail}")
}

/// The operator's own name, without the annotations a name may carry.
fn person(name: &str) -> &str {
    name.trim_end_matches(UNVERIFIED).trim_end_matches(DRILL)
}

/// Checks an op against the rollout's phase (and the two-person rule): the step to record.
fn control(r: &Rollout, op: RolloutOp, issuer: &Issuer) -> Result<Step, RolloutApiError> {
    let phase = r.phase();
    let refuse = |hint: &str| RolloutApiError::Phase {
        id: r.id.clone(),
        phase: phase.as_str(),
        op: op.as_str(),
        hint: hint.to_owned(),
    };
    match op {
        RolloutOp::Start => return Err(RolloutApiError::Bad("start names no rollout".into())),
        RolloutOp::Pause
            if !matches!(phase, RolloutPhase::Running | RolloutPhase::WaitingPromote) =>
        {
            return Err(refuse(""))
        }
        RolloutOp::Resume if phase != RolloutPhase::Paused => return Err(refuse("")),
        RolloutOp::Promote if phase != RolloutPhase::WaitingPromote => {
            return Err(refuse(
                " (promote waits for a wave of a --manual rollout to pass its soak)",
            ))
        }
        RolloutOp::Promote if r.plan.two_person && issuer.role.is_none() => {
            return Err(RolloutApiError::Unverified { id: r.id.clone() })
        }
        RolloutOp::Promote
            if r.plan.two_person && person(&issuer.name) == person(&r.plan.started_by) =>
        {
            return Err(RolloutApiError::TwoPerson {
                id: r.id.clone(),
                started_by: r.plan.started_by.clone(),
            })
        }
        RolloutOp::Abort if phase.is_final() || phase == RolloutPhase::RollingBack => {
            return Err(refuse(""))
        }
        RolloutOp::Undo
            if !(matches!(
                phase,
                RolloutPhase::Completed
                    | RolloutPhase::Running
                    | RolloutPhase::Paused
                    | RolloutPhase::WaitingPromote
            )) =>
        {
            return Err(refuse(
                " (undo puts the previous version back after a completed or running rollout)",
            ))
        }
        _ => {}
    }
    Ok(Step::Control(pb::RolloutControl {
        op: op.as_str().to_owned(),
        by: issuer.name.clone(),
        role: issuer.role_text(),
    }))
}

/// `ops.api.rollout`: records the request's step as the active coordinator and answers with
/// the rollout once the step is folded.
pub async fn act(
    shared: &Shared,
    dispatcher: &Dispatcher,
    req: RolloutRequest,
    issuer: &Issuer,
) -> Result<RolloutReply, RolloutApiError> {
    let view_now = shared.leadership.view();
    let Some(epoch) = view_now.acting_epoch(tokio::time::Instant::now()) else {
        return Err(RolloutApiError::NotActive {
            name: shared.name.clone(),
            holder: view_now
                .holder
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        });
    };
    let now = now_unix_ms();
    let (id, step, steps_before) = {
        let fleet = shared.fleet();
        match req.op {
            RolloutOp::Start => {
                let start = req
                    .start
                    .as_ref()
                    .ok_or_else(|| RolloutApiError::Bad("start without its rollout".into()))?;
                let started = plan(&fleet, start, issuer, dispatcher.max_deadline(), now)?;
                (new_id(&start.service), Step::Started(started), 0)
            }
            op => {
                let r = find(&fleet, req.id.as_deref(), req.service.as_deref())?;
                if op == RolloutOp::Undo && r.phase() == RolloutPhase::Completed {
                    let newest = newest(&fleet, Some(&r.plan.service)).next();
                    if newest.is_some_and(|n| n.id != r.id) {
                        return Err(RolloutApiError::Phase {
                            id: r.id.clone(),
                            phase: "completed",
                            op: "undo",
                            hint: format!(
                                " (a later rollout of {} exists; undo that one)",
                                r.plan.service
                            ),
                        });
                    }
                }
                (r.id.clone(), control(r, op, issuer)?, r.steps)
            }
        }
    };
    let body = Body::Rollout(pb::RolloutStep {
        rollout_id: id.clone(),
        epoch,
        at_unix_ms: now,
        step: Some(step),
    });
    dispatcher
        .emitter()
        .emit(body, Duration::from_secs(10))
        .await?;
    info!(rollout = %id, op = req.op.as_str(), by = %issuer.name, epoch, "rollout request recorded");
    let deadline = tokio::time::Instant::now() + FOLD_WAIT;
    loop {
        {
            let fleet = shared.fleet();
            if let Some(r) = fleet.rollouts().get(&id).filter(|r| r.steps > steps_before) {
                return Ok(RolloutReply {
                    responder: shared.responder(0),
                    rollout: view(r, &fleet),
                });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RolloutApiError::NotFolded(FOLD_WAIT));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use opsfleet_proto::api::Role;

    use super::*;
    use crate::projection::Rollouts;

    /// A `--manual --two-person` rollout started by alice whose canary passed its soak.
    fn waiting_promote() -> Rollout {
        let mut rs = Rollouts::default();
        let step = |step: Step| pb::RolloutStep {
            rollout_id: "web-1".into(),
            epoch: 3,
            at_unix_ms: 1_000,
            step: Some(step),
        };
        rs.apply_step(&step(Step::Started(pb::RolloutStarted {
            service: "web".into(),
            version: "2.0".into(),
            waves: vec![
                pb::RolloutWave {
                    hosts: vec!["web-a".into()],
                },
                pb::RolloutWave {
                    hosts: vec!["web-b".into()],
                },
            ],
            manual: true,
            two_person: true,
            started_by: "alice".into(),
            ..Default::default()
        })));
        rs.apply_step(&step(Step::WaveStarted(pb::RolloutWaveStarted { wave: 0 })));
        for gate in ["deploy", "soak"] {
            rs.apply_step(&step(Step::Gate(pb::RolloutGate {
                wave: 0,
                passed: true,
                gate: gate.into(),
                reason: String::new(),
            })));
        }
        rs.get("web-1").cloned().expect("started")
    }

    fn who(name: &str, role: Option<Role>) -> Issuer {
        Issuer {
            name: name.into(),
            role,
        }
    }

    #[test]
    fn a_two_person_promote_needs_another_identified_operator() {
        let r = waiting_promote();
        assert_eq!(r.phase(), RolloutPhase::WaitingPromote);
        let promote = |i: &Issuer| control(&r, RolloutOp::Promote, i);
        assert!(matches!(
            promote(&who("alice", Some(Role::Admin))),
            Err(RolloutApiError::TwoPerson { .. })
        ));
        assert!(matches!(
            promote(&who("alice (drill)", Some(Role::Admin))),
            Err(RolloutApiError::TwoPerson { .. })
        ));
        // Anyone can claim a name on a plain subject.
        assert!(matches!(
            promote(&who("bob (unverified)", None)),
            Err(RolloutApiError::Unverified { .. })
        ));
        assert!(promote(&who("bob", Some(Role::Admin))).is_ok());
    }

    #[test]
    fn ops_are_checked_against_the_phase() {
        let r = waiting_promote();
        let bob = who("bob", Some(Role::Admin));
        assert!(matches!(
            control(&r, RolloutOp::Resume, &bob),
            Err(RolloutApiError::Phase { .. })
        ));
        for op in [RolloutOp::Pause, RolloutOp::Abort, RolloutOp::Undo] {
            assert!(control(&r, op, &bob).is_ok(), "{op:?}");
        }
        assert!(matches!(
            control(&r, RolloutOp::Start, &bob),
            Err(RolloutApiError::Bad(_))
        ));
    }
}
