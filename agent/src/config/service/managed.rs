//! The `[modules.systemd]` and `[modules.compose]` sections of a service: the unit or compose
//! service a driven manager works through, their semantic checks, and which keys belong to
//! which manager.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    default_backoff_max, default_backoff_min, default_log_keep, default_log_max_bytes,
    ServiceConfig, ServiceManager,
};

/// `manager = "systemd"`: the unit the agent drives through `systemctl`.
///
/// ```toml
/// [modules.systemd]
/// unit = "app.service"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdSection {
    /// The unit's full name (`app.service`).
    pub unit: String,
    /// The systemctl program (a name looked up in PATH, or an absolute path).
    #[serde(default = "default_systemctl")]
    pub systemctl: String,
    /// A unit of the agent's user manager (`systemctl --user`) instead of the system's.
    #[serde(default)]
    pub user: bool,
}

fn default_systemctl() -> String {
    "systemctl".to_owned()
}

impl SystemdSection {
    /// A section for `unit`, the other keys at their defaults.
    pub fn unit(unit: &str) -> Self {
        SystemdSection {
            unit: unit.to_owned(),
            systemctl: default_systemctl(),
            user: false,
        }
    }

    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.unit.is_empty() || self.unit.starts_with('-') || self.unit.contains('\0') {
            out.push((
                "systemd.unit".to_owned(),
                "a unit name (`app.service`), not empty and not starting with '-'".to_owned(),
            ));
        }
        if self.systemctl.is_empty() {
            out.push((
                "systemd.systemctl".to_owned(),
                "the program must not be empty".to_owned(),
            ));
        }
        out
    }
}

/// `manager = "compose"`: one service of a compose project, driven through `docker compose`
/// or `docker-compose`.
///
/// ```toml
/// [modules.compose]
/// project_dir = "/srv/stack"
/// service = "app"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeSection {
    /// The project's directory (absolute).
    pub project_dir: PathBuf,
    /// The compose file, relative to `project_dir` or absolute; the first of `compose.yaml`,
    /// `compose.yml`, `docker-compose.yaml`, `docker-compose.yml` found there when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The project name (`-p`); compose's own default (the directory's name) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The compose service.
    pub service: String,
    /// The compose program (`["docker", "compose"]`, `["docker-compose"]`); when absent the
    /// agent uses `docker compose` if it answers, else `docker-compose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// The compose file names looked for in `project_dir`, in order, when `file` is absent.
pub const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

impl ComposeSection {
    /// The compose file: `file` (relative to `project_dir`), else the first default name that
    /// exists there, else `compose.yaml` (compose then says what is missing).
    pub fn resolved_file(&self) -> PathBuf {
        match &self.file {
            Some(f) => self.project_dir.join(f),
            None => COMPOSE_FILES
                .iter()
                .map(|n| self.project_dir.join(n))
                .find(|p| p.is_file())
                .unwrap_or_else(|| self.project_dir.join(COMPOSE_FILES[0])),
        }
    }

    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |k: &str, r: &str| out.push((format!("compose.{k}"), r.to_owned()));
        if !self.project_dir.is_absolute() {
            push("project_dir", "must be an absolute path");
        }
        if self.file.as_deref().is_some_and(|f| f == Path::new("")) {
            push("file", "must not be empty");
        }
        if let Some(p) = &self.project {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                && p.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                push(
                    "project",
                    "lowercase letters, digits, '-' and '_', starting with a letter or digit",
                );
            }
        }
        if self.service.is_empty() || self.service.starts_with('-') {
            push(
                "service",
                "a compose service name, not empty and not starting with '-'",
            );
        }
        match self.command.as_deref() {
            Some([]) => push("command", "at least the program is needed"),
            Some([p, ..]) if p.is_empty() => push("command", "the program must not be empty"),
            _ => {}
        }
        out
    }
}

/// The keys of another manager than this service's, and the section its manager needs.
pub(super) fn manager_problems(cfg: &ServiceConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let manager = cfg.manager.as_str();
    let mut foreign = |key: &str, owner: &str| {
        out.push((
            key.to_owned(),
            format!("belongs to the {owner} manager; this service's manager is {manager}"),
        ))
    };
    if cfg.manager != ServiceManager::Process {
        let process_keys = [
            ("argv", !cfg.argv.is_empty()),
            ("workdir", cfg.workdir.is_some()),
            ("env", !cfg.env.is_empty()),
            ("stdout", cfg.stdout.is_some()),
            ("stderr", cfg.stderr.is_some()),
            ("user", cfg.user.is_some()),
            (
                "log_max_bytes",
                cfg.log_max_bytes != default_log_max_bytes(),
            ),
            ("log_keep", cfg.log_keep != default_log_keep()),
            (
                "restart_backoff_min",
                cfg.restart_backoff_min != default_backoff_min(),
            ),
            (
                "restart_backoff_max",
                cfg.restart_backoff_max != default_backoff_max(),
            ),
        ];
        for (key, set) in process_keys {
            if set {
                foreign(key, "process");
            }
        }
    }
    if cfg.manager != ServiceManager::Systemd && cfg.systemd.is_some() {
        foreign("systemd", "systemd");
    }
    if cfg.manager != ServiceManager::Compose && cfg.compose.is_some() {
        foreign("compose", "compose");
    }
    match (cfg.manager, &cfg.systemd, &cfg.compose) {
        (ServiceManager::Systemd, None, _) => out.push((
            "systemd".to_owned(),
            "manager \"systemd\" needs a [modules.systemd] section with the unit".to_owned(),
        )),
        (ServiceManager::Systemd, Some(s), _) => out.extend(s.problems()),
        (ServiceManager::Compose, _, None) => out.push((
            "compose".to_owned(),
            "manager \"compose\" needs a [modules.compose] section with project_dir and service"
                .to_owned(),
        )),
        (ServiceManager::Compose, _, Some(c)) => out.extend(c.problems()),
        (ServiceManager::Process, ..) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::parse_str;

    fn keys(toml: &str) -> Vec<String> {
        let problems = parse_str(&format!("host = \"web-01\"\n{toml}")).expect_err("invalid");
        problems.into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn a_systemd_service_loads() {
        let toml = "host = \"web-01\"\n[[modules]]\ntype = \"service\"\nname = \"app\"\nmanager = \"systemd\"\n[modules.systemd]\nunit = \"app.service\"\n";
        let cfg = parse_str(toml).expect("valid");
        let crate::config::ModuleConfig::Service(s) = &cfg.modules[0] else {
            panic!("not a service");
        };
        assert_eq!(
            s,
            &super::ServiceConfig {
                name: Some("app".to_owned()),
                ..super::ServiceConfig::systemd("app.service")
            }
        );
    }

    #[test]
    fn keys_of_another_manager_are_refused_naming_it() {
        let toml = r#"
[[modules]]
type = "service"
manager = "systemd"
argv = ["x"]
env = { A = "b" }
restart_backoff_max = "5m"
[modules.compose]
project_dir = "/srv/stack"
service = "app"
"#;
        let problems = parse_str(&format!("host = \"web-01\"\n{toml}")).expect_err("invalid");
        let found = |key: &str, owner: &str| {
            problems.iter().any(|p| {
                p.key == format!("modules[0].{key}")
                    && p.reason
                        .contains(&format!("belongs to the {owner} manager"))
                    && p.reason.contains("manager is systemd")
            })
        };
        for (key, owner) in [
            ("argv", "process"),
            ("env", "process"),
            ("restart_backoff_max", "process"),
            ("compose", "compose"),
        ] {
            assert!(
                found(key, owner),
                "{key} ({owner}) missing from {problems:?}"
            );
        }
        assert!(
            problems.iter().any(|p| p.key == "modules[0].systemd"),
            "the missing systemd section: {problems:?}"
        );
    }

    #[test]
    fn a_process_service_refuses_the_driven_sections() {
        let toml = "[[modules]]\ntype = \"service\"\nargv = [\"x\"]\n[modules.systemd]\nunit = \"a.service\"\n";
        assert_eq!(keys(toml), ["modules[0].systemd"]);
    }

    #[test]
    fn every_problem_of_a_compose_service_is_listed() {
        let toml = r#"
[[modules]]
type = "service"
manager = "compose"
[modules.compose]
project_dir = "rel"
file = ""
project = "Bad Name"
service = ""
command = []
"#;
        let got = keys(toml);
        for key in ["project_dir", "file", "project", "service", "command"] {
            let key = format!("modules[0].compose.{key}");
            assert!(got.contains(&key), "{key} missing from {got:?}");
        }
        assert!(!got.iter().any(|k| k.ends_with("argv")), "{got:?}");
    }

    #[test]
    fn a_compose_file_defaults_to_the_first_existing_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = super::ComposeSection {
            project_dir: dir.path().to_owned(),
            file: None,
            project: None,
            service: "app".to_owned(),
            command: None,
        };
        assert_eq!(c.resolved_file(), dir.path().join("compose.yaml"));
        std::fs::write(dir.path().join("docker-compose.yml"), "services: {}\n").expect("write");
        assert_eq!(c.resolved_file(), dir.path().join("docker-compose.yml"));
        c.file = Some("other.yaml".into());
        assert_eq!(c.resolved_file(), dir.path().join("other.yaml"));
    }
}
