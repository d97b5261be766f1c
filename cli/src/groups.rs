//! `opsctl service failover <group>` and `opsctl service groups`: the flags, the calls
//! (`ops.api.service_failover` as an operator, `ops.api.groups`) and their text (pure,
//! golden-tested).

use std::time::Duration;

use clap::Args;
use opsfleet_proto::api::{
    GroupsReply, GroupsRequest, ServiceFailoverReply, ServiceFailoverRequest,
};
use opsfleet_proto::subjects;

use crate::client::{Api, ClientError};
use crate::render::ago;
use crate::sanitize::inert;
use crate::table::Table;
use crate::views::render::answered_by;

/// Examples shown by `opsctl service failover --help` and `opsctl service groups --help`.
pub const GROUPS_HELP: &str = "\
A group is the services whose hosts declare `[modules.role] group = \"NAME\"`; the active
coordinator keeps exactly one of them active (docs/service-groups.md). It makes one active
when none is, fails over when the active one has not been healthy for `[groups]
failover_after` (failed, unhealthy, its host lost or in maintenance), and tells an extra
active standby. Each member's host must allow `role` in the service's `remote` list.

Examples:
  opsctl service groups                           every group, its members and last failovers
  opsctl service failover router                  move the active role to the best standby
  opsctl service failover router --to edge-02     ... to this member
  opsctl service failover router --drill          a real failover, reported as a drill";

/// `opsctl service failover`.
#[derive(Args, Debug, Clone)]
pub struct ServiceFailoverArgs {
    /// The group (as the members declare it in `[modules.role]`).
    pub group: String,
    /// Make this member host active (else the healthiest standby).
    #[arg(long)]
    pub to: Option<String>,
    /// Rehearse: a real failover to a standby, its timings reported (run it again to move
    /// back). Needs an active member to move from.
    #[arg(long)]
    pub drill: bool,
    /// How long to wait for the new active to report its role.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// `opsctl service groups`.
#[derive(Args, Debug, Clone)]
pub struct GroupsArgs {
    /// Only this group.
    pub group: Option<String>,
    /// Ask this coordinator (default: whichever answers first).
    #[arg(long)]
    pub coordinator: Option<String>,
}

/// Asks the active coordinator for the failover; answered once it is done.
pub async fn failover(
    api: &Api,
    a: ServiceFailoverArgs,
    requested_by: String,
) -> Result<ServiceFailoverReply, ClientError> {
    let req = ServiceFailoverRequest {
        group: a.group,
        to: a.to,
        drill: a.drill,
        requested_by: Some(requested_by),
    };
    api.service_failover(&req, a.wait).await
}

/// Every group (or one), from the named coordinator or whichever answers first.
pub async fn groups(api: &Api, a: GroupsArgs) -> Result<GroupsReply, ClientError> {
    let subject = match &a.coordinator {
        Some(c) => subjects::api_subject_for(subjects::API_GROUPS, c),
        None => subjects::API_GROUPS.to_owned(),
    };
    api.call(subject, &GroupsRequest { group: a.group }).await
}

/// What a failover did, in one line.
pub fn render_failover(r: &ServiceFailoverReply) -> String {
    let from = if r.from.is_empty() {
        "no active member".to_owned()
    } else {
        inert(&r.from)
    };
    let what = if r.drill { "drill" } else { "failover" };
    let mut out = format!(
        "group {}: {what} {from} -> {} ({}) took {} ms (epoch {})\n",
        inert(&r.group),
        inert(&r.to),
        inert(&r.service),
        r.took_ms,
        r.epoch
    );
    if r.drill {
        out.push_str(&format!(
            "this drill was a real failover: {} is active now; run it again to move back\n",
            inert(&r.to)
        ));
    }
    out
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        inert(s)
    }
}

/// The groups table (one line per member) and each group's last failovers.
pub fn render_groups(reply: &GroupsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.groups.is_empty() {
        out.push_str("no active/standby groups (no service declares [modules.role])\n");
        return out;
    }
    let mut t = Table::new(&[
        "GROUP", "HOST", "SERVICE", "ROLE", "STATE", "HEALTH", "LIVENESS", "FIT",
    ]);
    for g in &reply.groups {
        for m in &g.members {
            let mut fit = m.fitness.clone();
            if !m.why.is_empty() {
                fit.push_str(&format!(" ({})", m.why));
            }
            t.row([
                inert(&g.name),
                inert(&m.host),
                inert(&m.service),
                dash(&m.role),
                m.state.as_str().to_owned(),
                m.health.map_or("-".to_owned(), |h| h.as_str().to_owned()),
                m.liveness.as_str().to_owned(),
                inert(&fit),
            ]);
        }
    }
    t.write_to(&mut out);
    for g in reply.groups.iter().filter(|g| !g.failovers.is_empty()) {
        out.push_str(&format!("\nlast failovers of {}:\n", inert(&g.name)));
        let mut f = Table::new(&["WHEN", "FROM", "TO", "OUTCOME", "TOOK", "REASON"]);
        for r in &g.failovers {
            let outcome = if r.drill {
                format!("{} (drill)", r.phase)
            } else {
                r.phase.clone()
            };
            let took = if r.phase == "completed" {
                format!("{} ms", r.took_ms)
            } else {
                "-".to_owned()
            };
            let reason = if r.detail.is_empty() {
                r.reason.clone()
            } else {
                format!("{}: {}", r.reason, r.detail)
            };
            f.row([
                ago(now_unix_ms, r.started_unix_ms),
                dash(&r.from_host),
                inert(&r.to_host),
                outcome,
                took,
                inert(&reason),
            ]);
        }
        f.write_to(&mut out);
    }
    out
}
