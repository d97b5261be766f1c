//! opsctl's exit codes and how a failure is printed: 0 ok, 1 the operation failed, 2 usage,
//! 3 cluster unreachable (NATS, or no coordinator answering); the error chain on one line,
//! each cause once.

use std::process::ExitCode;

use opsfleet_cli::client::ClientError;

/// The exit codes, as `opsctl --help` documents them.
pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const UNREACHABLE: u8 = 3;

/// A usage error found after parsing (a missing target, a bad flag value): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Nothing in the cluster answered (no coordinator): exit 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// The exit code of a failure: the first cause in the chain that says which kind it is.
pub fn code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>() {
            return USAGE;
        }
        if cause.is::<Unreachable>() {
            return UNREACHABLE;
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return match c {
                ClientError::Bus(_)
                | ClientError::NoResponders { .. }
                | ClientError::Timeout { .. }
                | ClientError::Request { .. }
                | ClientError::Gather { .. } => UNREACHABLE,
                _ => FAILED,
            };
        }
    }
    FAILED
}

/// The chain on one line, leaving out a cause whose text the line already holds (NATS
/// errors repeat their source in their own message).
pub fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Prints the failure (inert: it can carry a coordinator's reply text) and its exit code.
pub fn report(e: &anyhow::Error) -> ExitCode {
    eprintln!("opsctl: {}", opsfleet_cli::sanitize::inert(&message(e)));
    ExitCode::from(code(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_cause_is_said_once() {
        let e = anyhow::Error::new(std::io::Error::other("Connection refused (os error 111)"))
            .context("IO error: Connection refused (os error 111)")
            .context("cannot connect to NATS at nats://127.0.0.1:1");
        assert_eq!(
            message(&e),
            "cannot connect to NATS at nats://127.0.0.1:1: IO error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn a_rollout_request_nobody_answers_is_unreachable_and_a_refusal_is_a_failure() {
        use opsfleet_cli::rollout::RolloutError;
        let act = |source| {
            anyhow::Error::new(RolloutError::Act {
                op: "start",
                source,
            })
        };
        let timeout = act(ClientError::Timeout {
            subject: "ops.api.as.carol.admin.rollout".into(),
            timeout: std::time::Duration::from_secs(5),
        });
        assert_eq!(code(&timeout), UNREACHABLE);
        let refused = act(ClientError::Refused {
            responder: "blue".into(),
            error: "rollout start needs role admin".into(),
            needs_role: Some(opsfleet_proto::api::Role::Admin),
        });
        assert_eq!(code(&refused), FAILED);
        assert_eq!(
            message(&refused),
            "rollout start: coordinator blue refused the request: rollout start needs role admin"
        );
        let none = anyhow::Error::new(RolloutError::NotFound {
            what: "of service \"web\"".into(),
        });
        assert_eq!(code(&none), FAILED);
    }

    #[test]
    fn kinds_map_to_their_codes() {
        assert_eq!(code(&anyhow::anyhow!("x")), FAILED);
        assert_eq!(code(&Usage("u".into()).into()), USAGE);
        assert_eq!(
            code(&anyhow::Error::new(Unreachable("n".into())).context("c")),
            UNREACHABLE
        );
    }
}
