//! The agent's HTTP endpoint (axum, `[http]`): `/healthz` (the process answers), `/readyz`
//! (NATS connected and the outbox below its bound), `/metrics` (Prometheus text from the
//! installed recorder) and, when admin is enabled, `POST /modules/<name>/<action>` with action
//! pause | resume | disable | enable | reconfigure (body: the module's TOML entry), replying JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::control::{Action, ControlError, ControlHandle, ControlReply};
use crate::outbox::Outbox;

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
    Tls(#[source] opsfleet_bus::https::HttpsError),
    #[error("HTTP server on {addr} failed")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
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
    /// Admin routes are served only when this is set.
    pub control: Option<ControlHandle>,
}

/// The routes over `state`.
pub fn router(state: HttpState) -> Router {
    let mut r = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if state.control.is_some() {
        r = r.route("/modules/{name}/{action}", post(admin));
    }
    r.with_state(state)
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
    info!(%addr, admin = state.control.is_some(), tls = tls.is_some(), "http endpoint listening");
    opsfleet_bus::https::serve(listener, tls, router(state), cancel.cancelled_owned())
        .await
        .map_err(|source| HttpError::Serve { addr, source })
}

/// The TLS acceptor of `[http]`, if it configures TLS.
pub fn tls_acceptor(
    cfg: &crate::config::HttpConfig,
) -> Result<Option<tokio_rustls::TlsAcceptor>, HttpError> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => opsfleet_bus::https::acceptor(cert, key)
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

#[derive(Serialize)]
struct AdminError {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
}

#[derive(Serialize)]
struct Problem {
    key: String,
    reason: String,
}

fn error_reply(code: StatusCode, error: String, problems: Vec<(String, String)>) -> Response {
    let problems = problems
        .into_iter()
        .map(|(key, reason)| Problem { key, reason })
        .collect();
    (code, Json(AdminError { error, problems })).into_response()
}

async fn admin(
    State(s): State<HttpState>,
    Path((name, action)): Path<(String, String)>,
    body: String,
) -> Response {
    let Some(control) = &s.control else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let res: Result<ControlReply, ControlError> = if action == "reconfigure" {
        control.reconfigure_toml(&name, &body).await
    } else {
        match Action::parse(&action) {
            Some(a) => control.act(&name, a, "http admin").await,
            None => {
                return error_reply(
                    StatusCode::NOT_FOUND,
                    format!(
                    "unknown action {action:?}; one of pause, resume, disable, enable, reconfigure"
                ),
                    Vec::new(),
                )
            }
        }
    };
    match res {
        Ok(reply) => (StatusCode::OK, Json(reply)).into_response(),
        Err(e) => {
            let code = match &e {
                ControlError::UnknownModule { .. } => StatusCode::NOT_FOUND,
                ControlError::Conflict { .. } => StatusCode::CONFLICT,
                ControlError::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                ControlError::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                ControlError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                ControlError::RunFailed { .. } => StatusCode::CONFLICT,
            };
            let message = e.to_string();
            let problems = match e {
                ControlError::Rejected { problems, .. } => problems,
                _ => Vec::new(),
            };
            error_reply(code, message, problems)
        }
    }
}

#[cfg(test)]
mod tests;
