//! opsfleet silences mirrored into Alertmanager (pure): which Alertmanager silences a route
//! wants (one per active opsfleet silence that could match the route's alerts, its matchers
//! translated to the labels the route sends), how to recognise a mirror among the silences
//! Alertmanager lists (the `opsfleet-silence:<id>` marker in its comment), and the plan of one
//! reconciliation pass: (opsfleet silences, mirrors found, now) → create / expire actions.
//! No state outside the log and Alertmanager itself, so a new active coordinator neither
//! duplicates nor loses mirrors. The HTTP edges are in `http`.

mod http;
#[cfg(test)]
mod tests;

pub(super) use http::MirrorState;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::alertmanager::{label_name, rfc3339, MAX_LABEL_VALUE};
use super::limits::cut;
use super::matching::Match;
use crate::glob::glob_match;
use crate::projection::{SilenceRecord, Silences};

/// The comment marker naming the opsfleet silence a mirror stands for.
pub const MARKER: &str = "opsfleet-silence:";
/// Most create/expire actions in one reconciliation pass (the rest wait for the next one).
pub const MAX_PER_PASS: usize = 16;
/// Labels the route sets itself: a silence matching a host label of such a name cannot be
/// said in Alertmanager's terms (the alert carries opsfleet's value), so it is not mirrored.
const OWN_LABELS: [&str; 4] = ["alertname", "host", "subject", "severity"];

/// One Alertmanager silence as listed, reduced to what the plan needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Alertmanager's id of the silence.
    pub am_id: String,
    /// The opsfleet silence id of its marker.
    pub silence_id: String,
    /// `active` or `pending` (not `expired`).
    pub live: bool,
}

/// What one pass does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `POST /api/v2/silences` with `body`, the mirror of opsfleet silence `silence_id`.
    Create { silence_id: String, body: Value },
    /// `DELETE /api/v2/silence/{am_id}`: its opsfleet silence ended early, or it is not wanted
    /// on this route any more, or it duplicates another mirror.
    Expire { am_id: String, silence_id: String },
}

/// Reads one silence of `GET /api/v2/silences`: a mirror if its comment ends with the
/// marker (the last occurrence counts, so an operator's reason cannot forge one).
pub fn found(s: &Value) -> Option<Found> {
    let comment = s.get("comment")?.as_str()?;
    let at = comment.rfind(MARKER)?;
    let silence_id: String = comment[at + MARKER.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let am_id = s.get("id")?.as_str()?.to_owned();
    if silence_id.is_empty() || am_id.is_empty() {
        return None;
    }
    let state = s.pointer("/status/state").and_then(Value::as_str);
    Some(Found {
        am_id,
        silence_id,
        live: matches!(state, Some("active" | "pending")),
    })
}

/// `glob` as an anchored regular expression: `*` → `.*`, `?` → `.`, the rest escaped.
pub fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => push_escaped(&mut out, c),
        }
    }
    out.push('$');
    out
}

/// `names` as an anchored alternation `^(?:a|b)$`, each escaped.
pub fn alternation(names: &[String]) -> String {
    let mut out = String::from("^(?:");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push('|');
        }
        for c in name.chars() {
            push_escaped(&mut out, c);
        }
    }
    out.push_str(")$");
    out
}

fn push_escaped(out: &mut String, c: char) {
    if "\\.+*?()|[]{}^$".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

fn matcher(name: &str, value: &str, regex: bool) -> Value {
    json!({"name": name, "value": value, "isRegex": regex, "isEqual": true})
}

/// The matchers of `s`'s mirror, in the route's label names; `None` when `s` matches on a
/// host label the route cannot send under that name (see `OWN_LABELS`). Alertmanager wants
/// one matcher that cannot match an empty value: `host=~".+"` is added when none is.
pub fn matchers(s: &SilenceRecord) -> Option<Vec<Value>> {
    let mut out = Vec::new();
    let mut selective = false;
    match s.rules.as_slice() {
        [] => {}
        [one] => {
            selective |= !one.is_empty();
            out.push(matcher("alertname", one, false));
        }
        many => {
            selective = true;
            out.push(matcher("alertname", &alternation(many), true));
        }
    }
    if !s.host_glob.is_empty() && s.host_glob.chars().any(|c| c != '*') {
        selective = true;
        out.push(matcher("host", &glob_regex(&s.host_glob), true));
    }
    let mut labels = BTreeMap::new();
    for kv in &s.labels {
        let (k, v) = kv.split_once('=')?;
        let name = label_name(k);
        if OWN_LABELS.contains(&name.as_str()) {
            return None;
        }
        labels.insert(name, cut(v, MAX_LABEL_VALUE));
    }
    for (k, v) in labels {
        selective |= !v.is_empty();
        out.push(matcher(&k, &v, false));
    }
    if !selective {
        out.push(matcher("host", ".+", true));
    }
    Some(out)
}

/// The `POST /api/v2/silences` body of `s`'s mirror (`None`: not mirrorable, see
/// [`matchers`]).
pub fn body(s: &SilenceRecord) -> Option<Value> {
    let by = if s.created_by.is_empty() {
        "opsfleet"
    } else {
        &s.created_by
    };
    let reason = cut(&s.reason, 1024);
    let comment = if reason.is_empty() {
        format!("{MARKER}{}", s.id)
    } else {
        format!("{reason} [{MARKER}{}]", s.id)
    };
    Some(json!({
        "matchers": matchers(s)?,
        "startsAt": rfc3339(s.starts_unix_ms),
        "endsAt": rfc3339(s.end_unix_ms()),
        "createdBy": by,
        "comment": comment,
    }))
}

/// Could `s` match an alert the route sends? Only a provable miss says no: both name rules
/// and none is shared, both want a label with different values, or `s` names one host (no
/// wildcard) that none of the route's host globs takes.
pub fn overlaps(s: &SilenceRecord, route: &Match) -> bool {
    let rules = route.rules.is_empty()
        || s.rules.is_empty()
        || s.rules.iter().any(|r| route.rules.contains(r));
    let labels = s.labels.iter().all(|kv| {
        kv.split_once('=')
            .is_none_or(|(k, v)| route.labels.get(k).is_none_or(|want| want == v))
    });
    let exact_host = !s.host_glob.is_empty() && !s.host_glob.contains(['*', '?']);
    let hosts = !exact_host
        || route.hosts.is_empty()
        || route.hosts.iter().any(|g| glob_match(g, &s.host_glob));
    rules && labels && hosts
}

/// One reconciliation pass at `now` for a route matching `route`: a mirror for each opsfleet
/// silence that has not ended, could match the route and has no live mirror; an expiry for
/// each live mirror of a silence in `silences` that ended (or is not wanted on the route any
/// more), and for every live mirror of a silence but the first (by Alertmanager id). Mirrors
/// of ids `silences` does not hold are left alone (another cluster's, or folded away: they
/// end on their own). At most `max` actions, expiries first.
pub fn plan(
    silences: &Silences,
    route: &Match,
    found: &[Found],
    now_unix_ms: i64,
    max: usize,
) -> Vec<Action> {
    let wanted = |s: &SilenceRecord| {
        s.end_unix_ms() > now_unix_ms && overlaps(s, route) && matchers(s).is_some()
    };
    let mut live: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in found.iter().filter(|f| f.live) {
        live.entry(&f.silence_id).or_default().insert(&f.am_id);
    }
    let mut out = Vec::new();
    for (silence_id, mirrors) in &live {
        let Some(s) = silences.get(silence_id) else {
            continue;
        };
        let keep = usize::from(wanted(s));
        for am_id in mirrors.iter().skip(keep) {
            out.push(Action::Expire {
                am_id: (*am_id).to_owned(),
                silence_id: (*silence_id).to_owned(),
            });
        }
    }
    for s in silences.iter() {
        if out.len() >= max {
            break;
        }
        if live.contains_key(s.id.as_str()) || !wanted(s) {
            continue;
        }
        if let Some(body) = body(s) {
            out.push(Action::Create {
                silence_id: s.id.clone(),
                body,
            });
        }
    }
    out.truncate(max);
    out
}
