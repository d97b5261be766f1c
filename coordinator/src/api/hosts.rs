//! `ops.api.hosts`: one summary row per host with its liveness, filtered by host glob and
//! liveness state, paged by host name. Liveness is judged here, from the answering
//! coordinator's clock, so every coordinator (standby included) can answer.

use opsfleet_proto::api::{BackupState, CheckCondition, Liveness, ModuleState, ProbeStatus};
use opsfleet_proto::api::{HostSummary, HostsReply, HostsRequest, Responder};

use super::status::{disk_view, module_views};
use super::{after_host, page, Cursor, View};
use crate::glob::glob_match;
use crate::projection::presence::{declared_lost, liveness};
use crate::projection::{checks, Fleet, HostState};

/// Summarises one host, last heard from at `seen_unix_ms`, at `now_unix_ms`; `declared_lost`
/// is the log's liveness verdict.
pub fn summary(
    h: &HostState,
    seen_unix_ms: i64,
    now_unix_ms: i64,
    declared_lost: bool,
) -> HostSummary {
    let judged = liveness(h, seen_unix_ms, now_unix_ms);
    let current = h.current();
    let worst_disk = h
        .disks
        .iter()
        .max_by_key(|(_, d)| d.used_basis_points)
        .map(|(p, d)| disk_view(p, d));
    let rb = &h.runbooks;
    let liveness = if declared_lost {
        Liveness::Lost
    } else {
        judged
    };
    let mut modules = module_views(h);
    // What a lost host's modules do is not known: its last word may be long out of date.
    if liveness == Liveness::Lost {
        modules
            .iter_mut()
            .for_each(|m| m.state = ModuleState::Unknown);
    }
    HostSummary {
        host: h.host.clone(),
        liveness,
        last_seen_unix_ms: seen_unix_ms,
        heartbeat_interval_ms: h.heartbeat_interval_ms().unwrap_or(0),
        agent_version: h.agent_version.clone(),
        last_seq: current.map_or(0, |t| t.last_seq),
        events: h.events,
        missing_events: current.map_or(0, |t| {
            t.gaps.iter().map(|g| g.last - g.first + 1).sum::<u64>()
        }),
        outbox_pending: h.outbox_pending,
        worst_disk,
        modules,
        unhealthy: rb
            .health
            .iter()
            .filter(|(_, s)| s.status != ProbeStatus::Ready)
            .map(|(name, s)| format!("{name}:{}", s.status))
            .collect(),
        check_conditions: rb
            .health
            .iter()
            .flat_map(|(name, s)| {
                checks::conditions(s, now_unix_ms)
                    .into_iter()
                    .map(|(condition, detail)| CheckCondition {
                        check: name.clone(),
                        condition,
                        detail,
                    })
            })
            .collect(),
        incidents: rb.incidents.values().map(|i| i.count).sum(),
        failing_backups: rb
            .backups
            .values()
            .filter(|j| j.state() == BackupState::Failed)
            .count() as u64,
        down_services: h
            .services
            .iter()
            .filter_map(|(name, s)| Some(format!("{name}:{}", s.trouble()?)))
            .collect(),
        declared_lost,
        truncated: h.truncated,
        maintenance: false,
    }
}

/// One page of host summaries matching `req` at `now_unix_ms`, and the next cursor.
pub fn hosts(
    fleet: &Fleet,
    req: &HostsRequest,
    now_unix_ms: i64,
) -> (Vec<HostSummary>, Option<String>) {
    let maintenance = fleet.maintenance();
    // The state filter is judged before a summary is built: a page of the few lost hosts of
    // a large fleet builds only their summaries.
    let rows = fleet
        .hosts_after(after_host(req))
        .filter(|h| req.host.as_deref().is_none_or(|p| glob_match(p, &h.host)))
        .filter_map(|h| {
            let seen = fleet.seen_unix_ms(h);
            let lost = declared_lost(fleet, h);
            if let Some(want) = req.state.as_deref() {
                let judged = if lost {
                    Liveness::Lost
                } else {
                    liveness(h, seen, now_unix_ms)
                };
                if judged.as_str() != want {
                    return None;
                }
            }
            Some(HostSummary {
                maintenance: maintenance.contains(h.host.as_str()),
                ..summary(h, seen, now_unix_ms, lost)
            })
        })
        .map(|s| (Cursor::host(&s.host), s));
    page(rows, req)
}

impl View for HostsRequest {
    fn answer(&self, fleet: &Fleet, responder: Responder, now_unix_ms: i64) -> HostsReply {
        let (hosts, next) = hosts(fleet, self, now_unix_ms);
        HostsReply {
            responder,
            now_unix_ms,
            hosts,
            next,
        }
    }
}
