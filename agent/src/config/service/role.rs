//! `[modules.role]` of a service: the active/standby group it belongs to, how its role reaches
//! the app (a file, an env file and a reload or restart, or an HTTP call), the role written at
//! agent start before any command, with its semantic checks.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A member's role in its active/standby group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRole {
    Active,
    Standby,
}

impl GroupRole {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupRole::Active => "active",
            GroupRole::Standby => "standby",
        }
    }

    /// `active` or `standby`; anything else is `None`.
    pub fn parse(text: &str) -> Option<GroupRole> {
        [GroupRole::Active, GroupRole::Standby]
            .into_iter()
            .find(|r| r.as_str() == text)
    }
}

/// How an env file's new value reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleApply {
    Reload,
    Restart,
}

/// How the role reaches the app: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDelivery<'a> {
    /// The file holds `active` or `standby` (written atomically).
    File(&'a std::path::Path),
    /// `VAR=true|false` in the env file, then the service reloaded or restarted.
    EnvFile {
        path: &'a std::path::Path,
        var: &'a str,
        apply: RoleApply,
    },
    /// A POST of `{"role": "active"}`.
    Http(&'a str),
}

/// `[modules.role]`: the service is a member of an active/standby group.
///
/// ```toml
/// [modules.role]
/// group = "router"
/// file = "/run/router/role"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSection {
    /// The group (a name token); a `service_role` command naming another group is refused.
    pub group: String,
    /// The agent writes `active` / `standby` to this file (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The agent sets `env_var=true|false` in this env file (absolute), other lines kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<PathBuf>,
    /// With `env_file`: the variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<String>,
    /// With `env_file`: how the new value reaches the app.
    #[serde(default = "default_apply")]
    pub apply: RoleApply,
    /// The agent POSTs `{"role": "..."}` to this URL (`http://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// With `http`: the call fails after this long.
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub http_timeout: Duration,
    /// The role written at agent start when no command gave one yet (a host that restarts
    /// never comes up active by itself).
    #[serde(default = "default_initial")]
    pub initial: GroupRole,
}

fn default_apply() -> RoleApply {
    RoleApply::Restart
}
fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_initial() -> GroupRole {
    GroupRole::Standby
}

impl RoleSection {
    /// A member of `group` told through `file`, every other key at its default.
    pub fn file(group: &str, file: PathBuf) -> Self {
        RoleSection {
            group: group.to_owned(),
            file: Some(file),
            env_file: None,
            env_var: None,
            apply: default_apply(),
            http: None,
            http_timeout: default_http_timeout(),
            initial: default_initial(),
        }
    }

    /// The declared delivery (`None` only for a section with problems).
    pub fn delivery(&self) -> Option<RoleDelivery<'_>> {
        match (&self.file, &self.env_file, &self.http) {
            (Some(f), None, None) => Some(RoleDelivery::File(f)),
            (None, Some(path), None) => Some(RoleDelivery::EnvFile {
                path,
                var: self.env_var.as_deref()?,
                apply: self.apply,
            }),
            (None, None, Some(url)) => Some(RoleDelivery::Http(url)),
            _ => None,
        }
    }

    /// Every problem as `(key, reason)`, keys relative to the `role` table.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, r: String| out.push((k.to_owned(), r));
        if let Err(e) = opsfleet_proto::subjects::validate_token(&self.group) {
            push("group", format!("a name token: {e}"));
        }
        let given = [
            self.file.is_some(),
            self.env_file.is_some(),
            self.http.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            push(
                "file",
                "exactly one of file, env_file or http says how the role reaches the app"
                    .to_owned(),
            );
        }
        for (key, path) in [("file", &self.file), ("env_file", &self.env_file)] {
            if path
                .as_ref()
                .is_some_and(|p| !p.is_absolute() || p.file_name().is_none())
            {
                push(key, "must be an absolute file path".to_owned());
            }
        }
        match (&self.env_file, &self.env_var) {
            (Some(_), None) => push("env_var", "needed with env_file".to_owned()),
            (None, Some(_)) => push("env_var", "only with env_file".to_owned()),
            (_, Some(v)) if !valid_env_var(v) => push(
                "env_var",
                "a variable name: letters, digits and '_', not starting with a digit".to_owned(),
            ),
            _ => {}
        }
        if let Some(url) = &self.http {
            if !url.starts_with("http://") {
                push("http", "an http:// URL".to_owned());
            }
        }
        if self.http_timeout.is_zero() {
            push("http_timeout", "must be greater than 0".to_owned());
        }
        out
    }
}

fn valid_env_var(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn service(section: &str, remote: &str) -> String {
        format!(
            "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"router\"\nargv = [\"app\"]\n\
             remote = [{remote}]\n{section}"
        )
    }

    #[test]
    fn every_problem_of_a_role_section_is_listed() {
        let toml = service(
            "[modules.role]\ngroup = \"a b\"\nfile = \"rel/role\"\nhttp = \"ftp://x\"\n\
             env_var = \"1X\"\nhttp_timeout = \"0s\"\n",
            "\"role\"",
        );
        let problems = parse_str(&toml).expect_err("invalid role section");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "modules[0].role.group",
            "modules[0].role.file",
            "modules[0].role.env_var",
            "modules[0].role.http",
            "modules[0].role.http_timeout",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn role_in_remote_needs_the_section_and_unknown_keys_are_refused() {
        let problems = parse_str(&service("", "\"role\"")).expect_err("no section");
        assert!(
            problems
                .iter()
                .any(|p| p.key == "modules[0].remote" && p.reason.contains("[modules.role]")),
            "{problems:?}"
        );
        let toml = service(
            "[modules.role]\ngroup = \"router\"\nfile = \"/run/r\"\ncolour = \"x\"\n",
            "",
        );
        assert!(parse_str(&toml).is_err(), "unknown key");
        let toml = service(
            "[modules.role]\ngroup = \"router\"\nenv_file = \"/etc/r.env\"\n",
            "",
        );
        let problems = parse_str(&toml).expect_err("env_var missing");
        assert!(problems.iter().any(|p| p.key == "modules[0].role.env_var"));
    }

    #[test]
    fn a_role_section_loads_with_defaults() {
        let toml = service(
            "[modules.role]\ngroup = \"router\"\nenv_file = \"/etc/r.env\"\nenv_var = \"ROUTER_ACTIVE\"\n",
            "\"role\"",
        );
        let cfg = parse_str(&toml).expect("valid");
        let crate::config::ModuleConfig::Service(s) = &cfg.modules[0] else {
            panic!("not a service");
        };
        let r = s.role.as_ref().expect("role section");
        assert_eq!(r.initial, GroupRole::Standby);
        assert_eq!(r.apply, RoleApply::Restart);
        assert_eq!(
            r.delivery(),
            Some(RoleDelivery::EnvFile {
                path: std::path::Path::new("/etc/r.env"),
                var: "ROUTER_ACTIVE",
                apply: RoleApply::Restart
            })
        );
        assert_eq!(GroupRole::parse("active"), Some(GroupRole::Active));
        assert_eq!(GroupRole::parse("Active"), None);
    }
}
