//! HTML building blocks of the console (pure): the one escaping function every host-provided
//! text goes through, the page frame (navigation, the coordinator/leader box), tables, forms.

use opsfleet_proto::api::{Responder, Role};

/// Text made inert in HTML text and in double- or single-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A query-string component, percent-encoded (then escaped where it lands in an attribute).
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'*') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Who is logged in and which coordinator serves: shown on every page.
pub struct Frame<'a> {
    pub operator: &'a str,
    pub role: Role,
    pub csrf: &'a str,
    pub leader: &'a Responder,
}

const NAV: [(&str, &str); 9] = [
    ("fleet", "/console/fleet"),
    ("alerts", "/console/alerts"),
    ("silences", "/console/silences"),
    ("incidents", "/console/incidents"),
    ("backups", "/console/backups"),
    ("commands", "/console/commands"),
    ("rollouts", "/console/rollouts"),
    ("events", "/console/events"),
    ("coordinator", "/console/coordinator"),
];

/// A whole page: head (the embedded stylesheet and script only), navigation, the leader box,
/// `body`. `title` is escaped here; `body` must already be safe HTML.
pub fn page(frame: Option<&Frame>, title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    out.push_str(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script>",
    );
    out.push_str(&format!(
        "<title>{} · opsfleet</title></head><body>",
        esc(title)
    ));
    if let Some(f) = frame {
        out.push_str("<header><nav id=\"nav\" data-test=\"nav\">");
        for (name, href) in NAV {
            out.push_str(&format!(
                "<a href=\"{href}\" data-test=\"nav-{name}\">{name}</a>"
            ));
        }
        out.push_str("</nav>");
        out.push_str(&leader_box(f.leader));
        out.push_str(&format!(
            "<div class=\"who\" id=\"who\" data-test=\"who\">{} ({})\
             <form method=\"post\" action=\"/console/logout\" class=\"inline\">{}\
             <button type=\"submit\" id=\"logout\" data-test=\"logout\">log out</button></form></div>",
            esc(f.operator),
            f.role.as_str(),
            csrf_field(f.csrf)
        ));
        out.push_str("</header>");
    }
    out.push_str(&format!("<main><h1>{}</h1>", esc(title)));
    out.push_str(body);
    out.push_str("</main></body></html>");
    out
}

/// The coordinator serving this page: name, role and epoch.
pub fn leader_box(r: &Responder) -> String {
    format!(
        "<div id=\"leader\" class=\"leader\" data-test=\"leader\">coordinator \
         <b data-test=\"leader-name\">{}</b> <span data-test=\"leader-role\" class=\"st-{}\">{}</span> \
         epoch <span data-test=\"leader-epoch\">{}</span> · applied seq {}</div>",
        esc(&r.name),
        r.role.as_str(),
        r.role.as_str(),
        r.epoch,
        r.applied_stream_seq
    )
}

pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A table in a scrolling container: `head` column names, `rows` already-safe cells.
pub fn table(id: &str, head: &[&str], rows: &[String]) -> String {
    let mut out =
        format!("<div class=\"scroll\"><table id=\"{id}\" data-test=\"{id}\"><thead><tr>");
    for h in head {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str(r);
    }
    if rows.is_empty() {
        out.push_str(&format!(
            "<tr><td colspan=\"{}\" class=\"empty\">nothing</td></tr>",
            head.len()
        ));
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `<td>` cells of already-escaped text.
pub fn cells(values: &[String]) -> String {
    values.iter().map(|v| format!("<td>{v}</td>")).collect()
}

/// A POST form acting with `verb` and `fields` (name, value), one button.
pub fn action_form(
    csrf: &str,
    verb: &str,
    fields: &[(&str, &str)],
    label: &str,
    test: &str,
) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"/console/act\" class=\"inline\">{}\
         <input type=\"hidden\" name=\"verb\" value=\"{}\">",
        csrf_field(csrf),
        esc(verb)
    );
    for (name, value) in fields {
        out.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        ));
    }
    out.push_str(&format!(
        "<button type=\"submit\" data-test=\"{}\">{}</button></form>",
        esc(test),
        esc(label)
    ));
    out
}

/// Milliseconds since the epoch as UTC text; `-` for 0.
pub fn time(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "-".to_owned();
    }
    let secs = unix_ms.div_euclid(1000);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_text_is_inert() {
        assert_eq!(
            esc("<script>alert('x')</script>&\"\u{1b}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
        assert_eq!(url("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        let form = action_form("tok\"", "command", &[("host", "<h>")], "pause", "t");
        assert!(form.contains("value=\"tok&quot;\""), "{form}");
        assert!(form.contains("value=\"&lt;h&gt;\""), "{form}");
        assert_eq!(time(0), "-");
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
