//! The `[modules.systemd]` and `[modules.compose]` sections of a service: the unit or compose
//! service a driven manager works through, and their semantic checks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
