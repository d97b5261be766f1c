//! Operator identity on API requests: the identified subjects a coordinator listens on
//! (`ops.api.as.<operator>.<role>.<verb>[.<coordinator>]`) and how the name and role in the
//! subject become a command's `issued_by` / `issued_role` (a failover's `requested_by`). NATS permissions let each operator publish only under its
//! own name and roles (`deploy/nats/auth.conf`), so neither can be forged by another operator.

use opsfleet_proto::api::Role;
use opsfleet_proto::subjects;

/// An operator name and the role it acts in, both read from a request's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub operator: String,
    pub role: Role,
}

/// The identified subjects one coordinator subscribes to, besides the plain API verbs.
pub fn subscriptions(coordinator: &str) -> Vec<String> {
    let mut out = Vec::new();
    for all in [
        subjects::API_COMMAND_AS_ALL,
        subjects::API_FAILOVER_AS_ALL,
        subjects::API_ROLLOUT_AS_ALL,
        subjects::API_SERVICE_FAILOVER_AS_ALL,
        subjects::API_SILENCE_AS_ALL,
        subjects::API_ALERT_ACK_AS_ALL,
        subjects::API_DRILL_AS_ALL,
    ] {
        out.push(all.to_owned());
        out.push(subjects::api_subject_for(all, coordinator));
    }
    out
}

/// A request subject with the identity taken out: `(plain subject, identity)`. The identity is
/// `None` for plain subjects and for names that are not valid subject tokens.
pub fn split(subject: &str) -> (String, Option<Identity>) {
    match subjects::parse_api_as(subject) {
        Some((operator, role, plain)) if subjects::validate_token(operator).is_ok() => (
            plain,
            Some(Identity {
                operator: operator.to_owned(),
                role,
            }),
        ),
        _ => (subject.to_owned(), None),
    }
}

/// Who an action is recorded as coming from: the operator named by the subject and the role
/// it acted in, or (a plain subject, accepted only with `[api] allow_unidentified`) the body's
/// claim marked " (unverified)" and no role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    pub name: String,
    pub role: Option<Role>,
}

impl Issuer {
    /// The role as recorded in events (`issued_role`, `requested_role`): empty if unverified.
    pub fn role_text(&self) -> String {
        self.role.map(|r| r.as_str().to_owned()).unwrap_or_default()
    }
}

/// Suffix of a name taken from a request body rather than from the subject.
pub const UNVERIFIED: &str = " (unverified)";
/// The one annotation a verified name may carry: `alice (drill)` (the failover drill's no-ops).
pub const DRILL: &str = " (drill)";
/// Longest name taken from a request body.
const CLAIM_MAX_CHARS: usize = 64;

/// The issuer of a request whose body claims `claimed`. With an identity (from the subject),
/// the verified name wins over the body; the body may only add ` (drill)` to it. Without one,
/// the claim (control characters dropped, cut to 64 characters; `anonymous` if empty) is kept
/// and marked unverified.
pub fn issuer(claimed: &str, identity: Option<&Identity>) -> Issuer {
    match identity {
        Some(id) => {
            let drill = claimed.strip_prefix(id.operator.as_str()) == Some(DRILL);
            Issuer {
                name: if drill {
                    format!("{}{DRILL}", id.operator)
                } else {
                    id.operator.clone()
                },
                role: Some(id.role),
            }
        }
        None => {
            let clean: String = claimed
                .chars()
                .filter(|c| !c.is_control())
                .take(CLAIM_MAX_CHARS)
                .collect();
            let clean = clean.trim();
            let name = if clean.is_empty() { "anonymous" } else { clean };
            Issuer {
                name: format!("{name}{UNVERIFIED}"),
                role: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_comes_from_the_subject_not_the_body() {
        let (plain, id) = split("ops.api.as.alice.operator.command");
        assert_eq!(plain, subjects::API_COMMAND);
        let who = issuer("bob", id.as_ref());
        assert_eq!(
            who,
            Issuer {
                name: "alice".into(),
                role: Some(Role::Operator)
            }
        );
        assert_eq!(who.role_text(), "operator");
        let alice = Identity {
            operator: "alice".into(),
            role: Role::Admin,
        };
        for (claimed, recorded) in [
            ("alice (drill)", "alice (drill)"),
            ("alicex (drill)", "alice"),
            ("bob (drill)", "alice"),
            ("alice", "alice"),
            ("alice (approved by carol)", "alice"),
            ("", "alice"),
        ] {
            assert_eq!(issuer(claimed, Some(&alice)).name, recorded, "{claimed}");
        }
    }

    #[test]
    fn unidentified_claims_are_marked_unverified() {
        let who = issuer("carol", None);
        assert_eq!(who.name, "carol (unverified)");
        assert_eq!(who.role, None);
        assert_eq!(who.role_text(), "");
        assert_eq!(issuer("  ", None).name, "anonymous (unverified)");
        assert_eq!(issuer("a\u{1b}[31mb\n", None).name, "a[31mb (unverified)");
        let long = "x".repeat(500);
        assert_eq!(issuer(&long, None).name.len(), 64 + UNVERIFIED.len());
    }

    #[test]
    fn addressed_and_plain_subjects() {
        assert_eq!(
            split("ops.api.as.alice.admin.command.blue"),
            (
                "ops.api.command.blue".to_owned(),
                Some(Identity {
                    operator: "alice".to_owned(),
                    role: Role::Admin
                })
            )
        );
        assert_eq!(
            split("ops.api.command"),
            ("ops.api.command".to_owned(), None)
        );
        assert_eq!(
            split("ops.api.as.alice.root.command"),
            ("ops.api.as.alice.root.command".to_owned(), None)
        );
        assert_eq!(
            subscriptions("blue"),
            [
                "ops.api.as.*.*.command",
                "ops.api.as.*.*.command.blue",
                "ops.api.as.*.*.failover",
                "ops.api.as.*.*.failover.blue",
                "ops.api.as.*.*.rollout",
                "ops.api.as.*.*.rollout.blue",
                "ops.api.as.*.*.service_failover",
                "ops.api.as.*.*.service_failover.blue",
                "ops.api.as.*.*.silence",
                "ops.api.as.*.*.silence.blue",
                "ops.api.as.*.*.alert_ack",
                "ops.api.as.*.*.alert_ack.blue",
                "ops.api.as.*.*.drill",
                "ops.api.as.*.*.drill.blue"
            ]
        );
    }
}
