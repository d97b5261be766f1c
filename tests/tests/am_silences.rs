//! opsfleet silences mirrored into a real Alertmanager (Debian's `prometheus-alertmanager`,
//! read through its own v2 API): a real nats-server, two coordinators (blue active, green
//! standby), an agent whose disk breaches. The firing alert is posted to Alertmanager; then
//! `opsctl silence add --host --rule` makes one Alertmanager silence with the translated
//! matchers, the operator and the `opsfleet-silence:<id>` marker, and the alert shows
//! `suppressed` by it; blue is killed -9 and green, now active, neither duplicates nor loses
//! it; `opsctl silence expire` through green expires it there and the alert is active again.
//! A second Alertmanager behind a route with `mirror_silences = false` gets no silence.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::SilenceReply;
use opsfleet_tests::alertmanager::Alertmanager;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const RESEND: Duration = Duration::from_secs(2);

fn coordinator_toml(am: &str, off: &str) -> String {
    format!(
        r#"
[alerts]
interval = "500ms"
missed_heartbeats = 20
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

[[notify.routes]]
name = "am-off"
kind = "alertmanager"
url = "{off}"
resend_interval = "{resend}s"
rules = ["disk_crit"]
mirror_silences = false
"#,
        resend = RESEND.as_secs()
    )
}

/// A disk module on `dir` that breaches (`crit` 0.2 %: any real file system is fuller).
fn disk_module(dir: &Path) -> String {
    format!(
        "\n[[modules]]\ntype = \"disk\"\ninterval = \"500ms\"\npaths = [{:?}]\n\
         warn_percent = 0.1\ncrit_percent = 0.2\nhysteresis_percent = 0.05\n",
        dir.display().to_string()
    )
}

async fn wait_role(c: &mut Cluster, coordinator: &str, role: &str) -> Result<()> {
    wait_until(
        &format!("{coordinator} to be {role}"),
        WAIT,
        Duration::from_millis(100),
        async || {
            let r = c.status(Some(coordinator)).await?;
            Ok((r.responder.role.as_str() == role).then_some(()))
        },
    )
    .await
}

/// Alertmanager's silences that mirror opsfleet silence `id`.
async fn mirrors(am: &Alertmanager, id: &str) -> Result<Vec<Value>> {
    let marker = format!("opsfleet-silence:{id}");
    Ok(am
        .silences()
        .await?
        .into_iter()
        .filter(|s| s["comment"].as_str().is_some_and(|c| c.contains(&marker)))
        .collect())
}

/// web-01's disk_crit alert as Alertmanager holds it.
async fn disk_alert(am: &Alertmanager) -> Result<Option<Value>> {
    let all = am
        .alerts("active=true&silenced=true&inhibited=true&unprocessed=true")
        .await?;
    Ok(all
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "disk_crit" && a["labels"]["host"] == "web-01"))
}

/// The matcher named `name` of an Alertmanager silence.
fn matcher<'a>(silence: &'a Value, name: &str) -> Option<&'a Value> {
    (silence["matchers"].as_array()?)
        .iter()
        .find(|m| m["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opsfleet_silences_are_mirrored_into_alertmanager_across_a_failover() {
    Cluster::run("am_silences", async |c: &mut Cluster| {
        let am = Alertmanager::start(c.dir()).await?;
        let off = Alertmanager::start(&c.dir().join("off")).await?;
        let toml = coordinator_toml(&am.url(), &off.url());
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&toml))?;
        wait_role(c, "blue", "active").await?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(&toml))?;
        wait_role(c, "green", "standby").await?;
        let disk = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk)?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_secs(1))
                .modules_toml(&disk_module(&disk)),
        )?;

        // The breach fires and is posted, unsilenced.
        wait_until(
            "disk_crit active in Alertmanager",
            WAIT,
            Duration::from_millis(250),
            async || {
                Ok(disk_alert(&am)
                    .await?
                    .filter(|a| a["status"]["state"] == "active"))
            },
        )
        .await?;

        // An opsfleet silence for the host and rule, by alice.
        let args = [
            "--operator",
            "alice",
            "-o",
            "json",
            "silence",
            "add",
            "--host",
            "web-01",
            "--rule",
            "disk_crit",
            "--for",
            "10m",
            "--reason",
            "disk swap",
        ];
        let out = c.opsctl.run(&args).await?.ok()?;
        let added: SilenceReply = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("silence add printed {}", out.stdout))?;
        let id = added.silence.id.clone();
        let t = Instant::now();
        let mirror = wait_until(
            "the mirror in Alertmanager",
            WAIT,
            Duration::from_millis(200),
            async || {
                let found = mirrors(&am, &id).await?;
                Ok(found.into_iter().find(|s| s["status"]["state"] == "active"))
            },
        )
        .await?;
        println!("mirrored after {:?}: {mirror}", t.elapsed());
        ensure!(mirror["createdBy"] == "alice", "{mirror}");
        ensure!(
            mirror["comment"]
                .as_str()
                .is_some_and(|c| c.starts_with("disk swap")),
            "{mirror}"
        );
        let rule = matcher(&mirror, "alertname").context("alertname matcher")?;
        ensure!(
            rule["value"] == "disk_crit" && rule["isRegex"] == false,
            "{mirror}"
        );
        let host = matcher(&mirror, "host").context("host matcher")?;
        ensure!(
            host["value"] == "^web-01$" && host["isRegex"] == true,
            "{mirror}"
        );
        let (starts, ends) = (mirror["startsAt"].as_str(), mirror["endsAt"].as_str());
        ensure!(
            starts.zip(ends).is_some_and(|(s, e)| s < e),
            "startsAt before endsAt: {mirror}"
        );
        let mirror_id = mirror["id"].as_str().context("mirror id")?.to_owned();

        // The alert posted before the silence is suppressed by the mirror.
        let suppressed = wait_until(
            "the alert suppressed in Alertmanager",
            WAIT,
            Duration::from_millis(250),
            async || {
                Ok(disk_alert(&am).await?.filter(|a| {
                    a["status"]["state"] == "suppressed"
                        && a["status"]["silencedBy"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|x| x == mirror_id.as_str()))
                }))
            },
        )
        .await?;
        println!("suppressed: {}", suppressed["status"]);

        // Failover: green takes over and, after several passes, one mirror still stands.
        wait_until(
            "green to catch up",
            WAIT,
            Duration::from_millis(200),
            async || Ok((c.status(Some("green")).await?.responder.behind == 0).then_some(())),
        )
        .await?;
        c.coordinator("blue")?.sigkill().await?;
        wait_role(c, "green", "active").await?;
        tokio::time::sleep(RESEND * 4).await;
        let after = mirrors(&am, &id).await?;
        let live: Vec<&Value> = after
            .iter()
            .filter(|s| s["status"]["state"] == "active")
            .collect();
        ensure!(
            live.len() == 1 && live[0]["id"] == mirror_id.as_str(),
            "one mirror, the same, after the failover: {after:?}"
        );
        ensure!(
            disk_alert(&am)
                .await?
                .is_some_and(|a| a["status"]["state"] == "suppressed"),
            "still suppressed under green"
        );

        // Expired early through green: the mirror is expired and the alert active again.
        let args = ["--operator", "bob", "-o", "json", "silence", "expire", &id];
        let out = c.opsctl.run(&args).await?.ok()?;
        let expired: SilenceReply = serde_json::from_str(out.stdout.trim())?;
        ensure!(expired.responder.name == "green", "{expired:?}");
        wait_until(
            "the mirror expired in Alertmanager",
            WAIT,
            Duration::from_millis(200),
            async || {
                let found = mirrors(&am, &id).await?;
                let gone =
                    !found.is_empty() && found.iter().all(|s| s["status"]["state"] == "expired");
                Ok(gone.then_some(()))
            },
        )
        .await?;
        wait_until(
            "the alert active again",
            WAIT,
            Duration::from_millis(250),
            async || {
                Ok(disk_alert(&am)
                    .await?
                    .filter(|a| a["status"]["state"] == "active"))
            },
        )
        .await?;

        // The route without mirroring made no silence in its Alertmanager, though it got the alert.
        ensure!(disk_alert(&off).await?.is_some(), "am-off got the alert");
        let none = off.silences().await?;
        ensure!(
            none.is_empty(),
            "mirror_silences = false made silences: {none:?}"
        );
        Ok(())
    })
    .await;
}
