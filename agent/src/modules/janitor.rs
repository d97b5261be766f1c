//! The janitor module: removes files (and then empty directories) older than a threshold under
//! configured roots, with include globs and a dry-run mode. Symlinks are never followed: a
//! symlink is judged by its own mtime and removed as a link, its target never touched. Below
//! the root nothing is resolved by path: every directory is entered through its parent's
//! handle with `O_NOFOLLOW`, and each entry is removed with `unlinkat` relative to a handle of
//! its parent opened afresh from the root, so a directory swapped for a symlink cannot lead a
//! removal outside the root. The removal decision is a pure function (`plan`) of a listing;
//! walking and removing run on the blocking pool.
//!
//! This file owns the module (one pass over every root per interval); `plan` owns the listing
//! types and the pure removal decision, `clean` one root's pass and its report, `dirfd` the
//! handle-based listing and removal.

mod clean;
mod dirfd;
mod plan;

use opsfleet_report::ErrorChain;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opsfleet_proto::pb;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{Module, ModuleCtx, ModuleError};
use crate::config::{JanitorConfig, JanitorRootConfig};

pub use clean::{clean_root, JanitorError, RootReport};
pub use plan::{plan, Include, Node, NodeKind};

/// The module: one pass over every root per interval, on the blocking pool.
pub struct JanitorModule {
    roots: Arc<Vec<JanitorRootConfig>>,
    sample_size: usize,
    /// How long a tick waits for its pass before leaving it to finish in the background.
    wait: Duration,
    pending: Option<JoinHandle<Vec<pb::event::Body>>>,
    cancel: Arc<AtomicBool>,
}

impl JanitorModule {
    pub fn new(cfg: &JanitorConfig) -> Self {
        JanitorModule {
            roots: Arc::new(cfg.roots.clone()),
            sample_size: cfg.sample_size,
            wait: cfg.interval.mul_f64(0.8),
            pending: None,
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for JanitorModule {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}

fn pass(
    roots: &[JanitorRootConfig],
    now: SystemTime,
    sample_size: usize,
    cancel: &AtomicBool,
) -> Vec<pb::event::Body> {
    roots
        .iter()
        .map(|r| {
            let report = match clean_root(r, now, sample_size, cancel) {
                Ok(rep) => {
                    info!(root = %r.path.display(), dry_run = rep.dry_run, files = rep.removed_files, dirs = rep.removed_dirs, bytes = rep.bytes, errors = rep.errors, "janitor pass");
                    rep
                }
                Err(e) => {
                    warn!(root = %r.path.display(), error = %ErrorChain(&e), "janitor root failed");
                    RootReport {
                        root: r.path.clone(),
                        dry_run: r.dry_run,
                        errors: 1,
                        ..Default::default()
                    }
                }
            };
            pb::event::Body::Janitor(report.to_body())
        })
        .collect()
}

#[async_trait::async_trait]
impl Module for JanitorModule {
    fn kind(&self) -> &'static str {
        "janitor"
    }

    async fn run_once(&mut self, ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        let mut handle = match self.pending.take() {
            Some(h) => h,
            None => {
                let (roots, now, n, cancel) = (
                    self.roots.clone(),
                    ctx.now,
                    self.sample_size,
                    self.cancel.clone(),
                );
                tokio::task::spawn_blocking(move || pass(&roots, now, n, &cancel))
            }
        };
        match tokio::time::timeout(self.wait, &mut handle).await {
            Ok(Ok(bodies)) => Ok(bodies),
            Ok(Err(e)) => Err(ModuleError::Other(format!("janitor task failed: {e}"))),
            Err(_) => {
                // Still walking: keep it, collect its reports on a later tick.
                self.pending = Some(handle);
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests;
