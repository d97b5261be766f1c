//! The Alertmanager and PagerDuty notifiers end to end: a real nats-server, two coordinators
//! (blue active, green standby, blue killed -9 mid-alert), an
//! agent whose disk thresholds are lowered (a breach) and raised again (a resolve), a real
//! Alertmanager (Debian's `prometheus-alertmanager`, read through its own v2 API) and local
//! PagerDuty Events v2 receivers that check every field rule. Proves: the alert shows active in
//! Alertmanager with its labels (host labels included), stays active past its `endsAt` after
//! the active coordinator is killed because the new active re-sends it, and is gone at once
//! after the resolve; PagerDuty gets a
//! valid trigger then resolve with `dedup_key` = the alert id; a receiver answering 400 gets
//! one attempt per transition, recorded as failed; a route whose labels do not match gets
//! nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_tests::alertmanager::Alertmanager;
use opsfleet_tests::pagerduty::PagerDuty;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const RESEND: Duration = Duration::from_secs(3);
const KEY: &str = "R0123456789abcdefghijklmnopqrstu";

fn coordinator_toml(am: &str, pd: &str, broken: &str, dev: &str) -> String {
    format!(
        r#"
[alerts]
interval = "500ms"
missed_heartbeats = 10
silent_kinds = []

[alerts.rules.disk_warn]
enabled = false

[alerts.rules.disk_crit]
for = "1s"
resolve_after = "1s"

[[notify.routes]]
name = "am"
kind = "alertmanager"
url = "{am}"
resend_interval = "{resend}s"
rules = ["disk_crit"]
labels = {{ env = "prod" }}

[[notify.routes]]
name = "pd"
kind = "pagerduty"
routing_key = "{KEY}"
url = "{pd}"
hosts = ["web-*"]

[[notify.routes]]
name = "pd-broken"
kind = "pagerduty"
routing_key = "{KEY}"
url = "{broken}"
max_attempts = 3
retry_min_delay = "50ms"

[[notify.routes]]
name = "pd-dev"
kind = "pagerduty"
routing_key = "{KEY}"
url = "{dev}"
labels = {{ env = "dev" }}
"#,
        resend = RESEND.as_secs()
    )
}

/// The agent's disk module over `disk` with these thresholds (percent used).
fn disk_module(disk: &Path, warn: f64, crit: f64) -> String {
    format!(
        "\n[[modules]]\ntype = \"disk\"\ninterval = \"500ms\"\npaths = [{:?}]\n\
         warn_percent = {warn}\ncrit_percent = {crit}\nhysteresis_percent = 0.05\n",
        disk.display().to_string()
    )
}

/// Restarts web-01 with thresholds `(from) → (to)` and, when `labels`, host labels.
async fn restart_agent(c: &mut Cluster, from: &str, to: &str, labels: bool) -> Result<()> {
    let agent = c.agent("web-01")?;
    agent.stop().await?;
    let mut text = std::fs::read_to_string(&agent.config_path)?;
    ensure!(
        text.contains(from),
        "{from} not in the agent config: {text}"
    );
    text = text.replace(from, to);
    if labels {
        // A top-level key: before the first table.
        text = format!("labels = {{ env = \"prod\", \"team-name\" = \"storage\" }}\n{text}");
    }
    std::fs::write(&agent.config_path, text)?;
    agent.restart()
}

/// `notification_sent` events recorded so far, as JSON objects.
async fn notification_records(c: &mut Cluster) -> Result<Vec<Value>> {
    let args = [
        "--output",
        "json",
        "events",
        "--since",
        "seq:1",
        "--kind",
        "notification_sent",
    ];
    let out = c.opsctl.run(&args).await?.ok()?;
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("event line {l}")))
        .collect()
}

/// A field of an event line, wherever the payload keeps it.
fn field<'a>(event: &'a Value, key: &str) -> &'a Value {
    [&event[key], &event["payload"][key], &event["body"][key]]
        .into_iter()
        .find(|v| !v.is_null())
        .unwrap_or(&Value::Null)
}

/// Waits until `coordinator` reports `role`.
async fn wait_role(c: &mut Cluster, coordinator: &str, role: &str) -> Result<Duration> {
    let start = Instant::now();
    let what = format!("{coordinator} to be {role}");
    wait_until(&what, WAIT, Duration::from_millis(100), async || {
        let r = c.status(Some(coordinator)).await?;
        Ok((r.responder.role.as_str() == role).then_some(()))
    })
    .await?;
    Ok(start.elapsed())
}

/// The alerts Alertmanager holds for `alertname` (any state it still returns).
async fn am_alerts(am: &Alertmanager, alertname: &str) -> Result<Vec<Value>> {
    let all = am
        .alerts("active=true&silenced=true&inhibited=true&unprocessed=true")
        .await?;
    Ok(all
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_and_pagerduty_get_firing_then_resolved() {
    Cluster::run("notifiers", async |c: &mut Cluster| {
        let mut am = Alertmanager::start(c.dir()).await?;
        let pd = PagerDuty::start().await?;
        let broken = PagerDuty::start().await?;
        broken.refuse_all();
        let dev = PagerDuty::start().await?;
        let toml = coordinator_toml(&am.url(), &pd.url(), &broken.url(), &dev.url());
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&toml))?;
        wait_role(c, "blue", "active").await?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(&toml))?;
        wait_role(c, "green", "standby").await?;

        let disk = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk)?;
        // Roomy thresholds and no labels first; then labels and a breach in one restart, so
        // the firing notification is matched against the labels.
        let roomy = "warn_percent = 99.98\ncrit_percent = 99.99";
        let low = "warn_percent = 0.1\ncrit_percent = 0.2";
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_secs(1))
                .modules_toml(&disk_module(&disk, 99.98, 99.99)),
        )?;
        let min: std::collections::BTreeMap<String, u64> = [("web-01".to_owned(), 1)].into();
        c.wait_hosts_at_least("blue", &min).await?;
        restart_agent(c, roomy, low, true).await?;

        // Alertmanager: the alert is active with its labels.
        let start = Instant::now();
        let fired = wait_until(
            "disk_crit active in Alertmanager",
            WAIT,
            Duration::from_millis(250),
            async || {
                let alerts = am_alerts(&am, "disk_crit").await?;
                Ok(alerts
                    .into_iter()
                    .find(|a| a["status"]["state"] == "active"))
            },
        )
        .await?;
        println!(
            "active in Alertmanager after {:?}: {fired}",
            start.elapsed()
        );
        let labels = &fired["labels"];
        ensure!(labels["host"] == "web-01", "{labels}");
        ensure!(labels["severity"] == "critical", "{labels}");
        ensure!(
            labels["env"] == "prod" && labels["team_name"] == "storage",
            "host labels, renamed: {labels}"
        );
        ensure!(
            labels["subject"].as_str().is_some_and(|s| !s.is_empty()),
            "{labels}"
        );
        let alert_id = fired["annotations"]["alert_id"]
            .as_str()
            .context("alert_id annotation")?
            .to_owned();
        ensure!(alert_id.starts_with("disk_crit/web-01/"), "{alert_id}");
        ensure!(
            fired["startsAt"].as_str().is_some_and(|s| s.ends_with('Z')),
            "{fired}"
        );

        // Blue dies; past the last post's endsAt (4 re-send intervals) after green took over,
        // the alert is still active: green re-sends it.
        c.coordinator("blue")?.sigkill().await?;
        let takeover = wait_role(c, "green", "active").await?;
        println!("green active {takeover:?} after kill -9 of blue");
        tokio::time::sleep(RESEND * 5).await;
        let still = am_alerts(&am, "disk_crit").await?;
        ensure!(
            still.iter().any(|a| a["status"]["state"] == "active"),
            "not re-sent: Alertmanager let it expire: {still:?}\n{}",
            am.log_tail()
        );

        // PagerDuty: a valid trigger with dedup_key = the alert id.
        let trigger = wait_until(
            "a PagerDuty trigger",
            WAIT,
            Duration::from_millis(200),
            async || {
                Ok(pd
                    .events()
                    .into_iter()
                    .find(|e| e.body["dedup_key"] == alert_id.as_str()))
            },
        )
        .await?;
        ensure!(
            trigger.problems.is_empty(),
            "Events v2 rules broken: {:?} in {}",
            trigger.problems,
            trigger.body
        );
        ensure!(
            trigger.body["event_action"] == "trigger",
            "{}",
            trigger.body
        );
        ensure!(
            trigger.body["payload"]["source"] == "web-01",
            "{}",
            trigger.body
        );

        // The disk comes back under its thresholds.
        restart_agent(c, low, roomy, false).await?;
        let resolved_sent = wait_until(
            "the resolve recorded as sent on am",
            WAIT,
            Duration::from_millis(200),
            async || {
                let records = notification_records(c).await?;
                let sent: Vec<Value> = records
                    .into_iter()
                    .filter(|r| field(r, "route") == "am" && field(r, "outcome") == "sent")
                    .filter(|r| field(r, "alert_id") == alert_id.as_str())
                    .collect();
                Ok((sent.len() >= 2).then_some(sent))
            },
        )
        .await?;
        println!("am deliveries recorded: {resolved_sent:?}");
        // Gone at once: Alertmanager drops an alert whose endsAt has passed. Had the resolve
        // not been posted, the last re-send's endsAt would keep it active for 9 s or more.
        let after = am_alerts(&am, "disk_crit").await?;
        ensure!(
            after.is_empty(),
            "still in Alertmanager after the resolve: {after:?}"
        );

        let resolve = wait_until(
            "a PagerDuty resolve",
            WAIT,
            Duration::from_millis(200),
            async || {
                Ok(pd.events().into_iter().find(|e| {
                    e.body["event_action"] == "resolve" && e.body["dedup_key"] == alert_id.as_str()
                }))
            },
        )
        .await?;
        ensure!(
            resolve.problems.is_empty(),
            "{:?} in {}",
            resolve.problems,
            resolve.body
        );
        ensure!(
            resolve.body["dedup_key"] == alert_id.as_str(),
            "same dedup_key: {}",
            resolve.body
        );
        let by = &resolve.body["payload"]["custom_details"]["coordinator"];
        ensure!(by == "green", "resolved by {by}");

        // The refusing receiver: one attempt per transition, each recorded as failed.
        let failed = wait_until(
            "two failed deliveries on pd-broken",
            WAIT,
            Duration::from_millis(200),
            async || {
                let records = notification_records(c).await?;
                let failed: Vec<Value> = records
                    .into_iter()
                    .filter(|r| {
                        field(r, "route") == "pd-broken"
                            && field(r, "alert_id") == alert_id.as_str()
                    })
                    .collect();
                Ok((failed.len() >= 2).then_some(failed))
            },
        )
        .await?;
        for r in &failed {
            ensure!(field(r, "outcome") == "failed", "{r}");
            ensure!(field(r, "attempts") == 1, "a 400 is not retried: {r}");
            ensure!(
                field(r, "detail")
                    .as_str()
                    .is_some_and(|d| d.contains("HTTP 400")),
                "{r}"
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = (broken.events().iter())
            .filter(|e| e.body["dedup_key"] == alert_id.as_str())
            .count();
        ensure!(
            got == failed.len(),
            "pd-broken got {got} posts for {} transitions",
            failed.len()
        );

        ensure!(
            dev.events().is_empty(),
            "labels env=dev matched a prod host: {:?}",
            dev.events()
        );
        am.check_running()?;
        Ok(())
    })
    .await;
}
