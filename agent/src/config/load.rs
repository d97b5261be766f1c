//! Reading a config file and reporting EVERY problem as `FILE:LINE: key: reason`: each section
//! and each `[[modules]]` entry is deserialized on its own, then semantic checks run on what
//! parsed; lines and the report come from the config-problem engine (`opsfleet-configcheck`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opsfleet_bus::NatsConfig;
use opsfleet_configcheck::{section, Document, Sections};
use serde::Deserialize;

pub use opsfleet_configcheck::{ConfigProblems, Problem};

use super::template::{self, Facts, Membership};
use super::{
    default_data_dir, default_http, default_modules, default_nats, default_outbox,
    default_shutdown_grace, host_problems, label_problems, modules_problems, outbox_problems,
    AgentConfig, BackupConfig, DiskConfig, HealthConfig, HeartbeatConfig, HttpConfig,
    JanitorConfig, LogConfig, ModuleConfig, OutboxConfig, PolicyConfig, SentinelConfig,
    ServiceConfig, MODULE_TYPES,
};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(ConfigProblems),
}

/// A valid config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: AgentConfig,
    /// `AgentConfig::fingerprint()`, computed once.
    pub fingerprint: String,
    /// The file is a template (`host_from`, `labels_from_env` or `[[groups]]`).
    pub template: bool,
    /// The `[[groups]]` this host joined, in file order.
    pub groups: Vec<String>,
}

/// Reads and fully validates a config file, rendering a template for this machine
/// (`Facts::from_process`).
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
    load_for(path, &Facts::from_process())
}

/// Reads a config file and renders it for `facts`.
pub fn load_for(path: &Path, facts: &Facts) -> Result<LoadedConfig, ConfigError> {
    let text = read(path)?;
    let r = render_and_parse(&text, facts, Membership::Match, false);
    loaded(path, r)
}

/// `--check-config`: like [`load_for`], and a template is also rendered once per
/// `[[groups]]` entry as if the host joined it (a host name the checking machine cannot
/// resolve becomes [`template::CHECK_HOST`]), so every group's overrides are checked. Every
/// problem of every rendering is reported once.
pub fn check_for(path: &Path, facts: &Facts) -> Result<LoadedConfig, ConfigError> {
    let text = read(path)?;
    let first = render_and_parse(&text, facts, Membership::Match, true);
    let groups = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("groups").and_then(|g| g.as_array()).map(Vec::len))
        .unwrap_or(0);
    let mut problems: Vec<Problem> = first.as_ref().err().cloned().unwrap_or_default();
    for i in 0..groups {
        if let Err(more) = render_and_parse(&text, facts, Membership::Force(i), true) {
            for p in more {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
    }
    if problems.is_empty() {
        loaded(path, first)
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(0));
        loaded(path, Err(problems))
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

fn loaded(path: &Path, r: Result<Parsed, Vec<Problem>>) -> Result<LoadedConfig, ConfigError> {
    let parsed = r.map_err(|problems| {
        ConfigError::Invalid(ConfigProblems {
            file: path.to_owned(),
            problems,
        })
    })?;
    let fingerprint = parsed.config.fingerprint();
    Ok(LoadedConfig {
        path: path.to_owned(),
        config: parsed.config,
        fingerprint,
        template: parsed.template,
        groups: parsed.groups,
    })
}

/// Parses and validates config text; on failure returns every problem found. A template is
/// rendered against no facts (`host_from` then needs `--host`-like facts: see
/// [`parse_str_for`]).
pub fn parse_str(text: &str) -> Result<AgentConfig, Vec<Problem>> {
    parse_str_for(text, &Facts::default())
}

/// Renders config text (template or not) for `facts`, then parses and validates it.
pub fn parse_str_for(text: &str, facts: &Facts) -> Result<AgentConfig, Vec<Problem>> {
    render_and_parse(text, facts, Membership::Match, false).map(|p| p.config)
}

/// A rendered and validated config.
#[derive(Debug)]
struct Parsed {
    config: AgentConfig,
    template: bool,
    groups: Vec<String>,
}

fn render_and_parse(
    text: &str,
    facts: &Facts,
    membership: Membership,
    check: bool,
) -> Result<Parsed, Vec<Problem>> {
    let Document { table, spans } = Document::parse(text).map_err(|p| vec![p])?;
    let template = template::is_template(&table);
    let mut raw: Vec<(String, String)> = Vec::new();
    let mut rendered = template::render(table, facts, membership, check, &mut raw);
    let mut parse_raw = Vec::new();
    let cfg = sections(std::mem::take(&mut rendered.table), &mut parse_raw);
    if raw.iter().any(|(k, _)| k == "host_from") {
        // The host source's own problem says why there is no host.
        parse_raw.retain(|(k, _)| k != "host");
    }
    raw.extend(
        parse_raw
            .into_iter()
            .map(|(k, r)| (rendered.origin_key(&k), r)),
    );
    let problems = spans.locate(raw);
    match cfg {
        Some(config) if problems.is_empty() => Ok(Parsed {
            config,
            template,
            groups: rendered.groups,
        }),
        _ => Err(problems),
    }
}

const TOP_KEYS: &[&str] = &[
    "host",
    "data_dir",
    "shutdown_grace",
    "nats",
    "outbox",
    "modules",
    "http",
    "labels",
    "policy",
];

#[derive(Deserialize)]
struct HumanDuration(#[serde(with = "humantime_serde")] Duration);

/// Deserializes every section on its own, runs the semantic checks on those that parsed and
/// returns the config when every section parsed.
fn sections(table: toml::Table, out: &mut Vec<(String, String)>) -> Option<AgentConfig> {
    let mut s = Sections::new(table);
    let host = s.take::<String>("host", || None);
    if let Some(h) = &host {
        s.out.extend(host_problems(h));
    }
    let data_dir = s.take("data_dir", || Some(default_data_dir()));
    let grace = s
        .take::<HumanDuration>("shutdown_grace", || {
            Some(HumanDuration(default_shutdown_grace()))
        })
        .map(|d| d.0);
    let nats = s.take::<NatsConfig>("nats", || Some(default_nats()));
    if let Some(n) = &nats {
        s.extend("nats", n.problems());
    }
    let outbox = s.take::<OutboxConfig>("outbox", || Some(default_outbox()));
    if let Some(o) = &outbox {
        s.out.extend(outbox_problems(o));
    }
    let modules = modules_section(s.take_value("modules"), &mut s.out);
    let http = s.take::<Option<HttpConfig>>("http", || Some(default_http()));
    if let Some(Some(h)) = &http {
        s.extend("http", h.problems());
    }
    let labels = s.take::<BTreeMap<String, String>>("labels", || Some(BTreeMap::new()));
    if let Some(l) = &labels {
        s.out.extend(label_problems(l));
    }
    let policy = s.take::<PolicyConfig>("policy", || Some(PolicyConfig::default()));
    if let Some(p) = &policy {
        s.extend("policy", p.problems());
    }
    out.extend(s.finish(&format!(
        "unknown key; expected one of {}, {}",
        TOP_KEYS.join(", "),
        template::TEMPLATE_KEYS.join(", ")
    )));
    Some(AgentConfig {
        policy: policy?,
        labels: labels?,
        host: host?,
        data_dir: data_dir?,
        shutdown_grace: grace?,
        nats: nats?,
        outbox: outbox?,
        modules: modules?,
        http: http?,
    })
}

/// `[[modules]]`: every entry parsed on its own, then the checks across entries.
fn modules_section(
    value: Option<toml::Value>,
    out: &mut Vec<(String, String)>,
) -> Option<Vec<ModuleConfig>> {
    let items = match value {
        None => return Some(default_modules()),
        Some(toml::Value::Array(items)) => items,
        Some(other) => {
            out.push((
                "modules".to_owned(),
                format!(
                    "must be an array of tables ([[modules]]), found {}",
                    other.type_str()
                ),
            ));
            return None;
        }
    };
    let mut parsed = Vec::new();
    let mut all = true;
    for (i, item) in items.into_iter().enumerate() {
        match module_entry(i, item, out) {
            Some(m) => parsed.push((i, m)),
            None => all = false,
        }
    }
    let refs: Vec<(usize, &ModuleConfig)> = parsed.iter().map(|(i, m)| (*i, m)).collect();
    out.extend(modules_problems(&refs));
    all.then(|| parsed.into_iter().map(|(_, m)| m).collect())
}

/// Picks the module struct by `type` and deserializes the rest of the entry into it, so errors
/// keep their key (serde's internally tagged enums lose it).
pub(super) fn module_entry(
    i: usize,
    item: toml::Value,
    out: &mut Vec<(String, String)>,
) -> Option<ModuleConfig> {
    let prefix = format!("modules[{i}]");
    let toml::Value::Table(mut t) = item else {
        out.push((
            prefix,
            format!("must be a table, found {}", item.type_str()),
        ));
        return None;
    };
    let expected = MODULE_TYPES.join(", ");
    let kind = match t.remove("type") {
        None => {
            out.push((
                format!("{prefix}.type"),
                format!("is required; one of {expected}"),
            ));
            return None;
        }
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            out.push((
                format!("{prefix}.type"),
                format!("must be a string, found {}", other.type_str()),
            ));
            return None;
        }
    };
    let body = toml::Value::Table(t);
    match kind.as_str() {
        "heartbeat" => section::<HeartbeatConfig>(&prefix, body, out).map(ModuleConfig::Heartbeat),
        "disk" => section::<DiskConfig>(&prefix, body, out).map(ModuleConfig::Disk),
        "health" => section::<HealthConfig>(&prefix, body, out).map(ModuleConfig::Health),
        "backup" => section::<BackupConfig>(&prefix, body, out).map(ModuleConfig::Backup),
        "janitor" => section::<JanitorConfig>(&prefix, body, out).map(ModuleConfig::Janitor),
        "log" => section::<LogConfig>(&prefix, body, out).map(ModuleConfig::Log),
        "sentinel" => section::<SentinelConfig>(&prefix, body, out).map(ModuleConfig::Sentinel),
        "service" => section::<ServiceConfig>(&prefix, body, out).map(ModuleConfig::Service),
        other => {
            out.push((
                format!("{prefix}.type"),
                format!("unknown module type {other:?}; expected one of {expected}"),
            ));
            None
        }
    }
}
