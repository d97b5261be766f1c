//! The admin routes: `POST /modules/<name>/<action>` with action pause | resume | disable |
//! enable | reconfigure (body: the module's TOML entry), replying JSON. A reconfiguration comes
//! from the admin `Surface` (never a kind change, never a new command probe, the host's path
//! rules). Requests carrying a browser `Origin` are refused everywhere; on TCP every request
//! also needs `Authorization: Bearer <token>` and a Host naming this endpoint (`TcpGuard`), so a
//! web page cannot reach the routes through DNS rebinding.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tracing::warn;

use super::HttpError;
use crate::runner::control::{Action, ControlError, ControlHandle, ControlReply, Origin};

/// The admin routes on a TCP listener: the controller and the guard in front of it.
#[derive(Clone)]
pub struct AdminTcp {
    pub control: ControlHandle,
    pub guard: TcpGuard,
}

/// What a TCP admin request must show: the bearer token, and a Host naming this endpoint.
#[derive(Clone)]
pub struct TcpGuard {
    token: String,
    /// The bound address (its IP is an acceptable Host; an unspecified one accepts any IP).
    listen: SocketAddr,
}

impl TcpGuard {
    pub fn new(token: String, listen: SocketAddr) -> Self {
        TcpGuard { token, listen }
    }
}

impl std::fmt::Debug for TcpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpGuard")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// Reads the admin bearer token: the file's content, trimmed; refused when empty or readable
/// by group or others.
pub fn load_token(path: &Path) -> Result<String, HttpError> {
    let err = |reason: String, source| HttpError::Token {
        path: path.to_owned(),
        reason,
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| err("cannot read it".to_owned(), Some(e)))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(
            format!("mode {mode:04o} lets group or others read it; chmod 600"),
            None,
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| err("cannot read it".to_owned(), Some(e)))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(err("it is empty".to_owned(), None));
    }
    Ok(token.to_owned())
}

/// Whether a `Host` header names this endpoint: `localhost`, a loopback literal, the listen
/// IP, or any IP literal when listening on all addresses; never another name (DNS
/// rebinding). Pure.
pub fn host_allowed(host: &str, listen: SocketAddr) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || valid_port(port.strip_prefix(':')) => ip,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(Some(port)) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == listen.ip() || listen.ip().is_unspecified(),
        Err(_) => false,
    }
}

fn valid_port(port: Option<&str>) -> bool {
    port.is_some_and(|p| p.parse::<u16>().is_ok())
}

/// Why a TCP admin request is refused (status and message), if it is. Order: browser Origin,
/// Host, token. Pure.
pub fn tcp_refusal(guard: &TcpGuard, headers: &HeaderMap) -> Option<(StatusCode, String)> {
    if let Some(r) = origin_refusal(headers) {
        return Some(r);
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !host_allowed(host, guard.listen) {
        return Some((
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not this endpoint (use localhost or an IP address)"),
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        None => Some((
            StatusCode::UNAUTHORIZED,
            "the admin routes need `Authorization: Bearer <token>`".to_owned(),
        )),
        Some(t) if !same_secret(t.as_bytes(), guard.token.as_bytes()) => {
            Some((StatusCode::UNAUTHORIZED, "wrong admin token".to_owned()))
        }
        Some(_) => None,
    }
}

/// A browser's request (it carries `Origin`) is refused on every admin surface.
fn origin_refusal(headers: &HeaderMap) -> Option<(StatusCode, String)> {
    headers.contains_key(header::ORIGIN).then(|| {
        (
            StatusCode::FORBIDDEN,
            "requests with an Origin header (browsers) are refused on the admin routes".to_owned(),
        )
    })
}

/// Compares without stopping at the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn tcp_guard(State(guard): State<TcpGuard>, req: Request, next: Next) -> Response {
    match tcp_refusal(&guard, req.headers()) {
        None => next.run(req).await,
        Some((code, message)) => {
            warn!(status = code.as_u16(), reason = %message, "admin request refused");
            let mut resp = error_reply(code, message, Vec::new());
            if code == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

async fn no_origin(req: Request, next: Next) -> Response {
    match origin_refusal(req.headers()) {
        None => next.run(req).await,
        Some((code, message)) => error_reply(code, message, Vec::new()),
    }
}

/// The admin routes over `control`; behind `guard` on TCP (`None`: the Unix socket, whose
/// file mode is the access control).
pub fn admin_router(control: ControlHandle, guard: Option<TcpGuard>) -> Router {
    let r = Router::new()
        .route("/modules/{name}/{action}", post(admin))
        .with_state(control)
        .layer(middleware::from_fn(no_origin));
    match guard {
        Some(g) => r.layer(middleware::from_fn_with_state(g, tcp_guard)),
        None => r,
    }
}

#[derive(Serialize)]
struct AdminError {
    error: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<String>,
}

#[derive(Serialize)]
struct Problem {
    key: String,
    reason: String,
}

fn error_reply(code: StatusCode, error: String, problems: Vec<(String, String)>) -> Response {
    rules_reply(code, error, problems, Vec::new())
}

fn rules_reply(
    code: StatusCode,
    error: String,
    problems: Vec<(String, String)>,
    rules: Vec<String>,
) -> Response {
    let problems = problems
        .into_iter()
        .map(|(key, reason)| Problem { key, reason })
        .collect();
    (
        code,
        Json(AdminError {
            error,
            problems,
            rules,
        }),
    )
        .into_response()
}

async fn admin(
    State(control): State<ControlHandle>,
    UrlPath((name, action)): UrlPath<(String, String)>,
    body: String,
) -> Response {
    let res: Result<ControlReply, ControlError> = if action == "reconfigure" {
        control
            .reconfigure_toml(&name, &body, Origin::admin())
            .await
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
                ControlError::Rejected { rules, .. } if !rules.is_empty() => StatusCode::FORBIDDEN,
                ControlError::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                ControlError::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                ControlError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                ControlError::RunFailed { .. } => StatusCode::CONFLICT,
            };
            let message = e.to_string();
            match e {
                ControlError::Rejected {
                    problems, rules, ..
                } => rules_reply(code, message, problems, rules),
                _ => error_reply(code, message, Vec::new()),
            }
        }
    }
}
