//! The read-only subcommands: `status`, `leader`, the views (`hosts`, `backups`, `incidents`,
//! `alerts`, `services`), `commands` and `audit` — ask, then print JSON or the table (`print`).

use std::time::Duration;

use opsfleet_cli::client::Api;
use opsfleet_cli::out::write_out;
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::{audit, leader, render, views};
use opsfleet_proto::api::{CommandView, CommandsRequest};
use opsfleet_proto::time::now_unix_ms;
use serde::Serialize;

use crate::args::Output;
use crate::exit::Unreachable;

/// How long `leader` listens for coordinators' replies.
const GATHER_WINDOW: Duration = Duration::from_millis(500);

/// Prints `value` as pretty JSON, or as the text `render` makes of it.
pub fn print<T: Serialize + ?Sized>(
    value: &T,
    output: Output,
    render: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    let text = match output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Output::Table => render(value),
    };
    Ok(write_out(&text)?)
}

/// `opsctl status`.
pub async fn status(
    api: &Api,
    host: Option<String>,
    coordinator: Option<String>,
    output: Output,
) -> anyhow::Result<()> {
    let reply = views::status(api, host.clone(), coordinator.as_deref()).await?;
    if let Some(host) = host.filter(|_| reply.hosts.is_empty()) {
        let all = views::status(api, None, coordinator.as_deref()).await?;
        let known: Vec<String> = all.hosts.iter().map(|h| h.host.clone()).collect();
        anyhow::bail!(
            "unknown host {} (known: {})",
            inert(&host),
            known_hint(&known)
        );
    }
    print(&reply, output, |r| render::status(r, now_unix_ms()))
}

/// Up to 20 names, then how many more; `none` when empty.
fn known_hint(names: &[String]) -> String {
    if names.is_empty() {
        return "none; no hosts have reported yet".to_owned();
    }
    let mut out = names
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 20 {
        out.push_str(&format!(" and {} more", names.len() - 20));
    }
    out
}

/// `opsctl leader`: every known coordinator; fails when none is active, and with "cluster
/// unreachable" when none answers.
pub async fn leader(api: &Api, output: Output) -> anyhow::Result<()> {
    let replies = api.status_all(GATHER_WINDOW).await?;
    if replies.is_empty() {
        return Err(Unreachable(format!(
            "no coordinator answered on {} within {}; is one running and connected to the same NATS?",
            opsfleet_proto::subjects::API_STATUS,
            humantime::format_duration(GATHER_WINDOW)
        ))
        .into());
    }
    let now = now_unix_ms();
    let rows = leader::rows(&replies, now);
    print(&rows, output, |r| leader::render(r, now))?;
    if !leader::has_active(&rows) {
        anyhow::bail!("no coordinator is active");
    }
    Ok(())
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

/// `opsctl services`.
pub async fn services(api: &Api, a: views::ServicesArgs, output: Output) -> anyhow::Result<()> {
    let reply = views::services(api, a).await?;
    print(&reply, output, |r| {
        views::render::services(r, now_unix_ms())
    })
}

/// `opsctl service groups`.
pub async fn groups(
    api: &Api,
    a: opsfleet_cli::groups::GroupsArgs,
    output: Output,
) -> anyhow::Result<()> {
    let reply = opsfleet_cli::groups::groups(api, a).await?;
    print(&reply, output, |r| {
        opsfleet_cli::groups::render_groups(r, now_unix_ms())
    })
}

/// `opsctl drills`: every declared drill (or one, with its runs).
pub async fn drills(
    api: &Api,
    a: opsfleet_cli::drills::DrillsArgs,
    output: Output,
) -> anyhow::Result<()> {
    let reply = opsfleet_cli::drills::drills(api, a).await?;
    print(&reply, output, |r| {
        opsfleet_cli::drills::render_drills(r, now_unix_ms())
    })
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
    let commands = ledger(api, Vec::new(), host.clone(), limit).await?;
    let entries = audit::entries(&commands, &audit::AuditFilter { by: by.clone() });
    print(&entries, output, |e| {
        if !e.is_empty() {
            return audit::render(e);
        }
        let mut note = "no commands".to_owned();
        if let Some(by) = &by {
            note.push_str(&format!(" by {}", inert(by)));
        }
        if let Some(host) = &host {
            note.push_str(&format!(" for host {}", inert(host)));
        }
        format!("{note} in the newest {limit} of the ledger\n")
    })
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
