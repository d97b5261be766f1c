//! NATS is stopped while agents keep producing, then started again on the same port and store:
//! every seq 1..=N of every host arrives exactly once in the coordinator's log, in per-host order.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, ensure};
use opsfleet_tests::{check_exactly_once, check_unique_ids, AgentSpec, Cluster, CoordinatorSpec};

const HOSTS: [&str; 2] = ["db-01", "web-01"];
/// How long NATS stays down while the agents keep producing (heartbeat every 50 ms).
const OUTAGE: Duration = Duration::from_secs(3);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_produced_during_a_nats_outage_arrive_exactly_once() {
    Cluster::run("nats-outage", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        for host in HOSTS {
            c.add_agent(AgentSpec::new(host).heartbeat(Duration::from_millis(50)))?;
        }
        let min: BTreeMap<String, u64> = HOSTS.iter().map(|h| (h.to_string(), 10)).collect();
        let before = c.wait_hosts_at_least("blue", &min).await?;

        c.nats.stop().await?;
        let down_from = now_ms();
        // Deliberate production time, not a wait for a condition: the agents fill their
        // outboxes while the server is away. Check every daemon survives it.
        let until = tokio::time::Instant::now() + OUTAGE;
        while tokio::time::Instant::now() < until {
            for a in &mut c.agents {
                a.proc_mut().check_running()?;
            }
            for k in &mut c.coordinators {
                k.proc_mut().check_running()?;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let down_until = now_ms();
        c.nats.restart().await?;

        // Everyone reconnects by themselves and the backlog flows.
        let progressed: BTreeMap<String, u64> = before
            .hosts
            .iter()
            .map(|h| (h.host.clone(), h.last_seq + 20))
            .collect();
        c.wait_hosts_at_least("blue", &progressed).await?;

        let outboxes = c.stop_agents().await?;
        let expected: BTreeMap<String, u64> = outboxes
            .iter()
            .map(|(h, o)| (h.clone(), o.last_seq))
            .collect();
        c.wait_caught_up("blue", &expected).await?;
        let coord = c.coordinator("blue")?;
        coord.stop().await?;
        let log = coord.dump_log().await?;

        for (host, outbox) in &outboxes {
            check_exactly_once(&log, host, &outbox.incarnation, outbox.last_seq)
                .map_err(anyhow::Error::msg)?;
            let during = log
                .iter()
                .filter(|e| {
                    &e.host == host && e.time_unix_ms > down_from && e.time_unix_ms < down_until
                })
                .count();
            ensure!(
                during >= 5,
                "{host}: only {during} events were produced while NATS was down; the agent \
                 should keep producing into its outbox"
            );
        }
        check_unique_ids(&log).map_err(|e| anyhow!(e))?;
        Ok(())
    })
    .await;
}
