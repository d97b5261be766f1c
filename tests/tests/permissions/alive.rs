//! Negative tests of the liveness announcements `ops.alive.<name>`: a standby takes the lease
//! over when they stop, so only a coordinator may announce, only under its own name, and only
//! coordinators may listen.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::StreamExt;
use opsfleet_proto::kv::Alive;
use opsfleet_proto::subjects;
use opsfleet_tests::secure::{Role, SecureNats};

use super::Probe;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_coordinator_announces_itself_and_only_under_its_own_name() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    let green = Probe::connect(&s, "green", Role::Coordinator).await?;
    let mut heard = green.client.subscribe(subjects::ALIVE_ALL).await?;
    green.client.flush().await?;
    let body = serde_json::to_vec(&Alive {
        epoch: 7,
        revision: 9,
    })?;

    // Blue announces under its own name, and green hears it.
    blue.client
        .publish(subjects::alive_subject("blue"), body.clone().into())
        .await?;
    blue.client.flush().await?;
    let msg = tokio::time::timeout(Duration::from_secs(10), heard.next())
        .await
        .context("green heard no announcement")?
        .context("subscription ended")?;
    ensure!(
        subjects::parse_alive(msg.subject.as_str()) == Some("blue"),
        "heard {}",
        msg.subject
    );

    // Green may not speak for blue; agents and people may not announce at all.
    green
        .client
        .publish(subjects::alive_subject("blue"), body.clone().into())
        .await?;
    green
        .expect_violation("green announcing as blue", &subjects::alive_subject("blue"))
        .await?;
    for (identity, role) in [("web-01", Role::Agent), ("alice", Role::Operator)] {
        let p = Probe::connect(&s, identity, role).await?;
        p.client
            .publish(subjects::alive_subject("blue"), body.clone().into())
            .await?;
        p.expect_violation(
            &format!("{identity} announcing as blue"),
            &subjects::alive_subject("blue"),
        )
        .await?;
        // Nor may they listen (what they heard would tell them when to strike).
        let _sub = p.client.subscribe(subjects::ALIVE_ALL).await?;
        p.expect_violation(&format!("{identity} listening"), subjects::ALIVE_ALL)
            .await?;
    }
    // Nothing but blue's own announcement reached green.
    let extra = tokio::time::timeout(Duration::from_millis(500), heard.next()).await;
    ensure!(
        extra.is_err(),
        "green heard a forged announcement: {extra:?}"
    );
    Ok(())
}
