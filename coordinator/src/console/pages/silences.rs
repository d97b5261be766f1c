//! The silences page: the active and upcoming silences (all with `?all=1`), an expire button
//! on each that still holds, and the form that adds one.

use opsfleet_proto::api::SilenceView;

use crate::console::html::{action_form, cells, csrf_field, esc, page, table, time, url, Frame};

/// `/console/silences`.
pub fn silences(f: &Frame, rows: &[SilenceView], all: bool, next: Option<&str>) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|s| {
            let holds = s.state == "active" || s.state == "pending";
            let expire = if holds {
                action_form(
                    f.csrf,
                    "silence",
                    &[("action", "expire"), ("id", &s.id)],
                    "expire",
                    "action-expire",
                )
            } else {
                String::new()
            };
            format!(
                "<tr data-test=\"silence-row\" data-silence=\"{}\">{}</tr>",
                esc(&s.id),
                cells(&[
                    esc(&s.id),
                    format!("<span data-test=\"silence-state\">{}</span>", esc(&s.state)),
                    esc(if s.host.is_empty() { "*" } else { &s.host }),
                    esc(&s.rules.join(", ")),
                    esc(&s.labels.join(", ")),
                    time(s.starts_unix_ms),
                    time(s.ends_unix_ms),
                    esc(&s.reason),
                    format!("{} ({})", esc(&s.created_by), esc(&s.created_role)),
                    expire,
                ])
            )
        })
        .collect();
    let mut body = String::new();
    body.push_str(&format!(
        "<p>A silence keeps matching alerts from being notified; they still fire and show as \
         silenced. {}</p>",
        if all {
            "<a href=\"/console/silences\">active only</a>"
        } else {
            "<a href=\"/console/silences?all=1\">show ended ones too</a>"
        }
    ));
    body.push_str(&table(
        "silences",
        &[
            "id", "state", "host", "rules", "labels", "starts", "ends", "reason", "by", "",
        ],
        &rows,
    ));
    if let Some(next) = next {
        body.push_str(&format!(
            "<p><a id=\"next-page\" data-test=\"next-page\" href=\"/console/silences?all={}&amp;after={}\">next page →</a></p>",
            u8::from(all),
            esc(&url(next))
        ));
    }
    body.push_str(&format!(
        "<h2>New silence</h2><form id=\"silence-form\" method=\"post\" action=\"/console/act\">{}\
         <input type=\"hidden\" name=\"verb\" value=\"silence\">\
         <input type=\"hidden\" name=\"action\" value=\"add\">\
         <label>host or glob <input name=\"host\" placeholder=\"web-*\"></label>\
         <label>rules <input name=\"rules\" placeholder=\"disk_crit, disk_warn\"></label>\
         <label>labels <input name=\"labels\" placeholder=\"env=prod\"></label>\
         <label>for <input name=\"for\" value=\"2h\"></label>\
         <label>reason <input name=\"reason\" required></label>\
         <button type=\"submit\" data-test=\"action-silence-add\">add silence</button></form>",
        csrf_field(f.csrf)
    ));
    page(Some(f), "Silences", &body)
}
