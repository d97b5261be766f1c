//! Faults of the active coordinator: frozen (SIGSTOP) across a leader change of the lease's KV
//! stream, and cut off the network for longer than its lease. Either way the standby must take
//! over under a higher epoch and the old active, back, must stand by without acting.

use std::time::{Duration, Instant};

use anyhow::Result;
use opsfleet_proto::api::Responder;
use opsfleet_tests::compose::docker;
use opsfleet_tests::wait_until;

use super::stack::Chaos;

/// The lease TTL of the compose stack's coordinators (`deploy/compose/coordinator-*.toml`).
const LEASE_TTL: Duration = Duration::from_secs(15);

/// Waits until a coordinator other than `old` is active under a higher epoch.
async fn takeover(chaos: &Chaos, old: &Responder) -> Result<Responder> {
    wait_until(
        &format!("the standby to take the lease from {}", old.name),
        Duration::from_secs(120),
        Duration::from_millis(250),
        async || {
            let all = chaos.coordinators().await.unwrap_or_default();
            Ok(all.into_iter().find(|r| {
                r.role == opsfleet_proto::api::LeaderRole::Active
                    && r.name != old.name
                    && r.epoch > old.epoch
            }))
        },
    )
    .await
}

/// Waits until `name` answers as standby and exactly one coordinator is active.
async fn stood_by(chaos: &Chaos, name: &str) -> Result<()> {
    wait_until(
        &format!("{name} to stand by"),
        Duration::from_secs(120),
        Duration::from_millis(250),
        async || {
            let all = chaos.coordinators().await.unwrap_or_default();
            let old = all.iter().find(|r| r.name == name);
            let actives = all
                .iter()
                .filter(|r| r.role == opsfleet_proto::api::LeaderRole::Active)
                .count();
            Ok(
                (old.is_some_and(|r| r.role == opsfleet_proto::api::LeaderRole::Standby)
                    && actives == 1)
                    .then_some(()),
            )
        },
    )
    .await
}

/// The active coordinator before a fault. The previous fault's heal may still be settling
/// (a coordinator catching up answers `opsctl leader` after its 500 ms gathering window, or
/// an election is under way), so this waits for one to answer as active, and says how long
/// that took when it was not at once.
async fn active(chaos: &Chaos) -> Result<Responder> {
    let asked = Instant::now();
    let active = wait_until(
        "an active coordinator before the fault",
        Duration::from_secs(90),
        Duration::from_millis(500),
        async || chaos.active().await,
    )
    .await?;
    if asked.elapsed() > Duration::from_secs(2) {
        eprintln!(
            "cluster_chaos: {} answered as active {:?} after it was first asked",
            active.name,
            asked.elapsed()
        );
    }
    Ok(active)
}

pub async fn stop_active(chaos: &Chaos) -> Result<String> {
    let active = active(chaos).await?;
    let service = format!("coordinator-{}", active.name);
    let stopped_at = Instant::now();
    chaos.stack.run(&["kill", "-s", "SIGSTOP", &service])?;
    let node = chaos.stream_leader("KV_ops_leader").await?;
    chaos.stack.run(&["kill", "-s", "SIGKILL", &node])?;
    // The frozen one's lease runs out; the standby takes it under a higher epoch.
    let taken = takeover(chaos, &active).await?;
    let after = stopped_at.elapsed();
    chaos.stack.run(&["start", &node])?;
    chaos.stack.run(&["kill", "-s", "SIGCONT", &service])?;
    let resumed_at = Instant::now();
    // The old active wakes up believing it leads; it must find out and stand by.
    stood_by(chaos, &active.name).await?;
    Ok(format!(
        "SIGSTOP {service} (active, epoch {}), SIGKILL {node} (leader of KV_ops_leader): {} \
         active at epoch {} after {after:?}; SIGCONT: {} stood by after {:?}",
        active.epoch,
        taken.name,
        taken.epoch,
        active.name,
        resumed_at.elapsed()
    ))
}

pub async fn partition_active(chaos: &Chaos) -> Result<String> {
    let active = active(chaos).await?;
    let service = format!("coordinator-{}", active.name);
    let container = chaos.container(&service)?;
    let network = chaos.network();
    let cut_at = Instant::now();
    docker(&["network", "disconnect", &network, &container])?;
    let taken = takeover(chaos, &active).await;
    let after = cut_at.elapsed();
    // Cut off for longer than its lease either way, so that it must find its lease gone.
    if let Some(rest) = (LEASE_TTL + Duration::from_secs(5)).checked_sub(after) {
        tokio::time::sleep(rest).await;
    }
    docker(&[
        "network", "connect", "--alias", &service, &network, &container,
    ])?;
    let healed_at = Instant::now();
    let taken = taken?;
    stood_by(chaos, &active.name).await?;
    Ok(format!(
        "{service} (active, epoch {}) cut off for {:?}: {} active at epoch {} after {after:?}; \
         {} stood by {:?} after the heal",
        active.epoch,
        healed_at.duration_since(cut_at),
        taken.name,
        taken.epoch,
        active.name,
        healed_at.elapsed()
    ))
}
