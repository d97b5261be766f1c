//! Operator identity on API requests: the identified subjects a coordinator listens on
//! (`ops.api.as.<operator>.<role>.<verb>[.<coordinator>]`) and how the name in the subject
//! becomes a command's `issued_by`. NATS permissions let each operator publish only under its
//! own name and roles (`deploy/nats/auth.conf`), so neither can be forged by another operator.

use opsfleet_proto::api::{CommandRequest, Role};
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
    for all in [subjects::API_COMMAND_AS_ALL, subjects::API_FAILOVER_AS_ALL] {
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

/// Records the identity from the subject as the command's `issued_by`, overriding whatever the
/// request body claims; an annotation after the verified name is kept (`alice (drill)`).
/// Without an identity (plain subject, e.g. a deployment without per-operator permissions) the
/// body's value is kept.
pub fn stamp(req: &mut CommandRequest, operator: Option<&str>) {
    if let Some(op) = operator {
        let annotated = req
            .issued_by
            .strip_prefix(op)
            .is_some_and(|rest| rest.starts_with(" ("));
        if !annotated {
            req.issued_by = op.to_owned();
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
        let mut req = CommandRequest {
            issued_by: "bob".into(),
            ..Default::default()
        };
        stamp(&mut req, id.as_ref().map(|i| i.operator.as_str()));
        assert_eq!(req.issued_by, "alice");
        for (claimed, recorded) in [
            ("alice (drill)", "alice (drill)"),
            ("alicex (drill)", "alice"),
            ("bob (drill)", "alice"),
            ("alice", "alice"),
        ] {
            let mut req = CommandRequest {
                issued_by: claimed.into(),
                ..Default::default()
            };
            stamp(&mut req, Some("alice"));
            assert_eq!(req.issued_by, recorded, "{claimed}");
        }
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
        let mut req = CommandRequest {
            issued_by: "carol".into(),
            ..Default::default()
        };
        stamp(&mut req, None);
        assert_eq!(req.issued_by, "carol");
        assert_eq!(
            subscriptions("blue"),
            [
                "ops.api.as.*.*.command",
                "ops.api.as.*.*.command.blue",
                "ops.api.as.*.*.failover",
                "ops.api.as.*.*.failover.blue"
            ]
        );
    }
}
