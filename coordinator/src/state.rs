//! State shared between the ingest loop and the API responders: the in-memory fleet (the
//! projection as persisted), the store, and counters.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tracing::info;

use crate::election::Leadership;
use crate::projection::Fleet;
pub use crate::snapshot::LoadError;
use crate::store::EventStore;

pub struct Shared {
    pub name: String,
    pub color: String,
    pub store: Arc<dyn EventStore>,
    /// This coordinator's place in the election.
    pub leadership: Leadership,
    fleet: RwLock<Fleet>,
    /// Highest stream sequence persisted.
    pub applied: AtomicU64,
    /// Duplicates dropped since start.
    pub duplicates: AtomicU64,
    /// Malformed messages parked since start.
    pub parked: AtomicU64,
    /// Valid events refused by the admission check (`admit`) and parked since start.
    pub refused: AtomicU64,
    /// False while the store refuses writes (full or read-only disk).
    pub store_healthy: AtomicBool,
    /// Events appended to the log since start (`/metrics`: events per second).
    pub events_applied: AtomicU64,
    /// The streams' positions as last read (`/metrics`: ingest lag, dead letters).
    pub streams: StreamReading,
}

/// The streams' positions as the metrics' watcher last read them (`metrics::streams`).
#[derive(Debug, Default)]
pub struct StreamReading {
    /// `OPS_EVENTS`' last stream sequence.
    pub events_last_seq: AtomicU64,
    /// Messages in `OPS_DLQ`.
    pub dlq_messages: AtomicU64,
    /// When they were read (this machine's clock); 0 before the first reading.
    pub read_at_unix_ms: AtomicI64,
}

impl Shared {
    /// Which coordinator answers and how current it is (`behind`: messages of `OPS_EVENTS`
    /// not persisted yet); part of every API reply and command reply.
    pub fn responder(&self, behind: u64) -> opsfleet_proto::api::Responder {
        let view = self.leadership.view();
        opsfleet_proto::api::Responder {
            name: self.name.clone(),
            color: self.color.clone(),
            role: view.role(tokio::time::Instant::now()),
            epoch: view.epoch,
            applied_stream_seq: self.applied(),
            behind,
        }
    }

    /// Loads the persisted projection (the last snapshot of the rows plus a fold of the log
    /// after it) and the applied position.
    pub fn load(
        name: &str,
        color: &str,
        store: Arc<dyn EventStore>,
        leadership: Leadership,
    ) -> Result<Arc<Self>, LoadError> {
        let loaded = crate::snapshot::load_fleet(store.as_ref())?;
        let applied = store.applied_stream_seq()?;
        info!(
            rows_at = loaded.rows_at,
            tail = loaded.tail,
            applied,
            "projection loaded"
        );
        let fleet = loaded.fleet;
        Ok(Arc::new(Shared {
            name: name.to_owned(),
            color: color.to_owned(),
            store,
            leadership,
            fleet: RwLock::new(fleet),
            applied: AtomicU64::new(applied),
            duplicates: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            store_healthy: AtomicBool::new(true),
            events_applied: AtomicU64::new(0),
            streams: StreamReading::default(),
        }))
    }

    pub fn fleet(&self) -> RwLockReadGuard<'_, Fleet> {
        // The fleet is only mutated inside `Fleet::apply`, which never panics midway through a
        // host; a poisoned lock still guards consistent data.
        self.fleet.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn fleet_mut(&self) -> RwLockWriteGuard<'_, Fleet> {
        self.fleet.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }
}
