//! Every state, level and role the API and the coordinator's rows carry, as serde enums
//! spelled as the strings they replaced (`snake_case`).

use serde::{Deserialize, Serialize};

wire_state! {
    /// A module's run state as its agent last reported it (`ModuleRunState` on the wire); in
    /// JSON and in stored rows `running`, `paused`, `disabled`, `failed` or `unknown`.
    ModuleState from ModuleRunState {
        Running => "running",
        Paused => "paused",
        Disabled => "disabled",
        Failed => "failed",
    }
}

wire_state! {
    /// A coordinator's role (`LeaderRole` on the wire): `active`, `standby`, or `unknown` while
    /// no election runs.
    LeaderRole from LeaderRole {
        Active => "active",
        Standby => "standby",
    }
}

wire_state! {
    /// A disk's level as its agent last reported it (`DiskLevel` on the wire); in JSON and in
    /// stored rows `ok`, `warn`, `crit` or `unknown`.
    DiskLevel from DiskLevel {
        Ok => "ok",
        Warn => "warn",
        Crit => "crit",
    }
}

wire_state! {
    /// An alert's state (`AlertState` on the wire): `pending`, `firing`, `resolved`.
    AlertState from AlertState {
        Pending => "pending",
        Firing => "firing",
        Resolved => "resolved",
    }
}

wire_state! {
    /// What became of one notification (`NotifyOutcome` on the wire).
    NotifyOutcome from NotifyOutcome {
        Sent => "sent",
        Failed => "failed",
        DryRun => "dry_run",
        RateLimited => "rate_limited",
    }
}

wire_state! {
    /// A health probe's status (`HealthStatus` on the wire).
    ProbeStatus from HealthStatus {
        Starting => "starting",
        Ready => "ready",
        Degraded => "degraded",
        Failed => "failed",
    }
}

wire_state! {
    /// A supervised service's state (`ServiceRunState` on the wire).
    ServiceRunState from ServiceRunState {
        Starting => "starting",
        Running => "running",
        Stopping => "stopping",
        Stopped => "stopped",
        Failed => "failed",
    }
}

wire_state! {
    /// A sentinel file's status (`SentinelStatus` on the wire).
    SentinelStatus from SentinelStatus {
        Fresh => "fresh",
        Stale => "stale",
        Missing => "missing",
    }
}

wire_state! {
    /// A host's liveness as the answering coordinator judges it: `up` (reported within 2x its
    /// heartbeat interval), `late` (within 5x), `lost` (beyond, or declared lost by the active
    /// coordinator and silent since), `unknown` (never sent a heartbeat).
    Liveness {
        Up => "up",
        Late => "late",
        Lost => "lost",
    }
}

wire_state! {
    /// How loud an alert is, lowest first: `info`, `warning`, `critical`. The wire carries it
    /// as text (`AlertTransition.severity`); routes compare it by this order.
    Severity {
        Info => "info",
        Warning => "warning",
        Critical => "critical",
    }
}

wire_state! {
    /// A backup job's state from its catalog: `ok` (latest outcome a success), `failed`,
    /// `running` or `never`.
    BackupState {
        Ok => "ok",
        Failed => "failed",
        Running => "running",
        Never => "never",
    }
}

wire_state! {
    /// The name of a command action; `unknown` for one this version does not know.
    ActionName {
        Pause => "pause",
        Resume => "resume",
        Disable => "disable",
        Enable => "enable",
        Noop => "noop",
        Drain => "drain",
        Undrain => "undrain",
        ResumeAll => "resume_all",
        BackupRun => "backup_run",
        RestoreTest => "restore_test",
        Restore => "restore",
        ConfigApply => "config_apply",
        ConfigRollback => "config_rollback",
        ServiceStart => "service_start",
        ServiceStop => "service_stop",
        ServiceRestart => "service_restart",
        ServiceReload => "service_reload",
        App => "app",
        ServiceConfigApply => "service_config_apply",
        ServiceConfigRollback => "service_config_rollback",
        ServiceDeploy => "service_deploy",
        ServiceRole => "service_role",
        TrafficSwitch => "traffic_switch",
    }
}

impl Severity {
    /// The severities a rule or a route may name, lowest first (`unknown` is none of them).
    pub const NAMED: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// `text` as a severity a config may name; `None` for anything else, `unknown` included.
    pub fn named(text: &str) -> Option<Severity> {
        Severity::NAMED.into_iter().find(|s| s.as_str() == text)
    }

    /// The names a config may use, for error messages: `info, warning, critical`.
    pub fn names() -> String {
        Severity::NAMED.map(Severity::as_str).join(", ")
    }
}

impl ActionName {
    /// The role the action needs; `None` for an unknown action.
    pub fn required_role(self) -> Option<Role> {
        use ActionName::*;
        match self {
            Pause | Resume | ResumeAll | Disable | Enable | Noop | Drain | Undrain | BackupRun
            | RestoreTest | ServiceStart | ServiceStop | ServiceRestart | ServiceReload | App
            | ServiceRole => Some(Role::Operator),
            Restore
            | ConfigApply
            | ConfigRollback
            | ServiceConfigApply
            | ServiceConfigRollback
            | ServiceDeploy
            | TrafficSwitch => Some(Role::Admin),
            Unknown => None,
        }
    }
}

/// Text that names none of a state's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {text:?} (one of {known})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub text: String,
    pub known: String,
}

/// Serde for an optional state written as `""` when absent (rows and replies that held an
/// empty string before they were typed): `#[serde(with = "empty_is_none")]`. Text naming no
/// value of the state reads as absent too, so a row written by a newer version still loads.
pub mod empty_is_none {
    use serde::de::{DeserializeOwned, IntoDeserializer as _};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        let value: Result<T, serde::de::value::Error> = T::deserialize(text.into_deserializer());
        Ok(value.ok())
    }
}

/// What an operator identity may do. Roles are ordered: each includes the rights of the ones
/// before it. They are enforced by NATS permissions on `ops.api.as.<operator>.<role>.>` (the
/// coordinator reads the role from the subject, never from a body) and recorded on every
/// command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read verbs and `opsctl events --follow`.
    Viewer,
    /// Run-time control: pause/resume/disable/enable, noop, drain, backup run, failover.
    Operator,
    /// Changes what runs on hosts: config apply/rollback, restore.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The role a command action needs; `None` for an unknown action.
    pub fn required_for_action(action: &str) -> Option<Role> {
        action.parse::<ActionName>().ok()?.required_role()
    }

    /// The role `ops.api.failover` needs.
    pub const FAILOVER: Role = Role::Operator;
}

impl std::str::FromStr for Role {
    type Err = UnknownValue;

    fn from_str(text: &str) -> Result<Self, UnknownValue> {
        Role::parse(text).ok_or_else(|| UnknownValue {
            what: "Role",
            text: text.to_owned(),
            known: "viewer, operator, admin".to_owned(),
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

wire_state! {
    /// A probed certificate's level against its check's `warn_days` / `crit_days`
    /// (`CertLevel` on the wire): `ok`, `warn`, `crit`, or `unknown` when the check judges no
    /// certificate (or has not seen one yet).
    CertLevel from CertLevel {
        Ok => "ok",
        Warn => "warn",
        Crit => "crit",
    }
}
