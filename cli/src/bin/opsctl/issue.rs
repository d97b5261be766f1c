//! Issuing a command to hosts and following its acks in the ledger until every host answered:
//! progress on a terminal, then a per-host table or JSON.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use opsfleet_cli::client::Api;
use opsfleet_cli::render;
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::wait::{commands_until, Poll};
use opsfleet_proto::api::{
    ActionName, CommandAction, CommandReply, CommandRequest, CommandState, CommandView,
};
use opsfleet_proto::time::now_unix_ms;
use serde::Serialize;

use crate::args::{Output, Targets};
use crate::show::print;

/// How often the ledger is read while waiting for the agents.
const LEDGER_POLL: Duration = Duration::from_millis(100);

/// What `opsctl pause ... --output json` prints.
#[derive(Debug, Serialize)]
struct CommandOutcome {
    epoch: u64,
    all_completed: bool,
    commands: Vec<CommandView>,
}

/// Issues `action` to the targets, then (unless --no-wait) follows the ledger until every
/// agent answered or `--wait` ran out. Fails unless every command completed.
pub async fn run_request(
    api: &Api,
    action: CommandAction,
    t: Targets,
    output: Output,
) -> anyhow::Result<()> {
    let name = action.name();
    let reply = api
        .command(&CommandRequest {
            action,
            targets: opsfleet_proto::api::Targets {
                hosts: t.hosts,
                all: t.all,
                labels: t.labels.into_iter().collect(),
            },
            deadline_ms: u64::try_from(t.deadline.as_millis()).unwrap_or(u64::MAX),
            issued_by: operator_name(api),
        })
        .await?;
    let action = name.as_str();
    let wait = if t.no_wait { Duration::ZERO } else { t.wait };
    let mut views = await_answers(api, action, &reply, wait).await?;
    add_unseen(&mut views, &reply, name);
    let total = reply.commands.len();
    let outcome = CommandOutcome {
        epoch: reply.epoch,
        all_completed: views.len() == total
            && views.iter().all(|v| v.state == CommandState::Completed),
        commands: views,
    };
    print(&outcome, output, |o| {
        format!(
            "{action} issued by {} at epoch {} to {total} host(s)\n{}",
            inert(&reply.responder.name),
            o.epoch,
            render::commands(&o.commands, now_unix_ms())
        )
    })?;
    if !t.no_wait && !outcome.all_completed {
        let open = outcome.commands.iter().filter(|v| !v.is_final()).count();
        anyhow::bail!(
            "not every host completed the command ({open} still open after {}; see `opsctl commands`)",
            humantime::format_duration(t.wait)
        );
    }
    Ok(())
}

/// Reads the ledger until every issued command is final or `wait` ran out, showing progress
/// on a terminal.
async fn await_answers(
    api: &Api,
    action: &str,
    reply: &CommandReply,
    wait: Duration,
) -> anyhow::Result<Vec<CommandView>> {
    let ids: Vec<String> = reply
        .commands
        .iter()
        .map(|c| c.command_id.clone())
        .collect();
    let total = ids.len();
    let progress = std::io::stderr().is_terminal();
    let answered = |views: &[CommandView]| views.iter().filter(|v| v.is_final()).count();
    let poll = Poll {
        until: Instant::now() + wait,
        every: LEDGER_POLL,
    };
    let (views, _) = commands_until(
        api,
        &ids,
        poll,
        |views| answered(views) == total,
        |views| {
            if progress {
                eprint!("\r{action}: {}/{total} hosts answered", answered(views));
            }
        },
    )
    .await?;
    if progress {
        eprintln!();
    }
    Ok(views)
}

/// The ledger is a fold of the log and may not show a command yet (right after issuing,
/// with --no-wait): every issued command it does not show is reported as `issued`.
fn add_unseen(views: &mut Vec<CommandView>, reply: &CommandReply, name: ActionName) {
    for issued in &reply.commands {
        if !views.iter().any(|v| v.id == issued.command_id) {
            views.push(CommandView {
                id: issued.command_id.clone(),
                target: issued.host.clone(),
                epoch: reply.epoch,
                issued_by: String::new(),
                issued_role: None,
                action: Some(name),
                module: String::new(),
                deadline_unix_ms: 0,
                state: CommandState::Issued,
                detail: String::new(),
                accepted_count: 0,
                history: Vec::new(),
            });
        }
    }
}

/// Who issues commands: the `--operator` name, else `$USER`.
pub fn operator_name(api: &Api) -> String {
    api.operator()
        .map(str::to_owned)
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()))
}
