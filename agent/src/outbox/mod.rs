//! The durable outbox: events are numbered (gap-free `seq`), written to sled and flushed before
//! anything publishes them, and deleted only after their PubAck. Overflow is counted and
//! reported later as one `events_dropped` event.
//!
//! This file owns the store's layout, types and opening; `append` owns the writer's side
//! (group appends, drop accounting, module state), `drain` the publisher's side (reading,
//! removing acknowledged events, flushing), `control_store` the control records.

mod append;
mod control_store;
mod drain;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use opsfleet_proto::{pb, WireError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const EVENT_PREFIX: &[u8] = b"e/";
const META_LAST_SEQ: &[u8] = b"m/last_seq";
const META_INCARNATION: &[u8] = b"m/incarnation";
const META_DROPS: &[u8] = b"m/drops";
/// Module state: `s/<module>/<key>` (module names are subject tokens, so never contain `/`).
const STATE_PREFIX: &str = "s/";

/// sled's page cache bound; the agent is meant to stay around 10 MB RSS.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Errors of the outbox store; each names the database path.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {} is locked by another process (is ops-agent still running?)", path.display())]
    Locked {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("no outbox at {}", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot {op} outbox {}", path.display())]
    Store {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("outbox {} has a corrupt value at key {key}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("outbox {} holds an undecodable event at seq {seq}", path.display())]
    BadEvent {
        path: PathBuf,
        seq: u64,
        #[source]
        source: WireError,
    },
}

/// One observation handed to the outbox; it gets its id, seq and incarnation there.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Module instance name (the envelope's `module`).
    pub module: String,
    pub time_unix_ms: i64,
    pub body: pb::event::Body,
}

/// One module-state change committed with a group of events (see `Module::take_state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    /// Module instance name.
    pub module: String,
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

fn state_key(module: &str, key: &str) -> String {
    format!("{STATE_PREFIX}{module}/{key}")
}

/// An event waiting for its PubAck.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: u64,
    /// Event id, also the `Nats-Msg-Id`.
    pub id: String,
    pub subject: String,
    pub bytes: Bytes,
}

/// What one `append` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Seqs written (including an `events_dropped` event), in order.
    pub seqs: Vec<u64>,
    /// Events not written because the outbox was full.
    pub dropped: u64,
    /// Whether an `events_dropped` event was written in this group.
    pub reported_drops: bool,
}

/// `ops-agent outbox` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxSummary {
    pub host: String,
    pub incarnation: String,
    pub last_seq: u64,
    pub pending: u64,
}

/// Drops not yet reported; persisted so a restart does not hide them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Drops {
    count: u64,
    by_module: BTreeMap<String, u64>,
    first_unix_ms: i64,
    last_unix_ms: i64,
}

impl Drops {
    fn record(&mut self, module: &str, at_ms: i64) {
        if self.count == 0 {
            self.first_unix_ms = at_ms;
        }
        self.count += 1;
        self.last_unix_ms = self.last_unix_ms.max(at_ms);
        *self.by_module.entry(module.to_owned()).or_insert(0) += 1;
    }

    fn into_body(self) -> pb::event::Body {
        pb::event::Body::EventsDropped(pb::EventsDropped {
            count: self.count,
            by_module: self.by_module,
            first_dropped_unix_ms: self.first_unix_ms,
            last_dropped_unix_ms: self.last_unix_ms,
        })
    }
}

struct State {
    last_seq: u64,
    drops: Drops,
}

/// The sled-backed outbox of one agent. One writer appends; one publisher reads and removes.
pub struct Outbox {
    db: sled::Db,
    path: PathBuf,
    host: String,
    incarnation: Uuid,
    max_events: u64,
    state: Mutex<State>,
    pending: AtomicU64,
    /// Highest seq known to be flushed; only events up to it are handed to the publisher.
    durable_seq: AtomicU64,
}

fn event_key(seq: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[..2].copy_from_slice(EVENT_PREFIX);
    key[2..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of_key(path: &Path, key: &[u8]) -> Result<u64, OutboxError> {
    let raw: [u8; 8] = key
        .get(2..)
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| OutboxError::Corrupt {
            path: path.to_owned(),
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "event key is not e/<u64>".to_owned(),
        })?;
    Ok(u64::from_be_bytes(raw))
}

impl Outbox {
    /// Opens (creating if needed) the outbox at `path` (normally `data_dir/agent.sled`).
    pub fn open(path: &Path, host: &str, max_events: u64) -> Result<Self, OutboxError> {
        let db = open_sled(path)?;
        let store = |op: &'static str| {
            let path = path.to_owned();
            move |source| OutboxError::Store { path, op, source }
        };
        let incarnation = match db.get(META_INCARNATION).map_err(store("read"))? {
            Some(raw) => std::str::from_utf8(&raw)
                .ok()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| OutboxError::Corrupt {
                    path: path.to_owned(),
                    key: "m/incarnation".to_owned(),
                    reason: "not a UUID".to_owned(),
                })?,
            None => {
                let id = Uuid::now_v7();
                db.insert(META_INCARNATION, id.to_string().as_bytes())
                    .map_err(store("write"))?;
                db.flush().map_err(store("flush"))?;
                id
            }
        };
        let mut last_seq = match db.get(META_LAST_SEQ).map_err(store("read"))? {
            Some(raw) => {
                let b: [u8; 8] = raw.as_ref().try_into().map_err(|_| OutboxError::Corrupt {
                    path: path.to_owned(),
                    key: "m/last_seq".to_owned(),
                    reason: "not a big-endian u64".to_owned(),
                })?;
                u64::from_be_bytes(b)
            }
            None => 0,
        };
        let mut pending = 0u64;
        for kv in db.scan_prefix(EVENT_PREFIX).keys() {
            let key = kv.map_err(store("scan"))?;
            // Never reuse a seq that is still stored, even if the meta key lagged.
            last_seq = last_seq.max(seq_of_key(path, &key)?);
            pending += 1;
        }
        let drops = match db.get(META_DROPS).map_err(store("read"))? {
            Some(raw) => serde_json::from_slice(&raw).map_err(|e| OutboxError::Corrupt {
                path: path.to_owned(),
                key: "m/drops".to_owned(),
                reason: e.to_string(),
            })?,
            None => Drops::default(),
        };
        Ok(Outbox {
            db,
            path: path.to_owned(),
            host: host.to_owned(),
            incarnation,
            max_events: max_events.max(1),
            state: Mutex::new(State { last_seq, drops }),
            pending: AtomicU64::new(pending),
            durable_seq: AtomicU64::new(last_seq),
        })
    }

    /// Opens an outbox that must already exist (for inspection).
    pub fn open_existing(path: &Path, host: &str) -> Result<Self, OutboxError> {
        if !path.exists() {
            return Err(OutboxError::NotFound {
                path: path.to_owned(),
            });
        }
        Self::open(path, host, u64::MAX)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Created with the store, never changes.
    pub fn incarnation(&self) -> Uuid {
        self.incarnation
    }

    /// Highest seq ever assigned (0 for a new store).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    /// Events written but not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Drops counted but not yet reported by an `events_dropped` event.
    pub fn unreported_drops(&self) -> u64 {
        self.lock().drops.count
    }

    pub fn summary(&self) -> OutboxSummary {
        OutboxSummary {
            host: self.host.clone(),
            incarnation: self.incarnation.to_string(),
            last_seq: self.last_seq(),
            pending: self.pending(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain counters; a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store_err(&self, op: &'static str) -> impl FnOnce(sled::Error) -> OutboxError {
        let path = self.path.clone();
        move |source| OutboxError::Store { path, op, source }
    }
}

/// How long `open` waits for a file lock that is being released.
const LOCK_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the sled store. sled 0.34 releases its file lock when its background flusher lets go
/// of the database, shortly after the last handle is dropped; a reopen in the same process
/// (after a reconfigure, in tests) waits up to `LOCK_RELEASE_WAIT` for that. A lock that is
/// really held (another agent) is still reported as `Locked`.
fn open_sled(path: &Path) -> Result<sled::Db, OutboxError> {
    let deadline = std::time::Instant::now() + LOCK_RELEASE_WAIT;
    loop {
        let result = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|source| open_error(path, source));
        match result {
            Err(OutboxError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open_error(path: &Path, source: sled::Error) -> OutboxError {
    let locked =
        matches!(&source, sled::Error::Io(e) if e.to_string().contains("could not acquire lock"));
    if locked {
        OutboxError::Locked {
            path: path.to_owned(),
            source,
        }
    } else {
        OutboxError::Store {
            path: path.to_owned(),
            op: "open",
            source,
        }
    }
}

#[cfg(test)]
mod tests;
