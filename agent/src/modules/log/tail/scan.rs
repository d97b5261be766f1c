//! The scan half of a tailer run: which files the configured paths name now, and what became
//! of each tracked identity (still at its path, truncated or replaced, new, or gone).

use opsfleet_report::ErrorChain;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use super::{Cursor, Tailer};
use crate::config::StartAt;
use crate::modules::log::identity::{
    find_copy, has_glob_meta, open_checked, parent_of, prefix_fp, read_at, Ident,
};

/// Files found by a scan: identity → (path, size).
pub(super) type Seen = BTreeMap<Ident, (String, u64)>;

impl Tailer {
    /// Every regular file the configured paths and globs name now, by identity (the first
    /// path wins when two name the same file).
    pub(super) fn discover(&self) -> Seen {
        let mut names = BTreeSet::new();
        for p in &self.settings.paths {
            if has_glob_meta(p) {
                match glob::glob(p) {
                    Ok(paths) => names.extend(paths.filter_map(Result::ok)),
                    Err(e) => warn!(pattern = %p, error = %ErrorChain(&e), "invalid glob"),
                }
            } else {
                names.insert(PathBuf::from(p));
            }
        }
        let mut seen = BTreeMap::new();
        for name in names {
            match std::fs::metadata(&name) {
                Ok(m) if m.is_file() => {
                    seen.entry(Ident::of(&m))
                        .or_insert_with(|| (name.to_string_lossy().into_owned(), m.len()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(path = %name.display(), error = %ErrorChain(&e), "cannot stat log file")
                }
            }
        }
        seen
    }

    pub(super) fn handle(&mut self, ident: Ident, path: &str) -> Option<&File> {
        match self.handles.entry(ident) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) => Some(e.insert(open_checked(Path::new(path), ident)?)),
        }
    }

    /// When the new file `ident` is a copy of a tracked file (same full fingerprint, and the
    /// same bytes just before that file's cursor), the cursor's offset: those bytes were read.
    /// Both checks are needed: a new log may well start with the same banner as the old one.
    fn twin_offset(&mut self, ident: Ident, path: &str, size: u64) -> Option<u64> {
        const TAIL: u64 = 4096;
        let n = self.settings.fingerprint_bytes;
        let fp = prefix_fp(self.handle(ident, path)?, n)?;
        let twins: Vec<(Ident, u64)> = self
            .cursors
            .iter()
            .filter(|(_, c)| c.fp_len == n && c.fp == fp && c.offset <= size)
            .map(|(id, c)| (*id, c.offset))
            .collect();
        let new = self.handles.get(&ident)?;
        for (twin, offset) in twins {
            let Some(old) = self.handles.get(&twin) else {
                continue;
            };
            let start = offset.saturating_sub(TAIL);
            let a = read_at(new, start, offset - start).ok()?;
            let b = read_at(old, start, offset - start).ok();
            if b.as_deref() == Some(a.as_slice()) {
                return Some(offset);
            }
        }
        None
    }

    /// Known identities still at a path: checks each for truncation / content replaced.
    pub(super) fn recheck_known(&mut self, seen: &Seen, now_ms: i64) {
        let known: Vec<(Ident, String, u64)> = seen
            .iter()
            .filter(|(id, _)| self.cursors.contains_key(id))
            .map(|(id, (p, size))| (*id, p.clone(), *size))
            .collect();
        for (ident, path, size) in known {
            self.recheck(ident, path, size, now_ms);
        }
    }

    /// One known identity found at `path` with `size` bytes: a file truncated (copytruncate)
    /// or whose first bytes changed is read again from the start, after its copy is found and
    /// queued to be finished; the cursor is followed at `path` from now on.
    fn recheck(&mut self, ident: Ident, path: String, size: u64, now_ms: i64) {
        let Some(c) = self.cursors.get(&ident).cloned() else {
            return;
        };
        let Some(file) = self.handle(ident, &path) else {
            return;
        };
        let replaced = c.fp_len > 0
            && (size < c.fp_len || prefix_fp(file, c.fp_len).as_deref() != Some(&c.fp));
        let truncated = replaced || size < c.offset;
        if truncated {
            self.finish_copy(&c, &path, now_ms);
            info!(path = %path, offset = c.offset, size, replaced, "truncated; reading from the start");
        }
        if let Some(cur) = self.cursors.get_mut(&ident) {
            if truncated {
                cur.offset = 0;
                cur.fp = String::new();
                cur.fp_len = 0;
                cur.pending_since_ms = 0;
            }
            if !cur.followed {
                cur.idle_since_ms = now_ms;
            }
            cur.path = path;
            cur.followed = true;
        }
    }

    /// copytruncate: finish the copy (found in `path`'s directory by the cursor's fingerprint)
    /// from where the original was left.
    fn finish_copy(&mut self, c: &Cursor, path: &str, now_ms: i64) {
        if c.offset == 0 || c.fp_len == 0 {
            return;
        }
        let Some((cid, cpath, cfile)) =
            find_copy(&parent_of(path), &c.fp, c.fp_len, c.offset, |id| {
                self.cursors.contains_key(id)
            })
        else {
            return;
        };
        info!(path = %path, copy = %cpath, offset = c.offset, "truncated; finishing its copy");
        self.handles.insert(cid, cfile);
        self.cursors.insert(
            cid,
            Cursor {
                path: c.path.clone(),
                followed: false,
                idle_since_ms: now_ms,
                ..c.clone()
            },
        );
    }

    /// New identities: tailed from the start (or the end, on the first scan with
    /// `start_at = end`), past what was read already when one is a copy of a tracked file.
    pub(super) fn track_new(&mut self, seen: &Seen, now_ms: i64) {
        for (ident, (path, size)) in seen {
            if self.cursors.contains_key(ident) {
                continue;
            }
            let mut offset = if !self.initialized && self.settings.start_at == StartAt::End {
                *size
            } else {
                0
            };
            // A copy of a file we read (e.g. copytruncate's copy seen before the truncation):
            // its prefix was read already.
            if let Some(o) = self.twin_offset(*ident, path, *size) {
                debug!(path = %path, offset = o, "copy of a tracked file; skipping what was read");
                offset = offset.max(o);
            }
            info!(path = %path, offset, "tailing file");
            self.cursors.insert(
                *ident,
                Cursor {
                    path: path.clone(),
                    offset,
                    fp: String::new(),
                    fp_len: 0,
                    followed: true,
                    idle_since_ms: now_ms,
                    pending_since_ms: 0,
                },
            );
        }
    }

    /// Identities gone from every path: rotated away or deleted, to be finished.
    pub(super) fn mark_gone(&mut self, seen: &Seen, now_ms: i64) {
        for (ident, c) in self.cursors.iter_mut() {
            if !seen.contains_key(ident) && c.followed {
                c.followed = false;
                c.idle_since_ms = now_ms;
                debug!(path = %c.path, "file left its path; finishing it");
            }
        }
    }
}
