//! Fleet metrics for Prometheus (docs/metrics.md), against a real cluster (nats-server, two
//! coordinators with `[http]`, three agents with disks): both coordinators' `/metrics` and an
//! agent's pass `promtool check metrics` with no problem printed, and carry the real figures
//! (three hosts up, each disk's used ratio as statvfs sees it, exactly one coordinator active,
//! its epoch > 0, no ingest lag once caught up; web-01's health check of an endpoint slower
//! than its latency bound `slow` with its p95 and bound, its certificate check's expiry:
//! `probe_figures.rs`); one with `[http] metrics_token_file` refuses a scrape without the token
//! or with another (401). The shipped `deploy/prometheus/` passes
//! `promtool check rules`, `promtool test rules` and `promtool check config`, the golden
//! render of every metric family passes `promtool check metrics`, and every metric the rules
//! and the Grafana dashboard name is one opsfleet exports. A real Prometheus server on the
//! shipped scrape config (`server.rs`) scrapes both coordinators (blue with its token) and the
//! agent, sees the fleet's figures, and loads the shipped rules healthy.
//!
//! `promtool` and `prometheus` are Debian's `prometheus` package (`scripts/test.sh` installs
//! it); without them the test fails saying so.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use opsfleet_tests::coordinator::http_get;
use opsfleet_tests::secure::repo_root;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "probes/apps.rs"]
mod apps;
#[path = "prometheus/probe_figures.rs"]
mod probe_figures;
#[path = "prometheus/server.rs"]
mod server;
#[path = "prometheus/tools.rs"]
mod tools;

use probe_figures::{probe_figures, probed_apps};
use tools::{exported_names, find_tool, promtool, referenced_names, run_promtool};

const HOSTS: [&str; 3] = ["db-01", "web-01", "web-02"];
const COORDINATORS: [&str; 2] = ["blue", "green"];
/// blue's `[http] metrics_token_file` holds it.
const TOKEN: &str = "scrape-s3cret";

/// What Prometheus made of both coordinators and the agent: every target up, the fleet's
/// figures from both coordinators, one active, the rules loaded and healthy, and neither
/// "no active coordinator" nor "coordinator down" pending or firing.
async fn scraped_by_prometheus(server: &server::Server) -> Result<()> {
    let up = wait_until(
        "Prometheus to scrape both coordinators and the agent",
        Duration::from_secs(90),
        Duration::from_secs(1),
        async || {
            let Ok(up) = server.query("up").await else {
                return Ok(None);
            };
            Ok((up.len() == 3 && up.iter().all(|(_, v)| *v == 1.0)).then_some(up))
        },
    )
    .await?;
    let jobs: BTreeSet<&str> = up.iter().filter_map(|(m, _)| m["job"].as_str()).collect();
    ensure!(
        jobs == BTreeSet::from(["opsfleet-agents", "opsfleet-coordinators"]),
        "jobs scraped: {jobs:?}"
    );
    let hosts = server.query("opsfleet_hosts{state=\"up\"}").await?;
    ensure!(
        hosts.len() == 2 && hosts.iter().all(|(_, v)| *v == 3.0),
        "opsfleet_hosts{{state=\"up\"}} in Prometheus: {hosts:?}"
    );
    let active = server.query("sum(opsfleet_coordinator_active)").await?;
    ensure!(
        active.first().map(|a| a.1) == Some(1.0),
        "sum(opsfleet_coordinator_active): {active:?}"
    );
    let disks = server.query("count(opsfleet_disk_used_ratio)").await?;
    ensure!(
        disks.first().is_some_and(|d| d.1 >= 6.0),
        "disk ratios in Prometheus: {disks:?}"
    );
    // An evaluation before the first scrape sees no coordinator (pending, `for: 1m` keeps it
    // from firing); once both are scraped, the next one clears it.
    let quiet = ["OpsfleetNoActiveCoordinator", "OpsfleetCoordinatorDown"];
    wait_until(
        "Prometheus to load the shipped rules, healthy, with no coordinator alert",
        Duration::from_secs(60),
        Duration::from_secs(1),
        async || {
            let rules = server.rules().await?;
            let loud: Vec<_> = (rules.iter())
                .filter(|r| quiet.contains(&r.0.as_str()) && r.2 != "inactive")
                .collect();
            let healthy = rules.len() == 10 && rules.iter().all(|r| r.1 == "ok");
            if healthy && loud.is_empty() {
                return Ok(Some(()));
            }
            Err(anyhow!("rules: {rules:?}"))
        },
    )
    .await?;
    Ok(())
}

/// The value of the sample written exactly as `series` (name and labels), if present.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Used ratio of the file system holding `path`, as the disk module computes it.
fn used_ratio(path: &Path) -> Result<f64> {
    let st = nix::sys::statvfs::statvfs(path)?;
    #[allow(clippy::unnecessary_cast)] // field widths differ between platforms
    let (frag, blocks, free, avail) = (
        st.fragment_size() as u64,
        st.blocks() as u64,
        st.blocks_free() as u64,
        st.blocks_available() as u64,
    );
    let used = blocks.saturating_sub(free) * frag;
    Ok(used as f64 / (used + avail * frag) as f64)
}

/// `GET /metrics` with `Authorization: Bearer <token>` when given: the status and the body.
async fn get_metrics(addr: SocketAddr, token: Option<&str>) -> Result<(u16, String)> {
    let Some(token) = token else {
        return http_get(addr, "/metrics").await;
    };
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("GET /metrics timed out")??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Ok((
        code.context("not an HTTP answer")?,
        body.unwrap_or_default(),
    ))
}

/// The token a coordinator's `/metrics` asks for (blue's), if any.
fn token_of(name: &str) -> Option<&'static str> {
    (name == "blue").then_some(TOKEN)
}

async fn metrics_of(addr: SocketAddr, token: Option<&str>) -> Result<String> {
    let (code, body) = get_metrics(addr, token).await?;
    ensure!(code == 200, "GET http://{addr}/metrics: {code}\n{body}");
    Ok(body)
}

/// The agent's `[http]` address, from its log.
fn agent_addr(log: &str) -> Option<SocketAddr> {
    let line = log.lines().find(|l| l.contains("http endpoint bound"))?;
    line.split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_and_agents_export_the_fleet_to_prometheus() {
    Cluster::run("prometheus", async |c: &mut Cluster| {
        promtool()?;
        // blue asks for a bearer token on /metrics, green is open.
        let token_file = c.dir().join("metrics.token");
        std::fs::write(&token_file, format!("{TOKEN}\n"))?;
        let http_with_token = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nmetrics_token_file = \"{}\"\n",
            token_file.display()
        );
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(&http_with_token))?;
        c.add_coordinator(CoordinatorSpec::new("green").http())?;
        let watched = c.dir().to_path_buf();
        for host in HOSTS {
            let mut spec = AgentSpec::new(host)
                .heartbeat(Duration::from_millis(500))
                .disk(Duration::from_secs(1), vec![watched.clone()]);
            if host == "web-01" {
                let health = probed_apps(c.dir()).await?;
                spec = spec.modules_toml(&format!("\n[http]\nlisten = \"127.0.0.1:0\"\n{health}"));
            }
            c.add_agent(spec)?;
        }

        // Both coordinators: three hosts up, a disk reading each, a stream reading, and
        // (between them) exactly one active.
        let mut bodies = Vec::new();
        for name in COORDINATORS {
            let coordinator = c.coordinator(name)?;
            let body = wait_until(
                &format!("{name}'s /metrics to show three hosts up with disks and no lag"),
                Duration::from_secs(60),
                Duration::from_millis(500),
                async || {
                    let Some(addr) = coordinator.http_addr() else {
                        return Ok(None);
                    };
                    let body = metrics_of(addr, token_of(name)).await?;
                    let up = value(&body, "opsfleet_hosts{state=\"up\"}");
                    let disks = body
                        .lines()
                        .filter(|l| l.starts_with("opsfleet_disk_used_ratio{"))
                        .count();
                    let lag = value(&body, "opsfleet_ingest_lag_messages");
                    Ok(
                        (up == Some(3.0) && disks >= 3 && lag.is_some_and(|l| l < 50.0))
                            .then_some(body),
                    )
                },
            )
            .await?;
            bodies.push((name, body));
        }
        let active = wait_until(
            "exactly one coordinator to report itself active",
            Duration::from_secs(60),
            Duration::from_millis(500),
            async || {
                let mut active = Vec::new();
                for name in COORDINATORS {
                    let addr = (c.coordinator(name)?.http_addr()).context("no HTTP address")?;
                    let body = metrics_of(addr, token_of(name)).await?;
                    if value(&body, "opsfleet_coordinator_active") == Some(1.0) {
                        active.push((name, body));
                    }
                }
                Ok((active.len() == 1).then(|| active.remove(0)))
            },
        )
        .await?;
        let epoch = value(&active.1, "opsfleet_coordinator_epoch").unwrap_or(0.0);
        ensure!(epoch > 0.0, "{} is active with epoch {epoch}", active.0);
        let active_http = (c.coordinator(active.0)?.http_addr()).context("no HTTP address")?;
        let probes = probe_figures(active_http, active.0).await?;
        run_promtool(&["check", "metrics"], Some(&probes), true)
            .await
            .context("/metrics with probe figures")?;

        // blue refuses a scrape without its token, or with another.
        let blue = (c.coordinator("blue")?.http_addr()).context("blue has no HTTP address")?;
        for token in [None, Some("wrong")] {
            let (code, body) = get_metrics(blue, token).await?;
            ensure!(
                code == 401 && !body.contains("opsfleet_"),
                "blue's /metrics with token {token:?}: {code}\n{body}"
            );
        }

        let real = used_ratio(&watched)?;
        for (name, body) in &bodies {
            run_promtool(&["check", "metrics"], Some(body), true)
                .await
                .with_context(|| format!("{name}'s /metrics"))?;
            let info = format!(
                "opsfleet_coordinator_info{{coordinator=\"{name}\",color=\"{name}\",version=\""
            );
            ensure!(body.contains(&info), "{name}: no {info}…\n{body}");
            for host in HOSTS {
                let series = format!("opsfleet_host_state{{host=\"{host}\",state=\"up\"}}");
                ensure!(value(body, &series) == Some(1.0), "{name}: no {series}");
                let prefix = format!("opsfleet_disk_used_ratio{{host=\"{host}\",mount=\"");
                let ratio = body
                    .lines()
                    .find(|l| l.starts_with(&prefix))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .with_context(|| format!("{name}: no {prefix}…"))?;
                ensure!(
                    (ratio - real).abs() < 0.02,
                    "{name}: {host}'s disk used ratio {ratio}, statvfs says {real:.4}"
                );
                let age = format!("opsfleet_host_last_event_age_seconds{{host=\"{host}\"}}");
                let age = value(body, &age).with_context(|| format!("{name}: no {age}"))?;
                ensure!(
                    (0.0..30.0).contains(&age),
                    "{name}: {host} last event {age}s ago"
                );
            }
            let applied = value(body, "opsfleet_ingest_events_applied_total").unwrap_or(0.0);
            ensure!(applied > 0.0, "{name} applied no events:\n{body}");
            ensure!(
                value(body, "opsfleet_coordinator_store_healthy") == Some(1.0),
                "{name}: store unhealthy"
            );
        }

        // The agent's own /metrics.
        let (agent_http, agent_body) = {
            let agent = c.agent("web-01")?;
            let addr = wait_until(
                "web-01 to bind its HTTP endpoint",
                Duration::from_secs(60),
                Duration::from_millis(200),
                async || {
                    agent.proc_mut().check_running()?;
                    Ok(agent_addr(&agent.proc().log_since_start()))
                },
            )
            .await?;
            let body = wait_until(
                "web-01's /metrics to show its module runs",
                Duration::from_secs(60),
                Duration::from_millis(500),
                async || {
                    let body = metrics_of(addr, None).await?;
                    Ok(body
                        .contains("opsfleet_agent_publish_latency_seconds_bucket")
                        .then_some(body))
                },
            )
            .await?;
            (addr, body)
        };
        run_promtool(&["check", "metrics"], Some(&agent_body), true)
            .await
            .context("the agent's /metrics")?;

        // What is shipped: the rules, their tests, the scrape config, the golden render.
        run_promtool(
            &[
                "check",
                "rules",
                "deploy/prometheus/rules/opsfleet.rules.yml",
            ],
            None,
            false,
        )
        .await?;
        let tested = run_promtool(
            &[
                "test",
                "rules",
                "deploy/prometheus/tests/opsfleet.rules.test.yml",
            ],
            None,
            false,
        )
        .await?;
        ensure!(tested.contains("SUCCESS"), "promtool test rules:\n{tested}");
        run_promtool(
            &["check", "config", "deploy/prometheus/prometheus.yml"],
            None,
            false,
        )
        .await?;
        let golden =
            std::fs::read_to_string(repo_root().join("coordinator/src/metrics/golden.prom"))?;
        run_promtool(&["check", "metrics"], Some(&golden), true)
            .await
            .context("coordinator/src/metrics/golden.prom")?;

        // A real Prometheus on the shipped config scrapes them all (blue with its token) and
        // loads the shipped rules.
        let mut coordinator_http = Vec::new();
        for name in COORDINATORS {
            coordinator_http.push((c.coordinator(name)?.http_addr()).context("no HTTP address")?);
        }
        let server = server::Server::start(
            &find_tool("prometheus")?,
            &c.dir().join("prometheus"),
            &coordinator_http,
            &[agent_http],
            &token_file,
        )
        .await?;
        scraped_by_prometheus(&server)
            .await
            .with_context(|| format!("Prometheus' log:\n{}", server.log()))?;

        // Every metric the rules and the dashboard name exists.
        let mut known = exported_names(&golden);
        known.extend(exported_names(&agent_body));
        for (_, body) in &bodies {
            known.extend(exported_names(body));
        }
        let rules = std::fs::read_to_string(
            repo_root().join("deploy/prometheus/rules/opsfleet.rules.yml"),
        )?;
        let dashboard_path = repo_root().join("deploy/prometheus/grafana/opsfleet-fleet.json");
        let dashboard_text = std::fs::read_to_string(&dashboard_path)?;
        let dashboard: serde_json::Value =
            serde_json::from_str(&dashboard_text).context("the Grafana dashboard is not JSON")?;
        let variables = dashboard["templating"]["list"]
            .as_array()
            .ok_or_else(|| anyhow!("the dashboard has no variables"))?;
        ensure!(
            variables
                .iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "the dashboard has no Prometheus datasource variable"
        );
        let mut exprs = String::new();
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push_str(target["expr"].as_str().unwrap_or_default());
                exprs.push('\n');
            }
        }
        ensure!(!exprs.is_empty(), "the dashboard queries nothing");
        for (what, text) in [("rules", rules.as_str()), ("dashboard", exprs.as_str())] {
            let unknown: Vec<String> = referenced_names(text)
                .into_iter()
                .filter(|n| !known.contains(n))
                .collect();
            if !unknown.is_empty() {
                bail!("the {what} name metrics opsfleet does not export: {unknown:?}");
            }
        }
        Ok(())
    })
    .await;
}

/// Every family the agent exports, each recorded once (a live agent shows only those it has
/// recorded yet), passes `promtool check metrics` as the agent renders it.
#[tokio::test]
async fn every_agent_metric_passes_promtool() {
    use opsfleet_agent::telemetry;
    let handle = telemetry::install().expect("the first recorder of this test binary");
    telemetry::module_run("disk", Duration::from_millis(3), false);
    telemetry::publish_latency(Duration::from_millis(7));
    telemetry::events_dropped(2);
    telemetry::command("accepted");
    telemetry::outbox_depth(5);
    let body = handle.render();
    for family in [
        telemetry::OUTBOX_DEPTH,
        telemetry::PUBLISH_LATENCY,
        telemetry::MODULE_RUN,
        telemetry::MODULE_ERRORS,
        telemetry::EVENTS_DROPPED,
        telemetry::COMMANDS,
    ] {
        let header = format!("# TYPE {family} ");
        assert!(body.contains(&header), "no {header} in\n{body}");
    }
    if let Err(e) = run_promtool(&["check", "metrics"], Some(&body), true).await {
        panic!("{e:#}\n{body}");
    }
}
