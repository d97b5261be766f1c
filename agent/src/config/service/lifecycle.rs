//! The lifecycle keys of a `service` entry: how it is reloaded (`reload_signal` or
//! `reload_argv`), its health probes and readiness deadline, and where its version is read
//! (`version = { file = ... }` or `{ argv = [...] }`), with their defaults and checks.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::config::{HealthConfig, ProbeConfig};

/// Where the version of a service is read, at each (re)start: the first line of `file`, or
/// the first line of what `argv` prints (bounded by `timeout`). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSource {
    /// A file whose first line is the version (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// A command (no shell) whose first line of stdout is the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// `argv`: killed (its process group) when it runs longer.
    #[serde(default = "default_version_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `remediation = { restart_after_failed_checks = N, backoff = "30s", max_per_hour = 3 }`:
/// the agent restarts the service itself after N probe rounds in a row with a failed probe,
/// at most once per `backoff` and `max_per_hour` times an hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// Probe rounds in a row with a failed probe (of the same child) before a restart.
    pub restart_after_failed_checks: u32,
    /// At least this long between two automatic actions.
    #[serde(default = "default_remediation_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// At most this many automatic restarts in any hour; then the cap stops them (an event
    /// says so).
    #[serde(default = "default_max_per_hour")]
    pub max_per_hour: u32,
}

pub(super) fn default_remediation_backoff() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_max_per_hour() -> u32 {
    3
}
pub(super) fn default_version_timeout() -> Duration {
    Duration::from_secs(5)
}
pub(super) fn default_reload_signal() -> String {
    "HUP".to_owned()
}
pub(super) fn default_reload_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_health() -> Vec<ProbeConfig> {
    Vec::new()
}
pub(super) fn default_health_interval() -> Duration {
    Duration::from_secs(2)
}
pub(super) fn default_ready_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A signal name as `reload_signal` takes it (`HUP`, `SIGHUP`, `USR1`); `None` when unknown.
pub fn parse_signal(name: &str) -> Option<Signal> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().ok()
}

/// Problems of a command's argv at `key`.
fn argv_problems(key: &str, argv: &[String]) -> Vec<(String, String)> {
    match argv.first() {
        None => vec![(key.to_owned(), "at least the program is needed".to_owned())],
        Some(p) if p.is_empty() => vec![(
            format!("{key}[0]"),
            "the program must not be empty".to_owned(),
        )],
        Some(_) => Vec::new(),
    }
}

/// Every problem of the lifecycle keys, keys relative to the module entry.
pub(super) fn problems(cfg: &super::ServiceConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if parse_signal(&cfg.reload_signal).is_none() {
        out.push((
            "reload_signal".to_owned(),
            format!(
                "{:?} is not a signal name (e.g. HUP, USR1)",
                cfg.reload_signal
            ),
        ));
    }
    if let Some(argv) = &cfg.reload_argv {
        out.extend(argv_problems("reload_argv", argv));
    }
    if cfg.reload_timeout.is_zero() {
        out.push((
            "reload_timeout".to_owned(),
            "must be greater than 0".to_owned(),
        ));
    }
    if cfg.ready_timeout.is_zero() {
        out.push((
            "ready_timeout".to_owned(),
            "must be greater than 0".to_owned(),
        ));
    }
    if cfg.health_interval.is_zero() {
        out.push((
            "health_interval".to_owned(),
            "must be greater than 0".to_owned(),
        ));
    }
    // The probes are checked as a health module's (`probes[i].k` -> `health[i].k`).
    let as_module = HealthConfig {
        name: None,
        interval: cfg.health_interval,
        probes: cfg.health.clone(),
    };
    out.extend(as_module.problems().into_iter().map(|(k, r)| {
        let k = k
            .strip_prefix("probes")
            .map_or(k.clone(), |rest| format!("health{rest}"));
        let r = r.replace("the module interval", "health_interval");
        (k, r)
    }));
    // A service's probes decide its readiness only; the slow and certificate conditions are
    // the health module's (they have their own alert rules there).
    for (i, p) in cfg.health.iter().enumerate() {
        for (key, set) in [
            ("latency_p95", p.latency_p95.is_some()),
            ("latency_window", p.latency_window.is_some()),
            ("warn_days", p.warn_days.is_some()),
            ("crit_days", p.crit_days.is_some()),
        ] {
            if set {
                out.push((
                    format!("health[{i}].{key}"),
                    "only in a health module's probes (a service's probes judge readiness)"
                        .to_owned(),
                ));
            }
        }
    }
    if let Some(r) = &cfg.remediation {
        if r.restart_after_failed_checks == 0 {
            out.push((
                "remediation.restart_after_failed_checks".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        if r.backoff.is_zero() {
            out.push((
                "remediation.backoff".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
        if r.max_per_hour == 0 {
            out.push((
                "remediation.max_per_hour".to_owned(),
                "must be at least 1 (remove `remediation` for none)".to_owned(),
            ));
        }
        if cfg.health.is_empty() {
            out.push((
                "remediation".to_owned(),
                "needs health probes ([[modules.health]]) to judge the service".to_owned(),
            ));
        }
    }
    if let Some(v) = &cfg.version {
        match (&v.file, &v.argv) {
            (Some(_), Some(_)) | (None, None) => out.push((
                "version".to_owned(),
                "declare exactly one of file or argv".to_owned(),
            )),
            (Some(f), None) if !f.is_absolute() => out.push((
                "version.file".to_owned(),
                "must be an absolute path".to_owned(),
            )),
            (None, Some(argv)) => out.extend(argv_problems("version.argv", argv)),
            _ => {}
        }
        if v.timeout.is_zero() {
            out.push((
                "version.timeout".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
    }
    out
}
