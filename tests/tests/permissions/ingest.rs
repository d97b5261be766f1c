//! Negative tests of who may say what in the event stream (coordinator-only and lifecycle bodies).
//! A real nats-server on the shipped config, two real coordinators notifying a real webhook
//! receiver, and agents' own credentials publishing forged bodies on the subjects they are
//! allowed: every forgery is parked on the DLQ under its rule and counted, and nothing of it
//! shows in the log, the audit trail, the ledger, the alerts, the coordinators' leadership, at
//! the receiver, or in `opsctl events`; legitimate traffic (a real alert, the target's own answer)
//! still gets through, and the log still rebuilds to the same digest.

use opsfleet_proto::dlq;
use opsfleet_proto::pb::{self, event::Body};
use opsfleet_proto::{EventEnvelope, COORDINATOR_MODULE};
use opsfleet_tests::{wait_until, Receiver};
use uuid::Uuid;

use super::*;

/// Text an attacker wants in front of the on-call engineer.
const FORGED_TEXT: &str = "pay the ransom at https://evil.example/";

pub(super) fn event(
    host: &str,
    incarnation: Uuid,
    seq: u64,
    module: &str,
    body: Body,
) -> EventEnvelope {
    EventEnvelope {
        id: Uuid::now_v7(),
        host: host.to_owned(),
        seq,
        time_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        module: module.to_owned(),
        incarnation,
        body,
    }
}

/// Publishes `ev` on its host's own agent subject with that agent's credentials.
async fn publish(agent: &Probe, ev: &EventEnvelope) -> Result<()> {
    let subject = subjects::event_subject(&ev.host, ev.kind());
    let msg = jetstream::message::PublishMessage::build()
        .payload(ev.encode_to_vec().into())
        .message_id(ev.id.to_string());
    agent
        .js
        .send_publish(subject.clone(), msg)
        .await?
        .await
        .with_context(|| format!("no PubAck on {subject}: the agent may publish there"))?;
    Ok(())
}

fn coordinator_toml(hook: &str) -> String {
    format!(
        "[alerts]\ninterval = \"300ms\"\nmin_silence = \"1h\"\n\n\
         [alerts.rules.disk_crit]\nfor = \"0s\"\n\n\
         [[notify.routes]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{hook}\"\n"
    )
}

pub(super) async fn json(c: &Cluster, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = c.opsctl.run(&all).await?.ok()?;
    serde_json::from_str(out.stdout.trim()).with_context(|| format!("{args:?}: {}", out.stdout))
}

/// (reason, original subject) of every dead letter, once `want` have arrived.
pub(super) async fn dead_letters(
    js: &jetstream::Context,
    want: usize,
) -> Result<Vec<(String, String)>> {
    let consumer = js
        .get_stream(subjects::DLQ_STREAM)
        .await?
        // People create consumers only under a name in the subject (deploy/nats/auth.conf).
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some(format!("dlq-reader-{}", Uuid::now_v7().simple())),
            ..Default::default()
        })
        .await?;
    let mut msgs = consumer.messages().await?;
    let mut out = Vec::new();
    while out.len() < want {
        let msg = tokio::time::timeout(Duration::from_secs(30), msgs.next())
            .await
            .context("dead letters did not arrive")?
            .context("DLQ consumer ended")?
            .map_err(|e| anyhow!("{e}"))?;
        let headers = msg.headers.clone().unwrap_or_default();
        let header = |k: &str| headers.get(k).map(|v| v.to_string()).unwrap_or_default();
        out.push((header(dlq::REASON), header(dlq::ORIGINAL_SUBJECT)));
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_cannot_say_what_only_coordinators_or_the_target_say() {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-permissions-ingest-")
        .tempdir()
        .expect("temp dir");
    let s = SecureNats::start(tmp.path())
        .await
        .expect("secure nats-server");
    let rx = Receiver::start().await.expect("receiver");
    let opsctl = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("alice", "alice"));
    let (blue, green) = (
        s.nats_toml("blue", Role::Coordinator),
        s.nats_toml("green", Role::Coordinator),
    );
    // The agents' own credentials, and a coordinator's to read the dead letters.
    let web01 = Probe::connect(&s, "web-01", Role::Agent)
        .await
        .expect("web-01");
    let db01 = Probe::connect(&s, "db-01", Role::Agent)
        .await
        .expect("db-01");
    // An admin reads the dead letters (coordinators only write them).
    let reader = Probe::connect(&s, "carol", Role::Operator)
        .await
        .expect("reader");
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    let hook = rx.url("/hook");
    Cluster::run_with(cluster, "permissions-ingest", async |c: &mut Cluster| {
        for (name, toml) in [("blue", &blue), ("green", &green)] {
            c.add_coordinator(
                CoordinatorSpec::new(name)
                    .nats_toml(toml)
                    .config_toml(&coordinator_toml(&hook)),
            )?;
        }
        wait_until_default("a coordinator to be active", async || {
            for name in ["blue", "green"] {
                if c.status(Some(name)).await?.responder.role
                    == opsfleet_proto::api::LeaderRole::Active
                {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        })
        .await?;
        let (web_inc, db_inc) = (Uuid::now_v7(), Uuid::now_v7());
        let hb = || Body::Heartbeat(pb::Heartbeat::default());
        publish(&web01, &event("web-01", web_inc, 1, "heartbeat", hb())).await?;
        publish(&db01, &event("db-01", db_inc, 1, "heartbeat", hb())).await?;
        let known = BTreeMap::from([("web-01".to_owned(), 1), ("db-01".to_owned(), 1)]);
        c.wait_caught_up("blue", &known).await?;

        // alice's real command to db-01, which no agent answers yet.
        let out = c
            .opsctl
            .run(&["noop", "--host", "db-01", "--no-wait", "--deadline", "10m"])
            .await?;
        out.ok().context("noop as alice")?;
        let cmds = json(c, &["commands", "--host", "db-01"]).await?;
        let real_cmd = cmds[0]["id"]
            .as_str()
            .context("alice's command")?
            .to_owned();

        // A real alert, delivered: the route works (the control for what must not arrive).
        let disk = Body::Disk(pb::DiskUsage {
            path: "/data".into(),
            total_bytes: 100,
            used_bytes: 97,
            used_basis_points: 9700,
            level: pb::DiskLevel::Crit as i32,
            previous_level: pb::DiskLevel::Ok as i32,
            level_changed: true,
            ..Default::default()
        });
        publish(&db01, &event("db-01", db_inc, 2, "disk", disk)).await?;
        let real_alert = "disk_crit/db-01//data";
        wait_until(
            "the real alert at the receiver",
            WAIT,
            Duration::from_millis(100),
            async || {
                Ok(rx
                    .requests()
                    .iter()
                    .any(|r| r.body["alert_id"] == real_alert && r.body["state"] == "firing")
                    .then_some(()))
            },
        )
        .await?;

        // The forgeries, each from web-01's own subject space with its own credentials.
        let transition = |id: &str, rule: &str, state: pb::AlertState, epoch, summary: &str| {
            Body::AlertTransition(pb::AlertTransition {
                alert_id: id.into(),
                rule: rule.into(),
                target_host: "db-01".into(),
                subject: "/data".into(),
                state: state as i32,
                severity: "critical".into(),
                summary: summary.into(),
                value: String::new(),
                epoch,
                at_unix_ms: 1,
                previous: pb::AlertState::Firing as i32,
            })
        };
        let forged: Vec<(Body, &str)> = vec![
            // A false audit entry in alice's name.
            (
                Body::CommandIssued(pb::CommandIssued {
                    command_id: Uuid::now_v7().to_string(),
                    target: "db-01".into(),
                    epoch: u64::MAX,
                    issued_by: "alice".into(),
                    action: "restore".into(),
                    module: "backup".into(),
                    deadline_unix_ms: i64::MAX,
                    issued_role: "admin".into(),
                }),
                "coordinator_body_from_agent",
            ),
            // db-01's command "completed" by web-01 (today the first terminal state wins).
            (
                Body::CommandCompleted(pb::CommandCompleted {
                    command_id: real_cmd.clone(),
                    detail: "done (forged)".into(),
                }),
                "lifecycle_not_target",
            ),
            // An answer to a command nobody issued.
            (
                Body::CommandFailed(pb::CommandFailed {
                    command_id: Uuid::now_v7().to_string(),
                    reason: "forged".into(),
                }),
                "lifecycle_unknown_command",
            ),
            // The real alert frozen resolved by a term no lease reaches.
            (
                transition(
                    real_alert,
                    "disk_crit",
                    pb::AlertState::Resolved,
                    u64::MAX,
                    "resolved",
                ),
                "coordinator_body_from_agent",
            ),
            // A firing alert with the attacker's text, for the active coordinator to deliver.
            (
                transition(
                    "health_failed/db-01/pay",
                    "health_failed",
                    pb::AlertState::Firing,
                    1,
                    FORGED_TEXT,
                ),
                "coordinator_body_from_agent",
            ),
            // db-01 declared lost forever.
            (
                Body::HostLiveness(pb::HostLiveness {
                    target_host: "db-01".into(),
                    lost: true,
                    last_seen_unix_ms: 0,
                    interval_ms: 1000,
                    epoch: u64::MAX,
                }),
                "coordinator_body_from_agent",
            ),
            // A delivery record that would stop the real notification of the next transition.
            (
                Body::NotificationSent(pb::NotificationSent {
                    alert_id: real_alert.into(),
                    transition_id: Uuid::now_v7().to_string(),
                    route: "ops".into(),
                    outcome: pb::NotifyOutcome::Sent as i32,
                    attempts: 1,
                    detail: String::new(),
                    epoch: u64::MAX,
                }),
                "coordinator_body_from_agent",
            ),
            // web-01 as an active coordinator.
            (
                Body::Leadership(pb::LeadershipChanged {
                    coordinator: "web-01".into(),
                    color: "blue".into(),
                    role: pb::LeaderRole::Active as i32,
                    epoch: u64::MAX,
                    reason: String::new(),
                    ..Default::default()
                }),
                "coordinator_body_from_agent",
            ),
        ];
        let mut want = Vec::new();
        for (i, (body, reason)) in forged.into_iter().enumerate() {
            // The coordinators' module name, which today's fold takes for a coordinator.
            let module = if reason == "coordinator_body_from_agent" {
                COORDINATOR_MODULE
            } else {
                "agent"
            };
            let ev = event("web-01", web_inc, 100 + i as u64, module, body);
            want.push((
                reason.to_owned(),
                subjects::event_subject("web-01", ev.kind()),
            ));
            publish(&web01, &ev).await?;
        }
        want.sort();

        // The coordinators' own subject space is closed to agents at the server.
        let own = subjects::coordinator_event_subject("web-01", "leadership");
        web01.client.publish(own.clone(), "forged".into()).await?;
        web01.expect_violation("publish", &own).await?;

        // The target's own answer still counts; then a marker from web-01: once both are
        // folded, so is everything before them.
        let accept = Body::CommandAccepted(pb::CommandAccepted {
            command_id: real_cmd.clone(),
            epoch: 1,
        });
        publish(&db01, &event("db-01", db_inc, 3, "agent", accept)).await?;
        publish(&web01, &event("web-01", web_inc, 2, "heartbeat", hb())).await?;
        let folded = BTreeMap::from([("web-01".to_owned(), 2), ("db-01".to_owned(), 3)]);
        for name in ["blue", "green"] {
            let reply = c.wait_caught_up(name, &folded).await?;
            ensure!(
                reply.refused_parked == want.len() as u64 && reply.malformed_parked == 0,
                "{name}: refused {} malformed {}",
                reply.refused_parked,
                reply.malformed_parked
            );
            let names: Vec<&str> = reply.coordinators.iter().map(|v| v.name.as_str()).collect();
            ensure!(
                names.iter().all(|n| ["blue", "green"].contains(n)),
                "{name}: coordinators {names:?}"
            );
            ensure!(
                reply.coordinators.iter().all(|v| v.epoch != u64::MAX),
                "{name}: {:?}",
                reply.coordinators
            );
        }

        // The audit trail: alice's noop only, accepted by db-01 itself.
        let audit = json(c, &["audit"]).await?;
        let entries = audit.as_array().context("audit entries")?;
        ensure!(
            entries.len() == 1
                && entries[0]["action"] == "noop"
                && entries[0]["issued_by"] == "alice"
                && entries[0]["outcome"] == "accepted",
            "audit: {audit}"
        );
        let ledger = json(c, &["commands", "--id", &real_cmd]).await?;
        let history = ledger[0]["history"].as_array().context("history")?;
        ensure!(
            ledger[0]["state"] == "accepted" && history.iter().all(|h| h["by"] != "web-01"),
            "ledger: {ledger}"
        );
        // The alert transitions as operators see them: only the coordinators' own, and
        // opsctl says what it leaves out.
        let out = c
            .opsctl
            .run(&[
                "--output",
                "json",
                "events",
                "--since",
                "seq:1",
                "--kind",
                "alert_transition",
            ])
            .await?
            .ok()?;
        let lines: Vec<serde_json::Value> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        ensure!(
            !lines.is_empty()
                && lines
                    .iter()
                    .all(|l| l["host"] == "blue" || l["host"] == "green"),
            "alert transitions shown: {}",
            out.stdout
        );
        ensure!(
            !out.stdout.contains("evil.example") && out.stderr.matches("not shown").count() == 2,
            "opsctl events:\n{}\n{}",
            out.stdout,
            out.stderr
        );

        // The receiver: several delivery rounds later, only the real alert.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = rx.requests();
        ensure!(
            got.iter().all(|r| r.body["alert_id"] == real_alert)
                && !got
                    .iter()
                    .any(|r| r.body.to_string().contains("evil.example")),
            "the receiver got {:?}",
            got.iter().map(|r| r.body.to_string()).collect::<Vec<_>>()
        );

        // The dead letters: each forgery once, under its rule.
        let parked = dead_letters(&reader.js, want.len()).await?;
        ensure!(parked == want, "dead letters {parked:?}\nwant {want:?}");

        // Nothing refused is in the log: it still refolds to the stored rows.
        let blue = c.coordinator("blue")?;
        blue.stop().await?;
        let log = blue.dump_log().await?;
        let from_web01: Vec<&str> = log
            .iter()
            .filter(|e| e.host == "web-01")
            .map(|e| e.kind.as_str())
            .collect();
        ensure!(
            from_web01 == ["heartbeat", "heartbeat"],
            "web-01 in the log: {from_web01:?}"
        );
        let coordinator_kinds = [
            "leadership",
            "command_issued",
            "host_liveness",
            "alert_transition",
            "notification_sent",
        ];
        ensure!(
            log.iter()
                .filter(|e| coordinator_kinds.contains(&e.kind.as_str()))
                .all(|e| e.host == "blue" || e.host == "green"),
            "a coordinator-only event from elsewhere in the log"
        );
        ensure!(
            !log.iter().any(|e| e.kind == "host_liveness"),
            "a liveness verdict in the log"
        );
        let (report, _) = blue.rebuild(true).await?;
        ensure!(report.matches, "rebuild --verify: {report:?}");
        Ok(())
    })
    .await;
}

const WAIT: Duration = Duration::from_secs(60);
