//! `opsctl failover --to` checked before the lease is touched, and `opsctl leader` showing
//! every known coordinator, end to end with two real coordinators: `--to nosuch` is refused
//! listing the known coordinators and the active keeps its epoch; `--to <the active>` says at
//! once that it is already active; after a SIGKILL the dead coordinator stays in `leader`,
//! shown not answering with its last contact; with none alive `leader` exits 3.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::LeaderRole;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

/// `opsctl --output json leader`: exit code and rows.
async fn leader(c: &Cluster) -> Result<(i32, Vec<Value>)> {
    let out = c.opsctl.run(&["--output", "json", "leader"]).await?;
    let rows: Vec<Value> = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
    Ok((out.status.code().unwrap_or(-1), rows))
}

/// The answering active coordinator's (name, epoch), if exactly one.
fn active(rows: &[Value]) -> Option<(String, u64)> {
    let actives: Vec<&Value> = rows
        .iter()
        .filter(|r| r["answering"] == true && r["role"] == LeaderRole::Active.as_str())
        .collect();
    match actives.as_slice() {
        [one] => Some((one["name"].as_str()?.to_owned(), one["epoch"].as_u64()?)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_targets_are_checked_and_leader_shows_the_dead() {
    Cluster::run("leader_failover", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)))?;
        let (first, epoch) = wait_until_default("one active, both answering", async || {
            let (code, rows) = leader(c).await?;
            let both = rows.iter().filter(|r| r["answering"] == true).count() == 2;
            Ok(active(&rows).filter(|_| code == 0 && both))
        })
        .await?;
        let other = if first == "blue" { "green" } else { "blue" };

        // An unknown name: refused, listing what is known; the lease is untouched.
        let out = c.opsctl.run(&["failover", "--to", "nosuch"]).await?;
        ensure!(
            out.status.code() == Some(1)
                && out.stderr.contains(
                    "unknown coordinator nosuch; the lease was not touched (known coordinators: \
                     blue, green)"
                ),
            "failover --to nosuch: {out:?}"
        );
        let (_, rows) = leader(c).await?;
        ensure!(
            active(&rows) == Some((first.clone(), epoch)),
            "the active kept its epoch: {rows:?}"
        );

        // The active itself: said at once, not after the request timeout (10 s here).
        let started = Instant::now();
        let out = c.opsctl.run(&["failover", "--to", &first]).await?;
        ensure!(
            out.status.code() == Some(1)
                && out
                    .stderr
                    .contains(&format!("{first} is already active; nothing to hand over")),
            "failover --to the active: {out:?}"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(8),
            "answered at once: {:?}",
            started.elapsed()
        );

        // A real handover to the live standby still works.
        let out = c
            .opsctl
            .run(&["failover", "--to", other, "--wait", "60s"])
            .await?;
        ensure!(out.status.success(), "failover --to {other}: {out:?}");

        // SIGKILL the new active: the other takes over, and `leader` still shows the dead one.
        c.coordinator(other)?.sigkill().await?;
        let rows = wait_until_default("the survivor active, the dead one shown", async || {
            let (code, rows) = leader(c).await?;
            let dead = rows
                .iter()
                .any(|r| r["name"] == other && r["answering"] == false);
            let ok = code == 0 && dead && active(&rows).is_some_and(|(n, _)| n == first);
            Ok(ok.then_some(rows))
        })
        .await?;
        let dead = rows
            .iter()
            .find(|r| r["name"] == other)
            .context("dead row")?;
        ensure!(
            dead["logged_role"] == "active" && dead["last_contact_unix_ms"].as_i64() > Some(0),
            "{dead}"
        );
        let table = c.opsctl.run(&["leader"]).await?;
        ensure!(
            table.status.success()
                && table
                    .stdout
                    .lines()
                    .any(|l| l.contains(other) && l.contains("not answering (last active)")),
            "leader table: {table:?}"
        );

        // None alive: cluster unreachable.
        c.coordinator(&first)?.sigkill().await?;
        let out = c.opsctl.run(&["leader"]).await?;
        ensure!(
            out.status.code() == Some(3) && out.stderr.contains("no coordinator answered"),
            "leader with none alive: {out:?}"
        );
        Ok(())
    })
    .await;
}
