//! The coordinator's optional HTTP endpoint (`[http] listen`): `/healthz` (the process runs) and
//! `/readyz` (200 while the store accepts writes; a standby is ready too, it is hot), both with
//! the coordinator's name, colour, role and epoch as JSON; `/metrics` (`metrics`: the fleet
//! in the Prometheus text format).

use opsfleet_report::ErrorChain;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::state::Shared;

/// `[http]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:9465`.
    pub listen: SocketAddr,
    /// PEM certificate chain: with `tls_key`, the endpoint serves HTTPS only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A file holding the bearer token `/metrics` requires; absent = `/metrics` is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<std::path::PathBuf>,
}

impl HttpConfig {
    /// Problems as `(key, reason)`; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems =
            opsfleet_httpserve::pair_problems(self.tls_cert.as_deref(), self.tls_key.as_deref());
        if let Err(e) = self.metrics_access() {
            problems.push(("metrics_token_file".to_owned(), ErrorChain(&e).to_string()));
        }
        problems
    }

    /// Who may read `/metrics`.
    pub fn metrics_access(&self) -> Result<crate::metrics::Access, crate::metrics::TokenError> {
        match &self.metrics_token_file {
            Some(path) => crate::metrics::Access::from_file(path),
            None => Ok(crate::metrics::Access::open()),
        }
    }
}

/// The TLS acceptor of `[http]`, if it configures TLS.
pub fn tls_acceptor(
    cfg: &HttpConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, opsfleet_httpserve::HttpsError> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => opsfleet_httpserve::acceptor(cert, key).map(Some),
        _ => Ok(None),
    }
}

/// What both endpoints answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub name: String,
    pub color: String,
    /// `active` or `standby`.
    pub role: opsfleet_proto::api::LeaderRole,
    pub epoch: u64,
    pub applied_stream_seq: u64,
    pub store_healthy: bool,
}

fn probe(shared: &Shared) -> Probe {
    let view = shared.leadership.view();
    Probe {
        name: shared.name.clone(),
        color: shared.color.clone(),
        role: view.role(tokio::time::Instant::now()),
        epoch: view.epoch,
        applied_stream_seq: shared.applied(),
        store_healthy: shared.store_healthy.load(Ordering::Acquire),
    }
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Json<Probe> {
    Json(probe(&shared))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, Json<Probe>) {
    let p = probe(&shared);
    let code = if p.store_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(p))
}

pub fn router(shared: Arc<Shared>, metrics: crate::metrics::Access) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::serve))
        .layer(axum::Extension(metrics))
        .with_state(shared)
}

/// Binds `listen` and serves plain HTTP until `cancel`; returns the bound address at once.
#[cfg(test)]
pub async fn serve(
    listen: SocketAddr,
    shared: Arc<Shared>,
    metrics: crate::metrics::Access,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    serve_tls(listen, None, shared, metrics, None, cancel).await
}

/// Binds `listen` and serves until `cancel`, over TLS when `tls` is given, with the console's
/// routes when it is configured; returns the bound address at once.
pub async fn serve_tls(
    listen: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    metrics: crate::metrics::Access,
    console: Option<Router>,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let mut routes = router(shared, metrics);
    if let Some(console) = console {
        routes = routes.merge(console);
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let shutdown = async move { cancel.cancelled().await };
        let server = opsfleet_httpserve::serve(listener, tls, routes, shutdown);
        if let Err(e) = server.await {
            tracing::error!(error = %ErrorChain(&e), "HTTP endpoint failed");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::Leadership;
    use crate::store::MemStore;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        get_with(addr, path, "").await
    }

    /// GET with extra header lines (each ending in `\r\n`).
    async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn readyz_shows_role_and_epoch_and_follows_store_health() {
        let shared = Shared::load(
            "blue",
            "blue",
            Arc::new(MemStore::new()),
            Leadership::default(),
        )
        .expect("load");
        let cancel = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::clone(&shared),
            crate::metrics::Access::open(),
            cancel.clone(),
        )
        .await
        .expect("serve");
        let ready = get(addr, "/readyz").await;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        assert!(
            ready.contains("\"role\":\"standby\"") && ready.contains("\"epoch\":0"),
            "{ready}"
        );
        assert!(ready.contains("\"name\":\"blue\""), "{ready}");
        shared.store_healthy.store(false, Ordering::Release);
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        cancel.cancel();
        task.await.expect("server");
    }

    #[tokio::test]
    async fn metrics_with_a_token_refuses_requests_without_it() {
        let shared = Shared::load(
            "blue",
            "blue",
            Arc::new(MemStore::new()),
            Leadership::default(),
        )
        .expect("load");
        let cancel = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::clone(&shared),
            crate::metrics::Access::token("s3cret"),
            cancel.clone(),
        )
        .await
        .expect("serve");
        for refused in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: s3cret\r\n",
        ] {
            let answer = get_with(addr, "/metrics", refused).await;
            assert!(answer.starts_with("HTTP/1.1 401"), "{refused:?}: {answer}");
            assert!(answer.contains("www-authenticate: Bearer"), "{answer}");
            assert!(!answer.contains("opsfleet_"), "{answer}");
        }
        let ok = get_with(addr, "/metrics", "Authorization: Bearer s3cret\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("\nopsfleet_coordinator_active 0\n"), "{ok}");
        assert!(
            ok.contains("opsfleet_coordinator_info{coordinator=\"blue\""),
            "{ok}"
        );
        // The probes stay open.
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        cancel.cancel();
        task.await.expect("server");
    }

    #[tokio::test]
    async fn metrics_are_gzipped_for_a_scraper_that_accepts_it() {
        use std::io::Read as _;
        let shared = Shared::load(
            "blue",
            "blue",
            Arc::new(MemStore::new()),
            Leadership::default(),
        )
        .expect("load");
        let cancel = CancellationToken::new();
        let open = crate::metrics::Access::open();
        let listen = "127.0.0.1:0".parse().expect("addr");
        let (addr, task) = serve(listen, Arc::clone(&shared), open, cancel.clone())
            .await
            .expect("serve");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
        let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-encoding: gzip"), "{head}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[split + 4..])
            .read_to_string(&mut text)
            .expect("gunzip");
        assert!(text.contains("\nopsfleet_coordinator_active 0\n"), "{text}");
        // Without Accept-Encoding: plain text.
        let plain = get(addr, "/metrics").await;
        assert!(
            !plain.to_lowercase().contains("content-encoding"),
            "{plain}"
        );
        assert!(plain.contains("opsfleet_coordinator_epoch 0"), "{plain}");
        cancel.cancel();
        task.await.expect("server");
    }
}
