//! Active/standby service groups end to end: two agents, each running testapp (tests/fixtures)
//! as the `router` service of group `router` with `[modules.role] file = ...`, a real
//! nats-server and two coordinators. The active coordinator makes exactly one member active
//! (its role file says `active`, the other's `standby`); `opsctl service failover router
//! --drill` moves the role and reports its timings; the active's app killed and unable to come
//! back makes the other host active within a generous bound, a `group_failover` completed
//! event is in the log, and the old active ends `standby`; the active host lost (its agent
//! stopped) fails over too, and when it returns it gets the `standby` that waited for it in
//! OPS_CMDS. A failover never makes the new member active before the old one's standby
//! completed (the ledger's times), and one whose standby fails is `failed`, the old one
//! keeping the role. Refusals: an unknown group, `--to`
//! a non-member or an unfit member; the standby coordinator stays silent on the broadcast
//! subject (one answer) and refuses when addressed.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use opsfleet_proto::api::{LeaderRole, ServiceFailoverReply, ServiceRunState, ServicesReply};
use opsfleet_tests::service_group::{failover_events, member_where, one_active, start_settled};
use opsfleet_tests::{wait_until, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);
const HOSTS: [&str; 2] = ["edge-01", "edge-02"];

const GROUPS: &str = "[groups]\nfailover_after = \"2s\"\ninterval = \"300ms\"\n";

/// When the newest `service_role` command to `host` reached `state` (its ledger history).
async fn role_command_at(opsctl: &Opsctl, host: &str, state: &str) -> Result<Option<i64>> {
    let views: Vec<Value> = (opsctl.json(&["commands", "--host", host, "--limit", "50"])).await?;
    let Some(cmd) = views.iter().find(|v| v["action"] == "service_role") else {
        return Ok(None);
    };
    let step = (cmd["history"].as_array().into_iter().flatten()).find(|s| s["state"] == state);
    Ok(step.and_then(|s| s["at_unix_ms"].as_i64()))
}

/// Refusals of `service failover`, each naming why (exit 1).
async fn refusals_say_why(opsctl: &Opsctl, unfit: &str) -> Result<()> {
    for (args, why) in [
        (vec!["nope"], "unknown group \"nope\" (known: router)"),
        (
            vec!["router", "--to", "edge-09"],
            "edge-09 is not a member of group router",
        ),
        (
            vec!["router", "--to", unfit],
            "cannot take group router's active role",
        ),
    ] {
        let mut full = vec!["service", "failover"];
        full.extend(args);
        full.extend(["--wait", "30s"]);
        let out = opsctl.run(&full).await?;
        let text = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            out.status.code() == Some(1) && text.contains(why),
            "{full:?}: exit {}, want {why:?} in:\n{text}",
            out.status
        );
    }
    Ok(())
}

/// On the broadcast subject only the active coordinator answers; addressed, the standby
/// refuses (it is not active).
async fn standby_stays_silent(c: &mut Cluster, opsctl: &Opsctl) -> Result<()> {
    let status = opsctl.status(None).await?;
    let active = (status.coordinators.iter())
        .find(|k| k.role == LeaderRole::Active)
        .map(|k| k.name.clone())
        .context("an active coordinator")?;
    let standby = if active == "blue" { "green" } else { "blue" };
    let client = async_nats::connect(c.nats_url()).await?;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await?;
    let body = br#"{"group": "nope"}"#.to_vec();
    (client)
        .publish_with_reply("ops.api.service_failover", inbox, body.clone().into())
        .await?;
    let mut answers = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, replies.next()).await {
        answers.push(String::from_utf8_lossy(&msg.payload).into_owned());
    }
    ensure!(
        answers.len() == 1,
        "one answer on the broadcast subject: {answers:?}"
    );
    ensure!(
        !answers[0].contains(&format!("\"{standby}\"")),
        "{answers:?}"
    );
    let addressed = format!("ops.api.service_failover.{standby}");
    let reply = client.request(addressed, body.into()).await?;
    let text = String::from_utf8_lossy(&reply.payload);
    ensure!(text.contains("not active"), "the standby answered {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_active_per_group_a_drill_and_a_failover_on_a_dead_app() {
    Cluster::run("service-groups", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(GROUPS))?;
        c.add_coordinator(CoordinatorSpec::new("green").config_toml(GROUPS))?;
        let (members, first, other) = start_settled(c, &HOSTS, WAIT).await?;
        let opsctl = c.opsctl.clone();
        member_where(&opsctl, WAIT, "the active member healthy in groups", |m| {
            m.host == first && m.role == "active" && m.fitness == "healthy"
        })
        .await?;
        // A drill: a real failover to the standby, with its timings.
        let args = ["service", "failover", "router", "--drill", "--wait", "90s"];
        let done: ServiceFailoverReply = opsctl.json(&args).await?;
        ensure!(
            done.drill && done.from == first && done.to == other && done.took_ms > 0,
            "{done:?}"
        );
        let text = opsctl.run(&["service", "groups"]).await?.ok()?.stdout;
        ensure!(
            text.contains("completed (drill)"),
            "groups printed:\n{text}"
        );
        let active = one_active(&members, Some(&first), WAIT).await?;
        ensure!(
            active == other,
            "{active} active after the drill to {other}"
        );
        // Never two actives: the new one was told only once the old one's standby completed.
        let (standby_done, active_issued) = wait_until(
            "the drill's role commands in the ledger",
            WAIT,
            POLL,
            async || {
                let done = role_command_at(&opsctl, &first, "completed").await?;
                let issued = role_command_at(&opsctl, &other, "issued").await?;
                Ok(done.zip(issued))
            },
        )
        .await?;
        ensure!(
            active_issued >= standby_done,
            "active issued to {other} at {active_issued}, before {first}'s standby completed at {standby_done}"
        );

        standby_stays_silent(c, &opsctl).await?;

        // The active's app dies and cannot come back: the group fails over to the other host.
        let (dead, alive) = (active.clone(), first.clone());
        let idx = HOSTS.iter().position(|h| *h == dead).context("index")?;
        std::fs::write(members[idx].dir.join("broken"), "")?;
        let r: ServicesReply = opsctl.json(&["services", "--host", &dead]).await?;
        let pid = (r.services.iter())
            .find(|s| s.service == "router" && s.state == ServiceRunState::Running)
            .map(|s| s.pid)
            .context("the router runs")?;
        let raw = i32::try_from(pid)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), nix::sys::signal::SIGKILL)?;
        let now_active = one_active(&members, Some(&dead), WAIT).await?;
        ensure!(now_active == alive, "{now_active} active, want {alive}");
        ensure!(
            members[idx].role() == "standby",
            "the old active ends standby"
        );
        let events = wait_until(
            "a completed group_failover from the dead host",
            WAIT,
            POLL,
            async || {
                let events = failover_events(&opsctl).await?;
                let found = events.iter().any(|e| {
                    e["phase"] == "completed"
                        && e["from_host"] == dead.as_str()
                        && e["to_host"] == alive.as_str()
                        && e["drill"] != true
                });
                Ok(found.then_some(events))
            },
        )
        .await?;
        ensure!(
            events
                .iter()
                .any(|e| e["phase"] == "started" && e["from_host"] == dead.as_str()),
            "the start was recorded: {events:?}"
        );
        refusals_say_why(&opsctl, &dead).await?;

        // The dead host's app comes back; then the active host is lost (its agent stops, and
        // its app with it): the group fails over to the first host again. The lost host's
        // `standby` waits in OPS_CMDS; when its agent returns (writing its persisted role
        // first), it gets it and ends standby.
        std::fs::remove_file(members[idx].dir.join("broken"))?;
        member_where(&opsctl, WAIT, "the repaired member healthy again", |m| {
            m.host == dead && m.role == "standby" && m.fitness == "healthy"
        })
        .await?;
        let lost_idx = HOSTS.iter().position(|h| *h == alive).context("index")?;
        c.agent(&alive)?.stop().await?;
        wait_until(
            "the repaired host active, the lost one not told yet",
            WAIT,
            POLL,
            async || {
                let repaired = members[idx].role() == "active";
                Ok((repaired && members[lost_idx].role() == "active").then_some(()))
            },
        )
        .await?;
        let lost_event = wait_until(
            "a completed failover from the lost host",
            WAIT,
            POLL,
            async || {
                let events = failover_events(&opsctl).await?;
                Ok(events.into_iter().find(|e| {
                    e["phase"] == "completed"
                        && e["from_host"] == alive.as_str()
                        && e["to_host"] == dead.as_str()
                        && e["drill"] != true
                }))
            },
        )
        .await?;
        ensure!(
            lost_event["reason"]
                .as_str()
                .is_some_and(|r| r.contains(&format!("on {alive}: host"))),
            "the reason names the host: {lost_event}"
        );
        c.agent(&alive)?.restart()?;
        let back = one_active(&members, Some(&alive), WAIT).await?;
        ensure!(back == dead, "{back} active after the lost host returned");
        member_where(&opsctl, WAIT, "the returned host standby in groups", |m| {
            m.host == alive && m.role == "standby"
        })
        .await?;
        Ok(())
    })
    .await;
}

/// The old active cannot take the standby role (its role file became a directory, so the
/// write fails): the failover is `failed`, naming why, the new member is never told active,
/// and the old one keeps the role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_whose_standby_fails_leaves_the_old_active() {
    Cluster::run("service-groups-standby-fails", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(GROUPS))?;
        let (members, first, other) = start_settled(c, &HOSTS, WAIT).await?;
        let opsctl = c.opsctl.clone();
        let idx = HOSTS.iter().position(|h| *h == first).context("index")?;
        let role = members[idx].role_file();
        std::fs::remove_file(&role)?;
        std::fs::create_dir(&role)?;

        let args = [
            "service", "failover", "router", "--to", &other, "--wait", "90s",
        ];
        let out = opsctl.run(&args).await?;
        let text = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            out.status.code() == Some(1) && text.contains("did not take the standby role"),
            "exit {}, want the standby's failure in:\n{text}",
            out.status
        );
        let failed = failover_events(&opsctl).await?;
        ensure!(
            failed.iter().any(|e| e["phase"] == "failed"
                && e["to_host"] == other.as_str()
                && e["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("keeps the active role"))),
            "a failed group_failover naming why: {failed:?}"
        );
        let other_idx = HOSTS.iter().position(|h| *h == other).context("index")?;
        ensure!(
            members[other_idx].role() == "standby",
            "the new member was told active"
        );
        let told = role_command_at(&opsctl, &other, "issued").await?;
        ensure!(told.is_none(), "a service_role command went to {other}");
        member_where(
            &opsctl,
            WAIT,
            "the old active still active in groups",
            |m| m.host == first && m.role == "active",
        )
        .await?;
        Ok(())
    })
    .await;
}
