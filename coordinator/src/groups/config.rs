//! `[groups]`: whether the active coordinator keeps one active member per active/standby
//! group, how long an active member may be failed, unhealthy or lost before it fails over, and
//! the bounds of a failover.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[groups]` section of the coordinator config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsConfig {
    /// Off: no automatic activation or failover (`opsctl service failover` still works).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// How long the active member's service may be failed or unhealthy, or its host lost, in
    /// maintenance, before the group fails over to a healthy standby.
    #[serde(default = "default_failover_after", with = "humantime_serde")]
    pub failover_after: Duration,
    /// How often the groups are looked at.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A failover is `failed` unless the new active reports its role within this long.
    #[serde(default = "default_complete_within", with = "humantime_serde")]
    pub complete_within: Duration,
    /// Deadline of each `service_role` command (an unreachable old active gets its
    /// `standby` when it comes back within it).
    #[serde(default = "default_command_deadline", with = "humantime_serde")]
    pub command_deadline: Duration,
}

fn default_enabled() -> bool {
    true
}
fn default_failover_after() -> Duration {
    Duration::from_secs(10)
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_complete_within() -> Duration {
    Duration::from_secs(60)
}
fn default_command_deadline() -> Duration {
    Duration::from_secs(3600)
}

impl Default for GroupsConfig {
    fn default() -> Self {
        GroupsConfig {
            enabled: default_enabled(),
            failover_after: default_failover_after(),
            interval: default_interval(),
            complete_within: default_complete_within(),
            command_deadline: default_command_deadline(),
        }
    }
}

impl GroupsConfig {
    /// Problems as `(key, reason)`; `max_deadline` is `[api] max_deadline`.
    pub fn problems(&self, max_deadline: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, d) in [
            ("interval", self.interval),
            ("complete_within", self.complete_within),
            ("command_deadline", self.command_deadline),
        ] {
            if d < Duration::from_millis(100) {
                out.push((key.to_owned(), "must be at least 100ms".to_owned()));
            }
        }
        if self.command_deadline > max_deadline {
            out.push((
                "command_deadline".to_owned(),
                format!(
                    "must not exceed api.max_deadline ({})",
                    humantime::format_duration(max_deadline)
                ),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems() {
        let g = GroupsConfig::default();
        assert!(g.enabled);
        assert_eq!(g.failover_after, Duration::from_secs(10));
        assert!(g.problems(Duration::from_secs(86_400)).is_empty());
        let bad = GroupsConfig {
            interval: Duration::ZERO,
            command_deadline: Duration::from_secs(7200),
            ..g
        };
        let keys: Vec<String> = bad
            .problems(Duration::from_secs(3600))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["interval", "command_deadline"]);
    }
}
