//! A backup job's restore test: `verify_restore` (how often; `"daily"`, `"weekly"`,
//! `"monthly"` or a duration), `[modules.jobs.verify_check]` (the command run on the restored
//! files) and their semantic checks.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One day.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// The named periods `verify_restore` accepts besides a duration (`"weekly"` = `"7days"`; a
/// month is 30 days).
pub const NAMED_PERIODS: [(&str, Duration); 3] = [
    ("daily", DAY),
    ("weekly", Duration::from_secs(7 * 24 * 3600)),
    ("monthly", Duration::from_secs(30 * 24 * 3600)),
];

/// Parses a `verify_restore` value: a named period or a duration (`"12h"`, `"2s"`).
pub fn parse_period(text: &str) -> Result<Duration, String> {
    if let Some((_, d)) = NAMED_PERIODS.iter().find(|(n, _)| *n == text) {
        return Ok(*d);
    }
    humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is neither daily, weekly, monthly nor a duration such as \"12h\": {e}")
    })
}

/// serde of `Option<Duration>` written as a period (`verify_restore`); written back as a
/// duration (`"7days"`), which it parses again.
pub mod period {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        parse_period(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// `[modules.jobs.verify_check]`: a command (argv, no shell) run on the files a restore test
/// restored, e.g. an integrity check of a database dump.
///
/// ```toml
/// [modules.jobs.verify_check]
/// command = ["/usr/local/bin/check-dump", "data/app.dump"]
/// timeout = "10m"
/// ```
///
/// It runs like a `pre_backup` step (own process group, stdin and stdout closed, killed with
/// its group on timeout or when the agent stops) in the scratch directory holding the restored
/// files, which is also in `OPSFLEET_RESTORE_DIR` (`OPSFLEET_BACKUP_JOB` holds the job's
/// name). Exit 0: the check passed; anything else fails the restore test with the end of its
/// stderr.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyCheckConfig {
    /// Program (absolute path) and arguments.
    pub command: Vec<String>,
    /// The command is killed (its whole process group) when it runs longer.
    #[serde(default = "default_verify_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_verify_check_timeout() -> Duration {
    Duration::from_secs(1800)
}

/// The problems of a step's argv (`pre_backup`, `verify_check`), keys relative to the step.
pub(super) fn command_problems(command: &[String]) -> Vec<(String, String)> {
    match command.first() {
        None => vec![("command".into(), "needs at least the program".into())],
        Some(p) if !Path::new(p).is_absolute() => vec![(
            "command[0]".into(),
            format!("the program must be an absolute path (no PATH lookup): {p:?}"),
        )],
        Some(_) => Vec::new(),
    }
}

impl VerifyCheckConfig {
    /// Problems with keys relative to `verify_check`.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = command_problems(&self.command);
        if self.timeout.is_zero() {
            out.push(("timeout".into(), "must be greater than 0".into()));
        }
        out
    }
}

/// Problems of a job's restore test keys (relative to the job). A `verify_check` without
/// `verify_restore` is fine: on-demand tests (`opsctl backup verify`, a drill) run it.
pub(super) fn verify_problems(
    every: Option<Duration>,
    check: Option<&VerifyCheckConfig>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if every.is_some_and(|d| d.is_zero()) {
        out.push(("verify_restore".into(), "must be greater than 0".into()));
    }
    if let Some(check) = check {
        out.extend(
            check
                .problems()
                .into_iter()
                .map(|(k, r)| (format!("verify_check.{k}"), r)),
        );
    }
    out
}

#[cfg(test)]
mod tests;
