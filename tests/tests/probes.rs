//! Health probes that judge real apps, end to end: a real nats-server, a coordinator, an
//! agent (the real binaries) probing servers this test runs on loopback — an HTTPS JSON
//! endpoint with a dev CA (rcgen) whose certificate has 5 days left, a slow endpoint and a
//! WebSocket server. What must show in `opsctl hosts` (JSON and table) and `opsctl alerts`:
//! with `ca_file` the check passes, without it it fails, with `insecure` it passes and says
//! so; a JSON field flipping fails the check, then it is ready again; crossing the latency
//! bound is `slow` (and `health_slow`) while the check stays ready; the certificate is
//! `cert_warn`; a WebSocket server that stops answering fails its check.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

#[path = "probes/apps.rs"]
mod apps;

use apps::{dev_pki, serve};

const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(500);

const COORDINATOR: &str = r#"
[alerts]
interval = "500ms"
missed_heartbeats = 20
silent_kinds = []

[alerts.rules.health_failed]
for = "0s"
resolve_after = "1s"

[alerts.rules.health_slow]
for = "0s"
resolve_after = "1s"
"#;

/// A WebSocket server answering pings while `answering`; otherwise it completes the
/// handshake and reads nothing (so pings go unanswered).
async fn ws_server(answering: Arc<AtomicBool>) -> Result<u16> {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = tcp.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tcp.accept().await {
            let answering = answering.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                if !answering.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                while let Some(Ok(msg)) = ws.next().await {
                    if let Message::Text(t) = msg {
                        let _ = ws.send(Message::Text(t)).await;
                    }
                }
            });
        }
    });
    Ok(port)
}

struct Apps {
    ready: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    answering: Arc<AtomicBool>,
    modules: String,
}

async fn start_apps(dir: &Path) -> Result<Apps> {
    let (ca, cert, key) = dev_pki(dir)?;
    let ready = Arc::new(AtomicBool::new(true));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let answering = Arc::new(AtomicBool::new(true));
    let flag = ready.clone();
    let https = serve(
        axum::Router::new().route(
            "/health",
            get(move || {
                let up = flag.load(Ordering::SeqCst);
                async move {
                    axum::Json(serde_json::json!({
                        "telegram": { "status": if up { "ready" } else { "reconnecting" } },
                        "queue": { "depth": 3 }
                    }))
                }
            }),
        ),
        Some((&cert, &key)),
    )
    .await?;
    let delay = delay_ms.clone();
    let slow = serve(
        axum::Router::new().route(
            "/slow",
            get(move || {
                let ms = delay.load(Ordering::SeqCst);
                async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "ok"
                }
            }),
        ),
        None,
    )
    .await?;
    let ws = ws_server(answering.clone()).await?;
    let (ca, cert) = (ca.display(), cert.display());
    let modules = format!(
        r#"
[[modules]]
type = "health"
interval = "2s"

[[modules.probes]]
name = "router"
type = "http"
url = "https://localhost:{https}/health"
ca_file = "{ca}"
json = [{{ pointer = "/telegram/status", equals = "ready" }}, {{ pointer = "/queue/depth", lt = 100 }}]
warn_days = 10
crit_days = 3
failed_after = 1

[[modules.probes]]
name = "untrusted"
type = "http"
url = "https://localhost:{https}/health"
failed_after = 1

[[modules.probes]]
name = "dev"
type = "http"
url = "https://127.0.0.1:{https}/health"
insecure = true

[[modules.probes]]
name = "slow"
type = "http"
url = "http://127.0.0.1:{slow}/slow"
latency_p95 = "500ms"
latency_window = 3

[[modules.probes]]
name = "tls"
type = "cert"
path = "{cert}"
warn_days = 10
crit_days = 3

[[modules.probes]]
name = "dash"
type = "websocket"
url = "ws://127.0.0.1:{ws}/ws"
failed_after = 1
"#
    );
    Ok(Apps {
        ready,
        delay_ms,
        answering,
        modules,
    })
}

/// web-01's row of `opsctl hosts --output json`.
async fn host_row(c: &Cluster) -> Result<Value> {
    let reply: Value = c.opsctl.json(&["hosts", "--host", "web-01"]).await?;
    reply["hosts"]
        .as_array()
        .and_then(|h| h.first())
        .cloned()
        .context("web-01 not listed yet")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `check:condition` of every check condition of a host row.
fn conditions(row: &Value) -> Vec<String> {
    row["check_conditions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    format!(
                        "{}:{}",
                        c["check"].as_str().unwrap_or(""),
                        c["condition"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Firing alert keys.
async fn firing(c: &Cluster) -> Result<Vec<String>> {
    let reply: Value = c.opsctl.json(&["alerts", "--state", "firing"]).await?;
    Ok(reply["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["key"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Waits until web-01's row and the firing alerts satisfy `ok`.
async fn wait_for(
    c: &Cluster,
    what: &str,
    ok: impl Fn(&[String], &[String], &[String]) -> bool,
) -> Result<()> {
    wait_until(what, WAIT, POLL, async || {
        let row = host_row(c).await?;
        let (unhealthy, conds) = (strings(&row["unhealthy"]), conditions(&row));
        let alerts = firing(c).await?;
        println!("unhealthy {unhealthy:?} conditions {conds:?} firing {alerts:?}");
        Ok(ok(&unhealthy, &conds, &alerts).then_some(()))
    })
    .await
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_judge_https_json_latency_certificates_and_websockets() {
    Cluster::run("probes", async |c: &mut Cluster| {
        let apps = start_apps(c.dir()).await?;
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(COORDINATOR))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_secs(1))
                .modules_toml(&apps.modules),
        )?;

        // ca_file passes, the system roots refuse the dev CA, insecure passes; the
        // certificate's 5 days left are cert_warn (warn 10, crit 3) for the file and the URL.
        wait_for(c, "the first verdicts", |unhealthy, conds, alerts| {
            unhealthy == ["untrusted:failed"]
                && has(conds, "router:cert_warn")
                && has(conds, "tls:cert_warn")
                && has(alerts, "health_failed/web-01/untrusted")
                && has(alerts, "cert_warn/web-01/tls")
                && has(alerts, "cert_warn/web-01/router")
        })
        .await?;
        let events = c
            .opsctl
            .run(&[
                "--output", "json", "events", "--host", "web-01", "--kind", "health",
            ])
            .await?
            .ok()?;
        let insecure_said = events
            .stdout
            .lines()
            .any(|l| l.contains("\"dev\"") && l.contains("insecure: certificate not verified"));
        anyhow::ensure!(
            insecure_said,
            "the dev check's detail says insecure: {}",
            events.stdout
        );
        let table = c.opsctl.run(&["hosts"]).await?.ok()?;
        anyhow::ensure!(
            table
                .stdout
                .contains("tls:cert_warn (certificate expires in 5 day(s))"),
            "opsctl hosts shows the certificate: {}",
            table.stdout
        );

        // The JSON field flips: the router check fails, then is ready again.
        apps.ready.store(false, Ordering::SeqCst);
        wait_for(
            c,
            "router failed on its JSON field",
            |unhealthy, _, alerts| {
                has(unhealthy, "router:failed") && has(alerts, "health_failed/web-01/router")
            },
        )
        .await?;
        let row = host_row(c).await?;
        println!("{row}");
        apps.ready.store(true, Ordering::SeqCst);
        wait_for(c, "router ready again", |unhealthy, _, alerts| {
            !unhealthy.iter().any(|u| u.starts_with("router:"))
                && !has(alerts, "health_failed/web-01/router")
        })
        .await?;

        // The slow endpoint crosses the bound: slow, and health_slow, while it stays ready.
        apps.delay_ms.store(1200, Ordering::SeqCst);
        wait_for(c, "slow and its alert", |unhealthy, conds, alerts| {
            has(conds, "slow:slow")
                && has(alerts, "health_slow/web-01/slow")
                && !unhealthy.iter().any(|u| u.starts_with("slow:"))
        })
        .await?;
        let table = c.opsctl.run(&["hosts"]).await?.ok()?;
        anyhow::ensure!(
            table.stdout.contains("slow:slow (p95 "),
            "opsctl hosts shows slow: {}",
            table.stdout
        );
        apps.delay_ms.store(0, Ordering::SeqCst);
        wait_for(c, "fast again", |_, conds, alerts| {
            !has(conds, "slow:slow") && !has(alerts, "health_slow/web-01/slow")
        })
        .await?;

        // The WebSocket server stops answering: its check fails.
        wait_for(c, "dash ready", |unhealthy, _, _| {
            !unhealthy.iter().any(|u| u.starts_with("dash:"))
        })
        .await?;
        apps.answering.store(false, Ordering::SeqCst);
        wait_for(c, "dash failed", |unhealthy, _, alerts| {
            has(unhealthy, "dash:failed") && has(alerts, "health_failed/web-01/dash")
        })
        .await?;
        Ok(())
    })
    .await;
}
