//! The coordinator is SIGKILLed mid-stream (small batches, fast agents) and restarted, several
//! times: its log holds every event exactly once and `rebuild --verify` gives the digest the
//! live coordinator reported. A second run snapshots the projection rows only at start, so
//! every kill lands between snapshots and each restart folds the log tail (snapshot + tail
//! replay): the reloaded state must still match the full refold and accept no duplicate.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use opsfleet_tests::{check_exactly_once, check_unique_ids, AgentSpec, Cluster, CoordinatorSpec};

/// `tail=N` of the coordinator's "projection loaded" line (text or JSON log), if any.
fn loaded_tail(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("projection loaded"))?;
    let at = line
        .find("tail=")
        .map(|i| i + 5)
        .or_else(|| line.find("\"tail\":").map(|i| i + 7))?;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_mid_stream_keeps_an_exact_log_and_digest() {
    killed_mid_stream(
        "coordinator-sigkill",
        CoordinatorSpec::new("blue").batch_max(10),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_killed_between_snapshots_reloads_the_refold() {
    // Rows are written only by the first batch after each start (and a clean stop).
    let spec = CoordinatorSpec::new("blue")
        .batch_max(10)
        .ingest_toml("snapshot_batches = 10000\nsnapshot_interval = \"1h\"");
    killed_mid_stream("coordinator-sigkill-snapshots", spec, true).await;
}

async fn killed_mid_stream(name: &str, spec: CoordinatorSpec, expect_tail: bool) {
    Cluster::run(name, async |c: &mut Cluster| {
        c.add_coordinator(spec.clone())?;
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
            if expect_tail {
                // Answering status means it has loaded its state (and logged how).
                c.wait_hosts_at_least("blue", &min).await?;
                let log = c.coordinator("blue")?.proc().log_since_start();
                let tail = loaded_tail(&log);
                println!("round {round}: restart folded a log tail of {tail:?} entries");
                ensure!(
                    tail.is_some_and(|t| t > 0),
                    "restart after a kill between snapshots folded no log tail ({tail:?}); log:\n{log}"
                );
            }
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
