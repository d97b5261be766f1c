//! NATS plumbing shared by the three binaries: connection settings (URLs, credentials, TLS) and
//! the idempotent create-or-verify of the JetStream topology (`OPS_EVENTS`, `OPS_CMDS`,
//! `OPS_DLQ`, KV `ops_leader`).

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use async_nats::ConnectOptions;
use opsfleet_proto::subjects;
use serde::{Deserialize, Serialize};
use tracing::info;

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

/// Shape of the JetStream topology; coordinators own it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    /// Replicas of every stream and of the KV bucket: 1 on one machine, 3 on a cluster.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// How long events stay in `OPS_EVENTS` (coordinators keep their own copy in sled).
    #[serde(default = "default_events_max_age", with = "humantime_serde")]
    pub events_max_age: Duration,
    /// Server-side dedup window for `Nats-Msg-Id`.
    #[serde(default = "default_duplicate_window", with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// How long undelivered commands are kept.
    #[serde(default = "default_commands_max_age", with = "humantime_serde")]
    pub commands_max_age: Duration,
    /// Leader lease TTL (the KV bucket's `max_age`).
    #[serde(default = "default_lease_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Fast takeover after a crash of the active: a standby takes the lease this long after
    /// the active's last renewal instead of waiting for the TTL (the active renews several
    /// times a second and promises to stop acting in time). "0s" (default) disables it: the
    /// TTL only. At least 1s and at most `lease_ttl`.
    #[serde(default, with = "humantime_serde")]
    pub takeover_after: Duration,
    /// Largest size of `OPS_EVENTS` in bytes. When it is reached the *oldest* events are
    /// deleted (discard old): agents and coordinators keep publishing, and every coordinator
    /// that is caught up already holds what goes (its sled log is the copy that matters); a
    /// coordinator far behind, or one rebuilt from the stream, sees the hole and logs it. The
    /// active coordinator's `events_stream_full` alert fires before that (docs/deployment.md).
    /// JetStream reserves this much storage when the stream is created.
    #[serde(default = "default_events_max_bytes")]
    pub events_max_bytes: u64,
    /// Largest single event the stream accepts, in bytes (the server's `max_payload`, 1 MiB by
    /// default, is the bound anyway; the largest legitimate event is a `module_state` carrying
    /// a config's TOML, a few KiB).
    #[serde(default = "default_events_max_msg_size")]
    pub events_max_msg_size: u32,
    /// Optional cap on the events kept per subject (one host's one kind, or one coordinator's
    /// one kind); the oldest of that subject go first, so a host flooding one kind shortens
    /// its own history before the byte limit shortens everyone's. Unset: no cap.
    #[serde(default)]
    pub events_max_msgs_per_subject: Option<u64>,
    /// How long a coordinator at start waits for JetStream to answer the topology requests
    /// (a fresh or restarting cluster has no meta leader until a quorum of nodes is up), retrying
    /// with backoff and logging what it waits for; then it exits with the last error.
    #[serde(default = "default_start_timeout", with = "humantime_serde")]
    pub start_timeout: Duration,
}

fn default_start_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_replicas() -> usize {
    1
}
fn default_events_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}
fn default_commands_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}
/// Shortest fast takeover: a second covers a loaded machine's scheduling stalls.
pub const MIN_TAKEOVER_AFTER: Duration = Duration::from_secs(1);

fn default_lease_ttl() -> Duration {
    Duration::from_secs(3)
}
/// Bounds of `events_max_msg_size`: an event must fit (a heartbeat with its module list is a
/// few hundred bytes), and nothing above NATS's own 64 MiB payload ceiling makes sense.
const MIN_MSG_SIZE: u32 = 4 * 1024;
const MAX_MSG_SIZE: u32 = 64 * 1024 * 1024;

fn default_events_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_events_max_msg_size() -> u32 {
    1024 * 1024
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            replicas: default_replicas(),
            events_max_age: default_events_max_age(),
            duplicate_window: default_duplicate_window(),
            commands_max_age: default_commands_max_age(),
            lease_ttl: default_lease_ttl(),
            takeover_after: Duration::ZERO,
            events_max_bytes: default_events_max_bytes(),
            events_max_msg_size: default_events_max_msg_size(),
            events_max_msgs_per_subject: None,
            start_timeout: default_start_timeout(),
        }
    }
}

impl TopologyConfig {
    /// Problems a config loader reports with its own key prefix; empty when valid.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(1..=5).contains(&self.replicas) {
            out.push(("replicas".to_owned(), "must be between 1 and 5".to_owned()));
        }
        if self.duplicate_window.is_zero() || self.duplicate_window > self.events_max_age {
            out.push((
                "duplicate_window".to_owned(),
                "must be greater than 0 and at most events_max_age".to_owned(),
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            out.push(("lease_ttl".to_owned(), "must be at least 1s".to_owned()));
        }
        let t = self.takeover_after;
        if !t.is_zero() && (t < MIN_TAKEOVER_AFTER || t > self.lease_ttl) {
            out.push((
                "takeover_after".to_owned(),
                "must be \"0s\" (off: the TTL only) or between 1s and lease_ttl".to_owned(),
            ));
        }
        let min_bytes = 16 * u64::from(self.events_max_msg_size);
        if self.events_max_bytes < min_bytes || i64::try_from(self.events_max_bytes).is_err() {
            out.push((
                "events_max_bytes".to_owned(),
                format!(
                    "must be at least 16 x events_max_msg_size ({min_bytes}) and at most 2^63-1"
                ),
            ));
        }
        if !(MIN_MSG_SIZE..=MAX_MSG_SIZE).contains(&self.events_max_msg_size) {
            out.push((
                "events_max_msg_size".to_owned(),
                format!("must be between {MIN_MSG_SIZE} and {MAX_MSG_SIZE} bytes"),
            ));
        }
        if let Some(n) = self.events_max_msgs_per_subject {
            if n == 0 || i64::try_from(n).is_err() {
                out.push((
                    "events_max_msgs_per_subject".to_owned(),
                    "must be at least 1 (leave it out for no cap)".to_owned(),
                ));
            }
        }
        out
    }

    fn events_stream(&self) -> stream::Config {
        stream::Config {
            name: subjects::EVENTS_STREAM.to_owned(),
            subjects: vec![
                subjects::EVENTS_ALL.to_owned(),
                subjects::COORD_EVENTS_ALL.to_owned(),
            ],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.replicas,
            max_age: self.events_max_age,
            max_bytes: i64::try_from(self.events_max_bytes).unwrap_or(i64::MAX),
            max_message_size: i32::try_from(self.events_max_msg_size).unwrap_or(i32::MAX),
            max_messages_per_subject: self
                .events_max_msgs_per_subject
                .map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            duplicate_window: self.duplicate_window,
            description: Some("opsfleet events from agents and coordinators".to_owned()),
            // Programs read by direct get (docs/events-api.md): the `reader` may create no
            // consumer, since NATS permissions cannot check a consumer's deliver subject.
            allow_direct: true,
            ..Default::default()
        }
    }

    fn commands_stream(&self) -> stream::Config {
        stream::Config {
            name: subjects::COMMANDS_STREAM.to_owned(),
            subjects: vec![subjects::COMMANDS_ALL.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.replicas,
            max_age: self.commands_max_age,
            duplicate_window: self.duplicate_window.min(self.commands_max_age),
            description: Some("opsfleet commands for agents".to_owned()),
            ..Default::default()
        }
    }

    fn dlq_stream(&self) -> stream::Config {
        stream::Config {
            name: subjects::DLQ_STREAM.to_owned(),
            subjects: vec![subjects::DLQ_ALL.to_owned()],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            num_replicas: self.replicas,
            max_age: self.events_max_age,
            max_messages: 100_000,
            description: Some(
                "opsfleet dead letters: malformed messages, kept for forensics".to_owned(),
            ),
            ..Default::default()
        }
    }

    fn leader_bucket(&self) -> kv::Config {
        kv::Config {
            bucket: subjects::LEADER_BUCKET.to_owned(),
            description: "opsfleet coordinator leader lease".to_owned(),
            history: 1,
            max_age: self.lease_ttl,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            // A watcher sees the lease age out as a marker, so a standby takes over at once
            // instead of at its next poll (server >= 2.11).
            limit_markers: Some(self.lease_ttl.max(Duration::from_secs(1))),
            ..Default::default()
        }
    }
}

/// Handles to the topology, once created or verified.
pub struct Topology {
    pub events: stream::Stream,
    pub commands: stream::Stream,
    pub dlq: stream::Stream,
    pub leader: kv::Store,
}

/// Creates the streams and bucket if absent. If present, checks that their shape matches
/// (storage, replicas, retention, no foreign subjects) and fails with a `StreamMismatch` naming
/// the field otherwise; subjects the stream lacks (an older deployment's `OPS_EVENTS` without
/// `ops.coord.>`) and changed limits (`max_bytes`, `max_msg_size`, per-subject cap, discard
/// policy, `allow_direct`) are applied in place. Safe to call from every coordinator at every
/// start (all coordinators must have the same `[topology]`).
pub async fn ensure_topology(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
) -> Result<Topology, BusError> {
    let events = ensure_stream(js, subjects::EVENTS_STREAM, cfg.events_stream()).await?;
    let commands = ensure_stream(js, subjects::COMMANDS_STREAM, cfg.commands_stream()).await?;
    let dlq = ensure_stream(js, subjects::DLQ_STREAM, cfg.dlq_stream()).await?;
    let leader = match js.get_key_value(subjects::LEADER_BUCKET).await {
        Ok(store) => store,
        Err(_) => js
            .create_key_value(cfg.leader_bucket())
            .await
            .map_err(|e| BusError::Bucket {
                bucket: subjects::LEADER_BUCKET,
                source: e.into(),
            })?,
    };
    Ok(Topology {
        events,
        commands,
        dlq,
        leader,
    })
}

async fn ensure_stream(
    js: &jetstream::Context,
    name: &'static str,
    want: stream::Config,
) -> Result<stream::Stream, BusError> {
    let err = |e: async_nats::Error| BusError::Stream {
        stream: name,
        source: e,
    };
    let mut stream = js
        .get_or_create_stream(want.clone())
        .await
        .map_err(|e| err(e.into()))?;
    let info = stream.info().await.map_err(|e| err(e.into()))?;
    if let Some(update) = plan_update(name, &want, &info.config)? {
        info!(
            stream = name,
            subjects = ?update.subjects,
            max_bytes = update.max_bytes,
            max_msg_size = update.max_message_size,
            max_msgs_per_subject = update.max_messages_per_subject,
            allow_direct = update.allow_direct,
            "updating the stream to this deployment's subjects and limits"
        );
        js.update_stream(&update).await.map_err(|e| err(e.into()))?;
        stream = js.get_stream(name).await.map_err(|e| err(e.into()))?;
    }
    Ok(stream)
}

/// A JetStream limit with "unlimited" in one spelling (the server stores 0 as -1).
fn limit(v: i64) -> i64 {
    if v <= 0 {
        -1
    } else {
        v
    }
}

/// What an existing stream needs (pure): `None` when it matches, `Some(config)` to update it
/// in place (missing subjects added, limits set), or a `StreamMismatch` for what an update
/// must not change (storage, replicas, retention, a subject this deployment does not use).
fn plan_update(
    stream: &'static str,
    want: &stream::Config,
    have: &stream::Config,
) -> Result<Option<stream::Config>, BusError> {
    let mismatch = |field: &'static str, expected: String, found: String| {
        Err(BusError::StreamMismatch {
            stream,
            field,
            expected,
            found,
        })
    };
    if have.subjects.iter().any(|s| !want.subjects.contains(s)) {
        return mismatch(
            "subjects",
            format!("{:?}", want.subjects),
            format!("{:?}", have.subjects),
        );
    }
    if want.storage != have.storage {
        return mismatch(
            "storage",
            format!("{:?}", want.storage),
            format!("{:?}", have.storage),
        );
    }
    if want.num_replicas != have.num_replicas {
        return mismatch(
            "replicas",
            want.num_replicas.to_string(),
            have.num_replicas.to_string(),
        );
    }
    if want.retention != have.retention {
        return mismatch(
            "retention",
            format!("{:?}", want.retention),
            format!("{:?}", have.retention),
        );
    }
    let same = want.subjects.len() == have.subjects.len()
        && limit(want.max_bytes) == limit(have.max_bytes)
        && limit(i64::from(want.max_message_size)) == limit(i64::from(have.max_message_size))
        && limit(want.max_messages_per_subject) == limit(have.max_messages_per_subject)
        && want.discard == have.discard
        && want.allow_direct == have.allow_direct;
    if same {
        return Ok(None);
    }
    let mut update = have.clone();
    update.subjects = want.subjects.clone();
    update.max_bytes = want.max_bytes;
    update.max_message_size = want.max_message_size;
    update.max_messages_per_subject = want.max_messages_per_subject;
    update.discard = want.discard;
    update.allow_direct = want.allow_direct;
    Ok(Some(update))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(NatsConfig::default().problems().is_empty());
        assert!(TopologyConfig::default().problems().is_empty());
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

    #[test]
    fn stream_mismatch_names_the_field() {
        let cfg = TopologyConfig::default();
        let want = cfg.events_stream();
        let mut have = want.clone();
        have.num_replicas = 3;
        let err = plan_update("OPS_EVENTS", &want, &have).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("replicas = 3"), "{text}");
        assert!(text.contains("expects 1"), "{text}");
        let mut foreign = want.clone();
        foreign.subjects.push("other.>".into());
        let err = plan_update("OPS_EVENTS", &want, &foreign).unwrap_err();
        assert!(err.to_string().contains("subjects"), "{err}");
    }

    #[test]
    fn an_older_events_stream_gains_the_coordinator_space_and_the_limits() {
        let want = TopologyConfig::default().events_stream();
        // What the server reports for a stream created before this deployment's limits.
        let mut old = want.clone();
        old.subjects = vec![subjects::EVENTS_ALL.to_owned()];
        old.max_bytes = -1;
        old.max_message_size = -1;
        old.max_messages_per_subject = -1;
        old.description = Some("kept".into());
        let update = plan_update("OPS_EVENTS", &want, &old)
            .expect("an update, not a mismatch")
            .expect("something to update");
        assert_eq!(
            update.subjects,
            [subjects::EVENTS_ALL, subjects::COORD_EVENTS_ALL]
        );
        assert_eq!(update.max_bytes, want.max_bytes);
        assert_eq!(update.max_message_size, want.max_message_size);
        assert_eq!(update.description.as_deref(), Some("kept"));
        // The server's spelling of "unlimited" matches ours: nothing to do.
        let mut current = want.clone();
        current.max_messages_per_subject = -1;
        assert!(plan_update("OPS_EVENTS", &want, &current)
            .expect("no mismatch")
            .is_none());
    }

    #[test]
    fn the_events_stream_allows_direct_get_and_an_older_one_gains_it() {
        let want = TopologyConfig::default().events_stream();
        assert!(want.allow_direct, "programs read OPS_EVENTS by direct get");
        let mut old = want.clone();
        old.allow_direct = false;
        let update = plan_update("OPS_EVENTS", &want, &old)
            .expect("an update, not a mismatch")
            .expect("something to update");
        assert!(update.allow_direct);
        // The other streams are not read by direct get; they keep it off.
        assert!(!TopologyConfig::default().commands_stream().allow_direct);
        assert!(!TopologyConfig::default().dlq_stream().allow_direct);
    }

    #[test]
    fn takeover_after_is_off_or_between_one_second_and_the_ttl() {
        let problems = |takeover_after: u64| {
            TopologyConfig {
                takeover_after: Duration::from_millis(takeover_after),
                ..Default::default()
            }
            .problems()
        };
        assert!(problems(0).is_empty());
        assert!(problems(1000).is_empty());
        assert!(problems(3000).is_empty());
        for bad in [150, 999, 3001] {
            let p = problems(bad);
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert_eq!(p[0].0, "takeover_after");
        }
    }

    #[test]
    fn limits_are_validated() {
        let cfg = TopologyConfig {
            events_max_bytes: 100,
            events_max_msg_size: 10,
            events_max_msgs_per_subject: Some(0),
            ..Default::default()
        };
        let keys: Vec<String> = cfg.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "events_max_bytes",
                "events_max_msg_size",
                "events_max_msgs_per_subject"
            ]
        );
    }
}
