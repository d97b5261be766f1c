//! `[alerts]` in the coordinator config: evaluation cadence, dead-man factors and per-rule
//! overrides (`[alerts.rules.<rule>]`), resolved into the `Rules` the state machine takes.

use std::collections::BTreeMap;
use std::time::Duration;

use opsfleet_proto::api::Severity;
use serde::{Deserialize, Serialize};

use super::rules::{Rule, RuleKind, Rules};

/// The rules of the default `[alerts]` section (what a config without one gets).
impl Default for Rules {
    fn default() -> Self {
        AlertsConfig::default().rules()
    }
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate and notify at all (while active).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How often the active coordinator evaluates the rules.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A host is lost after this many heartbeat intervals without any event from it.
    #[serde(default = "default_missed")]
    pub missed_heartbeats: u32,
    /// A module is silent after this many of its declared intervals without an event.
    #[serde(default = "default_missed")]
    pub missed_reports: u32,
    /// Module kinds that report on every run and so can be silent (log, health, backup
    /// and janitor report on change or on schedule and are left out by default).
    #[serde(default = "default_silent_kinds")]
    pub silent_kinds: Vec<String>,
    /// Dead-man floor: no host or module counts as silent before this much silence, however
    /// short its interval (a 20 ms heartbeat is not lost after 40 ms of a busy network).
    #[serde(default = "default_min_silence", with = "humantime_serde")]
    pub min_silence: Duration,
    /// Transitions older than this are not notified any more (a coordinator that becomes
    /// active after a long outage does not replay old news).
    #[serde(default = "default_deliver_max_age", with = "humantime_serde")]
    pub deliver_max_age: Duration,
    /// After this coordinator becomes active (start, failover, restart), no `host_lost` or
    /// `module_silent` fires for this long, or 3 of a host's heartbeat intervals if longer:
    /// hosts that simply have not reported to it yet are not lost.
    #[serde(default = "default_startup_grace", with = "humantime_serde")]
    pub startup_grace: Duration,
    /// Per-rule overrides, keyed by rule name.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleConfig>,
}

/// `[alerts.rules.<rule>]`: every key optional; unset keys keep the rule's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub enabled: Option<bool>,
    /// How long the condition must hold before pending becomes firing.
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub for_: Option<Duration>,
    /// How long the condition must stay clear before firing becomes resolved.
    #[serde(default, with = "humantime_serde")]
    pub resolve_after: Option<Duration>,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    /// Flap suppression: with `flap_max` firings inside `flap_window`, the alert resolves only
    /// after the condition stayed clear for the whole window.
    #[serde(default, with = "humantime_serde")]
    pub flap_window: Option<Duration>,
    pub flap_max: Option<u32>,
    /// `log_errors`: matches within `window` that make the condition true;
    /// `service_restart_loop`: restarts within `window` (default 3).
    pub threshold: Option<u64>,
    /// `log_errors`: the rate window; `service_restart_loop`: the window restarts are counted
    /// in (default 1h); `service_remediation_capped`: how long a capped remediation stays
    /// raised (default 1h); `restore_test_missing`: how late a job's restore test may be
    /// beyond its `verify_restore` period (default 12h).
    #[serde(default, with = "humantime_serde")]
    pub window: Option<Duration>,
    /// `backup_stale`: the newest successful backup may be at most this old;
    /// `backup_sync_stale`: the newest verified remote copy (default 26 h).
    #[serde(default, with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// `events_stream_full`: fire when `OPS_EVENTS` holds this percent of its `max_bytes`.
    pub percent: Option<u64>,
}

fn default_enabled() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_missed() -> u32 {
    2
}
fn default_silent_kinds() -> Vec<String> {
    vec!["disk".to_owned(), "sentinel".to_owned()]
}
fn default_min_silence() -> Duration {
    Duration::from_secs(10)
}
fn default_startup_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_deliver_max_age() -> Duration {
    Duration::from_secs(3600)
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: default_enabled(),
            interval: default_interval(),
            missed_heartbeats: default_missed(),
            missed_reports: default_missed(),
            silent_kinds: default_silent_kinds(),
            min_silence: default_min_silence(),
            deliver_max_age: default_deliver_max_age(),
            startup_grace: default_startup_grace(),
            rules: BTreeMap::new(),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl AlertsConfig {
    /// Every problem, as (key below `alerts.`, reason).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(60) {
            out.push(("interval".into(), "must be between 100ms and 60s".into()));
        }
        if self.missed_heartbeats == 0 {
            out.push(("missed_heartbeats".into(), "must be at least 1".into()));
        }
        if self.missed_reports == 0 {
            out.push(("missed_reports".into(), "must be at least 1".into()));
        }
        for (name, r) in &self.rules {
            let Some(kind) = RuleKind::parse(name) else {
                let known: Vec<&str> = RuleKind::ALL.iter().map(|k| k.name()).collect();
                out.push((
                    format!("rules.{name}"),
                    format!("unknown rule; known: {}", known.join(", ")),
                ));
                continue;
            };
            if let Some(s) = &r.severity {
                if Severity::named(s).is_none() {
                    out.push((
                        format!("rules.{name}.severity"),
                        format!("must be one of {}", Severity::names()),
                    ));
                }
            }
            if r.flap_max == Some(0) {
                out.push((
                    format!("rules.{name}.flap_max"),
                    "must be at least 1".into(),
                ));
            }
            if r.threshold == Some(0) {
                out.push((
                    format!("rules.{name}.threshold"),
                    "must be at least 1".into(),
                ));
            }
            let only = |key: &str, set: bool, applies: &[RuleKind]| {
                (set && !applies.contains(&kind)).then(|| {
                    let names: Vec<&str> = applies.iter().map(|k| k.name()).collect();
                    (
                        format!("rules.{name}.{key}"),
                        format!("only applies to rule {}", names.join(", ")),
                    )
                })
            };
            out.extend(only(
                "threshold",
                r.threshold.is_some(),
                &[RuleKind::LogErrors, RuleKind::ServiceRestartLoop],
            ));
            out.extend(only(
                "window",
                r.window.is_some(),
                &[
                    RuleKind::LogErrors,
                    RuleKind::ServiceRestartLoop,
                    RuleKind::ServiceRemediationCapped,
                    RuleKind::RolloutFailed,
                    RuleKind::RestoreTestMissing,
                ],
            ));
            out.extend(only(
                "max_age",
                r.max_age.is_some(),
                &[RuleKind::BackupStale, RuleKind::BackupSyncStale],
            ));
            out.extend(only(
                "percent",
                r.percent.is_some(),
                &[RuleKind::EventsStreamFull],
            ));
            if r.percent.is_some_and(|p| !(1..=100).contains(&p)) {
                out.push((
                    format!("rules.{name}.percent"),
                    "must be between 1 and 100".into(),
                ));
            }
        }
        out
    }

    /// The rules with their defaults and overrides applied.
    pub fn rules(&self) -> Rules {
        let rules = RuleKind::ALL
            .iter()
            .map(|kind| {
                let mut rule = Rule::default_for(*kind);
                if let Some(o) = self.rules.get(kind.name()) {
                    rule.enabled = o.enabled.unwrap_or(rule.enabled);
                    if let Some(d) = o.for_ {
                        rule.timing.for_ms = ms(d);
                    }
                    if let Some(d) = o.resolve_after {
                        rule.timing.resolve_after_ms = ms(d);
                    }
                    if let Some(d) = o.flap_window {
                        rule.timing.flap_window_ms = ms(d);
                    }
                    if let Some(n) = o.flap_max {
                        rule.timing.flap_max = n;
                    }
                    if let Some(s) = o.severity.as_deref().and_then(Severity::named) {
                        rule.severity = s;
                    }
                    if let Some(n) = o.threshold {
                        rule.threshold = n;
                    }
                    if let Some(d) = o.window {
                        rule.window_ms = ms(d);
                    }
                    if let Some(d) = o.max_age {
                        rule.max_age_ms = ms(d);
                    }
                    if let Some(p) = o.percent {
                        rule.percent = p;
                    }
                }
                rule
            })
            .collect();
        Rules {
            rules,
            missed_heartbeats: i64::from(self.missed_heartbeats),
            missed_reports: i64::from(self.missed_reports),
            silent_kinds: self.silent_kinds.clone(),
            min_silence_ms: ms(self.min_silence),
            startup_grace_ms: ms(self.startup_grace),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_problems_name_their_key() {
        let cfg: AlertsConfig = toml::from_str(
            r#"
interval = "500ms"
[rules.disk_crit]
for = "3s"
severity = "info"
[rules.log_errors]
threshold = 2
window = "20s"
"#,
        )
        .unwrap();
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
        let rules = cfg.rules();
        let crit = rules.get(RuleKind::DiskCrit).unwrap();
        assert_eq!((crit.timing.for_ms, crit.severity.as_str()), (3000, "info"));
        let log = rules.get(RuleKind::LogErrors).unwrap();
        assert_eq!((log.threshold, log.window_ms), (2, 20_000));

        let bad: AlertsConfig = toml::from_str(
            r#"
interval = "0s"
[rules.disk_full]
[rules.disk_warn]
severity = "loud"
threshold = 3
flap_max = 0
"#,
        )
        .unwrap();
        let keys: Vec<String> = bad.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            [
                "interval",
                "rules.disk_full",
                "rules.disk_warn.severity",
                "rules.disk_warn.flap_max",
                "rules.disk_warn.threshold"
            ]
        );
        assert!(toml::from_str::<AlertsConfig>("[rules.disk_warn]\nfro = \"1s\"\n").is_err());
    }

    #[test]
    fn the_coordinator_config_reports_alerts_problems_with_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("coordinator.toml");
        let text = "name = \"blue\"\ndata_dir = \"/x\"\n[alerts]\nmissed_heartbeats = 0\n\
                    [alerts.rules.disk_crit]\nfor = \"2s\"\n";
        std::fs::write(&file, text).unwrap();
        let err = crate::config::CoordinatorConfig::load(&file).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["alerts.missed_heartbeats"], "{}", err.report());
        assert_eq!(err.problems[0].line, Some(4));

        std::fs::write(&file, text.replace("= 0", "= 3")).unwrap();
        let cfg = crate::config::CoordinatorConfig::load(&file).unwrap();
        assert_eq!(cfg.alerts.missed_heartbeats, 3);
        let crit = cfg.alerts.rules();
        assert_eq!(
            crit.get(RuleKind::DiskCrit).map(|r| r.timing.for_ms),
            Some(2000)
        );
    }
}
