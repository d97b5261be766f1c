//! Who may say what in the event stream, decided at ingest before anything is folded (pure):
//! coordinator-only bodies only from a coordinator's own subject space, command lifecycle
//! bodies only from the host the command targets, every other body only from its own host's
//! agent subject; and nothing the server relayed onto a subject (`published`). A refused event
//! is parked, never folded (`ingest`).

use opsfleet_proto::pb::event::Body;
use opsfleet_proto::subjects::Publisher;
pub use opsfleet_proto::{body_class as class, BodyClass};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};

use crate::projection::{commands, Fleet};

/// Why an event is refused. `reason()` is the dead-letter subject token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{kind} is a coordinator-only body, published on agent subject of {host}")]
    CoordinatorBodyFromAgent { host: String, kind: &'static str },
    #[error("{kind} is not a coordinator body, published on coordinator subject of {name}")]
    AgentBodyFromCoordinator { name: String, kind: &'static str },
    #[error("module {module:?} is not allowed on the subject of {publisher} (coordinator events use module {COORDINATOR_MODULE:?}, agents may not)")]
    WrongModule { publisher: String, module: String },
    #[error(
        "{kind} for command {command_id}, which is not in the ledger (no command_issued for it)"
    )]
    UnknownCommand {
        kind: &'static str,
        command_id: String,
    },
    #[error("{kind} for command {command_id} from {host}, but the command targets {target}")]
    NotTheTarget {
        kind: &'static str,
        command_id: String,
        host: String,
        target: String,
    },
    #[error("envelope host {host} is not the publisher {publisher} named by the subject")]
    HostMismatch { host: String, publisher: String },
    #[error("message on {subject} carries the server relay header {header}: a copy the server relayed there (direct get to a chosen reply subject), not a publication")]
    RelayCopy {
        subject: String,
        header: &'static str,
    },
}

impl Refusal {
    /// Short stable label for metrics and dead-letter subjects (`ops.dlq.events.<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::CoordinatorBodyFromAgent { .. } => "coordinator_body_from_agent",
            Refusal::AgentBodyFromCoordinator { .. } => "agent_body_from_coordinator",
            Refusal::WrongModule { .. } => "wrong_module",
            Refusal::UnknownCommand { .. } => "lifecycle_unknown_command",
            Refusal::NotTheTarget { .. } => "lifecycle_not_target",
            Refusal::HostMismatch { .. } => "publisher_mismatch",
            Refusal::RelayCopy { .. } => "relay_copy",
        }
    }
}

/// Refuses a message on `subject` whose header `names` mark it as a server relay copy
/// (`opsfleet_proto::relay`): the subject then names no publisher at all. Checked before the
/// bytes are decoded. Pure.
pub fn published<'a>(
    subject: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), Refusal> {
    match opsfleet_proto::relay::relay_header(names) {
        Some(header) => Err(Refusal::RelayCopy {
            subject: subject.to_owned(),
            header,
        }),
        None => Ok(()),
    }
}

/// Decides whether `ev`, published on a subject of `publisher`, may be folded into `fleet`
/// (the state after every event admitted before it, in stream order, so a `command_issued`
/// earlier in the same batch counts). Pure: no clock, no I/O.
pub fn admit(fleet: &Fleet, ev: &EventEnvelope, publisher: Publisher<'_>) -> Result<(), Refusal> {
    let kind = ev.kind();
    match publisher {
        Publisher::Coordinator { name, .. } => {
            if ev.host != name {
                return Err(Refusal::HostMismatch {
                    host: ev.host.clone(),
                    publisher: name.to_owned(),
                });
            }
            if ev.module != COORDINATOR_MODULE {
                return Err(Refusal::WrongModule {
                    publisher: name.to_owned(),
                    module: ev.module.clone(),
                });
            }
            match (class(&ev.body), &ev.body) {
                (BodyClass::Coordinator, _) | (_, Body::CommandExpired(_)) => Ok(()),
                _ => Err(Refusal::AgentBodyFromCoordinator {
                    name: name.to_owned(),
                    kind,
                }),
            }
        }
        Publisher::Agent { host, .. } => {
            if ev.host != host {
                return Err(Refusal::HostMismatch {
                    host: ev.host.clone(),
                    publisher: host.to_owned(),
                });
            }
            let class = class(&ev.body);
            if class == BodyClass::Coordinator {
                return Err(Refusal::CoordinatorBodyFromAgent {
                    host: host.to_owned(),
                    kind,
                });
            }
            if ev.module == COORDINATOR_MODULE {
                return Err(Refusal::WrongModule {
                    publisher: host.to_owned(),
                    module: ev.module.clone(),
                });
            }
            if class == BodyClass::Lifecycle {
                return lifecycle_from(fleet, ev, host, kind);
            }
            Ok(())
        }
    }
}

/// A lifecycle body from agent `host`: the command must be in the ledger (its
/// `command_issued` folded) and target `host`.
fn lifecycle_from(
    fleet: &Fleet,
    ev: &EventEnvelope,
    host: &str,
    kind: &'static str,
) -> Result<(), Refusal> {
    let command_id = commands::command_id(&ev.body).unwrap_or_default();
    let issued = fleet.command(command_id).filter(|c| !c.target.is_empty());
    match issued {
        None => Err(Refusal::UnknownCommand {
            kind,
            command_id: command_id.to_owned(),
        }),
        Some(c) if c.target != host => Err(Refusal::NotTheTarget {
            kind,
            command_id: command_id.to_owned(),
            host: host.to_owned(),
            target: c.target.clone(),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
#[path = "admit_tests.rs"]
mod tests;
