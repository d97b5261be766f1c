//! Which hosts a command goes to (pure): names, globs (`web-*`, as in the views), labels and
//! `--all`, checked against what the fleet knows before anything is sent — an unknown host or
//! a named host without the action's module is an error naming what is known; hosts matched
//! by a glob, a label or `--all` that lack the module are skipped, and the reply says so.

use std::collections::BTreeSet;

use opsfleet_proto::api::{CommandAction, Liveness, SkippedHost, Targets};

use super::DispatchError;
use crate::glob::glob_match;
use crate::projection::{Fleet, HostState};

/// How many known names an error lists before it says how many more there are.
const HINT_NAMES: usize = 20;

/// The hosts a request goes to, and the ones it matched but skips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub targets: Vec<String>,
    pub skipped: Vec<SkippedHost>,
}

/// `names` joined, at most `HINT_NAMES` of them, then `and N more`; `none` when empty.
pub fn hint<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    if names.is_empty() {
        return "none".to_owned();
    }
    let mut out = names
        .iter()
        .take(HINT_NAMES)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > HINT_NAMES {
        out.push_str(&format!(" and {} more", names.len() - HINT_NAMES));
    }
    out
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// What the action needs on a host: a module by name, or (backup run / restore without one)
/// a module of kind `backup`. `None` for actions that need no module.
fn needed_module(action: &CommandAction) -> Option<(Option<&str>, &'static str)> {
    match action {
        CommandAction::BackupRun { module, .. }
        | CommandAction::Restore { module, .. }
        | CommandAction::RestoreTest { module, .. } => Some((module.as_deref(), "backup")),
        other => other.module().map(|m| (Some(m), "")),
    }
}

/// Why `host` cannot take `action`, if it cannot: it lacks the module.
fn lacks_module(host: &HostState, action: &CommandAction) -> Option<String> {
    let (name, kind) = needed_module(action)?;
    let has = match name {
        Some(name) => host
            .modules
            .get(name)
            .is_some_and(|m| kind.is_empty() || m.kind == kind),
        None => host.modules.values().any(|m| m.kind == kind),
    };
    if has {
        return None;
    }
    Some(match name {
        Some(name) if kind.is_empty() => format!("no module {name}"),
        Some(name) => format!("no {kind} module {name}"),
        None => format!("no {kind} module"),
    })
}

/// The hosts a request targets, checked against the fleet and the action's module (pure).
pub fn resolve(
    fleet: &Fleet,
    req: &Targets,
    action: &CommandAction,
) -> Result<Resolved, DispatchError> {
    let known: BTreeSet<&str> = fleet.hosts().map(|h| h.host.as_str()).collect();
    let (named, globs): (Vec<&String>, Vec<&String>) = req.hosts.iter().partition(|h| !is_glob(h));
    let unknown: BTreeSet<&str> = named
        .iter()
        .map(|h| h.as_str())
        .filter(|h| !known.contains(h))
        .collect();
    if !unknown.is_empty() {
        return Err(DispatchError::UnknownHosts {
            unknown: unknown.into_iter().collect::<Vec<_>>().join(", "),
            known: hint(known.iter().copied()),
        });
    }
    // Matched by a pattern, a label or --all: skipped when they lack the module.
    let mut matched: BTreeSet<&str> = BTreeSet::new();
    for pattern in &globs {
        let hits: Vec<&str> = known
            .iter()
            .copied()
            .filter(|h| glob_match(pattern, h))
            .collect();
        if hits.is_empty() {
            return Err(DispatchError::NoGlobMatch {
                pattern: (*pattern).clone(),
                known: hint(known.iter().copied()),
            });
        }
        matched.extend(hits);
    }
    if req.all {
        matched.extend(known.iter().copied());
    } else if !req.labels.is_empty() {
        matched.extend(label_matches(fleet, req)?);
    }
    let named: BTreeSet<&str> = named.iter().map(|h| h.as_str()).collect();
    let mut resolved = Resolved {
        targets: Vec::new(),
        skipped: Vec::new(),
    };
    for host in fleet.hosts() {
        let name = host.host.as_str();
        let lacks = lacks_module(host, action);
        if named.contains(name) {
            if let Some(reason) = lacks {
                return Err(DispatchError::ModuleMissing {
                    host: name.to_owned(),
                    reason,
                    modules: hint(host.modules.keys().map(String::as_str)),
                });
            }
            resolved.targets.push(name.to_owned());
        } else if matched.contains(name) {
            match lacks {
                Some(reason) => resolved.skipped.push(SkippedHost {
                    host: name.to_owned(),
                    reason,
                }),
                None => resolved.targets.push(name.to_owned()),
            }
        }
    }
    if resolved.targets.is_empty() {
        if let Some(first) = resolved.skipped.first() {
            return Err(DispatchError::AllSkipped {
                matched: resolved.skipped.len(),
                reason: first.reason.clone(),
            });
        }
        return Err(DispatchError::NoTargets);
    }
    Ok(resolved)
}

/// Every host whose labels include all of the request's labels; an error listing the labels
/// in use when none does.
fn label_matches<'a>(fleet: &'a Fleet, req: &Targets) -> Result<Vec<&'a str>, DispatchError> {
    let matching: Vec<&str> = fleet
        .hosts()
        .filter(|h| req.labels.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
        .map(|h| h.host.as_str())
        .collect();
    if !matching.is_empty() {
        return Ok(matching);
    }
    let show = |m: &mut dyn Iterator<Item = (&String, &String)>| {
        m.map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()
    };
    let mut known: BTreeSet<String> = BTreeSet::new();
    for h in fleet.hosts() {
        known.extend(show(&mut h.labels.iter()));
    }
    Err(DispatchError::NoLabelMatch {
        labels: show(&mut req.labels.iter()).join(","),
        known: if known.is_empty() {
            "none".to_owned()
        } else {
            known.into_iter().collect::<Vec<_>>().join(", ")
        },
    })
}

/// How the host looks at `now_unix_ms` when it is not up (`late`, `lost`), with when it was
/// last heard from; `None` while it is up or its liveness is unknown.
pub fn not_up(fleet: &Fleet, host: &str, now_unix_ms: i64) -> Option<(Liveness, i64)> {
    let h = fleet.hosts().find(|h| h.host == host)?;
    let seen = fleet.seen_unix_ms(h);
    let judged = if crate::projection::presence::declared_lost(fleet, h) {
        Liveness::Lost
    } else {
        crate::projection::presence::liveness(h, seen, now_unix_ms)
    };
    matches!(judged, Liveness::Late | Liveness::Lost).then_some((judged, seen))
}
