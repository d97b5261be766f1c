//! `ops.api.failover`, `ops.api.command` and `ops.api.commands`: asking for a step-down,
//! issuing commands and reading their lifecycles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{empty_is_none, ActionName, Liveness, Responder, Role};

mod json;
pub use json::*;

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
