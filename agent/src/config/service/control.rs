//! `[modules.control]` of a service: the application's own control endpoint (an HTTP POST of
//! JSON, or a NATS request) and the actions, with their argument names, it accepts; the
//! checks of the section, and `ControlConfig::permit`, which decides whether one `app`
//! command may be forwarded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::parse_http_url;

/// Longest action or argument name.
const NAME_MAX: usize = 64;
/// Longest `timeout`: a command waits for the app's answer this long at most.
pub const CONTROL_TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// `[modules.control]`: where the service takes control actions, and which.
///
/// ```toml
/// [modules.control]
/// http = "http://127.0.0.1:8080/control"
/// [[modules.control.actions]]
/// name = "module.disable"
/// args = ["module"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `http://host:port/path`: each action is POSTed there as JSON
    /// `{"action": ..., "args": {...}}`. Exactly one of `http` and `nats_subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A NATS subject: each action is a request with the same JSON; the reply is the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    /// How long the app may take to answer.
    #[serde(default = "default_control_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The actions the app accepts; anything else is refused without being sent.
    #[serde(default)]
    pub actions: Vec<ControlAction>,
}

/// One accepted action (`[[modules.control.actions]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlAction {
    /// As the app names it: `pipeline.pause`.
    pub name: String,
    /// The argument names it takes (`--arg module=ingest`); none by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// Where an action is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlEndpoint<'a> {
    Http(&'a str),
    Nats(&'a str),
}

fn default_control_timeout() -> Duration {
    Duration::from_secs(5)
}

/// An action or argument name: letters, digits, `.`, `-`, `_`, at most `NAME_MAX`.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if name.len() > NAME_MAX {
        return Some(format!("longer than {NAME_MAX} characters"));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        .map(|ch| format!("character {ch:?} not allowed; use letters, digits, '.', '-' and '_'"))
}

/// Plain `http://` with a named host or a loopback address (the app on this host).
fn http_problem(url: &str) -> Option<String> {
    if let Err(e) = parse_http_url(url) {
        return Some(e);
    }
    let uri: hyper::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_loopback() => Some(format!(
            "{url:?}: an address must be loopback (127.0.0.1, [::1]); the control endpoint is \
             the app on this host (a named host is accepted)"
        )),
        _ => None,
    }
}

/// Dot-separated tokens of letters, digits, `-`, `_`; no wildcards; not opsfleet's own
/// (`ops.`) nor reply inboxes (`_INBOX.`).
fn subject_problem(subject: &str) -> Option<String> {
    for token in subject.split('.') {
        if let Err(e) = opsfleet_proto::subjects::validate_token(token) {
            return Some(format!(
                "{subject:?}: token {token:?} {e} (no wildcards, no empty tokens)"
            ));
        }
    }
    let first = subject.split('.').next().unwrap_or_default();
    if first == "ops" || first == "_INBOX" {
        return Some(format!(
            "{subject:?}: `ops.` and `_INBOX.` are opsfleet's own subjects"
        ));
    }
    None
}

impl ControlConfig {
    /// The endpoint (`None` only for an invalid section, which never loads).
    pub fn endpoint(&self) -> Option<ControlEndpoint<'_>> {
        match (&self.http, &self.nats_subject) {
            (Some(url), None) => Some(ControlEndpoint::Http(url)),
            (None, Some(subject)) => Some(ControlEndpoint::Nats(subject)),
            _ => None,
        }
    }

    /// Every problem as `(key, reason)`, keys relative to the module entry (`control.http`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: String, r: String| out.push((format!("control.{k}"), r));
        match (&self.http, &self.nats_subject) {
            (None, None) | (Some(_), Some(_)) => push(
                "http".to_owned(),
                "set exactly one of `http` and `nats_subject`".to_owned(),
            ),
            (Some(url), None) => {
                if let Some(r) = http_problem(url) {
                    push("http".to_owned(), r);
                }
            }
            (None, Some(subject)) => {
                if let Some(r) = subject_problem(subject) {
                    push("nats_subject".to_owned(), r);
                }
            }
        }
        if self.timeout.is_zero() || self.timeout > CONTROL_TIMEOUT_MAX {
            push(
                "timeout".to_owned(),
                format!("must be more than 0 and at most {CONTROL_TIMEOUT_MAX:?}"),
            );
        }
        if self.actions.is_empty() {
            push(
                "actions".to_owned(),
                "declare at least one action ([[modules.control.actions]] name = ...)".to_owned(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, a) in self.actions.iter().enumerate() {
            if let Some(r) = name_problem(&a.name) {
                push(format!("actions[{i}].name"), r);
            } else if !names.insert(a.name.as_str()) {
                push(
                    format!("actions[{i}].name"),
                    format!("action {:?} is declared twice", a.name),
                );
            }
            let mut args = BTreeSet::new();
            for (j, arg) in a.args.iter().enumerate() {
                if let Some(r) = name_problem(arg) {
                    push(format!("actions[{i}].args[{j}]"), r);
                } else if !args.insert(arg.as_str()) {
                    push(
                        format!("actions[{i}].args[{j}]"),
                        format!("argument {arg:?} is declared twice"),
                    );
                }
            }
        }
        out
    }

    /// Whether `action` with `args` may be sent: the action is declared and each argument is
    /// one it declares. The refusal names what is allowed. Pure.
    pub fn permit(&self, action: &str, args: &BTreeMap<String, String>) -> Result<(), String> {
        let Some(declared) = self.actions.iter().find(|a| a.name == action) else {
            let known: Vec<&str> = self.actions.iter().map(|a| a.name.as_str()).collect();
            return Err(format!(
                "action {action:?} is not declared by the service (declared: {})",
                list(&known)
            ));
        };
        let unknown: Vec<&str> = (args.keys())
            .filter(|k| !declared.args.contains(k))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let allowed: Vec<&str> = declared.args.iter().map(String::as_str).collect();
        Err(format!(
            "action {action:?} takes no argument {} (declared: {})",
            list(&unknown),
            list(&allowed)
        ))
    }
}

/// `"a", "b"`, or `none`.
fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, ModuleConfig};

    fn service(control: &str) -> Result<ControlConfig, Vec<String>> {
        let toml = format!(
            "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"web\"\nargv = [\"app\"]\n{control}"
        );
        match parse_str(&toml) {
            Ok(cfg) => match &cfg.modules[0] {
                ModuleConfig::Service(s) => Ok(s.control.clone().expect("a control section")),
                other => panic!("not a service: {other:?}"),
            },
            Err(problems) => Err(problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.reason))
                .collect()),
        }
    }

    const OK: &str = r#"
[modules.control]
http = "http://127.0.0.1:8080/control"
[[modules.control.actions]]
name = "pipeline.pause"
[[modules.control.actions]]
name = "module.disable"
args = ["module"]
"#;

    #[test]
    fn a_declared_http_control_loads_with_its_defaults() {
        let c = service(OK).expect("valid");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(
            c.endpoint(),
            Some(ControlEndpoint::Http("http://127.0.0.1:8080/control"))
        );
        assert_eq!(c.actions[1].args, ["module"]);
        let nats = service(
            "[modules.control]\nnats_subject = \"app.web.control\"\ntimeout = \"2s\"\n\
             [[modules.control.actions]]\nname = \"pipeline.pause\"\n",
        )
        .expect("valid");
        assert_eq!(
            nats.endpoint(),
            Some(ControlEndpoint::Nats("app.web.control"))
        );
    }

    #[test]
    fn every_problem_of_a_control_section_is_listed() {
        let bad = r#"
[modules.control]
http = "https://127.0.0.1:8080/control"
nats_subject = "app.web.control"
timeout = "0s"
[[modules.control.actions]]
name = ""
[[modules.control.actions]]
name = "pipeline.pause"
args = ["module", "module", "bad key"]
[[modules.control.actions]]
name = "pipeline.pause"
"#;
        let problems = service(bad).expect_err("invalid");
        for want in [
            "modules[0].control.http: set exactly one",
            "modules[0].control.timeout: must be more than 0",
            "modules[0].control.actions[0].name: must not be empty",
            "modules[0].control.actions[1].args[1]: argument \"module\" is declared twice",
            "modules[0].control.actions[1].args[2]: character ' ' not allowed",
            "modules[0].control.actions[2].name: action \"pipeline.pause\" is declared twice",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(want)),
                "{want} missing from {problems:#?}"
            );
        }
    }

    #[test]
    fn endpoints_must_be_local_http_or_an_application_subject() {
        let one = |endpoint: &str| {
            service(&format!(
                "[modules.control]\n{endpoint}\n[[modules.control.actions]]\nname = \"a\"\n"
            ))
        };
        for ok in [
            "http = \"http://127.0.0.1:8080/control\"",
            "http = \"http://[::1]:8080/control\"",
            "http = \"http://app.internal:8080/control\"",
            "nats_subject = \"app.web.control\"",
        ] {
            assert!(one(ok).is_ok(), "{ok}: {:?}", one(ok));
        }
        for (bad, why) in [
            ("http = \"https://127.0.0.1/control\"", "only http://"),
            (
                "http = \"http://10.0.0.5:8080/control\"",
                "must be loopback",
            ),
            ("http = \"127.0.0.1:8080\"", "needs a scheme"),
            ("nats_subject = \"app.*.control\"", "not allowed"),
            ("nats_subject = \"app..control\"", "empty"),
            ("nats_subject = \"ops.cmd.web-01\"", "opsfleet's own"),
            ("nats_subject = \"_INBOX.x\"", "opsfleet's own"),
        ] {
            let problems = one(bad).expect_err(bad);
            assert!(
                problems.iter().any(|p| p.contains(why)),
                "{bad}: {why} missing from {problems:?}"
            );
        }
        let none = service("[modules.control]\n").expect_err("no endpoint, no actions");
        assert!(none.iter().any(|p| p.contains("exactly one")), "{none:?}");
        assert!(
            none.iter().any(|p| p.contains("at least one action")),
            "{none:?}"
        );
    }

    #[test]
    fn only_declared_actions_and_arguments_are_permitted() {
        let c = service(OK).expect("valid");
        let args = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(c.permit("pipeline.pause", &args(&[])), Ok(()));
        assert_eq!(
            c.permit("module.disable", &args(&[("module", "ingest")])),
            Ok(())
        );
        let undeclared = c.permit("pipeline.drop", &args(&[])).unwrap_err();
        assert_eq!(
            undeclared,
            "action \"pipeline.drop\" is not declared by the service (declared: \
             \"pipeline.pause\", \"module.disable\")"
        );
        let extra = (c.permit("pipeline.pause", &args(&[("reason", "x")]))).unwrap_err();
        assert_eq!(
            extra,
            "action \"pipeline.pause\" takes no argument \"reason\" (declared: none)"
        );
        let wrong =
            (c.permit("module.disable", &args(&[("module", "a"), ("force", "1")]))).unwrap_err();
        assert!(
            wrong.contains("\"force\"") && wrong.contains("declared: \"module\""),
            "{wrong}"
        );
    }
}
