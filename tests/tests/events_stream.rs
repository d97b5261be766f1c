//! `OPS_EVENTS` as a deployment meets it, against a real nats-server and real coordinators: a
//! stream created by an older release (agent subjects only, no byte or size limits) is updated
//! in place to hold the coordinators' own space with this release's limits, keeping what it
//! held; and a stream filling toward its `max_bytes` raises `events_stream_full` before the
//! limit deletes anything, resolved once it drains.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use async_nats::jetstream::{self, stream};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use opsfleet_tests::{wait_until, wait_until_default, Cluster, CoordinatorSpec};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn heartbeat(host: &str, incarnation: Uuid, seq: u64) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq,
        time_unix_ms: 1_790_000_000_000 + seq as i64,
        module: "heartbeat".to_owned(),
        incarnation,
        body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
    }
}

async fn publish(js: &jetstream::Context, ev: &EventEnvelope) -> Result<()> {
    let msg = jetstream::message::PublishMessage::build()
        .payload(ev.encode_to_vec().into())
        .message_id(ev.id.to_string());
    js.send_publish(subjects::event_subject(&ev.host, ev.kind()), msg)
        .await?
        .await
        .context("PubAck")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_events_stream_is_updated_in_place() {
    Cluster::run("events-stream-upgrade", async |c: &mut Cluster| {
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client);
        // What an earlier release created: agent subjects only, no byte or size limit.
        js.create_stream(stream::Config {
            name: subjects::EVENTS_STREAM.to_owned(),
            subjects: vec![subjects::EVENTS_ALL.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
        let inc = Uuid::now_v7();
        for seq in 1..=3 {
            publish(&js, &heartbeat("web-01", inc, seq)).await?;
        }

        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let expected = BTreeMap::from([("web-01".to_owned(), 3)]);
        c.wait_caught_up("blue", &expected).await?;

        let info = js
            .get_stream(subjects::EVENTS_STREAM)
            .await?
            .get_info()
            .await?;
        let defaults = opsfleet_bus::TopologyConfig::default();
        ensure!(
            info.config.subjects == [subjects::EVENTS_ALL, subjects::COORD_EVENTS_ALL],
            "subjects {:?}",
            info.config.subjects
        );
        ensure!(
            info.config.max_bytes == i64::try_from(defaults.events_max_bytes)?
                && info.config.max_message_size == i32::try_from(defaults.events_max_msg_size)?,
            "limits: max_bytes {} max_msg_size {}",
            info.config.max_bytes,
            info.config.max_message_size
        );
        ensure!(
            info.state.first_sequence == 1,
            "the update lost events: {:?}",
            info.state
        );
        // The coordinator's own events now land in its space of the same stream, and the
        // coordinator folds them as before.
        wait_until_default("blue's leadership event in ops.coord.blue.>", async || {
            let last = js
                .get_stream(subjects::EVENTS_STREAM)
                .await?
                .get_last_raw_message_by_subject(&subjects::coordinator_event_subject(
                    "blue",
                    "leadership",
                ))
                .await;
            Ok(last.ok().map(|_| ()))
        })
        .await?;
        wait_until_default("blue to know itself active from the log", async || {
            let r = c.status(Some("blue")).await?;
            let me = r.coordinators.iter().find(|v| v.name == "blue").cloned();
            Ok(me
                .filter(|v| v.role == opsfleet_proto::api::LeaderRole::Active)
                .map(|_| ()))
        })
        .await?;
        Ok(())
    })
    .await;
}

/// `opsctl alerts --output json`: (rule, state) of every alert.
async fn alert_states(c: &Cluster) -> Result<Vec<(String, String)>> {
    let out = c.opsctl.run(&["--output", "json", "alerts"]).await?.ok()?;
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("alerts output: {}", out.stdout))?;
    let rows = v["alerts"].as_array().cloned().unwrap_or_default();
    Ok(rows
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or_default().to_owned();
            (s("rule"), s("state"))
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_events_stream_alerts_before_the_limit_bites() {
    Cluster::run("events-stream-full", async |c: &mut Cluster| {
        // A tiny stream: 64 KiB, the smallest the config accepts for 4 KiB events.
        let max_bytes: u64 = 64 * 1024;
        c.add_coordinator(
            CoordinatorSpec::new("blue")
                .topology_toml(&format!(
                    "events_max_bytes = {max_bytes}\nevents_max_msg_size = 4096\n"
                ))
                .config_toml(
                    "[alerts]\ninterval = \"200ms\"\n\n[alerts.rules.events_stream_full]\n\
                     percent = 50\nresolve_after = \"1s\"\n",
                ),
        )?;
        wait_until_default("blue to be active", async || {
            let r = c.status(Some("blue")).await.ok();
            Ok(
                r.filter(|r| r.responder.role == opsfleet_proto::api::LeaderRole::Active)
                    .map(|_| ()),
            )
        })
        .await?;
        let client = async_nats::connect(c.nats_url()).await?;
        let js = jetstream::new(client);
        let mut events = js.get_stream(subjects::EVENTS_STREAM).await?;
        ensure!(
            events.info().await?.config.max_bytes == i64::try_from(max_bytes)?,
            "the topology's max_bytes did not reach the stream"
        );

        // Fill to just past half, then stop: the alert must come without the limit biting.
        let inc = Uuid::now_v7();
        let mut seq = 0;
        while events.info().await?.state.bytes * 100 < max_bytes * 60 {
            for _ in 0..20 {
                seq += 1;
                publish(&js, &heartbeat("web-08", inc, seq)).await?;
            }
        }
        // An event over the size limit is refused by the stream itself.
        let mut big = heartbeat("web-08", inc, seq + 1);
        big.body = pb::event::Body::Heartbeat(pb::Heartbeat {
            agent_version: "x".repeat(8 * 1024),
            ..Default::default()
        });
        ensure!(
            publish(&js, &big).await.is_err(),
            "an event over events_max_msg_size was stored"
        );

        wait_until(
            "events_stream_full to fire",
            WAIT,
            Duration::from_millis(200),
            async || {
                let states = alert_states(c).await?;
                Ok(states
                    .contains(&("events_stream_full".to_owned(), "firing".to_owned()))
                    .then_some(()))
            },
        )
        .await?;
        let state = events.info().await?.state.clone();
        ensure!(
            state.first_sequence == 1 && state.bytes < max_bytes,
            "the limit bit before the alert: {state:?}"
        );

        // Drained (here by a purge; in life by max_age): resolved after `resolve_after`.
        events.purge().await?;
        wait_until(
            "events_stream_full to resolve",
            WAIT,
            Duration::from_millis(200),
            async || {
                let states = alert_states(c).await?;
                Ok(states
                    .contains(&("events_stream_full".to_owned(), "resolved".to_owned()))
                    .then_some(()))
            },
        )
        .await?;
        c.check_alive()?;
        Ok(())
    })
    .await;
}
