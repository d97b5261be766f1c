//! `[api]`: who may use the request/reply API and how far a command may reach in time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[api]` section of the coordinator config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Accept plain `ops.api.command` and `ops.api.failover` (no operator identity in the
    /// subject) and record the body's `issued_by` marked " (unverified)". Off by default:
    /// only for an insecure deployment without per-operator NATS permissions (the local demo).
    #[serde(default)]
    pub allow_unidentified: bool,
    /// Longest deadline a command may carry; a request asking for more is refused.
    #[serde(default = "default_max_deadline", with = "humantime_serde")]
    pub max_deadline: Duration,
}

fn default_max_deadline() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            allow_unidentified: false,
            max_deadline: default_max_deadline(),
        }
    }
}

impl ApiConfig {
    /// Problems as `(key, reason)`; `commands_max_age` is how long `OPS_CMDS` keeps a command.
    pub fn problems(&self, commands_max_age: Duration) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.max_deadline < Duration::from_secs(1) {
            out.push(("max_deadline".to_owned(), "must be at least 1s".to_owned()));
        } else if self.max_deadline > commands_max_age {
            out.push((
                "max_deadline".to_owned(),
                format!(
                    "must not exceed topology.commands_max_age ({}): a command would leave \
                     OPS_CMDS before its deadline",
                    humantime::format_duration(commands_max_age)
                ),
            ));
        }
        out
    }

    /// One line for `--check-config` saying what the API accepts.
    pub fn summary(&self) -> String {
        let who = if self.allow_unidentified {
            "INSECURE: plain ops.api.command/failover accepted, issued_by recorded as unverified \
             (allow_unidentified = true)"
        } else {
            "commands and failovers only from identified operators (ops.api.as.<operator>.<role>.*)"
        };
        format!(
            "api: {who}; deadlines required, at most {}",
            humantime::format_duration(self.max_deadline)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_safe_ones() {
        let a = ApiConfig::default();
        assert!(!a.allow_unidentified);
        assert_eq!(a.max_deadline, Duration::from_secs(86_400));
        assert!(a.problems(Duration::from_secs(86_400)).is_empty());
        assert!(a.summary().contains("only from identified operators"));
    }

    #[test]
    fn the_cap_fits_the_commands_stream() {
        let a = ApiConfig {
            max_deadline: Duration::from_secs(2 * 86_400),
            ..Default::default()
        };
        let p = a.problems(Duration::from_secs(86_400));
        assert_eq!(p.len(), 1);
        assert!(p[0].1.contains("commands_max_age"), "{p:?}");
        let zero = ApiConfig {
            max_deadline: Duration::ZERO,
            ..Default::default()
        };
        assert_eq!(zero.problems(Duration::from_secs(60))[0].0, "max_deadline");
    }
}
