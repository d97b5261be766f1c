//! web-01's health checks whose figures `/metrics` must carry: an endpoint slower than its
//! latency bound and a certificate file, and the check of those figures in a scrape.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use opsfleet_tests::wait_until;

use super::{apps, metrics_of, token_of, value};

/// How long web-01's `slow` endpoint takes to answer; its check's bound is 200 ms.
const SLOW_MS: u64 = 600;

/// web-01's health module: `slow`, an endpoint answering in `SLOW_MS` under a 200 ms
/// `latency_p95` bound, and `tls`, a certificate file 5 days and 2 hours from expiry.
pub async fn probed_apps(dir: &Path) -> Result<String> {
    let (_, cert, _) = apps::dev_pki(dir)?;
    let slow = axum::Router::new().route(
        "/slow",
        axum::routing::get(async || {
            tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
            "ok"
        }),
    );
    let port = apps::serve(slow, None).await?;
    Ok(format!(
        r#"
[[modules]]
type = "health"
interval = "2s"

[[modules.probes]]
name = "slow"
type = "http"
url = "http://127.0.0.1:{port}/slow"
latency_p95 = "200ms"
latency_window = 3

[[modules.probes]]
name = "tls"
type = "cert"
path = "{}"
"#,
        cert.display()
    ))
}

/// Waits until the active coordinator's `/metrics` shows web-01's slow check slow with its
/// p95 and bound, and its certificate check's expiry; returns that body.
pub async fn probe_figures(addr: SocketAddr, active: &str) -> Result<String> {
    let series = |family: &str, check: &str| {
        format!("opsfleet_health_check_{family}{{host=\"web-01\",check=\"{check}\"}}")
    };
    let body = wait_until(
        "the active coordinator's /metrics to show web-01's slow check and certificate",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let body = metrics_of(addr, token_of(active)).await?;
            let slow = value(&body, &series("slow", "slow"));
            let days = value(&body, &series("cert_expiry_timestamp_seconds", "tls"));
            Ok((slow == Some(1.0) && days.is_some()).then_some(body))
        },
    )
    .await?;
    let p95 = value(&body, &series("latency_p95_seconds", "slow")).unwrap_or(0.0);
    let floor = SLOW_MS as f64 / 1000.0;
    ensure!(
        (floor..floor + 2.0).contains(&p95),
        "web-01's slow check p95 {p95}s, its endpoint takes {floor}s"
    );
    let bound = value(&body, &series("latency_bound_seconds", "slow"));
    ensure!(bound == Some(0.2), "web-01's slow check bound {bound:?}");
    // 5 days and 2 hours at issue, a minute or two before this scrape.
    let expiry = value(&body, &series("cert_expiry_timestamp_seconds", "tls")).unwrap_or(0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let days = (expiry - now.as_secs_f64()) / 86_400.0;
    ensure!(
        (5.0..5.0 + 2.0 / 24.0).contains(&days),
        "web-01's certificate has {days} days left, it was issued with 5 days 2 h"
    );
    let fast = series("slow", "tls");
    ensure!(
        value(&body, &fast).is_none(),
        "{fast}: a check without a bound has no slow sample"
    );
    Ok(body)
}
