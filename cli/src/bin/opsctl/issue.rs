//! Issuing a command to hosts and following its acks in the ledger until every host answered:
//! progress on a terminal, then a per-host table or JSON.

use std::time::Duration;

use opsfleet_cli::{client::Api, render};
use opsfleet_proto::api::{CommandAction, CommandRequest, CommandView, CommandsRequest};
use serde::Serialize;

use crate::{now_unix_ms, Output, Targets};

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
    use std::io::IsTerminal;
    let user = operator_name(api);
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
            issued_by: user,
        })
        .await?;
    let action = name.as_str();
    let ids: Vec<String> = reply
        .commands
        .iter()
        .map(|c| c.command_id.clone())
        .collect();
    let total = ids.len();
    let progress = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let views = loop {
        let views = api
            .commands(&CommandsRequest {
                ids: ids.clone(),
                ..Default::default()
            })
            .await?
            .commands;
        let done = views.iter().filter(|v| v.is_final()).count();
        if progress {
            eprint!("\r{action}: {done}/{total} hosts answered");
        }
        if t.no_wait || done == total || started.elapsed() >= t.wait {
            break views;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if progress {
        eprintln!();
    }
    // The ledger is a fold of the log and may not show a command yet (right after issuing,
    // with --no-wait): report every issued command anyway, as `issued`.
    let mut views = views;
    for issued in &reply.commands {
        if !views.iter().any(|v| v.id == issued.command_id) {
            views.push(CommandView {
                id: issued.command_id.clone(),
                target: issued.host.clone(),
                epoch: reply.epoch,
                issued_by: String::new(),
                issued_role: None,
                action: name,
                module: String::new(),
                deadline_unix_ms: 0,
                state: opsfleet_proto::api::CommandState::Issued,
                detail: String::new(),
                accepted_count: 0,
                history: Vec::new(),
            });
        }
    }
    let all_completed = views.len() == total
        && views
            .iter()
            .all(|v| v.state == opsfleet_proto::api::CommandState::Completed);
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&CommandOutcome {
                epoch: reply.epoch,
                all_completed,
                commands: views.clone(),
            })?
        ),
        Output::Table => {
            println!(
                "{action} issued by {} at epoch {} to {total} host(s)",
                opsfleet_cli::sanitize::inert(&reply.responder.name),
                reply.epoch
            );
            print!("{}", render::commands(&views, now_unix_ms()));
        }
    }
    if !t.no_wait && !all_completed {
        let open = views.iter().filter(|v| !v.is_final()).count();
        anyhow::bail!(
            "not every host completed the command ({open} still open after {}; see `opsctl commands`)",
            humantime::format_duration(t.wait)
        );
    }
    Ok(())
}

/// Who issues commands: the `--operator` name, else `$USER`.
pub fn operator_name(api: &Api) -> String {
    api.operator()
        .map(str::to_owned)
        .unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()))
}
