//! The log module: tails files and globs, reports lines matching patterns (`LogMatch`, a
//! Python traceback grouped into one), rate-limits per file with `LogSuppressed` counts, and
//! persists its cursors through the runner's state seam so a restart resumes exactly: the
//! cursors of a run are committed in the same outbox batch as that run's events.
//!
//! State keys (under `s/<module>/` in the outbox): `f/<dev>.<ino>` = JSON `Cursor`,
//! `r/<path>` = JSON `RateState`, `init` = the first scan happened.

mod group;
mod identity;
mod rate;
mod tail;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use opsfleet_proto::pb;
use tracing::warn;

use super::{Module, ModuleCtx, ModuleError};
use crate::config::LogConfig;
use opsfleet_proto::time::unix_ms;

pub use group::{split, Matcher, Record, Split, SplitOpts, TRACEBACK_HEADER};
pub use identity::{fingerprint, Ident};
pub use rate::{RateLimit, RateState};
pub use tail::{Cursor, RunStats, Settings, Tailer};

const INIT_KEY: &str = "init";

pub struct LogModule {
    inner: Arc<Mutex<Tailer>>,
    /// What is persisted (as last handed out by `take_state`).
    saved: BTreeMap<String, Vec<u8>>,
    /// Stats of the last completed run.
    last: RunStats,
}

fn lock(m: &Mutex<Tailer>) -> MutexGuard<'_, Tailer> {
    // A panic mid-run leaves cursors at their last consistent value (each is replaced whole).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn cursor_key(id: &Ident) -> String {
    format!("f/{}.{}", id.dev, id.ino)
}

fn parse_cursor_key(key: &str) -> Option<Ident> {
    let (dev, ino) = key.strip_prefix("f/")?.split_once('.')?;
    Some(Ident {
        dev: dev.parse().ok()?,
        ino: ino.parse().ok()?,
    })
}

impl LogModule {
    pub fn new(cfg: &LogConfig) -> Self {
        let matcher = Matcher::new(&cfg.patterns);
        LogModule {
            inner: Arc::new(Mutex::new(Tailer::new(Settings::from_config(cfg), matcher))),
            saved: BTreeMap::new(),
            last: RunStats::default(),
        }
    }

    /// Stats of the last completed run.
    pub fn last_run(&self) -> RunStats {
        self.last
    }

    /// Cursors as they are now (tests, inspection).
    pub fn cursors(&self) -> BTreeMap<Ident, Cursor> {
        lock(&self.inner).cursors.clone()
    }

    /// The whole state as persisted key/values.
    fn encode(t: &Tailer) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        for (id, c) in &t.cursors {
            if let Ok(v) = serde_json::to_vec(c) {
                out.insert(cursor_key(id), v);
            }
        }
        for (path, r) in &t.rates {
            if let Ok(v) = serde_json::to_vec(r) {
                out.insert(format!("r/{path}"), v);
            }
        }
        if t.initialized {
            out.insert(INIT_KEY.to_owned(), b"1".to_vec());
        }
        out
    }
}

#[async_trait::async_trait]
impl Module for LogModule {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        let inner = self.inner.clone();
        let now_ms = unix_ms(ctx.now);
        // File I/O on the blocking pool. If this run is abandoned (timeout), the tailer keeps
        // what it produced in `pending` and the next run hands it out, with the cursors.
        let stats = tokio::task::spawn_blocking(move || lock(&inner).run(now_ms))
            .await
            .map_err(|e| ModuleError::Other(format!("log tail task failed: {e}")))?;
        self.last = stats;
        Ok(std::mem::take(&mut lock(&self.inner).pending))
    }

    fn restore(&mut self, saved: Vec<(String, Vec<u8>)>) {
        let mut t = lock(&self.inner);
        for (key, value) in saved {
            let ok = if key == INIT_KEY {
                t.initialized = true;
                true
            } else if let Some(id) = parse_cursor_key(&key) {
                serde_json::from_slice::<Cursor>(&value)
                    .map(|c| t.cursors.insert(id, c))
                    .is_ok()
            } else if let Some(path) = key.strip_prefix("r/") {
                serde_json::from_slice::<RateState>(&value)
                    .map(|r| t.rates.insert(path.to_owned(), r))
                    .is_ok()
            } else {
                false
            };
            if ok {
                self.saved.insert(key, value);
            } else {
                // Left in `saved` as absent, so the next take_state deletes it.
                warn!(key = %key, "ignoring unreadable saved log state");
                self.saved.insert(key, Vec::new());
            }
        }
    }

    fn take_state(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        let now = Self::encode(&lock(&self.inner));
        let mut out = Vec::new();
        for (k, v) in &now {
            if self.saved.get(k) != Some(v) {
                out.push((k.clone(), Some(v.clone())));
            }
        }
        for k in self.saved.keys() {
            if !now.contains_key(k) {
                out.push((k.clone(), None));
            }
        }
        self.saved = now;
        out
    }
}

#[cfg(test)]
mod tests;
