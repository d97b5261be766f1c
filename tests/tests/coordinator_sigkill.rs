//! The coordinator is SIGKILLed mid-stream (small batches, fast agents) and restarted, several
//! times: its log holds every event exactly once and `rebuild --verify` gives the digest the
//! live coordinator reported.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use opsfleet_tests::{check_exactly_once, check_unique_ids, AgentSpec, Cluster, CoordinatorSpec};

const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_mid_stream_keeps_an_exact_log_and_digest() {
    Cluster::run("coordinator-sigkill", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").batch_max(10))?;
        for host in HOSTS {
            c.add_agent(AgentSpec::new(host).heartbeat(Duration::from_millis(20)))?;
        }
        let mut min: BTreeMap<String, u64> = HOSTS.iter().map(|h| (h.to_string(), 20)).collect();
        for round in 0..3u64 {
            let reply = c.wait_hosts_at_least("blue", &min).await?;
            tokio::time::sleep(Duration::from_millis(50 + 70 * round)).await;
            c.coordinator("blue")?.sigkill().await?;
            println!(
                "round {round}: killed blue at applied_stream_seq >= {}",
                reply.responder.applied_stream_seq
            );
            // The agents keep publishing into the stream meanwhile.
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.coordinator("blue")?.restart()?;
            min = reply
                .hosts
                .iter()
                .map(|h| (h.host.clone(), h.last_seq + 20))
                .collect();
        }
        c.wait_hosts_at_least("blue", &min).await?;

        let outboxes = c.stop_agents().await?;
        let expected: BTreeMap<String, u64> = outboxes
            .iter()
            .map(|(h, o)| (h.clone(), o.last_seq))
            .collect();
        let live = c.wait_caught_up("blue", &expected).await?;
        let again = c.status(Some("blue")).await?;
        // Every check runs; the failure lists all of them, which helps to tell causes apart.
        let mut problems = Vec::new();
        if again.digest != live.digest {
            problems.push(format!(
                "the live digest changed with no new events: {} then {}",
                live.digest, again.digest
            ));
        }
        for h in &live.hosts {
            if !h.gaps.is_empty() {
                problems.push(format!("live status: {} has gaps {:?}", h.host, h.gaps));
            }
        }
        println!(
            "live: digest {} log_events {} duplicates_dropped {}",
            live.digest, live.log_events, live.duplicates_dropped
        );

        let coord = c.coordinator("blue")?;
        coord.stop().await?;
        let log = coord.dump_log().await?;
        for (host, outbox) in &outboxes {
            if let Err(e) = check_exactly_once(&log, host, &outbox.incarnation, outbox.last_seq) {
                problems.push(format!("dump-log: {e}"));
            }
        }
        if let Err(e) = check_unique_ids(&log) {
            problems.push(format!("dump-log: {e}"));
        }
        if u64::try_from(log.len()).ok() != Some(live.log_events) {
            problems.push(format!(
                "dump-log has {} entries, the live status said log_events = {}",
                log.len(),
                live.log_events
            ));
        }

        let (report, out) = coord.rebuild(true).await?;
        println!("rebuild --verify: {report:?}");
        if !(out.status.success() && report.matches) {
            problems.push(format!(
                "rebuild --verify reports a mismatch ({}): {report:?}\nstderr:\n{}",
                out.status, out.stderr
            ));
        }
        if report.digest != live.digest {
            problems.push(format!(
                "rebuild digest {} differs from the live digest {}",
                report.digest, live.digest
            ));
        }
        ensure!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    })
    .await;
}
