//! The command ledger in the agent's sled (module state of `agent`): the highest epoch seen
//! (`epoch`, decimal), one status per command id (`cmd/<id>` = `<status> <unix_ms>`) and the
//! `OPS_CMDS` sequence of the last command decided with the stream's identity (`seq` =
//! `<seq> <stream>`: the fast path's cursor, `fastpath::fast_step`, valid only in the stream
//! it was counted in), loaded at start and kept in memory; writes go out as `StateWrite`s with
//! the events.
//!
//! Pruning: a finished id's row goes once `LEDGER_KEEP_MS` passed since it was written. Every
//! accepted command's deadline lay at most `MAX_DEADLINE_AHEAD_MS + CLOCK_SKEW_MS` after its
//! arrival (`decide` rejects the rest), so by then any redelivery of it has expired and can
//! never run again; an id still `accepted` (stopped mid-run) is never pruned.

use std::collections::HashMap;

use super::decide::{CLOCK_SKEW_MS, MAX_DEADLINE_AHEAD_MS};
use crate::config::AGENT_MODULE;
use crate::outbox::{Outbox, OutboxError, StateWrite};

const EPOCH_KEY: &str = "epoch";
const SEQ_KEY: &str = "seq";
const CMD_PREFIX: &str = "cmd/";

/// How long a finished command's row is kept: past the longest deadline it can have had, with
/// the clock-skew margin twice (once in the cap, once for the host's own clock stepping back).
pub const LEDGER_KEEP_MS: i64 = MAX_DEADLINE_AHEAD_MS + 2 * CLOCK_SKEW_MS;
// The cap on deadlines is what bounds how long an id must be remembered.
const _: () = assert!(LEDGER_KEEP_MS > MAX_DEADLINE_AHEAD_MS + CLOCK_SKEW_MS);

/// Where a command stands on this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Accepted,
    Completed,
    Failed,
    Rejected,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "accepted" => Status::Accepted,
            "completed" => Status::Completed,
            "failed" => Status::Failed,
            "rejected" => Status::Rejected,
            "expired" => Status::Expired,
            _ => return None,
        })
    }
}

/// Highest epoch and per-id status (with when it was written), as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    highest_epoch: u64,
    seen: HashMap<String, (Status, i64)>,
    /// The stream sequence of the last command decided (accepted, rejected or expired; not a
    /// duplicate); 0 before the first.
    seq: u64,
    /// The identity of the `OPS_CMDS` that `seq` counts in (its creation time).
    stream: Option<String>,
}

impl Ledger {
    /// Reads the `agent` module state. Unreadable entries are skipped (and returned as keys) so
    /// that one bad value cannot stop the agent from taking commands.
    pub fn load(outbox: &Outbox) -> Result<(Ledger, Vec<String>), OutboxError> {
        Ok(Self::from_entries(outbox.module_state(AGENT_MODULE)?))
    }

    /// The ledger of raw `(key, value)` state entries, and the keys that did not parse. Pure.
    pub fn from_entries(entries: Vec<(String, Vec<u8>)>) -> (Ledger, Vec<String>) {
        let mut ledger = Ledger::default();
        let mut bad = Vec::new();
        for (key, value) in entries {
            let text = std::str::from_utf8(&value).unwrap_or_default();
            if key == EPOCH_KEY {
                match text.parse() {
                    Ok(e) => ledger.highest_epoch = e,
                    Err(_) => bad.push(key),
                }
            } else if key == SEQ_KEY {
                let (seq, stream) = match text.split_once(' ') {
                    Some((seq, stream)) => (seq, Some(stream.to_owned())),
                    None => (text, None),
                };
                match seq.parse() {
                    Ok(seq) => {
                        ledger.seq = seq;
                        ledger.stream = stream;
                    }
                    Err(_) => bad.push(key),
                }
            } else if let Some(id) = key.strip_prefix(CMD_PREFIX) {
                let mut parts = text.split(' ');
                let status = parts.next().and_then(Status::parse);
                // A row without a readable time counts as old (prunable once finished).
                let at = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
                match status {
                    Some(s) => {
                        ledger.seen.insert(id.to_owned(), (s, at));
                    }
                    None => bad.push(key),
                }
            }
        }
        (ledger, bad)
    }

    pub fn highest_epoch(&self) -> u64 {
        self.highest_epoch
    }

    /// The stream sequence of the last command decided, by either path, in `OPS_CMDS` of
    /// identity `stream`: `(0, None)` before the first.
    pub fn seq(&self) -> (u64, Option<&str>) {
        (self.seq, self.stream.as_deref())
    }

    /// The write that records a decision at sequence `seq` of the `OPS_CMDS` of identity
    /// `stream`; apply it with `decided` once it is flushed.
    pub fn seq_write(seq: u64, stream: &str) -> StateWrite {
        StateWrite {
            module: AGENT_MODULE.to_owned(),
            key: SEQ_KEY.to_owned(),
            value: Some(format!("{seq} {stream}").into_bytes()),
        }
    }

    /// Records in memory what `seq_write` persisted.
    pub fn decided(&mut self, seq: u64, stream: &str) {
        self.seq = seq;
        self.stream = Some(stream.to_owned());
    }

    pub fn status(&self, id: &str) -> Option<Status> {
        self.seen.get(id).map(|(s, _)| *s)
    }

    /// How many ids the ledger holds.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Finished ids whose rows were written more than `LEDGER_KEEP_MS` before `now_ms`,
    /// sorted. Pure.
    pub fn prunable(&self, now_ms: i64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, (s, at))| {
                *s != Status::Accepted && now_ms.saturating_sub(*at) > LEDGER_KEEP_MS
            })
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The writes that delete `ids`' rows; apply them with `forget` once they are flushed.
    pub fn prune_writes(ids: &[String]) -> Vec<StateWrite> {
        ids.iter()
            .map(|id| StateWrite {
                module: AGENT_MODULE.to_owned(),
                key: format!("{CMD_PREFIX}{id}"),
                value: None,
            })
            .collect()
    }

    /// Drops `ids` from memory (their rows were deleted).
    pub fn forget(&mut self, ids: &[String]) {
        for id in ids {
            self.seen.remove(id);
        }
    }

    /// Ids accepted but never finished (the agent stopped while running them), sorted.
    pub fn unfinished(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, (s, _))| *s == Status::Accepted)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The writes that record `id` as `status` (and a raised epoch); apply them with `commit`
    /// once they are flushed.
    pub fn writes(&self, id: &str, status: Status, epoch: u64, now_ms: i64) -> Vec<StateWrite> {
        let mut w = vec![StateWrite {
            module: AGENT_MODULE.to_owned(),
            key: format!("{CMD_PREFIX}{id}"),
            value: Some(format!("{} {now_ms}", status.as_str()).into_bytes()),
        }];
        if epoch > self.highest_epoch {
            w.push(StateWrite {
                module: AGENT_MODULE.to_owned(),
                key: EPOCH_KEY.to_owned(),
                value: Some(epoch.to_string().into_bytes()),
            });
        }
        w
    }

    /// Records in memory what `writes` persisted (at `now_ms`).
    pub fn commit(&mut self, id: &str, status: Status, epoch: u64, now_ms: i64) {
        self.seen.insert(id.to_owned(), (status, now_ms));
        self.highest_epoch = self.highest_epoch.max(epoch);
    }
}
