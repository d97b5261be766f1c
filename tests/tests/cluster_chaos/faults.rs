//! The faults of the chaos suite: what each does to the stack and how it heals.

use std::time::Duration;

use anyhow::{Context, Result};
use opsfleet_tests::compose::docker;

use super::stack::Chaos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the node leading `OPS_EVENTS`; restarted after `OUTAGE`.
    KillStreamLeader,
    /// SIGKILL the node leading the `ops_leader` KV stream; restarted after `OUTAGE`.
    KillLeaseLeader,
    /// Disconnect the `OPS_EVENTS` leader's node from the network for `OUTAGE`.
    PartitionStreamLeader,
    /// Disconnect the active coordinator from the network for longer than its lease TTL.
    PartitionActiveCoordinator,
    /// Move the `OPS_EVENTS` leader's node and web-01's agent onto a network of their own (a
    /// minority with an agent on it) for `OUTAGE`.
    PartitionMinorityWithAgent,
    /// SIGKILL all three nodes at once, start them again after a few seconds.
    PowerCut,
    /// Fill nats-2's filesystem for `OUTAGE`, free it, restart nats-2 (JetStream disables
    /// itself on a node whose disk is full and stays off until the server restarts).
    DiskFull,
    /// Jump web-01's wall clock 10 min ahead, then 10 min behind, then back (libfaketime).
    AgentClockJump,
    /// SIGSTOP the active coordinator, SIGKILL the node leading the `ops_leader` KV stream,
    /// wait for the standby to take over, then SIGCONT the old active.
    StopActiveAcrossLeaseLeaderChange,
}

/// How long a killed or cut-off node stays away.
pub const OUTAGE: Duration = Duration::from_secs(12);

impl Fault {
    /// Every fault, in the order of the short schedule.
    pub const ALL: [Fault; 9] = [
        Fault::KillStreamLeader,
        Fault::PartitionStreamLeader,
        Fault::PartitionActiveCoordinator,
        Fault::PartitionMinorityWithAgent,
        Fault::DiskFull,
        Fault::AgentClockJump,
        Fault::StopActiveAcrossLeaseLeaderChange,
        Fault::KillLeaseLeader,
        Fault::PowerCut,
    ];
}

/// The faults named in `names` (comma-separated, as `Fault`'s variants are spelled).
pub fn parse(names: &str) -> Result<Vec<Fault>> {
    names
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| {
            Fault::ALL
                .iter()
                .copied()
                .find(|f| format!("{f:?}") == n)
                .with_context(|| format!("no fault {n:?}; known: {:?}", Fault::ALL))
        })
        .collect()
}

/// A random schedule of `n` faults (seeded from the clock; the seed is printed).
pub fn randomized(n: usize) -> Vec<Fault> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("cluster_chaos: randomized schedule, seed {seed}");
    let all = Fault::ALL;
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            // xorshift64: reproducible from the printed seed.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            all[(x % all.len() as u64) as usize]
        })
        .collect()
}

impl Fault {
    /// Injects the fault and heals it; returns a description of what was done.
    pub async fn inject(self, chaos: &Chaos) -> Result<String> {
        match self {
            Fault::KillStreamLeader | Fault::KillLeaseLeader => {
                let stream = if self == Fault::KillStreamLeader {
                    "OPS_EVENTS"
                } else {
                    "KV_ops_leader"
                };
                let node = chaos.stream_leader(stream).await?;
                chaos.stack.run(&["kill", "-s", "SIGKILL", &node])?;
                tokio::time::sleep(OUTAGE).await;
                chaos.stack.run(&["start", &node])?;
                Ok(format!(
                    "SIGKILL {node} (leader of {stream}), back after {OUTAGE:?}"
                ))
            }
            Fault::PartitionStreamLeader => {
                let node = chaos.stream_leader("OPS_EVENTS").await?;
                let container = chaos.container(&node)?;
                let network = chaos.network();
                docker(&["network", "disconnect", &network, &container])?;
                tokio::time::sleep(OUTAGE).await;
                docker(&["network", "connect", "--alias", &node, &network, &container])?;
                Ok(format!(
                    "{node} (leader of OPS_EVENTS) cut off for {OUTAGE:?}"
                ))
            }
            Fault::PowerCut => {
                chaos
                    .stack
                    .run(&["kill", "-s", "SIGKILL", "nats-1", "nats-2", "nats-3"])?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                chaos.stack.run(&["start", "nats-1", "nats-2", "nats-3"])?;
                Ok("SIGKILL nats-1, nats-2, nats-3 at once, started 3 s later".to_owned())
            }
            Fault::DiskFull => disk_full(chaos).await,
            Fault::AgentClockJump => super::clock::jump(chaos).await,
            Fault::StopActiveAcrossLeaseLeaderChange => super::leases::stop_active(chaos).await,
            Fault::PartitionActiveCoordinator => super::leases::partition_active(chaos).await,
            Fault::PartitionMinorityWithAgent => super::network::minority_with_agent(chaos).await,
        }
    }
}

async fn disk_full(chaos: &Chaos) -> Result<String> {
    let Some(disk) = &chaos.small_disk else {
        return Ok("SKIPPED disk full: nats-2 has no small disk of the test's own".to_owned());
    };
    let filled = disk.fill()?;
    tokio::time::sleep(OUTAGE).await;
    // What nats-2 made of it, from its own log (`--since` is not used: the daemon's clock
    // need not be this process's).
    let logs = chaos
        .stack
        .run(&["logs", "--no-color", "nats-2"])
        .unwrap_or_default();
    let said = logs
        .lines()
        .filter(|l| l.contains("will be DISABLED") || l.contains("Critical write error"))
        .take(2)
        .map(|l| l.split("] ").last().unwrap_or(l).trim().to_owned())
        .collect::<Vec<_>>();
    disk.free()?;
    chaos.stack.run(&["restart", "-t", "10", "nats-2"])?;
    Ok(format!(
        "nats-2's disk filled ({} MiB written) for {OUTAGE:?}, freed, nats-2 restarted; \
         nats-2 said: {said:?}",
        filled / (1024 * 1024)
    ))
}
