//! A minority partition with an agent on it: the `OPS_EVENTS` leader's node and web-01's agent
//! move onto a network of their own, so the agent can reach only a node that has lost its
//! quorum (its publishes get no PubAck and stay in its outbox), while the majority elects new
//! leaders. Healed by moving both back.

use std::time::Instant;

use anyhow::Result;
use opsfleet_tests::compose::docker;

use super::faults::OUTAGE;
use super::stack::Chaos;

pub async fn minority_with_agent(chaos: &Chaos) -> Result<String> {
    let node = chaos.stream_leader("OPS_EVENTS").await?;
    let node_c = chaos.container(&node)?;
    let agent_c = chaos.container("agent-web-01")?;
    let majority = chaos.network();
    let minority = format!("{}_minority", chaos.stack.project);
    let _ = docker(&["network", "rm", &minority]);
    docker(&["network", "create", &minority])?;
    let cut_at = Instant::now();
    docker(&["network", "disconnect", &majority, &node_c])?;
    docker(&["network", "disconnect", &majority, &agent_c])?;
    docker(&["network", "connect", "--alias", &node, &minority, &node_c])?;
    docker(&["network", "connect", &minority, &agent_c])?;
    tokio::time::sleep(OUTAGE).await;
    docker(&["network", "disconnect", &minority, &node_c])?;
    docker(&["network", "disconnect", &minority, &agent_c])?;
    docker(&["network", "connect", "--alias", &node, &majority, &node_c])?;
    docker(&[
        "network",
        "connect",
        "--alias",
        "agent-web-01",
        &majority,
        &agent_c,
    ])?;
    docker(&["network", "rm", &minority])?;
    Ok(format!(
        "{node} (leader of OPS_EVENTS) and agent-web-01 on a network of their own for {:?}",
        cut_at.elapsed()
    ))
}
