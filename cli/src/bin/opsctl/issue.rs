//! Issuing a command to hosts and following its acks in the ledger until every host answered:
//! progress on a terminal, then a per-host table or JSON.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use opsfleet_cli::client::Api;
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::wait::{commands_until, Poll};
use opsfleet_cli::{outcome, render};
use opsfleet_proto::api::{
    ActionName, CommandAction, CommandReply, CommandRequest, CommandState, CommandView, SkippedHost,
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
    /// Hosts matched (glob, --all, --label) but not sent the command, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<SkippedHost>,
    /// What happened, when not every host completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
}

/// Issues `action` to the targets, then (unless --no-wait) follows the ledger until every
/// agent answered, only commands queued for hosts that are not up remain, or `--wait` ran
/// out. Fails unless every command completed, with a line saying what happened.
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
    // Said before waiting: who was skipped, who is not up and until when its command waits.
    for line in outcome::up_front(&reply) {
        eprintln!("{}", inert(&line));
    }
    let action = name.as_str();
    let asked = t.wait.unwrap_or(crate::args::DEFAULT_WAIT);
    let wait = if t.no_wait { Duration::ZERO } else { asked };
    let mut views = await_answers(api, action, &reply, wait).await?;
    add_unseen(&mut views, &reply, name);
    let total = reply.commands.len();
    let all_completed =
        views.len() == total && views.iter().all(|v| v.state == CommandState::Completed);
    let summary = (!t.no_wait)
        .then(|| outcome::summary(action, &views, &reply, asked))
        .flatten();
    let result = CommandOutcome {
        epoch: reply.epoch,
        all_completed,
        commands: views,
        skipped: reply.skipped.clone(),
        summary,
    };
    print(&result, output, |o| {
        format!(
            "{action} issued by {} at epoch {} to {total} host(s)\n{}",
            inert(&reply.responder.name),
            o.epoch,
            render::commands(&o.commands, now_unix_ms())
        )
    })?;
    if let Some(summary) = result.summary {
        anyhow::bail!("{summary}; see `opsctl commands`");
    }
    Ok(())
}

/// Reads the ledger until every issued command is final (or only commands for hosts that are
/// not up are open) or `wait` ran out, showing outcomes by kind on a terminal.
pub(crate) async fn await_answers(
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
    // A command for a host that is not up is not waited for: it stays queued until its
    // deadline, which the operator was told.
    let queued = |v: &CommandView| {
        !v.is_final()
            && reply
                .commands
                .iter()
                .any(|c| c.command_id == v.id && c.liveness.is_some())
    };
    let settled = |views: &[CommandView]| {
        views.len() == total && views.iter().all(|v| v.is_final() || queued(v))
    };
    let poll = Poll {
        until: Instant::now() + wait,
        every: LEDGER_POLL,
    };
    let (views, _) = commands_until(api, &ids, poll, settled, |views| {
        if progress {
            eprint!("\r{action}: {}\x1b[K", outcome::progress(views, total));
        }
    })
    .await?;
    if progress {
        eprintln!();
    }
    Ok(views)
}

/// The ledger is a fold of the log and may not show a command yet (right after issuing,
/// with --no-wait): every issued command it does not show is reported as `issued`.
pub(crate) fn add_unseen(views: &mut Vec<CommandView>, reply: &CommandReply, name: ActionName) {
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

/// Who issues commands: the `--operator` name, else the OS user (`$USER`, `$LOGNAME`), else
/// `anonymous`.
pub fn operator_name(api: &Api) -> String {
    api.operator()
        .map(str::to_owned)
        .or_else(|| {
            ["USER", "LOGNAME"]
                .iter()
                .filter_map(|k| std::env::var(k).ok())
                .find(|v| !v.trim().is_empty())
        })
        .unwrap_or_else(|| "anonymous".to_owned())
}
