//! The alert rules: their kinds, timings and settings, alert ids, and the fleet-wide conditions
//! (stream usage, grace); what each rule observes on one host is in `host_rules`.

use crate::projection::HostState;
use opsfleet_proto::api::Severity;

/// The closed set of rules.
/// Timing of one rule, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The condition must hold this long before pending becomes firing (0: fire at once).
    pub for_ms: i64,
    /// A firing alert resolves after its condition stayed clear this long.
    pub resolve_after_ms: i64,
    /// With `flap_max` firings inside this window, resolving waits for the whole window.
    pub flap_window_ms: i64,
    pub flap_max: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKind {
    HostLost,
    ModuleSilent,
    DiskWarn,
    DiskCrit,
    LogErrors,
    BackupFailed,
    BackupStale,
    BackupSyncFailed,
    BackupSyncStale,
    BackupDiscrepancy,
    RestoreTestFailed,
    RestoreTestMissing,
    HealthFailed,
    HealthSlow,
    CertWarn,
    CertCrit,
    SentinelStale,
    EventsStreamFull,
    ServiceDown,
    ServiceRestartLoop,
    ServiceRemediationCapped,
    ConfigDrift,
    RolloutFailed,
    DrillOverdue,
    DrillFailed,
}

impl RuleKind {
    pub const ALL: [RuleKind; 25] = [
        RuleKind::HostLost,
        RuleKind::ModuleSilent,
        RuleKind::DiskWarn,
        RuleKind::DiskCrit,
        RuleKind::LogErrors,
        RuleKind::BackupFailed,
        RuleKind::BackupStale,
        RuleKind::BackupSyncFailed,
        RuleKind::BackupSyncStale,
        RuleKind::BackupDiscrepancy,
        RuleKind::RestoreTestFailed,
        RuleKind::RestoreTestMissing,
        RuleKind::HealthFailed,
        RuleKind::HealthSlow,
        RuleKind::CertWarn,
        RuleKind::CertCrit,
        RuleKind::SentinelStale,
        RuleKind::EventsStreamFull,
        RuleKind::ServiceDown,
        RuleKind::ServiceRestartLoop,
        RuleKind::ServiceRemediationCapped,
        RuleKind::ConfigDrift,
        RuleKind::RolloutFailed,
        RuleKind::DrillOverdue,
        RuleKind::DrillFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RuleKind::HostLost => "host_lost",
            RuleKind::ModuleSilent => "module_silent",
            RuleKind::DiskWarn => "disk_warn",
            RuleKind::DiskCrit => "disk_crit",
            RuleKind::LogErrors => "log_errors",
            RuleKind::BackupFailed => "backup_failed",
            RuleKind::BackupStale => "backup_stale",
            RuleKind::BackupSyncFailed => "backup_sync_failed",
            RuleKind::BackupSyncStale => "backup_sync_stale",
            RuleKind::BackupDiscrepancy => "backup_discrepancy",
            RuleKind::RestoreTestFailed => "restore_test_failed",
            RuleKind::RestoreTestMissing => "restore_test_missing",
            RuleKind::HealthFailed => "health_failed",
            RuleKind::HealthSlow => "health_slow",
            RuleKind::CertWarn => "cert_warn",
            RuleKind::CertCrit => "cert_crit",
            RuleKind::SentinelStale => "sentinel_stale",
            RuleKind::EventsStreamFull => "events_stream_full",
            RuleKind::ServiceDown => "service_down",
            RuleKind::ServiceRestartLoop => "service_restart_loop",
            RuleKind::ServiceRemediationCapped => "service_remediation_capped",
            RuleKind::ConfigDrift => "config_drift",
            RuleKind::RolloutFailed => "rollout_failed",
            RuleKind::DrillOverdue => "drill_overdue",
            RuleKind::DrillFailed => "drill_failed",
        }
    }

    pub fn parse(name: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Dead-man rules: they judge silence, which a coordinator that just became active
    /// cannot judge yet (`startup_grace`).
    pub fn is_liveness(self) -> bool {
        matches!(self, RuleKind::HostLost | RuleKind::ModuleSilent)
    }

    /// Whether a firing alert's detail is refreshed when its value changes (disk 91% → 95%):
    /// rules whose value is a measurement, not an age that changes every tick.
    pub fn refreshes(self) -> bool {
        matches!(
            self,
            RuleKind::DiskWarn
                | RuleKind::DiskCrit
                | RuleKind::LogErrors
                | RuleKind::BackupFailed
                | RuleKind::BackupSyncFailed
                | RuleKind::BackupDiscrepancy
                | RuleKind::RestoreTestFailed
                | RuleKind::HealthFailed
                | RuleKind::EventsStreamFull
                | RuleKind::ServiceDown
                | RuleKind::ServiceRestartLoop
                | RuleKind::ServiceRemediationCapped
        )
    }
}

/// One rule with its settings resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: RuleKind,
    pub enabled: bool,
    pub severity: Severity,
    pub timing: Timing,
    /// `log_errors`: matches within `window_ms`; `service_restart_loop`: restarts within it;
    /// `service_remediation_capped`: how long a capped remediation stays raised;
    /// `restore_test_missing`: how late a restore test may be beyond its period.
    pub threshold: u64,
    pub window_ms: i64,
    /// `backup_stale`: age of the newest success; `backup_sync_stale`: of the newest copy.
    pub max_age_ms: i64,
    /// `events_stream_full`: percent of the stream's `max_bytes` at which it fires.
    pub percent: u64,
}

const MINUTE: i64 = 60_000;

impl Rule {
    /// The built-in defaults of a rule.
    pub fn default_for(kind: RuleKind) -> Rule {
        let (severity, for_ms, resolve_after_ms) = match kind {
            // Dead-man rules already wait (N intervals of silence) before they hold.
            RuleKind::HostLost => (Severity::Critical, 0, 0),
            RuleKind::ModuleSilent => (Severity::Warning, 0, 0),
            RuleKind::DiskWarn => (Severity::Warning, 5 * MINUTE, MINUTE),
            RuleKind::DiskCrit => (Severity::Critical, MINUTE, MINUTE),
            RuleKind::LogErrors => (Severity::Warning, 0, 0),
            RuleKind::BackupFailed => (Severity::Critical, 0, 0),
            RuleKind::BackupStale => (Severity::Warning, 0, 0),
            // A copy off the host failed: the archive is still on the host, not yet lost.
            RuleKind::BackupSyncFailed => (Severity::Warning, 0, 0),
            RuleKind::BackupSyncStale => (Severity::Warning, 0, 0),
            RuleKind::BackupDiscrepancy => (Severity::Warning, 0, 0),
            // The archives may not restore: the backup is not known to be usable.
            RuleKind::RestoreTestFailed => (Severity::Critical, 0, 0),
            RuleKind::RestoreTestMissing => (Severity::Warning, 0, 0),
            RuleKind::HealthFailed => (Severity::Critical, MINUTE, MINUTE),
            // The p95 window already smooths; a minute more before it pages.
            RuleKind::HealthSlow => (Severity::Warning, MINUTE, MINUTE),
            // A date: no flapping to wait out.
            RuleKind::CertWarn => (Severity::Warning, 0, 0),
            RuleKind::CertCrit => (Severity::Critical, 0, 0),
            RuleKind::SentinelStale => (Severity::Warning, MINUTE, MINUTE),
            RuleKind::EventsStreamFull => (Severity::Warning, 0, MINUTE),
            // Down for a minute: a crash loop's short failed spells are the restart loop's.
            RuleKind::ServiceDown => (Severity::Critical, MINUTE, MINUTE),
            RuleKind::ServiceRestartLoop => (Severity::Warning, 0, 0),
            RuleKind::ServiceRemediationCapped => (Severity::Warning, 0, 0),
            // Holds until opsfleet writes the file again (apply / rollback).
            RuleKind::ConfigDrift => (Severity::Warning, 0, 0),
            // Raised for `window` after a rollout ended rolled back (or left hosts behind).
            RuleKind::RolloutFailed => (Severity::Critical, 0, 0),
            // A scheduled drill (`[[drills]]`) not passed in time, or its last run failed.
            RuleKind::DrillOverdue => (Severity::Warning, 0, 0),
            RuleKind::DrillFailed => (Severity::Warning, 0, 0),
        };
        // `log_errors`: 1 match within 5 min; `service_restart_loop`: 3 restarts within 1 h
        // ("uptime resets more than once a day" is already a loop worth a look); a capped
        // remediation stays raised for 1 h after the last one.
        let (threshold, window_ms) = match kind {
            RuleKind::ServiceRestartLoop => (3, 60 * MINUTE),
            RuleKind::ServiceRemediationCapped | RuleKind::RolloutFailed => (1, 60 * MINUTE),
            // The time a restore test may run late beyond its period.
            RuleKind::RestoreTestMissing => (1, 12 * 60 * MINUTE),
            _ => (1, 5 * MINUTE),
        };
        Rule {
            kind,
            enabled: true,
            severity,
            timing: Timing {
                for_ms,
                resolve_after_ms,
                flap_window_ms: 30 * MINUTE,
                flap_max: 4,
            },
            threshold,
            window_ms,
            max_age_ms: 26 * 60 * MINUTE,
            percent: 80,
        }
    }
}

/// Every rule, resolved from `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub missed_heartbeats: i64,
    pub missed_reports: i64,
    pub silent_kinds: Vec<String>,
    /// No dead-man alert before this much silence.
    pub min_silence_ms: i64,
    /// After the coordinator becomes active, no dead-man alert for this long (or 3 of the
    /// host's heartbeat intervals, if longer).
    pub startup_grace_ms: i64,
}

/// Heartbeat intervals a newly active coordinator waits at least before judging silence.
pub const GRACE_INTERVALS: i64 = 3;

impl Rules {
    pub fn get(&self, kind: RuleKind) -> Option<&Rule> {
        self.rules.iter().find(|r| r.kind == kind && r.enabled)
    }
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub alert_id: String,
    pub rule: RuleKind,
    pub host: String,
    pub subject: String,
    pub summary: String,
    pub value: String,
    /// `host_lost` only: the facts the liveness event records.
    pub liveness: Option<(i64, u64)>,
}

/// `<rule>/<host>/<subject>`: stable across coordinators and restarts.
pub fn alert_id(rule: RuleKind, host: &str, subject: &str) -> String {
    format!("{}/{host}/{subject}", rule.name())
}

/// An interval as a summary shows it: whole seconds, or milliseconds below one second (a
/// 500 ms heartbeat is not "every 0s").
pub(super) fn every(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

pub(super) fn pct(basis_points: u32) -> String {
    format!("{:.1}%", f64::from(basis_points) / 100.0)
}

/// Whether the host, last heard from at `seen_unix_ms` (`Fleet::seen_unix_ms`), is silent past
/// its dead-man limit at `now`.
pub fn host_is_lost(
    rules: &Rules,
    host: &HostState,
    seen_unix_ms: i64,
    now_unix_ms: i64,
) -> Option<(i64, u64)> {
    let interval = host.heartbeat_interval_ms()?;
    let limit = i64::try_from(interval)
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(rules.missed_heartbeats)
        .max(rules.min_silence_ms);
    (now_unix_ms - seen_unix_ms > limit).then_some((seen_unix_ms, interval))
}

/// The line of a log excerpt that says what went wrong: for a Python traceback group (first
/// line `Traceback (most recent call last):`) its exception line, the last non-indented line
/// (`ValueError: bad input`); otherwise the first line.
pub fn headline(excerpt: &str) -> &str {
    let mut lines = excerpt.lines();
    let first = lines.next().unwrap_or("");
    if !first
        .trim_start()
        .starts_with("Traceback (most recent call last)")
    {
        return first;
    }
    lines
        .rev()
        .find(|l| {
            !l.trim().is_empty()
                && !l.starts_with([' ', '\t'])
                && !l.starts_with("Traceback (most recent call last)")
                && !l.starts_with("During handling of the above exception")
                && !l.starts_with("The above exception was the direct cause")
        })
        .unwrap_or(first)
}

/// Whether `host`'s silence cannot be judged yet at `now`: the coordinator became active at
/// `active_since` less than `max(startup_grace, 3 heartbeat intervals)` ago (pure).
pub fn in_grace(rules: &Rules, host: &HostState, now: i64, active_since: Option<i64>) -> bool {
    let interval = host.heartbeat_interval_ms().unwrap_or(0);
    let grace = i64::try_from(interval)
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(GRACE_INTERVALS)
        .max(rules.startup_grace_ms);
    active_since.is_some_and(|since| now.saturating_sub(since) < grace)
}

/// How full the events stream is, as its info reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamUsage {
    pub bytes: u64,
    /// The stream's byte limit; 0 or less means none.
    pub max_bytes: i64,
}

/// `events_stream_full`: the stream holds at least the rule's percent of its byte limit
/// (pure). The alert has no host; its subject is the stream's name.
pub fn stream_condition(rules: &Rules, stream: &str, usage: StreamUsage) -> Option<Condition> {
    let rule = rules.get(RuleKind::EventsStreamFull)?;
    let max = u64::try_from(usage.max_bytes).ok().filter(|m| *m > 0)?;
    let used_pct = u128::from(usage.bytes) * 100 / u128::from(max);
    if used_pct < u128::from(rule.percent) {
        return None;
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Some(Condition {
        alert_id: alert_id(rule.kind, "", stream),
        rule: rule.kind,
        host: String::new(),
        subject: stream.to_owned(),
        summary: format!(
            "{stream} holds {:.1} MiB of its {:.1} MiB limit ({used_pct}%); at the limit the \
             oldest events are deleted",
            mib(usage.bytes),
            mib(max)
        ),
        value: format!("{used_pct}%"),
        liveness: None,
    })
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod stream_tests;
