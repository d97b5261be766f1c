//! Commands a test injects as a coordinator would (`commands.rs`, `fast_failover.rs`): the
//! `command_issued` event recorded in `OPS_EVENTS` by a coordinator named `tester`, the
//! command published on the host's subject in `OPS_CMDS`, a pause stamped with an old epoch,
//! and a command's ledger entry as `opsctl commands --id` shows it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use async_nats::jetstream;
use opsfleet_proto::api::CommandView;
use opsfleet_proto::{pb, subjects, EventEnvelope, COORDINATOR_MODULE};
use prost::Message;

use crate::Cluster;

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A pause of `target`'s disk module stamped with `epoch`, issued by `old-blue`, due in 60 s.
pub fn pause(target: &str, epoch: u64) -> pb::Command {
    pb::Command {
        id: uuid::Uuid::now_v7().to_string(),
        epoch,
        issued_by: "old-blue".into(),
        target: target.into(),
        deadline_unix_ms: now_ms() + 60_000,
        issued_unix_ms: now_ms(),
        action: Some(pb::command::Action::Pause(pb::ModuleAction {
            module: "disk".into(),
        })),
    }
}

/// Records `cmd` in the event log the way a coordinator does before it sends one (its
/// `command_issued` event, here from a coordinator named `tester`): coordinators admit an
/// agent's answers only for commands issued to that agent.
pub async fn record_issue(js: &jetstream::Context, cmd: &pb::Command, action: &str) -> Result<()> {
    let ev = EventEnvelope {
        id: uuid::Uuid::now_v7(),
        host: "tester".into(),
        seq: 1,
        time_unix_ms: now_ms(),
        module: COORDINATOR_MODULE.into(),
        incarnation: uuid::Uuid::now_v7(),
        body: pb::event::Body::CommandIssued(pb::CommandIssued {
            command_id: cmd.id.clone(),
            target: cmd.target.clone(),
            epoch: cmd.epoch,
            issued_by: cmd.issued_by.clone(),
            action: action.into(),
            module: "disk".into(),
            deadline_unix_ms: cmd.deadline_unix_ms,
            issued_role: "operator".into(),
        }),
    };
    let msg = jetstream::message::PublishMessage::build()
        .payload(ev.encode_to_vec().into())
        .message_id(ev.id.to_string());
    let subject = subjects::coordinator_event_subject("tester", ev.kind());
    js.send_publish(subject, msg).await?.await?;
    Ok(())
}

/// Publishes a raw command as the coordinators would, with `msg_id` for JetStream's dedup.
pub async fn publish_command(
    js: &jetstream::Context,
    cmd: &pb::Command,
    msg_id: &str,
) -> Result<()> {
    let msg = jetstream::message::PublishMessage::build()
        .payload(cmd.encode_to_vec().into())
        .message_id(msg_id);
    js.send_publish(subjects::command_subject(&cmd.target), msg)
        .await?
        .await?;
    Ok(())
}

/// The ledger entry of command `id` (`opsctl commands --id`), if there is one yet.
pub async fn command_view(c: &Cluster, id: &str) -> Result<Option<CommandView>> {
    let out = (c.opsctl)
        .run(&["--output", "json", "commands", "--id", id])
        .await?
        .ok()?;
    let views: Vec<CommandView> = serde_json::from_str(out.stdout.trim())?;
    Ok(views.into_iter().next())
}
