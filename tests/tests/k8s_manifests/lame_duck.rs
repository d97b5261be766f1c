//! The Kubernetes NATS config for real: three servers from the `nats-config` config map (only
//! names, ports, paths and route URLs rendered for loopback, as `secure.rs` does for
//! cluster.conf) load their JetStream limits, and the StatefulSet's stop — the preStop
//! `nats-server --signal ldm=<pid>` followed at once by the kubelet's SIGTERM — keeps the server
//! up through the lame-duck grace period, moves a connected client to another node, and ends
//! within `terminationGracePeriodSeconds`.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use opsfleet_bus::{ConnectMode, NatsConfig, TlsConfig};
use opsfleet_tests::secure::{generate_secrets, loopback_routes, repo_root};
use opsfleet_tests::NatsServer;

use super::support::{named, rendered_docs};

const NAMES: [&str; 3] = ["nats-0", "nats-1", "nats-2"];

/// The pod's config and its termination grace period, from the rendered manifests.
fn shipped() -> Result<(String, u64, Vec<String>)> {
    let (_, docs) = rendered_docs()?;
    let conf = named(&docs, "ConfigMap", "nats-config")?["data"]["nats.conf"]
        .as_str()
        .context("nats.conf")?
        .to_owned();
    let pod = &named(&docs, "StatefulSet", "nats")?["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .context("grace")?;
    let pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .context("preStop")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    Ok((conf, grace, pre_stop))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_k8s_nats_config_loads_its_limits_and_stops_in_lame_duck() -> Result<()> {
    let (conf, grace, pre_stop) = shipped()?;
    let tmp = tempfile::tempdir()?;
    let etc = tmp.path().join("etc/nats");
    std::fs::create_dir_all(&etc)?;
    let secrets = etc.join("secrets");
    generate_secrets(&secrets)?;
    std::fs::copy(
        repo_root().join("deploy/nats/auth.conf"),
        etc.join("auth.conf"),
    )?;
    let (_, ports) = loopback_routes(&etc, &secrets, NAMES.len())?;
    let mut servers = Vec::new();
    for (name, port) in NAMES.iter().zip(&ports) {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let mut text = conf.clone();
        for (from, to) in [
            ("server_name: $SERVER_NAME", format!("server_name: {name}")),
            ("listen: 0.0.0.0:4222", "listen: 127.0.0.1:-1".to_owned()),
            ("http: 127.0.0.1:8222", "http: 127.0.0.1:-1".to_owned()),
            ("listen: 0.0.0.0:6222", format!("listen: 127.0.0.1:{port}")),
            (
                "include \"secrets/route.conf\"",
                "include \"route-test.conf\"".to_owned(),
            ),
            ("\"/etc/nats/", format!("\"{}/", etc.display())),
            (
                "store_dir: \"/data\"",
                format!("store_dir: \"{}\"", dir.join("data").display()),
            ),
        ] {
            ensure!(
                text.contains(from),
                "the k8s nats.conf no longer has {from:?}"
            );
            text = text.replace(from, &to);
        }
        let config = etc.join(format!("{name}.conf"));
        std::fs::write(&config, text)?;
        servers.push(NatsServer::start_with_config(&dir, &config).await?);
    }
    let log = servers[0].proc_mut().log_since_start();
    for want in ["Max Memory:      256.00 MB", "Max Storage:     8.00 GB"] {
        ensure!(log.contains(want), "nats-0 did not load {want:?}:\n{log}");
    }

    // A client (an agent's identity) on nats-0, knowing all three.
    let tls = secrets.join("tls");
    let cfg = NatsConfig {
        urls: servers.iter().map(NatsServer::url).collect(),
        nkey: Some(secrets.join("nkeys/web-01.nk")),
        inbox_prefix: Some("_INBOX.web-01".into()),
        tls: Some(TlsConfig {
            ca: Some(tls.join("ca.pem")),
            cert: Some(tls.join("agent.pem")),
            key: Some(tls.join("agent-key.pem")),
        }),
        ..Default::default()
    };
    let mut first = cfg.clone();
    first.urls.truncate(1);
    let client = opsfleet_bus::connect(&first, "lame-duck-probe", ConnectMode::FailFast).await?;
    ensure!(client.server_info().server_name == "nats-0");
    drop(client);
    let client = {
        // All three URLs, nats-0 first (async-nats shuffles unless told not to: retry until
        // it lands on nats-0).
        let mut landed = None;
        for _ in 0..20 {
            let c = opsfleet_bus::connect(&cfg, "lame-duck-client", ConnectMode::FailFast).await?;
            if c.server_info().server_name == "nats-0" {
                landed = Some(c);
                break;
            }
        }
        landed.context("never connected to nats-0")?
    };

    // The StatefulSet's stop: preStop, then SIGTERM right away.
    let pid = servers[0].proc_mut().pid().context("nats-0 pid")?;
    ensure!(
        pre_stop.len() == 3 && pre_stop[2] == "ldm=1",
        "preStop: {pre_stop:?}"
    );
    let start = Instant::now();
    let out = std::process::Command::new("nats-server")
        .args([pre_stop[1].as_str(), &format!("ldm={pid}")])
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // In Kubernetes the SIGTERM follows the preStop hook's exit; `nats-server --signal` exits
    // once it has sent its signal, not once the server acted on it. Give the server (on a
    // loaded machine) up to 10 s to say it entered lame duck mode before the SIGTERM; if its
    // log never says so, the SIGTERM goes anyway and the check below decides.
    let entered = Instant::now();
    while entered.elapsed() < Duration::from_secs(10)
        && !servers[0]
            .proc_mut()
            .log_since_start()
            .to_ascii_lowercase()
            .contains("lame duck")
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    servers[0].proc_mut().signal(Signal::SIGTERM)?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        servers[0].is_running(),
        "nats-0 died at SIGTERM instead of finishing lame duck"
    );
    let moved = loop {
        let now = client.server_info().server_name;
        if now != "nats-0" && client.connection_state() == async_nats::connection::State::Connected
        {
            break now;
        }
        if start.elapsed() > Duration::from_secs(grace) {
            bail!("the client was not moved off nats-0 within {grace} s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status = servers[0]
        .proc_mut()
        .wait_exit(Duration::from_secs(grace).saturating_sub(start.elapsed()))
        .await
        .context("nats-0 outlived terminationGracePeriodSeconds")?;
    let took = start.elapsed();
    eprintln!(
        "lame duck: client moved to {moved}, nats-0 exited ({status}) {:.1} s after preStop (grace {grace} s)",
        took.as_secs_f64()
    );
    ensure!(took >= Duration::from_secs(5) && took < Duration::from_secs(grace));
    Ok(())
}
