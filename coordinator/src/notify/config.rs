//! `[notify]` in the coordinator config: the notification routes, their secrets (inline or from
//! an environment variable), timeouts, retries and rate limits, validated so that every problem
//! is reported at once.

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
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Webhook => "webhook",
            RouteKind::Slack => "slack",
            RouteKind::Telegram => "telegram",
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
    /// Target URL (webhook, slack). Secret for Slack: prefer `url_env`.
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
            RouteKind::Webhook | RouteKind::Slack => self.url_problems(),
            RouteKind::Telegram => self.telegram_problems(),
        };
        out.extend(self.delivery_problems());
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
        for (field, set) in [
            ("url", self.url.is_some()),
            ("url_env", self.url_env.is_some()),
        ] {
            if set {
                out.push((field.into(), "not used by kind telegram".into()));
            }
        }
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
