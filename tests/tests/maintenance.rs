//! Planned work that does not page, and alerts that tell the truth, end to end (a real
//! nats-server, coordinator, agents and opsctl; a local webhook receiver or the dry-run
//! route): a drained host stays visibly alive and pages nothing for a minute, and undrain
//! restores exactly what drain changed; a coordinator restart with agents that report within
//! the grace pages nothing; a disk dropped from the config leaves the views and its alert
//! resolves; a traceback's alert quotes its exception line; dry-run notifications count.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{AlertsReply, HostsReply, Liveness, StatusReply};
use opsfleet_tests::{
    disk_and_log_modules, wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl, Receiver,
};
use serde::de::DeserializeOwned;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const HEARTBEAT: Duration = Duration::from_millis(500);
const RUNNING: [&str; 3] = ["disk:running", "heartbeat:running", "log:running"];
const LOG_PAUSED: [&str; 3] = ["disk:running", "heartbeat:running", "log:paused"];
const DRAINED: [&str; 3] = ["disk:paused", "heartbeat:running", "log:paused"];

async fn json<T: DeserializeOwned>(opsctl: &Opsctl, args: &[&str]) -> Result<T> {
    opsctl.json(args).await
}

/// Fast dead-man judgement, notifications to `hook`.
fn webhook_coordinator(hook: &str) -> String {
    format!(
        r#"
[alerts]
interval = "500ms"
min_silence = "2s"

[[notify.routes]]
name = "ops"
kind = "webhook"
url = "{hook}"
"#
    )
}

fn modules_toml(disks: &[&Path], log: &Path, crit: f64) -> String {
    disk_and_log_modules(disks, log, crit - 0.05, crit)
}

/// `module:state` of every module of `host` in `opsctl hosts`, and whether it is in
/// maintenance.
async fn modules_of(opsctl: &Opsctl, host: &str) -> Result<(Vec<String>, bool, Liveness)> {
    let r: HostsReply = json(opsctl, &["hosts", "--host", host]).await?;
    let h = r.hosts.first().context("host in hosts")?;
    let mods = h
        .modules
        .iter()
        .map(|m| format!("{}:{}", m.name, m.state))
        .collect();
    Ok((mods, h.maintenance, h.liveness))
}

/// Runs `opsctl <args>` (nothing when empty), then waits for `host`'s modules to be `want`.
async fn step(opsctl: &Opsctl, args: &[&str], want: &[&str], maintenance: bool) -> Result<()> {
    if !args.is_empty() {
        let out = opsctl.run(args).await?.ok()?;
        println!("{}", out.stdout);
    }
    wait_modules(opsctl, "web-01", want, maintenance).await
}

async fn wait_modules(opsctl: &Opsctl, host: &str, want: &[&str], maintenance: bool) -> Result<()> {
    wait_until(
        &format!("{host} modules {want:?}"),
        WAIT,
        POLL,
        async || {
            let (mods, m, _) = modules_of(opsctl, host).await?;
            Ok((mods == want && m == maintenance).then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_host_pages_nothing_and_undrain_restores_exactly_what_drain_changed() {
    Cluster::run("maintenance-drain", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        c.add_coordinator(
            CoordinatorSpec::new("blue").config_toml(&webhook_coordinator(&rx.url("/hook"))),
        )?;
        let disk = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk)?;
        let log = c.dir().join("app.log");
        std::fs::write(&log, "starting\n")?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(HEARTBEAT)
                .modules_toml(&modules_toml(&[&disk], &log, 99.9)),
        )?;
        let opsctl = c.opsctl.clone();
        step(&opsctl, &[], &RUNNING, false).await?;
        // An operator paused the log module before the maintenance: undrain leaves it paused.
        let pause = ["pause", "log", "--host", "web-01"];
        step(&opsctl, &pause, &LOG_PAUSED, false).await?;
        let drain = ["drain", "--host", "web-01"];
        step(&opsctl, &drain, &DRAINED, true).await?;
        let status = opsctl.run(&["status"]).await?.ok()?.stdout;
        ensure!(
            status.contains("web-01: in maintenance"),
            "status: {status}"
        );
        // A minute (120 heartbeat intervals, 30 x the dead-man limit): still up, no alert, no
        // notification.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let (_, maintenance, liveness) = modules_of(&opsctl, "web-01").await?;
            ensure!(
                maintenance && liveness == Liveness::Up,
                "drained web-01 is {liveness} (maintenance {maintenance})"
            );
            let alerts: AlertsReply = json(&opsctl, &["alerts"]).await?;
            ensure!(
                alerts.alerts.is_empty(),
                "alerts while drained: {:?}",
                alerts.alerts
            );
            ensure!(
                rx.requests().is_empty(),
                "notified while drained: {:?}",
                rx.requests()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }

        let undrain = ["undrain", "--host", "web-01"];
        step(&opsctl, &undrain, &LOG_PAUSED, false).await?;
        let all = ["resume", "--all-modules", "--host", "web-01"];
        step(&opsctl, &all, &RUNNING, false).await?;
        ensure!(rx.requests().is_empty(), "notified: {:?}", rx.requests());
        // A resume needs a module or --all-modules, not both.
        let both = opsctl
            .run(&["resume", "log", "--all-modules", "--host", "web-01"])
            .await?;
        ensure!(
            !both.status.success(),
            "resume with a module and --all-modules: {both:?}"
        );
        let neither = opsctl.run(&["resume", "--host", "web-01"]).await?;
        ensure!(
            !neither.status.success(),
            "resume without a module: {neither:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restart_with_agents_back_within_the_grace_pages_nothing() {
    Cluster::run("maintenance-grace", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        c.add_coordinator(
            CoordinatorSpec::new("blue").config_toml(&webhook_coordinator(&rx.url("/hook"))),
        )?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(HEARTBEAT))?;
        let opsctl = c.opsctl.clone();
        wait_modules(&opsctl, "web-01", &["heartbeat:running"], false).await?;
        // A planned restart of everything: the agent is down for 6 s (12 intervals, 3 x the
        // dead-man limit) when the coordinator comes back, and returns 3 s later.
        c.agent("web-01")?.stop().await?;
        c.coordinator("blue")?.stop().await?;
        tokio::time::sleep(Duration::from_secs(6)).await;
        c.coordinator("blue")?.restart()?;
        wait_until("blue active again", WAIT, POLL, async || {
            let r: StatusReply = json(&opsctl, &["status"]).await?;
            Ok((r.responder.role.as_str() == "active").then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        c.agent("web-01")?.restart()?;
        wait_until("web-01 up again", WAIT, POLL, async || {
            let (_, _, liveness) = modules_of(&opsctl, "web-01").await?;
            Ok((liveness == Liveness::Up).then_some(()))
        })
        .await?;
        // Well past the moment the silence would have been judged: no page, no alert.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let alerts: AlertsReply = json(&opsctl, &["alerts"]).await?;
        ensure!(alerts.alerts.is_empty(), "alerts: {:?}", alerts.alerts);
        ensure!(rx.requests().is_empty(), "notified: {:?}", rx.requests());
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_disk_leaves_and_resolves_and_a_traceback_alert_quotes_its_exception() {
    Cluster::run("maintenance-truth", async |c: &mut Cluster| {
        // No routes: the built-in dry-run route prints notifications (and they count).
        let cfg = r#"
[alerts]
interval = "500ms"

[alerts.rules.disk_warn]
enabled = false

[alerts.rules.disk_crit]
for = "0s"
resolve_after = "1s"
"#;
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(cfg))?;
        let (d1, d2) = (c.dir().join("mnt-a"), c.dir().join("mnt-b"));
        std::fs::create_dir_all(&d1)?;
        std::fs::create_dir_all(&d2)?;
        let log = c.dir().join("app.log");
        std::fs::write(&log, "starting\n")?;
        // Any real file system is more than 0.2 % used: both paths breach at once.
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(HEARTBEAT)
                .modules_toml(&modules_toml(&[&d1, &d2], &log, 0.2)),
        )?;
        let opsctl = c.opsctl.clone();
        let d2_alert = format!("disk_crit/web-01/{}", d2.display());
        let firing = |r: &AlertsReply, key: &str| {
            r.alerts
                .iter()
                .any(|a| a.key == key && a.state.as_str() == "firing")
        };
        wait_until("both disks firing", WAIT, POLL, async || {
            let r: AlertsReply = json(&opsctl, &["alerts"]).await?;
            Ok((firing(&r, &d2_alert) && r.alerts.len() >= 2).then_some(()))
        })
        .await?;

        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)?
            .write_all(
                b"Traceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    \
              main()\nValueError: bad input\n",
            )?;
        let alert = wait_until("the log_errors alert", WAIT, POLL, async || {
            let r: AlertsReply = json(&opsctl, &["alerts"]).await?;
            Ok(r.alerts
                .into_iter()
                .find(|a| a.rule == "log_errors" && a.notifications_sent >= 1))
        })
        .await?;
        ensure!(
            alert.detail.ends_with("ValueError: bad input"),
            "detail: {}",
            alert.detail
        );
        let table = opsctl
            .run(&["alerts", "--host", "web-01"])
            .await?
            .ok()?
            .stdout;
        println!("{table}");
        // Still firing, another match: the detail follows (no new transition, no new
        // notification).
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)?
            .write_all(b"ERROR second failure\n")?;
        let refreshed = wait_until("the log_errors detail to follow", WAIT, POLL, async || {
            let r: AlertsReply = json(&opsctl, &["alerts"]).await?;
            Ok(r.alerts
                .into_iter()
                .find(|a| a.key == alert.key && a.detail.starts_with("2 error(s)")))
        })
        .await?;
        ensure!(
            refreshed.detail.ends_with("ERROR second failure")
                && refreshed.state.as_str() == "firing"
                && refreshed.transitions == alert.transitions
                && refreshed.notifications_sent == alert.notifications_sent,
            "refreshed {refreshed:?} from {alert:?}"
        );

        // The config rolled back to one mount: the other leaves status and its alert resolves.
        {
            let agent = c.agent("web-01")?;
            agent.stop().await?;
            let text = std::fs::read_to_string(&agent.config_path)?;
            let two = format!(
                "{:?}, {:?}",
                d1.display().to_string(),
                d2.display().to_string()
            );
            let one = format!("{:?}", d1.display().to_string());
            ensure!(text.contains(&two), "config: {text}");
            std::fs::write(&agent.config_path, text.replace(&two, &one))?;
            agent.restart()?;
        }
        let d2_path = d2.display().to_string();
        wait_until("the dropped disk to leave status", WAIT, POLL, async || {
            let r: StatusReply = json(&opsctl, &["status"]).await?;
            let h = r
                .hosts
                .iter()
                .find(|h| h.host == "web-01")
                .context("web-01")?;
            Ok((!h.disks.iter().any(|d| d.path == d2_path) && !h.disks.is_empty()).then_some(()))
        })
        .await?;
        wait_until(
            "the dropped disk's alert to resolve",
            WAIT,
            POLL,
            async || {
                let r: AlertsReply = json(&opsctl, &["alerts"]).await?;
                let a = r.alerts.iter().find(|a| a.key == d2_alert);
                Ok(a.filter(|a| a.state.as_str() == "resolved").map(|_| ()))
            },
        )
        .await?;
        Ok(())
    })
    .await;
}
