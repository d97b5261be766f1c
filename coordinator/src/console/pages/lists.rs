//! The list pages (alerts, incidents, backups, the command ledger and audit trail,
//! rollouts), the live events page, an action's result, the login form and refusals.

use opsfleet_proto::api::{
    AlertState, AlertView, BackupView, CommandView, IncidentView, IssuedCommand, RolloutView,
};

use crate::console::html::{action_form, cells, esc, page, table, time, url, Frame};

/// The `next` link of a paged list.
fn next_link(path: &str, next: Option<&str>) -> String {
    next.map_or(String::new(), |n| {
        format!(
            "<p><a id=\"next-page\" data-test=\"next-page\" href=\"{path}?after={}\">next page →</a></p>",
            esc(&url(n))
        )
    })
}

/// The alerts with their silences and ack, and (for a firing alert) an ack button and a
/// button silencing its rule on its host for 2 h.
pub fn alerts_table(id: &str, alerts: &[AlertView], csrf: &str) -> String {
    let rows: Vec<String> = alerts
        .iter()
        .map(|a| {
            let silenced = if a.silenced_by.is_empty() {
                "-".to_owned()
            } else {
                format!(
                    "<span data-test=\"silenced\" class=\"st-silenced\">silenced</span> {}",
                    esc(&a.silenced_by.join(", "))
                )
            };
            let firing = a.state == AlertState::Firing;
            let ack = match &a.acked_by {
                Some(by) => format!("<span data-test=\"acked\">acked by {}</span>", esc(by)),
                None if firing => {
                    action_form(csrf, "alert_ack", &[("id", &a.key)], "ack", "action-ack")
                }
                None => "-".to_owned(),
            };
            let silence = if firing && a.silenced_by.is_empty() {
                action_form(
                    csrf,
                    "silence",
                    &[
                        ("action", "add"),
                        ("host", &a.host),
                        ("rules", &a.rule),
                        ("for", "2h"),
                        ("reason", "silenced from the console"),
                    ],
                    "silence 2h",
                    "action-silence",
                )
            } else {
                String::new()
            };
            format!(
                "<tr data-test=\"row\" data-alert=\"{}\">{}</tr>",
                esc(&a.key),
                cells(&[
                    format!(
                        "<span class=\"st-{0}\" data-test=\"state\">{0}</span>",
                        a.state.as_str()
                    ),
                    a.severity.map_or("-", |s| s.as_str()).to_owned(),
                    esc(&a.rule),
                    format!(
                        "<a href=\"/console/host/{}\">{}</a>",
                        url(&a.host),
                        esc(&a.host)
                    ),
                    esc(&a.subject),
                    time(a.since_unix_ms),
                    esc(&a.detail),
                    a.notifications_sent.to_string(),
                    silenced,
                    ack + &silence,
                ])
            )
        })
        .collect();
    table(
        id,
        &[
            "state", "severity", "rule", "host", "subject", "since", "detail", "notified",
            "silenced", "ack",
        ],
        &rows,
    )
}

pub fn alerts(f: &Frame, alerts: &[AlertView], next: Option<&str>) -> String {
    let body = alerts_table("alerts", alerts, f.csrf) + &next_link("/console/alerts", next);
    page(Some(f), "Alerts", &body)
}

pub fn incidents(f: &Frame, rows: &[IncidentView], next: Option<&str>) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|i| {
            format!(
                "<tr data-test=\"row\">{}</tr>",
                cells(&[
                    esc(&i.host),
                    esc(&i.path),
                    esc(&i.pattern),
                    i.count.to_string(),
                    time(i.last_seen_unix_ms),
                    format!("<pre>{}</pre>", esc(&i.last_excerpt)),
                ])
            )
        })
        .collect();
    let body = table(
        "incidents",
        &["host", "file", "pattern", "count", "last", "excerpt"],
        &rows,
    ) + &next_link("/console/incidents", next);
    page(Some(f), "Incidents", &body)
}

pub fn backups(f: &Frame, rows: &[BackupView], next: Option<&str>) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|b| {
            let ok = b
                .last_success
                .as_ref()
                .map_or("-".to_owned(), |s| time(s.at_unix_ms));
            let failed = b.last_failure.as_ref().map_or("-".to_owned(), |x| {
                format!("{} {}", time(x.at_unix_ms), esc(&x.reason))
            });
            format!(
                "<tr data-test=\"row\">{}</tr>",
                cells(&[
                    esc(&b.host),
                    esc(&b.job),
                    b.state.as_str().to_owned(),
                    ok,
                    failed,
                    b.archives_kept.to_string(),
                ])
            )
        })
        .collect();
    let body = table(
        "backups",
        &[
            "host",
            "job",
            "state",
            "last success",
            "last failure",
            "archives",
        ],
        &rows,
    ) + &next_link("/console/backups", next);
    page(Some(f), "Backups", &body)
}

pub fn commands_table(id: &str, commands: &[CommandView]) -> String {
    let rows: Vec<String> = commands
        .iter()
        .map(|c| {
            let action = c.action.map_or("?", |a| a.as_str());
            let by = match c.issued_role {
                Some(r) => format!("{} ({})", esc(&c.issued_by), r.as_str()),
                None => esc(&c.issued_by),
            };
            format!(
                "<tr data-test=\"row\" data-command=\"{}\">{}</tr>",
                esc(&c.id),
                cells(&[
                    format!("<code>{}</code>", esc(&c.id)),
                    esc(&c.target),
                    action.to_owned(),
                    esc(&c.module),
                    by,
                    c.epoch.to_string(),
                    format!("<span data-test=\"result\">{}</span>", c.state.as_str()),
                    esc(&c.detail),
                ])
            )
        })
        .collect();
    table(
        id,
        &[
            "id",
            "host",
            "action",
            "module",
            "issued by (role)",
            "epoch",
            "state",
            "detail",
        ],
        &rows,
    )
}

/// The command ledger, newest first; its issuer columns are the audit trail of actions.
pub fn commands(f: &Frame, commands: &[CommandView]) -> String {
    let body = format!(
        "<p>Newest first: who issued what, in which role and term, and how each host answered.</p>{}",
        commands_table("commands", commands)
    );
    page(Some(f), "Commands and audit trail", &body)
}

pub fn rollouts(f: &Frame, rollouts: &[RolloutView]) -> String {
    let rows: Vec<String> = rollouts
        .iter()
        .map(|r| {
            format!(
                "<tr data-test=\"row\">{}</tr>",
                cells(&[
                    format!("<code>{}</code>", esc(&r.id)),
                    esc(&r.service),
                    esc(&r.version),
                    r.phase.as_str().to_owned(),
                    format!("{}/{}", r.wave, r.waves.len()),
                    esc(&r.started_by),
                    time(r.started_at_unix_ms),
                ])
            )
        })
        .collect();
    let body = table(
        "rollouts",
        &[
            "id",
            "service",
            "version",
            "phase",
            "wave",
            "started by",
            "started",
        ],
        &rows,
    );
    page(Some(f), "Rollouts", &body)
}

/// The filter of the live event stream (as `opsctl events --host --module --kind`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub module: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

impl EventsQuery {
    /// The non-empty filters as a query string.
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("host", &self.host),
            ("module", &self.module),
            ("kind", &self.kind),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", url(v)));
            }
        }
        parts.join("&")
    }
}

/// The live events page: the script opens `data-src` as an `EventSource`.
pub fn events(f: &Frame, q: &EventsQuery) -> String {
    let field = |name: &str, v: &Option<String>| {
        format!(
            "<input name=\"{name}\" placeholder=\"{name}\" value=\"{}\" data-test=\"filter-{name}\">",
            esc(v.as_deref().unwrap_or(""))
        )
    };
    let body = format!(
        "<form method=\"get\" action=\"/console/events\" id=\"event-filter\" class=\"filter\">{}{}{}\
         <button type=\"submit\">filter</button></form>\
         <p id=\"event-status\" data-test=\"event-status\">connecting…</p>\
         <ul id=\"event-list\" data-test=\"event-list\" class=\"events\" data-src=\"/console/events/stream?{}\"></ul>",
        field("host", &q.host),
        field("module", &q.module),
        field("kind", &q.kind),
        esc(&q.query())
    );
    page(Some(f), "Live events", &body)
}

/// What an accepted command looks like right after it was issued; the script polls
/// `/console/api/commands?ids=…` and fills the result cells.
pub fn command_result(f: &Frame, issued: &[IssuedCommand], skipped: &[String]) -> String {
    let ids: Vec<&str> = issued.iter().map(|c| c.command_id.as_str()).collect();
    let rows: Vec<String> = issued
        .iter()
        .map(|c| {
            format!(
                "<tr data-test=\"result-row\" data-command=\"{id}\" data-host=\"{host}\"><td><code data-test=\"command-id\">{id}</code></td>\
                 <td>{host}</td><td data-test=\"result\" class=\"pending\">issued</td><td data-test=\"detail\"></td></tr>",
                id = esc(&c.command_id),
                host = esc(&c.host)
            )
        })
        .collect();
    let mut body = format!(
        "<div id=\"action-result\" data-test=\"action-result\" data-ids=\"{}\">",
        esc(&ids.join(","))
    );
    body.push_str(&table(
        "results",
        &["command", "host", "result", "detail"],
        &rows,
    ));
    for s in skipped {
        body.push_str(&format!("<p class=\"skipped\">skipped: {}</p>", esc(s)));
    }
    body.push_str("</div>");
    page(Some(f), "Command issued", &body)
}

/// A message page (an action's answer, an error).
pub fn message(f: &Frame, title: &str, id: &str, text: &str) -> String {
    page(
        Some(f),
        title,
        &format!("<p id=\"{id}\" data-test=\"{id}\">{}</p>", esc(text)),
    )
}

/// The login form; `csrf` is the pre-session token (also in a cookie).
pub fn login(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" data-test=\"login-error\">{}</p>",
            esc(e)
        )
    });
    let body = format!(
        "{error}<form method=\"post\" action=\"/console/login\" id=\"login-form\" class=\"login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>operator <input id=\"login-name\" name=\"name\" autocomplete=\"username\" required></label>\
         <label>token <input id=\"login-token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\" id=\"login-submit\" data-test=\"login-submit\">log in</button></form>",
        esc(csrf)
    );
    page(None, "opsfleet console", &body)
}

/// A page without a session frame (a refused POST).
pub fn bare(title: &str, id: &str, text: &str) -> String {
    page(
        None,
        title,
        &format!(
            "<p id=\"{id}\" data-test=\"{id}\">{}</p><p><a href=\"/console/fleet\">back to the console</a></p>",
            esc(text)
        ),
    )
}
