//! The tailer (blocking I/O, run on the blocking pool): finds the files, follows each by its
//! identity (device, inode, fingerprint of the first bytes), detects rotation by rename+create
//! (the old identity leaves its path: it is finished by its open handle, or found again by
//! identity in its directory after a restart) and by copytruncate (size below the cursor or a
//! changed fingerprint: the copy is found by fingerprint and finished, the file restarts at 0),
//! and reads at most a budget of bytes per run.

mod read;
mod scan;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

use super::group::Matcher;
use super::identity::Ident;
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

    /// One run: discover, detect rotation, read up to the budget, and append the bodies to
    /// `self.pending`.
    pub fn run(&mut self, now_ms: i64) -> RunStats {
        let seen = self.discover();
        self.recheck_known(&seen, now_ms);
        self.track_new(&seen, now_ms);
        self.mark_gone(&seen, now_ms);
        let order = self.read_order();
        let stats = self.read_all(order, now_ms);
        self.report_ended_windows(now_ms);
        self.initialized = true;
        stats
    }

    /// Largest single read: bounds memory, and the longest line or group kept whole.
    fn chunk_bytes(&self) -> u64 {
        MAX_CHUNK.min(self.settings.max_bytes_per_run).max(1)
    }
}
