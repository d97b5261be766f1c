//! The agent is SIGKILLed and restarted: once with unacked events in its outbox (NATS down, so
//! no PubAck can arrive), and repeatedly while it is publishing. Nothing is lost or doubled.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure};
use opsfleet_tests::{check_exactly_once, check_unique_ids, AgentSpec, Cluster, CoordinatorSpec};

const HOST: &str = "web-01";

async fn finish_and_check(
    c: &mut Cluster,
    incarnation: &str,
    min_last_seq: u64,
) -> anyhow::Result<()> {
    let outboxes = c.stop_agents().await?;
    let outbox = outboxes
        .get(HOST)
        .ok_or_else(|| anyhow!("no outbox report for {HOST}"))?;
    ensure!(
        outbox.incarnation == incarnation,
        "the incarnation changed across SIGKILL: {incarnation} -> {}",
        outbox.incarnation
    );
    ensure!(
        outbox.last_seq > min_last_seq,
        "last_seq {} did not grow past {min_last_seq} after the restart",
        outbox.last_seq
    );
    let expected = BTreeMap::from([(HOST.to_owned(), outbox.last_seq)]);
    c.wait_caught_up("blue", &expected).await?;
    let coord = c.coordinator("blue")?;
    coord.stop().await?;
    let log = coord.dump_log().await?;
    check_exactly_once(&log, HOST, &outbox.incarnation, outbox.last_seq)
        .map_err(anyhow::Error::msg)?;
    check_unique_ids(&log).map_err(anyhow::Error::msg)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_with_unacked_events_loses_and_doubles_nothing() {
    Cluster::run("agent-sigkill-unacked", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new(HOST).heartbeat(Duration::from_millis(50)))?;
        c.wait_hosts_at_least("blue", &BTreeMap::from([(HOST.to_owned(), 5)]))
            .await?;

        // No server, no PubAck: whatever the agent produces now stays in its outbox.
        c.nats.stop().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.agent(HOST)?.proc_mut().check_running()?;
        c.agent(HOST)?.sigkill().await?;

        let killed = c.agent(HOST)?.outbox().await?;
        println!("outbox after SIGKILL: {killed:?}");
        ensure!(
            killed.pending > 0,
            "precondition: expected unacked events in the outbox at kill time, got {killed:?}"
        );

        c.nats.restart().await?;
        c.agent(HOST)?.restart()?;
        // The backlog is published and new events follow it.
        c.wait_hosts_at_least(
            "blue",
            &BTreeMap::from([(HOST.to_owned(), killed.last_seq + 5)]),
        )
        .await?;
        finish_and_check(c, &killed.incarnation, killed.last_seq).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_while_publishing_loses_and_doubles_nothing() {
    Cluster::run("agent-sigkill-publishing", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new(HOST).heartbeat(Duration::from_millis(20)))?;
        let mut reached = 0;
        let mut incarnation = String::new();
        for round in 0..3u64 {
            let target = BTreeMap::from([(HOST.to_owned(), reached + 10)]);
            let reply = c.wait_hosts_at_least("blue", &target).await?;
            // Vary the moment of the kill a little between rounds.
            tokio::time::sleep(Duration::from_millis(37 * (round + 1))).await;
            c.agent(HOST)?.sigkill().await?;
            let outbox = c.agent(HOST)?.outbox().await?;
            println!("round {round}: outbox after SIGKILL: {outbox:?}");
            if round > 0 {
                ensure!(
                    outbox.incarnation == incarnation,
                    "the incarnation changed across SIGKILL: {incarnation} -> {}",
                    outbox.incarnation
                );
            }
            incarnation = outbox.incarnation;
            reached = outbox.last_seq;
            let seen = reply
                .hosts
                .iter()
                .find(|h| h.host == HOST)
                .map_or(0, |h| h.last_seq);
            ensure!(
                reached >= seen,
                "the coordinator saw seq {seen} but the outbox ends at {reached}"
            );
            c.agent(HOST)?.restart()?;
        }
        c.wait_hosts_at_least("blue", &BTreeMap::from([(HOST.to_owned(), reached + 5)]))
            .await?;
        finish_and_check(c, &incarnation, reached).await
    })
    .await;
}
