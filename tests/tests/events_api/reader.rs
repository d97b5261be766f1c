//! The shipped `reader` user (deploy/nats/auth.conf, docs/events-api.md) on the shipped TLS and
//! nkey config: both example consumers read the events under it by direct get; it cannot
//! publish events or API requests, send commands, read commands, or create any consumer (a
//! push consumer's deliver subject would make the server write events onto the lease).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use async_nats::jetstream::{self, consumer};
use async_nats::ConnectOptions;
use futures::StreamExt;
use opsfleet_proto::subjects;
use opsfleet_tests::secure::{Role, SecureNats};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec, Opsctl};

use super::support::{increasing, keys, Consumers, BOTH};

/// The reader's connection, recording the server's asynchronous errors (a permission violation
/// is reported that way, and the message dropped).
struct ReaderProbe {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl ReaderProbe {
    async fn connect(s: &SecureNats) -> Result<ReaderProbe> {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let seed = std::fs::read_to_string(s.nkey_path("reader"))?;
        let tls = s.tls(Some(Role::Operator));
        let client = ConnectOptions::new()
            .nkey(seed.trim().to_owned())
            .custom_inbox_prefix("_INBOX.reader")
            .require_tls(true)
            .add_root_certificates(tls.ca.context("ca")?)
            .add_client_certificate(tls.cert.context("cert")?, tls.key.context("key")?)
            .event_callback(move |event| {
                let sink = Arc::clone(&sink);
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        if let Ok(mut v) = sink.lock() {
                            v.push(e.to_string());
                        }
                    }
                }
            })
            .connect(s.url())
            .await
            .context("reader cannot connect")?;
        Ok(ReaderProbe { client, errors })
    }

    /// Publishes on `subject` and waits for the server to report a violation naming it.
    async fn refused(&self, subject: &str) -> Result<()> {
        self.client.publish(subject.to_owned(), "{}".into()).await?;
        self.violation(subject).await
    }

    async fn violation(&self, subject: &str) -> Result<()> {
        self.violation_containing(&format!("\"{subject}\"")).await
    }

    /// Waits for the server to report a violation whose text contains `needle`.
    async fn violation_containing(&self, needle: &str) -> Result<()> {
        let _ = self.client.flush().await;
        wait_until_default(
            &format!("a permissions violation on {needle}"),
            async || {
                let errors = self.errors.lock().map_err(|_| anyhow!("poisoned"))?;
                Ok(errors
                    .iter()
                    .any(|e| {
                        e.to_lowercase().contains("permissions violation") && e.contains(needle)
                    })
                    .then_some(()))
            },
        )
        .await
    }
}

/// The consumers' connection flags for the reader, as docs/events-api.md gives them.
fn reader_flags(s: &SecureNats) -> Vec<String> {
    let tls = s.secrets.join("tls");
    let path = |p: std::path::PathBuf| p.display().to_string();
    vec![
        "--nats".into(),
        s.url(),
        "--nkey".into(),
        path(s.nkey_path("reader")),
        "--inbox-prefix".into(),
        "_INBOX.reader".into(),
        "--tls-ca".into(),
        path(tls.join("ca.pem")),
        "--tls-cert".into(),
        path(tls.join("operator.pem")),
        "--tls-key".into(),
        path(tls.join("operator-key.pem")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_user_consumes_events_and_publishes_nothing() {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-events-reader-")
        .tempdir()
        .expect("temp dir");
    let s = SecureNats::start(tmp.path())
        .await
        .expect("secure nats-server");
    let opsctl = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("vera", "vera"));
    let blue = s.nats_toml("blue", Role::Coordinator);
    let web01 = s.nats_toml("web-01", Role::Agent);
    let conn = reader_flags(&s);
    let probe = ReaderProbe::connect(&s).await.expect("reader probe");
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    Cluster::run_with(cluster, "events-reader", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").nats_toml(&blue))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(200))
                .nats_toml(&web01),
        )?;
        let want = BTreeMap::from([("web-01".to_owned(), 5)]);
        c.wait_hosts_at_least("blue", &want).await?;

        // Both consumers read under the reader's credentials.
        let consumers = Consumers::new()?;
        let args = ["--since-seq", "1", "--count", "5", "--timeout", "60"];
        for which in BOTH {
            let lines = consumers.lines(which, &conn, &args).await?;
            let got = keys(&lines)?;
            ensure!(got.len() == 5, "{which:?} as reader: {got:?}");
            increasing(&got)?;
            ensure!(
                got.iter().all(|k| k.1 == "web-01" || k.1 == "blue"),
                "{which:?} as reader: {got:?}"
            );
        }
        // Also new events only (the stream's info, then a consumer from its end).
        for which in BOTH {
            let args = ["--host", "web-01", "--count", "2", "--timeout", "60"];
            let got = keys(&consumers.lines(which, &conn, &args).await?)?;
            ensure!(got.len() == 2, "{which:?} new only as reader: {got:?}");
        }

        // What it must not do: publish events in either space, commands, API requests (as
        // itself or anyone), create, pull or delete any consumer (its own, a coordinator's),
        // read commands, dead letters or the lease.
        for subject in [
            "ops.evt.web-01.heartbeat",
            "ops.evt.reader.heartbeat",
            "ops.coord.blue.leadership",
            "ops.cmd.web-01",
            "ops.api.as.reader.operator.command",
            "ops.api.as.alice.admin.command",
            "ops.api.command",
            "ops.api.status",
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS",
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS.mine",
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS.mine.ops.>",
            "$JS.API.CONSUMER.DURABLE.CREATE.OPS_EVENTS.mine",
            "$JS.API.CONSUMER.INFO.OPS_EVENTS.mine",
            "$JS.API.CONSUMER.MSG.NEXT.OPS_EVENTS.mine",
            "$JS.API.CONSUMER.DELETE.OPS_EVENTS.mine",
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS.coord-blue",
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS.coord-blue.ops.>",
            "$JS.API.CONSUMER.MSG.NEXT.OPS_EVENTS.coord-blue",
            "$JS.API.CONSUMER.DELETE.OPS_EVENTS.coord-blue",
            "$JS.API.CONSUMER.CREATE.OPS_CMDS.x.ops.cmd.web-01",
            "$JS.API.CONSUMER.CREATE.OPS_DLQ.x.ops.dlq.>",
            "$JS.API.STREAM.PURGE.OPS_EVENTS",
            "$JS.API.STREAM.DELETE.OPS_EVENTS",
            "$JS.API.STREAM.UPDATE.OPS_EVENTS",
            "$JS.API.DIRECT.GET.OPS_EVENTS.ops.evt.web-01.heartbeat",
            "$JS.API.DIRECT.GET.OPS_CMDS",
            "$JS.API.DIRECT.GET.KV_ops_leader",
            "$JS.API.STREAM.MSG.GET.OPS_CMDS",
            "$KV.ops_leader.leader",
        ] {
            probe.refused(subject).await?;
        }
        // Nor read around JetStream (a plain subscription to the events), nor another
        // identity's replies.
        for subject in ["ops.evt.>", "_INBOX.alice.>"] {
            let _sub = probe.client.subscribe(subject).await?;
            probe.violation(subject).await?;
        }
        Ok(())
    })
    .await;
}

/// The attack the reader's permissions close: a consumer on `OPS_EVENTS` whose config the
/// server never checks against permissions. A push consumer delivering onto a subject a
/// coordinator listens on (`ops.api.as.<anyone>.admin.*`), the lease key or a host's command
/// subject would have the server publish every event there with its own rights (nats-server
/// 2.15 delivers to client subscriptions; it did not deliver into a stream's subjects when
/// tried, but nothing in the permission model promises that). As the reader, every kind of
/// consumer create is refused, nothing arrives on the coordinator's subject and the lease is
/// untouched while events keep arriving, and direct get reads the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_may_create_no_consumer_and_reads_by_direct_get() -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-events-reader-direct-")
        .tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    // A coordinator's connection makes the topology and holds a lease (no coordinator process:
    // nothing renews it, so its revision moves only if something else writes the key; a long
    // TTL, so it does not age out during the test).
    let blue = jetstream::new(s.connect("blue", Role::Coordinator).await?);
    let cfg = opsfleet_bus::TopologyConfig {
        lease_ttl: Duration::from_secs(600),
        ..Default::default()
    };
    let topology = opsfleet_bus::ensure_topology(&blue, &cfg).await?;
    let lease_revision = topology
        .leader
        .put("leader", "blue's lease".into())
        .await
        .context("write the lease")?;
    // A coordinator listening on the API subject an admin's command would come on.
    let admin_subject = "ops.api.as.carol.admin.command";
    let mut listening = s
        .connect("blue", Role::Coordinator)
        .await?
        .subscribe(admin_subject)
        .await?;
    let agent = jetstream::new(s.connect("web-01", Role::Agent).await?);
    let heartbeat = subjects::event_subject("web-01", "heartbeat");
    let publish = async |n: u32| -> Result<()> {
        for i in 0..n {
            agent
                .publish(heartbeat.clone(), format!("event {i}").into())
                .await?
                .await?;
        }
        Ok(())
    };
    publish(3).await?;

    let probe = ReaderProbe::connect(&s).await?;
    let mut js = jetstream::new(probe.client.clone());
    js.set_timeout(Duration::from_secs(3));
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("the reader reads OPS_EVENTS' info")?;

    // Direct get works as the reader: the next message on a filter from a sequence, and
    // nothing past the end.
    let first = stream.direct_get_next_for_subject("ops.>", Some(1)).await?;
    ensure!(
        first.sequence == 1 && first.subject.as_str() == heartbeat && first.payload == "event 0",
        "direct get from seq 1: {} {}",
        first.sequence,
        first.subject
    );
    let third = stream
        .direct_get_next_for_subject("ops.*.web-01.heartbeat", Some(3))
        .await?;
    ensure!(third.sequence == 3, "from seq 3: {}", third.sequence);
    let past = stream.direct_get_next_for_subject("ops.>", Some(4)).await;
    ensure!(
        past.as_ref()
            .is_err_and(|e| matches!(e.kind(), jetstream::stream::DirectGetErrorKind::NotFound)),
        "past the end: {:?}",
        past.map(|m| m.sequence)
    );

    // Every kind of consumer: refused by the server, as a permissions violation.
    let lease = subjects::LEADER_BUCKET;
    let onto_lease = format!("$KV.{lease}.leader");
    let pull = stream
        .create_consumer(consumer::pull::Config {
            name: Some("probe-pull".into()),
            ..Default::default()
        })
        .await;
    ensure!(pull.is_err(), "the reader created a pull consumer");
    probe
        .violation("$JS.API.CONSUMER.CREATE.OPS_EVENTS.probe-pull")
        .await?;
    for (name, deliver_subject, filter) in [
        ("probe-push", onto_lease.clone(), String::new()),
        (
            "probe-push-filtered",
            onto_lease.clone(),
            "ops.>".to_owned(),
        ),
        ("probe-push-cmd", "ops.cmd.web-01".to_owned(), String::new()),
        ("probe-push-api", admin_subject.to_owned(), String::new()),
    ] {
        let push = stream
            .create_consumer(consumer::push::Config {
                name: Some(name.into()),
                deliver_subject,
                filter_subject: filter,
                ..Default::default()
            })
            .await;
        ensure!(push.is_err(), "the reader created push consumer {name}");
        probe
            .violation_containing(&format!("$JS.API.CONSUMER.CREATE.OPS_EVENTS.{name}"))
            .await?;
    }
    let ordered = stream
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some("probe-ordered".into()),
            filter_subject: "ops.>".into(),
            ..Default::default()
        })
        .await;
    ensure!(ordered.is_err(), "the reader created an ordered consumer");
    probe
        .violation_containing("$JS.API.CONSUMER.CREATE.OPS_EVENTS.probe-ordered")
        .await?;
    let durable = serde_json::json!({
        "stream_name": "OPS_EVENTS",
        "config": { "durable_name": "probe-durable", "deliver_subject": onto_lease },
    });
    probe
        .client
        .publish(
            "$JS.API.CONSUMER.DURABLE.CREATE.OPS_EVENTS.probe-durable",
            durable.to_string().into(),
        )
        .await?;
    probe
        .violation("$JS.API.CONSUMER.DURABLE.CREATE.OPS_EVENTS.probe-durable")
        .await?;

    // Events keep arriving; had any of those consumers existed, the server would now deliver
    // them to the coordinator as an admin's requests (or onto the lease, a host's commands).
    publish(5).await?;
    let delivered = tokio::time::timeout(Duration::from_secs(2), listening.next()).await;
    ensure!(
        delivered.is_err(),
        "an event reached the coordinator on {admin_subject}: {:?}",
        delivered.ok().flatten().map(|m| m.subject)
    );
    let entry = topology
        .leader
        .entry("leader")
        .await?
        .context("the lease key")?;
    ensure!(
        entry.revision == lease_revision && entry.value == "blue's lease",
        "the lease moved from revision {lease_revision} to {} ({:?})",
        entry.revision,
        entry.value
    );
    let mut events = blue.get_stream(subjects::EVENTS_STREAM).await?;
    let state = &events.info().await?.state;
    ensure!(
        state.consumer_count == 0 && state.last_sequence == 8,
        "OPS_EVENTS: {} consumers, last seq {}",
        state.consumer_count,
        state.last_sequence
    );
    let mut commands = blue.get_stream(subjects::COMMANDS_STREAM).await?;
    let commands = commands.info().await?.state.messages;
    ensure!(commands == 0, "{commands} messages on OPS_CMDS");
    Ok(())
}
