//! `opsctl failover --drill` on a real cluster (blue, green, two agents): both handovers happen
//! under growing epochs, every agent runs the no-op at each step, and the drill reports zero
//! events lost and zero commands run twice.

use std::time::Duration;

use anyhow::{ensure, Context};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_hands_over_and_back_with_nothing_lost_or_doubled() {
    Cluster::run("drill", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        for host in ["web-01", "web-02"] {
            c.add_agent(AgentSpec::new(host).heartbeat(Duration::from_millis(100)))?;
        }
        wait_until_default("an active coordinator that knows both hosts", async || {
            let s = c.status(None).await?;
            let leader = c.opsctl.run(&["--output", "json", "leader"]).await?.ok()?;
            let active = leader.stdout.contains("\"active\"");
            Ok((active && s.hosts.len() == 2).then_some(()))
        })
        .await?;
        let out = c
            .opsctl
            .run(&["--output", "json", "failover", "--drill", "--wait", "60s"])
            .await?
            .ok()?;
        let report: Value = serde_json::from_str(out.stdout.trim()).context("drill JSON")?;
        println!("drill report: {report}");
        ensure!(report["passed"] == true, "drill: {report}");
        ensure!(
            report["events_lost"] == 0 && report["commands_run_twice"] == 0,
            "{report}"
        );
        let steps = report["steps"].as_array().context("steps")?;
        ensure!(steps.len() == 2, "{report}");
        for s in steps {
            ensure!(
                s["new_epoch"].as_u64() > s["old_epoch"].as_u64(),
                "epoch did not grow: {s}"
            );
            ensure!(s["hosts"] == 2, "no-op did not reach both hosts: {s}");
        }
        ensure!(
            steps[0]["from"] == steps[1]["to"],
            "the drill did not hand back: {report}"
        );
        Ok(())
    })
    .await;
}
