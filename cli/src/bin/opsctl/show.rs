//! The read-only subcommands: `status`, `leader`, the views (`hosts`, `backups`, `incidents`,
//! `alerts`), `commands` and `audit` — ask, then print JSON or the table (`print`).

use std::time::Duration;

use opsfleet_cli::client::Api;
use opsfleet_cli::{audit, render, views};
use opsfleet_proto::api::{CommandView, CommandsRequest};
use opsfleet_proto::time::now_unix_ms;
use serde::Serialize;

use crate::args::Output;

/// How long `leader` listens for coordinators' replies.
const GATHER_WINDOW: Duration = Duration::from_millis(300);

/// Prints `value` as pretty JSON, or as the text `render` makes of it.
pub fn print<T: Serialize + ?Sized>(
    value: &T,
    output: Output,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Table => print!("{}", render(value)),
    }
    Ok(())
}

/// `opsctl status`.
pub async fn status(
    api: &Api,
    host: Option<String>,
    coordinator: Option<String>,
    output: Output,
) -> anyhow::Result<()> {
    let reply = views::status(api, host, coordinator.as_deref()).await?;
    print(&reply, output, |r| render::status(r, now_unix_ms()))
}

/// `opsctl leader`.
pub async fn leader(api: &Api, output: Output) -> anyhow::Result<()> {
    let replies = api.status_all(GATHER_WINDOW).await?;
    let responders: Vec<_> = replies.into_iter().map(|r| r.responder).collect();
    print(&responders, output, |r| render::coordinators(r))
}

/// `opsctl hosts`: liveness is judged at the coordinator's `now`.
pub async fn hosts(api: &Api, a: views::HostsArgs, output: Output) -> anyhow::Result<()> {
    let reply = views::hosts(api, a).await?;
    print(&reply, output, |r| views::render::hosts(r, r.now_unix_ms))
}

/// `opsctl backups`.
pub async fn backups(api: &Api, a: views::BackupsArgs, output: Output) -> anyhow::Result<()> {
    let archives = a.archives;
    let reply = views::backups(api, a).await?;
    print(&reply, output, |r| {
        if archives {
            views::render::archives(r)
        } else {
            views::render::backups(r, now_unix_ms())
        }
    })
}

/// `opsctl incidents`.
pub async fn incidents(api: &Api, a: views::IncidentsArgs, output: Output) -> anyhow::Result<()> {
    let reply = views::incidents(api, a, now_unix_ms()).await?;
    print(&reply, output, |r| {
        views::render::incidents(r, now_unix_ms())
    })
}

/// `opsctl alerts`.
pub async fn alerts(api: &Api, a: views::AlertsArgs, output: Output) -> anyhow::Result<()> {
    let reply = views::alerts(api, a).await?;
    print(&reply, output, |r| views::render::alerts(r, now_unix_ms()))
}

/// `opsctl commands`: the ledger.
pub async fn commands(
    api: &Api,
    ids: Vec<String>,
    host: Option<String>,
    limit: usize,
    output: Output,
) -> anyhow::Result<()> {
    let commands = ledger(api, ids, host, limit).await?;
    print(&commands, output, |c| render::commands(c, now_unix_ms()))
}

/// `opsctl audit`: the ledger as who did what.
pub async fn audit(
    api: &Api,
    by: Option<String>,
    host: Option<String>,
    limit: usize,
    output: Output,
) -> anyhow::Result<()> {
    let commands = ledger(api, Vec::new(), host, limit).await?;
    let entries = audit::entries(&commands, &audit::AuditFilter { by });
    print(&entries, output, |e| audit::render(e))
}

/// The ledger's newest `limit` commands (of these `ids` and this `host`, when given).
async fn ledger(
    api: &Api,
    ids: Vec<String>,
    host: Option<String>,
    limit: usize,
) -> anyhow::Result<Vec<CommandView>> {
    let req = CommandsRequest {
        ids,
        host,
        limit: Some(limit),
    };
    Ok(api.commands(&req).await?.commands)
}
