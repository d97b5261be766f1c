//! `type = "health"` module config: the probes (HTTP GET, TCP connect, command) and the
//! thresholds of their starting / ready / degraded / failed state machine.

use std::time::Duration;

use hyper::Uri;
use opsfleet_proto::subjects::validate_token;
use serde::{Deserialize, Serialize};

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
}

impl ProbeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Http => "http",
            ProbeType::Tcp => "tcp",
            ProbeType::Command => "command",
        }
    }
}

/// One probe. A flat struct (not a tagged enum) so `deny_unknown_fields` works and a key
/// that belongs to another probe type is reported by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Check name (subject token), unique within the module; reported in events and heartbeats.
    pub name: String,
    #[serde(rename = "type")]
    pub probe: ProbeType,
    /// http: `http://host:port/path` (plain HTTP; local services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// http: expected status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// http: the body must contain this text (first 64 KiB are read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// tcp: `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// command: program and arguments (no shell; use `["sh", "-c", "..."]` for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// command: expected exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_exit: Option<i32>,
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
            out.extend(p.problems().into_iter().map(|(k, r)| (at(&k), r)));
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

impl ProbeConfig {
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = self.foreign_keys();
        out.extend(self.target_problems());
        let mut push = |k: &str, r: String| out.push((k.to_owned(), r));
        if let Some(s) = self.expect_status {
            if !(100..=599).contains(&s) {
                push("expect_status", format!("{s} is not an HTTP status code"));
            }
        }
        if self.timeout.is_zero() {
            push("timeout", "must be greater than 0".to_owned());
        }
        if self.ready_after == 0 {
            push("ready_after", "must be at least 1".to_owned());
        }
        if self.degraded_after == 0 {
            push("degraded_after", "must be at least 1".to_owned());
        }
        if self.failed_after < self.degraded_after.max(1) {
            push(
                "failed_after",
                format!(
                    "must be at least degraded_after ({} < {})",
                    self.failed_after, self.degraded_after
                ),
            );
        }
        out
    }

    /// Keys set that only make sense for another probe type.
    fn foreign_keys(&self) -> Vec<(String, String)> {
        let ty = self.probe.as_str();
        let foreign: [(&str, bool, ProbeType); 6] = [
            ("url", self.url.is_some(), ProbeType::Http),
            (
                "expect_status",
                self.expect_status.is_some(),
                ProbeType::Http,
            ),
            (
                "body_contains",
                self.body_contains.is_some(),
                ProbeType::Http,
            ),
            ("address", self.address.is_some(), ProbeType::Tcp),
            ("argv", self.argv.is_some(), ProbeType::Command),
            (
                "expect_exit",
                self.expect_exit.is_some(),
                ProbeType::Command,
            ),
        ];
        foreign
            .into_iter()
            .filter(|(_, set, owner)| *set && *owner != self.probe)
            .map(|(key, _, owner)| {
                (
                    key.to_owned(),
                    format!(
                        "only for type = \"{}\" (this probe is type = \"{ty}\")",
                        owner.as_str()
                    ),
                )
            })
            .collect()
    }

    /// The target of the probe's type: `url`, `address` or `argv`.
    fn target_problems(&self) -> Vec<(String, String)> {
        let problem = |k: &str, r: String| vec![(k.to_owned(), r)];
        match self.probe {
            ProbeType::Http => match &self.url {
                None => problem("url", "is required for type = \"http\"".to_owned()),
                Some(u) => parse_http_url(u)
                    .err()
                    .map_or_else(Vec::new, |reason| problem("url", reason)),
            },
            ProbeType::Tcp => match &self.address {
                None => problem("address", "is required for type = \"tcp\"".to_owned()),
                Some(a) if !valid_host_port(a) => problem(
                    "address",
                    format!("{a:?} is not host:port (e.g. \"127.0.0.1:5432\")"),
                ),
                Some(_) => Vec::new(),
            },
            ProbeType::Command => match &self.argv {
                None => problem("argv", "is required for type = \"command\"".to_owned()),
                Some(v) if v.is_empty() || v[0].is_empty() => {
                    problem("argv", "needs at least the program".to_owned())
                }
                Some(_) => Vec::new(),
            },
        }
    }
}

/// `host:port` with a non-empty host and a numeric port.
fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

/// A parsed `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub authority: String,
    pub path_and_query: String,
}

/// Accepts `http://` URLs with a host; https is refused (probes are for local services).
pub fn parse_http_url(url: &str) -> Result<HttpTarget, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "scheme {other:?} not supported; only http:// (probes are for local services)"
            ))
        }
        None => return Err(format!("{url:?} needs a scheme (http://host:port/path)")),
    }
    let Some(auth) = uri.authority() else {
        return Err(format!("{url:?} has no host"));
    };
    if auth.host().is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let authority = match auth.port_u16() {
        Some(_) => auth.as_str().to_owned(),
        None => format!("{}:80", auth.host()),
    };
    let path_and_query = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    Ok(HttpTarget {
        authority,
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, ModuleConfig, ProbeType};

    const OK: &str = r#"
host = "web-01"
[http]
listen = "127.0.0.1:0"
[[modules]]
type = "health"
interval = "5s"
[[modules.probes]]
name = "api"
type = "http"
url = "http://127.0.0.1:8080/healthz"
body_contains = "ok"
[[modules.probes]]
name = "db"
type = "tcp"
address = "127.0.0.1:5432"
failed_after = 5
degraded_after = 2
[[modules.probes]]
name = "queue"
type = "command"
argv = ["sh", "-c", "exit 0"]
timeout = "1s"
start_period = "30s"
"#;

    #[test]
    fn a_full_health_section_parses_with_defaults() {
        let cfg = parse_str(OK).expect("valid");
        let http = cfg.http.expect("http section");
        assert_eq!(http.listen.port(), 0);
        assert!(!http.admin_tcp && http.admin.is_none());
        let ModuleConfig::Health(h) = &cfg.modules[0] else {
            panic!("{:?}", cfg.modules[0])
        };
        assert_eq!(h.probes.len(), 3);
        assert_eq!(h.probes[0].probe, ProbeType::Http);
        assert_eq!(h.probes[0].timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            (
                h.probes[0].ready_after,
                h.probes[0].degraded_after,
                h.probes[0].failed_after
            ),
            (1, 1, 3)
        );
        assert_eq!(h.probes[2].start_period, std::time::Duration::from_secs(30));
        assert_eq!(cfg.modules[0].name(), "health");
    }

    #[test]
    fn no_http_section_means_no_listener() {
        assert!(parse_str("host = \"web-01\"\n")
            .expect("valid")
            .http
            .is_none());
    }

    #[test]
    fn every_probe_problem_is_reported_with_its_key() {
        let text = r#"
host = "web-01"
[http]
listen = "nonsense"
[[modules]]
type = "health"
interval = "1s"
[[modules.probes]]
name = "bad name"
type = "http"
url = "https://example.invalid/"
address = "x:1"
timeout = "5s"
[[modules.probes]]
name = "t"
type = "tcp"
address = "no-port"
degraded_after = 3
failed_after = 2
[[modules.probes]]
name = "t"
type = "command"
argv = []
ready_after = 0
"#;
        let problems = parse_str(text).expect_err("invalid");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "http.listen",
            "modules[0].probes[0].name",
            "modules[0].probes[0].url",
            "modules[0].probes[0].address",
            "modules[0].probes[0].timeout",
            "modules[0].probes[1].address",
            "modules[0].probes[1].failed_after",
            "modules[0].probes[2].name",
            "modules[0].probes[2].argv",
            "modules[0].probes[2].ready_after",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        // Lines point into the file.
        let url = problems
            .iter()
            .find(|p| p.key == "modules[0].probes[0].url")
            .expect("url problem");
        assert_eq!(url.line, Some(11));
    }

    #[test]
    fn unknown_probe_keys_are_refused() {
        let text = "host = \"w\"\n[[modules]]\ntype = \"health\"\n[[modules.probes]]\nname = \"a\"\ntype = \"tcp\"\naddress = \"h:1\"\nport = 5\n";
        let problems = parse_str(text).expect_err("invalid");
        assert!(
            problems.iter().any(|p| p.key.contains("port")),
            "{problems:?}"
        );
    }
}
