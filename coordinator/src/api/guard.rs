//! Who may ask what of the API, decided before a request is served (pure): the reply subject
//! must be the requester's own inbox, an action needs its role as the request's subject names
//! it (never as the body claims), and plain command/failover requests need
//! `[api] allow_unidentified`. The counters of what was refused live here too.

use std::sync::atomic::{AtomicU64, Ordering};

use opsfleet_proto::api::{ApiRefusals, Role};

use crate::identity::Identity;

/// Prefix of every inbox a NATS client makes replies come to.
pub const INBOX_PREFIX: &str = "_INBOX.";

/// The reply subject of a request is not the requester's inbox: the request is dropped
/// unanswered (answering would let a requester make the coordinator publish on any subject its
/// own permissions allow, e.g. overwrite the leader lease `$KV.ops_leader.leader`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reply subject {reply:?} is not the requester's inbox (must start with {wanted:?})")]
pub struct ForeignReply {
    pub reply: String,
    pub wanted: String,
}

/// Checks that `reply` is an inbox: `_INBOX.<token>...`, and `_INBOX.<operator>.<token>...`
/// for a request on an identified subject. Wildcards and whitespace are never an inbox.
pub fn check_reply(reply: &str, identity: Option<&Identity>) -> Result<(), ForeignReply> {
    let wanted = match identity {
        Some(id) => format!("{INBOX_PREFIX}{}.", id.operator),
        None => INBOX_PREFIX.to_owned(),
    };
    check_inbox(reply, wanted)
}

/// `reply` is `wanted` followed by at least one more token, with no wildcard or blank.
fn check_inbox(reply: &str, wanted: String) -> Result<(), ForeignReply> {
    let well_formed = reply
        .strip_prefix(&wanted)
        .is_some_and(|rest| !rest.is_empty())
        && reply
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">")
        && !reply.contains(|c: char| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(())
    } else {
        Err(ForeignReply {
            reply: reply.to_owned(),
            wanted,
        })
    }
}

/// A request a coordinator forwarded for a login of its web console
/// (`ops.api.console.<verb>`), checked: what it stands for and who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The plain verb subject it is served as (`ops.api.<verb>`).
    pub plain: String,
    /// The console login's operator and role, vouched for by the forwarding coordinator.
    pub identity: Identity,
    /// The verb's own request body.
    pub request: Vec<u8>,
}

/// Why a forwarded console request is dropped unanswered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleRefusal {
    #[error("not a console subject (ops.api.console.<verb>)")]
    Subject,
    #[error("bad console request body: {0}")]
    Body(String),
    #[error(transparent)]
    Reply(#[from] ForeignReply),
}

/// Checks a forwarded console request (pure): subject `ops.api.console.<verb>`, a body whose
/// `via` (the forwarding coordinator) and `operator` are subject tokens, and a reply subject
/// in the forwarding coordinator's own inbox (`_INBOX.<via>.`). Who may publish the subject
/// at all is NATS's decision: only coordinator credentials (`deploy/nats/auth.conf`).
pub fn check_console(
    subject: &str,
    payload: &[u8],
    reply: &str,
) -> Result<Forwarded, ConsoleRefusal> {
    use opsfleet_proto::subjects::{parse_api_console, validate_token};
    let plain = parse_api_console(subject).ok_or(ConsoleRefusal::Subject)?;
    let body: opsfleet_proto::api::ConsoleRequest =
        serde_json::from_slice(payload).map_err(|e| ConsoleRefusal::Body(e.to_string()))?;
    for (what, name) in [("via", &body.via), ("operator", &body.operator)] {
        validate_token(name).map_err(|e| ConsoleRefusal::Body(format!("{what}: {e}")))?;
    }
    check_inbox(reply, format!("{INBOX_PREFIX}{}.", body.via))?;
    let request =
        serde_json::to_vec(&body.request).map_err(|e| ConsoleRefusal::Body(e.to_string()))?;
    Ok(Forwarded {
        plain,
        identity: Identity {
            operator: body.operator,
            role: body.role,
        },
        request,
    })
}

/// Why an action was refused (answered with this text as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{what} needs role {needs}; you ({operator}) acted as {acted_as}")]
    Role {
        what: String,
        needs: Role,
        operator: String,
        acted_as: Role,
    },
    #[error(
        "plain {subject} is refused: this coordinator takes commands and failovers only from \
         identified operators on ops.api.as.<operator>.<role>.* (opsctl --operator NAME); \
         [api] allow_unidentified = true accepts them, for an insecure local demo only"
    )]
    Unidentified { subject: String },
}

impl Refusal {
    /// The role the refused request needed, if a role was the reason.
    pub fn needs_role(&self) -> Option<Role> {
        match self {
            Refusal::Role { needs, .. } => Some(*needs),
            Refusal::Unidentified { .. } => None,
        }
    }
}

/// What a request acts with: its identity (from the subject), or unidentified.
fn check(
    identity: Option<&Identity>,
    what: &str,
    needs: Role,
    plain_subject: &str,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    match identity {
        Some(id) if id.role >= needs => Ok(()),
        Some(id) => Err(Refusal::Role {
            what: what.to_owned(),
            needs,
            operator: id.operator.clone(),
            acted_as: id.role,
        }),
        None if allow_unidentified => Ok(()),
        None => Err(Refusal::Unidentified {
            subject: plain_subject.to_owned(),
        }),
    }
}

/// May this request issue `action`? An unknown action passes here; the dispatcher refuses it
/// with the list of actions.
pub fn check_command(
    identity: Option<&Identity>,
    action: &str,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    let needs = Role::required_for_action(action).unwrap_or(Role::Viewer);
    check(
        identity,
        action,
        needs,
        opsfleet_proto::subjects::API_COMMAND,
        allow_unidentified,
    )
}

/// May this request ask for a failover?
pub fn check_failover(
    identity: Option<&Identity>,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    check(
        identity,
        "failover",
        Role::FAILOVER,
        opsfleet_proto::subjects::API_FAILOVER,
        allow_unidentified,
    )
}

/// May this request act on a rollout with `op`?
pub fn check_rollout(
    identity: Option<&Identity>,
    op: opsfleet_proto::api::RolloutOp,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    check(
        identity,
        &format!("rollout {}", op.as_str()),
        op.required_role(),
        opsfleet_proto::subjects::API_ROLLOUT,
        allow_unidentified,
    )
}

/// May this request fail an active/standby group over (`ops.api.service_failover`)?
pub fn check_service_failover(
    identity: Option<&Identity>,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    check(
        identity,
        "service_failover",
        Role::Operator,
        opsfleet_proto::subjects::API_SERVICE_FAILOVER,
        allow_unidentified,
    )
}

/// May this request run a drill now (`ops.api.drill`)?
pub fn check_drill_run(
    identity: Option<&Identity>,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    check(
        identity,
        "drill run",
        Role::Operator,
        opsfleet_proto::subjects::API_DRILL,
        allow_unidentified,
    )
}

/// May this request add or expire a silence (`what`: `silence add`, `silence expire`)?
pub fn check_silence(
    identity: Option<&Identity>,
    what: &str,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    check(
        identity,
        what,
        opsfleet_proto::api::SILENCE_ROLE,
        opsfleet_proto::subjects::API_SILENCE,
        allow_unidentified,
    )
}

/// May this request acknowledge an alert?
pub fn check_alert_ack(
    identity: Option<&Identity>,
    allow_unidentified: bool,
) -> Result<(), Refusal> {
    check(
        identity,
        "alerts ack",
        opsfleet_proto::api::SILENCE_ROLE,
        opsfleet_proto::subjects::API_ALERT_ACK,
        allow_unidentified,
    )
}

/// Refused requests since start (shown in `ops.api.status` as `api_refused`).
#[derive(Debug, Default)]
pub struct Counters {
    foreign_reply: AtomicU64,
    role: AtomicU64,
    unidentified: AtomicU64,
}

impl Counters {
    pub fn foreign_reply(&self) {
        self.foreign_reply.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, r: &Refusal) {
        let c = match r {
            Refusal::Role { .. } => &self.role,
            Refusal::Unidentified { .. } => &self.unidentified,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ApiRefusals {
        ApiRefusals {
            foreign_reply: self.foreign_reply.load(Ordering::Relaxed),
            role: self.role.load(Ordering::Relaxed),
            unidentified: self.unidentified.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(operator: &str, role: Role) -> Identity {
        Identity {
            operator: operator.to_owned(),
            role,
        }
    }

    #[test]
    fn a_service_failover_needs_an_identified_operator() {
        let viewer = id("vic", Role::Viewer);
        let err = check_service_failover(Some(&viewer), true).unwrap_err();
        assert_eq!(err.needs_role(), Some(Role::Operator));
        assert!(
            err.to_string()
                .starts_with("service_failover needs role operator; you (vic) acted as viewer"),
            "{err}"
        );
        assert!(check_service_failover(Some(&id("olga", Role::Operator)), false).is_ok());
        assert!(check_service_failover(Some(&id("ada", Role::Admin)), false).is_ok());
        let err = check_service_failover(None, false).unwrap_err();
        assert!(matches!(err, Refusal::Unidentified { .. }));
        assert!(check_service_failover(None, true).is_ok());
    }

    #[test]
    fn a_forwarded_console_request_replies_only_to_its_coordinator() {
        let body =
            br#"{"via":"blue","operator":"olga","role":"operator","request":{"action":"noop"}}"#;
        let ok = check_console("ops.api.console.command", body, "_INBOX.blue.console.1").unwrap();
        assert_eq!(ok.plain, "ops.api.command");
        assert_eq!(ok.identity, id("olga", Role::Operator));
        assert_eq!(ok.request, br#"{"action":"noop"}"#);
        for reply in [
            "_INBOX.green.x",
            "_INBOX.olga.x",
            "_INBOX.blue.",
            "$KV.ops_leader.leader",
        ] {
            let err = check_console("ops.api.console.command", body, reply).unwrap_err();
            assert!(matches!(err, ConsoleRefusal::Reply(_)), "{reply}: {err}");
        }
        assert_eq!(
            check_console("ops.api.command", body, "_INBOX.blue.1").unwrap_err(),
            ConsoleRefusal::Subject
        );
        for bad in [
            &br#"{"via":"blue","operator":"a.b","role":"operator","request":{}}"#[..],
            br#"{"via":">","operator":"olga","role":"operator","request":{}}"#,
            br#"{"via":"blue","operator":"olga","role":"root","request":{}}"#,
            b"not json",
        ] {
            let err = check_console("ops.api.console.command", bad, "_INBOX.blue.1").unwrap_err();
            assert!(matches!(err, ConsoleRefusal::Body(_)), "{err}");
        }
    }

    #[test]
    fn silences_and_acks_need_an_operator() {
        let viewer = id("vic", Role::Viewer);
        let err = check_silence(Some(&viewer), "silence add", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "silence add needs role operator; you (vic) acted as viewer"
        );
        let err = check_alert_ack(Some(&viewer), true).unwrap_err();
        assert_eq!(err.needs_role(), Some(Role::Operator));
        for who in [id("olga", Role::Operator), id("ada", Role::Admin)] {
            assert!(check_silence(Some(&who), "silence expire", false).is_ok());
            assert!(check_alert_ack(Some(&who), false).is_ok());
        }
        assert!(matches!(
            check_silence(None, "silence add", false),
            Err(Refusal::Unidentified { subject }) if subject == "ops.api.silence"
        ));
        assert!(matches!(
            check_alert_ack(None, false),
            Err(Refusal::Unidentified { subject }) if subject == "ops.api.alert_ack"
        ));
        assert!(check_silence(None, "silence add", true).is_ok());
    }

    #[test]
    fn replies_go_only_to_the_requesters_inbox() {
        assert!(check_reply("_INBOX.abc123.7", None).is_ok());
        assert!(check_reply("_INBOX.alice.abc.1", None).is_ok());
        for foreign in [
            "$KV.ops_leader.leader",
            "ops.cmd.web-01",
            "ops.evt.web-01.heartbeat",
            "$JS.API.STREAM.DELETE.OPS_EVENTS",
            "_INBOX.",
            "_INBOX",
            "_inbox.x",
            "_INBOX.>",
            "_INBOX.*.x",
            "_INBOX..x",
            "_INBOX.a b",
            "x._INBOX.a",
        ] {
            let err = check_reply(foreign, None).unwrap_err();
            assert_eq!(err.reply, foreign);
            assert_eq!(err.wanted, "_INBOX.");
        }
        let alice = id("alice", Role::Operator);
        assert!(check_reply("_INBOX.alice.abc.1", Some(&alice)).is_ok());
        for foreign in [
            "_INBOX.bob.abc.1",
            "_INBOX.alicex.abc",
            "_INBOX.alice.",
            "_INBOX.alice",
            "_INBOX.abc123",
            "$KV.ops_leader.leader",
        ] {
            let err = check_reply(foreign, Some(&alice)).unwrap_err();
            assert_eq!(err.wanted, "_INBOX.alice.", "{foreign}");
        }
    }

    #[test]
    fn actions_need_their_role_from_the_subject() {
        let op = id("alice", Role::Operator);
        let admin = id("carol", Role::Admin);
        let viewer = id("vera", Role::Viewer);
        for action in [
            "pause",
            "resume",
            "disable",
            "enable",
            "noop",
            "drain",
            "undrain",
            "resume_all",
            "backup_run",
            "restore_test",
        ] {
            assert_eq!(check_command(Some(&op), action, false), Ok(()), "{action}");
            assert_eq!(
                check_command(Some(&admin), action, false),
                Ok(()),
                "{action}"
            );
            let err = check_command(Some(&viewer), action, false).unwrap_err();
            assert_eq!(err.needs_role(), Some(Role::Operator), "{action}");
        }
        for action in ["restore", "config_apply", "config_rollback"] {
            assert_eq!(
                check_command(Some(&admin), action, false),
                Ok(()),
                "{action}"
            );
            let err = check_command(Some(&op), action, false).unwrap_err();
            assert_eq!(err.needs_role(), Some(Role::Admin));
        }
        let err = check_command(Some(&op), "config_apply", true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config_apply needs role admin; you (alice) acted as operator"
        );
        assert_eq!(check_failover(Some(&op), false), Ok(()));
        let err = check_failover(Some(&viewer), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failover needs role operator; you (vera) acted as viewer"
        );
    }

    #[test]
    fn plain_requests_need_the_insecure_switch() {
        let err = check_command(None, "pause", false).unwrap_err();
        assert!(matches!(&err, Refusal::Unidentified { subject } if subject == "ops.api.command"));
        assert!(err.to_string().contains("allow_unidentified"), "{err}");
        assert_eq!(err.needs_role(), None);
        assert_eq!(check_command(None, "config_apply", true), Ok(()));
        assert!(matches!(
            check_failover(None, false),
            Err(Refusal::Unidentified { subject }) if subject == "ops.api.failover"
        ));
        assert_eq!(check_failover(None, true), Ok(()));
    }

    #[test]
    fn counters_count_by_reason() {
        let c = Counters::default();
        c.foreign_reply();
        c.foreign_reply();
        c.refused(&check_command(None, "pause", false).unwrap_err());
        c.refused(&check_failover(Some(&id("vera", Role::Viewer)), false).unwrap_err());
        assert_eq!(
            c.snapshot(),
            ApiRefusals {
                foreign_reply: 2,
                role: 1,
                unidentified: 1
            }
        );
    }
}
