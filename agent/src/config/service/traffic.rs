//! `[modules.traffic]` of a service: the blue/green slot group it belongs to and the command
//! that sends that group's traffic to it, with its semantic checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The placeholder of `switch` replaced by the service's name.
pub const SERVICE_PLACEHOLDER: &str = "{service}";

/// `[modules.traffic]`: the service is one slot of a blue/green pair (or more).
///
/// ```toml
/// [modules.traffic]
/// slot_group = "web"
/// switch = ["/usr/local/bin/point-upstream", "{service}"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSection {
    /// The slot group (a name token): the services of this host that take turns.
    pub slot_group: String,
    /// Program and arguments (no shell) that send the slot group's traffic to this service;
    /// `{service}` is replaced by its name. Exit 0 = switched.
    pub switch: Vec<String>,
    /// The switch command is killed (its process group) and the switch failed after this long.
    #[serde(default = "default_switch_timeout", with = "humantime_serde")]
    pub switch_timeout: Duration,
}

fn default_switch_timeout() -> Duration {
    Duration::from_secs(30)
}

impl TrafficSection {
    /// Slot group `slot_group` switched by `switch`, the timeout at its default.
    pub fn of(slot_group: &str, switch: Vec<String>) -> Self {
        TrafficSection {
            slot_group: slot_group.to_owned(),
            switch,
            switch_timeout: default_switch_timeout(),
        }
    }

    /// `switch` with `{service}` replaced by `service`.
    pub fn switch_argv(&self, service: &str) -> Vec<String> {
        (self.switch.iter())
            .map(|a| a.replace(SERVICE_PLACEHOLDER, service))
            .collect()
    }

    /// Every problem as `(key, reason)`, keys relative to the `traffic` table.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Err(e) = opsfleet_proto::subjects::validate_token(&self.slot_group) {
            out.push(("slot_group".to_owned(), format!("a name token: {e}")));
        }
        match self.switch.first() {
            None => out.push((
                "switch".to_owned(),
                "at least the program is needed".to_owned(),
            )),
            Some(p) if p.is_empty() => out.push((
                "switch[0]".to_owned(),
                "the program must not be empty".to_owned(),
            )),
            Some(_) => {}
        }
        if self.switch_timeout.is_zero() {
            out.push((
                "switch_timeout".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn service(section: &str, remote: &str) -> String {
        format!(
            "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"blue\"\nargv = [\"app\"]\n\
             remote = [{remote}]\n{section}"
        )
    }

    #[test]
    fn every_problem_of_a_traffic_section_is_listed() {
        let toml = service(
            "[modules.traffic]\nslot_group = \"\"\nswitch = []\nswitch_timeout = \"0s\"\n",
            "\"switch\"",
        );
        let problems = parse_str(&toml).expect_err("invalid traffic section");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "modules[0].traffic.slot_group",
            "modules[0].traffic.switch",
            "modules[0].traffic.switch_timeout",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let problems = parse_str(&service("", "\"switch\"")).expect_err("no section");
        assert!(
            problems
                .iter()
                .any(|p| p.key == "modules[0].remote" && p.reason.contains("[modules.traffic]")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_traffic_section_loads_with_defaults_and_substitutes_the_service() {
        let toml = service(
            "[modules.traffic]\nslot_group = \"web\"\nswitch = [\"point\", \"--to={service}\"]\n",
            "\"switch\"",
        );
        let cfg = parse_str(&toml).expect("valid");
        let crate::config::ModuleConfig::Service(s) = &cfg.modules[0] else {
            panic!("not a service");
        };
        let t = s.traffic.as_ref().expect("traffic section");
        assert_eq!(t.switch_timeout, Duration::from_secs(30));
        assert_eq!(t.switch_argv("blue"), ["point", "--to=blue"]);
    }
}
