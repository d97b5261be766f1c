//! Negative tests of the NATS layer itself, against real nats-servers started from the shipped
//! configs: the route port takes only route certificates with the route password, monitoring
//! listens on loopback, people cannot touch the coordinators' durable consumers, each role is
//! refused what it lacks, and a coordinator publishes only in its own space.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use async_nats::jetstream::consumer;
use opsfleet_bus::TopologyConfig;
use opsfleet_proto::api::Role as ApiRole;
use opsfleet_proto::subjects;
use opsfleet_tests::nats::NatsServer;
use opsfleet_tests::secure::{Role, SecureClusterNodes, SecureNats};
use opsfleet_tests::wait_until_default;

use super::Probe;

/// The monitoring listener a server logged: `Starting http monitor on <addr>:<port>`.
fn monitor_addr(log: &str) -> Option<String> {
    log.lines()
        .find_map(|l| l.split("Starting http monitor on ").nth(1))
        .map(|a| a.trim().to_owned())
}

/// `GET <path>` on the monitoring port, body as JSON.
fn monitor_get(addr: &str, path: &str) -> Result<serde_json::Value> {
    let mut conn = std::net::TcpStream::connect(addr).with_context(|| format!("monitor {addr}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    serde_json::from_str(body).with_context(|| format!("{path} is not JSON: {body}"))
}

/// Names of the servers routed to the node whose monitor is at `addr`.
fn routed_names(addr: &str) -> Result<Vec<String>> {
    let routez = monitor_get(addr, "/routez")?;
    Ok(routez["routes"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["remote_name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// A server that tries to join the cluster as a route with the given route TLS and URL.
async fn rogue(
    dir: &std::path::Path,
    name: &str,
    cluster_tls: &str,
    route_url: &str,
) -> Result<NatsServer> {
    std::fs::create_dir_all(dir)?;
    let config = dir.join(format!("{name}.conf"));
    std::fs::write(
        &config,
        format!(
            "server_name: {name}\nlisten: 127.0.0.1:-1\njetstream {{ store_dir: \"{}\" }}\n\
             cluster {{\n  name: opsfleet\n  listen: 127.0.0.1:-1\n  routes: [ \"{route_url}\" ]\n  \
             tls {{ {cluster_tls} verify: true, timeout: 5 }}\n}}\n",
            dir.join("data").display()
        ),
    )?;
    NatsServer::start_with_config(dir, &config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_port_takes_only_route_certificates_with_the_route_password() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut c = SecureClusterNodes::start(tmp.path(), &["nats-1", "nats-2"]).await?;
    let log = c.nodes[0].proc_mut().log_since_start();
    let monitor = monitor_addr(&log).context("nats-1 logged no monitor address")?;
    ensure!(
        monitor.starts_with("127.0.0.1:"),
        "monitoring listens on {monitor}, not loopback"
    );
    // The two real nodes route to each other (positive control).
    wait_until_default("nats-1 routed to nats-2", async || {
        Ok(routed_names(&monitor)?
            .iter()
            .any(|n| n == "nats-2")
            .then_some(()))
    })
    .await?;

    let tls = c.secrets.join("tls");
    let file = |f: &str| tls.join(f).display().to_string();
    let target = c.route_ports[0];
    let with_password = format!("nats-route://route:{}@127.0.0.1:{target}", c.route_password);
    // 1. An agent's client certificate, even with the right password: the route port checks
    //    certificates against the server CA, which never signs client certificates.
    let agent_tls = format!(
        "cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\",",
        file("agent.pem"),
        file("agent-key.pem"),
        file("ca.pem")
    );
    let mut r1 = rogue(
        &tmp.path().join("rogue-cert"),
        "rogue-cert",
        &agent_tls,
        &with_password,
    )
    .await?;
    // 2. A real route certificate without the route password.
    let route_tls = format!(
        "cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\",",
        file("route.pem"),
        file("route-key.pem"),
        file("ca.pem")
    );
    let no_password = format!("nats-route://127.0.0.1:{target}");
    let mut r2 = rogue(
        &tmp.path().join("rogue-pw"),
        "rogue-pw",
        &route_tls,
        &no_password,
    )
    .await?;

    // Both keep trying (a route retries every second); nats-1 must log each refusal and
    // never list either as a route.
    wait_until_default("nats-1 refusing both rogue routes", async || {
        let log = c.nodes[0].proc_mut().log_since_start();
        let tls_refused = log.lines().any(|l| {
            let l = l.to_lowercase();
            l.contains("tls") && (l.contains("handshake") || l.contains("certificate"))
        });
        let auth_refused = log.lines().any(|l| l.contains("authentication error"));
        Ok((tls_refused && auth_refused).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let names = routed_names(&monitor)?;
    ensure!(
        !names.iter().any(|n| n.starts_with("rogue")),
        "a rogue server became a route of nats-1: {names:?}"
    );
    ensure!(names.iter().any(|n| n == "nats-2"), "nats-2 lost its route");
    r1.stop().await?;
    r2.stop().await?;
    for n in &mut c.nodes {
        n.stop().await?;
    }
    Ok(())
}

#[test]
fn every_shipped_server_config_serves_monitoring_on_loopback_only() -> Result<()> {
    let root = opsfleet_tests::secure::repo_root();
    for file in [
        "deploy/nats/single.conf",
        "deploy/nats/cluster.conf",
        "deploy/k8s/nats.yaml",
    ] {
        let text = std::fs::read_to_string(root.join(file))?;
        let listens: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("http:") || l.starts_with("http_port:"))
            .collect();
        ensure!(!listens.is_empty(), "{file} has no monitoring listener");
        for l in listens {
            ensure!(
                l.contains("127.0.0.1:"),
                "{file}: monitoring is not on loopback: {l}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_cannot_touch_the_coordinators_durable_consumers() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    opsfleet_bus::ensure_topology(&blue.js, &TopologyConfig::default()).await?;
    let events = blue.js.get_stream(subjects::EVENTS_STREAM).await?;
    let durable = subjects::coordinator_consumer("blue");
    events
        .create_consumer(consumer::pull::Config {
            durable_name: Some(durable.clone()),
            description: Some("opsfleet coordinator blue".into()),
            ack_policy: consumer::AckPolicy::All,
            ..Default::default()
        })
        .await
        .context("blue cannot create its own durable consumer")?;

    for who in ["alice", "carol", "vera"] {
        let role = Role::Operator;
        let p = Probe::connect(&s, who, role).await?;
        for verb in ["DELETE", "MSG.NEXT", "CREATE", "INFO"] {
            let subject = format!("$JS.API.CONSUMER.{verb}.OPS_EVENTS.{durable}");
            p.client.publish(subject.clone(), "{}".into()).await?;
            p.expect_violation("publish", &subject).await?;
        }
        let filtered = format!("$JS.API.CONSUMER.CREATE.OPS_EVENTS.{durable}.ops.evt.>");
        p.client.publish(filtered.clone(), "{}".into()).await?;
        p.expect_violation("publish", &filtered).await?;
        // The unnamed create subject with the durable's name in the body: refused by the
        // permissions (no reply), and the coordinator's consumer stays as it was.
        let body = serde_json::json!({
            "stream_name": subjects::EVENTS_STREAM,
            "config": {
                "durable_name": durable,
                "name": durable,
                "deliver_policy": "new",
                "ack_policy": "none",
                "description": format!("hijacked by {who}"),
            }
        });
        let reply = p
            .client
            .request(
                "$JS.API.CONSUMER.CREATE.OPS_EVENTS",
                serde_json::to_vec(&body)?.into(),
            )
            .await;
        if let Ok(msg) = reply {
            let v: serde_json::Value = serde_json::from_slice(&msg.payload)?;
            ensure!(
                v.get("error").is_some(),
                "{who} created or updated {durable} through the unnamed subject: {v}"
            );
        }
    }
    let info = events
        .consumer_info(&durable)
        .await
        .map_err(|e| anyhow!("coord-blue is gone: {e}"))?;
    ensure!(
        info.config.description.as_deref() == Some("opsfleet coordinator blue")
            && info.config.ack_policy == consumer::AckPolicy::All,
        "coord-blue was changed: {:?}",
        info.config
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_refused_by_the_server_what_it_lacks() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    opsfleet_bus::ensure_topology(&blue.js, &TopologyConfig::default()).await?;

    let vera = Probe::connect(&s, "vera", Role::Operator).await?;
    let alice = Probe::connect(&s, "alice", Role::Operator).await?;
    let carol = Probe::connect(&s, "carol", Role::Operator).await?;
    let refused: [(&Probe, String); 8] = [
        (&vera, subjects::api_command_as("vera", ApiRole::Operator)),
        (&vera, subjects::api_command_as("vera", ApiRole::Admin)),
        (&vera, subjects::api_failover_as("vera", ApiRole::Operator)),
        (&vera, subjects::API_FAILOVER.to_owned()),
        (&alice, subjects::api_command_as("alice", ApiRole::Admin)),
        (&alice, subjects::API_COMMAND.to_owned()),
        (&carol, subjects::api_command_as("alice", ApiRole::Admin)),
        (&carol, subjects::API_FAILOVER.to_owned()),
    ];
    for (p, subject) in &refused {
        p.client.publish(subject.clone(), "{}".into()).await?;
        p.expect_violation("publish", subject).await?;
    }
    // What each role holds goes through (no violation for these subjects).
    let allowed: [(&Probe, String); 5] = [
        (&vera, subjects::API_STATUS.to_owned()),
        (&vera, subjects::API_ALERTS.to_owned()),
        (&alice, subjects::api_command_as("alice", ApiRole::Operator)),
        (
            &alice,
            subjects::api_failover_as("alice", ApiRole::Operator),
        ),
        (&carol, subjects::api_command_as("carol", ApiRole::Admin)),
    ];
    for (p, subject) in &allowed {
        p.client.publish(subject.clone(), "{}".into()).await?;
        let _ = p.client.flush().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (p, subject) in &allowed {
        let errors = p.errors.lock().map_err(|_| anyhow!("poisoned"))?;
        if let Some(e) = errors.iter().find(|e| e.contains(subject.as_str())) {
            bail!("{subject} was refused: {e}");
        }
    }
    // A viewer reads events through an ephemeral consumer named in the subject.
    vera.js
        .get_stream(subjects::EVENTS_STREAM)
        .await?
        .create_consumer(consumer::pull::OrderedConfig {
            name: Some("opsctl-vera".into()),
            ..Default::default()
        })
        .await
        .context("vera cannot read events")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_publishes_only_in_its_own_space() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let blue = Probe::connect(&s, "blue", Role::Coordinator).await?;
    opsfleet_bus::ensure_topology(&blue.js, &TopologyConfig::default()).await?;
    for subject in [
        subjects::coordinator_event_subject("green", "leadership"),
        subjects::event_subject("web-01", "heartbeat"),
        subjects::event_subject("blue", "heartbeat"),
        "$JS.API.CONSUMER.DELETE.OPS_EVENTS.coord-green".to_owned(),
        "$JS.API.STREAM.DELETE.OPS_EVENTS".to_owned(),
        "$JS.API.STREAM.PURGE.OPS_EVENTS".to_owned(),
        "$JS.ACK.OPS_EVENTS.coord-green.1.1.1.1.1".to_owned(),
    ] {
        blue.client.publish(subject.clone(), "{}".into()).await?;
        blue.expect_violation("publish", &subject).await?;
    }
    Ok(())
}

/// `ops.api.configs` (module configs, `opsctl config show|history|diff`) is a read verb for
/// people from viewer up; an agent may not read other hosts' configs through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_configs_are_read_by_people_not_by_agents() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = SecureNats::start(tmp.path()).await?;
    let web01 = Probe::connect(&s, "web-01", Role::Agent).await?;
    let configs = subjects::API_CONFIGS.to_owned();
    for subject in [configs.clone(), format!("{configs}.blue")] {
        web01.client.publish(subject.clone(), "{}".into()).await?;
        web01.expect_violation("publish", &subject).await?;
    }
    let vera = Probe::connect(&s, "vera", Role::Operator).await?;
    vera.client.publish(configs.clone(), "{}".into()).await?;
    vera.client.flush().await?;
    // A refusal would be reported as soon as the server read the publish; a ping round trip
    // later it has been.
    web01.client.flush().await?;
    vera.client.flush().await?;
    let errors = vera.errors.lock().map_err(|_| anyhow!("poisoned"))?;
    ensure!(
        !errors.iter().any(|e| e.contains(configs.as_str())),
        "vera was refused {configs}: {errors:?}"
    );
    Ok(())
}
