//! The read half of a tailer run: the order files are read in, each file's share of the
//! budget read chunk by chunk and split into records, and the matching records (or the
//! rate limit's `LogSuppressed` counts) queued as bodies.

use opsfleet_report::ErrorChain;
use std::fs::File;
use std::path::Path;

use opsfleet_proto::pb;
use tracing::{debug, warn};

use super::{Cursor, RunStats, Tailer};
use crate::modules::log::group::{excerpt, split, Record, SplitOpts};
use crate::modules::log::identity::{
    find_ident, open_checked, parent_of, prefix_fp, read_at, Ident,
};

impl Tailer {
    /// Files being finished first (their lines are older), then the followed ones in a
    /// rotating order so one big backlog cannot starve the others.
    pub(super) fn read_order(&mut self) -> Vec<Ident> {
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
        order
    }

    /// Reads the files in `order` within the run's budget, then drops the cursors of files
    /// finished or vanished (and the handles of identities no longer tracked).
    pub(super) fn read_all(&mut self, order: Vec<Ident>, now_ms: i64) -> RunStats {
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
        stats
    }

    /// Windows that ended report what they held back.
    pub(super) fn report_ended_windows(&mut self, now_ms: i64) {
        let lim = self.settings.rate;
        for (path, r) in self.rates.iter_mut() {
            if let Some((count, since)) = r.roll(now_ms, lim) {
                self.pending.push(suppressed(path, count, since));
            }
        }
        self.rates.retain(|_, r| !r.is_idle());
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
            self.pending.push(suppressed(&c.path, count, since));
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
        let mut c = c;
        self.fill_fingerprint(&mut c, file, size);
        let step = self.read_chunks(&mut c, file, size, now_ms, limit);
        self.cursors.insert(ident, c);
        step
    }

    /// Extends the cursor's fingerprint while the file is shorter than `fingerprint_bytes`.
    fn fill_fingerprint(&self, c: &mut Cursor, file: &File, size: u64) {
        let n = self.settings.fingerprint_bytes;
        if c.fp_len < n && size > c.fp_len {
            let len = size.min(n);
            if let Some(fp) = prefix_fp(file, len) {
                c.fp = fp;
                c.fp_len = len;
            }
        }
    }

    /// Chunk by chunk (bounded memory) until the file's share of the budget is used: splits
    /// each chunk into records, reports them and moves the cursor past what was consumed.
    fn read_chunks(
        &mut self,
        c: &mut Cursor,
        file: &File,
        size: u64,
        now_ms: i64,
        limit: u64,
    ) -> Step {
        let idle_ms = now_ms - c.idle_since_ms;
        let settled = !c.followed && idle_ms >= self.settings.rotate_wait_ms;
        let mut step = Step::default();
        let chunk = self.chunk_bytes();
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
                self.report(c, &buf, rec, now_ms);
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
        step
    }
}

/// The `LogSuppressed` body for `count` lines of `path` held back since `since_unix_ms`.
fn suppressed(path: &str, count: u64, since: i64) -> pb::event::Body {
    pb::event::Body::LogSuppressed(pb::LogSuppressed {
        path: path.to_owned(),
        count,
        since_unix_ms: since,
    })
}

#[derive(Debug, Default)]
struct Step {
    read: u64,
    more: bool,
    done: bool,
}

/// The cursor's file can no longer be found.
struct Gone;
