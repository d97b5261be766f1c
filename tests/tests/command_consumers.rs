//! `OPS_CMDS` holds one durable consumer per agent. nats-server 2.15 caps a stream that sets no
//! consumer limit of its own at 1,000 consumers, so without `COMMAND_CONSUMERS` the 1,001st
//! host would get no commands. With a real nats-server: a stream created as an older opsfleet
//! created it (no limit, no republish) refuses the 1,001st agent consumer; `ensure_topology`
//! gives it both, and then it takes them all.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use opsfleet_bus::{ensure_topology, TopologyConfig, COMMAND_CONSUMERS};
use opsfleet_proto::subjects;
use opsfleet_tests::NatsServer;

/// Agents' consumers created: past the server's default cap.
const AGENTS: usize = 1_050;
/// nats-server 2.15's `default_max_consumers`.
const CAP: usize = 1_000;
/// Consumer creations in flight at once.
const AT_ONCE: usize = 32;

/// Creates (or finds, with the same config) agent consumers `host-<i>` on `cmds`; the errors.
async fn create_agents(cmds: &stream::Stream, hosts: std::ops::Range<usize>) -> Vec<String> {
    let created: Vec<Result<()>> = futures::stream::iter(hosts)
        .map(|i| {
            let cmds = cmds.clone();
            async move {
                let host = format!("host-{i:05}");
                let durable = format!("agent-{host}");
                cmds.create_consumer(consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subjects::command_subject(&host),
                    ack_policy: consumer::AckPolicy::Explicit,
                    max_ack_pending: 1,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("consumer {durable}"))?;
                Ok(())
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    created
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_agents_get_a_command_consumer() -> Result<()> {
    let nats = NatsServer::start().await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    // An OPS_CMDS as an older version created it: no consumer limit, no republish.
    js.create_stream(stream::Config {
        name: subjects::COMMANDS_STREAM.to_owned(),
        subjects: vec![subjects::COMMANDS_ALL.to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        num_replicas: 1,
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await
    .context("older OPS_CMDS")?;
    let cmds = js.get_stream(subjects::COMMANDS_STREAM).await?;
    // The server reports the older stream's limit as -1 ("unlimited") and still stops it at
    // 1,000.
    let refused = create_agents(&cmds, 0..AGENTS).await;
    ensure!(
        refused.len() == AGENTS - CAP,
        "{} of {AGENTS} consumers refused on a stream without a limit of its own (expected the \
         server's cap of {CAP} to refuse {}): {:?}",
        refused.len(),
        AGENTS - CAP,
        refused.first()
    );

    ensure_topology(&js, &TopologyConfig::default()).await?;
    let mut cmds = js.get_stream(subjects::COMMANDS_STREAM).await?;
    let config = cmds.info().await?.config.clone();
    ensure!(
        config.max_consumers == COMMAND_CONSUMERS,
        "OPS_CMDS consumer limit {} after ensure_topology",
        config.max_consumers
    );
    ensure!(
        config.republish.as_ref().map(|r| r.destination.as_str()) == Some("ops.fastcmd.>"),
        "OPS_CMDS republish {:?} after ensure_topology",
        config.republish
    );

    let refused = create_agents(&cmds, 0..AGENTS).await;
    ensure!(
        refused.is_empty(),
        "{} of {AGENTS} agent consumers refused after ensure_topology, first: {:?}",
        refused.len(),
        refused.first()
    );
    let info = cmds.info().await?;
    ensure!(
        info.state.consumer_count >= AGENTS,
        "OPS_CMDS has {} consumers",
        info.state.consumer_count
    );
    Ok(())
}
