//! The agent's HTTP endpoint (axum, `[http]`): `/healthz` (the process answers), `/readyz`
//! (NATS connected and the outbox below its bound), `/metrics` (Prometheus text from the
//! installed recorder) on TCP. The admin routes (`POST /modules/<name>/<action>`, `admin`) are
//! served on a 0600 Unix socket (`socket`) and on TCP only with `[http] admin_tcp`, behind a
//! bearer token, a Host check and no browser Origin.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::outbox::Outbox;

mod admin;
mod socket;

pub use admin::{admin_router, host_allowed, load_token, tcp_refusal, AdminTcp, TcpGuard};
pub use socket::{bind_admin_socket, serve_admin_socket, AdminSocket};

/// Why the HTTP endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS for the HTTP endpoint")]
    Tls(#[source] opsfleet_httpserve::HttpsError),
    #[error("HTTP server on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the admin socket {}: {reason}", path.display())]
    Socket {
        path: std::path::PathBuf,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("admin socket server on {} failed", path.display())]
    SocketServe {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use the admin token file {}: {reason}", path.display())]
    Token {
        path: std::path::PathBuf,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },
}

/// What the routes read.
#[derive(Clone)]
pub struct HttpState {
    pub outbox: Arc<Outbox>,
    /// `[outbox] max_events`: at or above it the agent is not ready.
    pub max_events: u64,
    /// Whether the NATS connection is up right now.
    pub nats_connected: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Renders `/metrics`; `None` answers 503.
    pub metrics: Option<PrometheusHandle>,
    /// The admin routes on this TCP listener too (`[http] admin_tcp`), behind the guard.
    pub admin: Option<AdminTcp>,
}

/// The routes over `state`: the public three, and the guarded admin routes when asked.
pub fn router(state: HttpState) -> Router {
    let admin = state.admin.clone();
    let r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    match admin {
        Some(a) => r.merge(admin_router(a.control, Some(a.guard))),
        None => r,
    }
}

/// Binds `addr` (port 0 picks one) and returns the listener and its real address.
pub async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Serves plain HTTP until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    cancel: CancellationToken,
) -> Result<(), HttpError> {
    serve_tls(listener, None, state, cancel).await
}

/// Serves until `cancel`, over TLS when `tls` is given (`[http] tls_cert` + `tls_key`).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: HttpState,
    cancel: CancellationToken,
) -> Result<(), HttpError> {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    info!(%addr, admin_tcp = state.admin.is_some(), tls = tls.is_some(), "http endpoint listening");
    opsfleet_httpserve::serve(listener, tls, router(state), cancel.cancelled_owned())
        .await
        .map_err(|source| HttpError::Serve { addr, source })
}

/// The TLS acceptor of `[http]`, if it configures TLS.
pub fn tls_acceptor(
    cfg: &crate::config::HttpConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, HttpError> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => opsfleet_httpserve::acceptor(cert, key)
            .map(Some)
            .map_err(HttpError::Tls),
        _ => Ok(None),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Why the agent is not ready (empty = ready); pure.
pub fn not_ready_reasons(nats_connected: bool, pending: u64, max_events: u64) -> Vec<String> {
    let mut out = Vec::new();
    if !nats_connected {
        out.push("nats: not connected".to_owned());
    }
    if pending >= max_events {
        out.push(format!("outbox: full ({pending}/{max_events} events)"));
    }
    out
}

async fn readyz(State(s): State<HttpState>) -> Response {
    let reasons = not_ready_reasons((s.nats_connected)(), s.outbox.pending(), s.max_events);
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let body = format!("not ready: {}\n", reasons.join("; "));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    crate::telemetry::outbox_depth(s.outbox.pending());
    match &s.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod tests;
