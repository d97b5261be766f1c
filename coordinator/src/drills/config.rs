//! `[[drills]]`: the drills the active coordinator runs on a schedule — name, kind, period
//! (`every`), `jitter`, `grace` before `drill_overdue`, and each kind's options (`group` for
//! `app_failover`; `hosts`/`labels`, `job`, `module` for `restore_test`) — validated so that
//! every problem is reported at once.

use std::collections::BTreeMap;
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
    /// A restore test of a backup job on every host `hosts`/`labels` select (as
    /// `opsctl --host`/`--label` select the targets of a command).
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
    /// `restore_test`: the hosts to test, by name or glob (`db-*`), as `opsctl --host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `restore_test`: also every host whose agent declares all these labels, as
    /// `opsctl --label`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `restore_test`: the backup job whose newest archive each host restores and checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// `restore_test`: the backup module holding the job (absent: the host's backup module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
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
        if self.kind == DrillKind::RestoreTest {
            if self.hosts.is_empty() && self.labels.is_empty() {
                push(
                    "hosts",
                    "restore_test needs the hosts to test: hosts (names or globs) and/or labels"
                        .to_owned(),
                );
            }
            if self.hosts.iter().any(|h| h.trim().is_empty()) {
                push("hosts", "a host name or glob is empty".to_owned());
            }
            if self
                .labels
                .iter()
                .any(|(k, v)| k.is_empty() || v.is_empty())
            {
                push("labels", "a label needs a key and a value".to_owned());
            }
            match &self.job {
                None => push(
                    "job",
                    "restore_test needs the backup job to test".to_owned(),
                ),
                Some(j) if j.trim().is_empty() => push("job", "must not be empty".to_owned()),
                Some(_) => {}
            }
            if self.module.as_ref().is_some_and(|m| m.trim().is_empty()) {
                push(
                    "module",
                    "must not be empty (leave it out for the host's backup module)".to_owned(),
                );
            }
        } else {
            let only = |key: &str| (key.to_owned(), "only restore_test takes it".to_owned());
            if !self.hosts.is_empty() {
                out.push(only("hosts"));
            }
            if !self.labels.is_empty() {
                out.push(only("labels"));
            }
            if self.job.is_some() {
                out.push(only("job"));
            }
            if self.module.is_some() {
                out.push(only("module"));
            }
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
            hosts: Vec::new(),
            labels: BTreeMap::new(),
            job: None,
            module: None,
        }
    }

    #[test]
    fn every_problem_is_reported_and_each_kind_takes_only_its_options() {
        let ok = drill("notify", DrillKind::NotificationTest);
        assert!(problems(std::slice::from_ref(&ok)).is_empty());
        assert_eq!(ok.overdue_after(), Duration::from_secs(5400));
        let restore = DrillConfig {
            hosts: vec!["db-*".into()],
            job: Some("nightly".into()),
            ..drill("restore", DrillKind::RestoreTest)
        };
        let by_label = DrillConfig {
            hosts: Vec::new(),
            labels: [("role".to_owned(), "db".to_owned())].into(),
            module: Some("backup".into()),
            ..restore.clone()
        };
        assert!(problems(std::slice::from_ref(&restore)).is_empty());
        assert!(problems(&[by_label]).is_empty());
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
            DrillConfig {
                job: Some(" ".into()),
                labels: [("role".to_owned(), String::new())].into(),
                module: Some(String::new()),
                ..restore.clone()
            },
            DrillConfig {
                hosts: vec!["db-01".into()],
                job: Some("j".into()),
                ..drill("notify2", DrillKind::NotificationTest)
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
                "drills[3].hosts",
                "drills[3].job",
                "drills[4].labels",
                "drills[4].job",
                "drills[4].module",
                "drills[4].name",
                "drills[5].hosts",
                "drills[5].job",
            ]
        );
    }
}
