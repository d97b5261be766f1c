//! Issuing commands to agents (the active coordinator only): validate the request, resolve the
//! target hosts, record one `command_issued` event per host, check the lease again, then send
//! each command on `ops.cmd.<host>` (stream `OPS_CMDS`, so an offline agent gets it when it
//! returns). A sweep marks commands nobody picked up before their deadline as expired.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use opsfleet_proto::api::{CommandReply, CommandRequest, IssuedCommand};
use opsfleet_proto::pb::{self, command::Action};
use opsfleet_proto::subjects;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::emit::{EmitError, Emitter};
use crate::projection::Fleet;
use crate::state::Shared;

/// Commands still `issued` this long after their deadline are marked expired by the active
/// coordinator (the grace lets an agent's own answer arrive first).
pub const EXPIRY_GRACE_MS: i64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(
        "{name} is not active (lease holder: {holder}); send commands to the active coordinator"
    )]
    NotActive { name: String, holder: String },
    #[error("lost the lease while issuing; the {count} recorded command(s) were not sent and will expire")]
    LostLease { count: usize },
    #[error("unknown action {action:?}; use pause, resume, disable, enable, noop or drain")]
    BadAction { action: String },
    #[error("action {action} needs a module name")]
    NeedsModule { action: String },
    #[error("no target hosts: name hosts or ask for all")]
    NoTargets,
    #[error("unknown host(s): {unknown} (known: {known})")]
    UnknownHosts { unknown: String, known: String },
    #[error("cannot record the commands")]
    Emit(#[from] EmitError),
    #[error("cannot send command {command_id} to {host}")]
    Publish {
        host: String,
        command_id: String,
        #[source]
        source: async_nats::Error,
    },
}

/// The wire action for a request (pure).
pub fn wire_action(action: &str, module: Option<&str>) -> Result<Action, DispatchError> {
    let module_action = || {
        module
            .filter(|m| !m.is_empty())
            .map(|m| pb::ModuleAction {
                module: m.to_owned(),
            })
            .ok_or_else(|| DispatchError::NeedsModule {
                action: action.to_owned(),
            })
    };
    Ok(match action {
        "pause" => Action::Pause(module_action()?),
        "resume" => Action::Resume(module_action()?),
        "disable" => Action::Disable(module_action()?),
        "enable" => Action::Enable(module_action()?),
        "noop" => Action::Noop(pb::Noop {}),
        "drain" => Action::Drain(pb::Drain {}),
        other => {
            return Err(DispatchError::BadAction {
                action: other.to_owned(),
            })
        }
    })
}

/// The hosts a request targets, checked against the hosts the fleet knows (pure).
pub fn resolve_targets(
    fleet: &Fleet,
    hosts: &[String],
    all: bool,
) -> Result<Vec<String>, DispatchError> {
    let known: BTreeSet<&str> = fleet.hosts().map(|h| h.host.as_str()).collect();
    let targets: Vec<String> = if all {
        known.iter().map(|h| (*h).to_owned()).collect()
    } else {
        let unique: BTreeSet<&String> = hosts.iter().collect();
        let unknown: Vec<&str> = unique
            .iter()
            .filter(|h| !known.contains(h.as_str()))
            .map(|h| h.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(DispatchError::UnknownHosts {
                unknown: unknown.join(", "),
                known: known.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        unique.into_iter().cloned().collect()
    };
    if targets.is_empty() {
        return Err(DispatchError::NoTargets);
    }
    Ok(targets)
}

/// Commands still waiting for their target after deadline + grace (pure).
pub fn due_for_expiry(fleet: &Fleet, now_unix_ms: i64, grace_ms: i64) -> Vec<(String, i64)> {
    fleet
        .commands()
        .filter(|c| c.state == "issued" && c.deadline_unix_ms > 0)
        .filter(|c| now_unix_ms > c.deadline_unix_ms + grace_ms)
        .map(|c| (c.id.clone(), c.deadline_unix_ms))
        .collect()
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Issues commands on behalf of the active coordinator.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
    emitter: Emitter,
    js: jetstream::Context,
}

impl Dispatcher {
    pub fn new(shared: Arc<Shared>, emitter: Emitter, js: jetstream::Context) -> Self {
        Dispatcher {
            shared,
            emitter,
            js,
        }
    }

    fn acting_epoch(&self) -> Result<u64, DispatchError> {
        let view = self.shared.leadership.view();
        view.acting_epoch(tokio::time::Instant::now())
            .ok_or_else(|| DispatchError::NotActive {
                name: self.shared.name.clone(),
                holder: view.holder.clone().unwrap_or_else(|| "unknown".to_owned()),
            })
    }

    /// Records and sends one command per target host; returns their ids.
    pub async fn issue(&self, req: &CommandRequest) -> Result<CommandReply, DispatchError> {
        let epoch = self.acting_epoch()?;
        let action = wire_action(&req.action, req.module.as_deref())?;
        let targets = resolve_targets(&self.shared.fleet(), &req.hosts, req.all)?;
        let issued_at = now_unix_ms();
        let deadline = issued_at + i64::try_from(req.deadline_ms).unwrap_or(i64::MAX / 2);
        let commands: Vec<pb::Command> = targets
            .iter()
            .map(|host| pb::Command {
                id: Uuid::now_v7().to_string(),
                epoch,
                issued_by: req.issued_by.clone(),
                target: host.clone(),
                deadline_unix_ms: deadline,
                issued_unix_ms: issued_at,
                action: Some(action.clone()),
            })
            .collect();
        let records = commands
            .iter()
            .map(|c| {
                pb::event::Body::CommandIssued(pb::CommandIssued {
                    command_id: c.id.clone(),
                    target: c.target.clone(),
                    epoch,
                    issued_by: c.issued_by.clone(),
                    action: req.action.clone(),
                    module: req.module.clone().unwrap_or_default(),
                    deadline_unix_ms: deadline,
                })
            })
            .collect();
        self.emitter
            .emit_all(records, Duration::from_secs(30))
            .await?;
        // Fencing at the source: recording took time; act only if still active in this term.
        if self.acting_epoch().ok() != Some(epoch) {
            return Err(DispatchError::LostLease {
                count: commands.len(),
            });
        }
        let mut acks = Vec::with_capacity(commands.len());
        for c in &commands {
            let msg = jetstream::message::PublishMessage::build()
                .payload(c.encode_to_vec().into())
                .message_id(&c.id);
            acks.push(
                self.js
                    .send_publish(subjects::command_subject(&c.target), msg)
                    .await,
            );
        }
        for (c, sent) in commands.iter().zip(acks) {
            let acked = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
                Err(e) => Err(e.into()),
            };
            acked.map_err(|source| DispatchError::Publish {
                host: c.target.clone(),
                command_id: c.id.clone(),
                source,
            })?;
        }
        info!(epoch, action = %req.action, hosts = commands.len(), issued_by = %req.issued_by, "commands issued");
        Ok(CommandReply {
            responder: crate::api::responder(&self.shared, 0),
            epoch,
            commands: commands
                .into_iter()
                .map(|c| IssuedCommand {
                    host: c.target,
                    command_id: c.id,
                })
                .collect(),
        })
    }

    /// While active, marks commands nobody picked up before their deadline as expired.
    pub async fn sweep_expired(self, every: Duration, cancel: CancellationToken) {
        let mut sent: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.acting_epoch().is_err() {
                continue;
            }
            let due: Vec<(String, i64)> =
                due_for_expiry(&self.shared.fleet(), now_unix_ms(), EXPIRY_GRACE_MS)
                    .into_iter()
                    .filter(|(id, _)| !sent.contains(id))
                    .collect();
            if due.is_empty() {
                continue;
            }
            let bodies = due
                .iter()
                .map(|(id, deadline)| {
                    pb::event::Body::CommandExpired(pb::CommandExpired {
                        command_id: id.clone(),
                        deadline_unix_ms: *deadline,
                    })
                })
                .collect();
            match self.emitter.emit_all(bodies, Duration::from_secs(10)).await {
                Ok(_) => sent.extend(due.into_iter().map(|(id, _)| id)),
                Err(e) => warn!(error = %e, "cannot mark commands expired; will retry"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_proto::EventEnvelope;

    fn fleet_with(hosts: &[&str]) -> Fleet {
        let mut fleet = Fleet::new();
        for (i, h) in hosts.iter().enumerate() {
            fleet.apply(&EventEnvelope {
                id: Uuid::now_v7(),
                host: (*h).to_owned(),
                seq: 1,
                time_unix_ms: i as i64,
                module: "heartbeat".to_owned(),
                incarnation: Uuid::nil(),
                body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
            });
        }
        fleet
    }

    #[test]
    fn actions_need_their_module() {
        assert!(
            matches!(wire_action("pause", Some("log")), Ok(Action::Pause(m)) if m.module == "log")
        );
        assert!(matches!(
            wire_action("pause", None),
            Err(DispatchError::NeedsModule { .. })
        ));
        assert!(matches!(wire_action("noop", None), Ok(Action::Noop(_))));
        let err = wire_action("reboot", None).unwrap_err();
        assert!(err.to_string().contains("reboot"), "{err}");
    }

    #[test]
    fn targets_are_checked_against_the_fleet() {
        let fleet = fleet_with(&["web-01", "web-02", "db-01"]);
        assert_eq!(
            resolve_targets(&fleet, &[], true).unwrap(),
            ["db-01", "web-01", "web-02"]
        );
        let two = vec![
            "web-02".to_owned(),
            "web-01".to_owned(),
            "web-02".to_owned(),
        ];
        assert_eq!(
            resolve_targets(&fleet, &two, false).unwrap(),
            ["web-01", "web-02"]
        );
        let err = resolve_targets(&fleet, &["web-9".to_owned()], false).unwrap_err();
        assert!(err.to_string().contains("web-9"), "{err}");
        assert!(matches!(
            resolve_targets(&fleet, &[], false),
            Err(DispatchError::NoTargets)
        ));
        assert!(matches!(
            resolve_targets(&Fleet::new(), &[], true),
            Err(DispatchError::NoTargets)
        ));
    }

    #[test]
    fn only_unanswered_commands_past_deadline_and_grace_expire() {
        let mut fleet = fleet_with(&["web-01"]);
        let issue = |id: &str, deadline: i64, seq: u64| EventEnvelope {
            id: Uuid::now_v7(),
            host: "blue".to_owned(),
            seq,
            time_unix_ms: 0,
            module: opsfleet_proto::COORDINATOR_MODULE.to_owned(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::CommandIssued(pb::CommandIssued {
                command_id: id.to_owned(),
                target: "web-01".to_owned(),
                deadline_unix_ms: deadline,
                ..Default::default()
            }),
        };
        fleet.apply(&issue("late", 1_000, 1));
        fleet.apply(&issue("answered", 1_000, 2));
        fleet.apply(&issue("future", 9_000, 3));
        fleet.apply(&EventEnvelope {
            id: Uuid::now_v7(),
            host: "web-01".to_owned(),
            seq: 2,
            time_unix_ms: 0,
            module: "agent".to_owned(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::CommandAccepted(pb::CommandAccepted {
                command_id: "answered".to_owned(),
                epoch: 1,
            }),
        });
        assert!(
            due_for_expiry(&fleet, 2_500, 2_000).is_empty(),
            "within grace"
        );
        let due: Vec<String> = due_for_expiry(&fleet, 3_001, 2_000)
            .into_iter()
            .map(|d| d.0)
            .collect();
        assert_eq!(due, ["late"]);
    }
}
