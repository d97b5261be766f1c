//! `ServiceBoard`: the current summary of every service module, keyed by module name; the
//! runner updates it after each run and hands a snapshot to every module in
//! `ModuleCtx.services`, which the heartbeat carries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opsfleet_proto::pb;

#[derive(Debug, Clone, Default)]
pub struct ServiceBoard(Arc<Mutex<BTreeMap<String, pb::ServiceSummary>>>);

impl ServiceBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, pb::ServiceSummary>> {
        // Plain values; a panicked holder cannot leave them inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces what `module` reports (`None` removes it).
    pub fn set(&self, module: &str, summary: Option<pb::ServiceSummary>) {
        let mut map = self.lock();
        match summary {
            Some(s) => {
                map.insert(module.to_owned(), s);
            }
            None => {
                map.remove(module);
            }
        }
    }

    /// Every service, in module-name order.
    pub fn snapshot(&self) -> Vec<pb::ServiceSummary> {
        self.lock().values().cloned().collect()
    }
}
