//! What a janitor pass lists (`Node`, `NodeKind`), the include filters, and the pure removal
//! decision (`plan`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a listed path is (from `symlink_metadata`: links are links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Symlink,
    Dir,
    /// Sockets, fifos, devices: never removed.
    Other,
}

/// One listed path under a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Relative to the root, never empty.
    pub rel: PathBuf,
    pub kind: NodeKind,
    pub mtime: SystemTime,
    pub size: u64,
}

/// Compiled include filters: a pattern without `/` matches the file name, one with `/` the
/// path relative to the root (`*` does not cross `/`, `**` does).
#[derive(Debug, Clone, Default)]
pub struct Include(Vec<glob::Pattern>);

impl Include {
    pub fn new(patterns: &[String]) -> Result<Self, glob::PatternError> {
        patterns
            .iter()
            .map(|p| glob::Pattern::new(p))
            .collect::<Result<Vec<_>, _>>()
            .map(Include)
    }

    pub fn matches(&self, rel: &Path) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        self.0.iter().any(|p| {
            if p.as_str().contains('/') {
                p.matches_path_with(rel, opts)
            } else {
                rel.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| p.matches_with(n, opts))
            }
        })
    }
}

/// Which listed nodes to remove, as indices into `nodes`: old matching files and symlinks in
/// listing order, then (when `remove_empty_dirs`) old directories all of whose listed children
/// are removed, deepest first. `pinned` directories (with entries that could not be listed) and
/// their ancestors are never removed. Pure.
pub fn plan(
    nodes: &[Node],
    now: SystemTime,
    older_than: Duration,
    include: &Include,
    remove_empty_dirs: bool,
    pinned: &HashSet<PathBuf>,
) -> Vec<usize> {
    let old = |n: &Node| {
        now.duration_since(n.mtime)
            .is_ok_and(|age| age >= older_than)
    };
    let mut removed: HashSet<&Path> = HashSet::new();
    let mut out = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if matches!(n.kind, NodeKind::File | NodeKind::Symlink) && old(n) && include.matches(&n.rel)
        {
            removed.insert(&n.rel);
            out.push(i);
        }
    }
    if !remove_empty_dirs {
        return out;
    }
    let mut children: HashMap<&Path, Vec<&Path>> = HashMap::new();
    for n in nodes {
        if let Some(parent) = n.rel.parent() {
            children.entry(parent).or_default().push(&n.rel);
        }
    }
    let mut dirs: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].kind == NodeKind::Dir)
        .collect();
    dirs.sort_by_key(|&i| std::cmp::Reverse(nodes[i].rel.components().count()));
    for i in dirs {
        let n = &nodes[i];
        let is_pinned = pinned.iter().any(|p| p.starts_with(&n.rel));
        let empty_after = children
            .get(n.rel.as_path())
            .is_none_or(|c| c.iter().all(|c| removed.contains(c)));
        if old(n) && !is_pinned && empty_after {
            removed.insert(&n.rel);
            out.push(i);
        }
    }
    out
}
