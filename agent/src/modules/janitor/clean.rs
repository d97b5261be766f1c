//! One pass over one root (blocking): list it without following symlinks, plan, then remove
//! each chosen path only after checking it is unchanged and inside the canonical root.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use opsfleet_proto::pb;
use tracing::warn;

use super::{plan, Include, Node, NodeKind};
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

/// Lists everything under the canonical root without following symlinks; also returns the
/// relative paths of directories that could not be fully listed, and the error count.
fn list(root: &Path, cancel: &AtomicBool) -> (Vec<Node>, HashSet<PathBuf>, u64) {
    let mut nodes = Vec::new();
    let mut pinned = HashSet::new();
    let mut errors = 0;
    for item in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .follow_root_links(false)
    {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let entry = match item {
            Ok(e) => e,
            Err(e) => {
                errors += 1;
                warn!(root = %root.display(), error = %e, "cannot list");
                if let Some(rel) = e.path().and_then(|p| p.strip_prefix(root).ok()) {
                    pinned.insert(rel.to_owned());
                } else {
                    pinned.insert(PathBuf::new());
                }
                continue;
            }
        };
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let meta = match fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            Err(e) => {
                errors += 1;
                warn!(path = %entry.path().display(), error = %e, "cannot stat");
                pinned.insert(rel.to_owned());
                continue;
            }
        };
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            NodeKind::Symlink
        } else if ft.is_dir() {
            NodeKind::Dir
        } else if ft.is_file() {
            NodeKind::File
        } else {
            NodeKind::Other
        };
        nodes.push(Node {
            rel: rel.to_owned(),
            kind,
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            size: meta.size(),
        });
    }
    (nodes, pinned, errors)
}

/// `root/rel` when it is still what the plan saw and provably inside `root`: `rel` is plain,
/// its parent canonicalizes to a path inside the (canonical) root, and the path itself is
/// `kind` (links not followed).
fn checked_path(root: &Path, node: &Node) -> Option<PathBuf> {
    if node
        .rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let name = node.rel.file_name()?;
    let parent = root.join(node.rel.parent()?);
    let parent = fs::canonicalize(parent).ok()?;
    if !parent.starts_with(root) {
        return None;
    }
    let path = parent.join(name);
    if !path.starts_with(root) || path == root {
        return None;
    }
    let meta = fs::symlink_metadata(&path).ok()?;
    let ft = meta.file_type();
    let same = match node.kind {
        NodeKind::File => ft.is_file(),
        NodeKind::Symlink => ft.is_symlink(),
        NodeKind::Dir => ft.is_dir(),
        NodeKind::Other => false,
    };
    // A file touched since the listing is no longer old: leave it.
    (same && (node.kind == NodeKind::Dir || meta.modified().ok() == Some(node.mtime)))
        .then_some(path)
}

/// One pass over one root. Blocking.
pub fn clean_root(
    cfg: &JanitorRootConfig,
    now: SystemTime,
    sample_size: usize,
    cancel: &AtomicBool,
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
    let (nodes, pinned, mut errors) = list(&root, cancel);
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
    for i in chosen {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let node = &nodes[i];
        let shown = root.join(&node.rel);
        if !cfg.dry_run {
            let Some(path) = checked_path(&root, node) else {
                warn!(path = %shown.display(), "changed since listed or outside root; skipped");
                continue;
            };
            let res = if node.kind == NodeKind::Dir {
                fs::remove_dir(&path)
            } else {
                fs::remove_file(&path)
            };
            match res {
                Ok(()) => {}
                // Something appeared in it since the listing.
                Err(e)
                    if node.kind == NodeKind::Dir
                        && e.raw_os_error() == Some(nix::libc::ENOTEMPTY) =>
                {
                    continue
                }
                Err(e) => {
                    errors += 1;
                    warn!(path = %path.display(), error = %e, "cannot remove");
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
