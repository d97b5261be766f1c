//! Notifiers: HOW an alert notification leaves the coordinator — generic JSON webhook, Slack-
//! compatible incoming webhook, Telegram Bot API, Alertmanager v2, PagerDuty Events v2, or a
//! dry-run JSON line on stdout — with retries (backon, exponential, capped, Retry-After
//! honoured), a per-route rate limit, per-route matching (`matching`) and the receivers'
//! message limits (`limits`).
//!
//! The alert engine decides WHAT to send and records every [`Delivery`] as an event; this module
//! never touches NATS or sled. Use (crate-internal, so not compiled as a doctest):
//!
//! ```ignore
//! # use crate::notify::{Notifier, NotifyConfig, Notification};
//! # async fn demo(cfg: &NotifyConfig, n: &Notification) -> Result<(), Box<dyn std::error::Error>> {
//! let notifier = Notifier::from_config(cfg)?;
//! for route in notifier.routes_for(n) {
//!     let delivery = notifier.send_while(&route, n, &|| true).await; // `true`: still acting
//!     // record `delivery` as a notification event
//! #   let _ = delivery;
//! }
//! # Ok(()) }
//! ```

mod alertmanager;
pub mod am_silences;
pub mod config;
mod dry_run;
pub mod limits;
pub mod matching;
mod pagerduty;
pub mod rate_limit;
mod refresh;
mod slack;
mod telegram;
mod transport;
mod webhook;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod tests;

use opsfleet_proto::api::{AlertState, Severity};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use config::{NotifyConfig, RouteConfig, RouteKind, Secret};
use rate_limit::TokenBucket;
pub use refresh::Firing;
use transport::{HttpPost, RetryPolicy};

/// Name of the built-in route used when `[notify]` has no routes.
pub const DRY_RUN_ROUTE: &str = "dry-run";

/// One notification about one alert transition. Serialised as-is (field names below) as the
/// body of a generic webhook and as the dry-run line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key: the same id for every retry and every coordinator that might send it
    /// (sent as the webhook's `Idempotency-Key` header). Derive it from the alert transition,
    /// e.g. `<alert_id>:<state>:<transition seq>`, not from the route.
    pub id: String,
    /// The alert instance (rule + host + subject) this notification is about.
    pub alert_id: String,
    /// Rule name, e.g. `disk_pressure`.
    pub rule: String,
    /// Host the alert is about, e.g. `db-01`.
    pub host: String,
    /// What on the host, e.g. `/var` or `module:log`; may be empty or equal to `host`.
    pub subject: String,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// `info`, `warning` or `critical`; `unknown` passes every filter.
    pub severity: Severity,
    /// Human-readable one-liner, e.g. `/var is 95% full`.
    pub summary: String,
    /// When the transition happened (event time), Unix milliseconds.
    pub at_unix_ms: i64,
    /// Name of the coordinator that sends it.
    pub coordinator: String,
    /// Lease epoch of the sending coordinator's term.
    pub epoch: u64,
    /// The host's labels (its newest heartbeat's), for route matching and Alertmanager.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the alert last began firing (Unix ms; 0 = unknown): a resolve's `startsAt`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub firing_since_unix_ms: i64,
    /// Routes an earlier transition of this alert went to: a resolve goes to them whatever
    /// the host's labels say now, so no receiver is left with an alert that never resolves.
    #[serde(skip)]
    pub routes_before: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The outcome of [`Notifier::send`] for one route. Never an error type: every outcome is
/// something to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The receiver answered 2xx after `attempts` tries (1 = first try).
    Sent { attempts: u32 },
    /// Printed as one JSON line on stdout (the built-in route; no receiver configured).
    DryRun,
    /// The route's token bucket was empty; nothing was sent (decided at once, no waiting).
    RateLimited,
    /// Given up: a permanent answer (4xx other than 429), or every attempt failed, or an
    /// unknown route (`attempts: 0`). `reason` never contains the URL or token.
    Failed { attempts: u32, reason: String },
    /// The route's `min_severity` is above the notification's severity, or its `rules`,
    /// `hosts` or `labels` do not match; nothing was sent and no rate-limit token used.
    /// [`Notifier::routes_for`] leaves such routes out.
    Skipped { reason: String },
    /// The sender stopped acting before an attempt (`Notifier::send_while`): nothing more was
    /// tried; `attempts` were made before and none was accepted. Not an outcome to record:
    /// the next active coordinator sends it.
    Abandoned { attempts: u32 },
}

/// Errors building a [`Notifier`] from config.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify route {route}: {key}: {reason}")]
    Invalid {
        route: String,
        key: String,
        reason: String,
    },
    #[error("notify route {route}: environment variable {var} is not set or not unicode")]
    MissingEnv {
        route: String,
        var: String,
        #[source]
        source: std::env::VarError,
    },
    #[error("cannot build the HTTP client for notifications")]
    Client {
        #[source]
        source: reqwest::Error,
    },
}

/// Where a route sends.
enum Target {
    Post(HttpPost),
    DryRun(Arc<Mutex<Box<dyn Write + Send>>>),
}

struct Route {
    name: String,
    target: Target,
    bucket: Option<Mutex<TokenBucket>>,
    min_severity: Option<Severity>,
    matcher: matching::Match,
    retry: RetryPolicy,
    /// Alertmanager routes: firing alerts are posted again every interval.
    refresh: Option<refresh::Refresh>,
    /// Alertmanager routes with `mirror_silences`: opsfleet silences kept in step there.
    mirror: Option<am_silences::MirrorState>,
}

/// Sends notifications to the configured routes. Cheap to share (`Arc<Notifier>`); `send` may
/// run concurrently for different notifications and routes.
pub struct Notifier {
    routes: Vec<Route>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("routes", &self.routes())
            .finish()
    }
}

impl Notifier {
    /// Builds every route, reading `url_env` / `bot_token_env` now. No routes = the built-in
    /// [`DRY_RUN_ROUTE`] printing to stdout. The config should already be validated; the first
    /// remaining problem is returned as [`NotifyError::Invalid`].
    pub fn from_config(cfg: &NotifyConfig) -> Result<Notifier, NotifyError> {
        Notifier::from_config_with(cfg, &|var| std::env::var(var))
    }

    /// [`Notifier::from_config`] with an explicit environment lookup (tests).
    pub fn from_config_with(
        cfg: &NotifyConfig,
        env: &dyn Fn(&str) -> Result<String, std::env::VarError>,
    ) -> Result<Notifier, NotifyError> {
        if let Some((key, reason)) = cfg.problems().into_iter().next() {
            let (route, key) = split_route_key(cfg, &key);
            return Err(NotifyError::Invalid { route, key, reason });
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("opsfleet-coordinator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| NotifyError::Client { source })?;
        let now = Instant::now();
        let mut routes = Vec::new();
        for r in &cfg.routes {
            let secret = |inline: &Option<Secret>, var: &Option<String>| match (inline, var) {
                (Some(s), _) => Ok(s.expose().to_owned()),
                (None, Some(var)) => env(var).map_err(|source| NotifyError::MissingEnv {
                    route: r.name.clone(),
                    var: var.clone(),
                    source,
                }),
                (None, None) => Err(NotifyError::Invalid {
                    route: r.name.clone(),
                    key: "url".into(),
                    reason: "no secret configured".into(),
                }),
            };
            let post = match r.kind {
                RouteKind::Webhook => webhook::target(secret(&r.url, &r.url_env)?),
                RouteKind::Slack => slack::target(secret(&r.url, &r.url_env)?),
                RouteKind::Telegram => telegram::target(
                    &r.api_base,
                    &secret(&r.bot_token, &r.bot_token_env)?,
                    r.chat_id.clone().unwrap_or_default(),
                ),
                RouteKind::Alertmanager => {
                    alertmanager::target(&secret(&r.url, &r.url_env)?, r.resend_interval)
                }
                RouteKind::Pagerduty => {
                    let key = secret(&r.routing_key, &r.routing_key_env)?;
                    if let Some(reason) = config::routing_key_problem(&key) {
                        let key = if r.routing_key.is_some() {
                            "routing_key"
                        } else {
                            "routing_key_env"
                        };
                        return Err(NotifyError::Invalid {
                            route: r.name.clone(),
                            key: key.into(),
                            reason,
                        });
                    }
                    let url = match (&r.url, &r.url_env) {
                        (None, None) => config::PAGERDUTY_URL.to_owned(),
                        _ => secret(&r.url, &r.url_env)?,
                    };
                    pagerduty::target(url, key)
                }
            };
            let refresh =
                (r.kind == RouteKind::Alertmanager).then(|| refresh::Refresh::new(&post.url, r));
            let mirror = if r.kind == RouteKind::Alertmanager && r.mirror_silences {
                let base = secret(&r.url, &r.url_env)?;
                Some(am_silences::MirrorState::new(
                    &base,
                    r.resend_interval,
                    r.timeout,
                ))
            } else {
                None
            };
            routes.push(Route {
                name: r.name.clone(),
                target: Target::Post(post),
                bucket: Some(Mutex::new(TokenBucket::new(
                    r.rate_limit.per_minute,
                    r.rate_limit.burst,
                    now,
                ))),
                min_severity: r.min_severity.as_deref().and_then(Severity::named),
                matcher: r.matcher(),
                retry: RetryPolicy::from_route(r),
                refresh,
                mirror,
            });
        }
        if routes.is_empty() {
            routes.push(Route {
                name: DRY_RUN_ROUTE.to_owned(),
                target: Target::DryRun(Arc::new(Mutex::new(Box::new(std::io::stdout())))),
                bucket: None,
                min_severity: None,
                matcher: matching::Match::default(),
                retry: RetryPolicy::single(),
                refresh: None,
                mirror: None,
            });
        }
        Ok(Notifier { routes, client })
    }

    /// Redirects the dry-run route's output (stdout by default), e.g. to a buffer in tests.
    #[cfg(test)]
    pub fn with_dry_run_sink(mut self, sink: Box<dyn Write + Send>) -> Notifier {
        let sink = Arc::new(Mutex::new(sink));
        for r in &mut self.routes {
            if let Target::DryRun(s) = &mut r.target {
                *s = sink.clone();
            }
        }
        self
    }

    /// Every route name, in config order (`["dry-run"]` without configured routes).
    pub fn routes(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.name.clone()).collect()
    }

    /// The routes `n` should go to: those whose `min_severity` is not above `n.severity` and
    /// whose `rules`, `hosts` and `labels` match.
    pub fn routes_for(&self, n: &Notification) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.accepts(n))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Sends `n` on `route`: checks the severity filter and the rate limit (both decided at
    /// once), then POSTs with retries on connection errors, timeouts, 429 and 5xx. Returns when
    /// delivered or given up: at most `max_attempts` × (`timeout` + `retry_max_delay`).
    /// Dropping the future (e.g. in a `select!` with the loss of the lease) stops at once:
    /// no further attempt is made, though a request already on the wire may have arrived.
    #[cfg(test)]
    pub async fn send(&self, route: &str, n: &Notification) -> Delivery {
        self.send_while(route, n, &|| true).await
    }

    /// [`Notifier::send`], making each attempt (and taking the rate-limit token) only while
    /// `still()` holds (the sender is acting in its term): once it does not, no further
    /// attempt is made and the answer is [`Delivery::Abandoned`].
    pub async fn send_while(
        &self,
        route: &str,
        n: &Notification,
        still: &(dyn Fn() -> bool + Sync),
    ) -> Delivery {
        self.send_gated(route, n, true, still).await
    }

    /// [`Notifier::send_while`] without the route's severity and matching filters: a drill's
    /// test notification goes to every route, whatever it pages for (the rate limit and the
    /// acting gate still hold).
    pub async fn send_test(
        &self,
        route: &str,
        n: &Notification,
        still: &(dyn Fn() -> bool + Sync),
    ) -> Delivery {
        self.send_gated(route, n, false, still).await
    }

    async fn send_gated(
        &self,
        route: &str,
        n: &Notification,
        filtered: bool,
        still: &(dyn Fn() -> bool + Sync),
    ) -> Delivery {
        let Some(r) = self.routes.iter().find(|r| r.name == route) else {
            return Delivery::Failed {
                attempts: 0,
                reason: format!("unknown notify route {route:?}"),
            };
        };
        if filtered && !r.accepts(n) {
            return Delivery::Skipped {
                reason: format!(
                    "severity {:?} below the route's min_severity, or its rules, hosts or labels do not match",
                    n.severity
                ),
            };
        }
        if !still() {
            return Delivery::Abandoned { attempts: 0 };
        }
        if let Some(bucket) = &r.bucket {
            let granted = match bucket.lock() {
                Ok(mut b) => b.try_take(Instant::now()),
                Err(poisoned) => poisoned.into_inner().try_take(Instant::now()),
            };
            if !granted {
                tracing::warn!(route, id = %n.id, alert = %n.alert_id, "notification rate limited");
                return Delivery::RateLimited;
            }
        }
        let delivery = match &r.target {
            Target::DryRun(sink) => dry_run::print(sink, route, n),
            Target::Post(post) => transport::send(&self.client, &r.retry, post, n, still).await,
        };
        match &delivery {
            Delivery::Sent { attempts } => {
                tracing::info!(route, id = %n.id, alert = %n.alert_id, attempts, "notification sent")
            }
            Delivery::Failed { attempts, reason } => {
                tracing::warn!(route, id = %n.id, alert = %n.alert_id, attempts, reason = %reason, "notification failed")
            }
            Delivery::Abandoned { attempts } => {
                tracing::info!(route, id = %n.id, alert = %n.alert_id, attempts, "notification abandoned: no longer acting")
            }
            _ => {}
        }
        delivery
    }
}

impl Route {
    fn accepts(&self, n: &Notification) -> bool {
        let severe = match self.min_severity {
            Some(min) if n.severity != Severity::Unknown => n.severity >= min,
            _ => true,
        };
        let told_before = n.state == AlertState::Resolved && n.routes_before.contains(&self.name);
        told_before || (severe && self.matcher.matches(&n.rule, &n.host, &n.labels))
    }
}

/// `routes[3].url` → (name of route 3, `url`), for [`NotifyError::Invalid`].
fn split_route_key(cfg: &NotifyConfig, key: &str) -> (String, String) {
    let parsed = key
        .strip_prefix("routes[")
        .and_then(|rest| rest.split_once("]."))
        .and_then(|(i, field)| Some((i.parse::<usize>().ok()?, field)));
    match parsed {
        Some((i, field)) => (
            cfg.routes
                .get(i)
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            field.to_owned(),
        ),
        None => (String::new(), key.to_owned()),
    }
}

/// The readable one-liner shared by Slack and Telegram:
/// `[CRITICAL] FIRING disk_pressure on db-01 (/var): /var is 95% full`.
pub fn one_line(n: &Notification) -> String {
    let mut s = format!(
        "[{}] {} {} on {}",
        n.severity.as_str().to_uppercase(),
        n.state.as_str().to_uppercase(),
        n.rule,
        n.host
    );
    if !n.subject.is_empty() && n.subject != n.host {
        s.push_str(&format!(" ({})", n.subject));
    }
    if !n.summary.is_empty() {
        s.push_str(": ");
        s.push_str(&n.summary);
    }
    s
}
