//! The compose stack for real (`deploy/compose.yaml`): images built locally by
//! `deploy/docker/build-local.sh` (no registry), a 3-node NATS cluster with the shipped
//! permissions and TLS, coordinators blue and green, three agents. Checks that events flow
//! (opsctl through the published NATS port, with an operator's credentials), kills the active
//! coordinator's container and sees the standby take over; `down -v` in every case.
//! Without a Docker engine it prints why it skips and passes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::Responder;
use opsfleet_tests::compose::{build_images, docker_missing, remove_stale_stacks, Stack};
use opsfleet_tests::secure::{generate_secrets, operator_args, repo_root};
use opsfleet_tests::{wait_until, Opsctl};

/// Image tag of this test's images (never `local`, which users build).
const TAG: &str = "drill";
/// Compose project names of this test: the prefix plus the test process id.
const PROJECT_PREFIX: &str = "opsfleet-drill-";

fn leader(replies: &[Responder]) -> Option<&Responder> {
    replies
        .iter()
        .find(|r| r.role == opsfleet_proto::api::LeaderRole::Active)
}

async fn responders(opsctl: &Opsctl) -> Result<Vec<Responder>> {
    let out = opsctl.run(&["--output", "json", "leader"]).await?.ok()?;
    serde_json::from_str(out.stdout.trim()).context("opsctl leader printed unexpected JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_fails_over_when_the_active_coordinator_dies() -> Result<()> {
    if let Some(why) = docker_missing() {
        eprintln!("SKIPPED compose_drill: {why}; the compose failover drill needs a Docker engine");
        println!("SKIPPED compose_drill: {why}");
        return Ok(());
    }
    let started = Instant::now();
    let root = repo_root();
    build_images(TAG)?;

    remove_stale_stacks(&root.join("deploy/compose.yaml"), PROJECT_PREFIX);
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-compose-")
        .tempdir()?;
    let secrets = tmp.path().join("secrets");
    generate_secrets(&secrets)?;
    let stack = Stack {
        project: format!("{PROJECT_PREFIX}{}", std::process::id()),
        files: vec![root.join("deploy/compose.yaml")],
        secrets: secrets.clone(),
        tag: TAG.to_owned(),
    };
    let result = drill(&stack, &secrets, started).await;
    if result.is_err() {
        eprintln!("compose logs:\n{}", stack.logs());
    }
    result
}

async fn drill(stack: &Stack, secrets: &Path, started: Instant) -> Result<()> {
    stack.run(&["up", "-d"])?;
    let port = stack.run(&["port", "nats-1", "4222"])?;
    let addr = port.trim();
    ensure!(!addr.is_empty(), "nats-1 has no published port");
    let opsctl =
        Opsctl::new(&format!("nats://{addr}"))?.with_args(operator_args(secrets, "alice", "alice"));

    // Events flow: every agent reported a few times to the coordinators.
    let hosts = ["db-01", "web-01", "web-02"];
    wait_until(
        "all three hosts in opsctl status",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let reply = opsctl.status(None).await?;
            let ok = hosts
                .iter()
                .all(|h| reply.hosts.iter().any(|v| v.host == *h && v.last_seq >= 3));
            Ok(ok.then_some(()))
        },
    )
    .await?;
    let before = wait_until(
        "an active coordinator",
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let replies = responders(&opsctl).await?;
            Ok((replies.len() == 2)
                .then(|| leader(&replies).cloned())
                .flatten())
        },
    )
    .await?;
    eprintln!(
        "compose_drill: stack up, events flowing, {} active at epoch {} after {:?}",
        before.name,
        before.epoch,
        started.elapsed()
    );

    // Kill the active coordinator's container (SIGKILL): the standby takes over.
    let killed_at = Instant::now();
    stack.run(&[
        "kill",
        "-s",
        "SIGKILL",
        &format!("coordinator-{}", before.name),
    ])?;
    let after = wait_until(
        "the standby to take over",
        Duration::from_secs(45),
        Duration::from_millis(200),
        async || {
            let replies = responders(&opsctl).await?;
            Ok(leader(&replies)
                .filter(|r| r.name != before.name && r.epoch > before.epoch)
                .cloned())
        },
    )
    .await?;
    let takeover = killed_at.elapsed();
    eprintln!(
        "compose_drill: {} active at epoch {} {:?} after the kill (lease TTL 15s)",
        after.name, after.epoch, takeover
    );

    // Events keep flowing into the new active coordinator.
    let seq_now = opsctl.status(Some(&after.name)).await?;
    let mark: Vec<(String, u64)> = seq_now
        .hosts
        .iter()
        .map(|h| (h.host.clone(), h.last_seq))
        .collect();
    wait_until(
        "events to keep flowing after the takeover",
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let reply = opsctl.status(Some(&after.name)).await?;
            let ok = mark.iter().all(|(host, seq)| {
                reply
                    .hosts
                    .iter()
                    .any(|h| &h.host == host && h.last_seq > *seq)
            });
            Ok(ok.then_some(()))
        },
    )
    .await?;
    eprintln!("compose_drill: done in {:?}", started.elapsed());
    Ok(())
}
