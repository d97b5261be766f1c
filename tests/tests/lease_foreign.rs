//! Foreign writes into the election lease: JetStream's JSON answers aimed at the lease key by a
//! reply subject (any credential with a JS API right can do it) leave the active coordinator
//! active at the same epoch, and never make the standby active.

use std::time::Duration;

use anyhow::{ensure, Context};
use opsfleet_proto::api::{LeaderRole, Responder, StatusReply};
use opsfleet_proto::subjects;
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};

async fn ask(client: &async_nats::Client, name: &str) -> Option<Responder> {
    let subject = subjects::api_subject_for(subjects::API_STATUS, name);
    let reply = tokio::time::timeout(
        Duration::from_millis(500),
        client.request(subject, "{}".into()),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice::<StatusReply>(&reply.payload)
        .ok()
        .map(|r| r.responder)
}

async fn actives(client: &async_nats::Client) -> Vec<Responder> {
    let mut out = Vec::new();
    for name in ["blue", "green"] {
        if let Some(r) = ask(client, name).await {
            if r.role == LeaderRole::Active {
                out.push(r);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_answers_written_into_the_lease_do_not_unseat_the_active() {
    Cluster::run("lease-foreign", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        let client = async_nats::connect(c.nats_url()).await?;
        let first = wait_until_default("one coordinator to become active", async || {
            let a = actives(&client).await;
            Ok((a.len() == 1).then(|| a[0].clone()))
        })
        .await?;
        let lease = format!("$KV.ops_leader.{}", opsfleet_proto::kv::LEADER_KEY);
        // ~20 foreign writes over ~10 s: each makes the server publish its stream-info answer
        // on the lease key, a new revision whose value is no lease record.
        for i in 0..20 {
            client
                .publish_with_reply("$JS.API.STREAM.INFO.OPS_EVENTS", lease.clone(), "".into())
                .await
                .context("publish")?;
            client.flush().await?;
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let a = actives(&client).await;
                ensure!(
                    a.len() == 1 && a[0].name == first.name && a[0].epoch == first.epoch,
                    "after foreign write {i}: actives {a:?}, was {} at epoch {}",
                    first.name,
                    first.epoch
                );
            }
        }
        Ok(())
    })
    .await;
}
