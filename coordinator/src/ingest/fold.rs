//! The fold of one consumer batch (no I/O): each message's stream sequence checked against the
//! cursor, decoded, admitted and folded into the fleet; what to commit (the accepted events'
//! bytes and the applied sequence), what to park on the dead-letter subject, and the last
//! message to acknowledge.

use async_nats::jetstream;
use tracing::warn;

use super::park::{self, Parked};
use super::pipeline::Outcome;
use super::{decode_from, Cursor, Step};
use crate::admit;
use crate::projection::{Fleet, Verdict};
use crate::store::Commit;

/// What one batch's fold decided.
pub(super) struct Folded {
    /// The accepted events and the new applied stream sequence (rows added by the caller
    /// when a snapshot is due).
    pub commit: Commit,
    pub parked: Vec<park::Letter>,
    pub duplicates: u64,
    /// Index of the last message persisted or skipped: the one to acknowledge.
    pub ack_upto: Option<usize>,
    pub outcome: Outcome,
}

/// Folds the contiguous prefix of `batch` into `fleet`, starting from `applied` (the last
/// stream sequence already folded: persisted, or in a batch still being persisted).
pub(super) fn fold_batch(
    fleet: &mut Fleet,
    batch: &[jetstream::Message],
    cursor: &mut Cursor,
    applied: u64,
) -> Folded {
    let mut folded = Folded {
        commit: Commit {
            applied_stream_seq: applied,
            log: Vec::with_capacity(batch.len()),
            ..Default::default()
        },
        parked: Vec::new(),
        duplicates: 0,
        ack_upto: None,
        outcome: Outcome::Continue,
    };
    for (i, msg) in batch.iter().enumerate() {
        let Ok(info) = msg.info() else {
            warn!(subject = %msg.subject, "message without JetStream metadata, skipped");
            continue;
        };
        let seq = info.stream_sequence;
        match cursor.step(seq) {
            Step::Skip => {
                folded.ack_upto = Some(i);
                continue;
            }
            Step::Take => {}
            Step::TakeAfterHole { first, last } => {
                warn!(first, last, "stream sequences no longer in the stream (expired or deleted) before this coordinator persisted them");
            }
            Step::Reposition => {
                folded.outcome = Outcome::Reposition;
                break;
            }
        }
        folded.ack_upto = Some(i);
        folded.commit.applied_stream_seq = seq;
        let arrived = info.published.unix_timestamp_nanos() / 1_000_000;
        fold_one(
            fleet,
            msg,
            seq,
            i64::try_from(arrived).unwrap_or(0),
            &mut folded,
        );
    }
    folded
}

/// Decodes, admits and folds one message taken by the cursor.
fn fold_one(
    fleet: &mut Fleet,
    msg: &jetstream::Message,
    seq: u64,
    arrived_unix_ms: i64,
    folded: &mut Folded,
) {
    // A server relay copy (direct get to a chosen reply subject) was published by nobody
    // the subject names: parked before its bytes are even decoded.
    let names = msg.headers.iter().flat_map(|h| h.iter());
    let names = names.map(|(name, _)| AsRef::<str>::as_ref(name));
    if let Err(refusal) = admit::published(&msg.subject, names) {
        folded
            .parked
            .push(park::Letter::new(msg, seq, Parked::Refused(refusal)));
        return;
    }
    let (ev, publisher) = match decode_from(&msg.subject, &msg.payload) {
        Ok(decoded) => decoded,
        Err(bad) => {
            folded
                .parked
                .push(park::Letter::new(msg, seq, Parked::Malformed(bad)));
            return;
        }
    };
    // Who may say what: checked against the fold so far, so an event earlier in this batch
    // counts. A refused event is parked and never folded.
    if let Err(refusal) = admit::admit(fleet, &ev, publisher) {
        folded
            .parked
            .push(park::Letter::new(msg, seq, Parked::Refused(refusal)));
        return;
    }
    match fleet.apply(&ev) {
        Verdict::Accepted { gap } => {
            if let Some(g) = gap {
                warn!(host = %ev.host, first = g.first, last = g.last, "seq gap");
            }
            // Liveness goes by the bus's clock, not the agent's (which may jump).
            fleet.note_arrival(&ev.host, &ev.module, arrived_unix_ms);
            folded.commit.log.push((seq, msg.payload.clone()));
        }
        Verdict::Duplicate => folded.duplicates += 1,
    }
}
