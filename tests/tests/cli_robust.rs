//! opsctl as a pipeline citizen and an installed tool: a reader that closes the pipe early
//! (`| head`, `| true`) ends opsctl quietly (exit 0, nothing on stderr, no panic) for
//! `status -o json` and `events`; `events -o json` carries the body's fields; completion
//! scripts and man pages generate and name every subcommand.

use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::{bins, wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// The subcommands every completion script and the man pages must name.
const SUBCOMMANDS: &[&str] = &[
    "status",
    "leader",
    "hosts",
    "backups",
    "incidents",
    "alerts",
    "pause",
    "resume",
    "disable",
    "enable",
    "noop",
    "drain",
    "backup",
    "restore",
    "config",
    "commands",
    "audit",
    "events",
    "failover",
    "rollout",
    "rollouts",
    "completion",
    "man",
];

/// Runs opsctl with `args`, stdout a pipe whose reader is closed after `keep` bytes (0: at
/// once), and returns how it ended (bounded).
async fn run_closing_stdout(nats: &str, args: &[&str], keep: usize) -> Result<Output> {
    let mut child = tokio::process::Command::new(bins::bin(bins::OPSCTL)?)
        .arg("--nats")
        .arg(nats)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn opsctl")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    if keep > 0 {
        let mut buf = vec![0u8; keep];
        tokio::time::timeout(Duration::from_secs(30), stdout.read_exact(&mut buf))
            .await
            .context("no output within 30 s")??;
    }
    drop(stdout);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("opsctl did not end within 30 s of its stdout closing")?
        .context("wait for opsctl")
}

fn ensure_quiet(what: &str, out: &Output) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(0) && stderr.is_empty(),
        "{what} with its stdout closed: {:?}, stderr {stderr:?}",
        out.status
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_pipes_end_opsctl_quietly_and_json_events_carry_payloads() {
    Cluster::run("cli-robust-pipes", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)))?;
        wait_until_default("web-01 to report", async || {
            let s = c.status(Some("blue")).await?;
            Ok((s.hosts.iter().any(|h| h.last_seq >= 3)).then_some(()))
        })
        .await?;
        let url = c.nats_url();

        let out = run_closing_stdout(&url, &["status", "-o", "json"], 0).await?;
        ensure_quiet("status -o json", &out)?;
        let out = run_closing_stdout(&url, &["events", "--since", "seq:1"], 0).await?;
        ensure_quiet("events --since seq:1", &out)?;
        let args = ["events", "--follow", "--host", "web-01", "--since", "seq:1"];
        let out = run_closing_stdout(&url, &args, 16).await?;
        ensure_quiet("events --follow", &out)?;

        let out = c
            .opsctl
            .run(&[
                "-o",
                "json",
                "events",
                "--since",
                "seq:1",
                "--kind",
                "heartbeat",
            ])
            .await?
            .ok()?;
        let first = out.stdout.lines().next().context("no heartbeat event")?;
        let v: Value = serde_json::from_str(first).with_context(|| format!("not JSON: {first}"))?;
        ensure!(
            v["payload"]["uptime_ms"].is_u64() && v["payload"]["modules"].is_array(),
            "events -o json has no heartbeat payload: {first}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn completions_and_man_pages_name_every_subcommand() -> Result<()> {
    let opsctl = bins::bin(bins::OPSCTL)?;
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(&opsctl)
            .args(["completion", shell])
            .output()
            .context("run opsctl completion")?;
        ensure!(out.status.success(), "completion {shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in SUBCOMMANDS {
            ensure!(
                script.contains(sub),
                "completion {shell} does not name {sub}"
            );
        }
    }
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(&opsctl)
        .args(["man", "--dir"])
        .arg(dir.path())
        .output()
        .context("run opsctl man")?;
    ensure!(out.status.success(), "opsctl man: {out:?}");
    let top = std::fs::read_to_string(dir.path().join("opsctl.1")).context("opsctl.1")?;
    for sub in SUBCOMMANDS {
        let page = dir.path().join(format!("opsctl-{sub}.1"));
        ensure!(page.is_file(), "no man page {}", page.display());
        ensure!(top.contains(sub), "opsctl.1 does not name {sub}");
    }
    Ok(())
}

/// Reads one JSON line of `opsctl events -o json` within 30 s: (stream seq, host seq).
async fn next_event(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Result<(u64, u64)> {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("no event from --follow within 30 s")??
        .context("opsctl events --follow ended")?;
    let v: Value = serde_json::from_str(&line).with_context(|| format!("not JSON: {line}"))?;
    let stream_seq = v["stream_seq"].as_u64().context("stream_seq")?;
    Ok((stream_seq, v["seq"].as_u64().context("seq")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_resumes_across_a_nats_server_restart_without_gap_or_duplicate() {
    Cluster::run("cli-robust-follow", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)))?;
        wait_until_default("web-01 to report", async || {
            let s = c.status(Some("blue")).await?;
            Ok((s.hosts.iter().any(|h| h.last_seq >= 2)).then_some(()))
        })
        .await?;
        let stderr_path = c.dir().join("follow.stderr");
        let mut child = tokio::process::Command::new(bins::bin(bins::OPSCTL)?)
            .args(["--nats", &c.nats_url(), "-o", "json", "events", "--follow"])
            .args(["--host", "web-01"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path)?)
            .kill_on_drop(true)
            .spawn()
            .context("spawn opsctl events --follow")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(next_event(&mut lines).await?);
        }
        c.nats.restart().await?;
        let restarted_at = seen.len();
        for _ in 0..15 {
            seen.push(next_event(&mut lines).await?);
        }
        drop(child);
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        println!("seen {seen:?}; stderr:\n{stderr}");
        for w in seen.windows(2) {
            let ((s0, h0), (s1, h1)) = (w[0], w[1]);
            ensure!(
                s1 > s0,
                "stream seq went {s0} -> {s1}: a duplicate or reorder"
            );
            ensure!(
                h1 == h0 + 1,
                "web-01's seq went {h0} -> {h1}: a gap or duplicate"
            );
        }
        ensure!(
            seen.len() > restarted_at + 10,
            "too few events after the restart"
        );
        ensure!(
            stderr.contains("reconnecting"),
            "no reconnect notice on stderr: {stderr}"
        );
        Ok(())
    })
    .await;
}
