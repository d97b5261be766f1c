//! The tailer (blocking I/O, run on the blocking pool): finds the files, follows each by its
//! identity (device, inode, fingerprint of the first bytes), detects rotation by rename+create
//! (the old identity leaves its path: it is finished by its open handle, or found again by
//! identity in its directory after a restart) and by copytruncate (size below the cursor or a
//! changed fingerprint: the copy is found by fingerprint and finished, the file restarts at 0),
//! and reads at most a budget of bytes per run.

use opsfleet_report::ErrorChain;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::group::{excerpt, split, Matcher, Record, SplitOpts};
use super::identity::{
    find_copy, find_ident, has_glob_meta, open_checked, parent_of, prefix_fp, read_at, Ident,
};
use super::rate::{RateLimit, RateState};
use crate::config::{LogConfig, StartAt};

/// Largest single read (memory bound; a longer line is cut into pieces).
const MAX_CHUNK: u64 = 256 * 1024;

/// Where reading of one file stands; persisted per identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Path it was last seen at (reported in events).
    pub path: String,
    /// Next byte to read; everything before it has been handled.
    pub offset: u64,
    /// Hex sha256 (first 16 bytes) of the file's first `fp_len` bytes.
    pub fp: String,
    pub fp_len: u64,
    /// At a configured path in the last scan (else rotated away or deleted: being finished).
    pub followed: bool,
    /// Last time the cursor moved or the file left its path (for `rotate_wait`).
    pub idle_since_ms: i64,
    /// Since when an incomplete traceback waits at `offset` (0: none).
    pub pending_since_ms: i64,
}

/// Settings of the tailer, from `LogConfig`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Vec<String>,
    pub start_at: StartAt,
    pub max_bytes_per_run: u64,
    pub max_excerpt_bytes: usize,
    pub fingerprint_bytes: u64,
    pub group_tracebacks: bool,
    pub max_group_lines: usize,
    pub multiline_timeout_ms: i64,
    pub rate: RateLimit,
    pub rotate_wait_ms: i64,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Settings {
    pub fn from_config(c: &LogConfig) -> Self {
        Settings {
            paths: c.paths.clone(),
            start_at: c.start_at,
            max_bytes_per_run: c.max_bytes_per_run,
            max_excerpt_bytes: c.max_excerpt_bytes,
            fingerprint_bytes: c.fingerprint_bytes as u64,
            group_tracebacks: c.group_tracebacks,
            max_group_lines: c.max_group_lines,
            multiline_timeout_ms: ms(c.multiline_timeout),
            rate: RateLimit {
                limit: c.rate_limit,
                window_ms: ms(c.rate_window),
            },
            rotate_wait_ms: ms(c.rotate_wait),
        }
    }
}

/// What a run of the tailer did (for tests and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    pub bytes_read: u64,
    /// Some file had more to read than this run's budget allowed.
    pub backlog: bool,
}

/// All of the log module's file state.
pub struct Tailer {
    pub settings: Settings,
    matcher: Matcher,
    pub cursors: BTreeMap<Ident, Cursor>,
    pub rates: BTreeMap<String, RateState>,
    /// The first scan happened (`start_at` applies only before it).
    pub initialized: bool,
    handles: HashMap<Ident, File>,
    /// Bodies produced but not yet handed out (a run whose caller gave up).
    pub pending: Vec<pb::event::Body>,
    round: usize,
}

impl Tailer {
    pub fn new(settings: Settings, matcher: Matcher) -> Self {
        Tailer {
            settings,
            matcher,
            cursors: BTreeMap::new(),
            rates: BTreeMap::new(),
            initialized: false,
            handles: HashMap::new(),
            pending: Vec::new(),
            round: 0,
        }
    }

    /// Every regular file the configured paths and globs name now, by identity (the first
    /// path wins when two name the same file).
    fn discover(&self) -> BTreeMap<Ident, (String, u64)> {
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

    fn handle(&mut self, ident: Ident, path: &str) -> Option<&File> {
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

    /// One run: discover, detect rotation, read up to the budget, and append the bodies to
    /// `self.pending`.
    pub fn run(&mut self, now_ms: i64) -> RunStats {
        let seen = self.discover();

        // Known identities still at a path: check for truncation / content replaced.
        let known: Vec<(Ident, String, u64)> = seen
            .iter()
            .filter(|(id, _)| self.cursors.contains_key(id))
            .map(|(id, (p, size))| (*id, p.clone(), *size))
            .collect();
        for (ident, path, size) in known {
            let Some(c) = self.cursors.get(&ident).cloned() else {
                continue;
            };
            let Some(file) = self.handle(ident, &path) else {
                continue;
            };
            let replaced = c.fp_len > 0
                && (size < c.fp_len || prefix_fp(file, c.fp_len).as_deref() != Some(&c.fp));
            let truncated = replaced || size < c.offset;
            if truncated {
                // copytruncate: finish the copy from where the original was left.
                if c.offset > 0 && c.fp_len > 0 {
                    if let Some((cid, cpath, cfile)) =
                        find_copy(&parent_of(&path), &c.fp, c.fp_len, c.offset, |id| {
                            self.cursors.contains_key(id)
                        })
                    {
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
                }
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

        // New identities.
        for (ident, (path, size)) in &seen {
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

        // Identities gone from every path: rotated away or deleted, finished below.
        for (ident, c) in self.cursors.iter_mut() {
            if !seen.contains_key(ident) && c.followed {
                c.followed = false;
                c.idle_since_ms = now_ms;
                debug!(path = %c.path, "file left its path; finishing it");
            }
        }

        // Read: files being finished first (their lines are older), then the followed ones in a
        // rotating order so one big backlog cannot starve the others.
        let mut order: Vec<Ident> = self
            .cursors
            .iter()
            .filter(|(_, c)| !c.followed)
            .map(|(i, _)| *i)
            .collect();
        order.sort_by_key(|i| self.cursors.get(i).map_or(0, |c| c.idle_since_ms));
        let mut followed: Vec<Ident> = self
            .cursors
            .iter()
            .filter(|(_, c)| c.followed)
            .map(|(i, _)| *i)
            .collect();
        if !followed.is_empty() {
            let k = self.round % followed.len();
            followed.rotate_left(k);
        }
        self.round = self.round.wrapping_add(1);
        order.extend(followed);

        let mut stats = RunStats::default();
        let budget = self.settings.max_bytes_per_run;
        // Each file's share is at least one whole chunk, so the longest line always fits.
        let share = (budget / order.len().max(1) as u64).max(self.chunk_bytes());
        let mut drop_ids = Vec::new();
        for ident in order {
            let remaining = budget.saturating_sub(stats.bytes_read);
            match self.read_one(ident, now_ms, share.min(remaining)) {
                Ok(Step { read, more, done }) => {
                    stats.bytes_read += read;
                    stats.backlog |= more;
                    if done {
                        drop_ids.push(ident);
                    }
                }
                Err(Gone) => drop_ids.push(ident),
            }
        }
        for ident in drop_ids {
            if let Some(c) = self.cursors.remove(&ident) {
                debug!(path = %c.path, offset = c.offset, "finished rotated file");
            }
        }
        self.handles.retain(|id, _| self.cursors.contains_key(id));

        // Windows that ended report what they held back.
        let lim = self.settings.rate;
        for (path, r) in self.rates.iter_mut() {
            if let Some((count, since)) = r.roll(now_ms, lim) {
                self.pending
                    .push(pb::event::Body::LogSuppressed(pb::LogSuppressed {
                        path: path.clone(),
                        count,
                        since_unix_ms: since,
                    }));
            }
        }
        self.rates.retain(|_, r| !r.is_idle());
        self.initialized = true;
        stats
    }

    /// Largest single read: bounds memory, and the longest line or group kept whole.
    fn chunk_bytes(&self) -> u64 {
        MAX_CHUNK.min(self.settings.max_bytes_per_run).max(1)
    }

    /// Matches one record and queues its `LogMatch` (or counts it against the rate limit).
    fn report(&mut self, c: &Cursor, buf: &[u8], rec: &Record, now_ms: i64) {
        let texts: Vec<String> = rec
            .lines
            .iter()
            .map(|&(s, e)| String::from_utf8_lossy(&buf[s..e]).into_owned())
            .collect();
        let Some(pattern) = self.matcher.match_record(texts.iter().map(String::as_str)) else {
            return;
        };
        let pattern = pattern.to_owned();
        let rate = self.rates.entry(c.path.clone()).or_default();
        if let Some((count, since)) = rate.roll(now_ms, self.settings.rate) {
            self.pending
                .push(pb::event::Body::LogSuppressed(pb::LogSuppressed {
                    path: c.path.clone(),
                    count,
                    since_unix_ms: since,
                }));
        }
        if !rate.admit(now_ms, self.settings.rate) {
            return;
        }
        let (text, truncated) = excerpt(buf, rec, self.settings.max_excerpt_bytes);
        self.pending.push(pb::event::Body::LogMatch(pb::LogMatch {
            path: c.path.clone(),
            pattern,
            excerpt: text,
            lines: u32::try_from(rec.lines.len()).unwrap_or(u32::MAX),
            offset: c.offset + rec.start as u64,
            truncated,
        }));
    }

    /// Reads one file's next chunk (at most `limit` bytes) and turns it into bodies.
    fn read_one(&mut self, ident: Ident, now_ms: i64, limit: u64) -> Result<Step, Gone> {
        let Some(c) = self.cursors.get(&ident).cloned() else {
            return Err(Gone);
        };
        // Taken out of the map while reading (put back below), so `report` can borrow self.
        let file = match self.handles.remove(&ident) {
            Some(f) => f,
            None => {
                let file = if c.followed {
                    open_checked(Path::new(&c.path), ident)
                } else {
                    find_ident(&parent_of(&c.path), ident)
                };
                match file {
                    Some(f) => f,
                    None if c.followed => return Ok(Step::default()),
                    None => {
                        warn!(path = %c.path, offset = c.offset, "rotated file vanished before it was finished");
                        return Err(Gone);
                    }
                }
            }
        };
        let step = self.read_file(ident, &file, c, now_ms, limit);
        self.handles.insert(ident, file);
        Ok(step)
    }

    fn read_file(&mut self, ident: Ident, file: &File, c: Cursor, now_ms: i64, limit: u64) -> Step {
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                warn!(path = %c.path, error = %ErrorChain(&e), "cannot stat open log file");
                return Step::default();
            }
        };
        let n = self.settings.fingerprint_bytes;
        let mut c = c;
        if c.fp_len < n && size > c.fp_len {
            let len = size.min(n);
            if let Some(fp) = prefix_fp(file, len) {
                c.fp = fp;
                c.fp_len = len;
            }
        }
        let idle_ms = now_ms - c.idle_since_ms;
        let settled = !c.followed && idle_ms >= self.settings.rotate_wait_ms;
        let mut step = Step::default();
        let chunk = self.chunk_bytes();
        // Chunk by chunk (bounded memory) until the file's share of the budget is used.
        while size > c.offset && step.read < limit {
            let want = (size - c.offset).min(limit - step.read).min(chunk);
            let buf = match read_at(file, c.offset, want) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    warn!(path = %c.path, error = %ErrorChain(&e), "cannot read log file");
                    break;
                }
            };
            step.read += buf.len() as u64;
            let more = c.offset + (buf.len() as u64) < size;
            let waited = c.pending_since_ms > 0
                && now_ms - c.pending_since_ms >= self.settings.multiline_timeout_ms;
            let opts = SplitOpts {
                group_tracebacks: self.settings.group_tracebacks,
                max_group_lines: self.settings.max_group_lines,
                final_chunk: settled && !more,
                // Only a whole chunk may cut a line or group that does not fit in it; a chunk
                // cut short by the budget waits for the next run instead.
                more_follows: more && buf.len() as u64 == chunk,
                flush_pending: waited,
            };
            let out = split(&buf, &opts);
            for rec in &out.records {
                self.report(&c, &buf, rec, now_ms);
            }
            if out.consumed > 0 {
                c.offset += out.consumed as u64;
                c.idle_since_ms = now_ms;
                c.pending_since_ms = 0;
            }
            if out.pending_group && c.pending_since_ms == 0 {
                c.pending_since_ms = now_ms;
            }
            if out.consumed == 0 || !more {
                break;
            }
        }
        step.more = step.read >= limit && c.offset < size;
        // A rotated-away file is done once read to its end and quiet for `rotate_wait`.
        step.done = !c.followed
            && c.offset >= size
            && now_ms - c.idle_since_ms >= self.settings.rotate_wait_ms;
        self.cursors.insert(ident, c);
        step
    }
}

#[derive(Debug, Default)]
struct Step {
    read: u64,
    more: bool,
    done: bool,
}

/// The cursor's file can no longer be found.
struct Gone;
