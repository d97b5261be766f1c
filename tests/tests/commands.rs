//! Commands end to end with real coordinators, agents and opsctl on a real nats-server:
//! `opsctl pause` takes effect and is tracked to `completed`; an agent that is offline when a
//! pause is issued applies it on return; a command nobody picked up is marked expired; the same
//! command delivered twice runs once; a coordinator frozen past its lease issues nothing after
//! it resumes, and agents reject anything stamped with its old epoch.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream;
use nix::sys::signal::Signal;
use opsfleet_proto::api::{CommandView, Responder, StatusReply};
use opsfleet_proto::{pb, subjects};
use opsfleet_tests::injected::{self, command_view, now_ms, publish_command, record_issue};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

fn agent(host: &str) -> AgentSpec {
    AgentSpec::new(host)
        .heartbeat(Duration::from_millis(200))
        .disk(Duration::from_millis(300), vec!["/".into()])
}

async fn commands(c: &mut Cluster, host: &str) -> Result<Vec<CommandView>> {
    let out = c
        .opsctl
        .run(&[
            "--output", "json", "commands", "--host", host, "--limit", "100",
        ])
        .await?
        .ok()?;
    Ok(serde_json::from_str(out.stdout.trim())?)
}

async fn module_state(c: &mut Cluster, host: &str, module: &str) -> Result<String> {
    let s = c.status(None).await?;
    Ok(s.hosts
        .iter()
        .find(|h| h.host == host)
        .and_then(|h| h.modules.iter().find(|m| m.name == module))
        .map(|m| m.state.as_str().to_owned())
        .unwrap_or_default())
}

/// `opsctl --output json <args> --no-wait`: the id of the one command it issued.
async fn issue_no_wait(c: &mut Cluster, args: &[&str]) -> Result<String> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all.push("--no-wait");
    let out = c.opsctl.run(&all).await?.ok()?;
    let issued: Value = serde_json::from_str(out.stdout.trim())?;
    Ok(issued["commands"][0]["id"]
        .as_str()
        .context("id")?
        .to_owned())
}

async fn active(client: &async_nats::Client) -> Option<Responder> {
    for name in ["blue", "green"] {
        let subject = subjects::api_subject_for(subjects::API_STATUS, name);
        if let Ok(Ok(reply)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.request(subject, "{}".into()),
        )
        .await
        {
            if let Ok(s) = serde_json::from_slice::<StatusReply>(&reply.payload) {
                if s.responder.role == opsfleet_proto::api::LeaderRole::Active {
                    return Some(s.responder);
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_offline_expired_and_duplicate_delivery() {
    Cluster::run("commands", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(agent("web-01"))?;
        c.add_agent(agent("web-02"))?;
        wait_until_default("both hosts' disk modules running", async || {
            let a = module_state(c, "web-01", "disk").await?;
            let b = module_state(c, "web-02", "disk").await?;
            Ok((a == "running" && b == "running").then_some(()))
        })
        .await?;

        // 1. opsctl pause waits for the agent and reports completed.
        let out = c
            .opsctl
            .run(&[
                "--output", "json", "pause", "disk", "--host", "web-01", "--wait", "60s",
            ])
            .await?
            .ok()?;
        let outcome: Value = serde_json::from_str(out.stdout.trim()).context("pause JSON")?;
        ensure!(outcome["all_completed"] == true, "pause outcome: {outcome}");
        let paused_id = outcome["commands"][0]["id"]
            .as_str()
            .context("command id")?
            .to_owned();
        let view = command_view(c, &paused_id).await?.context("ledger entry")?;
        let steps: Vec<&str> = view.history.iter().map(|h| h.state.as_str()).collect();
        ensure!(
            steps == ["issued", "accepted", "completed"],
            "lifecycle {steps:?}"
        );
        ensure!(!view.issued_by.is_empty(), "issued_by recorded");
        wait_until_default("web-01 disk paused in status", async || {
            Ok((module_state(c, "web-01", "disk").await? == "paused").then_some(()))
        })
        .await?;
        ensure!(
            module_state(c, "web-02", "disk").await? == "running",
            "web-02 was not targeted"
        );

        // 2. web-02 offline while a pause is issued; applied when it returns.
        c.agent("web-02")?.stop().await?;
        let offline_id = issue_no_wait(
            c,
            &["pause", "disk", "--host", "web-02", "--deadline", "5m"],
        )
        .await?;
        ensure!(
            command_view(c, &offline_id).await?.map(|v| v.state)
                == Some(opsfleet_proto::api::CommandState::Issued),
            "not pending"
        );
        c.agent("web-02")?.restart()?;
        wait_until_default("the offline pause to complete on return", async || {
            Ok(command_view(c, &offline_id)
                .await?
                .filter(|v| v.state == opsfleet_proto::api::CommandState::Completed))
        })
        .await?;
        wait_until_default("web-02 disk paused", async || {
            Ok((module_state(c, "web-02", "disk").await? == "paused").then_some(()))
        })
        .await?;

        // 3. A command whose agent stays away past the deadline is marked expired.
        c.agent("web-02")?.stop().await?;
        let expiring_id = issue_no_wait(
            c,
            &["resume", "disk", "--host", "web-02", "--deadline", "1s"],
        )
        .await?;
        wait_until_default("the undelivered command to expire", async || {
            Ok(command_view(c, &expiring_id)
                .await?
                .filter(|v| v.state == opsfleet_proto::api::CommandState::Expired))
        })
        .await?;
        // On return the agent does not run it either.
        c.agent("web-02")?.restart()?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ensure!(
            module_state(c, "web-02", "disk").await? == "paused",
            "an expired resume ran"
        );
        let v = command_view(c, &expiring_id).await?.context("entry")?;
        ensure!(
            v.state == opsfleet_proto::api::CommandState::Expired && v.accepted_count == 0,
            "expired command: {v:?}"
        );

        // 4. The same command delivered twice (different Nats-Msg-Id): runs once.
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client.clone());
        let epoch = active(&client)
            .await
            .context("an active coordinator")?
            .epoch;
        let dup = pb::Command {
            id: uuid::Uuid::now_v7().to_string(),
            epoch,
            issued_by: "test".into(),
            target: "web-01".into(),
            deadline_unix_ms: now_ms() + 60_000,
            issued_unix_ms: now_ms(),
            action: Some(pb::command::Action::Resume(pb::ModuleAction {
                module: "disk".into(),
            })),
        };
        record_issue(&js, &dup, "resume").await?;
        publish_command(&js, &dup, "dup-1").await?;
        publish_command(&js, &dup, "dup-2").await?;
        wait_until_default("the duplicated command to complete", async || {
            Ok(command_view(c, &dup.id)
                .await?
                .filter(|v| v.state == opsfleet_proto::api::CommandState::Completed))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let v = command_view(c, &dup.id).await?.context("entry")?;
        ensure!(
            v.accepted_count == 1,
            "delivered twice, accepted {} times: {v:?}",
            v.accepted_count
        );
        let completions = v
            .history
            .iter()
            .filter(|h| h.state == opsfleet_proto::api::CommandState::Completed)
            .count();
        ensure!(completions == 1, "completed {completions} times");
        let all = commands(c, "web-01").await?;
        ensure!(
            all.iter().all(|v| v.accepted_count <= 1),
            "some command ran twice: {all:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_old_active_issues_nothing_and_its_epoch_is_rejected() {
    Cluster::run("commands-fencing", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(agent("web-01"))?;
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client.clone());
        let old = wait_until_default("blue active", async || Ok(active(&client).await)).await?;
        wait_until_default("web-01 known", async || {
            Ok((module_state(c, "web-01", "disk").await? == "running").then_some(()))
        })
        .await?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        wait_until_default("green answers", async || Ok(c.status(Some("green")).await.ok())).await?;

        // Freeze blue past its lease; green takes over under a higher epoch.
        let blue_pid = c.coordinator("blue")?.proc().pid().context("blue pid")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(blue_pid), Signal::SIGSTOP)?;
        let new = wait_until_default("green active", async || {
            let r = c.status(Some("green")).await?;
            Ok((r.responder.role == opsfleet_proto::api::LeaderRole::Active).then_some(r.responder))
        })
        .await?;
        ensure!(new.epoch > old.epoch, "epoch {} -> {}", old.epoch, new.epoch);
        // The agent learns the new epoch from a command of the new active.
        let out = c
            .opsctl
            .run(&["--output", "json", "noop", "--host", "web-01", "--wait", "60s"])
            .await?
            .ok()?;
        let outcome: Value = serde_json::from_str(out.stdout.trim())?;
        ensure!(outcome["all_completed"] == true && outcome["epoch"] == new.epoch, "{outcome}");

        // Blue wakes up: it knows its lease ended and refuses to issue.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(blue_pid), Signal::SIGCONT)?;
        let blue = wait_until_default("blue to answer again", async || Ok(c.status(Some("blue")).await.ok())).await?;
        ensure!(blue.responder.role == opsfleet_proto::api::LeaderRole::Standby, "blue after SIGCONT: {:?}", blue.responder);
        let direct = subjects::api_subject_for(subjects::API_COMMAND, "blue");
        let req = serde_json::json!({"action": "pause", "module": "disk", "hosts": ["web-01"], "deadline_ms": 60000, "issued_by": "test"});
        let reply = client.request(direct, serde_json::to_vec(&req)?.into()).await?;
        let text = String::from_utf8_lossy(&reply.payload).to_string();
        ensure!(text.contains("not active"), "blue answered a command request: {text}");

        // Anything stamped with the old epoch is rejected by the agent.
        let stale = injected::pause("web-01", old.epoch);
        record_issue(&js, &stale, "pause").await?;
        publish_command(&js, &stale, &stale.id).await?;
        let v = wait_until_default("the stale command to be rejected", async || {
            Ok(command_view(c, &stale.id).await?.filter(|v| v.state == opsfleet_proto::api::CommandState::Rejected))
        })
        .await?;
        ensure!(v.detail.contains("epoch"), "rejection reason: {}", v.detail);
        ensure!(module_state(c, "web-01", "disk").await? == "running", "a stale pause ran");
        Ok(())
    })
    .await;
}
