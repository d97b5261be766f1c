//! The shipped `reader` user (deploy/nats/auth.conf, docs/events-api.md) on the shipped TLS and
//! nkey config: both example consumers read the events under it; it cannot publish events or
//! API requests, send commands, read commands, or touch a coordinator's durable consumer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use async_nats::ConnectOptions;
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
        let _ = self.client.flush().await;
        let quoted = format!("\"{subject}\"");
        wait_until_default(
            &format!("a permissions violation on {subject}"),
            async || {
                let errors = self.errors.lock().map_err(|_| anyhow!("poisoned"))?;
                Ok(errors
                    .iter()
                    .any(|e| {
                        e.to_lowercase().contains("permissions violation") && e.contains(&quoted)
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
        // itself or anyone), create or pull a coordinator's durable, read commands or
        // dead letters, or create a consumer whose name the subject does not show.
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
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS.coord-blue",
            "$JS.API.CONSUMER.CREATE.OPS_EVENTS.coord-blue.ops.>",
            "$JS.API.CONSUMER.MSG.NEXT.OPS_EVENTS.coord-blue",
            "$JS.API.CONSUMER.DELETE.OPS_EVENTS.coord-blue",
            "$JS.API.CONSUMER.CREATE.OPS_CMDS.x.ops.cmd.web-01",
            "$JS.API.CONSUMER.CREATE.OPS_DLQ.x.ops.dlq.>",
            "$JS.API.STREAM.PURGE.OPS_EVENTS",
            "$JS.API.STREAM.DELETE.OPS_EVENTS",
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
