//! The agent's TOML config: typed sections, one config struct per module kind, semantic checks
//! and the sha256 fingerprints that identify a config (whole file and per module).

mod backup;
mod health;
mod http;
mod janitor;
mod load;
mod log;
mod policy;
mod runtime;
mod sentinel;
mod service;
mod template;

use std::path::PathBuf;
use std::time::Duration;

use opsfleet_bus::NatsConfig;
use opsfleet_configcheck::prefixed;
use opsfleet_proto::subjects::validate_token;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use backup::{
    credentials_file_problem, BackupConfig, BackupJobConfig, Compression, PreBackupConfig,
    RemoteConfig, RemoteKind, VerifyCheckConfig, PRE_BACKUP_OUTPUT_PLACEHOLDER,
};
pub use health::{
    parse_http_url, parse_probe_url, Comparison, HealthConfig, HttpTarget, JsonAssertion,
    LatencyWindow, ProbeConfig, ProbeType, Scheme, DEFAULT_EXPECT_EXIT, DEFAULT_EXPECT_STATUS,
    DEFAULT_LATENCY_WINDOW, LATENCY_MIN_SAMPLES,
};
pub use http::HttpConfig;
pub use janitor::{JanitorConfig, JanitorRootConfig};
pub use load::{
    check_for, load, load_for, parse_str, parse_str_for, ConfigError, ConfigProblems, LoadedConfig,
    Problem,
};
pub use log::{LogConfig, PatternConfig, StartAt};
pub use policy::{
    fs_resolve, glob_base, is_under, lexical, normalise, HostPolicy, PolicyConfig, Surface,
    Violation,
};
pub use runtime::{module_problems, parse_module_toml};
pub use sentinel::SentinelConfig;
pub use service::{
    parse_signal, version_problem, AppConfigFiles, ComposeSection, ConfigApply, ControlAction,
    ControlConfig, ControlEndpoint, DeployActivate, DeployConfig, GroupRole, RemediationConfig,
    RemoteOp, RoleApply, RoleDelivery, RoleSection, ServiceConfig, ServiceManager, SystemdSection,
    TrafficSection, VersionSource, COMPOSE_FILES,
};
pub use template::{is_template, Facts, CHECK_HOST, TEMPLATE_KEYS};

/// Module name the agent uses for its own bookkeeping events (e.g. `events_dropped`).
pub const AGENT_MODULE: &str = "agent";

/// The whole `ops-agent` config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This host's name; a subject token (`ops.evt.<host>.<kind>`).
    pub host: String,
    /// Directory holding `agent.sled`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How long a graceful shutdown keeps publishing the outbox.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(default = "default_nats")]
    pub nats: NatsConfig,
    #[serde(default = "default_outbox")]
    pub outbox: OutboxConfig,
    #[serde(default = "default_modules")]
    pub modules: Vec<ModuleConfig>,
    /// `[http]`: /healthz, /readyz, /metrics and admin routes; none when absent.
    #[serde(default = "default_http", skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    /// `labels = { role = "web", site = "fra1" }`: published in heartbeats; commands can
    /// target hosts by them (`opsctl pause log --label role=web`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `[policy]`: what remote changes may do on this host; only this file sets it.
    #[serde(default, skip_serializing_if = "PolicyConfig::is_default")]
    pub policy: PolicyConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/ops-agent")
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(5)
}
fn default_nats() -> NatsConfig {
    NatsConfig::default()
}
fn default_outbox() -> OutboxConfig {
    OutboxConfig {
        max_events: default_max_events(),
    }
}
fn default_modules() -> Vec<ModuleConfig> {
    Vec::new()
}
fn default_http() -> Option<HttpConfig> {
    None
}

/// `[outbox]`: the durable queue between modules and NATS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Events kept while NATS is unreachable; beyond that new events are dropped and counted
    /// (an `events_dropped` event reports them once there is room).
    #[serde(default = "default_max_events")]
    pub max_events: u64,
}

fn default_max_events() -> u64 {
    100_000
}

impl Default for OutboxConfig {
    fn default() -> Self {
        default_outbox()
    }
}

/// One `[[modules]]` entry. Closed set: the `type` key picks the variant.
// A handful of entries per agent, read once: the size of the largest (service) is no cost.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ModuleConfig {
    Heartbeat(HeartbeatConfig),
    Disk(DiskConfig),
    Health(HealthConfig),
    Backup(BackupConfig),
    Janitor(JanitorConfig),
    Log(LogConfig),
    Sentinel(SentinelConfig),
    /// See `ServiceConfig`; `process`, `systemd` and `compose` are its `manager` key, not
    /// module types of their own.
    Service(ServiceConfig),
}

/// Every module `type` the agent knows, in config spelling.
pub const MODULE_TYPES: &[&str] = &[
    "heartbeat",
    "disk",
    "health",
    "backup",
    "janitor",
    "log",
    "sentinel",
    "service",
];

/// `type = "heartbeat"`: proves the agent is alive and reports module statuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_name() -> Option<String> {
    None
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(10)
}

/// `type = "disk"`: space and inode usage of mount points, with warn/crit levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_disk_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Absolute paths; each is reported with the usage of the file system holding it.
    /// Empty means every real mount (as `all_mounts = true`).
    #[serde(default = "default_disk_paths")]
    pub paths: Vec<PathBuf>,
    /// Also report every real mount from /proc/self/mountinfo (pseudo and network file
    /// systems skipped, one mount per device); see `modules::disk::mounts`.
    #[serde(default = "default_all_mounts", skip_serializing_if = "is_false")]
    pub all_mounts: bool,
    #[serde(default = "default_warn_percent")]
    pub warn_percent: f64,
    #[serde(default = "default_crit_percent")]
    pub crit_percent: f64,
    /// Going down a level needs usage below that level's threshold minus this.
    #[serde(default = "default_hysteresis_percent")]
    pub hysteresis_percent: f64,
}

fn default_disk_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_disk_paths() -> Vec<PathBuf> {
    vec![PathBuf::from("/")]
}
fn default_all_mounts() -> bool {
    false
}
// Keeps the fingerprint of configs written before `all_mounts` existed.
fn is_false(b: &bool) -> bool {
    !*b
}
fn default_warn_percent() -> f64 {
    85.0
}
fn default_crit_percent() -> f64 {
    95.0
}
fn default_hysteresis_percent() -> f64 {
    2.0
}

/// Hex sha256 of a value's canonical (serde_json) form.
fn sha256_json<T: Serialize>(value: &T) -> String {
    // Serializing plain data structs to JSON cannot fail (no maps with non-string keys).
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl AgentConfig {
    /// sha256 (hex) of the canonical form of the parsed config.
    pub fn fingerprint(&self) -> String {
        sha256_json(self)
    }

    /// Every semantic problem as `(key, reason)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = host_problems(&self.host);
        out.extend(label_problems(&self.labels));
        out.extend(outbox_problems(&self.outbox));
        out.extend(prefixed("nats", self.nats.problems()));
        if let Some(http) = &self.http {
            out.extend(prefixed("http", http.problems()));
        }
        let indexed: Vec<(usize, &ModuleConfig)> = self.modules.iter().enumerate().collect();
        out.extend(modules_problems(&indexed));
        out.extend(prefixed("policy", self.policy.problems()));
        out
    }

    /// Path of the sled database.
    pub fn sled_path(&self) -> PathBuf {
        self.data_dir.join("agent.sled")
    }
}

impl ModuleConfig {
    /// Instance name (`name`, else the type).
    pub fn name(&self) -> &str {
        let name = match self {
            ModuleConfig::Heartbeat(c) => c.name.as_deref(),
            ModuleConfig::Disk(c) => c.name.as_deref(),
            ModuleConfig::Health(c) => c.name.as_deref(),
            ModuleConfig::Backup(c) => c.name.as_deref(),
            ModuleConfig::Janitor(c) => c.name.as_deref(),
            ModuleConfig::Log(c) => c.name.as_deref(),
            ModuleConfig::Sentinel(c) => c.name.as_deref(),
            ModuleConfig::Service(c) => c.name.as_deref(),
        };
        name.unwrap_or(self.kind())
    }

    /// The `type`, also the module's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ModuleConfig::Heartbeat(_) => "heartbeat",
            ModuleConfig::Disk(_) => "disk",
            ModuleConfig::Health(_) => "health",
            ModuleConfig::Backup(_) => "backup",
            ModuleConfig::Janitor(_) => "janitor",
            ModuleConfig::Log(_) => "log",
            ModuleConfig::Sentinel(_) => "sentinel",
            ModuleConfig::Service(_) => "service",
        }
    }

    pub fn interval(&self) -> Duration {
        match self {
            ModuleConfig::Heartbeat(c) => c.interval,
            ModuleConfig::Disk(c) => c.interval,
            ModuleConfig::Health(c) => c.interval,
            ModuleConfig::Backup(c) => c.interval,
            ModuleConfig::Janitor(c) => c.interval,
            ModuleConfig::Log(c) => c.interval,
            ModuleConfig::Sentinel(c) => c.interval,
            ModuleConfig::Service(c) => c.interval,
        }
    }

    /// sha256 (hex) of this module's canonical config.
    pub fn fingerprint(&self) -> String {
        sha256_json(self)
    }

    /// Problems of this entry alone, keys relative to the entry (`interval`, `paths[0]`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval().is_zero() {
            out.push(("interval".to_owned(), "must be greater than 0".to_owned()));
        }
        if let ModuleConfig::Disk(c) = self {
            out.extend(c.problems());
        }
        if let ModuleConfig::Health(c) = self {
            out.extend(c.problems());
        }
        if let ModuleConfig::Backup(c) = self {
            out.extend(c.problems());
        }
        if let ModuleConfig::Janitor(c) = self {
            out.extend(c.problems());
        }
        if let ModuleConfig::Log(c) = self {
            out.extend(c.problems());
        }
        if let ModuleConfig::Sentinel(c) = self {
            out.extend(c.problems());
        }
        if let ModuleConfig::Service(c) = self {
            out.extend(c.problems());
        }
        out
    }
}

impl DiskConfig {
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, r: String| out.push((k.to_owned(), r));
        for (i, p) in self.paths.iter().enumerate() {
            if !p.is_absolute() {
                push(
                    &format!("paths[{i}]"),
                    format!("must be an absolute path: {p:?}"),
                );
            }
        }
        let pct_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 100.0;
        if !pct_ok(self.warn_percent) {
            push(
                "warn_percent",
                "must be a percentage in (0, 100]".to_owned(),
            );
        }
        if !pct_ok(self.crit_percent) {
            push(
                "crit_percent",
                "must be a percentage in (0, 100]".to_owned(),
            );
        }
        if pct_ok(self.warn_percent)
            && pct_ok(self.crit_percent)
            && self.warn_percent >= self.crit_percent
        {
            push(
                "warn_percent",
                format!(
                    "must be below crit_percent ({} >= {})",
                    self.warn_percent, self.crit_percent
                ),
            );
        }
        if !(self.hysteresis_percent.is_finite()
            && self.hysteresis_percent >= 0.0
            && self.hysteresis_percent < 100.0)
        {
            push(
                "hysteresis_percent",
                "must be a percentage in [0, 100)".to_owned(),
            );
        } else if pct_ok(self.warn_percent) && self.hysteresis_percent >= self.warn_percent {
            push(
                "hysteresis_percent",
                "must be below warn_percent (else the warn level could never clear)".to_owned(),
            );
        }
        out
    }
}

/// Label keys and values are subject-token-like (`[A-Za-z0-9_-]`, 1..=64), so `k=v` selectors
/// need no quoting.
pub(super) fn label_problems(
    labels: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in labels {
        if let Err(e) = validate_token(k) {
            out.push((
                format!("labels.{k}"),
                format!("key {k:?} is not a token: {e}"),
            ));
        }
        if let Err(e) = validate_token(v) {
            out.push((
                format!("labels.{k}"),
                format!("value {v:?} is not a token: {e}"),
            ));
        }
    }
    out
}

fn host_problems(host: &str) -> Vec<(String, String)> {
    match validate_token(host) {
        Ok(()) => Vec::new(),
        Err(e) => vec![(
            "host".to_owned(),
            format!("{host:?} is not a subject token: {e}"),
        )],
    }
}

fn outbox_problems(outbox: &OutboxConfig) -> Vec<(String, String)> {
    if outbox.max_events == 0 {
        vec![(
            "outbox.max_events".to_owned(),
            "must be at least 1".to_owned(),
        )]
    } else {
        Vec::new()
    }
}

/// Per-entry problems plus name checks (valid token, not reserved, unique). `modules` holds
/// `(index in the file, entry)` so a partially parsed list still reports the right keys.
fn modules_problems(modules: &[(usize, &ModuleConfig)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for &(i, m) in modules {
        out.extend(prefixed(&format!("modules[{i}]"), m.problems()));
        let name = m.name();
        let key = format!("modules[{i}].name");
        if let Err(e) = validate_token(name) {
            out.push((key, format!("{name:?} is not a subject token: {e}")));
        } else if name == AGENT_MODULE || name == opsfleet_proto::COORDINATOR_MODULE {
            out.push((
                key,
                format!("{name:?} is reserved (agents' and coordinators' own events)"),
            ));
        } else if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            out.push((
                key,
                format!(
                    "duplicate module name {name:?} (also modules[{first}]); set distinct `name`s"
                ),
            ));
        } else {
            seen.push((name, i));
        }
    }
    out
}

#[cfg(test)]
mod tests;
