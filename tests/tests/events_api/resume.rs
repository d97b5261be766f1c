//! Both example consumers follow the stream across a nats-server restart (their consumer is
//! gone, the connection drops) and print every event once: resumed from the last stream
//! sequence read, with no gap and no duplicate.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::ensure;
use async_nats::jetstream;
use opsfleet_proto::subjects;
use opsfleet_tests::{AgentSpec, Cluster, CoordinatorSpec};

use super::support::{first_copies, keys, stream_keys, Consumers, BOTH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_consumers_resume_after_a_server_restart_without_gap_or_duplicate() {
    Cluster::run("events-api-resume", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)))?;
        let want = BTreeMap::from([("web-01".to_owned(), 5)]);
        c.wait_hosts_at_least("blue", &want).await?;
        let consumers = Consumers::new()?;
        let conn = vec!["--nats".to_owned(), c.nats_url()];
        let end = {
            let js = jetstream::new(async_nats::connect(c.nats_url()).await?);
            let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
            stream.info().await?.state.last_sequence
        };
        // Everything so far, then 25 events that arrive while they follow, across the restart.
        let count = (end + 25).to_string();
        let mut runs = Vec::new();
        for which in BOTH {
            let (consumers, conn, count) = (consumers.clone(), conn.clone(), count.clone());
            runs.push(tokio::spawn(async move {
                let args = [
                    "--since-seq",
                    "1",
                    "--count",
                    count.as_str(),
                    "--timeout",
                    "90",
                ];
                consumers.run(which, &conn, &args).await
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.nats.restart().await?;

        let js = jetstream::new(async_nats::connect(c.nats_url()).await?);
        for (which, run) in BOTH.into_iter().zip(runs) {
            let out = run.await??;
            let stderr = out.stderr.clone();
            ensure!(
                stderr.contains("resuming at stream seq"),
                "{which:?} did not see the restart (or did not say so): {stderr}"
            );
            let got = keys(&super::parse_lines(&out.ok()?.stdout)?)?;
            let last = got.last().map_or(0, |k| k.0);
            let want = first_copies(stream_keys(&js, 1, last).await?);
            ensure!(
                got == want && got.len() == usize::try_from(end + 25)?,
                "{which:?} across a restart printed {} events, the stream holds {} up to seq \
                 {last}; stderr:\n{stderr}",
                got.len(),
                want.len()
            );
        }
        Ok(())
    })
    .await;
}
