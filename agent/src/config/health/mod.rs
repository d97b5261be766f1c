//! `type = "health"` module config: the probes (HTTP(S) GET with JSON assertions, TCP connect,
//! command, certificate file, WebSocket) and the thresholds of their starting / ready /
//! degraded / failed state machine, the latency bound and the certificate expiry levels.

mod checks;
pub(crate) mod json;
mod url;

use std::path::PathBuf;
use std::time::Duration;

use opsfleet_proto::subjects::validate_token;
use serde::{Deserialize, Serialize};

pub use json::{Comparison, JsonAssertion};
pub use url::{parse_http_url, parse_probe_url, HttpTarget, Scheme};

/// `type = "health"`: probes of local services; events on state transitions only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Instance name; defaults to the type.
    #[serde(default = "default_name", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How often every probe runs (all probes of one run go concurrently).
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// `[[modules.probes]]`.
    #[serde(default = "default_probes")]
    pub probes: Vec<ProbeConfig>,
}

fn default_name() -> Option<String> {
    None
}
fn default_health_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_probes() -> Vec<ProbeConfig> {
    Vec::new()
}

/// What a probe does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeType {
    Http,
    Tcp,
    Command,
    /// Days left of the certificate in a PEM file.
    Cert,
    /// A WebSocket connection that must answer a keepalive.
    Websocket,
}

impl ProbeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Http => "http",
            ProbeType::Tcp => "tcp",
            ProbeType::Command => "command",
            ProbeType::Cert => "cert",
            ProbeType::Websocket => "websocket",
        }
    }
}

/// `latency_window`: the last N successful probes (`20`) or the successful probes of a
/// duration (`"5m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LatencyWindow {
    Probes(u32),
    #[serde(with = "humantime_serde")]
    Duration(Duration),
}

/// Default `latency_window`: the last 20 successful probes.
pub const DEFAULT_LATENCY_WINDOW: LatencyWindow = LatencyWindow::Probes(20);
/// A window judges the p95 only once it holds this many samples (or N, for a smaller N).
pub const LATENCY_MIN_SAMPLES: usize = 5;
/// Default `warn_days` of a certificate check.
pub const DEFAULT_WARN_DAYS: u32 = 30;
/// Default `crit_days` of a certificate check.
pub const DEFAULT_CRIT_DAYS: u32 = 7;

/// One probe. A flat struct (not a tagged enum) so `deny_unknown_fields` works and a key
/// that belongs to another probe type is reported by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Check name (subject token), unique within the module; reported in events and heartbeats.
    pub name: String,
    #[serde(rename = "type")]
    pub probe: ProbeType,
    /// http: `http://` or `https://host:port/path`; websocket: `ws://` or `wss://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// http: expected status code (redirects are not followed: a 302 is a 302).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// http: the body must contain this text (first 64 KiB are read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// http: assertions on fields of a JSON body (RFC 6901 pointers), all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json: Vec<JsonAssertion>,
    /// https / wss: trust only the CA certificates of this PEM file (else the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// https / wss: do not verify the server's certificate (self-signed dev endpoints);
    /// logged as a warning at start and said in the check's detail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// tcp: `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// command: program and arguments (no shell; use `["sh", "-c", "..."]` for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// command: expected exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_exit: Option<i32>,
    /// cert: a PEM file; its first certificate is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// cert, https, wss: the certificate is `warn` with this many days left or fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_days: Option<u32>,
    /// cert, https, wss: the certificate is `crit` with this many days left or fewer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_days: Option<u32>,
    /// websocket: a text message sent as the keepalive (else a ping frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_text: Option<String>,
    /// websocket, with `send_text`: the answer must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_text: Option<String>,
    /// The check is `slow` while the p95 of its successful probes' latencies over
    /// `latency_window` is above this.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency_p95: Option<Duration>,
    /// With `latency_p95`: the last N successful probes, or a duration (default 20 probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_window: Option<LatencyWindow>,
    /// Per-attempt limit; a command is killed (its whole process group) when it is reached.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive successes that make the check ready (also from degraded/failed).
    #[serde(default = "default_ready_after")]
    pub ready_after: u32,
    /// Consecutive failures that make a ready check degraded.
    #[serde(default = "default_degraded_after")]
    pub degraded_after: u32,
    /// Consecutive failures that make the check failed.
    #[serde(default = "default_failed_after")]
    pub failed_after: u32,
    /// Failures do not leave `starting` before this much time after the module started.
    #[serde(default = "default_start_period", with = "humantime_serde")]
    pub start_period: Duration,
}

/// Default `expect_status` of an HTTP probe.
pub const DEFAULT_EXPECT_STATUS: u16 = 200;
/// Default `expect_exit` of a command probe.
pub const DEFAULT_EXPECT_EXIT: i32 = 0;

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_ready_after() -> u32 {
    1
}
fn default_degraded_after() -> u32 {
    1
}
fn default_failed_after() -> u32 {
    3
}
fn default_start_period() -> Duration {
    Duration::ZERO
}

impl ProbeConfig {
    /// A probe of type `probe` with every optional key unset and the defaults (tests and
    /// code that build probes).
    pub fn new(name: &str, probe: ProbeType) -> Self {
        ProbeConfig {
            name: name.to_owned(),
            probe,
            url: None,
            expect_status: None,
            body_contains: None,
            json: Vec::new(),
            ca_file: None,
            insecure: false,
            address: None,
            argv: None,
            expect_exit: None,
            path: None,
            warn_days: None,
            crit_days: None,
            send_text: None,
            expect_text: None,
            latency_p95: None,
            latency_window: None,
            timeout: default_timeout(),
            ready_after: default_ready_after(),
            degraded_after: default_degraded_after(),
            failed_after: default_failed_after(),
            start_period: default_start_period(),
        }
    }

    /// The (warn, crit) days of its certificate check, when it has one: a `cert` probe
    /// always (defaults 30 / 7), an https or wss URL when `warn_days` or `crit_days` is set.
    pub fn cert_days(&self) -> Option<(u32, u32)> {
        let judged = self.probe == ProbeType::Cert
            || ((self.warn_days.is_some() || self.crit_days.is_some()) && self.uses_tls());
        judged.then(|| {
            (
                self.warn_days.unwrap_or(DEFAULT_WARN_DAYS),
                self.crit_days.unwrap_or(DEFAULT_CRIT_DAYS),
            )
        })
    }

    /// Whether its URL is `https://` or `wss://`.
    pub fn uses_tls(&self) -> bool {
        matches!(self.probe, ProbeType::Http | ProbeType::Websocket)
            && self
                .url
                .as_deref()
                .and_then(|u| parse_probe_url(u, self.probe).ok())
                .is_some_and(|t| t.scheme.tls())
    }
}

impl HealthConfig {
    /// Problems of the module entry, keys relative to it (`probes[1].url`).
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (i, p) in self.probes.iter().enumerate() {
            let at = |k: &str| format!("probes[{i}].{k}");
            if let Err(e) = validate_token(&p.name) {
                out.push((
                    at("name"),
                    format!("{:?} is not a subject token: {e}", p.name),
                ));
            } else if let Some((_, first)) = seen.iter().find(|(n, _)| *n == p.name) {
                out.push((
                    at("name"),
                    format!("duplicate probe name {:?} (also probes[{first}])", p.name),
                ));
            } else {
                seen.push((&p.name, i));
            }
            out.extend(
                p.problems(self.interval)
                    .into_iter()
                    .map(|(k, r)| (at(&k), r)),
            );
            if p.timeout > self.interval {
                out.push((
                    at("timeout"),
                    format!(
                        "must not exceed the module interval ({:?} > {:?})",
                        p.timeout, self.interval
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
