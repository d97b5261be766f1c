//! `opsctl events`: `--follow --host web-01` shows web-01's new events within a second and no
//! other host's; `--since seq:1` replays old ones and exits once caught up.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use opsfleet_tests::{bins, wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_new_events_quickly_and_since_replays() {
    Cluster::run("events-follow", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)))?;
        c.add_agent(AgentSpec::new("db-01").heartbeat(Duration::from_millis(200)))?;
        wait_until_default("both hosts to report", async || {
            let s = c.status(Some("blue")).await?;
            Ok((s.hosts.len() == 2 && s.hosts.iter().all(|h| h.last_seq >= 3)).then_some(()))
        })
        .await?;

        let opsctl = bins::bin(bins::OPSCTL)?;
        let mut child = tokio::process::Command::new(&opsctl)
            .args([
                "--nats",
                &c.nats_url(),
                "--output",
                "json",
                "events",
                "--follow",
                "--host",
                "web-01",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn opsctl events --follow")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        let mut worst_ms = 0i64;
        while seen < 10 {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .context("no event from --follow within 20 s")??
                .context("opsctl events --follow ended")?;
            let received = now_ms();
            let v: Value =
                serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
            ensure!(v["host"] == "web-01", "--host web-01 printed {line}");
            let produced = v["time_unix_ms"].as_i64().context("time_unix_ms")?;
            worst_ms = worst_ms.max(received - produced);
            seen += 1;
        }
        println!("--follow: 10 events, worst produce-to-print latency {worst_ms} ms");
        ensure!(
            worst_ms < 1000,
            "an event took {worst_ms} ms to show up in --follow"
        );
        drop(child);

        // Replay from the start: web-01's seqs 1, 2, 3... in order, then exit on its own.
        let out = c
            .opsctl
            .run(&[
                "--output", "json", "events", "--since", "seq:1", "--host", "web-01", "--kind",
                "heart*",
            ])
            .await?
            .ok()?;
        let seqs: Vec<u64> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).map(|v| v["seq"].as_u64().unwrap_or(0)))
            .collect::<Result<_, _>>()?;
        ensure!(
            seqs.len() >= 10,
            "--since seq:1 replayed only {} events",
            seqs.len()
        );
        ensure!(
            seqs.windows(2).all(|w| w[1] > w[0]),
            "replayed heartbeats out of order: {seqs:?}"
        );
        // The first heartbeat is seq 1 or 2 (the module_state event at start may take 1).
        ensure!(
            seqs[0] <= 2,
            "replay did not start at the beginning: {seqs:?}"
        );
        Ok(())
    })
    .await;
}
