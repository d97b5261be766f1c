//! The publisher's side of the outbox: the lowest flushed pending event, every stored event
//! (inspection), removal after PubAck, and the final flush.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use opsfleet_proto::{subjects, EventEnvelope};

use super::{event_key, seq_of_key, Outbox, OutboxError, StoredEvent, EVENT_PREFIX};

impl Outbox {
    /// The lowest flushed, unacknowledged event.
    pub fn first_pending(&self) -> Result<Option<StoredEvent>, OutboxError> {
        let durable = self.durable_seq.load(Ordering::Acquire);
        let Some((key, value)) = self
            .db
            .scan_prefix(EVENT_PREFIX)
            .next()
            .transpose()
            .map_err(self.store_err("read"))?
        else {
            return Ok(None);
        };
        let seq = seq_of_key(&self.path, &key)?;
        if seq > durable {
            return Ok(None);
        }
        let env = EventEnvelope::decode(&value).map_err(|source| OutboxError::BadEvent {
            path: self.path.clone(),
            seq,
            source,
        })?;
        Ok(Some(StoredEvent {
            seq,
            id: env.id.to_string(),
            subject: subjects::event_subject(&env.host, env.kind()),
            bytes: Bytes::copy_from_slice(&value),
        }))
    }

    /// Every stored event in seq order (inspection and tests).
    pub fn pending_events(&self) -> Result<Vec<EventEnvelope>, OutboxError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(EVENT_PREFIX) {
            let (key, value) = kv.map_err(self.store_err("scan"))?;
            let seq = seq_of_key(&self.path, &key)?;
            out.push(
                EventEnvelope::decode(&value).map_err(|source| OutboxError::BadEvent {
                    path: self.path.clone(),
                    seq,
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// Deletes an acknowledged event. Not flushed: a lost delete only re-publishes an event
    /// that JetStream and the coordinators deduplicate.
    pub fn remove(&self, seq: u64) -> Result<(), OutboxError> {
        if self
            .db
            .remove(event_key(seq))
            .map_err(self.store_err("delete from"))?
            .is_some()
        {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Flushes everything (used at shutdown so acknowledged deletes stick).
    pub async fn flush(&self) -> Result<(), OutboxError> {
        self.db
            .flush_async()
            .await
            .map_err(self.store_err("flush"))?;
        Ok(())
    }
}
