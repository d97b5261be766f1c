//! The JetStream topology coordinators own: its config (`[topology]`), the stream and bucket
//! shapes it asks for, and the idempotent create-or-verify at start-up (what may be updated in
//! place, what is refused as a mismatch).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use opsfleet_proto::subjects;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::BusError;

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

/// `OPS_CMDS`'s own consumer limit: it holds one durable consumer per agent. nats-server 2.15
/// caps every stream that sets no limit of its own at 1,000 consumers (its
/// `default_max_consumers`; "unlimited", -1 or 0, means that default), which would leave the
/// 1,001st host without commands. The fleet's size is bounded elsewhere (the coordinators'
/// per-host state), so the stream states the largest limit the API takes.
pub const COMMAND_CONSUMERS: i32 = i32::MAX;

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
            max_consumers: COMMAND_CONSUMERS,
            // Each stored command, at once and in stream order, to the agents' fast path.
            republish: Some(stream::Republish {
                source: subjects::COMMAND_COPIES_FROM.to_owned(),
                destination: subjects::COMMAND_COPIES_TO.to_owned(),
                headers_only: false,
            }),
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
/// policy, `allow_direct`) are applied in place. An existing lease bucket whose `max_age` is
/// shorter than `lease_ttl` is raised to it (see [`plan_lease_age`]). Safe to call from every
/// coordinator at every start (all coordinators must have the same `[topology]`).
pub async fn ensure_topology(
    js: &jetstream::Context,
    cfg: &TopologyConfig,
) -> Result<Topology, BusError> {
    let events = ensure_stream(js, subjects::EVENTS_STREAM, cfg.events_stream()).await?;
    let commands = ensure_stream(js, subjects::COMMANDS_STREAM, cfg.commands_stream()).await?;
    let dlq = ensure_stream(js, subjects::DLQ_STREAM, cfg.dlq_stream()).await?;
    let leader = match js.get_key_value(subjects::LEADER_BUCKET).await {
        Ok(store) => {
            ensure_lease_age(js, cfg.lease_ttl).await?;
            store
        }
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

/// What an existing lease bucket's `max_age` needs against this coordinator's `lease_ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAge {
    /// The bucket keeps a lease exactly `lease_ttl`.
    Same,
    /// The bucket drops a lease sooner than `lease_ttl` (a bucket made under a shorter TTL):
    /// a holder under this config would go on acting after the server dropped its lease, and a
    /// standby could create the key meanwhile — two actives. Raise `max_age` to `lease_ttl`.
    Raise,
    /// The bucket keeps a lease longer than `lease_ttl` (or forever, `max_age` 0): safe, a
    /// holder stops acting before the server drops its lease, but a dead holder is taken over
    /// only when the bucket drops it. Lowering it in place is not safe while a coordinator
    /// under the longer TTL may hold the lease, so it is left and reported.
    Longer,
}

/// Pure: compares the bucket's `max_age` (`have`; zero = unlimited) with `lease_ttl`.
/// Raising is the one safe direction: a holder stops acting at its own TTL after its last
/// write, and a standby without a fast-takeover promise only `create`s once the server dropped
/// the key, so a longer `max_age` delays a takeover and never lets two act.
pub fn plan_lease_age(lease_ttl: Duration, have: Duration) -> LeaseAge {
    if have.is_zero() || have > lease_ttl {
        LeaseAge::Longer
    } else if have < lease_ttl {
        LeaseAge::Raise
    } else {
        LeaseAge::Same
    }
}

/// Checks the existing lease bucket's `max_age` against `lease_ttl` and raises it when it is
/// shorter (see [`plan_lease_age`]).
async fn ensure_lease_age(js: &jetstream::Context, lease_ttl: Duration) -> Result<(), BusError> {
    let name = format!("KV_{}", subjects::LEADER_BUCKET);
    let err = |e: async_nats::Error| BusError::Bucket {
        bucket: subjects::LEADER_BUCKET,
        source: e,
    };
    let mut stream = js.get_stream(&name).await.map_err(|e| err(e.into()))?;
    let have = stream
        .info()
        .await
        .map_err(|e| err(e.into()))?
        .config
        .clone();
    match plan_lease_age(lease_ttl, have.max_age) {
        LeaseAge::Same => {}
        LeaseAge::Raise => {
            info!(
                bucket = subjects::LEADER_BUCKET,
                max_age = ?have.max_age,
                lease_ttl = ?lease_ttl,
                "raising the lease bucket's max_age to lease_ttl"
            );
            let update = stream::Config {
                max_age: lease_ttl,
                ..have
            };
            js.update_stream(&update).await.map_err(|e| err(e.into()))?;
        }
        LeaseAge::Longer => {
            tracing::warn!(
                bucket = subjects::LEADER_BUCKET,
                max_age = ?have.max_age,
                lease_ttl = ?lease_ttl,
                "the lease bucket keeps a lease longer than lease_ttl: a dead holder is taken over only when the bucket drops it"
            );
        }
    }
    Ok(())
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
        if let Some(had) = info
            .config
            .republish
            .as_ref()
            .filter(|_| info.config.republish != want.republish)
        {
            // A stream has one RePublish; an operator's own (a monitoring tap) is replaced.
            tracing::warn!(stream = name, src = %had.source, dest = %had.destination, "replacing the stream's republish with the agents' command fast path");
        }
        info!(
            stream = name,
            subjects = ?update.subjects,
            max_bytes = update.max_bytes,
            max_msg_size = update.max_message_size,
            max_msgs_per_subject = update.max_messages_per_subject,
            allow_direct = update.allow_direct,
            republish = ?update.republish,
            max_consumers = update.max_consumers,
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
        && want.allow_direct == have.allow_direct
        && want.republish == have.republish
        && (want.max_consumers <= 0 || want.max_consumers == have.max_consumers);
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
    update.republish = want.republish.clone();
    if want.max_consumers > 0 {
        update.max_consumers = want.max_consumers;
    }
    Ok(Some(update))
}

#[cfg(test)]
mod tests;
