//! Active/standby election through the KV lease, with two real coordinators on a real
//! nats-server: exactly one is active; kill -9 of the active hands the role to the standby
//! within TTL + 1 s; a graceful handover (`opsctl failover --to`) and a SIGTERM hand it over in
//! well under a second, each under a higher epoch. A lease bucket shorter than `lease_ttl` is
//! raised at start, never lowered. Foreign writes into the lease do not unseat the active.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use opsfleet_proto::api::{Responder, StatusReply};
use opsfleet_proto::subjects;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};

/// Default lease TTL of the coordinators (bus::TopologyConfig).
const TTL: Duration = Duration::from_secs(3);

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

/// Polls both coordinators every 20 ms until `name` reports itself active; returns its view.
async fn wait_active(
    client: &async_nats::Client,
    name: &str,
    within: Duration,
) -> Result<(Responder, Duration)> {
    let start = Instant::now();
    loop {
        if let Some(r) = ask(client, name).await {
            if r.role == opsfleet_proto::api::LeaderRole::Active {
                return Ok((r, start.elapsed()));
            }
        }
        if start.elapsed() > within {
            bail!("{name} did not become active within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn actives(client: &async_nats::Client) -> Vec<Responder> {
    let mut out = Vec::new();
    for name in ["blue", "green"] {
        if let Some(r) = ask(client, name).await {
            if r.role == opsfleet_proto::api::LeaderRole::Active {
                out.push(r);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_active_and_fast_takeover_on_crash_and_on_handover() {
    Cluster::run("election", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(200)))?;
        let client = async_nats::connect(c.nats_url()).await?;

        let first = wait_until_default("one coordinator to become active", async || {
            let a = actives(&client).await;
            Ok((a.len() == 1).then(|| a[0].clone()))
        })
        .await?;
        // Over a few renewals the role stays put and never doubles.
        for _ in 0..20 {
            let a = actives(&client).await;
            ensure!(a.len() <= 1, "two actives: {a:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let standby = if first.name == "blue" {
            "green"
        } else {
            "blue"
        };
        println!("{} active at epoch {}", first.name, first.epoch);

        // Crash: kill -9 the active; the standby must act within TTL + 1 s.
        c.coordinator(&first.name)?.sigkill().await?;
        let (second, took) = wait_active(&client, standby, TTL + Duration::from_secs(5)).await?;
        println!(
            "kill -9: {standby} active at epoch {} after {took:?}",
            second.epoch
        );
        ensure!(
            took <= TTL + Duration::from_secs(1),
            "takeover after kill -9 took {took:?}"
        );
        ensure!(
            second.epoch > first.epoch,
            "epoch did not grow: {} then {}",
            first.epoch,
            second.epoch
        );

        // Commands issued after the takeover take effect, under the new epoch.
        let out = c
            .opsctl
            .run(&[
                "--output", "json", "noop", "--host", "web-01", "--wait", "60s",
            ])
            .await?
            .ok()?;
        let outcome: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).context("noop JSON")?;
        ensure!(
            outcome["all_completed"] == true && outcome["epoch"] == second.epoch,
            "noop after takeover: {outcome}"
        );

        // The killed one comes back as standby.
        c.coordinator(&first.name)?.restart()?;
        wait_until_default(
            "the restarted coordinator to answer as standby",
            async || {
                Ok(ask(&client, &first.name)
                    .await
                    .filter(|r| r.role == opsfleet_proto::api::LeaderRole::Standby))
            },
        )
        .await?;

        // Graceful handover back with opsctl.
        let out = c
            .opsctl
            .run(&["--output", "json", "failover", "--to", &first.name])
            .await?
            .ok()?;
        let report: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).context("failover JSON")?;
        ensure!(
            report["new_active"] == first.name.as_str(),
            "failover report: {report}"
        );
        let (third, _) = wait_active(&client, &first.name, Duration::from_secs(5)).await?;
        ensure!(third.epoch > second.epoch, "epoch did not grow on handover");
        ensure!(
            actives(&client).await.len() == 1,
            "two actives after handover"
        );
        println!("opsctl failover: {report}");

        // SIGTERM of the active releases the lease: the standby takes over well within a TTL.
        c.coordinator(&first.name)?.stop().await?;
        let (fourth, took) = wait_active(&client, standby, Duration::from_secs(10)).await?;
        println!(
            "SIGTERM: {standby} active at epoch {} after {took:?}",
            fourth.epoch
        );
        ensure!(
            took < Duration::from_secs(1),
            "takeover after a graceful stop took {took:?}; the lease was not released"
        );
        ensure!(fourth.epoch > third.epoch, "epoch did not grow");

        // Every term began with a leadership event in the log, and the graceful ones ended
        // with one: the projection shows them in epoch order.
        let expected = [first.epoch, second.epoch, third.epoch, fourth.epoch];
        let history = wait_until_default("leadership events of all four terms", async || {
            let reply = c.status(Some(standby)).await?;
            let mut activations: Vec<(u64, String)> = reply
                .coordinators
                .iter()
                .flat_map(|k| {
                    k.history
                        .iter()
                        .filter(|h| h.role == opsfleet_proto::api::LeaderRole::Active)
                        .map(|h| (h.epoch, k.name.clone()))
                })
                .collect();
            activations.sort();
            let epochs: Vec<u64> = activations.iter().map(|a| a.0).collect();
            Ok((epochs == expected).then_some(reply.coordinators))
        })
        .await?;
        let released: Vec<u64> = history
            .iter()
            .flat_map(|k| {
                k.history
                    .iter()
                    .filter(|h| h.reason == "released")
                    .map(|h| h.epoch)
            })
            .collect();
        ensure!(
            released.contains(&second.epoch) && released.contains(&third.epoch),
            "graceful step-downs missing from the log: {history:?}"
        );
        Ok(())
    })
    .await;
}

/// A lease bucket left by a shorter `lease_ttl` would drop a holder's lease while the holder
/// still acts under the longer one (and a standby could `create` meanwhile): the next
/// `ensure_topology` raises its `max_age` to `lease_ttl`, and never lowers a longer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_bucket_shorter_than_lease_ttl_is_raised_never_lowered() -> anyhow::Result<()> {
    use async_nats::jetstream;
    use opsfleet_bus::TopologyConfig;
    let tmp = tempfile::tempdir()?;
    let nats = opsfleet_tests::NatsServer::start_in(tmp.path()).await?;
    let js = jetstream::new(async_nats::connect(nats.url()).await?);
    let at = |secs| TopologyConfig {
        lease_ttl: Duration::from_secs(secs),
        ..TopologyConfig::default()
    };
    let max_age = async || -> anyhow::Result<Duration> {
        let name = format!("KV_{}", subjects::LEADER_BUCKET);
        let mut stream = js.get_stream(name).await?;
        Ok(stream.info().await?.config.max_age)
    };
    opsfleet_bus::ensure_topology(&js, &at(3)).await?;
    ensure!(
        max_age().await? == Duration::from_secs(3),
        "created at lease_ttl"
    );
    // A held lease survives the raise.
    let kv = js.get_key_value(subjects::LEADER_BUCKET).await?;
    kv.create("leader", "blue".into()).await?;
    opsfleet_bus::ensure_topology(&js, &at(15)).await?;
    ensure!(
        max_age().await? == Duration::from_secs(15),
        "a 3 s bucket under lease_ttl 15 s was not raised: {:?}",
        max_age().await?
    );
    ensure!(
        kv.get("leader").await?.as_deref() == Some(&b"blue"[..]),
        "the held lease was lost by the raise"
    );
    opsfleet_bus::ensure_topology(&js, &at(5)).await?;
    ensure!(
        max_age().await? == Duration::from_secs(15),
        "a longer bucket was lowered under a shorter lease_ttl: {:?}",
        max_age().await?
    );
    Ok(())
}

/// Foreign writes: JetStream answers aimed at the lease key by a reply subject (any credential
/// with a JS API right can do it) leave the active active at the same epoch.
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
