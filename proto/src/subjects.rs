//! Every subject, stream, consumer and bucket name used on the bus, in one place.

/// JetStream stream holding every event (`ops.evt.>`).
pub const EVENTS_STREAM: &str = "OPS_EVENTS";
/// JetStream stream holding commands for agents (`ops.cmd.>`).
pub const COMMANDS_STREAM: &str = "OPS_CMDS";
/// JetStream stream parking malformed messages (`ops.dlq.>`).
pub const DLQ_STREAM: &str = "OPS_DLQ";
/// KV bucket holding the coordinators' leader lease.
pub const LEADER_BUCKET: &str = "ops_leader";

/// Filter matching every agent event subject (`ops.evt.<host>.<kind>`).
pub const EVENTS_ALL: &str = "ops.evt.>";
/// Filter matching every coordinator event subject (`ops.coord.<name>.<kind>`). Only
/// coordinator credentials may publish here, so coordinator-only bodies (leadership, command
/// issued, alert transitions, notifications, liveness verdicts) are accepted only from it; the
/// `OPS_EVENTS` stream holds both spaces.
pub const COORD_EVENTS_ALL: &str = "ops.coord.>";
/// Filter matching every command subject.
pub const COMMANDS_ALL: &str = "ops.cmd.>";
/// Where `OPS_CMDS` republishes each command once it is stored (the agents' fast path),
/// `ops.fastcmd.<host>`: the stream's RePublish source.
pub const COMMAND_COPIES_FROM: &str = "ops.cmd.>";
/// RePublish destination of `COMMAND_COPIES_FROM`. No principal may publish here (only the
/// server's republish does); each agent may subscribe to its own `command_copy_subject`.
pub const COMMAND_COPIES_TO: &str = "ops.fastcmd.>";
/// Filter matching every dead-letter subject.
pub const DLQ_ALL: &str = "ops.dlq.>";

/// Prefix of the request/reply query API.
pub const API_PREFIX: &str = "ops.api";
/// `opsctl status` and friends: the fleet view.
pub const API_STATUS: &str = "ops.api.status";
/// `opsctl failover`: only the active coordinator acts on it.
pub const API_FAILOVER: &str = "ops.api.failover";
/// `opsctl pause|resume|...`: issue a command; only the active coordinator acts on it.
pub const API_COMMAND: &str = "ops.api.command";
/// `opsctl commands`: the command ledger.
pub const API_COMMANDS: &str = "ops.api.commands";
/// `opsctl hosts`: one summary row per host with its liveness, paged.
pub const API_HOSTS: &str = "ops.api.hosts";
/// `opsctl backups`: the backup catalog per host and job.
pub const API_BACKUPS: &str = "ops.api.backups";
/// Request/reply: the configs one module of one host ran with (`opsctl config show|history|diff`).
pub const API_CONFIGS: &str = "ops.api.configs";
/// `opsctl incidents`: log incidents per host and file.
pub const API_INCIDENTS: &str = "ops.api.incidents";
/// `opsctl alerts`: alert states as folded from the log.
pub const API_ALERTS: &str = "ops.api.alerts";
/// `opsctl services`: supervised services per host and service.
pub const API_SERVICES: &str = "ops.api.services";
/// `opsctl service config history`: the config file snapshots of services per host.
pub const API_SERVICE_CONFIGS: &str = "ops.api.service_configs";
/// `opsctl rollout start|pause|resume|promote|abort|undo` (identified:
/// `ops.api.as.<operator>.<role>.rollout`; the active coordinator answers).
pub const API_ROLLOUT: &str = "ops.api.rollout";
/// `opsctl rollouts`, `opsctl rollout status`: rollouts and their steps.
pub const API_ROLLOUTS: &str = "ops.api.rollouts";
/// `opsctl service failover <group>` (identified: `ops.api.as.<operator>.<role>.service_failover`;
/// the active coordinator answers).
pub const API_SERVICE_FAILOVER: &str = "ops.api.service_failover";
/// `opsctl service groups`: active/standby groups, their members and last failovers.
pub const API_GROUPS: &str = "ops.api.groups";
/// `opsctl silence add|expire` (identified: `ops.api.as.<operator>.<role>.silence`; the
/// active coordinator answers).
pub const API_SILENCE: &str = "ops.api.silence";
/// `opsctl alerts ack` (identified: `ops.api.as.<operator>.<role>.alert_ack`; the active
/// coordinator answers).
pub const API_ALERT_ACK: &str = "ops.api.alert_ack";
/// `opsctl silence list`: silences, paged.
pub const API_SILENCES: &str = "ops.api.silences";
/// `opsctl drills`: the declared drills, their schedule, last runs and next due.
pub const API_DRILLS: &str = "ops.api.drills";
/// `opsctl drill run <name>` (identified: `ops.api.as.<operator>.<role>.drill`; the active
/// coordinator answers once the run ended).
pub const API_DRILL: &str = "ops.api.drill";

/// Prefix of API requests that carry the operator's identity and role in the subject:
/// `ops.api.as.<operator>.<role>.<verb>`. NATS permissions let each operator publish only
/// under its own name and only with the roles it holds (`deploy/nats/auth.conf`), so the
/// coordinator can trust both (recorded as `issued_by` and `issued_role`).
pub const API_AS_PREFIX: &str = "ops.api.as";
/// Every identified command request (coordinators subscribe to it).
pub const API_COMMAND_AS_ALL: &str = "ops.api.as.*.*.command";
/// Every identified failover request (coordinators subscribe to it).
pub const API_FAILOVER_AS_ALL: &str = "ops.api.as.*.*.failover";
/// Every identified rollout request (coordinators subscribe to it).
pub const API_ROLLOUT_AS_ALL: &str = "ops.api.as.*.*.rollout";
/// Every identified service failover request (coordinators subscribe to it).
pub const API_SERVICE_FAILOVER_AS_ALL: &str = "ops.api.as.*.*.service_failover";
/// Every identified silence request (coordinators subscribe to it).
pub const API_SILENCE_AS_ALL: &str = "ops.api.as.*.*.silence";
/// Every identified drill run request (coordinators subscribe to it).
pub const API_DRILL_AS_ALL: &str = "ops.api.as.*.*.drill";
/// Every identified alert ack request (coordinators subscribe to it).
pub const API_ALERT_ACK_AS_ALL: &str = "ops.api.as.*.*.alert_ack";

/// `ops.api.as.<operator>.<role>.silence`: add or expire a silence as `operator`.
pub fn api_silence_as(operator: &str, role: crate::api::Role) -> String {
    format!("{API_AS_PREFIX}.{operator}.{}.silence", role.as_str())
}

/// `ops.api.as.<operator>.<role>.drill`: run a drill now as `operator`.
pub fn api_drill_as(operator: &str, role: crate::api::Role) -> String {
    format!("{API_AS_PREFIX}.{operator}.{}.drill", role.as_str())
}

/// `ops.api.as.<operator>.<role>.alert_ack`: acknowledge an alert as `operator`.
pub fn api_alert_ack_as(operator: &str, role: crate::api::Role) -> String {
    format!("{API_AS_PREFIX}.{operator}.{}.alert_ack", role.as_str())
}

/// Prefix of requests a coordinator forwards for a login of its web console:
/// `ops.api.console.<verb>`, body [`crate::api::ConsoleRequest`] (`{via, operator, role,
/// request}`). Only coordinator credentials may publish here (`deploy/nats/auth.conf`): a
/// coordinator vouches for its console's logins; the reply must be the forwarding
/// coordinator's own inbox (`_INBOX.<via>.`).
pub const API_CONSOLE_PREFIX: &str = "ops.api.console";
/// Every forwarded console request (coordinators subscribe to it).
pub const API_CONSOLE_ALL: &str = "ops.api.console.>";

/// `ops.api.console.<verb>`: a console login's request for `verb` (`command`, `failover`, ...).
pub fn api_console(verb: &str) -> String {
    format!("{API_CONSOLE_PREFIX}.{verb}")
}

/// The plain subject a forwarded console request stands for: `ops.api.console.<verb>` →
/// `ops.api.<verb>`; `None` for any other subject or an empty or multi-token verb.
pub fn parse_api_console(subject: &str) -> Option<String> {
    let verb = subject
        .strip_prefix(API_CONSOLE_PREFIX)?
        .strip_prefix('.')?;
    if verb.is_empty() || verb.contains('.') {
        return None;
    }
    Some(format!("{API_PREFIX}.{verb}"))
}

/// `ops.api.as.<operator>.<role>.service_failover`: fail a service group over as `operator`.
pub fn api_service_failover_as(operator: &str, role: crate::api::Role) -> String {
    format!(
        "{API_AS_PREFIX}.{operator}.{}.service_failover",
        role.as_str()
    )
}

/// `ops.api.as.<operator>.<role>.rollout`: act on rollouts as `operator` in `role`.
pub fn api_rollout_as(operator: &str, role: crate::api::Role) -> String {
    format!("{API_AS_PREFIX}.{operator}.{}.rollout", role.as_str())
}

/// `ops.api.as.<operator>.<role>.command`: issue a command as `operator` acting in `role`.
pub fn api_command_as(operator: &str, role: crate::api::Role) -> String {
    format!("{API_AS_PREFIX}.{operator}.{}.command", role.as_str())
}

/// `ops.api.as.<operator>.<role>.failover`: ask for a failover as `operator` in `role`.
pub fn api_failover_as(operator: &str, role: crate::api::Role) -> String {
    format!("{API_AS_PREFIX}.{operator}.{}.failover", role.as_str())
}

/// Splits `ops.api.as.<operator>.<role>.<verb>[.<rest>]` into
/// `(operator, role, "ops.api.<verb>[.<rest>]")`. An unknown role token is `None`.
pub fn parse_api_as(subject: &str) -> Option<(&str, crate::api::Role, String)> {
    let rest = subject.strip_prefix(API_AS_PREFIX)?.strip_prefix('.')?;
    let (operator, rest) = rest.split_once('.')?;
    let (role, verb) = rest.split_once('.')?;
    if operator.is_empty() || verb.is_empty() {
        return None;
    }
    let role = crate::api::Role::parse(role)?;
    Some((operator, role, format!("{API_PREFIX}.{verb}")))
}

/// Subject an agent publishes one event on: `ops.evt.<host>.<kind>`.
pub fn event_subject(host: &str, kind: &str) -> String {
    format!("ops.evt.{host}.{kind}")
}

/// Filter for every event of one host: `ops.evt.<host>.>`.
pub fn host_events_filter(host: &str) -> String {
    format!("ops.evt.{host}.>")
}

/// Subject the active coordinator sends one host's commands on: `ops.cmd.<host>`.
pub fn command_subject(host: &str) -> String {
    format!("ops.cmd.{host}")
}

/// Where the server republishes each command to `host` once `OPS_CMDS` stored it, in stream
/// order, with the stream's sequence headers: `ops.fastcmd.<host>` (the agent's fast path).
pub fn command_copy_subject(host: &str) -> String {
    format!("ops.fastcmd.{host}")
}

/// Subject a coordinator parks a malformed message on: `ops.dlq.<source>.<reason>`.
pub fn dlq_subject(source: &str, reason: &str) -> String {
    format!("ops.dlq.{source}.{reason}")
}

/// API subject addressed to one named coordinator: `ops.api.<verb>.<coordinator>`.
pub fn api_subject_for(verb_subject: &str, coordinator: &str) -> String {
    format!("{verb_subject}.{coordinator}")
}

/// Durable consumer name of one coordinator on the events stream.
pub fn coordinator_consumer(name: &str) -> String {
    format!("coord-{name}")
}

/// Subject a coordinator publishes one of its own events on: `ops.coord.<name>.<kind>`.
pub fn coordinator_event_subject(name: &str, kind: &str) -> String {
    format!("ops.coord.{name}.{kind}")
}

/// Filter for every event of one coordinator: `ops.coord.<name>.>`.
pub fn coordinator_events_filter(name: &str) -> String {
    format!("ops.coord.{name}.>")
}

/// Who published an event, as its subject says: an agent (`ops.evt.<host>.<kind>`) or a
/// coordinator (`ops.coord.<name>.<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publisher<'a> {
    Agent { host: &'a str, kind: &'a str },
    Coordinator { name: &'a str, kind: &'a str },
}

/// Splits an event subject of either space into who published it and the kind.
pub fn parse_any_event_subject(subject: &str) -> Option<Publisher<'_>> {
    if let Some((host, kind)) = parse_event_subject(subject) {
        return Some(Publisher::Agent { host, kind });
    }
    let rest = subject.strip_prefix("ops.coord.")?;
    let (name, kind) = rest.split_once('.')?;
    if name.is_empty() || kind.is_empty() || kind.contains('.') {
        return None;
    }
    Some(Publisher::Coordinator { name, kind })
}

/// Splits `ops.evt.<host>.<kind>` into `(host, kind)`.
pub fn parse_event_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix("ops.evt.")?;
    let (host, kind) = rest.split_once('.')?;
    if host.is_empty() || kind.is_empty() || kind.contains('.') {
        return None;
    }
    Some((host, kind))
}

/// Why a name cannot be used as one subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("must not be empty")]
    Empty,
    #[error("longer than {max} characters")]
    TooLong { max: usize },
    #[error("character {ch:?} not allowed; use letters, digits, '-' and '_'")]
    BadChar { ch: char },
}

/// Host, module and coordinator names become subject tokens, so they are restricted to
/// `[A-Za-z0-9_-]{1,64}`.
pub fn validate_token(name: &str) -> Result<(), TokenError> {
    const MAX: usize = 64;
    if name.is_empty() {
        return Err(TokenError::Empty);
    }
    if name.len() > MAX {
        return Err(TokenError::TooLong { max: MAX });
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some(ch) => Err(TokenError::BadChar { ch }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_subjects() {
        assert_eq!(api_console("command"), "ops.api.console.command");
        assert_eq!(
            parse_api_console("ops.api.console.command").as_deref(),
            Some(API_COMMAND)
        );
        assert_eq!(parse_api_console("ops.api.console.command.blue"), None);
        assert_eq!(parse_api_console("ops.api.console."), None);
        assert_eq!(parse_api_console("ops.api.command"), None);
    }

    #[test]
    fn event_subject_round_trips() {
        let s = event_subject("web-01", "heartbeat");
        assert_eq!(s, "ops.evt.web-01.heartbeat");
        assert_eq!(parse_event_subject(&s), Some(("web-01", "heartbeat")));
    }

    #[test]
    fn identified_api_subjects_round_trip() {
        use crate::api::Role;
        let s = api_command_as("alice", Role::Operator);
        assert_eq!(s, "ops.api.as.alice.operator.command");
        assert_eq!(
            parse_api_as(&s),
            Some(("alice", Role::Operator, API_COMMAND.to_owned()))
        );
        assert_eq!(
            parse_api_as("ops.api.as.bob.admin.command.blue"),
            Some(("bob", Role::Admin, "ops.api.command.blue".to_owned()))
        );
        assert_eq!(
            parse_api_as(&api_failover_as("carol", Role::Operator)),
            Some(("carol", Role::Operator, API_FAILOVER.to_owned()))
        );
        for bad in [
            "ops.api.command",
            "ops.api.as.alice",
            "ops.api.as.alice.command",
            "ops.api.as.alice.root.command",
            "ops.api.as..operator.command",
            "ops.api.asx.a.operator.b",
        ] {
            assert_eq!(parse_api_as(bad), None, "{bad}");
        }
    }

    #[test]
    fn coordinator_and_agent_event_spaces_are_told_apart() {
        assert_eq!(
            parse_any_event_subject(&coordinator_event_subject("blue", "leadership")),
            Some(Publisher::Coordinator {
                name: "blue",
                kind: "leadership"
            })
        );
        assert_eq!(
            parse_any_event_subject(&event_subject("blue", "heartbeat")),
            Some(Publisher::Agent {
                host: "blue",
                kind: "heartbeat"
            })
        );
        for s in [
            "ops.coord.",
            "ops.coord.b",
            "ops.coord.b.k.x",
            "ops.coordx.b.k",
        ] {
            assert_eq!(parse_any_event_subject(s), None, "{s}");
        }
    }

    #[test]
    fn malformed_event_subjects_are_rejected() {
        for s in [
            "ops.evt.",
            "ops.evt.h",
            "ops.evt..k",
            "ops.evt.h.",
            "ops.cmd.h.k",
            "ops.evt.h.k.x",
        ] {
            assert_eq!(parse_event_subject(s), None, "{s}");
        }
    }

    #[test]
    fn tokens_reject_subject_metacharacters() {
        assert!(validate_token("db_01-a").is_ok());
        assert_eq!(validate_token(""), Err(TokenError::Empty));
        assert_eq!(validate_token("a.b"), Err(TokenError::BadChar { ch: '.' }));
        assert_eq!(validate_token("a*"), Err(TokenError::BadChar { ch: '*' }));
        assert_eq!(validate_token("a>"), Err(TokenError::BadChar { ch: '>' }));
        assert_eq!(validate_token("a b"), Err(TokenError::BadChar { ch: ' ' }));
        assert_eq!(
            validate_token(&"x".repeat(65)),
            Err(TokenError::TooLong { max: 64 })
        );
    }
}
