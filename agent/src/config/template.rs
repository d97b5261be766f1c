//! Config templates: one agent config file for every host of a fleet. Before the typed parse,
//! the TOML document is rendered for one host: the host name comes from `host_from`
//! (`"hostname"` or `"env:VAR"`, up to the first `.`), labels from `labels_from_env`, `[[groups]]` (joined by host
//! name glob and/or labels) add labels, disable shared modules and override or add module
//! entries, and `{host}` in any string becomes the host name. A file without template keys
//! renders to itself (plus `{host}`), so per-host configs load unchanged.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

/// Top-level keys only a template uses; removed by rendering.
pub const TEMPLATE_KEYS: &[&str] = &["host_from", "labels_from_env", "groups"];

/// Host name used by `--check-config` when the template's host source is not available on the
/// checking machine (e.g. `env:NODE_NAME` outside Kubernetes).
pub const CHECK_HOST: &str = "check-host";

/// What a template is rendered against: the machine's facts plus command-line overrides.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `--host`: wins over `host_from` (a literal `host` in the file must agree).
    pub host: Option<String>,
    /// `--label k=v`: added last, so they win over file and environment labels.
    pub labels: BTreeMap<String, String>,
    /// The process environment (`env:VAR`, `labels_from_env`).
    pub env: BTreeMap<String, String>,
    /// The kernel's host name (`host_from = "hostname"`).
    pub hostname: Option<String>,
}

impl Facts {
    /// The running process's environment and host name.
    pub fn from_process() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        Facts {
            host: None,
            labels: BTreeMap::new(),
            env: std::env::vars().collect(),
            hostname,
        }
    }
}

/// `[[groups]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupConfig {
    name: String,
    /// Host name globs (`web-*`); a host joins when one matches.
    #[serde(default)]
    hosts: Vec<String>,
    /// Labels the host must all carry (before any group's `labels`).
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    /// Labels added to members.
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Shared module names removed for members.
    #[serde(default)]
    disable: Vec<String>,
    /// Entries naming an existing module (by `name`, else `type`) replace its keys; others
    /// are added (and need `type`).
    #[serde(default)]
    modules: Vec<toml::Table>,
}

/// Where a rendered `modules[k]` came from, to report problems at the file's own keys.
#[derive(Debug, Clone)]
pub(super) struct Origin {
    base: String,
    /// A group entry merged onto `base`: its key and the keys it set.
    over: Option<(String, BTreeSet<String>)>,
}

/// A document rendered for one host.
#[derive(Debug)]
pub(super) struct Rendered {
    pub table: toml::Table,
    pub origins: Vec<Origin>,
    /// Names of the groups the host joined, in file order.
    pub groups: Vec<String>,
}

/// Whether the document uses any template key.
pub fn is_template(table: &toml::Table) -> bool {
    TEMPLATE_KEYS.iter().any(|k| table.contains_key(*k))
}

/// How group membership is decided.
#[derive(Debug, Clone, Copy)]
pub(super) enum Membership {
    /// By the host's name and labels.
    Match,
    /// Exactly this group (index), whatever the host: `--check-config` checks every group.
    Force(usize),
}

/// Renders `table` for the host `facts` describe. `check` uses [`CHECK_HOST`] when the host
/// source is unavailable instead of reporting it. Problems are `(key, reason)` at the
/// template's own keys.
pub(super) fn render(
    mut table: toml::Table,
    facts: &Facts,
    membership: Membership,
    check: bool,
    out: &mut Vec<(String, String)>,
) -> Rendered {
    let host = host::resolve_host(&mut table, facts, check, out);
    let mut labels = host_labels(&mut table, facts, out);
    let own_labels: BTreeMap<String, String> = labels
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    let groups = parse_groups(table.remove("groups"), out);
    let mut modules = Modules::take(&mut table);
    let mut joined = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let Some(g) = g else { continue };
        let member = match membership {
            Membership::Force(i) => i == gi,
            Membership::Match => g.matches(host.as_deref(), &own_labels),
        };
        if !member {
            continue;
        }
        joined.push(g.name.clone());
        for (k, v) in &g.labels {
            labels.insert(k.clone(), toml::Value::String(v.clone()));
        }
        modules.apply(gi, g, out);
    }
    if !modules.entries.is_empty() || !modules.origins.is_empty() {
        table.insert("modules".to_owned(), toml::Value::Array(modules.entries));
    }
    if !labels.is_empty() {
        table.insert("labels".to_owned(), toml::Value::Table(labels));
    }
    if let Some(h) = &host {
        table.insert("host".to_owned(), toml::Value::String(h.clone()));
        for (_, v) in table.iter_mut() {
            substitute_host(v, h);
        }
    }
    Rendered {
        table,
        origins: modules.origins,
        groups: joined,
    }
}

/// The host's labels before any group: the file's `labels`, then `labels_from_env`, then
/// `--label`.
fn host_labels(
    table: &mut toml::Table,
    facts: &Facts,
    out: &mut Vec<(String, String)>,
) -> toml::Table {
    let mut labels = match table.remove("labels") {
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            // Let the typed parse report the shape.
            table.insert("labels".to_owned(), other);
            toml::Table::new()
        }
        None => toml::Table::new(),
    };
    match table.remove("labels_from_env") {
        None => {}
        Some(v) => match BTreeMap::<String, String>::deserialize(v) {
            Ok(map) => {
                for (label, var) in map {
                    // An unset variable leaves the label out: the template still works
                    // on hosts that do not set it.
                    if let Some(value) = facts.env.get(&var).filter(|v| !v.is_empty()) {
                        labels.insert(label, toml::Value::String(value.clone()));
                    }
                }
            }
            Err(e) => out.push((
                "labels_from_env".to_owned(),
                format!("must map label names to environment variable names: {e}"),
            )),
        },
    }
    for (k, v) in &facts.labels {
        labels.insert(k.clone(), toml::Value::String(v.clone()));
    }
    labels
}

impl GroupConfig {
    /// Whether a host of this name and labels joins the group.
    fn matches(&self, host: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
        let by_name = self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|p| glob::Pattern::new(p).is_ok_and(|p| host.is_some_and(|h| p.matches(h))));
        let by_labels = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        by_name && by_labels
    }
}

/// The `[[modules]]` entries being rendered, each with where it came from.
struct Modules {
    entries: Vec<toml::Value>,
    origins: Vec<Origin>,
}

impl Modules {
    /// Removes `modules` from `table` when it is an array (else the typed parse reports it).
    fn take(table: &mut toml::Table) -> Modules {
        match table.remove("modules") {
            Some(toml::Value::Array(entries)) => {
                let origins = (0..entries.len())
                    .map(|i| Origin {
                        base: format!("modules[{i}]"),
                        over: None,
                    })
                    .collect();
                Modules { entries, origins }
            }
            other => {
                if let Some(other) = other {
                    table.insert("modules".to_owned(), other);
                }
                Modules {
                    entries: Vec::new(),
                    origins: Vec::new(),
                }
            }
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|m| entry_name(m) == Some(name))
    }

    /// Group `gi` (joined): its `disable` removes shared modules, its `modules` override or
    /// add entries.
    fn apply(&mut self, gi: usize, g: &GroupConfig, out: &mut Vec<(String, String)>) {
        for (di, name) in g.disable.iter().enumerate() {
            match self.position(name) {
                Some(at) => {
                    self.entries.remove(at);
                    self.origins.remove(at);
                }
                None => out.push((
                    format!("groups[{gi}].disable[{di}]"),
                    format!("no module named {name:?} to disable"),
                )),
            }
        }
        for (mi, entry) in g.modules.iter().enumerate() {
            let key = format!("groups[{gi}].modules[{mi}]");
            match entry_name_of(entry).and_then(|n| self.position(n)) {
                Some(at) => self.merge(at, key, entry, out),
                None => {
                    self.entries.push(toml::Value::Table(entry.clone()));
                    self.origins.push(Origin {
                        base: key,
                        over: None,
                    });
                }
            }
        }
    }

    /// A group entry (`key`) naming existing module `at` replaces its keys; it may not change
    /// the module's type.
    fn merge(
        &mut self,
        at: usize,
        key: String,
        entry: &toml::Table,
        out: &mut Vec<(String, String)>,
    ) {
        let Some(base) = self.entries[at].as_table_mut() else {
            return;
        };
        if let (Some(new), Some(old)) = (
            entry.get("type").and_then(|t| t.as_str()),
            base.get("type").and_then(|t| t.as_str()),
        ) {
            if new != old {
                out.push((
                    format!("{key}.type"),
                    format!(
                        "{new:?} would change the type of module {:?} ({old:?}); give the entry another `name`",
                        entry_name_of(entry).unwrap_or_default()
                    ),
                ));
                return;
            }
        }
        let mut set = BTreeSet::new();
        for (k, v) in entry {
            base.insert(k.clone(), v.clone());
            set.insert(k.clone());
        }
        self.origins[at].over = Some((key, set));
    }
}

fn parse_groups(
    value: Option<toml::Value>,
    out: &mut Vec<(String, String)>,
) -> Vec<Option<GroupConfig>> {
    let items = match value {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            out.push((
                "groups".to_owned(),
                format!(
                    "must be an array of tables ([[groups]]), found {}",
                    other.type_str()
                ),
            ));
            return Vec::new();
        }
    };
    let mut groups = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let key = format!("groups[{i}]");
        let Some(g) = opsfleet_configcheck::section::<GroupConfig>(&key, item, out) else {
            groups.push(None);
            continue;
        };
        if let Err(e) = opsfleet_proto::subjects::validate_token(&g.name) {
            out.push((
                format!("{key}.name"),
                format!("{:?} is not a token: {e}", g.name),
            ));
        } else if let Some(first) = seen.get(&g.name) {
            out.push((
                format!("{key}.name"),
                format!("duplicate group name {:?} (also groups[{first}])", g.name),
            ));
        } else {
            seen.insert(g.name.clone(), i);
        }
        if g.hosts.is_empty() && g.match_labels.is_empty() {
            out.push((
                key.clone(),
                "needs `hosts` (name globs) or `match_labels`; a group for every host belongs in the shared sections".to_owned(),
            ));
        }
        for (pi, p) in g.hosts.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(p) {
                out.push((format!("{key}.hosts[{pi}]"), format!("bad glob {p:?}: {e}")));
            }
        }
        for (field, map) in [("match_labels", &g.match_labels), ("labels", &g.labels)] {
            for (k, r) in super::label_problems(map) {
                let k = k.strip_prefix("labels.").unwrap_or(&k).to_owned();
                out.push((format!("{key}.{field}.{k}"), r));
            }
        }
        for (mi, m) in g.modules.iter().enumerate() {
            if entry_name_of(m).is_none() {
                out.push((
                    format!("{key}.modules[{mi}]"),
                    "needs `name` (to override a shared module) or `type` (to add one)".to_owned(),
                ));
            }
        }
        groups.push(Some(g));
    }
    groups
}

fn entry_name(v: &toml::Value) -> Option<&str> {
    entry_name_of(v.as_table()?)
}

fn entry_name_of(t: &toml::Table) -> Option<&str> {
    t.get("name")
        .or_else(|| t.get("type"))
        .and_then(|n| n.as_str())
}

fn substitute_host(v: &mut toml::Value, host: &str) {
    match v {
        toml::Value::String(s) if s.contains("{host}") => *s = s.replace("{host}", host),
        toml::Value::Array(items) => items.iter_mut().for_each(|i| substitute_host(i, host)),
        toml::Value::Table(t) => t.iter_mut().for_each(|(_, i)| substitute_host(i, host)),
        _ => {}
    }
}

impl Rendered {
    /// Maps a problem key of the rendered document (`modules[3].interval`) back to the
    /// template's key (`groups[1].modules[0].interval`).
    pub(super) fn origin_key(&self, key: &str) -> String {
        let Some(rest) = key.strip_prefix("modules[") else {
            return key.to_owned();
        };
        let Some((index, tail)) = rest.split_once(']') else {
            return key.to_owned();
        };
        let Some(origin) = index
            .parse::<usize>()
            .ok()
            .and_then(|i| self.origins.get(i))
        else {
            return key.to_owned();
        };
        if let Some((over, set)) = &origin.over {
            let field = tail
                .trim_start_matches('.')
                .split(['.', '['])
                .next()
                .unwrap_or_default();
            if set.contains(field) {
                return format!("{over}{tail}");
            }
        }
        format!("{}{tail}", origin.base)
    }
}

mod host;

#[cfg(test)]
mod tests;
