//! `[[drills]]`: the drills the active coordinator runs on a schedule — name, kind, period
//! (`every`), `jitter`, `grace` before `drill_overdue`, and each kind's options — validated so
//! that every problem is reported at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a drill exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillKind {
    /// Hand the lease to a standby coordinator and back (what `opsctl failover --drill` does).
    CoordinatorFailover,
    /// One test notification per route, marked as a test.
    NotificationTest,
    /// A drill failover of an active/standby service group (`group = "..."`).
    AppFailover,
    /// A restore test on a host group: not available yet (the agent has no restore test).
    RestoreTest,
}

impl DrillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillKind::CoordinatorFailover => "coordinator_failover",
            DrillKind::NotificationTest => "notification_test",
            DrillKind::AppFailover => "app_failover",
            DrillKind::RestoreTest => "restore_test",
        }
    }
}

/// One `[[drills]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Unique name (a subject token): what `opsctl drill run <name>` names.
    pub name: String,
    pub kind: DrillKind,
    /// The period: one run per slot of this length (slots are aligned to the Unix epoch).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// A run starts at a point within the slot's first `jitter`, the same on every
    /// coordinator (derived from the drill's name and the slot), so drills of a fleet do
    /// not all start at the slot's first second.
    #[serde(default = "default_jitter", with = "humantime_serde")]
    pub jitter: Duration,
    /// `drill_overdue` fires when no run passed within `every` + `grace` (default: half
    /// of `every`).
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    /// Off: never run on the schedule (`opsctl drill run` still runs it); it still goes
    /// overdue, which is the point: a drill switched off is a drill not done.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// A run that has not ended within this long is failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `app_failover`: the active/standby group to fail over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

fn default_jitter() -> Duration {
    Duration::ZERO
}
fn default_enabled() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(600)
}

impl DrillConfig {
    /// `every` + `grace`: how long without a passed run before `drill_overdue`.
    pub fn overdue_after(&self) -> Duration {
        self.every + self.grace.unwrap_or(self.every / 2)
    }

    /// Problems of this entry as `(key, reason)`, keys relative to the entry.
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, reason: String| out.push((key.to_owned(), reason));
        if let Err(e) = opsfleet_proto::subjects::validate_token(&self.name) {
            push("name", e.to_string());
        }
        if self.every < Duration::from_secs(1) {
            push("every", "must be at least 1s".to_owned());
        }
        if self.jitter >= self.every && !self.every.is_zero() {
            push("jitter", "must be less than every".to_owned());
        }
        if self.timeout < Duration::from_millis(100) {
            push("timeout", "must be at least 100ms".to_owned());
        }
        match (self.kind, &self.group) {
            (DrillKind::AppFailover, None) => push(
                "group",
                "app_failover needs the group to fail over".to_owned(),
            ),
            (DrillKind::AppFailover, Some(_)) => {}
            (_, Some(_)) => push("group", "only app_failover takes a group".to_owned()),
            (_, None) => {}
        }
        match self.kind {
            DrillKind::RestoreTest => push(
                "kind",
                "restore_test is not available yet: the agent cannot run restore tests".to_owned(),
            ),
            DrillKind::NotificationTest
            | DrillKind::AppFailover
            | DrillKind::CoordinatorFailover => {}
        }
        out
    }
}

/// Every problem of the `[[drills]]` entries as `(key, reason)`, keys like `drills[1].every`.
pub fn problems(drills: &[DrillConfig]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, d) in drills.iter().enumerate() {
        for (key, reason) in d.problems() {
            out.push((format!("drills[{i}].{key}"), reason));
        }
        if drills[..i].iter().any(|o| o.name == d.name) {
            out.push((
                format!("drills[{i}].name"),
                format!("{:?} is declared twice", d.name),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drill(name: &str, kind: DrillKind) -> DrillConfig {
        DrillConfig {
            name: name.into(),
            kind,
            every: Duration::from_secs(3600),
            jitter: Duration::ZERO,
            grace: None,
            enabled: true,
            timeout: default_timeout(),
            group: None,
        }
    }

    #[test]
    fn every_problem_is_reported_and_restore_tests_are_not_available_yet() {
        let ok = drill("notify", DrillKind::NotificationTest);
        assert!(problems(std::slice::from_ref(&ok)).is_empty());
        assert_eq!(ok.overdue_after(), Duration::from_secs(5400));
        let bad = vec![
            ok.clone(),
            DrillConfig {
                jitter: Duration::from_secs(7200),
                ..ok.clone()
            },
            drill("app", DrillKind::AppFailover),
            DrillConfig {
                group: Some("g".into()),
                ..drill("restore", DrillKind::RestoreTest)
            },
        ];
        let keys: Vec<String> = problems(&bad).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "drills[1].jitter",
                "drills[1].name",
                "drills[2].group",
                "drills[3].group",
                "drills[3].kind"
            ]
        );
    }
}
