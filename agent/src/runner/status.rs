//! The status board: live run state and counters of every module, shared by the runner, the
//! control task and the heartbeat.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opsfleet_proto::pb;

/// Live status of one module.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleSlot {
    pub name: String,
    pub kind: &'static str,
    pub interval: Duration,
    pub fingerprint: String,
    /// Whether the scheduler runs it (pause/resume will flip this).
    pub state: pb::ModuleRunState,
    pub runs: u64,
    pub failures: u64,
}

/// Shared, cheap-to-clone view of every module's status.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(pub(super) Arc<Mutex<Vec<ModuleSlot>>>);

impl StatusBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ModuleSlot>> {
        // Plain counters; a panicked holder cannot leave them inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn slots(&self) -> Vec<ModuleSlot> {
        self.lock().clone()
    }

    /// What the heartbeat reports.
    pub fn snapshot(&self) -> Vec<pb::ModuleStatus> {
        self.lock()
            .iter()
            .map(|s| pb::ModuleStatus {
                name: s.name.clone(),
                kind: s.kind.to_owned(),
                state: s.state as i32,
                expected_interval_ms: u64::try_from(s.interval.as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    pub(super) fn state(&self, idx: usize) -> pb::ModuleRunState {
        self.lock()
            .get(idx)
            .map_or(pb::ModuleRunState::Unspecified, |s| s.state)
    }

    /// Changes one slot (run-time control).
    pub(crate) fn update(&self, idx: usize, f: impl FnOnce(&mut ModuleSlot)) {
        if let Some(s) = self.lock().get_mut(idx) {
            f(s);
        }
    }

    pub(super) fn record(&self, idx: usize, ok: bool) {
        if let Some(s) = self.lock().get_mut(idx) {
            s.runs += 1;
            if !ok {
                s.failures += 1;
            }
        }
    }
}
