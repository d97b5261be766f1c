//! One pass over one root (blocking): open the root, list it through directory handles
//! without following symlinks, plan, then remove each chosen entry through a freshly opened
//! handle of its parent after checking it is unchanged (`dirfd`).

use opsfleet_report::ErrorChain;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opsfleet_proto::pb;
use tracing::warn;

use super::dirfd::{self, Remover, Skip};
use super::{plan, Include, NodeKind};
use crate::config::JanitorRootConfig;

/// Result of one root's pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RootReport {
    pub root: PathBuf,
    pub dry_run: bool,
    pub removed_files: u64,
    pub removed_dirs: u64,
    pub bytes: u64,
    pub sample: Vec<String>,
    pub errors: u64,
}

impl RootReport {
    pub fn to_body(&self) -> pb::JanitorReport {
        pb::JanitorReport {
            root: self.root.display().to_string(),
            dry_run: self.dry_run,
            removed_files: self.removed_files,
            removed_dirs: self.removed_dirs,
            bytes: self.bytes,
            sample: self.sample.clone(),
            errors: self.errors,
        }
    }
}

/// Why a root could not be processed at all.
#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    #[error("root {}: cannot resolve", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("root {}: resolves to {}, not a directory", root.display(), resolved.display())]
    NotADir { root: PathBuf, resolved: PathBuf },
    #[error("root {}: bad include pattern", root.display())]
    Include {
        root: PathBuf,
        #[source]
        source: glob::PatternError,
    },
}

/// One pass over one root. Blocking.
pub fn clean_root(
    cfg: &JanitorRootConfig,
    now: SystemTime,
    sample_size: usize,
    cancel: &AtomicBool,
) -> Result<RootReport, JanitorError> {
    clean_root_hooked(cfg, now, sample_size, cancel, &mut |_| {})
}

/// `clean_root` with a hook that runs for each entry after it is checked and right before it
/// is removed (tests race the removal there).
pub(super) fn clean_root_hooked(
    cfg: &JanitorRootConfig,
    now: SystemTime,
    sample_size: usize,
    cancel: &AtomicBool,
    before_unlink: &mut dyn FnMut(&Path),
) -> Result<RootReport, JanitorError> {
    let include = Include::new(&cfg.include).map_err(|source| JanitorError::Include {
        root: cfg.path.clone(),
        source,
    })?;
    let root = fs::canonicalize(&cfg.path).map_err(|source| JanitorError::Root {
        root: cfg.path.clone(),
        source,
    })?;
    if !root.is_dir() {
        return Err(JanitorError::NotADir {
            root: cfg.path.clone(),
            resolved: root,
        });
    }
    let root_fd = dirfd::open_root(&root).map_err(|source| JanitorError::Root {
        root: cfg.path.clone(),
        source,
    })?;
    let dirfd::Listing {
        nodes,
        pinned,
        mut errors,
    } = dirfd::list(&root_fd, &root, cancel);
    let chosen = plan(
        &nodes,
        now,
        cfg.older_than,
        &include,
        cfg.remove_empty_dirs,
        &pinned,
    );
    let mut report = RootReport {
        root: cfg.path.clone(),
        dry_run: cfg.dry_run,
        ..Default::default()
    };
    let mut remover = Remover::new(&root_fd);
    for i in chosen {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let node = &nodes[i];
        let shown = root.join(&node.rel);
        if !cfg.dry_run {
            match remover.remove(node, before_unlink) {
                Ok(()) => {}
                Err(Skip::Changed) => {
                    warn!(path = %shown.display(), "changed since listed; skipped");
                    continue;
                }
                // Something appeared in it since the listing.
                Err(Skip::NotEmpty) => continue,
                Err(Skip::Failed(e)) => {
                    errors += 1;
                    warn!(path = %shown.display(), error = %ErrorChain(&e), "cannot remove");
                    continue;
                }
            }
        }
        if node.kind == NodeKind::Dir {
            report.removed_dirs += 1;
        } else {
            report.removed_files += 1;
            report.bytes += node.size;
        }
        if report.sample.len() < sample_size {
            report.sample.push(shown.display().to_string());
        }
    }
    report.errors = errors;
    Ok(report)
}
