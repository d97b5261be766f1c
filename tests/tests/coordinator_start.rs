//! A coordinator started before its NATS cluster has a JetStream meta leader waits instead of
//! exiting: on the shipped 3-node config (`deploy/nats/cluster.conf`, R3 topology) with one
//! node up, it stays running, logs what it waits for and serves no `/readyz`; once the other
//! two nodes start, it creates the topology and becomes ready — the same process, no restart.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::{Role, SecureClusterNodes};
use opsfleet_tests::{wait_until, Coordinator, CoordinatorSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_waits_for_a_jetstream_quorum_instead_of_exiting() -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-coordinator-start-")
        .tempdir()?;
    let mut nats =
        SecureClusterNodes::start_first(tmp.path(), &["nats-1", "nats-2", "nats-3"], 1).await?;
    let spec = CoordinatorSpec::new("blue")
        .identified_only()
        .http()
        .topology_toml("replicas = 3\nstart_timeout = \"5m\"")
        .nats_toml(&nats.nats_toml("blue", Role::Coordinator));
    let mut blue = Coordinator::spawn(tmp.path(), &spec, &nats.nodes[0].url())?;

    let result = async {
        // 1. One node of three: no meta leader. The coordinator waits, says so, is not ready.
        wait_until(
            "the coordinator to log that it waits for JetStream",
            Duration::from_secs(90),
            Duration::from_millis(200),
            async || {
                blue.proc_mut().check_running()?;
                let log = blue.proc().log_since_start();
                Ok(log.contains("waiting for JetStream").then_some(()))
            },
        )
        .await?;
        // A few more attempts: still running, still not serving /readyz.
        tokio::time::sleep(Duration::from_secs(3)).await;
        blue.proc_mut()
            .check_running()
            .context("the coordinator exited while JetStream had no leader")?;
        ensure!(
            blue.readyz().await.map(|(code, _)| code).unwrap_or(0) != 200,
            "/readyz answered ready before the topology exists"
        );

        // 2. The other two nodes: a quorum, three peers for R3. The same process gets ready.
        nats.start_waiting().await?;
        let body = wait_until(
            "the coordinator to become ready",
            Duration::from_secs(120),
            Duration::from_millis(250),
            async || {
                blue.proc_mut()
                    .check_running()
                    .context("the coordinator exited while the cluster formed")?;
                Ok(match blue.readyz().await {
                    Ok((200, body)) => Some(body),
                    _ => None,
                })
            },
        )
        .await?;
        ensure!(
            blue.proc().starts() == 1,
            "the coordinator was restarted ({} starts)",
            blue.proc().starts()
        );
        let log = blue.proc().log_since_start();
        ensure!(
            log.contains("topology ready"),
            "no `topology ready` after waiting in the log:\n{log}"
        );
        eprintln!("ready after the quorum formed: {body}");
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!(
            "----- coordinator log -----\n{}",
            blue.proc().log_since_start()
        );
    }
    let _ = blue.stop().await;
    result
}
