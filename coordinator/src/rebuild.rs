//! Offline tools over a stopped coordinator's store: refold the projections from the log
//! (`rebuild`) and list the log (`dump-log`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::projection::{digest_rows, fold_version, Fleet, FOLD_VERSION, FOLD_VERSION_KEY};
use crate::snapshot::{fold_into, TailError};
use crate::store::{EventStore, StoreError};
use opsfleet_proto::{EventEnvelope, WireError};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot read the store")]
    Store(#[from] StoreError),
    #[error("log entry at stream sequence {stream_seq} is not a valid event")]
    Corrupt {
        stream_seq: u64,
        #[source]
        source: WireError,
    },
}

/// What `rebuild` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    /// Digest of the projection folded from the log.
    pub digest: String,
    /// Digest of the projection the store held before: its rows, with those changed by the
    /// log after the last snapshot folded in (what a coordinator loads at start).
    pub stored_digest: String,
    pub events: u64,
    pub hosts: usize,
    pub matches: bool,
    /// Whether the rebuilt projection was written to the store.
    pub written: bool,
    /// The fold version that wrote the stored rows (`projection::FOLD_VERSION` is this
    /// build's; an older one differs by design and is refolded when a coordinator starts).
    pub stored_fold_version: u64,
}

impl RebuildReport {
    /// The stored rows were written by an older fold, so a difference is expected.
    pub fn older_fold(&self) -> bool {
        self.stored_fold_version < FOLD_VERSION
    }
}

/// Folds the whole log into a fresh fleet.
pub fn fold_log(store: &dyn EventStore) -> Result<(Fleet, u64), RebuildError> {
    fold_log_upto(store, u64::MAX)
}

/// Folds the log entries up to stream sequence `upto` (inclusive) into a fresh fleet.
pub fn fold_log_upto(store: &dyn EventStore, upto: u64) -> Result<(Fleet, u64), RebuildError> {
    let mut fleet = Fleet::new();
    let mut events = 0;
    for entry in store.log_from(0) {
        let (stream_seq, bytes) = entry?;
        if stream_seq > upto {
            break;
        }
        let ev = EventEnvelope::decode(&bytes)
            .map_err(|source| RebuildError::Corrupt { stream_seq, source })?;
        fleet.apply(&ev);
        events += 1;
    }
    Ok((fleet, events))
}

/// What `digest-at` found: the digest of the log's fold up to a stream sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixReport {
    pub upto_stream_seq: u64,
    pub digest: String,
    pub events: u64,
    pub hosts: usize,
}

/// The digest of the projection folded from the log up to stream sequence `upto`: two
/// coordinators that persisted the same stream agree on it, whatever each persisted since
/// (e.g. the events of their own shutdown). Reads only.
pub fn digest_at(store: &dyn EventStore, upto: u64) -> Result<PrefixReport, RebuildError> {
    let (fleet, events) = fold_log_upto(store, upto)?;
    Ok(PrefixReport {
        upto_stream_seq: upto,
        digest: fleet.digest(),
        events,
        hosts: fleet.len(),
    })
}

/// Refolds the projection from the log and compares its digest with the stored one; with
/// `write`, replaces the stored rows with the refolded ones.
pub fn rebuild(store: &dyn EventStore, write: bool) -> Result<RebuildReport, RebuildError> {
    let stored_fold_version = fold_version(&store.rows()?);
    let stored_digest = loaded_digest(store)?;
    let (fleet, events) = fold_log(store)?;
    let digest = fleet.digest();
    let matches = digest == stored_digest;
    let written = write && !matches;
    if written {
        store.replace_rows(fleet.stored_rows())?;
    }
    Ok(RebuildReport {
        digest,
        stored_digest,
        events,
        hosts: fleet.len(),
        matches,
        written,
        stored_fold_version,
    })
}

/// Digest of the stored rows after the snapshot's tail is folded in. Rows the tail does not
/// touch are compared byte for byte as stored; unreadable rows are left as they are (and so
/// do not match the refold).
fn loaded_digest(store: &dyn EventStore) -> Result<String, RebuildError> {
    let stored = store.rows()?;
    let rows_at = store.rows_at()?;
    let mut merged: BTreeMap<String, Vec<u8>> = stored
        .iter()
        .filter(|(k, _)| k != FOLD_VERSION_KEY)
        .cloned()
        .collect();
    if rows_at < store.applied_stream_seq()? {
        if let Ok(mut fleet) = Fleet::from_rows(stored) {
            fold_into(&mut fleet, store, rows_at + 1).map_err(|e| match e {
                TailError::Store(e) => RebuildError::Store(e),
                TailError::Log { stream_seq, source } => {
                    RebuildError::Corrupt { stream_seq, source }
                }
            })?;
            for (key, value) in fleet.take_dirty_rows() {
                if value.is_empty() {
                    merged.remove(&key);
                } else {
                    merged.insert(key, value);
                }
            }
        }
    }
    Ok(digest_rows(
        merged.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
    ))
}

/// One log entry as `dump-log` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub stream_seq: u64,
    pub id: String,
    pub host: String,
    pub incarnation: String,
    pub seq: u64,
    pub module: String,
    pub kind: &'static str,
    pub time_unix_ms: i64,
}

/// Calls `each` for every log entry, in stream order.
pub fn dump_log(
    store: &dyn EventStore,
    mut each: impl FnMut(LogLine) -> std::io::Result<()>,
) -> Result<u64, DumpError> {
    let mut n = 0;
    for entry in store.log_from(0) {
        let (stream_seq, bytes) = entry.map_err(RebuildError::from)?;
        let ev = EventEnvelope::decode(&bytes)
            .map_err(|source| RebuildError::Corrupt { stream_seq, source })?;
        each(LogLine {
            stream_seq,
            id: ev.id.to_string(),
            host: ev.host.clone(),
            incarnation: ev.incarnation.to_string(),
            seq: ev.seq,
            module: ev.module.clone(),
            kind: ev.kind(),
            time_unix_ms: ev.time_unix_ms,
        })
        .map_err(DumpError::Write)?;
        n += 1;
    }
    Ok(n)
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Read(#[from] RebuildError),
    #[error("cannot write output")]
    Write(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Commit, MemStore};
    use opsfleet_proto::pb;
    use uuid::Uuid;

    fn ev(host: &str, seq: u64) -> EventEnvelope {
        EventEnvelope {
            id: Uuid::now_v7(),
            host: host.into(),
            seq,
            time_unix_ms: seq as i64,
            module: "heartbeat".into(),
            incarnation: Uuid::from_u128(7),
            body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
        }
    }

    #[test]
    fn rebuild_reproduces_the_live_digest_and_repairs_a_damaged_projection() {
        let store = MemStore::new();
        let mut live = Fleet::new();
        let mut stream_seq = 0;
        for seq in 1..=20 {
            for host in ["web-01", "db-01"] {
                stream_seq += 1;
                let e = ev(host, seq);
                live.apply(&e);
                store
                    .commit(&Commit {
                        log: vec![(stream_seq, e.encode_to_vec().into())],
                        rows: live.take_dirty_rows(),
                        applied_stream_seq: stream_seq,
                        snapshot: true,
                    })
                    .unwrap();
            }
        }
        let report = rebuild(&store, false).unwrap();
        assert!(report.matches);
        assert_eq!(report.digest, live.digest());
        assert_eq!((report.events, report.hosts), (40, 2));

        // Damage the stored projection: verify notices, rebuild repairs.
        store
            .replace_rows(vec![("host/web-01".into(), b"{}".to_vec())])
            .unwrap();
        let report = rebuild(&store, false).unwrap();
        assert!(!report.matches && !report.written);
        let report = rebuild(&store, true).unwrap();
        assert!(report.written);
        assert!(rebuild(&store, false).unwrap().matches);
    }

    #[test]
    fn two_logs_agree_at_a_common_stream_sequence_whatever_follows() {
        // Two coordinators persisted the same stream; one of them also its own shutdown.
        let (shorter, longer) = (MemStore::new(), MemStore::new());
        let mut at_10 = Fleet::new();
        for (stream_seq, seq) in (1..=10).zip(1..) {
            let e = ev("web-01", seq);
            at_10.apply(&e);
            for store in [&shorter, &longer] {
                store
                    .commit(&Commit {
                        log: vec![(stream_seq, e.encode_to_vec().into())],
                        rows: vec![],
                        applied_stream_seq: stream_seq,
                        snapshot: false,
                    })
                    .unwrap();
            }
        }
        longer
            .commit(&Commit {
                log: vec![(11, ev("db-01", 1).encode_to_vec().into())],
                rows: vec![],
                applied_stream_seq: 11,
                snapshot: false,
            })
            .unwrap();
        let (a, b) = (
            digest_at(&shorter, 10).unwrap(),
            digest_at(&longer, 10).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(
            (a.digest.as_str(), a.events, a.hosts),
            (at_10.digest().as_str(), 10, 1)
        );
        assert_ne!(digest_at(&longer, 11).unwrap().digest, a.digest);
        assert_eq!(
            digest_at(&longer, 11).unwrap().digest,
            rebuild(&longer, false).unwrap().digest
        );
    }

    #[test]
    fn dump_lists_entries_in_stream_order() {
        let store = MemStore::new();
        store
            .commit(&Commit {
                log: vec![
                    (3, ev("web-01", 1).encode_to_vec().into()),
                    (9, ev("web-01", 2).encode_to_vec().into()),
                ],
                rows: vec![],
                applied_stream_seq: 9,
                snapshot: false,
            })
            .unwrap();
        let mut lines = Vec::new();
        let n = dump_log(&store, |l| {
            lines.push((l.stream_seq, l.seq, l.kind));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(lines, [(3, 1, "heartbeat"), (9, 2, "heartbeat")]);
    }
}
