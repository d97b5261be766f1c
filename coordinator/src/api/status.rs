//! `ops.api.status`: the full fleet view (hosts with disks, modules and seq gaps, plus the
//! coordinators' leadership), paged by host name.

use async_nats::jetstream::stream;
use opsfleet_proto::api::{
    ApiRefusals, CoordinatorView, DiskView, HostView, LeadershipChangeView, ModuleView,
    StatusReply, StatusRequest,
};
use std::sync::atomic::Ordering;

use super::{after_host, behind, page, Cursor};
use crate::projection::{Fleet, HostState};
use crate::state::Shared;

/// The page of host views `req` asks for, and the cursor of the next page.
pub fn host_page(fleet: &Fleet, req: &StatusRequest) -> (Vec<HostView>, Option<String>) {
    // One host: a lookup; the fleet: from the cursor on, not from the first host.
    let rows: Box<dyn Iterator<Item = &HostState>> = match req.host.as_deref() {
        Some(only) => Box::new(fleet.host(only).into_iter()),
        None => Box::new(fleet.hosts_after(after_host(req))),
    };
    let rows = rows.map(|h| (Cursor::host(&h.host), h));
    let (hosts, next) = page(rows, req);
    let maintenance = fleet.maintenance();
    let views = hosts
        .into_iter()
        .map(|h| HostView {
            maintenance: maintenance.contains(h.host.as_str()),
            ..host_view(h, fleet.seen_unix_ms(h))
        })
        .collect();
    (views, next)
}

pub(crate) fn disk_view(path: &str, d: &crate::projection::DiskState) -> DiskView {
    DiskView {
        path: path.to_owned(),
        used_percent: f64::from(d.used_basis_points) / 100.0,
        inodes_used_percent: f64::from(d.inodes_used_basis_points) / 100.0,
        level: d.level,
        total_bytes: d.total_bytes,
        avail_bytes: d.avail_bytes,
    }
}

pub(crate) fn module_views(h: &HostState) -> Vec<ModuleView> {
    h.modules
        .iter()
        .map(|(name, m)| ModuleView {
            name: name.clone(),
            kind: m.kind.clone(),
            state: m.state,
        })
        .collect()
}

/// One host's view; `seen_unix_ms` is when it was last heard from (`Fleet::seen_unix_ms`).
fn host_view(h: &HostState, seen_unix_ms: i64) -> HostView {
    let current = h.current();
    HostView {
        host: h.host.clone(),
        last_seen_unix_ms: seen_unix_ms,
        last_seq: current.map_or(0, |t| t.last_seq),
        incarnation: h.incarnation.clone(),
        events: h.events,
        gaps: current.map(|t| t.gaps.clone()).unwrap_or_default(),
        disks: h.disks.iter().map(|(p, d)| disk_view(p, d)).collect(),
        modules: module_views(h),
        truncated: h.truncated,
        maintenance: false,
    }
}

/// Builds the reply to one status request; `refused` counts the API requests refused so far.
pub async fn status(
    shared: &Shared,
    events: &stream::Stream,
    req: &StatusRequest,
    refused: ApiRefusals,
) -> StatusReply {
    let behind = behind(shared, events).await;
    let (hosts, next, coordinators, digest) = {
        let fleet = shared.fleet();
        let (hosts, next) = host_page(&fleet, req);
        (hosts, next, coordinator_views(&fleet), fleet.digest())
    };
    StatusReply {
        responder: shared.responder(behind),
        digest,
        log_events: shared.store.log_len().unwrap_or(0),
        duplicates_dropped: shared.duplicates.load(Ordering::Relaxed),
        malformed_parked: shared.parked.load(Ordering::Relaxed),
        api_refused: refused,
        refused_parked: shared.refused.load(Ordering::Relaxed),
        hosts,
        coordinators,
        next,
    }
}

/// The coordinators' leadership as folded from the log.
pub fn coordinator_views(fleet: &Fleet) -> Vec<CoordinatorView> {
    fleet
        .coordinators()
        .map(|c| CoordinatorView {
            name: c.name.clone(),
            color: c.color.clone(),
            role: c.role,
            epoch: c.epoch,
            last_seen_unix_ms: c.last_seen_unix_ms,
            history: c
                .history
                .iter()
                .map(|h| LeadershipChangeView {
                    epoch: h.epoch,
                    role: h.role,
                    reason: h.reason.clone(),
                    at_unix_ms: h.at_unix_ms,
                    requested_by: h.requested_by.clone(),
                    requested_role: h.requested_role.parse().ok(),
                })
                .collect(),
        })
        .collect()
}
