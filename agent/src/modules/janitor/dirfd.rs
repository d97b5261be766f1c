//! The janitor's file-system access through directory handles (`rustix`): the root is opened
//! once, every directory below it is entered with `openat(O_DIRECTORY | O_NOFOLLOW)` from its
//! parent's handle, and entries are examined and removed with `statat`/`unlinkat` relative to
//! that handle. No path below the root is ever resolved by name from `/`, so a directory
//! swapped for a symlink after the listing cannot lead a removal out of the root.

use opsfleet_report::ErrorChain;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat};
use tracing::warn;

use super::{Node, NodeKind};

/// Directories nested deeper than this below the root are not entered (each level holds one
/// open handle while it is listed); such a directory counts as unlistable (pinned, one error).
pub const MAX_DEPTH: usize = 256;

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Opens the (canonical) root directory itself; its last component is not followed.
pub fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(root, dir_flags(), Mode::empty())?)
}

/// Opens the directory `name` inside `dir`, refusing a symlink (`ELOOP`) or a non-directory.
fn open_child(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(dir, name, dir_flags(), Mode::empty())?)
}

/// `lstat` of `name` inside `dir`.
fn stat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

fn kind_of(st: &Stat) -> NodeKind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => NodeKind::Symlink,
        FileType::Directory => NodeKind::Dir,
        FileType::RegularFile => NodeKind::File,
        _ => NodeKind::Other,
    }
}

#[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
fn mtime_of(st: &Stat) -> SystemTime {
    let secs = i64::from(st.st_mtime);
    let nanos = u32::try_from(st.st_mtime_nsec as u64).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::new(s, nanos),
        // Before 1970: as old as the listing can express.
        Err(_) => UNIX_EPOCH,
    }
}

#[allow(clippy::unnecessary_cast)]
fn size_of(st: &Stat) -> u64 {
    u64::try_from(st.st_size as i64).unwrap_or(0)
}

/// What a listing found: the nodes in depth-first order (names sorted within a directory),
/// the relative paths of directories that could not be fully listed, and the error count.
#[derive(Debug, Default)]
pub struct Listing {
    pub nodes: Vec<Node>,
    pub pinned: HashSet<PathBuf>,
    pub errors: u64,
}

/// Lists everything below the root handle without following symlinks.
pub fn list(root_fd: &OwnedFd, root: &Path, cancel: &AtomicBool) -> Listing {
    let mut out = Listing::default();
    match rustix::fs::openat(root_fd, ".", dir_flags(), Mode::empty()) {
        Ok(fd) => walk(fd, &PathBuf::new(), 0, root, cancel, &mut out),
        Err(e) => {
            out.errors += 1;
            out.pinned.insert(PathBuf::new());
            warn!(root = %root.display(), error = %ErrorChain(&e), "cannot list");
        }
    }
    out
}

/// Reads the names in `dir_fd` (sorted; `.` and `..` skipped).
fn read_names(dir_fd: OwnedFd) -> io::Result<(Dir, Vec<OsString>)> {
    let mut dir = Dir::new(dir_fd)?;
    let mut names = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok((dir, names))
}

fn walk(
    dir_fd: OwnedFd,
    rel: &Path,
    depth: usize,
    root: &Path,
    cancel: &AtomicBool,
    out: &mut Listing,
) {
    let (dir, names) = match read_names(dir_fd) {
        Ok(v) => v,
        Err(e) => {
            out.errors += 1;
            out.pinned.insert(rel.to_owned());
            warn!(path = %root.join(rel).display(), error = %ErrorChain(&e), "cannot list");
            return;
        }
    };
    let Ok(fd) = dir.fd() else {
        out.errors += 1;
        out.pinned.insert(rel.to_owned());
        return;
    };
    for name in names {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let child = rel.join(&name);
        let st = match stat_at(fd, &name) {
            Ok(st) => st,
            Err(e) => {
                out.errors += 1;
                warn!(path = %root.join(&child).display(), error = %ErrorChain(&e), "cannot stat");
                out.pinned.insert(child);
                continue;
            }
        };
        let kind = kind_of(&st);
        out.nodes.push(Node {
            rel: child.clone(),
            kind,
            mtime: mtime_of(&st),
            size: size_of(&st),
        });
        if kind != NodeKind::Dir {
            continue;
        }
        if depth + 1 >= MAX_DEPTH {
            out.errors += 1;
            warn!(path = %root.join(&child).display(), max_depth = MAX_DEPTH, "too deep; not entered");
            out.pinned.insert(child);
            continue;
        }
        match open_child(fd, &name) {
            Ok(sub) => walk(sub, &child, depth + 1, root, cancel, out),
            Err(e) => {
                out.errors += 1;
                warn!(path = %root.join(&child).display(), error = %ErrorChain(&e), "cannot open");
                out.pinned.insert(child);
            }
        }
    }
}

/// Why a planned removal did not happen.
#[derive(Debug)]
pub enum Skip {
    /// The path changed since the listing (a directory on the way is now a symlink or gone,
    /// the entry is of another kind, or a file was touched): left alone, not an error.
    Changed,
    /// A directory that is no longer empty: left alone, not an error.
    NotEmpty,
    /// The removal itself failed.
    Failed(io::Error),
}

/// Removes planned nodes through handles. The parent of each node is opened afresh from the
/// root handle, one component at a time with `O_NOFOLLOW` (a one-entry cache reuses the handle
/// while consecutive nodes share a parent), the entry is checked to be what the listing saw,
/// and it is removed with `unlinkat` relative to that handle.
pub struct Remover<'a> {
    root_fd: &'a OwnedFd,
    cached: Option<(PathBuf, OwnedFd)>,
}

impl<'a> Remover<'a> {
    pub fn new(root_fd: &'a OwnedFd) -> Self {
        Remover {
            root_fd,
            cached: None,
        }
    }

    /// Opens `rel` (a relative directory path, possibly empty) below the root.
    fn open_dir(&mut self, rel: &Path) -> io::Result<&OwnedFd> {
        let hit = self.cached.as_ref().is_some_and(|(p, _)| p == rel);
        if !hit {
            self.cached = None;
            let mut fd = rustix::fs::openat(self.root_fd, ".", dir_flags(), Mode::empty())?;
            for c in rel.components() {
                let Component::Normal(name) = c else {
                    return Err(io::Error::from(io::ErrorKind::InvalidInput));
                };
                fd = open_child(&fd, name)?;
            }
            self.cached = Some((rel.to_owned(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// Removes `node` if it is still what the listing saw; `before_unlink` runs after the
    /// check, right before the `unlinkat` (tests use it to race the removal).
    pub fn remove(
        &mut self,
        node: &Node,
        before_unlink: &mut dyn FnMut(&Path),
    ) -> Result<(), Skip> {
        if node
            .rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Skip::Changed);
        }
        let (Some(parent), Some(name)) = (node.rel.parent(), node.rel.file_name()) else {
            return Err(Skip::Changed);
        };
        let dir = self.open_dir(parent).map_err(|_| Skip::Changed)?;
        let st = stat_at(dir, name).map_err(|_| Skip::Changed)?;
        let kind = kind_of(&st);
        // A file touched since the listing is no longer old: leave it.
        let same = kind == node.kind
            && node.kind != NodeKind::Other
            && (node.kind == NodeKind::Dir || mtime_of(&st) == node.mtime);
        if !same {
            return Err(Skip::Changed);
        }
        before_unlink(&node.rel);
        let flags = if node.kind == NodeKind::Dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(dir, name, flags) {
            Ok(()) => Ok(()),
            Err(e) if node.kind == NodeKind::Dir && e == rustix::io::Errno::NOTEMPTY => {
                Err(Skip::NotEmpty)
            }
            Err(e) if e == rustix::io::Errno::NOENT => Err(Skip::Changed),
            Err(e) => Err(Skip::Failed(e.into())),
        }
    }
}
