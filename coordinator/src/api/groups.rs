//! `ops.api.groups` (every active/standby group: members with role, state, health,
//! liveness and fitness, and the last failovers) and the reply of `ops.api.service_failover`.

use opsfleet_proto::api::{
    GroupFailoverView, GroupMemberView, GroupView, GroupsReply, GroupsRequest, Responder,
    ServiceFailoverReply, GROUP_FAILOVERS_SHOWN,
};

use crate::groups::ask::Done;
use crate::groups::decide::{Fitness, Told};
use crate::groups::members;
use crate::projection::Fleet;

fn role_text(t: Told) -> &'static str {
    match t {
        Told::Active => "active",
        Told::Standby => "standby",
        Told::Unknown => "",
    }
}

fn fitness_text(f: Fitness) -> &'static str {
    match f {
        Fitness::Healthy => "healthy",
        Fitness::Starting => "starting",
        Fitness::Unfit => "unfit",
    }
}

/// The groups as `fleet` shows them at `now_unix_ms` (pure). A group is known by its
/// members' heartbeats, or by its failover history alone.
pub fn groups(
    fleet: &Fleet,
    req: &GroupsRequest,
    responder: Responder,
    now_unix_ms: i64,
) -> GroupsReply {
    let mut seen = members::groups(fleet, now_unix_ms);
    for name in fleet.groups().keys() {
        seen.entry(name.clone()).or_default();
    }
    let wanted = |name: &str| req.group.as_deref().is_none_or(|g| g == name);
    let groups = (seen.into_iter())
        .filter(|(name, _)| wanted(name))
        .map(|(name, list)| {
            let members = list
                .into_iter()
                .map(|s| GroupMemberView {
                    host: s.member.host,
                    service: s.member.service,
                    role: role_text(s.member.role).to_owned(),
                    state: s.state,
                    health: s.health,
                    liveness: s.liveness,
                    maintenance: s.maintenance,
                    fitness: fitness_text(s.member.fitness).to_owned(),
                    why: s.member.why,
                })
                .collect();
            let history = fleet
                .groups()
                .get(&name)
                .map(|h| h.failovers.as_slice())
                .unwrap_or_default();
            let skip = history.len().saturating_sub(GROUP_FAILOVERS_SHOWN);
            let failovers = history[skip..]
                .iter()
                .map(|r| GroupFailoverView {
                    service: r.service.clone(),
                    from_host: r.from_host.clone(),
                    to_host: r.to_host.clone(),
                    reason: r.reason.clone(),
                    phase: r.phase.clone(),
                    drill: r.drill,
                    epoch: r.epoch,
                    requested_by: r.requested_by.clone(),
                    started_unix_ms: r.started_unix_ms,
                    ended_unix_ms: r.ended_unix_ms,
                    took_ms: r.took_ms,
                    detail: r.detail.clone(),
                })
                .collect();
            GroupView {
                name,
                members,
                failovers,
            }
        })
        .collect();
    GroupsReply { responder, groups }
}

/// The reply of a finished failover.
pub fn failover_reply(done: Done, responder: Responder) -> ServiceFailoverReply {
    ServiceFailoverReply {
        responder,
        group: done.group,
        service: done.service,
        from: done.from,
        to: done.to,
        took_ms: done.took_ms,
        drill: done.drill,
        epoch: done.epoch,
    }
}
