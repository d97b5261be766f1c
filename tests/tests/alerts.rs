//! The alert engine end to end: a real nats-server, two coordinators (blue active, green
//! standby) notifying a real local HTTP receiver, and agents whose disk thresholds are set so
//! a breach happens and whose log gets an ERROR line. Each alert becomes exactly one firing
//! notification; blue is killed -9 mid-alert; green resolves both, once each; no idempotency
//! key arrives twice; a host that goes silent is declared lost (dead-man); and the new
//! active's store refolds to the same digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use opsfleet_tests::receiver::webhook_alerts_toml;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Receiver, Recorded};

const HEARTBEAT: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(60);

fn coordinator_toml(hook: &str) -> String {
    webhook_alerts_toml(
        hook,
        "resolve_after = \"1s\"\n",
        "[alerts.rules.log_errors]\nwindow = \"20s\"\n",
        "",
    )
}

fn agent_modules(disk: &Path, log: &Path, warn: f64, crit: f64) -> String {
    opsfleet_tests::disk_and_log_modules(&[disk], log, warn, crit)
}

/// (alert id, state) of a notification the receiver got.
fn key(r: &Recorded) -> (String, String) {
    let s = |k: &str| r.body[k].as_str().unwrap_or_default().to_owned();
    (s("alert_id"), s("state"))
}

/// Waits for a notification whose alert id starts with `alert_id` and whose state is `state`.
async fn wait_notification(
    rx: &Receiver,
    alert_id: &str,
    state: &str,
) -> Result<(Recorded, Duration)> {
    let start = Instant::now();
    let found = wait_until(
        &format!("a {state} notification for {alert_id}"),
        WAIT,
        Duration::from_millis(100),
        async || {
            Ok(rx.requests().into_iter().find(|r| {
                let (id, s) = key(r);
                id.starts_with(alert_id) && s == state
            }))
        },
    )
    .await?;
    Ok((found, start.elapsed()))
}

/// Waits until `coordinator` reports `role`.
async fn wait_role(c: &mut Cluster, coordinator: &str, role: &str) -> Result<Duration> {
    let start = Instant::now();
    wait_until(
        &format!("{coordinator} to be {role}"),
        WAIT,
        Duration::from_millis(100),
        async || {
            let r = c.status(Some(coordinator)).await?;
            Ok((r.responder.role.as_str() == role).then_some(()))
        },
    )
    .await?;
    Ok(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaches_notify_once_and_resolve_from_the_new_active_after_failover() {
    Cluster::run("alerts", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        let hook = rx.url("/hook");
        let disk_dir = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk_dir)?;
        let log = c.dir().join("app.log");
        std::fs::write(&log, "starting\n")?;

        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&coordinator_toml(&hook)))?;
        wait_role(c, "blue", "active").await?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(&coordinator_toml(&hook)))?;
        wait_role(c, "green", "standby").await?;

        // Any real file system is more than 0.2 % used: a crit breach from the first sample.
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(HEARTBEAT)
                .modules_toml(&agent_modules(&disk_dir, &log, 0.1, 0.2)),
        )?;
        c.add_agent(AgentSpec::new("db-01").heartbeat(HEARTBEAT))?;

        let (fired, took) = wait_notification(&rx, "disk_crit/web-01/", "firing").await?;
        let disk_alert = key(&fired).0;
        println!("disk_crit firing notified after {took:?}");
        ensure!(
            fired.body["coordinator"] == "blue",
            "firing sent by {}",
            fired.body
        );

        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)?
            .write_all(b"ERROR payment backend refused the connection\n")?;
        let (fired, took) = wait_notification(&rx, "log_errors/web-01/", "firing").await?;
        let log_alert = key(&fired).0;
        println!("log_errors firing notified {took:?} after the ERROR line");
        ensure!(
            fired.header("idempotency-key") == fired.body["id"].as_str(),
            "the receiver gets the idempotency key: {:?}",
            fired.headers
        );

        // Mid-alert, once green has folded both notification records, blue dies.
        wait_until(
            "green to fold both notification records",
            WAIT,
            Duration::from_millis(200),
            async || {
                let out = c
                    .opsctl
                    .run(&[
                        "--output",
                        "json",
                        "events",
                        "--since",
                        "seq:1",
                        "--kind",
                        "notification_sent",
                    ])
                    .await?
                    .ok()?;
                let recorded = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
                let behind = c.status(Some("green")).await?.responder.behind;
                Ok((recorded >= 2 && behind == 0).then_some(()))
            },
        )
        .await?;
        c.coordinator("blue")?.sigkill().await?;
        let takeover = wait_role(c, "green", "active").await?;
        println!("green active {takeover:?} after kill -9 of blue");

        // The disk comes back under its thresholds: restart web-01 with roomy limits.
        {
            let agent = c.agent("web-01")?;
            agent.stop().await?;
            let text = std::fs::read_to_string(&agent.config_path)?;
            let text = text
                .replace("warn_percent = 0.1", "warn_percent = 99.8")
                .replace("crit_percent = 0.2", "crit_percent = 99.9");
            std::fs::write(&agent.config_path, text)?;
            agent.restart()?;
        }
        let (resolved, took) = wait_notification(&rx, &disk_alert, "resolved").await?;
        println!("disk_crit resolved notified {took:?} after the agent came back");
        ensure!(
            resolved.body["coordinator"] == "green",
            "resolve sent by {}",
            resolved.body
        );
        let (resolved, _) = wait_notification(&rx, &log_alert, "resolved").await?;
        ensure!(
            resolved.body["coordinator"] == "green",
            "resolve sent by {}",
            resolved.body
        );

        // Dead-man: db-01 stops reporting and is declared lost by the active coordinator.
        c.agent("db-01")?.sigkill().await?;
        let (lost, took) = wait_notification(&rx, "host_lost/db-01/", "firing").await?;
        println!("host_lost notified {took:?} after db-01 went silent");
        ensure!(lost.body["coordinator"] == "green");

        // Exactly one notification per (alert, state), none twice by idempotency key.
        let all = rx.requests();
        let mut per_key: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
        for r in &all {
            *per_key.entry(key(r)).or_default() += 1;
            *per_id
                .entry(r.header("idempotency-key").unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        println!("notifications: {per_key:?}");
        for alert in [&disk_alert, &log_alert] {
            for state in ["firing", "resolved"] {
                let n = per_key.get(&(alert.clone(), state.to_owned())).copied();
                ensure!(
                    n == Some(1),
                    "{alert} {state}: {n:?} notifications; all: {per_key:?}"
                );
            }
        }
        ensure!(
            per_id.values().all(|n| *n == 1),
            "an idempotency key twice: {per_id:?}"
        );
        ensure!(
            !per_id.contains_key(""),
            "a notification without idempotency key"
        );

        // The new active's projection (alerts and their notification records) refolds exactly.
        c.coordinator("green")?.stop().await?;
        let (report, _) = c.coordinator("green")?.rebuild(true).await?;
        ensure!(report.matches, "green's rebuild differs: {report:?}");
        Ok(())
    })
    .await;
}
