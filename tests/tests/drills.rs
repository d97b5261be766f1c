//! Scheduled drills end to end: a real nats-server, two coordinators (blue active, green
//! standby) with a `notification_test` drill every 12 s (jitter 1 s) notifying a real local
//! webhook receiver, and a drill switched off. The active runs the drill on its schedule; the
//! test notification is marked as a test; blue is killed -9 just after it recorded a run's
//! start, green takes over within that slot and does not run it again (one `started` per slot
//! in the log) but runs the next one; the drill switched off raises `drill_overdue`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::{wait_until, Cluster, CoordinatorSpec, Receiver};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
/// The drill's period (`every` below).
const EVERY_MS: i64 = 12_000;

fn coordinator_toml(hook: &str) -> String {
    format!(
        r#"
[alerts]
interval = "500ms"

[[notify.routes]]
name = "ops"
kind = "webhook"
url = "{hook}"

[[drills]]
name = "notify"
kind = "notification_test"
every = "12s"
jitter = "1s"
timeout = "20s"

[[drills]]
name = "paging-off"
kind = "notification_test"
every = "2s"
grace = "1s"
enabled = false
"#
    )
}

/// One `drill_run` event as `opsctl events -o json` prints it.
#[derive(Debug, Clone)]
struct RunEvent {
    coordinator: String,
    phase: String,
    run_id: String,
    slot: i64,
    drill: String,
}

async fn drill_runs(c: &Cluster) -> Result<Vec<RunEvent>> {
    let out = c
        .opsctl
        .run(&[
            "--output",
            "json",
            "events",
            "--kind",
            "drill_run",
            "--since",
            "30m",
        ])
        .await?
        .ok()?;
    let mut runs = Vec::new();
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("event JSON: {line}"))?;
        let p = &v["payload"];
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        runs.push(RunEvent {
            coordinator: s(&v["host"]),
            phase: s(&p["phase"]),
            run_id: s(&p["run_id"]),
            slot: p["slot_unix_ms"]
                .as_i64()
                .or_else(|| p["slot_unix_ms"].as_str().and_then(|t| t.parse().ok()))
                .unwrap_or(0),
            drill: s(&p["drill"]),
        });
    }
    Ok(runs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_drills_run_once_per_slot_across_a_failover_and_go_overdue_when_off() {
    Cluster::run("drills", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        let toml = coordinator_toml(&rx.url("/hook"));
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&toml))?;
        c.wait_role("blue", "active", WAIT).await?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(&toml))?;
        c.wait_role("green", "standby", WAIT).await?;

        // The active runs the drill on its schedule; the receiver gets a test notification.
        let test = wait_until(
            "a drill's test notification",
            WAIT,
            Duration::from_millis(100),
            async || {
                Ok(rx
                    .requests()
                    .into_iter()
                    .find(|r| r.body["rule"] == "drill_test"))
            },
        )
        .await?;
        println!("test notification: {}", test.body);
        ensure!(
            test.body["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("TEST ONLY")),
            "marked as a test: {}",
            test.body
        );
        ensure!(test.body["labels"]["test"] == "true", "{}", test.body);
        ensure!(test.body["coordinator"] == "blue", "{}", test.body);

        // The drill switched off goes overdue (every 2 s + grace 1 s).
        wait_until(
            "drill_overdue for the drill switched off",
            WAIT,
            Duration::from_millis(100),
            async || {
                Ok(rx.requests().into_iter().find(|r| {
                    r.body["alert_id"] == "drill_overdue//paging-off" && r.body["state"] == "firing"
                }))
            },
        )
        .await?;

        // Kill blue just after it recorded a start (its slot claimed, its result maybe not).
        let claimed = wait_until(
            "blue to record the start of its second slot",
            WAIT,
            Duration::from_millis(50),
            async || {
                // Not the first run: a drill never run is due at once, mid-slot; the next one
                // starts at its slot's start (+ jitter), leaving the takeover the slot's rest.
                let runs = drill_runs(c).await?;
                let started: Vec<&RunEvent> =
                    runs.iter().filter(|r| r.phase == "started").collect();
                Ok(started.get(1).map(|r| (*r).clone()))
            },
        )
        .await?;
        c.coordinator("blue")?.sigkill().await?;
        println!(
            "blue killed after claiming slot {} ({})",
            claimed.slot, claimed.run_id
        );
        c.wait_role("green", "active", WAIT).await?;
        let took_over = opsfleet_proto::time::now_unix_ms();
        ensure!(
            took_over < claimed.slot + EVERY_MS,
            "green took over after blue's slot ended ({took_over} >= {} + {EVERY_MS}): the \
             test proves nothing about that slot",
            claimed.slot
        );

        // Green runs the next slot, never the one blue claimed.
        let runs = wait_until(
            "green to run the next slot",
            WAIT,
            Duration::from_millis(200),
            async || {
                let runs = drill_runs(c).await?;
                let green = (runs.iter())
                    .filter(|r| r.coordinator == "green" && r.phase == "passed")
                    .count();
                Ok((green >= 1).then_some(runs))
            },
        )
        .await?;
        let mut starts: BTreeMap<i64, Vec<&RunEvent>> = BTreeMap::new();
        for r in runs.iter().filter(|r| r.phase == "started") {
            ensure!(
                r.drill == "notify",
                "only the drill switched on runs: {r:?}"
            );
            starts.entry(r.slot).or_default().push(r);
        }
        for (slot, list) in &starts {
            ensure!(
                list.len() == 1,
                "slot {slot} started {} times: {list:?}",
                list.len()
            );
        }
        let blue_last = (runs.iter())
            .filter(|r| r.coordinator == "blue" && r.phase == "started")
            .map(|r| r.slot)
            .max()
            .context("blue ran a slot")?;
        let green_first = (runs.iter())
            .filter(|r| r.coordinator == "green" && r.phase == "started")
            .map(|r| r.slot)
            .min()
            .context("green ran a slot")?;
        ensure!(
            green_first > blue_last,
            "green ran slot {green_first}, not after blue's last {blue_last}: {runs:?}"
        );
        // The run blue was in the middle of has an end: its own, or green's abandon.
        ensure!(
            runs.iter()
                .any(|r| r.run_id == claimed.run_id && r.phase != "started"),
            "the run blue claimed was closed: {runs:?}"
        );
        Ok(())
    })
    .await;
}

/// `opsctl -o json drills`, parsed.
async fn drills_json(c: &Cluster) -> Result<Value> {
    let out = c.opsctl.run(&["--output", "json", "drills"]).await?.ok()?;
    serde_json::from_str(out.stdout.trim()).with_context(|| format!("drills JSON: {}", out.stdout))
}

/// `opsctl drills` and `opsctl drill run` against an identified-only coordinator: the
/// schedule's first run shows in the list (table and JSON); a viewer is refused, an unknown
/// drill is refused naming the declared ones, a run while another runs is refused; an
/// operator's run is recorded under its name and answered with its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_run_is_for_operators_one_at_a_time_and_drills_lists_the_runs() {
    Cluster::run("drill_cli", async |c: &mut Cluster| {
        let rx = Receiver::start().await?;
        let toml = format!(
            r#"
[[notify.routes]]
name = "ops"
kind = "webhook"
url = "{}"
timeout = "20s"
max_attempts = 1

[[drills]]
name = "notify"
kind = "notification_test"
every = "1h"
"#,
            rx.url("/hook")
        );
        c.add_coordinator(
            CoordinatorSpec::new("blue")
                .identified_only()
                .config_toml(&toml),
        )?;
        c.wait_role("blue", "active", WAIT).await?;

        // Never run: due at once; the schedule's run shows in the list.
        let list = wait_until(
            "the scheduled run in opsctl drills",
            WAIT,
            Duration::from_millis(200),
            async || {
                let v = drills_json(c).await?;
                let passed = v["drills"][0]["runs"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["phase"] == "passed"));
                Ok(passed.then_some(v))
            },
        )
        .await?;
        let d = &list["drills"][0];
        ensure!(
            d["name"] == "notify"
                && d["kind"] == "notification_test"
                && d["every_ms"] == 3_600_000
                && d["enabled"] == true
                && d["runs"][0]["requested_by"] == "schedule"
                && d["runs"][0]["slot_unix_ms"].as_i64().is_some_and(|s| s > 0),
            "drills: {list}"
        );
        let next = d["next_due_unix_ms"].as_i64().unwrap_or(0);
        ensure!(
            next > opsfleet_proto::time::now_unix_ms(),
            "the slot is done, the next is ahead: {list}"
        );
        let table = c.opsctl.run(&["drills"]).await?.ok()?;
        ensure!(
            table.stdout.contains("notify") && table.stdout.contains("notification_test"),
            "table: {}",
            table.stdout
        );

        // A viewer may not run a drill.
        let out = (c.opsctl)
            .run(&[
                "--operator",
                "vic",
                "--role",
                "viewer",
                "drill",
                "run",
                "notify",
            ])
            .await?;
        ensure!(
            !out.status.success() && out.stderr.contains("needs role operator"),
            "viewer: {out:?}"
        );
        // An unknown drill is refused, naming the declared ones.
        let out = (c.opsctl)
            .run(&["--operator", "alice", "drill", "run", "nosuch"])
            .await?;
        ensure!(
            !out.status.success()
                && out
                    .stderr
                    .contains("unknown drill \"nosuch\" (declared: notify)"),
            "unknown: {out:?}"
        );

        // A slow receiver keeps alice's run going; bob's run meanwhile is refused.
        rx.answer_next(
            1,
            opsfleet_tests::Reply {
                delay: Duration::from_secs(5),
                ..opsfleet_tests::Reply::status(200)
            },
        );
        let alice = (c.opsctl).run(&[
            "--operator",
            "alice",
            "-o",
            "json",
            "drill",
            "run",
            "notify",
        ]);
        let bob = async {
            wait_until(
                "alice's run to be under way",
                WAIT,
                Duration::from_millis(100),
                async || {
                    let v = drills_json(c).await?;
                    Ok((v["drills"][0]["running"] == true).then_some(()))
                },
            )
            .await?;
            (c.opsctl)
                .run(&["--operator", "bob", "drill", "run", "notify"])
                .await
        };
        let (alice, bob) = tokio::join!(alice, bob);
        let (alice, bob) = (alice?.ok()?, bob?);
        ensure!(
            !bob.status.success() && bob.stderr.contains("drill notify is running"),
            "bob: {bob:?}"
        );
        let ran: Value = serde_json::from_str(alice.stdout.trim())
            .with_context(|| format!("drill run JSON: {}", alice.stdout))?;
        ensure!(
            ran["phase"] == "passed" && ran["took_ms"].as_u64().is_some_and(|t| t >= 4_000),
            "alice's run: {ran}"
        );
        let v = drills_json(c).await?;
        let runs = v["drills"][0]["runs"].as_array().context("runs")?;
        let last = runs.last().context("a run")?;
        ensure!(
            last["requested_by"]
                .as_str()
                .is_some_and(|b| b.contains("alice"))
                && last["slot_unix_ms"] == 0
                && runs.len() == 2,
            "alice's run recorded as hers, in no slot: {v}"
        );
        Ok(())
    })
    .await;
}

/// A `coordinator_failover` drill run by the active coordinator itself: it hands its lease to
/// the standby and gets it back, and records both takeovers with nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_failover_drill_hands_over_and_back() {
    Cluster::run("drill_coord", async |c: &mut Cluster| {
        let toml = r#"
[[drills]]
name = "dr"
kind = "coordinator_failover"
every = "1h"
enabled = false
timeout = "2m"
"#;
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(toml))?;
        c.wait_role("blue", "active", WAIT).await?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(toml))?;
        c.wait_role("green", "standby", WAIT).await?;
        c.add_agent(
            opsfleet_tests::AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)),
        )?;
        wait_until(
            "blue to know web-01",
            WAIT,
            Duration::from_millis(100),
            async || Ok((!c.status(Some("blue")).await?.hosts.is_empty()).then_some(())),
        )
        .await?;
        let before = c.status(Some("blue")).await?.responder.epoch;

        let out = c
            .opsctl
            .run(&["--output", "json", "drill", "run", "dr", "--wait", "3m"])
            .await?
            .ok()?;
        let ran: Value = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("drill run JSON: {}", out.stdout))?;
        println!("coordinator failover drill: {ran}");
        let detail = ran["detail"].as_str().unwrap_or_default();
        ensure!(ran["phase"] == "passed", "{ran}");
        ensure!(
            detail.contains("blue -> green in ")
                && detail.contains("green -> blue in ")
                && detail.contains("events lost 0, commands run twice 0"),
            "{ran}"
        );
        let after = c.status(Some("blue")).await?.responder;
        ensure!(
            after.role.as_str() == "active" && after.epoch > before,
            "blue is active again under a newer epoch: {after:?} (before: {before})"
        );
        Ok(())
    })
    .await;
}
