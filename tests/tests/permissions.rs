//! The shipped NATS permission config (`deploy/nats/single.conf` + `auth.conf`, secrets from
//! `scripts/dev-certs.sh`) against a real nats-server: what each role can and cannot do, TLS
//! required (plain text and certificate-less clients refused), and the real binaries doing
//! their jobs under their own credentials — events flow, a command round-trips, the operator's
//! identity lands in the audit trail and cannot be borrowed by another operator.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use async_nats::jetstream::{self, consumer};
use async_nats::ConnectOptions;
use futures::StreamExt;
use opsfleet_bus::TopologyConfig;
use opsfleet_proto::subjects;
use opsfleet_tests::secure::{Role, SecureNats};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec, Opsctl};

// One file per trust boundary; each holds the negative tests of what that boundary refuses.
#[path = "permissions/api.rs"]
mod api;
#[path = "permissions/host_policy.rs"]
mod host_policy;
#[path = "permissions/ingest.rs"]
mod ingest;
#[path = "permissions/network.rs"]
mod network;
#[path = "permissions/network_push.rs"]
mod network_push;
#[path = "permissions/relay.rs"]
mod relay;
#[path = "permissions/verbs.rs"]
mod verbs;

/// Runs `opsctl noop --host <host> --wait 60s` (as the cluster's operator) and checks that it
/// completed.
async fn noop_completes(c: &Cluster, host: &str) -> Result<()> {
    let out = c
        .opsctl
        .run(&["--output", "json", "noop", "--host", host, "--wait", "60s"])
        .await?;
    let out = out.ok().with_context(|| format!("noop on {host} failed"))?;
    let views: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
    ensure!(
        views["all_completed"] == true,
        "noop on {host} did not complete: {}",
        out.stdout
    );
    Ok(())
}

/// A client of `identity` that records the server's asynchronous errors (permission
/// violations are reported that way, and the message is dropped).
struct Probe {
    client: async_nats::Client,
    js: jetstream::Context,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Probe {
    async fn connect(s: &SecureNats, identity: &str, role: Role) -> Result<Probe> {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&errors);
        let seed = std::fs::read_to_string(s.nkey_path(identity))?;
        let tls = s.tls(Some(role));
        let client = ConnectOptions::new()
            .nkey(seed.trim().to_owned())
            .custom_inbox_prefix(format!("_INBOX.{identity}"))
            .require_tls(true)
            .add_root_certificates(tls.ca.context("ca")?)
            .add_client_certificate(tls.cert.context("cert")?, tls.key.context("key")?)
            .request_timeout(Some(Duration::from_secs(3)))
            .event_callback(move |event| {
                let sink = Arc::clone(&sink);
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        if let Ok(mut v) = sink.lock() {
                            v.push(format!("{e}"));
                        }
                    }
                }
            })
            .connect(s.url())
            .await
            .with_context(|| format!("{identity} cannot connect"))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        Ok(Probe { client, js, errors })
    }

    /// Waits until the server reported a permission violation naming `subject`.
    async fn expect_violation(&self, what: &str, subject: &str) -> Result<()> {
        // A flush makes sure the server has processed what was sent before.
        let _ = self.client.flush().await;
        wait_until_default(
            &format!("a permissions violation for {what} on {subject}"),
            async || {
                let errors = self.errors.lock().map_err(|_| anyhow!("poisoned"))?;
                Ok(errors
                    .iter()
                    .any(|e| {
                        e.to_lowercase().contains("permissions violation") && e.contains(subject)
                    })
                    .then_some(()))
            },
        )
        .await
    }
}

fn stream_count(info: &jetstream::stream::Info) -> u64 {
    info.state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_can_do_their_jobs_and_nothing_else() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;

    // Coordinator: owns the topology and sends commands.
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    opsfleet_bus::ensure_topology(&blue.js, &TopologyConfig::default())
        .await
        .context("the coordinator cannot create the topology")?;
    for host in ["web-01", "web-02"] {
        blue.js
            .publish(
                subjects::command_subject(host),
                format!("cmd for {host}").into(),
            )
            .await?
            .await
            .with_context(|| format!("the coordinator cannot send a command to {host}"))?;
    }

    // Agent web-01: its own events, yes.
    let web01 = Probe::connect(&s, "web-01", Role::Agent).await?;
    web01
        .js
        .publish(subjects::event_subject("web-01", "heartbeat"), "hb".into())
        .await?
        .await
        .context("web-01 cannot publish its own event")?;

    // ... another host's events, no.
    let other_event = subjects::event_subject("web-02", "heartbeat");
    let ack = web01
        .js
        .publish(other_event.clone(), "forged".into())
        .await?;
    ensure!(ack.await.is_err(), "web-01 got a PubAck for web-02's event");
    web01.expect_violation("publish", &other_event).await?;

    // ... a command, no.
    let cmd = subjects::command_subject("web-01");
    let ack = web01.js.publish(cmd.clone(), "self-issued".into()).await?;
    ensure!(ack.await.is_err(), "web-01 got a PubAck for a command");
    web01.expect_violation("publish", &cmd).await?;

    // ... another host's commands, no: not by subscription, not by a consumer of its own name
    // with web-02's filter, not by web-02's consumer, not by reading the stream directly.
    let other_cmd = subjects::command_subject("web-02");
    let _sub = web01.client.subscribe(other_cmd.clone()).await?;
    web01.expect_violation("subscription", &other_cmd).await?;
    let stream = blue.js.get_stream(subjects::COMMANDS_STREAM).await?;
    let agent_js = web01.js.clone();
    let forged_filter = agent_js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("agent-web-01".into()),
                filter_subject: other_cmd.clone(),
                ..Default::default()
            },
            subjects::COMMANDS_STREAM,
        )
        .await;
    ensure!(
        forged_filter.is_err(),
        "web-01 created a consumer on web-02's commands"
    );
    let other_consumer = agent_js
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("agent-web-02".into()),
                filter_subject: other_cmd.clone(),
                ..Default::default()
            },
            subjects::COMMANDS_STREAM,
        )
        .await;
    ensure!(other_consumer.is_err(), "web-01 created web-02's consumer");
    let direct = web01
        .client
        .request(
            format!("$JS.API.STREAM.MSG.GET.{}", subjects::COMMANDS_STREAM),
            r#"{"last_by_subj":"ops.cmd.web-02"}"#.into(),
        )
        .await;
    ensure!(
        direct.is_err(),
        "web-01 read the commands stream directly: {direct:?}"
    );
    let mut sneaky = web01.client.subscribe("_INBOX.>").await?;
    web01.expect_violation("subscription", "_INBOX.>").await?;
    ensure!(
        tokio::time::timeout(Duration::from_millis(200), sneaky.next())
            .await
            .is_err(),
        "web-01 received something on _INBOX.>"
    );

    // ... its own commands, yes, through its own durable consumer.
    let own = agent_js
        .get_stream(subjects::COMMANDS_STREAM)
        .await?
        .get_or_create_consumer(
            "agent-web-01",
            consumer::pull::Config {
                durable_name: Some("agent-web-01".into()),
                filter_subject: cmd.clone(),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .context("web-01 cannot open its own command consumer")?;
    let mut batch = own
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await?;
    let mut got = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.map_err(|e| anyhow!("{e}"))?;
        got.push(String::from_utf8_lossy(&m.payload).into_owned());
        m.ack().await.map_err(|e| anyhow!("{e}"))?;
    }
    ensure!(got == ["cmd for web-01"], "web-01 read {got:?}");

    // ... and the stream's republish of its own commands (the fast path), but not another
    // host's; nobody publishes there, not even a coordinator.
    let copies = subjects::command_copy_subject("web-01");
    let mut fast = web01.client.subscribe(copies.clone()).await?;
    web01.client.flush().await?;
    blue.js
        .publish(cmd.clone(), "fast cmd for web-01".into())
        .await?
        .await
        .context("the coordinator cannot send a second command to web-01")?;
    let copy = tokio::time::timeout(Duration::from_secs(10), fast.next())
        .await
        .context("web-01's fast path delivered nothing")?
        .context("subscription ended")?;
    ensure!(
        copy.payload.as_ref() == b"fast cmd for web-01",
        "web-01's fast path got {:?}",
        copy.payload
    );
    ensure!(
        !web01
            .errors
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter()
            .any(|e| e.contains(&copies)),
        "web-01 may not receive its own command copies"
    );
    let other_copies = subjects::command_copy_subject("web-02");
    let _other = web01.client.subscribe(other_copies.clone()).await?;
    web01
        .expect_violation("subscription", &other_copies)
        .await?;
    web01
        .client
        .publish(copies.clone(), "forged".into())
        .await?;
    web01.expect_violation("publish", &copies).await?;
    blue.client.publish(copies.clone(), "forged".into()).await?;
    blue.expect_violation("publish", &copies).await?;

    // Nothing forged reached a stream.
    let mut events = blue.js.get_stream(subjects::EVENTS_STREAM).await?;
    ensure!(
        stream_count(events.info().await?) == 1,
        "OPS_EVENTS holds a forged event"
    );
    let mut commands = stream;
    ensure!(
        stream_count(commands.info().await?) == 3,
        "OPS_CMDS holds a forged command"
    );

    // Operator alice: API verbs and her own identified subject, yes; someone else's identity,
    // the plain command subject and commands, no.
    let alice = Probe::connect(&s, "alice", Role::Operator).await?;
    let _responder = blue.client.subscribe(subjects::API_COMMAND_AS_ALL).await?;
    alice
        .client
        .publish(
            subjects::api_command_as("alice", opsfleet_proto::api::Role::Operator),
            "{}".into(),
        )
        .await?;
    for forbidden in [
        subjects::api_command_as("bob", opsfleet_proto::api::Role::Operator),
        subjects::API_COMMAND.to_owned(),
        subjects::command_subject("web-01"),
        subjects::event_subject("web-01", "heartbeat"),
    ] {
        alice.client.publish(forbidden.clone(), "{}".into()).await?;
        alice.expect_violation("publish", &forbidden).await?;
    }
    ensure!(
        !alice
            .errors
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter()
            .any(|e| e.contains("ops.api.as.alice.command")),
        "alice may not use her own identified subject"
    );
    // ... and reads events through an ephemeral consumer named in the subject.
    let ordered = alice
        .js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("alice cannot look up the events stream")?
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some("opsctl-alice".into()),
            ..Default::default()
        })
        .await
        .context("alice cannot read events")?;
    let mut msgs = ordered.messages().await?;
    let first = tokio::time::timeout(Duration::from_secs(20), msgs.next())
        .await
        .context("no event for alice")?
        .context("stream ended")?
        .map_err(|e| anyhow!("{e}"))?;
    ensure!(first.subject.as_str() == "ops.evt.web-01.heartbeat");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_required_and_client_certificates_are_checked() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let seed = std::fs::read_to_string(s.nkey_path("alice"))?;
    let connect = |opts: ConnectOptions| {
        let url = s.url();
        async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                opts.connection_timeout(Duration::from_secs(5)).connect(url),
            )
            .await
        }
    };

    // Plain text: refused.
    let plain = connect(ConnectOptions::new().nkey(seed.trim().to_owned())).await;
    ensure!(
        !matches!(plain, Ok(Ok(_))),
        "a plain-text connection was accepted"
    );

    // TLS without a client certificate: refused (mutual TLS is required).
    let tls = s.tls(None);
    let no_cert = connect(
        ConnectOptions::new()
            .nkey(seed.trim().to_owned())
            .require_tls(true)
            .add_root_certificates(tls.ca.clone().context("ca")?),
    )
    .await;
    ensure!(
        !matches!(no_cert, Ok(Ok(_))),
        "a TLS connection without client certificate was accepted"
    );

    // Client certificate but no nkey: refused (authentication is still the nkey).
    let with_cert = s.tls(Some(Role::Operator));
    let no_key = connect(
        ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(with_cert.ca.clone().context("ca")?)
            .add_client_certificate(
                with_cert.cert.clone().context("cert")?,
                with_cert.key.clone().context("key")?,
            ),
    )
    .await;
    ensure!(
        !matches!(no_key, Ok(Ok(_))),
        "a connection without nkey was accepted"
    );

    // Mutual TLS + nkey, through the project's own connect: works.
    let client = s.connect("alice", Role::Operator).await?;
    client
        .flush()
        .await
        .context("alice's connection does not work")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binaries_work_under_their_credentials() {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-permissions-")
        .tempdir()
        .expect("temp dir");
    let s = SecureNats::start(tmp.path())
        .await
        .expect("secure nats-server");
    let opsctl = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("alice", "alice"));
    let impostor = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("alice", "bob"));
    let toml = |id: &str, role| s.nats_toml(id, role);
    let (blue, green, web01, db01) = (
        toml("blue", Role::Coordinator),
        toml("green", Role::Coordinator),
        toml("web-01", Role::Agent),
        toml("db-01", Role::Agent),
    );
    let bob_key = std::fs::read_to_string(s.secrets.join("nkeys/bob.nk.pub")).expect("bob's key");
    let bob_key = bob_key.trim().to_owned();
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    Cluster::run_with(cluster, "permissions", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").nats_toml(&blue))?;
        c.add_coordinator(CoordinatorSpec::new("green").nats_toml(&green))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(500))
                .nats_toml(&web01),
        )?;
        c.add_agent(
            AgentSpec::new("db-01")
                .heartbeat(Duration::from_millis(500))
                .nats_toml(&db01),
        )?;
        // Events flow from both agents to both coordinators.
        let want = BTreeMap::from([("web-01".to_owned(), 3), ("db-01".to_owned(), 3)]);
        c.wait_hosts_at_least("blue", &want).await?;
        c.wait_hosts_at_least("green", &want).await?;

        // A command round-trips: alice -> active coordinator -> agent -> ledger.
        noop_completes(c, "web-01").await?;

        // The audit trail names alice, the host and the outcome.
        let audit = c.opsctl.run(&["--output", "json", "audit"]).await?.ok()?;
        let entries: Vec<serde_json::Value> = serde_json::from_str(audit.stdout.trim())?;
        let noop = entries
            .iter()
            .find(|e| e["action"] == "noop")
            .with_context(|| format!("no noop in the audit trail: {}", audit.stdout))?;
        ensure!(noop["issued_by"] == "alice", "audit: {noop}");
        ensure!(
            noop["target"] == "web-01" && noop["outcome"] == "completed",
            "audit: {noop}"
        );
        let table = c
            .opsctl
            .run(&["audit", "--by", "alice"])
            .await?
            .ok()?
            .stdout;
        ensure!(
            table.contains("alice") && table.contains("noop"),
            "audit table:\n{table}"
        );

        // The failover drill runs under alice's permissions too (failover verb, no-ops on her
        // identified subject), and its commands are on record as hers.
        let drill = c
            .opsctl
            .run(&["--output", "json", "failover", "--drill", "--wait", "30s"])
            .await?;
        let drill = drill.ok().context("failover --drill as alice failed")?;
        let report: serde_json::Value = serde_json::from_str(drill.stdout.trim())?;
        ensure!(report["passed"] == true, "drill: {}", drill.stdout);
        let audit = c.opsctl.run(&["--output", "json", "audit"]).await?.ok()?;
        ensure!(
            audit.stdout.contains("alice (drill)"),
            "drill commands not recorded as alice's: {}",
            audit.stdout
        );

        // bob cannot act as alice: the server refuses the subject, nothing is issued.
        let db01_commands = async || -> Result<usize> {
            let ledger = c
                .opsctl
                .run(&[
                    "--output", "json", "commands", "--host", "db-01", "--limit", "1000",
                ])
                .await?
                .ok()?;
            let cmds: Vec<serde_json::Value> = serde_json::from_str(ledger.stdout.trim())?;
            Ok(cmds.len())
        };
        let before = db01_commands().await?;
        let forged = impostor
            .run(&["noop", "--host", "db-01", "--no-wait"])
            .await?;
        ensure!(
            !forged.status.success(),
            "bob issued a command as alice:\n{}",
            forged.stdout
        );
        let after = db01_commands().await?;
        if after != before {
            bail!("a command reached db-01 although only bob (as alice) asked");
        }

        // The operator reads events with its credentials.
        let ev = c
            .opsctl
            .run(&["events", "--host", "db-01", "--since", "10m"])
            .await?
            .ok()?;
        ensure!(
            ev.stdout.contains("db-01"),
            "opsctl events printed:\n{}",
            ev.stdout
        );

        // The permission set is complete: the only violations the server saw are bob's.
        let log = c.nats.proc_mut().log_since_start();
        let (bobs, others): (Vec<&str>, Vec<&str>) = log
            .lines()
            .filter(|l| l.contains("Violation"))
            .partition(|l| l.contains(&bob_key));
        ensure!(
            others.is_empty(),
            "unexpected violations:\n{}",
            others.join("\n")
        );
        ensure!(
            bobs.iter()
                .any(|l| l.contains("ops.api.as.alice.operator.command")),
            "bob's attempt was not logged"
        );
        Ok(())
    })
    .await;
}

/// `ops.api.console.>` carries a coordinator's word for its console's logins: only
/// coordinators may publish it (operators, viewers and agents are refused by the server), and
/// a coordinator's console consumers on OPS_EVENTS may not take the other coordinator's
/// durable name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_coordinators_may_forward_console_requests() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    opsfleet_bus::ensure_topology(&blue.js, &TopologyConfig::default()).await?;
    let subject = subjects::api_console("command");
    let body = br#"{"via":"alice","operator":"alice","role":"admin","request":{"action":"noop","hosts":["web-01"],"deadline_ms":60000,"issued_by":"alice"}}"#;
    for (identity, role) in [
        ("alice", Role::Operator),
        ("vera", Role::Operator),
        ("web-01", Role::Agent),
    ] {
        let p = Probe::connect(&s, identity, role).await?;
        p.client
            .publish_with_reply(
                subject.clone(),
                format!("_INBOX.{identity}.x"),
                body.to_vec().into(),
            )
            .await?;
        p.expect_violation(
            &format!("{identity} forwarding a console request"),
            &subject,
        )
        .await?;
    }
    blue.client
        .publish_with_reply(
            subject.clone(),
            "_INBOX.blue.console.x",
            body.to_vec().into(),
        )
        .await?;
    blue.client.flush().await?;
    let events = blue.js.get_stream(subjects::EVENTS_STREAM).await?;
    events
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some("console-blue-test".into()),
            filter_subject: "ops.*.*.*".into(),
            ..Default::default()
        })
        .await
        .with_context(|| {
            let errors = blue.errors.lock().map(|e| e.clone()).unwrap_or_default();
            format!("blue cannot open a console consumer on OPS_EVENTS (server errors: {errors:?})")
        })?;
    let stolen = events
        .create_consumer(consumer::pull::Config {
            durable_name: Some("coord-green".into()),
            ..Default::default()
        })
        .await;
    ensure!(stolen.is_err(), "blue created green's durable consumer");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let errors = blue.errors.lock().map_err(|_| anyhow!("poisoned"))?.clone();
    ensure!(
        !errors.iter().any(|e| e.contains(subject.as_str())),
        "blue may not forward console requests: {errors:?}"
    );
    Ok(())
}
