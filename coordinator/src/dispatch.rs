//! Issuing commands to agents (the active coordinator only): validate the request, resolve the
//! target hosts, record one `command_issued` event per host, and send each command on
//! `ops.cmd.<host>` (stream `OPS_CMDS`, so an offline agent gets it when it returns) as soon as
//! its own event is acknowledged, checking the lease again before each send. A sweep marks
//! commands nobody picked up before their deadline as expired.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use futures::stream::{FuturesUnordered, StreamExt};
use opsfleet_proto::api::{CommandReply, CommandRequest, IssuedCommand};
use opsfleet_proto::pb::{self, command::Action};
use opsfleet_proto::subjects;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::emit::{EmitError, Emitter};
use crate::projection::Fleet;
use crate::state::Shared;

/// Commands still `issued` this long after their deadline are marked expired by the active
/// coordinator (the grace lets an agent's own answer arrive first).
pub const EXPIRY_GRACE_MS: i64 = 2_000;

/// Command publishes awaiting their JetStream ack at once while a request fans out.
pub const SEND_WINDOW: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(
        "{name} is not active (lease holder: {holder}); send commands to the active coordinator"
    )]
    NotActive { name: String, holder: String },
    #[error("lost the lease while issuing; {sent} command(s) were sent, the other {unsent} were not and will expire")]
    LostLease { sent: usize, unsent: usize },
    #[error("{sent} command(s) were sent, the other {unsent} were not and will expire")]
    PartlyIssued {
        sent: usize,
        unsent: usize,
        #[source]
        source: Box<DispatchError>,
    },
    #[error("unknown action {action:?}; use pause, resume, disable, enable, noop, drain, backup_run, restore, config_apply or config_rollback")]
    BadAction { action: String },
    #[error("action {action} needs a module name")]
    NeedsModule { action: String },
    #[error("{action} needs {flag}")]
    NeedsField { action: String, flag: &'static str },
    #[error(
        "no config of module {module} with fingerprint {fingerprint} in the log (known: {known})"
    )]
    UnknownFingerprint {
        module: String,
        fingerprint: String,
        known: String,
    },
    #[error("fingerprint {fingerprint} of module {module} is ambiguous: it starts {count} known fingerprints; give more of it")]
    AmbiguousFingerprint {
        module: String,
        fingerprint: String,
        count: usize,
    },
    #[error("no target hosts: name hosts, labels, or ask for all")]
    NoTargets,
    #[error("no host has the labels {labels} (labels in use: {known})")]
    NoLabelMatch { labels: String, known: String },
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

/// The wire action for any request (pure): the module actions through `wire_action`, the
/// others from the request's fields; a rollback's config is looked up in the fleet's log.
pub fn request_action(
    fleet: &Fleet,
    req: &CommandRequest,
    targets: &[String],
) -> Result<Action, DispatchError> {
    let action = req.action.as_str();
    let module = req.module.clone().unwrap_or_default();
    let field = |value: &Option<String>, flag: &'static str| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| DispatchError::NeedsField {
                action: action.to_owned(),
                flag,
            })
    };
    let needs_module = || {
        if module.is_empty() {
            Err(DispatchError::NeedsModule {
                action: action.to_owned(),
            })
        } else {
            Ok(module.clone())
        }
    };
    Ok(match action {
        "backup_run" => Action::BackupRun(pb::BackupRun {
            module: module.clone(),
            job: req.job.clone().unwrap_or_default(),
        }),
        "restore" => Action::Restore(pb::Restore {
            module: module.clone(),
            job: req.job.clone().unwrap_or_default(),
            archive: field(&req.archive, "--archive")?,
            target: field(&req.target, "--target")?,
        }),
        "config_apply" => {
            let module = needs_module()?;
            let config_toml = field(&req.config_toml, "a config (--file)")?;
            Action::ConfigApply(pb::ConfigApply {
                module,
                config_toml,
                fingerprint: req.fingerprint.clone().unwrap_or_default(),
            })
        }
        "config_rollback" => {
            let module = needs_module()?;
            let wanted = field(&req.fingerprint, "--to <fingerprint>")?;
            let (fingerprint, config_toml) = find_config(fleet, &module, &wanted, targets)?;
            Action::ConfigRollback(pb::ConfigRollback {
                module,
                fingerprint,
                config_toml,
            })
        }
        other => wire_action(other, req.module.as_deref())?,
    })
}

/// The config of `module` whose fingerprint is (or, given at least 8 hex digits, starts
/// with) `wanted`, as the log knows it: the targets' own history first, then any host's (a
/// fingerprint names one config, wherever it was seen). Pure.
pub fn find_config(
    fleet: &Fleet,
    module: &str,
    wanted: &str,
    targets: &[String],
) -> Result<(String, String), DispatchError> {
    let on_targets = targets.iter().filter_map(|h| fleet.host(h));
    let hosts = on_targets.chain(fleet.hosts());
    let mut matches: BTreeSet<(String, String)> = BTreeSet::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for host in hosts {
        let Some(info) = host.modules.get(module) else {
            continue;
        };
        for c in &info.configs {
            known.insert(c.fingerprint.clone());
            let hit =
                c.fingerprint == wanted || (wanted.len() >= 8 && c.fingerprint.starts_with(wanted));
            if hit && !matches.iter().any(|(fp, _)| *fp == c.fingerprint) {
                matches.insert((c.fingerprint.clone(), c.toml.clone()));
            }
        }
        if matches.iter().any(|(fp, _)| fp == wanted) {
            break;
        }
    }
    if let Some(exact) = matches.iter().find(|(fp, _)| fp == wanted) {
        return Ok(exact.clone());
    }
    match matches.len() {
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        0 => Err(DispatchError::UnknownFingerprint {
            module: module.to_owned(),
            fingerprint: wanted.to_owned(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.into_iter().collect::<Vec<_>>().join(", ")
            },
        }),
        count => Err(DispatchError::AmbiguousFingerprint {
            module: module.to_owned(),
            fingerprint: wanted.to_owned(),
            count,
        }),
    }
}

/// `resolve_targets`, plus every host whose labels include all of `labels` (pure).
pub fn resolve_request_targets(
    fleet: &Fleet,
    req: &CommandRequest,
) -> Result<Vec<String>, DispatchError> {
    if req.labels.is_empty() || req.all {
        return resolve_targets(fleet, &req.hosts, req.all);
    }
    let matching: Vec<String> = fleet
        .hosts()
        .filter(|h| req.labels.iter().all(|(k, v)| h.labels.get(k) == Some(v)))
        .map(|h| h.host.clone())
        .collect();
    if matching.is_empty() {
        let show = |m: &mut dyn Iterator<Item = (&String, &String)>| {
            m.map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()
        };
        let mut known: BTreeSet<String> = BTreeSet::new();
        for h in fleet.hosts() {
            known.extend(show(&mut h.labels.iter()));
        }
        return Err(DispatchError::NoLabelMatch {
            labels: show(&mut req.labels.iter()).join(","),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.into_iter().collect::<Vec<_>>().join(", ")
            },
        });
    }
    let mut hosts = req.hosts.clone();
    hosts.extend(matching);
    resolve_targets(fleet, &hosts, false)
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
        let (targets, action) = {
            let fleet = self.shared.fleet();
            let targets = resolve_request_targets(&fleet, req)?;
            let action = request_action(&fleet, req, &targets)?;
            (targets, action)
        };
        let issued_at = now_unix_ms();
        let deadline = issued_at.saturating_add(
            i64::try_from(req.deadline_ms)
                .unwrap_or(i64::MAX / 2)
                .min(i64::MAX / 2),
        );
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
        // Pipelined: each command is sent as soon as its own `command_issued` event is
        // acknowledged (durable in the stream), while later events are still in flight.
        let (recorded_tx, recorded_rx) = mpsc::unbounded_channel();
        let (recorded, sent) = tokio::join!(
            self.emitter
                .emit_all_reporting(records, Duration::from_secs(30), Some(recorded_tx)),
            self.send_as_recorded(&commands, epoch, recorded_rx),
        );
        let (sent, send_error) = sent;
        if let Some(e) = send_error.or(recorded.err().map(DispatchError::from)) {
            // Some commands may already be out: say how many, so nobody re-issues blindly.
            if sent > 0 {
                return Err(DispatchError::PartlyIssued {
                    sent,
                    unsent: commands.len() - sent,
                    source: Box::new(e),
                });
            }
            return Err(e);
        }
        if sent != commands.len() {
            return Err(DispatchError::LostLease {
                sent,
                unsent: commands.len() - sent,
            });
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

    /// Sends `commands[i]` for every index `i` arriving on `recorded` (its `command_issued`
    /// event is acknowledged by then), with at most `SEND_WINDOW` publish acks in flight. The
    /// lease is checked again before each send: once this coordinator is no longer active in
    /// `epoch`, nothing more is sent. Returns how many commands JetStream acknowledged and the
    /// first publish failure, if any (the others are still sent).
    async fn send_as_recorded(
        &self,
        commands: &[pb::Command],
        epoch: u64,
        mut recorded: mpsc::UnboundedReceiver<usize>,
    ) -> (usize, Option<DispatchError>) {
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0usize;
        let mut first_error: Option<DispatchError> = None;
        let mut open = true;
        loop {
            tokio::select! {
                biased;
                Some((c, acked)) = in_flight.next(), if !in_flight.is_empty() => {
                    let c: &pb::Command = c;
                    match acked {
                        Ok(_) => sent += 1,
                        Err(source) => {
                            first_error.get_or_insert(DispatchError::Publish {
                                host: c.target.clone(),
                                command_id: c.id.clone(),
                                source,
                            });
                        }
                    }
                }
                next = recorded.recv(), if open && in_flight.len() < SEND_WINDOW => {
                    let Some(c) = next.and_then(|i| commands.get(i)) else {
                        open = false;
                        continue;
                    };
                    // Fencing at the source, per command: act only if still active in this term.
                    if self.acting_epoch().ok() != Some(epoch) {
                        open = false;
                        continue;
                    }
                    let msg = jetstream::message::PublishMessage::build()
                        .payload(c.encode_to_vec().into())
                        .message_id(&c.id);
                    match self.js.send_publish(subjects::command_subject(&c.target), msg).await {
                        Ok(ack) => in_flight.push(async move {
                            (c, ack.await.map_err(async_nats::Error::from))
                        }),
                        Err(e) => {
                            first_error.get_or_insert(DispatchError::Publish {
                                host: c.target.clone(),
                                command_id: c.id.clone(),
                                source: e.into(),
                            });
                        }
                    }
                }
                else => break,
            }
        }
        (sent, first_error)
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

    fn module_state(host: &str, seq: u64, fingerprint: &str, toml: &str) -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            host: host.to_owned(),
            seq,
            time_unix_ms: seq as i64,
            module: "disk".to_owned(),
            incarnation: Uuid::nil(),
            body: pb::event::Body::ModuleState(pb::ModuleState {
                module: "disk".to_owned(),
                kind: "disk".to_owned(),
                state: pb::ModuleRunState::Running as i32,
                reason: "started".to_owned(),
                config_fingerprint: fingerprint.to_owned(),
                config_toml: toml.to_owned(),
            }),
        }
    }

    fn request(action: &str) -> CommandRequest {
        CommandRequest {
            action: action.to_owned(),
            hosts: vec!["web-01".to_owned()],
            deadline_ms: 1_000,
            issued_by: "alice".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn labels_select_hosts_from_their_heartbeats() {
        let mut fleet = fleet_with(&["web-01", "web-02", "db-01"]);
        for (host, role) in [("web-01", "web"), ("web-02", "web"), ("db-01", "db")] {
            fleet.apply(&EventEnvelope {
                id: Uuid::now_v7(),
                host: host.to_owned(),
                seq: 2,
                time_unix_ms: 10,
                module: "heartbeat".to_owned(),
                incarnation: Uuid::nil(),
                body: pb::event::Body::Heartbeat(pb::Heartbeat {
                    labels: [("role".to_owned(), role.to_owned())].into_iter().collect(),
                    ..Default::default()
                }),
            });
        }
        let mut req = request("noop");
        req.hosts.clear();
        req.labels = [("role".to_owned(), "web".to_owned())]
            .into_iter()
            .collect();
        assert_eq!(
            resolve_request_targets(&fleet, &req).unwrap(),
            ["web-01", "web-02"]
        );
        req.hosts = vec!["db-01".to_owned()];
        assert_eq!(
            resolve_request_targets(&fleet, &req).unwrap(),
            ["db-01", "web-01", "web-02"]
        );
        req.labels = [("role".to_owned(), "cache".to_owned())]
            .into_iter()
            .collect();
        let err = resolve_request_targets(&fleet, &req)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "no host has the labels role=cache (labels in use: role=db, role=web)"
        );
    }

    #[test]
    fn new_actions_check_their_fields_with_clear_errors() {
        let fleet = fleet_with(&["web-01"]);
        let targets = ["web-01".to_owned()];
        let err = request_action(&fleet, &request("restore"), &targets).unwrap_err();
        assert_eq!(err.to_string(), "restore needs --archive");
        let mut restore = request("restore");
        restore.archive = Some("app-20260101T000000.000Z.tar.zst".to_owned());
        let err = request_action(&fleet, &restore, &targets).unwrap_err();
        assert_eq!(err.to_string(), "restore needs --target");
        restore.target = Some("/srv/restore".to_owned());
        assert!(matches!(
            request_action(&fleet, &restore, &targets),
            Ok(Action::Restore(r)) if r.target == "/srv/restore" && r.job.is_empty()
        ));
        let mut run = request("backup_run");
        run.job = Some("app".to_owned());
        assert!(matches!(
            request_action(&fleet, &run, &targets),
            Ok(Action::BackupRun(b)) if b.job == "app" && b.module.is_empty()
        ));
        let mut apply = request("config_apply");
        apply.config_toml = Some("type = \"disk\"".to_owned());
        assert!(matches!(
            request_action(&fleet, &apply, &targets),
            Err(DispatchError::NeedsModule { .. })
        ));
        apply.module = Some("disk".to_owned());
        assert!(matches!(
            request_action(&fleet, &apply, &targets),
            Ok(Action::ConfigApply(c)) if c.module == "disk"
        ));
        apply.config_toml = Some("  ".to_owned());
        let err = request_action(&fleet, &apply, &targets).unwrap_err();
        assert_eq!(err.to_string(), "config_apply needs a config (--file)");
    }

    #[test]
    fn rollback_finds_the_config_by_fingerprint_in_the_log() {
        let mut fleet = fleet_with(&["web-01", "web-02"]);
        fleet.apply(&module_state(
            "web-01",
            2,
            "aaaa1111bbbb",
            "type = \"disk\"\n# one",
        ));
        fleet.apply(&module_state(
            "web-01",
            3,
            "cccc2222dddd",
            "type = \"disk\"\n# two",
        ));
        fleet.apply(&module_state(
            "web-02",
            2,
            "eeee3333ffff",
            "type = \"disk\"\n# three",
        ));
        let targets = ["web-01".to_owned()];
        let mut rb = request("config_rollback");
        rb.module = Some("disk".to_owned());
        let err = request_action(&fleet, &rb, &targets).unwrap_err();
        assert_eq!(err.to_string(), "config_rollback needs --to <fingerprint>");
        rb.fingerprint = Some("aaaa1111bbbb".to_owned());
        assert!(matches!(
            request_action(&fleet, &rb, &targets),
            Ok(Action::ConfigRollback(c)) if c.config_toml.ends_with("# one") && c.fingerprint == "aaaa1111bbbb"
        ));
        // A prefix of 8+ digits is enough; a config seen on another host counts too.
        let (fp, toml) = find_config(&fleet, "disk", "eeee3333", &targets).unwrap();
        assert_eq!(
            (fp.as_str(), toml.ends_with("# three")),
            ("eeee3333ffff", true)
        );
        let err = find_config(&fleet, "disk", "0123456789", &targets).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("0123456789") && text.contains("aaaa1111bbbb"),
            "{text}"
        );
        assert!(matches!(
            find_config(&fleet, "log", "aaaa1111bbbb", &targets),
            Err(DispatchError::UnknownFingerprint { .. })
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
