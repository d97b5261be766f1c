//! Reading a config file and reporting EVERY problem as `FILE:LINE: key: reason`: each section
//! and each `[[modules]]` entry is deserialized on its own, then semantic checks run on what
//! parsed; lines come from an index of the document's spans.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opsfleet_bus::NatsConfig;
use serde::de::{self, DeserializeOwned, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use super::problems::{join_key, section};
use super::template::{self, Facts, Membership};
use super::{
    default_data_dir, default_http, default_modules, default_nats, default_outbox,
    default_shutdown_grace, host_problems, modules_problems, outbox_problems, prefixed,
    AgentConfig, BackupConfig, DiskConfig, HealthConfig, HeartbeatConfig, HttpConfig,
    JanitorConfig, LogConfig, ModuleConfig, OutboxConfig, PolicyConfig, SentinelConfig,
    MODULE_TYPES,
};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when the key (or its nearest parent) is in the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `modules[1].interval`.
    pub key: String,
    pub reason: String,
}

/// Every problem of one file; `Display` prints one `FILE:LINE: key: reason` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.line {
                Some(line) => write!(f, "{file}:{line}: {}: {}", p.key, p.reason)?,
                None => write!(f, "{file}: {}: {}", p.key, p.reason)?,
            }
        }
        Ok(())
    }
}

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

pub(crate) use opsfleet_bus::syntax_reason;

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
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            return Err(vec![Problem {
                line: e.span().map(|s| line_of(text, s.start)),
                key: "(syntax)".to_owned(),
                reason: syntax_reason(&e),
            }])
        }
    };
    let spans = SpanIndex::build(text);
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
    let mut problems: Vec<Problem> = raw
        .into_iter()
        .map(|(key, reason)| Problem {
            line: spans.line(&key),
            key,
            reason,
        })
        .collect();
    problems.sort_by_key(|p| p.line.unwrap_or(0));
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
fn sections(mut table: toml::Table, out: &mut Vec<(String, String)>) -> Option<AgentConfig> {
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            out.push((
                key.clone(),
                format!(
                    "unknown key; expected one of {}, {}",
                    TOP_KEYS.join(", "),
                    template::TEMPLATE_KEYS.join(", ")
                ),
            ));
        }
    }
    let host = match table.remove("host") {
        None => {
            out.push(("host".to_owned(), "is required".to_owned()));
            None
        }
        Some(v) => section::<String>("host", v, out),
    };
    if let Some(h) = &host {
        out.extend(host_problems(h));
    }
    let data_dir = optional(&mut table, "data_dir", default_data_dir, out);
    let grace = match table.remove("shutdown_grace") {
        None => Some(default_shutdown_grace()),
        Some(v) => section::<HumanDuration>("shutdown_grace", v, out).map(|d| d.0),
    };
    let nats = optional::<NatsConfig>(&mut table, "nats", default_nats, out);
    if let Some(n) = &nats {
        out.extend(prefixed("nats", n.problems()));
    }
    let outbox = optional::<OutboxConfig>(&mut table, "outbox", default_outbox, out);
    if let Some(o) = &outbox {
        out.extend(outbox_problems(o));
    }
    let modules = match table.remove("modules") {
        None => Some(default_modules()),
        Some(toml::Value::Array(items)) => {
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
        Some(other) => {
            out.push((
                "modules".to_owned(),
                format!(
                    "must be an array of tables ([[modules]]), found {}",
                    other.type_str()
                ),
            ));
            None
        }
    };
    let http = match table.remove("http") {
        None => Some(default_http()),
        Some(v) => section::<HttpConfig>("http", v, out).map(Some),
    };
    if let Some(Some(h)) = &http {
        out.extend(prefixed("http", h.problems()));
    }
    let labels = optional::<std::collections::BTreeMap<String, String>>(
        &mut table,
        "labels",
        Default::default,
        out,
    );
    if let Some(l) = &labels {
        out.extend(super::label_problems(l));
    }
    let policy = optional::<PolicyConfig>(&mut table, "policy", PolicyConfig::default, out);
    if let Some(p) = &policy {
        out.extend(prefixed("policy", p.problems()));
    }
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

fn optional<T: DeserializeOwned>(
    table: &mut toml::Table,
    key: &str,
    default: fn() -> T,
    out: &mut Vec<(String, String)>,
) -> Option<T> {
    match table.remove(key) {
        None => Some(default()),
        Some(v) => section(key, v, out),
    }
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
        other => {
            out.push((
                format!("{prefix}.type"),
                format!("unknown module type {other:?}; expected one of {expected}"),
            ));
            None
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Line of every key path in the document (`nats.urls[0]`, `modules[1].interval`).
struct SpanIndex {
    lines: HashMap<String, usize>,
}

impl SpanIndex {
    fn build(text: &str) -> Self {
        let mut lines = HashMap::new();
        if let Ok(root) = toml::from_str::<Node>(text) {
            root.walk("", text, &mut lines);
        }
        SpanIndex { lines }
    }

    /// Line of `key`, else of its nearest parent present in the file.
    fn line(&self, key: &str) -> Option<usize> {
        let mut k = key;
        loop {
            if let Some(l) = self.lines.get(k) {
                return Some(*l);
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }
}

/// Shape of a TOML document with the span of every value.
enum Node {
    Leaf,
    Table(Vec<(String, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
}

impl Node {
    fn walk(&self, path: &str, text: &str, out: &mut HashMap<String, usize>) {
        let mut visit = |child: String, node: &Spanned<Node>| {
            out.insert(child.clone(), line_of(text, node.span().start));
            node.get_ref().walk(&child, text, out);
        };
        match self {
            Node::Leaf => {}
            Node::Table(entries) => {
                for (k, v) in entries {
                    visit(join_key(path, k), v);
                }
            }
            Node::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    visit(format!("{path}[{i}]"), v);
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            entries.push((k, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Table(entries))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            items.push(v);
        }
        Ok(Node::Array(items))
    }
}
