//! The command ledger in the agent's sled (module state of `agent`): the highest epoch seen
//! (`epoch`, decimal) and one status per command id (`cmd/<id>` = `<status> <unix_ms>`),
//! loaded at start and kept in memory; writes go out as `StateWrite`s with the events.

use std::collections::HashMap;

use crate::config::AGENT_MODULE;
use crate::outbox::{Outbox, OutboxError, StateWrite};

const EPOCH_KEY: &str = "epoch";
const CMD_PREFIX: &str = "cmd/";

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

/// Highest epoch and per-id status, as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    highest_epoch: u64,
    seen: HashMap<String, Status>,
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
            } else if let Some(id) = key.strip_prefix(CMD_PREFIX) {
                let status = text.split(' ').next().and_then(Status::parse);
                match status {
                    Some(s) => {
                        ledger.seen.insert(id.to_owned(), s);
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

    pub fn status(&self, id: &str) -> Option<Status> {
        self.seen.get(id).copied()
    }

    /// Ids accepted but never finished (the agent stopped while running them), sorted.
    pub fn unfinished(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .seen
            .iter()
            .filter(|(_, s)| **s == Status::Accepted)
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

    /// Records in memory what `writes` persisted.
    pub fn commit(&mut self, id: &str, status: Status, epoch: u64) {
        self.seen.insert(id.to_owned(), status);
        self.highest_epoch = self.highest_epoch.max(epoch);
    }
}
