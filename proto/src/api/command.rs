//! `ops.api.failover`, `ops.api.command` and `ops.api.commands`: asking for a step-down,
//! issuing commands and reading their lifecycles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{empty_is_none, ActionName, Liveness, Responder, Role};

/// Request for `ops.api.failover`: the active coordinator releases its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverRequest {
    /// Hand the lease to this coordinator; otherwise whichever standby is first takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Informational, like `CommandRequest::issued_by`: the coordinator records the operator
    /// named by the subject; on a plain subject (only with `[api] allow_unidentified`) this
    /// name marked " (unverified)".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Reply to `ops.api.failover`, from the coordinator that released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverReply {
    pub responder: Responder,
    /// The epoch that ended.
    pub released_epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Request for `ops.api.command`: one action for a set of hosts. Its JSON is
/// [`CommandRequestJson`]'s, written from and checked into this type, so a request whose
/// action lacks a field it needs cannot be built (`CommandRequest::try_from`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CommandRequestJson", into = "CommandRequestJson")]
pub struct CommandRequest {
    pub action: CommandAction,
    pub targets: Targets,
    /// The command expires this long after it is issued, in milliseconds: required (0 is
    /// refused) and at most the coordinator's `[api] max_deadline`.
    pub deadline_ms: u64,
    /// Informational: the coordinator records the operator named by the request's subject
    /// (`ops.api.as.<operator>.<role>.command`); on a plain subject (allowed only by
    /// `[api] allow_unidentified`) it records this value marked " (unverified)".
    pub issued_by: String,
}

/// Which hosts a command goes to: the named ones, every host whose heartbeat labels include
/// all of `labels`, or with `all` every host the coordinator knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub hosts: Vec<String>,
    pub all: bool,
    pub labels: BTreeMap<String, String>,
}

/// What a command does, with exactly the fields its action takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandAction {
    Pause {
        module: String,
    },
    Resume {
        module: String,
    },
    Disable {
        module: String,
    },
    Enable {
        module: String,
    },
    Noop,
    /// Maintenance: pause every running module but the heartbeat, and flush the outbox.
    Drain,
    /// Leave maintenance: resume exactly the modules the drain paused.
    Undrain,
    /// Resume every paused module (whoever paused it).
    ResumeAll,
    /// `job` absent: every job of the module. `module` absent: an agent with one backup
    /// module (or one holding the job) infers it.
    BackupRun {
        module: Option<String>,
        job: Option<String>,
    },
    /// A restore test of `job` now (as its `verify_restore` schedule would). `module`
    /// absent: an agent with one backup module (or one holding the job) infers it.
    RestoreTest {
        module: Option<String>,
        job: String,
    },
    /// `job` absent: the archive's job. `target`: the directory to restore into, on the
    /// agent's host.
    Restore {
        module: Option<String>,
        job: Option<String>,
        archive: String,
        target: String,
    },
    /// `config_toml`: the module's `[[modules]]` entry as TOML; `fingerprint`, when given,
    /// must be that config's.
    ConfigApply {
        module: String,
        config_toml: String,
        fingerprint: Option<String>,
    },
    /// Back to the config with this fingerprint (or prefix of it), found in the log.
    ConfigRollback {
        module: String,
        fingerprint: String,
    },
    /// Lifecycle of a managed service (a `service` module instance).
    ServiceStart {
        service: String,
    },
    ServiceStop {
        service: String,
    },
    ServiceRestart {
        service: String,
    },
    ServiceReload {
        service: String,
    },
    /// An action forwarded to the service's own control endpoint.
    App {
        service: String,
        action: String,
        args: BTreeMap<String, String>,
    },
    /// New content for a declared config file of a service (`file` absent: its only one);
    /// `fingerprint`, when given, must be the content's sha256.
    ServiceConfigApply {
        service: String,
        file: Option<String>,
        content: String,
        fingerprint: Option<String>,
    },
    /// Back to a content of the file the agent kept, by fingerprint (or prefix).
    ServiceConfigRollback {
        service: String,
        file: Option<String>,
        fingerprint: String,
    },
    /// Put `version` of a service in place and run it: from `artifact` (URL or local path,
    /// with its `sha256`), or a release the host keeps when `artifact` is absent.
    ServiceDeploy {
        service: String,
        version: String,
        artifact: Option<String>,
        sha256: Option<String>,
        /// Consecutive ready probe results to wait for after the restart (absent: the
        /// service's own readiness).
        ready_samples: Option<u32>,
    },
    /// Tell a member of an active/standby group its role (`active`, `standby`).
    ServiceRole {
        service: String,
        role: String,
        group: Option<String>,
    },
    /// Blue/green: send the traffic of the service's slot group to this service.
    TrafficSwitch {
        service: String,
    },
}

impl CommandAction {
    pub fn name(&self) -> ActionName {
        match self {
            CommandAction::Pause { .. } => ActionName::Pause,
            CommandAction::Resume { .. } => ActionName::Resume,
            CommandAction::Disable { .. } => ActionName::Disable,
            CommandAction::Enable { .. } => ActionName::Enable,
            CommandAction::Noop => ActionName::Noop,
            CommandAction::Drain => ActionName::Drain,
            CommandAction::Undrain => ActionName::Undrain,
            CommandAction::ResumeAll => ActionName::ResumeAll,
            CommandAction::BackupRun { .. } => ActionName::BackupRun,
            CommandAction::RestoreTest { .. } => ActionName::RestoreTest,
            CommandAction::Restore { .. } => ActionName::Restore,
            CommandAction::ConfigApply { .. } => ActionName::ConfigApply,
            CommandAction::ConfigRollback { .. } => ActionName::ConfigRollback,
            CommandAction::ServiceStart { .. } => ActionName::ServiceStart,
            CommandAction::ServiceStop { .. } => ActionName::ServiceStop,
            CommandAction::ServiceRestart { .. } => ActionName::ServiceRestart,
            CommandAction::ServiceReload { .. } => ActionName::ServiceReload,
            CommandAction::App { .. } => ActionName::App,
            CommandAction::ServiceConfigApply { .. } => ActionName::ServiceConfigApply,
            CommandAction::ServiceConfigRollback { .. } => ActionName::ServiceConfigRollback,
            CommandAction::ServiceDeploy { .. } => ActionName::ServiceDeploy,
            CommandAction::ServiceRole { .. } => ActionName::ServiceRole,
            CommandAction::TrafficSwitch { .. } => ActionName::TrafficSwitch,
        }
    }

    /// The module the action names, if any (a service is its `service` module's name).
    pub fn module(&self) -> Option<&str> {
        match self {
            CommandAction::ServiceStart { service }
            | CommandAction::ServiceStop { service }
            | CommandAction::ServiceRestart { service }
            | CommandAction::ServiceReload { service }
            | CommandAction::App { service, .. }
            | CommandAction::ServiceConfigApply { service, .. }
            | CommandAction::ServiceConfigRollback { service, .. }
            | CommandAction::ServiceDeploy { service, .. }
            | CommandAction::ServiceRole { service, .. }
            | CommandAction::TrafficSwitch { service } => Some(service),
            CommandAction::Pause { module }
            | CommandAction::Resume { module }
            | CommandAction::Disable { module }
            | CommandAction::Enable { module }
            | CommandAction::ConfigApply { module, .. }
            | CommandAction::ConfigRollback { module, .. } => Some(module),
            CommandAction::BackupRun { module, .. }
            | CommandAction::Restore { module, .. }
            | CommandAction::RestoreTest { module, .. } => module.as_deref(),
            CommandAction::Noop
            | CommandAction::Drain
            | CommandAction::Undrain
            | CommandAction::ResumeAll => None,
        }
    }
}

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

/// One command as issued to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCommand {
    pub host: String,
    pub command_id: String,
    /// Set when the coordinator does not see the host up (`late`, `lost`): the command waits
    /// in `OPS_CMDS` until the agent returns or the deadline passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Liveness>,
    /// When the coordinator last heard from the host (set with `liveness`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_seen_unix_ms: i64,
}

/// A host a request's `--all`, `--label` or glob matched but that was not sent the command,
/// and why (it has no such module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedHost {
    pub host: String,
    pub reason: String,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Reply to `ops.api.command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    pub responder: Responder,
    /// The epoch every command was stamped with.
    pub epoch: u64,
    pub commands: Vec<IssuedCommand>,
    /// The commands' deadline (absent from replies of older coordinators).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deadline_unix_ms: i64,
    /// Hosts matched but skipped, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedHost>,
}

/// Request for `ops.api.commands`: the ledger, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandsRequest {
    /// Only these command ids.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Only commands for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Reply to `ops.api.commands`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandsReply {
    pub responder: Responder,
    pub commands: Vec<CommandView>,
}

/// One command's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandView {
    pub id: String,
    pub target: String,
    pub epoch: u64,
    pub issued_by: String,
    /// The role the operator acted in (`operator`, `admin`); empty for an unverified request.
    #[serde(default, with = "empty_is_none")]
    pub issued_role: Option<Role>,
    /// Empty (none) for a command whose issue event is not in the log.
    #[serde(with = "empty_is_none")]
    pub action: Option<ActionName>,
    pub module: String,
    pub deadline_unix_ms: i64,
    pub state: CommandState,
    pub detail: String,
    /// More than 1 means the command ran twice.
    pub accepted_count: u32,
    pub history: Vec<CommandStepView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStepView {
    pub state: CommandState,
    pub at_unix_ms: i64,
    pub by: String,
    pub detail: String,
}

impl CommandView {
    /// Completed, failed, rejected or expired: nothing more will happen.
    pub fn is_final(&self) -> bool {
        self.state.is_final()
    }
}

/// Where a command is in its lifecycle; in JSON and in stored rows the lowercase name.
/// `unknown`: a lifecycle event arrived for a command whose issue event is not in the log.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Issued,
    Accepted,
    Completed,
    Failed,
    Rejected,
    Expired,
    #[default]
    #[serde(other)]
    Unknown,
}

impl CommandState {
    /// Completed, failed, rejected or expired: nothing moves it any more.
    pub fn is_final(self) -> bool {
        self.rank() == 3
    }

    /// Lifecycle order: unknown, issued, accepted, then every final state alike.
    pub fn rank(self) -> u8 {
        match self {
            CommandState::Unknown => 0,
            CommandState::Issued => 1,
            CommandState::Accepted => 2,
            CommandState::Completed
            | CommandState::Failed
            | CommandState::Rejected
            | CommandState::Expired => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Unknown => "unknown",
            CommandState::Issued => "issued",
            CommandState::Accepted => "accepted",
            CommandState::Completed => "completed",
            CommandState::Failed => "failed",
            CommandState::Rejected => "rejected",
            CommandState::Expired => "expired",
        }
    }
}

impl std::str::FromStr for CommandState {
    type Err = String;

    /// The lowercase name, as `as_str` writes it.
    fn from_str(text: &str) -> Result<Self, String> {
        use CommandState::*;
        [
            Issued, Accepted, Completed, Failed, Rejected, Expired, Unknown,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| format!("no command state {text:?}"))
    }
}

impl std::fmt::Display for CommandState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
