//! `type = "service"` module config: one application, its manager (`process`: argv, workdir,
//! env, log files, restart backoff; `systemd` and `compose`: the sections in `managed`), stop
//! grace, what may be done to it remotely (`remote`), and its semantic checks. Sub-sections of a
//! service live in files of their own beside this one.

mod managed;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::default_name;
use crate::config::ProbeConfig;
use lifecycle::{
    default_health, default_health_interval, default_ready_timeout, default_reload_signal,
    default_reload_timeout,
};
pub use lifecycle::{parse_signal, RemediationConfig, VersionSource};
pub use managed::{ComposeSection, SystemdSection, COMPOSE_FILES};

pub mod lifecycle;

mod appconfig;
mod control;
mod deploy;
mod role;
mod traffic;

pub use appconfig::{AppConfigFiles, ConfigApply};
pub use control::{ControlAction, ControlConfig, ControlEndpoint};
pub use deploy::{version_problem, DeployActivate, DeployConfig};
pub use role::{GroupRole, RoleApply, RoleDelivery, RoleSection};
pub use traffic::TrafficSection;

/// How the service is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceManager {
    /// The agent starts the child itself and restarts it when it exits.
    Process,
    /// A systemd unit the agent drives and watches through `systemctl` (`[modules.systemd]`).
    Systemd,
    /// One service of a compose project, driven and watched through compose and `docker
    /// inspect` (`[modules.compose]`).
    Compose,
}

impl ServiceManager {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceManager::Process => "process",
            ServiceManager::Systemd => "systemd",
            ServiceManager::Compose => "compose",
        }
    }
}

/// `type = "service"`: an application the agent supervises (`process`) or drives and watches
/// (`systemd`, `compose`); its state (running / failed / stopped, pid or instance, restarts,
/// version) is published on every change.
///
/// ```toml
/// [[modules]]
/// type = "service"
/// name = "app"
/// argv = ["/usr/local/bin/app", "--port", "8080"]
/// stop_grace = "10s"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Instance name, also the service's name in events; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How often state changes are handed to the outbox (`process` supervision itself is
    /// continuous); `systemd`, `compose`: how often the state is read.
    #[serde(default = "default_service_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_manager")]
    pub manager: ServiceManager,
    /// `process`: program and arguments (no shell; use `["sh", "-c", "..."]` for one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// Working directory of the child (absolute); the agent's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// Extra environment variables (added to the agent's environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// File the child's stdout is appended to (absolute); discarded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<PathBuf>,
    /// File the child's stderr is appended to (absolute); discarded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<PathBuf>,
    /// Size past which the stdout / stderr file is rotated (copied to `<file>.1`, truncated).
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: u64,
    /// Rotated copies kept per file (`<file>.1` newest .. `<file>.<log_keep>`); 0 = none.
    #[serde(default = "default_log_keep")]
    pub log_keep: u32,
    /// The user the child runs as (name or numeric uid), with that user's primary group and
    /// no supplementary groups; the agent's own when absent. Needs the agent to run as root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// On stop: SIGTERM, then SIGKILL when the child still runs after this long.
    #[serde(default = "default_stop_grace", with = "humantime_serde")]
    pub stop_grace: Duration,
    /// Wait before the first restart after an exit; doubles on each exit in a row.
    #[serde(default = "default_backoff_min", with = "humantime_serde")]
    pub restart_backoff_min: Duration,
    /// Cap of the restart wait. A child that ran at least this long restarts after
    /// `restart_backoff_min` again.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// What commands may do to this service: `start`, `stop`, `restart`, `reload`, `app`
    /// (forward a declared control action), `config` (apply / roll back a declared config
    /// file), `deploy` (put a version in place and run it, `[modules.deploy]`). Empty (the default): nothing; the service is only watched. This list is read
    /// from the host's own file only: a remote config can never change a service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<RemoteOp>,
    /// `[modules.control]`: the app's own control endpoint and the actions it accepts
    /// (`opsctl app`); none by default. Forwarding also needs `app` in `remote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlConfig>,
    /// `systemd`: the unit (boxed: most services have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<Box<SystemdSection>>,
    /// `compose`: the project and service (boxed: most services have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose: Option<Box<ComposeSection>>,
    /// `[modules.config]`: the app's own config files, watched for changes and changed by
    /// `opsctl service config apply|rollback` (with `config` in `remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AppConfigFiles>,
    /// `[modules.deploy]`: the releases `service_deploy` puts in place (with `deploy` in
    /// `remote`); without an explicit `version` source, the running version is the release
    /// `current` points to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployConfig>,
    /// `reload`: the signal sent to the child's process group (`HUP`, `USR1`, ...), unless
    /// `reload_argv` is set.
    #[serde(default = "default_reload_signal")]
    pub reload_signal: String,
    /// `reload`: a command the agent runs instead of signalling (exit 0 = reloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_argv: Option<Vec<String>>,
    /// `reload_argv`: killed (its process group) and the reload failed after this long.
    #[serde(default = "default_reload_timeout", with = "humantime_serde")]
    pub reload_timeout: Duration,
    /// `[[modules.health]]`: the service's own probes (the health module's probe keys). While
    /// they are not all ready, the service's health is not `ready`, and a start, restart or
    /// reload command is not done.
    #[serde(default = "default_health", skip_serializing_if = "Vec::is_empty")]
    pub health: Vec<ProbeConfig>,
    /// How often the service's probes run while it runs.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub health_interval: Duration,
    /// A start, restart or reload command fails unless the service is running and (with
    /// probes) ready within this long.
    #[serde(default = "default_ready_timeout", with = "humantime_serde")]
    pub ready_timeout: Duration,
    /// Where the running version is read at each (re)start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionSource>,
    /// Automatic restarts after failed health checks (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<RemediationConfig>,
    /// `[modules.role]`: a member of an active/standby group (`service_role`, with `role` in
    /// `remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleSection>,
    /// `[modules.traffic]`: a blue/green slot (`traffic_switch`, with `switch` in `remote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSection>,
}

/// One kind of remote action on a service (`remote = ["restart", "reload"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteOp {
    Start,
    Stop,
    Restart,
    Reload,
    App,
    Config,
    /// Put a version in place and run it (`service_deploy`, rollouts).
    Deploy,
    /// Be told its active/standby role (`service_role`).
    Role,
    /// Take the traffic of its slot group (`traffic_switch`, blue/green).
    Switch,
}

impl RemoteOp {
    pub const ALL: [RemoteOp; 9] = [
        RemoteOp::Start,
        RemoteOp::Stop,
        RemoteOp::Restart,
        RemoteOp::Reload,
        RemoteOp::App,
        RemoteOp::Config,
        RemoteOp::Deploy,
        RemoteOp::Role,
        RemoteOp::Switch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RemoteOp::Start => "start",
            RemoteOp::Stop => "stop",
            RemoteOp::Restart => "restart",
            RemoteOp::Reload => "reload",
            RemoteOp::App => "app",
            RemoteOp::Config => "config",
            RemoteOp::Deploy => "deploy",
            RemoteOp::Role => "role",
            RemoteOp::Switch => "switch",
        }
    }
}

fn default_service_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_manager() -> ServiceManager {
    ServiceManager::Process
}
fn default_log_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_log_keep() -> u32 {
    5
}
/// Smallest accepted `log_max_bytes`: rotating more often than this would churn.
const MIN_LOG_MAX_BYTES: u64 = 4096;
fn default_stop_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_backoff_min() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(60)
}

impl ServiceConfig {
    /// A `process` service running `argv`, every other field at its default (as a file entry
    /// with only `type` and `argv` would give).
    pub fn process(argv: Vec<String>) -> Self {
        ServiceConfig {
            name: default_name(),
            interval: default_service_interval(),
            manager: default_manager(),
            argv,
            workdir: None,
            env: BTreeMap::new(),
            stdout: None,
            stderr: None,
            log_max_bytes: default_log_max_bytes(),
            log_keep: default_log_keep(),
            user: None,
            stop_grace: default_stop_grace(),
            restart_backoff_min: default_backoff_min(),
            restart_backoff_max: default_backoff_max(),
            remote: Vec::new(),
            control: None,
            reload_signal: default_reload_signal(),
            reload_argv: None,
            reload_timeout: default_reload_timeout(),
            health: default_health(),
            health_interval: default_health_interval(),
            ready_timeout: default_ready_timeout(),
            version: None,
            remediation: None,
            config: None,
            deploy: None,
            systemd: None,
            compose: None,
            role: None,
            traffic: None,
        }
    }

    /// A `systemd` service driving `unit`, every other field at its default.
    pub fn systemd(unit: &str) -> Self {
        ServiceConfig {
            manager: ServiceManager::Systemd,
            systemd: Some(Box::new(SystemdSection::unit(unit))),
            ..ServiceConfig::process(Vec::new())
        }
    }

    /// A `compose` service driving `compose`, every other field at its default.
    pub fn compose(compose: ComposeSection) -> Self {
        ServiceConfig {
            manager: ServiceManager::Compose,
            compose: Some(Box::new(compose)),
            ..ServiceConfig::process(Vec::new())
        }
    }

    /// Every problem as `(key, reason)`, keys relative to the module entry.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = managed::manager_problems(self);
        if self.manager == ServiceManager::Process {
            out.extend(self.process_problems());
        }
        out.extend(self.section_problems());
        if self.stop_grace.is_zero() {
            out.push(("stop_grace".to_owned(), "must be greater than 0".to_owned()));
        }
        out
    }

    /// The `process` manager's keys.
    fn process_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, r: &str| out.push((k.to_owned(), r.to_owned()));
        match self.argv.first() {
            None => push("argv", "at least the program is needed"),
            Some(p) if p.is_empty() => push("argv[0]", "the program must not be empty"),
            Some(_) => {}
        }
        if self.workdir.as_ref().is_some_and(|w| !w.is_absolute()) {
            push("workdir", "must be an absolute path");
        }
        if self
            .user
            .as_ref()
            .is_some_and(|u| u.trim().is_empty() || u.contains(['\0', ':']))
        {
            push("user", "a user name or numeric uid, without ':' or NUL");
        }
        for (key, path) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if path.as_ref().is_some_and(|p| !p.is_absolute()) {
                push(key, "must be an absolute path");
            }
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                out.push((
                    format!("env.{k}"),
                    "a variable name is non-empty, without '=' or NUL".to_owned(),
                ));
            }
        }
        if self.log_max_bytes < MIN_LOG_MAX_BYTES {
            out.push((
                "log_max_bytes".to_owned(),
                format!("must be at least {MIN_LOG_MAX_BYTES}"),
            ));
        }
        if self.restart_backoff_min.is_zero() {
            out.push((
                "restart_backoff_min".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
        if self.restart_backoff_max < self.restart_backoff_min {
            out.push((
                "restart_backoff_max".to_owned(),
                "must be at least restart_backoff_min".to_owned(),
            ));
        }
        out.extend(lifecycle::problems(self));
        out
    }

    /// The keys every manager shares: the control endpoint and the config files.
    fn section_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(c) = &self.control {
            out.extend(c.problems());
        }
        if self.remote.contains(&RemoteOp::Config) && self.config.is_none() {
            out.push((
                "remote".to_owned(),
                "\"config\" needs the files declared in [modules.config]".to_owned(),
            ));
        }
        if self.remote.contains(&RemoteOp::Deploy) && self.deploy.is_none() {
            out.push((
                "remote".to_owned(),
                "\"deploy\" needs the releases declared in [modules.deploy]".to_owned(),
            ));
        }
        if let Some(d) = &self.deploy {
            out.extend(
                d.problems(self.manager)
                    .into_iter()
                    .map(|(k, r)| (format!("deploy.{k}"), r)),
            );
        }
        if let Some(c) = &self.config {
            out.extend(
                c.problems()
                    .into_iter()
                    .map(|(k, r)| (format!("config.{k}"), r)),
            );
        }
        out.extend(self.group_problems());
        out
    }

    /// `[modules.role]`, `[modules.traffic]`, and the `remote` entries that need them.
    fn group_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (op, section, present) in [
            (RemoteOp::Role, "[modules.role]", self.role.is_some()),
            (
                RemoteOp::Switch,
                "[modules.traffic]",
                self.traffic.is_some(),
            ),
        ] {
            if self.remote.contains(&op) && !present {
                out.push((
                    "remote".to_owned(),
                    format!("{:?} needs {section}", op.as_str()),
                ));
            }
        }
        if let Some(r) = &self.role {
            out.extend(
                r.problems()
                    .into_iter()
                    .map(|(k, v)| (format!("role.{k}"), v)),
            );
        }
        if let Some(t) = &self.traffic {
            out.extend(
                t.problems()
                    .into_iter()
                    .map(|(k, v)| (format!("traffic.{k}"), v)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    #[test]
    fn every_problem_of_a_service_is_listed() {
        let toml = r#"
host = "web-01"
[[modules]]
type = "service"
argv = []
workdir = "rel/dir"
stdout = "out.log"
stderr = "err.log"
stop_grace = "0s"
log_max_bytes = 10
user = ""
restart_backoff_min = "5s"
restart_backoff_max = "1s"
env = { "A=B" = "x" }
reload_signal = "NOPE"
reload_argv = []
ready_timeout = "0s"
version = { file = "rel/VERSION", argv = ["x"] }
remediation = { restart_after_failed_checks = 0, max_per_hour = 0 }
[[modules.health]]
name = "web"
type = "http"
"#;
        let problems = parse_str(toml).expect_err("invalid service");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "modules[0].argv",
            "modules[0].workdir",
            "modules[0].stdout",
            "modules[0].stderr",
            "modules[0].env.A=B",
            "modules[0].stop_grace",
            "modules[0].log_max_bytes",
            "modules[0].user",
            "modules[0].restart_backoff_max",
            "modules[0].reload_signal",
            "modules[0].reload_argv",
            "modules[0].ready_timeout",
            "modules[0].version",
            "modules[0].health[0].url",
            "modules[0].remediation.restart_after_failed_checks",
            "modules[0].remediation.max_per_hour",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn a_minimal_service_loads_with_defaults() {
        let toml = "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"app\"\nargv = [\"sh\", \"-c\", \"sleep 30\"]\n";
        let cfg = parse_str(toml).expect("valid");
        let crate::config::ModuleConfig::Service(s) = &cfg.modules[0] else {
            panic!("not a service: {:?}", cfg.modules[0]);
        };
        assert_eq!(s.manager, super::ServiceManager::Process);
        assert_eq!(s.stop_grace, std::time::Duration::from_secs(10));
        assert_eq!(cfg.modules[0].name(), "app");
    }

    #[test]
    fn an_unknown_manager_is_refused() {
        let toml = "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nmanager = \"kubernetes\"\nargv = [\"x\"]\n";
        let problems = parse_str(toml).expect_err("no such manager");
        assert!(
            problems.iter().any(|p| p.key.ends_with("manager")),
            "{problems:?}"
        );
    }
}
