//! The JSON form of a command request (`CommandRequestJson`) and its checked conversion to
//! and from [`CommandRequest`], with the reasons a request is refused.

use serde::{Deserialize, Serialize};

use super::*;

/// Why a command request's JSON is not a valid request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown action {action:?}; use pause, resume, resume_all, disable, enable, noop, drain, undrain, backup_run, restore_test, restore, config_apply, config_rollback, service_start, service_stop, service_restart, service_reload, app, service_config_apply, service_config_rollback, service_deploy, service_role or traffic_switch")]
    BadAction { action: String },
    #[error("action {action} needs a module name")]
    NeedsModule { action: String },
    #[error("{action} needs {flag}")]
    NeedsField { action: String, flag: &'static str },
}

/// The JSON of [`CommandRequest`] as it travels: one flat object whose optional fields
/// belong to some actions only (`module`, `job`, `archive`, `target`, `config_toml`,
/// `fingerprint`, `app_action`, `args`, `file`, `content`). A service action names its
/// service in `module` (the service is a `service` module instance). Readers that must refuse a bad request with a precise reason read this and
/// convert with `CommandRequest::try_from`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRequestJson {
    /// An [`ActionName`].
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub all: bool,
    pub deadline_ms: u64,
    pub issued_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_toml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `app`: the action forwarded to the service's control endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_action: Option<String>,
    /// `app`: the action's arguments.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// `service_config_apply` / `_rollback`: the declared config file (absent: the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `service_config_apply`: the file's new content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// `service_deploy`: the version to put in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `service_deploy`: the artifact (http(s) URL or absolute path on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// `service_deploy`: the artifact's sha256 (hex); required with `artifact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `service_deploy`: consecutive ready probe results to wait for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_samples: Option<u32>,
    /// `service_role`: `active` or `standby`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `service_role`: the group the service must belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl TryFrom<CommandRequestJson> for CommandRequest {
    type Error = RequestError;

    /// Checks the action's fields: a module where it needs one, and the non-blank
    /// `archive`/`target`, config or fingerprint it needs (values are kept as sent).
    fn try_from(j: CommandRequestJson) -> Result<Self, RequestError> {
        let name = j
            .action
            .parse::<ActionName>()
            .unwrap_or(ActionName::Unknown);
        let action_text = j.action.clone();
        let module = |m: Option<String>| {
            m.filter(|m| !m.is_empty())
                .ok_or_else(|| RequestError::NeedsModule {
                    action: action_text.clone(),
                })
        };
        let field = |v: Option<String>, flag: &'static str| {
            v.filter(|v| !v.trim().is_empty())
                .ok_or_else(|| RequestError::NeedsField {
                    action: action_text.clone(),
                    flag,
                })
        };
        let action = match name {
            ActionName::Pause => CommandAction::Pause {
                module: module(j.module)?,
            },
            ActionName::Resume => CommandAction::Resume {
                module: module(j.module)?,
            },
            ActionName::Disable => CommandAction::Disable {
                module: module(j.module)?,
            },
            ActionName::Enable => CommandAction::Enable {
                module: module(j.module)?,
            },
            ActionName::Noop => CommandAction::Noop,
            ActionName::Drain => CommandAction::Drain,
            ActionName::Undrain => CommandAction::Undrain,
            ActionName::ResumeAll => CommandAction::ResumeAll,
            ActionName::BackupRun => CommandAction::BackupRun {
                module: j.module,
                job: j.job,
            },
            ActionName::RestoreTest => CommandAction::RestoreTest {
                job: field(j.job, "a job")?,
                module: j.module,
            },
            ActionName::Restore => CommandAction::Restore {
                archive: field(j.archive, "--archive")?,
                target: field(j.target, "--target")?,
                module: j.module,
                job: j.job,
            },
            ActionName::ConfigApply => CommandAction::ConfigApply {
                module: module(j.module)?,
                config_toml: field(j.config_toml, "a config (--file)")?,
                fingerprint: j.fingerprint,
            },
            ActionName::ConfigRollback => CommandAction::ConfigRollback {
                module: module(j.module)?,
                fingerprint: field(j.fingerprint, "--to <fingerprint>")?,
            },
            ActionName::ServiceStart => CommandAction::ServiceStart {
                service: module(j.module)?,
            },
            ActionName::ServiceStop => CommandAction::ServiceStop {
                service: module(j.module)?,
            },
            ActionName::ServiceRestart => CommandAction::ServiceRestart {
                service: module(j.module)?,
            },
            ActionName::ServiceReload => CommandAction::ServiceReload {
                service: module(j.module)?,
            },
            ActionName::App => CommandAction::App {
                service: module(j.module)?,
                action: field(j.app_action, "an app action")?,
                args: j.args,
            },
            ActionName::ServiceConfigApply => CommandAction::ServiceConfigApply {
                service: module(j.module)?,
                content: j.content.ok_or_else(|| RequestError::NeedsField {
                    action: action_text.clone(),
                    flag: "a config file (--file)",
                })?,
                file: j.file.filter(|f| !f.trim().is_empty()),
                fingerprint: j.fingerprint,
            },
            ActionName::ServiceConfigRollback => CommandAction::ServiceConfigRollback {
                service: module(j.module)?,
                fingerprint: field(j.fingerprint, "--to <fingerprint>")?,
                file: j.file.filter(|f| !f.trim().is_empty()),
            },
            ActionName::ServiceDeploy => {
                let artifact = j.artifact.filter(|a| !a.trim().is_empty());
                let sha256 = j.sha256.filter(|h| !h.trim().is_empty());
                if artifact.is_some() && sha256.is_none() {
                    return Err(RequestError::NeedsField {
                        action: action_text,
                        flag: "--sha256 with --artifact",
                    });
                }
                CommandAction::ServiceDeploy {
                    service: module(j.module)?,
                    version: field(j.version, "--version")?,
                    artifact,
                    sha256,
                    ready_samples: j.ready_samples,
                }
            }
            ActionName::ServiceRole => CommandAction::ServiceRole {
                service: module(j.module)?,
                role: field(j.role, "--role")?,
                group: j.group.filter(|g| !g.trim().is_empty()),
            },
            ActionName::TrafficSwitch => CommandAction::TrafficSwitch {
                service: module(j.module)?,
            },
            ActionName::Unknown => return Err(RequestError::BadAction { action: j.action }),
        };
        Ok(CommandRequest {
            action,
            targets: Targets {
                hosts: j.hosts,
                all: j.all,
                labels: j.labels,
            },
            deadline_ms: j.deadline_ms,
            issued_by: j.issued_by,
        })
    }
}

impl From<CommandRequest> for CommandRequestJson {
    fn from(r: CommandRequest) -> Self {
        let mut j = CommandRequestJson {
            action: r.action.name().as_str().to_owned(),
            hosts: r.targets.hosts,
            all: r.targets.all,
            labels: r.targets.labels,
            deadline_ms: r.deadline_ms,
            issued_by: r.issued_by,
            ..CommandRequestJson::default()
        };
        match r.action {
            CommandAction::Pause { module }
            | CommandAction::Resume { module }
            | CommandAction::Disable { module }
            | CommandAction::Enable { module } => j.module = Some(module),
            CommandAction::Noop
            | CommandAction::Drain
            | CommandAction::Undrain
            | CommandAction::ResumeAll => {}
            CommandAction::BackupRun { module, job } => (j.module, j.job) = (module, job),
            CommandAction::RestoreTest { module, job } => (j.module, j.job) = (module, Some(job)),
            CommandAction::Restore {
                module,
                job,
                archive,
                target,
            } => {
                (j.module, j.job) = (module, job);
                (j.archive, j.target) = (Some(archive), Some(target));
            }
            CommandAction::ConfigApply {
                module,
                config_toml,
                fingerprint,
            } => {
                j.module = Some(module);
                (j.config_toml, j.fingerprint) = (Some(config_toml), fingerprint);
            }
            CommandAction::ConfigRollback {
                module,
                fingerprint,
            } => (j.module, j.fingerprint) = (Some(module), Some(fingerprint)),
            CommandAction::ServiceStart { service }
            | CommandAction::ServiceStop { service }
            | CommandAction::ServiceRestart { service }
            | CommandAction::ServiceReload { service } => j.module = Some(service),
            CommandAction::App {
                service,
                action,
                args,
            } => {
                j.module = Some(service);
                (j.app_action, j.args) = (Some(action), args);
            }
            CommandAction::ServiceConfigApply {
                service,
                file,
                content,
                fingerprint,
            } => {
                (j.module, j.file) = (Some(service), file);
                (j.content, j.fingerprint) = (Some(content), fingerprint);
            }
            CommandAction::ServiceConfigRollback {
                service,
                file,
                fingerprint,
            } => {
                (j.module, j.file) = (Some(service), file);
                j.fingerprint = Some(fingerprint);
            }
            CommandAction::ServiceDeploy {
                service,
                version,
                artifact,
                sha256,
                ready_samples,
            } => {
                (j.module, j.version) = (Some(service), Some(version));
                (j.artifact, j.sha256, j.ready_samples) = (artifact, sha256, ready_samples);
            }
            CommandAction::ServiceRole {
                service,
                role,
                group,
            } => {
                (j.module, j.role, j.group) = (Some(service), Some(role), group);
            }
            CommandAction::TrafficSwitch { service } => j.module = Some(service),
        }
        j
    }
}
