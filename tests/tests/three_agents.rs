//! Events from three agents are persisted by two coordinators and visible in `opsctl status`,
//! both as JSON and as the human table.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure};
use opsfleet_tests::{
    check_exactly_once, check_status_table, check_unique_ids, wait_until_default, AgentSpec,
    Cluster, CoordinatorSpec,
};

const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];
const COORDINATORS: [&str; 2] = ["blue", "green"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_three_agents_are_persisted_and_visible_in_status() {
    Cluster::run("three-agents", async |c: &mut Cluster| {
        for name in COORDINATORS {
            c.add_coordinator(CoordinatorSpec::new(name))?;
        }
        let watched = c.dir().to_path_buf();
        for host in HOSTS {
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(100))
                    .disk(Duration::from_secs(1), vec![watched.clone()]),
            )?;
        }

        // Both coordinators see all three hosts, with disk readings.
        let min: BTreeMap<String, u64> = HOSTS.iter().map(|h| (h.to_string(), 5)).collect();
        for name in COORDINATORS {
            c.wait_hosts_at_least(name, &min).await?;
            wait_until_default(
                &format!("{name} to report a disk for every host"),
                async || {
                    let reply = c.status(Some(name)).await?;
                    let missing: Vec<&str> = reply
                        .hosts
                        .iter()
                        .filter(|h| h.disks.is_empty())
                        .map(|h| h.host.as_str())
                        .collect();
                    if missing.is_empty() {
                        Ok(Some(()))
                    } else {
                        Err(anyhow!("no disk view yet for {missing:?}"))
                    }
                },
            )
            .await?;
            let reply = c.status(Some(name)).await?;
            ensure!(
                reply.responder.name == name,
                "asked {name}, answered by {}",
                reply.responder.name
            );
            let mut hosts: Vec<&str> = reply.hosts.iter().map(|h| h.host.as_str()).collect();
            hosts.sort_unstable();
            ensure!(
                hosts == HOSTS,
                "{name} reports hosts {hosts:?}, expected {HOSTS:?}"
            );
            for h in &reply.hosts {
                ensure!(
                    h.gaps.is_empty(),
                    "{name}: {} has gaps {:?}",
                    h.host,
                    h.gaps
                );
                ensure!(
                    h.events >= 5,
                    "{name}: {} has only {} events",
                    h.host,
                    h.events
                );
                ensure!(
                    !h.incarnation.is_empty(),
                    "{name}: {} has no incarnation",
                    h.host
                );
            }
        }

        // The human table: one row per host, last seen seconds ago, the answering coordinator
        // named in the header.
        let table = wait_until_default("a status table with three fresh hosts", async || {
            c.check_alive()?;
            let table = c.opsctl.status_table(None).await?;
            check_status_table(&table, &HOSTS, Duration::from_secs(10))
                .map_err(anyhow::Error::msg)?;
            Ok(Some(table))
        })
        .await?;
        println!("opsctl status:\n{table}");
        ensure!(
            COORDINATORS.iter().any(|n| table.contains(n)),
            "the table does not name the coordinator that answered:\n{table}"
        );
        let blue_table = c.opsctl.status_table(Some("blue")).await?;
        ensure!(
            blue_table.contains("blue"),
            "`status --coordinator blue` header:\n{blue_table}"
        );

        // Persisted: after everything stops, each coordinator's log holds every event once.
        let outboxes = c.stop_agents().await?;
        let expected: BTreeMap<String, u64> = outboxes
            .iter()
            .map(|(h, o)| (h.clone(), o.last_seq))
            .collect();
        for name in COORDINATORS {
            c.wait_caught_up(name, &expected).await?;
        }
        for name in COORDINATORS {
            let coord = c.coordinator(name)?;
            coord.stop().await?;
            let log = coord.dump_log().await?;
            for (host, outbox) in &outboxes {
                check_exactly_once(&log, host, &outbox.incarnation, outbox.last_seq)
                    .map_err(|e| anyhow!("coordinator {name}: {e}"))?;
            }
            check_unique_ids(&log).map_err(|e| anyhow!("coordinator {name}: {e}"))?;
            let (report, out) = coord.rebuild(true).await?;
            ensure!(
                out.status.success() && report.matches,
                "coordinator {name}: rebuild --verify does not match: {report:?}\n{}",
                out.stderr
            );
        }
        Ok(())
    })
    .await;
}
