//! The writer's side of the outbox: group appends with gap-free seqs in one flushed batch,
//! overflow counted per module and reported as `events_dropped`, and module state written with
//! the events and read back at start.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use opsfleet_proto::pb;
use prost::Message;
use uuid::Uuid;

use super::{
    event_key, state_key, AppendOutcome, Drops, NewEvent, Outbox, OutboxError, StateWrite,
    META_DROPS, META_LAST_SEQ,
};
use crate::config::AGENT_MODULE;
use opsfleet_proto::time::unix_ms;

impl Outbox {
    /// Writes a group of events with consecutive seqs and the new `last_seq` in one atomic
    /// batch, then flushes, and only then makes them visible to the publisher. When the outbox
    /// is full the excess is counted per module; the first group that finds room again starts
    /// with one `events_dropped` event. An empty group only reports pending drops.
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<AppendOutcome, OutboxError> {
        self.append_with_state(events, Vec::new()).await
    }

    /// `append`, plus module-state writes in the SAME sled batch and flush as the events, so
    /// a crash keeps or loses both (a log cursor never runs ahead of, or behind, its matches).
    /// State is written even when the events were dropped for lack of room: the drops are
    /// counted and reported, never re-produced.
    pub async fn append_with_state(
        &self,
        events: Vec<NewEvent>,
        state_writes: Vec<StateWrite>,
    ) -> Result<AppendOutcome, OutboxError> {
        let (outcome, last_seq, changed) = self.write_batch(events, state_writes)?;
        if changed {
            self.db
                .flush_async()
                .await
                .map_err(self.store_err("flush"))?;
            self.durable_seq.fetch_max(last_seq, Ordering::AcqRel);
        }
        Ok(outcome)
    }

    /// Under the lock: stages the pending drops report, the events that fit, the drop
    /// counters, `last_seq` and the state writes in one sled batch and applies it (when it
    /// changes anything). Returns the outcome, the last seq and whether a flush is needed.
    fn write_batch(
        &self,
        events: Vec<NewEvent>,
        state_writes: Vec<StateWrite>,
    ) -> Result<(AppendOutcome, u64, bool), OutboxError> {
        let mut state = self.lock();
        let mut staging = Staging {
            outbox: self,
            batch: sled::Batch::default(),
            seq: state.last_seq,
            room: self.max_events.saturating_sub(self.pending()),
            drops: state.drops.clone(),
            outcome: AppendOutcome::default(),
        };
        staging.report_drops();
        staging.events(events);
        let Staging {
            mut batch,
            seq,
            drops,
            outcome,
            ..
        } = staging;
        let drops_changed = drops != state.drops;
        if drops_changed {
            if drops.count == 0 {
                batch.remove(META_DROPS);
            } else {
                let raw = serde_json::to_vec(&drops).unwrap_or_default();
                batch.insert(META_DROPS, raw);
            }
        }
        if seq != state.last_seq {
            batch.insert(META_LAST_SEQ, &seq.to_be_bytes());
        }
        let has_state = !state_writes.is_empty();
        for w in state_writes {
            let key = state_key(&w.module, &w.key);
            match w.value {
                Some(v) => batch.insert(key.as_bytes(), v),
                None => batch.remove(key.as_bytes()),
            }
        }
        let changed = drops_changed || seq != state.last_seq || has_state;
        if changed {
            self.db
                .apply_batch(batch)
                .map_err(self.store_err("write"))?;
            self.pending
                .fetch_add(outcome.seqs.len() as u64, Ordering::AcqRel);
            state.last_seq = seq;
            state.drops = drops;
        }
        Ok((outcome, seq, changed))
    }

    /// Every persisted state key of `module` (without the `s/<module>/` prefix) and its value,
    /// in key order; handed to `Module::restore` before the module's first run.
    pub fn module_state(&self, module: &str) -> Result<Vec<(String, Vec<u8>)>, OutboxError> {
        let prefix = state_key(module, "");
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(prefix.as_bytes()) {
            let (key, value) = kv.map_err(self.store_err("scan"))?;
            let rest = key.get(prefix.len()..).unwrap_or_default();
            let name = std::str::from_utf8(rest).map_err(|_| OutboxError::Corrupt {
                path: self.path.clone(),
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "state key is not UTF-8".to_owned(),
            })?;
            out.push((name.to_owned(), value.to_vec()));
        }
        Ok(out)
    }

    /// Counts events that never reached the store (e.g. a failed write) so they are reported.
    pub fn record_dropped<'a>(&self, modules: impl IntoIterator<Item = (&'a str, i64)>) {
        let mut state = self.lock();
        for (module, at_ms) in modules {
            state.drops.record(module, at_ms);
        }
    }
}

/// One group of events being staged under the lock: the sled batch, the last seq given out,
/// the room left in the outbox, the drops not yet reported and what the group did.
struct Staging<'o> {
    outbox: &'o Outbox,
    batch: sled::Batch,
    seq: u64,
    room: u64,
    drops: Drops,
    outcome: AppendOutcome,
}

impl Staging<'_> {
    /// Stages one event with the next seq (taking one unit of room).
    fn event(&mut self, module: &str, time: i64, body: pb::event::Body) {
        self.seq += 1;
        let ev = pb::Event {
            id: Uuid::now_v7().to_string(),
            host: self.outbox.host.clone(),
            seq: self.seq,
            time_unix_ms: time,
            module: module.to_owned(),
            incarnation: self.outbox.incarnation.to_string(),
            body: Some(body),
        };
        self.batch.insert(&event_key(self.seq), ev.encode_to_vec());
        self.outcome.seqs.push(self.seq);
        self.room -= 1;
    }

    /// Drops counted earlier are reported first (one `events_dropped`) when there is room.
    fn report_drops(&mut self) {
        if self.drops.count > 0 && self.room > 0 {
            let body = std::mem::take(&mut self.drops).into_body();
            self.event(AGENT_MODULE, unix_ms(SystemTime::now()), body);
            self.outcome.reported_drops = true;
        }
    }

    /// Stages the events that fit; the rest are counted as drops per module.
    fn events(&mut self, events: Vec<NewEvent>) {
        for ev in events {
            if self.room == 0 {
                self.drops.record(&ev.module, ev.time_unix_ms);
                self.outcome.dropped += 1;
                continue;
            }
            self.event(&ev.module, ev.time_unix_ms, ev.body);
        }
    }
}
