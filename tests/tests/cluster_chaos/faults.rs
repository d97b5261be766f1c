//! The faults of the chaos suite: what each does to the stack and how it heals.

use std::time::Duration;

use anyhow::Result;
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
    /// SIGKILL all three nodes at once, start them again after a few seconds.
    PowerCut,
}

/// How long a killed or cut-off node stays away.
pub const OUTAGE: Duration = Duration::from_secs(12);

/// A random schedule of `n` faults (seeded from the clock; the seed is printed).
pub fn randomized(n: usize) -> Vec<Fault> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("cluster_chaos: randomized schedule, seed {seed}");
    let all = [
        Fault::KillStreamLeader,
        Fault::KillLeaseLeader,
        Fault::PartitionStreamLeader,
        Fault::PowerCut,
    ];
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
        }
    }
}
