//! NATS plumbing shared by the three binaries: connection settings (URLs, credentials, TLS),
//! connecting, and this layer's errors. `topology` owns the idempotent create-or-verify of the
//! JetStream topology (`OPS_EVENTS`, `OPS_CMDS`, `OPS_DLQ`, KV `ops_leader`).

mod topology;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::ConnectOptions;
use serde::{Deserialize, Serialize};

/// `[nats]` section shared by agent and coordinator configs; opsctl fills it from flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs; the client fails over between them.
    #[serde(default = "default_urls")]
    pub urls: Vec<String>,
    /// A NATS `.creds` file (JWT + nkey seed) identifying this process.
    #[serde(default)]
    pub creds: Option<PathBuf>,
    /// A file holding this identity's nkey seed (`SU...`), for servers that list users by
    /// public nkey (the shipped `deploy/nats/auth.conf`).
    #[serde(default)]
    pub nkey: Option<PathBuf>,
    /// Prefix of this client's reply subjects (default `_INBOX`). Per-role permissions let an
    /// identity subscribe only to its own prefix, e.g. `_INBOX.web-01`.
    #[serde(default)]
    pub inbox_prefix: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How long a request (PubAck, API call) may take before it counts as failed.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// TLS to NATS with rustls. `ca` pins the server's CA; `cert` + `key` enable mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

fn default_urls() -> Vec<String> {
    vec!["nats://127.0.0.1:4222".to_owned()]
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            urls: default_urls(),
            creds: None,
            nkey: None,
            inbox_prefix: None,
            tls: None,
            request_timeout: default_request_timeout(),
        }
    }
}

impl NatsConfig {
    /// Problems a config loader reports with its own key prefix; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.urls.is_empty() {
            out.push((
                "urls".to_owned(),
                "at least one server URL is needed".to_owned(),
            ));
        }
        for (i, url) in self.urls.iter().enumerate() {
            if url.parse::<async_nats::ServerAddr>().is_err() {
                out.push((
                    format!("urls[{i}]"),
                    format!("not a NATS server URL: {url:?}"),
                ));
            }
        }
        if self.creds.is_some() && self.nkey.is_some() {
            out.push((
                "nkey".to_owned(),
                "`creds` and `nkey` are two ways to identify; give one".to_owned(),
            ));
        }
        if let Some(prefix) = &self.inbox_prefix {
            let bad = prefix.is_empty()
                || prefix.starts_with('.')
                || prefix.ends_with('.')
                || prefix.contains(['*', '>', ' ', '\t'])
                || prefix.contains("..");
            if bad {
                out.push((
                    "inbox_prefix".to_owned(),
                    format!("not a subject prefix: {prefix:?} (e.g. \"_INBOX.web-01\")"),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.cert.is_some() != tls.key.is_some() {
                out.push((
                    "tls".to_owned(),
                    "`cert` and `key` go together (mutual TLS needs both)".to_owned(),
                ));
            }
        }
        if self.request_timeout.is_zero() {
            out.push((
                "request_timeout".to_owned(),
                "must be greater than 0".to_owned(),
            ));
        }
        out
    }
}

/// Errors of this layer; each names the server, stream or bucket involved.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {urls}")]
    Connect {
        urls: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("cannot read the nkey seed file {path}")]
    Nkey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read NATS credentials file {path}")]
    Creds {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create or read stream {stream}")]
    Stream {
        stream: &'static str,
        #[source]
        source: async_nats::Error,
    },
    #[error("stream {stream} exists with {field} = {found}, but this deployment expects {expected}; fix the config or migrate the stream")]
    StreamMismatch {
        stream: &'static str,
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("cannot create or open KV bucket {bucket}")]
    Bucket {
        bucket: &'static str,
        #[source]
        source: async_nats::Error,
    },
}

impl BusError {
    /// Whether waiting may cure this: a JetStream request on the topology that timed out or
    /// found JetStream not ready (no meta leader yet, too few peers for the replicas asked,
    /// the system temporarily unavailable) — what a cluster whose nodes are still starting
    /// answers. A stream of another shape, a refused or unreadable credential, or any other
    /// API error is not: waiting would not change it.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            BusError::Stream { source, .. } | BusError::Bucket { source, .. } => source,
            _ => return false,
        };
        transient_jetstream_error(&opsfleet_report::error_chain(source.as_ref()))
    }
}

/// The wordings of JetStream's "not ready yet" answers (see [`BusError::is_transient`]). Pure.
pub fn transient_jetstream_error(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "timed out",
        "timeout",
        "no responders",
        "temporarily unavailable",
        "no suitable peers",
        "leader not found",
        "no leader",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// Whether `connect` waits for the first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// Return at once and connect in the background (agents: the outbox keeps events meanwhile).
    Background,
    /// Fail if no server answers now (opsctl, coordinators at start).
    FailFast,
}

/// Connects with the given identity. Reconnects forever once connected.
pub async fn connect(
    cfg: &NatsConfig,
    client_name: &str,
    mode: ConnectMode,
) -> Result<async_nats::Client, BusError> {
    connect_with(cfg, client_name, mode, |opts| opts).await
}

/// `connect`, with `extra` applied to the options first (e.g. an event callback that sees the
/// server's permission violations).
pub async fn connect_with(
    cfg: &NatsConfig,
    client_name: &str,
    mode: ConnectMode,
    extra: impl FnOnce(ConnectOptions) -> ConnectOptions,
) -> Result<async_nats::Client, BusError> {
    let mut opts = extra(ConnectOptions::new())
        .name(client_name)
        .max_reconnects(None)
        .request_timeout(Some(cfg.request_timeout))
        .connection_timeout(Duration::from_secs(5))
        // Back off to at most 1 s between reconnect attempts: an outage ends, we want to
        // notice quickly.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64 * 100).min(1_000))
        });
    if let Some(path) = &cfg.creds {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|source| BusError::Creds {
                path: path.clone(),
                source,
            })?;
    }
    if let Some(path) = &cfg.nkey {
        let seed = std::fs::read_to_string(path).map_err(|source| BusError::Nkey {
            path: path.clone(),
            source,
        })?;
        opts = opts.nkey(seed.trim().to_owned());
    }
    if let Some(prefix) = &cfg.inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix.clone());
    }
    if let Some(tls) = &cfg.tls {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
    }
    if mode == ConnectMode::Background {
        opts = opts.retry_on_initial_connect();
    }
    let addrs: Vec<async_nats::ServerAddr> =
        cfg.urls.iter().filter_map(|u| u.parse().ok()).collect();
    opts.connect(addrs.as_slice())
        .await
        .map_err(|source| BusError::Connect {
            urls: cfg.urls.join(","),
            source,
        })
}

/// JetStream context with this config's request timeout.
pub fn jetstream(client: async_nats::Client, cfg: &NatsConfig) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(cfg.request_timeout);
    js
}

pub use topology::{
    ensure_topology, plan_lease_age, LeaseAge, Topology, TopologyConfig, COMMAND_CONSUMERS,
    MIN_TAKEOVER_AFTER,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(NatsConfig::default().problems().is_empty());
        assert!(topology::TopologyConfig::default().problems().is_empty());
    }

    #[test]
    fn problems_name_the_key() {
        let cfg = NatsConfig {
            urls: vec!["nats://ok:4222".into(), "::::".into()],
            tls: Some(TlsConfig {
                ca: None,
                cert: Some("c.pem".into()),
                key: None,
            }),
            ..Default::default()
        };
        let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["urls[1]", "tls"]);
    }

    #[test]
    fn identity_problems_name_the_key() {
        let cfg = NatsConfig {
            creds: Some("a.creds".into()),
            nkey: Some("a.nk".into()),
            inbox_prefix: Some("_INBOX.>".into()),
            ..Default::default()
        };
        let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["nkey", "inbox_prefix"]);
        let ok = NatsConfig {
            nkey: Some("a.nk".into()),
            inbox_prefix: Some("_INBOX.web-01".into()),
            ..Default::default()
        };
        assert!(ok.problems().is_empty());
    }
}
