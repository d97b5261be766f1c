//! Negative tests of the coordinator's API (reply subjects, roles, unidentified commands, fingerprints).
//!
//! Against the shipped permission config: a reply subject that is not the requester's inbox
//! gets no answer (the leader lease stays intact), an operator's admin action on the operator
//! subject is refused naming the role, deadlines of 0 or beyond the cap are refused, a publish
//! NATS refuses is reported at once, and a config an agent announced under a fingerprint that
//! is not its own is never sent. On a plain server: unidentified commands and failovers are
//! refused unless the coordinator allows them, and then recorded as unverified.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use futures::StreamExt;
use opsfleet_proto::api::Role as ApiRole;
use opsfleet_proto::{pb, subjects};
use opsfleet_tests::secure::{Role, SecureNats};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use prost::Message;
use serde_json::{json, Value};

use super::Probe;

/// Ledger entries (`opsctl commands --output json`) as JSON values.
async fn ledger(opsctl: &Opsctl) -> Result<Vec<Value>> {
    let out = opsctl
        .run(&["--output", "json", "commands", "--limit", "1000"])
        .await?
        .ok()?;
    serde_json::from_str(out.stdout.trim()).context("commands JSON")
}

/// `ops.api.status` of `coordinator` as JSON (the refusal counters among it).
async fn status(opsctl: &Opsctl, coordinator: &str) -> Result<Value> {
    let out = opsctl
        .run(&["--output", "json", "status", "--coordinator", coordinator])
        .await?
        .ok()?;
    serde_json::from_str(out.stdout.trim()).context("status JSON")
}

/// Waits until `coordinator` is active and returns its epoch.
async fn active_epoch(opsctl: &Opsctl, coordinator: &str) -> Result<u64> {
    wait_until_default(&format!("{coordinator} to be active"), async || {
        let s = status(opsctl, coordinator).await?;
        Ok((s["responder"]["role"] == "active")
            .then(|| s["responder"]["epoch"].as_u64())
            .flatten())
    })
    .await
}

/// Waits until `coordinator` counted at least `n` refusals under `reason`.
async fn refused_at_least(opsctl: &Opsctl, coordinator: &str, reason: &str, n: u64) -> Result<()> {
    wait_until_default(
        &format!("{coordinator} to count {n} refusal(s) for {reason}"),
        async || {
            let s = status(opsctl, coordinator).await?;
            Ok((s["api_refused"][reason].as_u64().unwrap_or(0) >= n).then_some(()))
        },
    )
    .await
}

/// Runs opsctl, which must fail; returns its stderr.
async fn refused(opsctl: &Opsctl, args: &[&str]) -> Result<String> {
    let out = opsctl.run(args).await?;
    ensure!(
        !out.status.success(),
        "`{}` succeeded:\n{}",
        out.cmdline,
        out.stdout
    );
    Ok(out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_replies_roles_deadlines_and_forged_fingerprints_are_refused() {
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-permissions-api-")
        .tempdir()
        .expect("temp dir");
    let s = SecureNats::start(tmp.path())
        .await
        .expect("secure nats-server");
    let probe = async |id: &str, role| Probe::connect(&s, id, role).await.expect(id);
    let alice = probe("alice", Role::Operator).await;
    let bob = probe("bob", Role::Operator).await;
    let lease_reader = probe("green", Role::Coordinator).await;
    let db01 = probe("db-01", Role::Agent).await;
    let opsctl = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("alice", "alice"));
    let carol = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("carol", "carol"));
    let impostor = Opsctl::new(&s.url())
        .expect("opsctl")
        .with_args(s.opsctl_args("alice", "bob"));
    let (blue, web01) = (
        s.nats_toml("blue", Role::Coordinator),
        s.nats_toml("web-01", Role::Agent),
    );
    let SecureNats { server, .. } = s;
    let cluster = Cluster::with_server(tmp, server, opsctl);
    Cluster::run_with(cluster, "permissions-api", async |c: &mut Cluster| {
        c.add_coordinator(
            CoordinatorSpec::new("blue")
                .identified_only()
                .nats_toml(&blue),
        )?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(500))
                .nats_toml(&web01),
        )?;
        c.wait_hosts_at_least("blue", &BTreeMap::from([("web-01".to_owned(), 2)]))
            .await?;
        let epoch = active_epoch(&c.opsctl, "blue").await?;
        let commands_before = ledger(&c.opsctl).await?.len();

        // 1. A reply subject that is not the requester's inbox gets no answer: the lease is
        // not overwritten (every write of the key stays a lease record of blue's) and blue
        // stays active in the same term.
        let kv = lease_reader
            .js
            .get_key_value(subjects::LEADER_BUCKET)
            .await
            .context("the lease bucket")?;
        let mut lease_writes = kv.watch("leader").await.context("watch the lease")?;
        alice
            .client
            .publish_with_reply(subjects::API_STATUS, "$KV.ops_leader.leader", "{}".into())
            .await?;
        // ... and on an identified subject, the reply must go to that operator's inbox.
        let mut bobs_inbox = bob.client.subscribe("_INBOX.bob.>").await?;
        let noop = json!({"action": "noop", "hosts": ["web-01"], "deadline_ms": 60000,
                          "issued_by": "alice"});
        alice
            .client
            .publish_with_reply(
                subjects::api_command_as("alice", ApiRole::Operator),
                "_INBOX.bob.stolen",
                serde_json::to_vec(&noop)?.into(),
            )
            .await?;
        alice.client.flush().await?;
        refused_at_least(&c.opsctl, "blue", "foreign_reply", 2).await?;
        let watched_until = Instant::now() + Duration::from_secs(4);
        let mut writes = 0;
        while let Ok(Some(entry)) =
            tokio::time::timeout_at(watched_until.into(), lease_writes.next()).await
        {
            let entry = entry.map_err(|e| anyhow!("lease watch: {e}"))?;
            let record: Value = serde_json::from_slice(&entry.value).with_context(|| {
                format!(
                    "lease value is not JSON: {:?}",
                    String::from_utf8_lossy(&entry.value)
                )
            })?;
            ensure!(
                record["holder"] == "blue" && record.get("responder").is_none(),
                "the lease was overwritten: {record}"
            );
            writes += 1;
        }
        ensure!(writes > 0, "blue renewed its lease nowhere in 4 s");
        ensure!(
            active_epoch(&c.opsctl, "blue").await? == epoch,
            "blue lost its term"
        );
        ensure!(
            tokio::time::timeout(Duration::from_millis(500), bobs_inbox.next())
                .await
                .is_err(),
            "a reply reached bob's inbox"
        );
        ensure!(
            ledger(&c.opsctl).await?.len() == commands_before,
            "the request with bob's inbox as reply was acted on"
        );

        // 2. Roles come from the subject: alice's admin action sent in her operator role is
        // refused by the coordinator, naming the role needed (raw request and opsctl).
        let apply = json!({"action": "config_apply", "module": "heartbeat",
                           "hosts": ["web-01"], "deadline_ms": 60000, "issued_by": "alice",
                           "config_toml": "type = \"heartbeat\"\ninterval = \"1s\"\n"});
        let reply = alice
            .client
            .request(
                subjects::api_command_as("alice", ApiRole::Operator),
                serde_json::to_vec(&apply)?.into(),
            )
            .await
            .context("no answer to alice's config_apply as operator")?;
        let reply: Value = serde_json::from_slice(&reply.payload)?;
        ensure!(
            reply["error"] == "config_apply needs role admin; you (alice) acted as operator"
                && reply["needs_role"] == "admin",
            "reply: {reply}"
        );
        let file = c.dir().join("heartbeat.toml");
        std::fs::write(&file, "type = \"heartbeat\"\ninterval = \"1s\"\n")?;
        let file = file.display().to_string();
        let stderr = refused(
            &c.opsctl,
            &[
                "--role",
                "operator",
                "config",
                "apply",
                "heartbeat",
                "--file",
                &file,
                "--host",
                "web-01",
                "--no-wait",
            ],
        )
        .await?;
        ensure!(
            stderr.contains("config_apply needs role admin; you (alice) acted as operator"),
            "opsctl said: {stderr}"
        );
        refused_at_least(&c.opsctl, "blue", "role", 2).await?;

        // 3. Deadlines are required and capped (opsctl's default of 60s passes).
        let stderr = refused(
            &c.opsctl,
            &["noop", "--host", "web-01", "--deadline", "0s", "--no-wait"],
        )
        .await?;
        ensure!(stderr.contains("a deadline is required"), "{stderr}");
        let stderr = refused(
            &c.opsctl,
            &["noop", "--host", "web-01", "--deadline", "25h", "--no-wait"],
        )
        .await?;
        ensure!(
            stderr.contains("longer than this coordinator allows (1day"),
            "{stderr}"
        );

        // 4. A publish the NATS server refuses (bob's key acting as alice) is reported at once
        // with the role and identity, not as a timeout.
        let started = Instant::now();
        let stderr = refused(&impostor, &["noop", "--host", "web-01", "--no-wait"]).await?;
        ensure!(
            stderr.contains("NATS server refused")
                && stderr.contains("ops.api.as.alice.operator.command")
                && stderr.contains("noop needs role operator")
                && stderr.contains("operator alice")
                && !stderr.contains("no answer"),
            "{stderr}"
        );
        eprintln!("refused publish reported after {:?}", started.elapsed());
        ensure!(
            ledger(&c.opsctl).await?.len() == commands_before,
            "a refused request was acted on"
        );

        // 5. db-01 (a compromised agent, its own credentials) announces fingerprint F for a
        // command-probe config whose real fingerprint is not F. A rollback to F is refused
        // naming db-01, and nothing is sent to any host.
        let commands_stream = lease_reader
            .js
            .get_stream(subjects::COMMANDS_STREAM)
            .await?
            .info()
            .await?
            .state
            .messages;
        let forged = "ab".repeat(32);
        let evil = "type = \"health\"\nname = \"heartbeat\"\ninterval = \"1s\"\n\n[[probes]]\n\
                    name = \"pwn\"\ntype = \"command\"\nargv = [\"/bin/sh\", \"-c\", \"id\"]\n";
        let event = pb::Event {
            id: uuid::Uuid::now_v7().to_string(),
            host: "db-01".into(),
            seq: 1,
            time_unix_ms: 1,
            module: "heartbeat".into(),
            incarnation: uuid::Uuid::now_v7().to_string(),
            body: Some(pb::event::Body::ModuleState(pb::ModuleState {
                module: "heartbeat".into(),
                kind: "heartbeat".into(),
                state: pb::ModuleRunState::Running as i32,
                reason: "started".into(),
                config_fingerprint: forged.clone(),
                config_toml: evil.into(),
            })),
        };
        db01.js
            .publish(
                subjects::event_subject("db-01", "module_state"),
                event.encode_to_vec().into(),
            )
            .await?
            .await
            .context("db-01 cannot publish its own module_state")?;
        c.wait_hosts_at_least("blue", &BTreeMap::from([("db-01".to_owned(), 1)]))
            .await?;
        for to in [forged.as_str(), &forged[..12]] {
            let stderr = refused(
                &carol,
                &[
                    "config",
                    "rollback",
                    "heartbeat",
                    "--to",
                    to,
                    "--host",
                    "web-01",
                    "--no-wait",
                ],
            )
            .await?;
            ensure!(
                stderr.contains(&forged)
                    && stderr.contains("announced only by db-01")
                    && stderr.contains("not sent"),
                "rollback to {to}: {stderr}"
            );
        }
        let after = lease_reader
            .js
            .get_stream(subjects::COMMANDS_STREAM)
            .await?
            .info()
            .await?
            .state
            .messages;
        ensure!(
            after == commands_stream,
            "{} command(s) were sent",
            after - commands_stream
        );
        ensure!(
            ledger(&c.opsctl).await?.len() == commands_before,
            "a forged rollback reached the ledger"
        );

        // An admin's own actions go through, recorded with the role (carol is the admin).
        let out = carol
            .run(&[
                "--output",
                "json",
                "config",
                "apply",
                "heartbeat",
                "--file",
                &file,
                "--host",
                "web-01",
                "--wait",
                "60s",
            ])
            .await?
            .ok()?;
        let outcome: Value = serde_json::from_str(out.stdout.trim())?;
        let cmd = &outcome["commands"][0];
        ensure!(
            outcome["all_completed"] == true
                && cmd["issued_by"] == "carol"
                && cmd["issued_role"] == "admin",
            "carol's apply: {outcome}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_commands_and_failovers_need_allow_unidentified() {
    Cluster::run("permissions-unidentified", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").identified_only())?;
        c.add_agent(AgentSpec::new("web-01").heartbeat(Duration::from_millis(500)))?;
        c.wait_hosts_at_least("blue", &BTreeMap::from([("web-01".to_owned(), 2)]))
            .await?;
        active_epoch(&c.opsctl, "blue").await?;

        // Without --operator opsctl uses the plain subjects: refused, and nothing issued.
        let stderr = refused(&c.opsctl, &["noop", "--host", "web-01", "--no-wait"]).await?;
        ensure!(
            stderr.contains("plain ops.api.command is refused")
                && stderr.contains("allow_unidentified"),
            "{stderr}"
        );
        let stderr = refused(&c.opsctl, &["failover", "--wait", "5s"]).await?;
        ensure!(
            stderr.contains("plain ops.api.failover is refused"),
            "{stderr}"
        );
        refused_at_least(&c.opsctl, "blue", "unidentified", 2).await?;
        ensure!(
            ledger(&c.opsctl).await?.is_empty(),
            "a plain command was issued"
        );

        // An identified failover is recorded with who asked, in which role.
        let alice = c
            .opsctl
            .clone()
            .with_args(["--operator".into(), "alice".into()]);
        let out = alice
            .run(&["--output", "json", "failover", "--wait", "60s"])
            .await?
            .ok()?;
        let result: Value = serde_json::from_str(out.stdout.trim())?;
        let released = result["released_epoch"]
            .as_u64()
            .context("released_epoch")?;
        wait_until_default("the release requested by alice in the log", async || {
            let s = status(&c.opsctl, "blue").await?;
            let history = s["coordinators"][0]["history"].clone();
            Ok(history.as_array().and_then(|h| {
                h.iter()
                    .find(|step| {
                        step["epoch"].as_u64() == Some(released)
                            && step["reason"] == "released"
                            && step["requested_by"] == "alice"
                            && step["requested_role"] == "operator"
                    })
                    .map(|_| ())
            }))
        })
        .await?;

        // With `[api] allow_unidentified = true` the same plain command is issued, and its
        // issuer is recorded as unverified, without a role.
        c.coordinator("blue")?.stop().await?;
        let path = c.coordinator("blue")?.config_path.clone();
        let mut config = std::fs::read_to_string(&path)?;
        config.push_str("\n[api]\nallow_unidentified = true\n");
        std::fs::write(&path, config)?;
        c.coordinator("blue")?.restart()?;
        active_epoch(&c.opsctl, "blue").await?;
        c.opsctl
            .run(&["noop", "--host", "web-01", "--wait", "60s"])
            .await?
            .ok()?;
        let entries = ledger(&c.opsctl).await?;
        ensure!(entries.len() == 1, "ledger: {entries:?}");
        let by = entries[0]["issued_by"].as_str().unwrap_or_default();
        ensure!(
            by.ends_with(" (unverified)") && entries[0]["issued_role"] == "",
            "plain command recorded as {:?} in role {}",
            by,
            entries[0]["issued_role"]
        );
        let table = c.opsctl.run(&["audit"]).await?.ok()?.stdout;
        ensure!(table.contains("(unverified)"), "audit table:\n{table}");
        let out = c
            .opsctl
            .run(&["--output", "json", "failover", "--wait", "60s"])
            .await?
            .ok()?;
        let result: Value = serde_json::from_str(out.stdout.trim())?;
        let released = result["released_epoch"]
            .as_u64()
            .context("released_epoch")?;
        wait_until_default("the unverified release in the log", async || {
            let s = status(&c.opsctl, "blue").await?;
            let history = s["coordinators"][0]["history"].clone();
            Ok(history.as_array().and_then(|h| {
                h.iter()
                    .find(|step| {
                        step["epoch"].as_u64() == Some(released)
                            && step["requested_by"]
                                .as_str()
                                .is_some_and(|by| by.ends_with(" (unverified)"))
                            && step.get("requested_role").is_none()
                    })
                    .map(|_| ())
            }))
        })
        .await?;
        Ok(())
    })
    .await;
}
