//! A scheduled `app_failover` drill end to end, and "never during maintenance": a real
//! nats-server, two agents running testapp as the active/standby group `router`, a third host
//! outside the group, and two coordinators. Blue (no drills) settles the group; the third host
//! is drained; green, whose config declares the drill, takes over — the drill is due at once
//! (never run) but deferred while the host is drained (green logs `drill due but deferred`, no
//! run is recorded, the roles stay). Once the host is undrained, green runs the drill in the
//! slot it deferred: the active role moves to the other member, `drill_run passed` is recorded
//! under green's name as asked by the schedule, and `opsctl drills` shows it.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{DrillsReply, HostsReply};
use opsfleet_proto::time::now_unix_ms;
use opsfleet_tests::service_group::{failover_events, one_active, start_settled};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);
const MEMBERS: [&str; 2] = ["edge-01", "edge-02"];
/// A host outside the group, drained for the maintenance.
const OTHER: &str = "ops-01";

const GROUPS: &str = "[groups]\nfailover_after = \"2s\"\ninterval = \"300ms\"\n";

/// The drill: hourly, so the slot it is deferred in is (almost always) the slot it runs in; a
/// slot boundary crossed meanwhile is logged as a new deferral, and the run must fill the last
/// one logged.
const DRILL: &str = r#"
[[drills]]
name = "router-dr"
kind = "app_failover"
group = "router"
every = "1h"
timeout = "90s"
"#;

/// The slots green logged as deferred (`drill due but deferred ... slot_unix_ms=N`), in order.
fn deferred_slots(log: &str) -> Vec<i64> {
    (log.lines())
        .filter(|l| l.contains("drill due but deferred") && l.contains("router-dr"))
        .filter_map(|l| {
            let at = (l.find("slot_unix_ms="))
                .map(|i| i + "slot_unix_ms=".len())
                .or_else(|| l.find("\"slot_unix_ms\":").map(|i| i + 15))?;
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

async fn drills(opsctl: &Opsctl) -> Result<DrillsReply> {
    opsctl.json(&["drills"]).await
}

async fn maintenance(opsctl: &Opsctl, host: &str, want: bool) -> Result<()> {
    wait_until(
        &format!("{host} maintenance {want}"),
        WAIT,
        POLL,
        async || {
            let r: HostsReply = opsctl.json(&["hosts", "--host", host]).await?;
            let m = r.hosts.first().context("the host in hosts")?.maintenance;
            Ok((m == want).then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_app_failover_waits_out_a_drain_then_moves_the_active_role() {
    Cluster::run("drill-app", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(GROUPS))?;
        c.wait_role("blue", "active", WAIT).await?;
        c.add_agent(AgentSpec::new(OTHER).heartbeat(Duration::from_millis(300)))?;
        // The group settles under blue: one active, the activation recorded, the standby fit.
        let (members, first, other) = start_settled(c, &MEMBERS, WAIT).await?;
        let opsctl = c.opsctl.clone();

        // Maintenance on a host outside the group; then green, which declares the drill,
        // takes over from blue.
        opsctl.run(&["drain", "--host", OTHER]).await?.ok()?;
        maintenance(&opsctl, OTHER, true).await?;
        let green_toml = format!("{GROUPS}{DRILL}");
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(&green_toml))?;
        c.wait_role("green", "standby", WAIT).await?;
        c.coordinator("blue")?.stop().await?;
        c.wait_role("green", "active", WAIT).await?;

        // Due at once (never run), but deferred while the host is drained.
        let deferred = wait_until("green to defer the due drill", WAIT, POLL, async || {
            let log = c.coordinator("green")?.proc().log_since_start();
            Ok(deferred_slots(&log).last().copied())
        })
        .await?;
        println!("green deferred slot {deferred}");
        // Several of the driver's ticks (500 ms) later: still nothing run, the roles unchanged.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = drills(&opsctl).await?;
        let d = r.drills.first().context("the drill in opsctl drills")?;
        ensure!(
            d.runs.is_empty() && !d.running && d.next_due_unix_ms <= now_unix_ms(),
            "a drill held by maintenance ran or is not due: {d:?}"
        );
        ensure!(
            one_active(&members, None, WAIT).await? == first,
            "the active role moved while the drill was deferred"
        );

        // The maintenance ends: the drill runs in the slot it was deferred in.
        let undrained_at = now_unix_ms();
        opsctl.run(&["undrain", "--host", OTHER]).await?.ok()?;
        let r = wait_until("the drill to pass", WAIT, POLL, async || {
            let r = drills(&opsctl).await?;
            let ended = (r.drills.first())
                .and_then(|d| d.runs.last())
                .is_some_and(|run| run.phase != "started");
            Ok(ended.then_some(r))
        })
        .await?;
        let d = r.drills.first().context("the drill")?;
        let run = d.runs.last().context("its run")?;
        println!("drill run: {run:?}");
        let slots = deferred_slots(&c.coordinator("green")?.proc().log_since_start());
        ensure!(
            run.phase == "passed"
                && run.requested_by == "schedule"
                && d.runs.len() == 1
                && Some(&run.slot_unix_ms) == slots.last()
                && run.started_unix_ms >= undrained_at,
            "one scheduled run, passed, after the undrain ({undrained_at}), in the deferred \
             slot (deferred: {slots:?}): {d:?}"
        );
        ensure!(
            run.detail
                .starts_with(&format!("group router {first} -> {other} in ")),
            "the detail names the move: {}",
            run.detail
        );
        ensure!(r.responder.name == "green", "answered by {:?}", r.responder);

        // The role really moved: the other member's role file says active, the old one standby.
        let now_active = one_active(&members, Some(&first), WAIT).await?;
        ensure!(now_active == other, "{now_active} active, want {other}");
        let events = failover_events(&opsctl).await?;
        ensure!(
            events.iter().any(|e| e["phase"] == "completed"
                && e["drill"] == true
                && e["from_host"] == first.as_str()
                && e["to_host"] == other.as_str()),
            "a completed drill group_failover: {events:?}"
        );
        let table = opsctl.run(&["drills", "router-dr"]).await?.ok()?.stdout;
        println!("{table}");
        ensure!(
            table.contains("app_failover")
                && table.contains("passed")
                && table.contains("schedule"),
            "opsctl drills shows the run:\n{table}"
        );
        Ok(())
    })
    .await;
}
