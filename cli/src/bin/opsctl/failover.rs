//! `opsctl failover`: a graceful handover to a standby, waiting for the new active; and
//! `--drill`, the rehearsal there and back (`opsfleet_cli::drill`). `opsctl service
//! failover`: an active/standby group's (`opsfleet_cli::groups`).

use std::time::{Duration, Instant};

use opsfleet_cli::client::Api;
use opsfleet_cli::drill;
use opsfleet_cli::sanitize::inert;
use opsfleet_cli::wait::active_after;
use opsfleet_proto::api::FailoverRequest;
use serde::Serialize;

use crate::args::Output;
use crate::issue::operator_name;
use crate::show::print;

/// What `opsctl failover --output json` prints.
#[derive(Debug, Serialize)]
struct FailoverResult {
    released_by: String,
    released_epoch: u64,
    new_active: String,
    new_epoch: u64,
    takeover_ms: u64,
}

/// `opsctl service failover <group> [--to H] [--drill]`: waits for the new active and
/// prints how long it took.
pub async fn service(
    api: &Api,
    a: opsfleet_cli::groups::ServiceFailoverArgs,
    output: Output,
) -> anyhow::Result<()> {
    let reply = opsfleet_cli::groups::failover(api, a, operator_name(api)).await?;
    print(&reply, output, opsfleet_cli::groups::render_failover)
}

/// `opsctl failover --drill`: fails unless no event was lost and no command ran twice.
pub async fn drill(api: &Api, wait: Duration, output: Output) -> anyhow::Result<()> {
    let user = operator_name(api);
    let report = drill::run(api, &user, wait).await?;
    print(&report, output, drill::render)?;
    if !report.passed {
        anyhow::bail!(
            "drill failed: {} events lost, {} commands run twice",
            report.events_lost,
            report.commands_run_twice
        );
    }
    Ok(())
}

/// `opsctl drill run <name>`: runs a declared drill now; fails when the drill failed.
pub async fn drill_run(
    api: &Api,
    a: opsfleet_cli::drills::DrillRunArgs,
    output: Output,
) -> anyhow::Result<()> {
    let reply = opsfleet_cli::drills::run(api, a, operator_name(api)).await?;
    print(&reply, output, opsfleet_cli::drills::render_run)?;
    if reply.phase != "passed" {
        anyhow::bail!("drill {} failed: {}", reply.drill, reply.detail);
    }
    Ok(())
}

/// `opsctl failover [--to NAME]`: asks the active to release its lease and waits for a
/// coordinator (`to`, if named) to answer as active under a newer epoch.
pub async fn failover(
    api: &Api,
    to: Option<String>,
    wait: Duration,
    output: Output,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let released = api
        .failover(&FailoverRequest {
            to: to.clone(),
            requested_by: Some(operator_name(api)),
        })
        .await?;
    let Some(active) =
        active_after(api, to.as_deref(), released.released_epoch, started + wait).await?
    else {
        anyhow::bail!(
            "{} released epoch {} but no coordinator became active within {}",
            released.responder.name,
            released.released_epoch,
            humantime::format_duration(wait)
        );
    };
    let result = FailoverResult {
        released_by: released.responder.name.clone(),
        released_epoch: released.released_epoch,
        new_active: active.name,
        new_epoch: active.epoch,
        takeover_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    print(&result, output, |r| {
        format!(
            "{} released epoch {}; {} is active at epoch {} after {} ms\n",
            inert(&r.released_by),
            r.released_epoch,
            inert(&r.new_active),
            r.new_epoch,
            r.takeover_ms
        )
    })
}
