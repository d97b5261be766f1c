//! The console's pages, rendered from the API views' rows (pure: rows in, HTML out; every
//! host-provided text through `html::esc`).
//!
//! Stable hooks for browser tests (`id` and/or `data-test`; documented in `docs/console.md`):
//! * login: form `#login-form`, fields `#login-name` (`name`), `#login-token` (`token`), button
//!   `#login-submit`, error `[data-test=login-error]`;
//! * every page: `#leader` (`[data-test=leader-name]`, `leader-role`, `leader-epoch`), `#who`,
//!   `#logout`, navigation links `[data-test=nav-<page>]`;
//! * fleet: table `#hosts`, one `tr[data-test=host-row][data-host=<name>]` per host with cells
//!   `[data-test=liveness]`, `disk`, `modules`, `services`; filter form `#fleet-filter`
//!   (`host`, `state`), next page link `#next-page`;
//! * coordinator page: `[data-test=action-failover]`;
//! * host page: `#host-summary`, modules table `#modules` with rows
//!   `tr[data-test=module-row][data-module=<m>]` holding buttons
//!   `[data-test=action-<pause|resume|disable|enable>-<m>]`, `[data-test=action-noop]`,
//!   tables `#disks`, `#services`, `#host-alerts`, `#host-commands`;
//! * lists: `#alerts`, `#incidents`, `#backups`, `#commands`, `#rollouts` (rows
//!   `tr[data-test=row]`);
//! * alerts (also on the host page): each row `[data-test=state]`, `[data-test=silenced]`
//!   when a silence holds it, `[data-test=acked]` once acked; a firing alert's buttons
//!   `[data-test=action-ack]` and `[data-test=action-silence]` (its rule on its host, 2 h);
//! * silences: table `#silences` (`tr[data-test=silence-row][data-silence=<id>]`, buttons
//!   `[data-test=action-expire]`), the form `#silence-form` (`host`, `rules`, `labels`, `for`,
//!   `reason`, button `[data-test=action-silence-add]`);
//! * events: list `#event-list` (`li[data-test=event][data-seq=<stream seq>]`), status
//!   `#event-status`, filter form `#event-filter`;
//! * after an action: `#action-result` with `[data-test=command-id]` and one
//!   `tr[data-test=result-row][data-command=<id>][data-host=<h>]` per host whose
//!   `[data-test=result]` cell turns `completed`, `failed`, `rejected` or `expired`;
//!   a refusal: `#refused` (HTTP 403).

mod lists;
mod silences;

pub use lists::*;
pub use silences::silences;

use opsfleet_proto::api::{DiskView, HostSummary, ServiceView};

use super::html::{action_form, cells, esc, page, table, time, url, Frame};

/// The fleet page's filter and position.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct FleetQuery {
    /// Host name or glob.
    #[serde(default)]
    pub host: Option<String>,
    /// Liveness: up, late, lost.
    #[serde(default)]
    pub state: Option<String>,
    /// The last host of the previous page.
    #[serde(default)]
    pub after: Option<String>,
}

/// Hosts per fleet page.
pub const FLEET_PAGE: usize = 100;

fn disk_text(d: &DiskView) -> String {
    format!(
        "{} {:.0}% ({})",
        esc(&d.path),
        d.used_percent,
        d.level.as_str()
    )
}

fn host_row(h: &HostSummary) -> String {
    let modules: Vec<String> = h
        .modules
        .iter()
        .map(|m| format!("{}:{}", esc(&m.name), m.state.as_str()))
        .collect();
    let disk = h.worst_disk.as_ref().map_or("-".to_owned(), disk_text);
    let mut liveness = h.liveness.as_str().to_owned();
    if h.maintenance {
        liveness.push_str(" (maintenance)");
    }
    let services = if h.down_services.is_empty() {
        "ok".to_owned()
    } else {
        esc(&h.down_services.join(" "))
    };
    format!(
        "<tr data-test=\"host-row\" data-host=\"{name}\"><td><a href=\"/console/host/{link}\">{name}</a></td>\
         <td data-test=\"liveness\" class=\"st-{st}\">{liveness}</td><td>{seen}</td>\
         <td data-test=\"disk\">{disk}</td><td data-test=\"modules\">{modules}</td>\
         <td data-test=\"services\">{services}</td><td>{incidents}</td></tr>",
        name = esc(&h.host),
        link = url(&h.host),
        st = h.liveness.as_str(),
        seen = time(h.last_seen_unix_ms),
        modules = modules.join(" "),
        incidents = h.incidents,
    )
}

/// The fleet overview: one page of hosts, the filter, the link to the next page.
pub fn fleet(f: &Frame, q: &FleetQuery, hosts: &[HostSummary], next: Option<&str>) -> String {
    let mut body = String::new();
    let state = q.state.as_deref().unwrap_or("");
    body.push_str(&format!(
        "<form method=\"get\" action=\"/console/fleet\" id=\"fleet-filter\" class=\"filter\">\
         <input name=\"host\" placeholder=\"host or glob\" value=\"{}\" data-test=\"filter-host\">\
         <select name=\"state\" data-test=\"filter-state\">",
        esc(q.host.as_deref().unwrap_or(""))
    ));
    for s in ["", "up", "late", "lost"] {
        let selected = if s == state { " selected" } else { "" };
        let label = if s.is_empty() { "any state" } else { s };
        body.push_str(&format!("<option value=\"{s}\"{selected}>{label}</option>"));
    }
    body.push_str("</select><button type=\"submit\">filter</button></form>");
    let rows: Vec<String> = hosts.iter().map(host_row).collect();
    body.push_str(&table(
        "hosts",
        &[
            "host",
            "liveness",
            "last seen",
            "worst disk",
            "modules",
            "services",
            "incidents",
        ],
        &rows,
    ));
    if let Some(next) = next {
        body.push_str(&format!(
            "<p><a id=\"next-page\" data-test=\"next-page\" href=\"/console/fleet?after={}&amp;host={}&amp;state={}\">next {} hosts →</a></p>",
            esc(&url(next)),
            esc(&url(q.host.as_deref().unwrap_or(""))),
            esc(&url(state)),
            FLEET_PAGE
        ));
    }
    page(Some(f), "Fleet", &body)
}

/// What the host page shows besides the summary.
pub struct HostPage<'a> {
    pub summary: &'a HostSummary,
    pub disks: &'a [DiskView],
    pub services: &'a [ServiceView],
    pub alerts: &'a [opsfleet_proto::api::AlertView],
    pub commands: &'a [opsfleet_proto::api::CommandView],
}

/// One host: summary, modules with their buttons, disks, services, alerts, its commands.
pub fn host(f: &Frame, p: &HostPage) -> String {
    let h = p.summary;
    let name = h.host.as_str();
    let mut body = format!(
        "<dl id=\"host-summary\" data-test=\"host-summary\"><dt>liveness</dt><dd data-test=\"liveness\">{}</dd>\
         <dt>last seen</dt><dd>{}</dd><dt>agent</dt><dd>{}</dd><dt>events</dt><dd>{}</dd>\
         <dt>unhealthy checks</dt><dd>{}</dd><dt>maintenance</dt><dd>{}</dd></dl>",
        h.liveness.as_str(),
        time(h.last_seen_unix_ms),
        esc(&h.agent_version),
        h.events,
        esc(&h.unhealthy.join(" ")),
        h.maintenance
    );
    body.push_str(&action_form(
        f.csrf,
        "command",
        &[("action", "noop"), ("host", name)],
        "noop",
        "action-noop",
    ));
    let modules: Vec<String> = h
        .modules
        .iter()
        .map(|m| {
            let buttons: String = ["pause", "resume", "disable", "enable"]
                .iter()
                .map(|a| {
                    let fields = [("action", *a), ("host", name), ("module", m.name.as_str())];
                    action_form(f.csrf, "command", &fields, a, &format!("action-{a}-{}", m.name))
                })
                .collect();
            format!(
                "<tr data-test=\"module-row\" data-module=\"{}\"><td>{}</td><td>{}</td><td data-test=\"module-state\">{}</td><td class=\"buttons\">{buttons}</td></tr>",
                esc(&m.name),
                esc(&m.name),
                esc(&m.kind),
                m.state.as_str()
            )
        })
        .collect();
    body.push_str("<h2>Modules</h2>");
    body.push_str(&table(
        "modules",
        &["module", "kind", "state", "actions"],
        &modules,
    ));
    let disks: Vec<String> = p
        .disks
        .iter()
        .map(|d| {
            format!(
                "<tr data-test=\"row\">{}</tr>",
                cells(&[
                    esc(&d.path),
                    format!("{:.1}%", d.used_percent),
                    format!("{:.1}%", d.inodes_used_percent),
                    d.level.as_str().to_owned()
                ])
            )
        })
        .collect();
    body.push_str("<h2>Disks</h2>");
    body.push_str(&table(
        "disks",
        &["mount", "used", "inodes", "level"],
        &disks,
    ));
    let services: Vec<String> = p
        .services
        .iter()
        .map(|s| {
            format!(
                "<tr data-test=\"row\">{}</tr>",
                cells(&[
                    esc(&s.service),
                    esc(&s.manager),
                    s.state.as_str().to_owned(),
                    s.restarts.to_string(),
                    esc(&s.exit_detail)
                ])
            )
        })
        .collect();
    body.push_str("<h2>Services</h2>");
    body.push_str(&table(
        "services",
        &["service", "manager", "state", "restarts", "exit"],
        &services,
    ));
    body.push_str("<h2>Alerts</h2>");
    body.push_str(&alerts_table("host-alerts", p.alerts, f.csrf));
    body.push_str("<h2>Commands</h2>");
    body.push_str(&commands_table("host-commands", p.commands));
    page(Some(f), &format!("Host {name}"), &body)
}

/// This coordinator and its failover button.
pub fn coordinator(f: &Frame) -> String {
    let body = format!(
        "<p>This page is served by coordinator <b>{}</b>; actions go to the active coordinator.</p>{}",
        esc(&f.leader.name),
        action_form(f.csrf, "failover", &[], "failover (hand the lease to a standby)", "action-failover")
    );
    page(Some(f), "Coordinator", &body)
}

#[cfg(test)]
mod tests;
