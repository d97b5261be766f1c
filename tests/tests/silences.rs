//! Silences and acknowledgements end to end: a real nats-server, two coordinators (blue
//! active, green standby) notifying a local webhook receiver, and an agent whose disk module
//! breaches on a temp dir. A breach notifies and resolves; with a silence for the host a new
//! breach fires (shown silenced) but notifies nothing — not from blue, and not from green
//! after blue is killed; expiring the silence through green notifies the firing exactly once;
//! an ack is recorded and shown. Then what must be refused: a viewer (role named, nothing
//! recorded), plain requests without `allow_unidentified`, bad durations and matchers.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{AlertView, AlertsReply, SilenceReply, SilencesReply};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Receiver, Recorded};

const HEARTBEAT: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(60);

fn coordinator_toml(hook: &str) -> String {
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
name = "ops"
kind = "webhook"
url = "{hook}"
"#
    )
}

/// A disk module on `dir` that breaches (`crit` 0.2 %: any real file system is fuller) or not.
fn disk_module(dir: &Path, breach: bool) -> String {
    let (warn, crit) = if breach { (0.1, 0.2) } else { (99.8, 99.9) };
    format!(
        "\n[[modules]]\ntype = \"disk\"\ninterval = \"500ms\"\npaths = [{:?}]\n\
         warn_percent = {warn}\ncrit_percent = {crit}\nhysteresis_percent = 0.05\n",
        dir.display().to_string()
    )
}

/// Restarts web-01 with a breaching or a roomy disk threshold.
async fn set_breach(c: &mut Cluster, breach: bool) -> Result<()> {
    let agent = c.agent("web-01")?;
    agent.stop().await?;
    let text = std::fs::read_to_string(&agent.config_path)?;
    let text = if breach {
        text.replace("warn_percent = 99.8", "warn_percent = 0.1")
            .replace("crit_percent = 99.9", "crit_percent = 0.2")
    } else {
        text.replace("warn_percent = 0.1", "warn_percent = 99.8")
            .replace("crit_percent = 0.2", "crit_percent = 99.9")
    };
    std::fs::write(&agent.config_path, text)?;
    agent.restart()
}

/// The disk_crit notifications of web-01 the receiver got, by state.
fn disk_notes(rx: &Receiver, state: &str) -> Vec<Recorded> {
    rx.requests()
        .into_iter()
        .filter(|r| {
            r.body["alert_id"]
                .as_str()
                .is_some_and(|a| a.starts_with("disk_crit/web-01/"))
                && r.body["state"] == state
        })
        .collect()
}

async fn wait_notes(rx: &Receiver, state: &str, n: usize) -> Result<Vec<Recorded>> {
    wait_until(
        &format!("{n} disk_crit {state} notification(s)"),
        WAIT,
        Duration::from_millis(100),
        async || {
            let got = disk_notes(rx, state);
            Ok((got.len() >= n).then_some(got))
        },
    )
    .await
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

/// web-01's disk_crit alert as `coordinator` shows it.
async fn disk_alert(c: &Cluster, coordinator: &str) -> Result<Option<AlertView>> {
    let reply: AlertsReply = c
        .opsctl
        .json(&["alerts", "--host", "web-01", "--coordinator", coordinator])
        .await?;
    Ok(reply.alerts.into_iter().find(|a| a.rule == "disk_crit"))
}

/// Runs opsctl as `operator` (identified: `ops.api.as.<operator>.<role>.*`).
async fn as_operator(
    c: &Cluster,
    operator: &str,
    args: &[&str],
) -> Result<opsfleet_tests::procs::CmdOutput> {
    let mut all = vec!["--operator", operator];
    all.extend_from_slice(args);
    c.opsctl.run(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_a_disk_breach_across_a_failover_and_its_expiry_notifies_once() {
    Cluster::run("silences", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        let hook = rx.url("/hook");
        let disk_dir = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk_dir)?;
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&coordinator_toml(&hook)))?;
        wait_role(c, "blue", "active").await?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(&coordinator_toml(&hook)))?;
        wait_role(c, "green", "standby").await?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(HEARTBEAT)
                .modules_toml(&disk_module(&disk_dir, true)),
        )?;

        // Unsilenced: a breach notifies, and resolves.
        let fired = wait_notes(&rx, "firing", 1).await?;
        let alert_id = fired[0].body["alert_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        set_breach(c, false).await?;
        wait_notes(&rx, "resolved", 1).await?;

        // A silence for the host, by alice (operator).
        let out = as_operator(
            c,
            "alice",
            &[
                "-o",
                "json",
                "silence",
                "add",
                "--host",
                "web-01",
                "--for",
                "10m",
                "--reason",
                "disk swap",
            ],
        )
        .await?
        .ok()?;
        let added: SilenceReply = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("silence add printed {}", out.stdout))?;
        let silence = added.silence.id.clone();
        ensure!(
            added.silence.state == "active"
                && added.silence.created_by == "alice"
                && added.silence.created_role == "operator",
            "{added:?}"
        );
        println!(
            "silence {silence} added, answered by {}",
            added.responder.name
        );

        // Breach again: it fires in the projection, shown silenced, and nothing is sent.
        set_breach(c, true).await?;
        let shown = wait_until(
            "the breach to fire, silenced",
            WAIT,
            Duration::from_millis(200),
            async || {
                let a = disk_alert(c, "blue").await?;
                Ok(a.filter(|a| a.state.as_str() == "firing" && a.silenced_by.contains(&silence)))
            },
        )
        .await?;
        println!("firing and silenced: {shown:?}");
        let table = c
            .opsctl
            .run(&["alerts", "--host", "web-01"])
            .await?
            .ok()?
            .stdout;
        ensure!(
            table.contains("SILENCED/ACKED")
                && table.contains(&format!("silenced ({})", &silence[..8])),
            "{table}"
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            disk_notes(&rx, "firing").len() == 1,
            "a silenced firing was notified: {:?}",
            rx.requests()
        );

        // Failover: green folds everything, blue dies, green takes over and still sends nothing.
        wait_until(
            "green to catch up",
            WAIT,
            Duration::from_millis(200),
            async || {
                let a = disk_alert(c, "green").await?;
                let behind = c.status(Some("green")).await?.responder.behind;
                Ok((behind == 0 && a.is_some_and(|a| a.state.as_str() == "firing")).then_some(()))
            },
        )
        .await?;
        c.coordinator("blue")?.sigkill().await?;
        let t = Instant::now();
        wait_role(c, "green", "active").await?;
        println!("green active {:?} after kill -9 of blue", t.elapsed());
        // Long enough for green to catch up and run its delivery loop many times over.
        tokio::time::sleep(Duration::from_secs(5)).await;
        ensure!(
            disk_notes(&rx, "firing").len() == 1,
            "the new active notified a silenced firing: {:?}",
            rx.requests()
        );
        let a = disk_alert(c, "green")
            .await?
            .context("green knows the alert")?;
        ensure!(
            a.silenced_by.contains(&silence),
            "green shows it silenced: {a:?}"
        );

        // Expire it (by a unique prefix) through green: the firing is notified, once, by green.
        let out = as_operator(
            c,
            "bob",
            &["-o", "json", "silence", "expire", &silence[..8]],
        )
        .await?
        .ok()?;
        let expired: SilenceReply = serde_json::from_str(out.stdout.trim())?;
        ensure!(
            expired.silence.state == "expired"
                && expired.silence.expired_by.as_deref() == Some("bob")
                && expired.responder.name == "green",
            "{expired:?}"
        );
        let t = Instant::now();
        let fired = wait_notes(&rx, "firing", 2).await?;
        println!("firing notified {:?} after the expiry", t.elapsed());
        ensure!(
            fired[1].body["coordinator"] == "green",
            "sent by {}",
            fired[1].body
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            disk_notes(&rx, "firing").len() == 2,
            "notified more than once: {:?}",
            rx.requests()
        );
        ensure!(disk_notes(&rx, "resolved").len() == 1);

        // The list: nothing active, the expired one with --all.
        let list: SilencesReply = c.opsctl.json(&["silence", "list"]).await?;
        ensure!(list.silences.is_empty(), "{list:?}");
        let all: SilencesReply = c.opsctl.json(&["silence", "list", "--all"]).await?;
        ensure!(
            all.silences.len() == 1 && all.silences[0].state == "expired",
            "{all:?}"
        );

        // A viewer may not ack, add or expire; the refusal names the role; nothing is recorded.
        for args in [
            vec!["--role", "viewer", "alerts", "ack", alert_id.as_str()],
            vec![
                "--role", "viewer", "silence", "add", "--host", "web-01", "--for", "1h",
                "--reason", "x",
            ],
            vec!["--role", "viewer", "silence", "expire", silence.as_str()],
        ] {
            let out = as_operator(c, "vera", &args).await?;
            ensure!(!out.status.success(), "{}: {}", out.cmdline, out.stdout);
            ensure!(
                out.stderr.contains("needs role operator")
                    && out.stderr.contains("acted as viewer"),
                "{}: {}",
                out.cmdline,
                out.stderr
            );
        }
        let all: SilencesReply = c.opsctl.json(&["silence", "list", "--all"]).await?;
        ensure!(
            all.silences.len() == 1,
            "a viewer's silence was recorded: {all:?}"
        );
        ensure!(disk_alert(c, "green")
            .await?
            .is_some_and(|a| a.acked_by.is_none()));

        // Ack: recorded with the operator's name and shown.
        let out = as_operator(
            c,
            "alice",
            &["alerts", "ack", &alert_id, "--comment", "swapping it"],
        )
        .await?
        .ok()?;
        ensure!(
            out.stdout.contains("acknowledged") && out.stdout.contains("alice"),
            "{}",
            out.stdout
        );
        let a = disk_alert(c, "green").await?.context("alert")?;
        ensure!(
            a.acked_by.as_deref() == Some("alice")
                && a.ack_comment.as_deref() == Some("swapping it"),
            "{a:?}"
        );
        let table = c
            .opsctl
            .run(&["alerts", "--host", "web-01"])
            .await?
            .ok()?
            .stdout;
        ensure!(table.contains("acked by alice"), "{table}");
        // A second ack is refused clearly; so is an unknown alert.
        let again = as_operator(c, "bob", &["alerts", "ack", &alert_id]).await?;
        ensure!(
            !again.status.success() && again.stderr.contains("already acknowledged by alice"),
            "{}",
            again.stderr
        );
        let unknown = as_operator(c, "bob", &["alerts", "ack", "disk_crit/nope/x"]).await?;
        ensure!(
            !unknown.status.success() && unknown.stderr.contains("no alert"),
            "{}",
            unknown.stderr
        );

        // Every silence and ack is an event in the log, from the coordinators' subjects.
        let out = c
            .opsctl
            .run(&["events", "--since", "seq:1", "--kind", "silence_added"])
            .await?
            .ok()?;
        ensure!(
            out.stdout
                .lines()
                .filter(|l| l.contains("silence "))
                .count()
                == 1,
            "{}",
            out.stdout
        );

        // The resolve after the ack still goes out.
        set_breach(c, false).await?;
        wait_notes(&rx, "resolved", 2).await?;

        // Green's projection (silences, acks) refolds exactly.
        c.coordinator("green")?.stop().await?;
        let (report, _) = c.coordinator("green")?.rebuild(true).await?;
        ensure!(report.matches, "green's rebuild differs: {report:?}");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unidentified_bad_and_unknown_silence_requests_are_refused() {
    Cluster::run("silences-refused", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").identified_only())?;
        wait_role(c, "blue", "active").await?;

        // Plain subjects are refused without [api] allow_unidentified.
        for args in [
            vec![
                "silence", "add", "--host", "web-01", "--for", "1h", "--reason", "x",
            ],
            vec!["alerts", "ack", "disk_crit/web-01//data"],
            vec!["silence", "expire", "0193a4c2-7d1e-7abc-9def-0123456789ab"],
        ] {
            let out = c.opsctl.run(&args).await?;
            ensure!(
                !out.status.success() && out.stderr.contains("allow_unidentified"),
                "{}: {}",
                out.cmdline,
                out.stderr
            );
        }

        // Bad requests, each refused with its reason.
        for (args, reason) in [
            (
                vec![
                    "silence", "add", "--host", "web-01", "--for", "0s", "--reason", "x",
                ],
                "not within 1 ms and 30 days",
            ),
            (
                vec![
                    "silence", "add", "--host", "web-01", "--for", "31days", "--reason", "x",
                ],
                "not within 1 ms and 30 days",
            ),
            (
                vec![
                    "silence", "add", "--host", "web[1]", "--for", "1h", "--reason", "x",
                ],
                "is not a glob",
            ),
            (
                vec![
                    "silence", "add", "--label", "env", "--for", "1h", "--reason", "x",
                ],
                "is not key=value",
            ),
            (
                vec![
                    "silence",
                    "add",
                    "--rule",
                    "disk crit",
                    "--for",
                    "1h",
                    "--reason",
                    "x",
                ],
                "is not a rule name",
            ),
            (
                vec![
                    "silence", "add", "--host", "web-01", "--for", "1h", "--reason", " ",
                ],
                "a reason is required",
            ),
            (
                vec!["silence", "expire", "0193a4c2-7d1e-7abc-9def-0123456789ab"],
                "no silence",
            ),
            (vec!["silence", "expire", "0193a4c"], "no silence"),
            (vec!["alerts", "ack", "disk_crit/web-01//data"], "no alert"),
        ] {
            let out = as_operator(c, "alice", &args).await?;
            ensure!(
                out.status.code() == Some(1) && out.stderr.contains(reason),
                "{}: exit {:?}, wanted {reason:?}: {}",
                out.cmdline,
                out.status.code(),
                out.stderr
            );
        }
        // No matcher at all is a usage error (exit 2), caught by opsctl.
        let out = as_operator(
            c,
            "alice",
            &["silence", "add", "--for", "1h", "--reason", "x"],
        )
        .await?;
        ensure!(
            out.status.code() == Some(2) && out.stderr.contains("at least one matcher"),
            "{}: {}",
            out.cmdline,
            out.stderr
        );
        let all: SilencesReply = c.opsctl.json(&["silence", "list", "--all"]).await?;
        ensure!(
            all.silences.is_empty(),
            "a refused silence was recorded: {all:?}"
        );
        Ok(())
    })
    .await;
}
