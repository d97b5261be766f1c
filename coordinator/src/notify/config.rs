//! `[notify]` in the coordinator config: the notification routes, their secrets (inline or from
//! an environment variable), timeouts, retries and rate limits, validated so that every problem
//! is reported at once.

use std::collections::BTreeMap;
use std::time::Duration;

use opsfleet_configcheck::prefixed;
use opsfleet_proto::api::Severity;
use serde::{Deserialize, Serialize};

/// `[notify]`: where notifications go. No routes = one built-in dry-run route that prints each
/// notification as one JSON line on stdout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `[[notify.routes]]`, each sent to independently.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// The transport of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// The notification as JSON, POSTed to `url` with an `Idempotency-Key` header.
    Webhook,
    /// A Slack-compatible incoming webhook: `{"text": ...}` POSTed to `url`.
    Slack,
    /// Telegram Bot API `sendMessage` with `chat_id` and `text`.
    Telegram,
    /// Alertmanager's v2 API: `POST <url>/api/v2/alerts`, firing re-sent every
    /// `resend_interval` while it lasts, then resolved.
    Alertmanager,
    /// PagerDuty Events API v2: trigger/resolve with `dedup_key` = the alert id.
    Pagerduty,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Webhook => "webhook",
            RouteKind::Slack => "slack",
            RouteKind::Telegram => "telegram",
            RouteKind::Alertmanager => "alertmanager",
            RouteKind::Pagerduty => "pagerduty",
        }
    }
}

/// One `[[notify.routes]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Unique among routes; a subject token (letters, digits, `-`, `_`).
    pub name: String,
    pub kind: RouteKind,
    /// Target URL (webhook, slack), Alertmanager's base URL, PagerDuty's enqueue URL
    /// (default [`PAGERDUTY_URL`]). Secret for Slack: prefer `url_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// Name of an environment variable holding the URL, read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// Telegram bot token (secret: prefer `bot_token_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token: Option<Secret>,
    /// Name of an environment variable holding the Telegram bot token, read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token_env: Option<String>,
    /// PagerDuty integration key (32 characters; secret: prefer `routing_key_env`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<Secret>,
    /// Name of an environment variable holding the PagerDuty routing key, read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key_env: Option<String>,
    /// Alertmanager: how often a firing alert is posted again (its `endsAt` is 4 intervals
    /// ahead, so Alertmanager keeps it active while the coordinator keeps posting).
    #[serde(default = "default_resend_interval", with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Alertmanager: keep an Alertmanager silence in step with each active opsfleet silence
    /// that could match this route's alerts (`notify::am_silences`). Default true.
    #[serde(default = "default_true")]
    pub mirror_silences: bool,
    /// Telegram chat id (`-100123...` or `@channel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<String>,
    /// Telegram API base URL; tests point it at a local receiver.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Timeout of one HTTP attempt (connect + response).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per notification, the first included (1 = no retry).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt up to `retry_max_delay`.
    #[serde(default = "default_retry_min_delay", with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// Cap of the retry delay, also of an honoured `Retry-After`.
    #[serde(default = "default_retry_max_delay", with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// `[notify.routes.rate_limit]`: token bucket per route.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// Notifications below this severity (`info` < `warning` < `critical`) skip the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Only these rules (any of them); empty = every rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Only hosts matching one of these globs (`web-*`); empty = every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Only hosts whose labels include all of these (`{ env = "prod" }`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Token bucket: `burst` notifications at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_minute: default_per_minute(),
            burst: default_burst(),
        }
    }
}

/// A secret from a config file (Slack URL, bot token): read as a plain string, but never shown
/// by `Debug` nor serialised (the config's fingerprint and dumps carry `<redacted>`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Default Telegram Bot API base URL.
pub const TELEGRAM_API_BASE: &str = "https://api.telegram.org";

/// Default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Length of a PagerDuty Events v2 integration (routing) key.
pub const ROUTING_KEY_LEN: usize = 32;

fn default_resend_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_true() -> bool {
    true
}
fn default_api_base() -> String {
    TELEGRAM_API_BASE.to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_min_delay() -> Duration {
    Duration::from_millis(500)
}
fn default_retry_max_delay() -> Duration {
    Duration::from_secs(30)
}
fn default_per_minute() -> u32 {
    30
}
fn default_burst() -> u32 {
    10
}

impl RouteConfig {
    /// A route with defaults, for tests and examples.
    pub fn new(name: &str, kind: RouteKind) -> RouteConfig {
        RouteConfig {
            name: name.to_owned(),
            kind,
            url: None,
            url_env: None,
            bot_token: None,
            bot_token_env: None,
            chat_id: None,
            api_base: default_api_base(),
            timeout: default_timeout(),
            max_attempts: default_max_attempts(),
            retry_min_delay: default_retry_min_delay(),
            retry_max_delay: default_retry_max_delay(),
            rate_limit: RateLimitConfig::default(),
            min_severity: None,
            routing_key: None,
            routing_key_env: None,
            resend_interval: default_resend_interval(),
            mirror_silences: true,
            rules: Vec::new(),
            hosts: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

impl NotifyConfig {
    /// Every semantic problem as (key relative to `notify`, reason). Environment variables are
    /// not read here (a config can be checked on another machine); `Notifier::from_config` does.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if let Err(e) = opsfleet_proto::subjects::validate_token(&r.name) {
                out.push((format!("{at}.name"), e.to_string()));
            } else if !seen.insert(r.name.as_str()) {
                out.push((
                    format!("{at}.name"),
                    format!("duplicate route name {:?}", r.name),
                ));
            }
            out.extend(prefixed(&at, r.problems()));
        }
        out
    }
}

impl RouteConfig {
    /// Problems of this route apart from its name, keys relative to the route.
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = match self.kind {
            RouteKind::Webhook | RouteKind::Slack | RouteKind::Alertmanager => self.url_problems(),
            RouteKind::Telegram => self.telegram_problems(),
            RouteKind::Pagerduty => self.pagerduty_problems(),
        };
        if self.kind != RouteKind::Pagerduty {
            self.unused(
                &mut out,
                &[
                    ("routing_key", self.routing_key.is_some()),
                    ("routing_key_env", self.routing_key_env.is_some()),
                ],
            );
        }
        if self.kind == RouteKind::Alertmanager {
            let d = self.resend_interval;
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                out.push((
                    "resend_interval".into(),
                    "must be between 100ms and 1h".into(),
                ));
            }
        } else {
            let set = self.resend_interval != default_resend_interval();
            self.unused(
                &mut out,
                &[
                    ("resend_interval", set),
                    ("mirror_silences", !self.mirror_silences),
                ],
            );
        }
        out.extend(self.delivery_problems());
        out.extend(self.matcher().problems());
        out
    }

    /// What this route's notifications must be about.
    pub fn matcher(&self) -> super::matching::Match {
        super::matching::Match {
            rules: self.rules.clone(),
            hosts: self.hosts.clone(),
            labels: self.labels.clone(),
        }
    }

    /// Each set field of `fields` is a problem: not used by this kind.
    fn unused(&self, out: &mut Vec<(String, String)>, fields: &[(&str, bool)]) {
        for (field, set) in fields {
            if *set {
                out.push((
                    field.to_string(),
                    format!("not used by kind {}", self.kind.as_str()),
                ));
            }
        }
    }

    /// A PagerDuty route: a routing key (32 characters), an optional http(s) URL, and none of
    /// Telegram's keys.
    fn pagerduty_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        one_of(
            &mut out,
            "routing_key",
            &self.routing_key,
            "routing_key_env",
            &self.routing_key_env,
        );
        if let Some(Secret(key)) = &self.routing_key {
            if let Some(reason) = routing_key_problem(key) {
                out.push(("routing_key".into(), reason));
            }
        }
        if self.url.is_some() && self.url_env.is_some() {
            out.push(("url".into(), "set either url or url_env, not both".into()));
        }
        if let Some(Secret(url)) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(("url".into(), "must start with http:// or https://".into()));
            }
        }
        self.unused(
            &mut out,
            &[
                ("bot_token", self.bot_token.is_some()),
                ("bot_token_env", self.bot_token_env.is_some()),
                ("chat_id", self.chat_id.is_some()),
                ("api_base", self.api_base != TELEGRAM_API_BASE),
            ],
        );
        out
    }

    /// A webhook or Slack route: a URL, and none of Telegram's keys.
    fn url_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        one_of(&mut out, "url", &self.url, "url_env", &self.url_env);
        if let Some(Secret(url)) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(("url".into(), "must start with http:// or https://".into()));
            }
        }
        let unused = format!("not used by kind {}", self.kind.as_str());
        for (field, set) in [
            ("bot_token", self.bot_token.is_some()),
            ("bot_token_env", self.bot_token_env.is_some()),
            ("chat_id", self.chat_id.is_some()),
            ("api_base", self.api_base != TELEGRAM_API_BASE),
        ] {
            if set {
                out.push((field.into(), unused.clone()));
            }
        }
        out
    }

    /// A Telegram route: a bot token, a chat, an http(s) API base, and no URL.
    fn telegram_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        one_of(
            &mut out,
            "bot_token",
            &self.bot_token,
            "bot_token_env",
            &self.bot_token_env,
        );
        if self.chat_id.as_deref().is_none_or(str::is_empty) {
            out.push(("chat_id".into(), "is required for kind telegram".into()));
        }
        if !(self.api_base.starts_with("http://") || self.api_base.starts_with("https://")) {
            out.push((
                "api_base".into(),
                "must start with http:// or https://".into(),
            ));
        }
        self.unused(
            &mut out,
            &[
                ("url", self.url.is_some()),
                ("url_env", self.url_env.is_some()),
            ],
        );
        out
    }

    /// Timeout, retries, rate limit and minimum severity.
    fn delivery_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, reason: String| out.push((key.to_owned(), reason));
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(300) {
            push("timeout", "must be between 10ms and 300s".into());
        }
        if !(1..=20).contains(&self.max_attempts) {
            push("max_attempts", "must be between 1 and 20".into());
        }
        if self.retry_min_delay.is_zero() {
            push("retry_min_delay", "must be above 0".into());
        }
        if self.retry_max_delay < self.retry_min_delay {
            push("retry_max_delay", "must be at least retry_min_delay".into());
        }
        if self.rate_limit.per_minute == 0 {
            push("rate_limit.per_minute", "must be at least 1".into());
        }
        if self.rate_limit.burst == 0 {
            push("rate_limit.burst", "must be at least 1".into());
        }
        if let Some(s) = &self.min_severity {
            if Severity::named(s).is_none() {
                push(
                    "min_severity",
                    format!("unknown severity {s:?}; use one of {}", Severity::names()),
                );
            }
        }
        out
    }
}

/// Why `key` cannot be a PagerDuty routing key: 32 letters and digits.
pub fn routing_key_problem(key: &str) -> Option<String> {
    let ok = key.len() == ROUTING_KEY_LEN && key.chars().all(|c| c.is_ascii_alphanumeric());
    (!ok).then(|| format!("a PagerDuty routing key is {ROUTING_KEY_LEN} letters and digits"))
}

/// Exactly one of an inline value and its `_env` variant must be set (and non-empty).
fn one_of(
    out: &mut Vec<(String, String)>,
    inline: &str,
    inline_val: &Option<Secret>,
    env: &str,
    env_val: &Option<String>,
) {
    let key = |k: &str| k.to_owned();
    match (inline_val, env_val) {
        (Some(_), Some(_)) => out.push((
            key(inline),
            format!("set either {inline} or {env}, not both"),
        )),
        (None, None) => out.push((key(inline), format!("{inline} or {env} is required"))),
        (Some(Secret(v)), None) if v.is_empty() => {
            out.push((key(inline), "must not be empty".into()))
        }
        (None, Some(v)) if v.is_empty() => out.push((key(env), "must not be empty".into())),
        _ => {}
    }
}
