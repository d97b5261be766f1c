//! Fast takeover with the old active frozen, end to end: two real coordinators with a long
//! lease TTL (20 s) and the default takeover threshold, a real webhook receiver, an agent in
//! disk breach. Blue (active) notifies the firing, then is SIGSTOPped: green takes the lease by
//! CAS long before the TTL could run out, and sends what became due meanwhile (a log alert).
//! Blue is continued after the takeover: it answers as standby, refuses to issue, its
//! announcements no longer count, and no notification reaches the receiver twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use opsfleet_proto::api::LeaderRole;
use opsfleet_proto::subjects;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Receiver, Recorded};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// Far above what a takeover by CAS takes even on a loaded machine, far below the TTL path
/// (the lease would age out 20 s after blue's last renewal).
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);

fn coordinator(name: &str, hook: &str) -> CoordinatorSpec {
    CoordinatorSpec::new(name)
        .topology_toml("lease_ttl = \"20s\"")
        .config_toml(&format!(
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

[alerts.rules.log_errors]
window = "20s"

[[notify.routes]]
name = "ops"
kind = "webhook"
url = "{hook}"
"#
        ))
}

/// (alert id, state) of a notification the receiver got.
fn key(r: &Recorded) -> (String, String) {
    let s = |k: &str| r.body[k].as_str().unwrap_or_default().to_owned();
    (s("alert_id"), s("state"))
}

async fn wait_notification(rx: &Receiver, alert_id: &str, state: &str) -> Result<Recorded> {
    wait_until(
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
    .await
}

async fn role(c: &mut Cluster, coordinator: &str) -> Result<(LeaderRole, u64)> {
    let r = c.status(Some(coordinator)).await?;
    Ok((r.responder.role, r.responder.epoch))
}

fn signal(c: &mut Cluster, name: &str, sig: Signal) -> Result<()> {
    let pid = c.coordinator(name)?.proc().pid().context("pid")?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_active_is_replaced_by_cas_and_sends_nothing_when_it_wakes() {
    Cluster::run("fast_failover", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        let hook = rx.url("/hook");
        let disk_dir = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk_dir)?;
        let log = c.dir().join("app.log");
        std::fs::write(&log, "starting\n")?;

        c.add_coordinator(coordinator("blue", &hook))?;
        let (_, old_epoch) = wait_until("blue active", WAIT, Duration::from_millis(100), async || {
            Ok(Some(role(c, "blue").await?).filter(|r| r.0 == LeaderRole::Active))
        })
        .await?;
        c.add_coordinator(coordinator("green", &hook))?;
        wait_until("green standby", WAIT, Duration::from_millis(100), async || {
            Ok(Some(role(c, "green").await?).filter(|r| r.0 == LeaderRole::Standby))
        })
        .await?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_secs(1))
                .modules_toml(&opsfleet_tests::disk_and_log_modules(&[&disk_dir], &log, 0.1, 0.2)),
        )?;
        let fired = wait_notification(&rx, "disk_crit/web-01/", "firing").await?;
        ensure!(fired.body["coordinator"] == "blue", "firing sent by {}", fired.body);
        wait_until("green caught up", WAIT, Duration::from_millis(200), async || {
            Ok((c.status(Some("green")).await?.responder.behind == 0).then_some(()))
        })
        .await?;

        // Freeze blue; green takes over by CAS, not by the 20 s TTL.
        let frozen_at = Instant::now();
        signal(c, "blue", Signal::SIGSTOP)?;
        let (_, new_epoch) = wait_until("green active", WAIT, Duration::from_millis(50), async || {
            Ok(Some(role(c, "green").await?).filter(|r| r.0 == LeaderRole::Active))
        })
        .await?;
        let took = frozen_at.elapsed();
        println!("green active {took:?} after SIGSTOP of blue (epoch {old_epoch} -> {new_epoch})");
        ensure!(took < TAKEOVER_BOUND, "takeover took {took:?}: the TTL path, not the CAS");
        ensure!(new_epoch > old_epoch, "epoch {old_epoch} -> {new_epoch}");

        // Something becomes due while blue is frozen: green notifies it.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)?
            .write_all(b"ERROR payment backend refused the connection\n")?;
        let fired = wait_notification(&rx, "log_errors/web-01/", "firing").await?;
        ensure!(fired.body["coordinator"] == "green", "log firing sent by {}", fired.body);
        // The agent learns the new epoch from a command of green.
        let out = c
            .opsctl
            .run(&["--output", "json", "noop", "--host", "web-01", "--wait", "60s"])
            .await?
            .ok()?;
        let outcome: Value = serde_json::from_str(out.stdout.trim())?;
        ensure!(outcome["all_completed"] == true && outcome["epoch"] == new_epoch, "{outcome}");

        // Blue wakes up: it answers as standby and refuses to issue.
        signal(c, "blue", Signal::SIGCONT)?;
        let (blue_role, _) = wait_until("blue answers", WAIT, Duration::from_millis(100), async || {
            Ok(role(c, "blue").await.ok())
        })
        .await?;
        ensure!(blue_role == LeaderRole::Standby, "blue after SIGCONT: {blue_role:?}");
        let client = async_nats::connect(c.nats_url()).await?;
        let req = serde_json::json!({"action": "pause", "module": "disk", "hosts": ["web-01"], "deadline_ms": 60000, "issued_by": "test"});
        let reply = client
            .request(subjects::api_subject_for(subjects::API_COMMAND, "blue"), serde_json::to_vec(&req)?.into())
            .await?;
        let text = String::from_utf8_lossy(&reply.payload).to_string();
        ensure!(text.contains("not active"), "blue answered a command request: {text}");
        // Green stays active: blue's wake-up took nothing from it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (green_role, epoch) = role(c, "green").await?;
        ensure!(
            green_role == LeaderRole::Active && epoch == new_epoch,
            "green after blue woke: {green_role:?} epoch {epoch}"
        );

        // No notification twice, by (alert, state) or by idempotency key.
        let mut per_key: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
        for r in &rx.requests() {
            *per_key.entry(key(r)).or_default() += 1;
            *per_id
                .entry(r.header("idempotency-key").unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        println!("notifications: {per_key:?}");
        ensure!(per_key.values().all(|n| *n == 1), "a notification twice: {per_key:?}");
        ensure!(per_id.values().all(|n| *n == 1), "an idempotency key twice: {per_id:?}");
        Ok(())
    })
    .await;
}
