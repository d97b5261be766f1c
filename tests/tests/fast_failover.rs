//! Fast takeover (`[topology] takeover_after`) end to end with two real coordinators on a real
//! nats-server, with a tolerant setting for a loaded CI machine (takeover 2 s, TTL 6 s):
//! kill -9 of the active hands the role to the standby well before the lease could have aged
//! out, by a CAS of the silent holder's revision; an active SIGSTOPped past the takeover and
//! then continued issues nothing an agent accepts (agents reject its epoch, it refuses
//! commands) and gives up the notification it was retrying, which the new active sends once.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use async_nats::jetstream;
use nix::sys::signal::Signal;
use opsfleet_proto::api::{LeaderRole, Responder, StatusReply};
use opsfleet_proto::subjects;
use opsfleet_tests::injected;
use opsfleet_tests::receiver::webhook_alerts_toml;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Receiver};

const TTL: Duration = Duration::from_secs(6);
const WAIT: Duration = Duration::from_secs(60);

fn coordinator(name: &str, extra: &str) -> CoordinatorSpec {
    CoordinatorSpec::new(name)
        .topology_toml("lease_ttl = \"6s\"\ntakeover_after = \"2s\"")
        .config_toml(extra)
}

async fn ask(client: &async_nats::Client, name: &str) -> Option<Responder> {
    let subject = subjects::api_subject_for(subjects::API_STATUS, name);
    let reply = tokio::time::timeout(
        Duration::from_millis(500),
        client.request(subject, "{}".into()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice::<StatusReply>(&reply.payload)
        .ok()
        .map(|r| r.responder)
}

/// Polls `name` every 20 ms until it reports itself active; how long that took.
async fn wait_active(client: &async_nats::Client, name: &str) -> Result<(Responder, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(r) = ask(client, name).await {
            if r.role == LeaderRole::Active {
                return Ok((r, start.elapsed()));
            }
        }
        if start.elapsed() > WAIT {
            bail!("{name} did not become active within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// blue active, green an answering standby for 2 s (settled on the lease's revisions).
async fn blue_active_green_standby(
    c: &mut Cluster,
    client: &async_nats::Client,
    extra: &str,
) -> Result<Responder> {
    c.add_coordinator(coordinator("blue", extra))?;
    let (blue, _) = wait_active(client, "blue").await?;
    c.add_coordinator(coordinator("green", extra))?;
    wait_until(
        "green standby",
        WAIT,
        Duration::from_millis(100),
        async || {
            Ok(ask(client, "green")
                .await
                .filter(|r| r.role == LeaderRole::Standby))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(blue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_active_is_taken_over_before_the_ttl_could_expire() {
    Cluster::run("fast-failover-kill", async |c: &mut Cluster| {
        let client = async_nats::connect(c.nats_url()).await?;
        let old = blue_active_green_standby(c, &client, "").await?;
        let killed = Instant::now();
        c.coordinator("blue")?.sigkill().await?;
        let (new, _) = wait_active(&client, "green").await?;
        let took = killed.elapsed();
        println!("green active {took:?} after kill -9 of blue (takeover 2 s, TTL {TTL:?})");
        // blue's last renewal was at most 400 ms before the kill: the lease could not have
        // aged out before TTL - 400 ms.
        ensure!(
            took < TTL - Duration::from_millis(400),
            "took {took:?}: not before the lease could expire"
        );
        ensure!(
            new.epoch > old.epoch,
            "epoch {} -> {}",
            old.epoch,
            new.epoch
        );
        let log = c.coordinator("green")?.proc().log_since_start();
        ensure!(
            log.contains("taking over"),
            "green did not take over by CAS; log:\n{log}"
        );
        Ok(())
    })
    .await;
}

/// Alerts on, the disk rule firing at once, one webhook route retrying fast and long.
fn alerts_toml(hook: &str) -> String {
    let retries = "max_attempts = 20\nretry_min_delay = \"500ms\"\nretry_max_delay = \"2s\"\n\
                   timeout = \"2s\"\n";
    webhook_alerts_toml(hook, "", "", retries)
}

/// A command stamped with `epoch`, recorded and published the way a coordinator does.
async fn publish_stale(js: &jetstream::Context, epoch: u64) -> Result<String> {
    let cmd = injected::pause("web-01", epoch);
    injected::record_issue(js, &cmd, "pause").await?;
    injected::publish_command(js, &cmd, &cmd.id).await?;
    Ok(cmd.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_frozen_past_the_takeover_issues_nothing_and_sends_nothing_twice() {
    Cluster::run("fast-failover-sigstop", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        // Every notification fails until the script is cleared: blue keeps retrying.
        rx.fail_next(100_000);
        let extra = alerts_toml(&rx.url("/hook"));
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client.clone());
        let old = blue_active_green_standby(c, &client, &extra).await?;
        let disk = c.dir().join("data-disk");
        std::fs::create_dir_all(&disk)?;
        let log = c.dir().join("app.log");
        std::fs::write(&log, "starting\n")?;
        let modules = opsfleet_tests::disk_and_log_modules(&[disk.as_path()], &log, 0.1, 0.2);
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(500))
                .modules_toml(&modules),
        )?;
        // blue is retrying the firing notification.
        rx.wait_for(3, WAIT).await?;

        let blue_pid = c.coordinator("blue")?.proc().pid().context("blue pid")?;
        let blue = nix::unistd::Pid::from_raw(blue_pid);
        nix::sys::signal::kill(blue, Signal::SIGSTOP)?;
        let stopped = Instant::now();
        let (new, _) = wait_active(&client, "green").await?;
        let took = stopped.elapsed();
        println!("green active {took:?} after SIGSTOP of blue");
        // As in the kill -9 test: the lease could not have aged out before TTL - 400 ms, and
        // green's own log says it took the lease by CAS.
        ensure!(
            took < TTL - Duration::from_millis(400),
            "took {took:?}: the TTL, not the fast takeover"
        );
        let green_log = c.coordinator("green")?.proc().log_since_start();
        ensure!(
            green_log.contains("taking over"),
            "green did not take over by CAS; log:\n{green_log}"
        );
        ensure!(
            new.epoch > old.epoch,
            "epoch {} -> {}",
            old.epoch,
            new.epoch
        );

        // The receiver accepts from now on: green sends the firing notification.
        rx.clear_script();
        let firing = |r: &opsfleet_tests::Recorded| {
            r.status == 200
                && r.body["alert_id"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("disk_crit/web-01/"))
        };
        wait_until(
            "green's notification",
            WAIT,
            Duration::from_millis(100),
            async || Ok(rx.requests().into_iter().find(|r| firing(r))),
        )
        .await?;

        // blue continues, well before its lease could have aged out on the server.
        nix::sys::signal::kill(blue, Signal::SIGCONT)?;
        let resumed = rx.requests().len();
        let blue_now = wait_until(
            "blue answers again",
            WAIT,
            Duration::from_millis(100),
            async || Ok(ask(&client, "blue").await),
        )
        .await?;
        ensure!(
            blue_now.role == LeaderRole::Standby,
            "blue after SIGCONT: {blue_now:?}"
        );
        let direct = subjects::api_subject_for(subjects::API_COMMAND, "blue");
        let req = serde_json::json!({"action": "pause", "module": "disk", "hosts": ["web-01"],
            "deadline_ms": 60000, "issued_by": "test"});
        let reply = client
            .request(direct, serde_json::to_vec(&req)?.into())
            .await?;
        let text = String::from_utf8_lossy(&reply.payload).to_string();
        ensure!(
            text.contains("not active"),
            "blue answered a command request: {text}"
        );

        // The agent learns green's epoch; anything stamped with blue's is rejected.
        let out = (c.opsctl)
            .run(&[
                "--output", "json", "noop", "--host", "web-01", "--wait", "60s",
            ])
            .await?
            .ok()?;
        let outcome: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
        ensure!(
            outcome["all_completed"] == true && outcome["epoch"] == new.epoch,
            "{outcome}"
        );
        let stale = publish_stale(&js, old.epoch).await?;
        let v = wait_until(
            "the stale command rejected",
            WAIT,
            Duration::from_millis(200),
            async || {
                Ok(injected::command_view(c, &stale)
                    .await?
                    .filter(|v| v.state == opsfleet_proto::api::CommandState::Rejected))
            },
        )
        .await?;
        ensure!(v.detail.contains("epoch"), "rejection reason: {}", v.detail);

        // blue gave up its retries when its window ended: nothing from it after SIGCONT, and
        // the firing notification was accepted exactly once.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let all = rx.requests();
        let from_blue: Vec<_> = all[resumed..]
            .iter()
            .filter(|r| r.body["coordinator"] == "blue")
            .collect();
        ensure!(
            from_blue.is_empty(),
            "blue sent after SIGCONT: {from_blue:?}"
        );
        let accepted: Vec<_> = all.iter().filter(|r| firing(r)).collect();
        ensure!(
            accepted.len() == 1,
            "accepted {} times: {accepted:?}",
            accepted.len()
        );
        ensure!(
            accepted[0].body["coordinator"] == "green",
            "{}",
            accepted[0].body
        );
        Ok(())
    })
    .await;
}
