//! The operator console in the browser, served on the `[http]` listener when `[console]` is
//! configured: login (users file, sessions, CSRF), server-rendered pages of this coordinator's
//! projection (`pages`, through the API views), the live event stream (`stream`, SSE) and
//! actions forwarded to the active coordinator over NATS (`actions`). `docs/console.md`.

mod actions;
mod assets;
pub mod config;
mod handlers;
mod html;
mod pages;
mod sessions;
mod stream;
mod users;

use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::jetstream;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Semaphore;

pub use config::ConsoleConfig;
use sessions::{Session, Sessions, Throttle};
use users::Users;

use crate::state::Shared;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("[console] users_file: {}", .0.join("; "))]
    Users(Vec<String>),
}

/// What every console handler shares.
pub struct Console {
    shared: Arc<Shared>,
    client: async_nats::Client,
    js: jetstream::Context,
    users: Users,
    sessions: Mutex<Sessions>,
    throttle: Mutex<Throttle>,
    /// Served over TLS: cookies get `Secure` and the `__Host-` prefix.
    tls: bool,
    streams: Arc<Semaphore>,
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Console {
    /// Loads the users file; the console of `cfg` on a listener with or without `tls`.
    pub fn new(
        cfg: &ConsoleConfig,
        tls: bool,
        shared: Arc<Shared>,
        client: async_nats::Client,
        js: jetstream::Context,
    ) -> Result<Arc<Console>, ConsoleError> {
        let users = Users::load(&cfg.users_file).map_err(ConsoleError::Users)?;
        if cfg.insecure_http && !tls {
            tracing::warn!(
                users = users.len(),
                "INSECURE: console served over plain HTTP (insecure_http = true): logins and \
                 session cookies cross the network in clear text"
            );
        }
        Ok(Arc::new(Console {
            shared,
            client,
            js,
            users,
            sessions: Mutex::new(Sessions::new(cfg.session_idle, cfg.session_max)),
            throttle: Mutex::new(Throttle::default()),
            tls,
            streams: Arc::new(Semaphore::new(cfg.max_streams)),
        }))
    }

    fn cookie_name(&self, base: &str) -> String {
        if self.tls {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// `Set-Cookie` value for `name=value` (empty value and `Max-Age=0` to clear).
    fn set_cookie(&self, base: &str, value: &str) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        let age = if value.is_empty() { "; Max-Age=0" } else { "" };
        format!(
            "{}={value}; HttpOnly; SameSite=Strict; Path=/{secure}{age}",
            self.cookie_name(base)
        )
    }

    /// The value of cookie `base` in the request.
    fn cookie(&self, headers: &HeaderMap, base: &str) -> Option<String> {
        let name = self.cookie_name(base);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }

    /// Whether session `id` is still live (not marked used).
    fn session_alive(&self, id: &str) -> bool {
        lock(&self.sessions).alive(id, std::time::Instant::now())
    }

    /// The request's live session, with its id.
    fn session(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let id = self.cookie(headers, SESSION_COOKIE)?;
        let s = lock(&self.sessions).get(&id, std::time::Instant::now())?;
        Some((id, s))
    }
}

const SESSION_COOKIE: &str = "opsfleet_session";
const LOGIN_COOKIE: &str = "opsfleet_login";

/// The strict headers every console response carries.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
    // a form POST, which the same-origin check (rightly) refuses; this way the console's own
    // POSTs carry their real origin, and no other site learns a console URL.
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    resp
}

/// The console's routes, under `/console`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/console", get(handlers::root))
        .route("/console/", get(handlers::root))
        .route(
            "/console/login",
            get(handlers::login_form).post(handlers::login),
        )
        .route("/console/logout", post(handlers::logout))
        .route("/console/fleet", get(handlers::fleet))
        .route("/console/host/{name}", get(handlers::host))
        .route("/console/alerts", get(handlers::alerts))
        .route("/console/silences", get(handlers::silences))
        .route("/console/incidents", get(handlers::incidents))
        .route("/console/backups", get(handlers::backups))
        .route("/console/commands", get(handlers::commands))
        .route("/console/rollouts", get(handlers::rollouts))
        .route("/console/coordinator", get(handlers::coordinator))
        .route("/console/events", get(handlers::events))
        .route("/console/events/stream", get(stream::stream))
        .route("/console/act", post(actions::act))
        .route("/console/api/commands", get(actions::command_states))
        .route("/console/assets/{file}", get(assets::asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}
