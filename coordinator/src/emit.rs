//! Events a coordinator publishes about itself (module `coordinator`, host = its name, on
//! `ops.coord.<name>.<kind>`, a space only coordinator credentials may publish): each
//! gets a durably reserved seq of the coordinator's own incarnation, then is published with
//! `Nats-Msg-Id = id` and retried until JetStream acknowledges it. A crash between the two
//! leaves a gap in the coordinator's seqs, which the fold records like any other gap.

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use backon::{ExponentialBuilder, Retryable};
use opsfleet_proto::pb::event::Body;
use opsfleet_proto::{subjects, EventEnvelope, COORDINATOR_MODULE};
use tokio::sync::mpsc;
use tracing::warn;
use uuid::Uuid;

use crate::store::{EventStore, StoreError};

/// Own events awaiting their PubAck at once in one `emit_all`: well under the JetStream
/// context's limit (async-nats's 5,000), which every publisher of the connection shares.
pub const EMIT_WINDOW: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error("cannot reserve a seq for a {kind} event")]
    Reserve {
        kind: &'static str,
        #[source]
        source: StoreError,
    },
    #[error("the task reserving a seq for a {kind} event failed")]
    Task {
        kind: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("stored incarnation {value:?} is not a UUID")]
    Incarnation { value: String },
    #[error("{kind} event seq {seq} was not acknowledged on {subject}")]
    Publish {
        kind: &'static str,
        seq: u64,
        subject: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Publishes this coordinator's own events.
#[derive(Clone)]
pub struct Emitter {
    js: jetstream::Context,
    store: Arc<dyn EventStore>,
    name: String,
}

impl Emitter {
    pub fn new(js: jetstream::Context, store: Arc<dyn EventStore>, name: &str) -> Self {
        Emitter {
            js,
            store,
            name: name.to_owned(),
        }
    }

    /// Reserves a seq, publishes, and retries for up to `patience` until acknowledged.
    pub async fn emit(&self, body: Body, patience: Duration) -> Result<u64, EmitError> {
        let mut seqs = self.emit_all(vec![body], patience).await?;
        Ok(seqs.pop().unwrap_or(0))
    }

    /// Reserves seqs for all bodies at once (one durable write), publishes them in order with
    /// their acks pipelined, and retries each until acknowledged, for up to `patience` in all.
    pub async fn emit_all(
        &self,
        bodies: Vec<Body>,
        patience: Duration,
    ) -> Result<Vec<u64>, EmitError> {
        self.emit_all_reporting(bodies, patience, None).await
    }

    /// `emit_all`, and sends each body's index on `acked` as soon as JetStream has acknowledged
    /// its event (in order), so a caller can act on every event already durable in the stream
    /// while the later ones are still in flight. `acked` is dropped when this returns.
    pub async fn emit_all_reporting(
        &self,
        bodies: Vec<Body>,
        patience: Duration,
        acked: Option<mpsc::UnboundedSender<usize>>,
    ) -> Result<Vec<u64>, EmitError> {
        let Some(first_body) = bodies.first() else {
            return Ok(Vec::new());
        };
        let kind = opsfleet_proto::body_kind(first_body);
        let n = bodies.len() as u64;
        let store = Arc::clone(&self.store);
        let (incarnation, first) = tokio::task::spawn_blocking(move || store.reserve_own_seqs(n))
            .await
            .map_err(|source| EmitError::Task { kind, source })?
            .map_err(|source| EmitError::Reserve { kind, source })?;
        let incarnation = Uuid::parse_str(&incarnation).map_err(|_| EmitError::Incarnation {
            value: incarnation.clone(),
        })?;
        let time_unix_ms = opsfleet_proto::time::now_unix_ms();
        let events: Vec<EventEnvelope> = bodies
            .into_iter()
            .zip(first..)
            .map(|(body, seq)| EventEnvelope {
                id: Uuid::now_v7(),
                host: self.name.clone(),
                seq,
                time_unix_ms,
                module: COORDINATOR_MODULE.to_owned(),
                incarnation,
                body,
            })
            .collect();
        let deadline = tokio::time::Instant::now() + patience;
        // Pipelined, at most `EMIT_WINDOW` acks in flight: the JetStream context admits a
        // bounded number (async-nats: 5,000, shared by every publisher of this connection),
        // and a publish past them waits for one to be awaited, so sending all of a 10,000-host
        // fan-out before awaiting any hung it. Acks are settled in order.
        let mut in_flight = std::collections::VecDeque::with_capacity(EMIT_WINDOW);
        let mut seqs = Vec::with_capacity(events.len());
        for (i, ev) in events.iter().enumerate() {
            if in_flight.len() >= EMIT_WINDOW {
                if let Some((j, sent)) = in_flight.pop_front() {
                    self.settle(&events, j, sent, deadline, acked.as_ref(), &mut seqs)
                        .await?;
                }
            }
            let subject = subjects::coordinator_event_subject(&self.name, ev.kind());
            let msg = jetstream::message::PublishMessage::build()
                .payload(ev.encode_to_vec().into())
                .message_id(ev.id.to_string());
            in_flight.push_back((i, self.js.send_publish(subject, msg).await));
        }
        while let Some((j, sent)) = in_flight.pop_front() {
            self.settle(&events, j, sent, deadline, acked.as_ref(), &mut seqs)
                .await?;
        }
        Ok(seqs)
    }

    /// Waits for the ack of `events[i]` (sent as `sent`), republishing it until `deadline` if
    /// there is none; then records its seq and reports `i` on `acked`.
    async fn settle(
        &self,
        events: &[EventEnvelope],
        i: usize,
        sent: Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>,
        deadline: tokio::time::Instant,
        acked: Option<&mpsc::UnboundedSender<usize>>,
        seqs: &mut Vec<u64>,
    ) -> Result<(), EmitError> {
        let ev = &events[i];
        let result = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(async_nats::Error::from),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            warn!(kind = ev.kind(), seq = ev.seq, error = %ErrorChain(&*e), "own event not acknowledged; retrying");
            self.publish_until_acked(ev, deadline).await?;
        }
        seqs.push(ev.seq);
        if let Some(tx) = acked {
            // A receiver that has gone away only means nobody waits for this any more.
            let _ = tx.send(i);
        }
        Ok(())
    }

    /// Retries one event (same id, so the server drops a copy) until acked or `deadline`.
    async fn publish_until_acked(
        &self,
        ev: &EventEnvelope,
        deadline: tokio::time::Instant,
    ) -> Result<(), EmitError> {
        let kind = ev.kind();
        let subject = subjects::coordinator_event_subject(&self.name, kind);
        let payload: bytes::Bytes = ev.encode_to_vec().into();
        let id = ev.id.to_string();
        let publish = || async {
            let msg = jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(&id);
            let ack = self.js.send_publish(subject.clone(), msg).await?;
            ack.await?;
            Ok::<(), async_nats::Error>(())
        };
        let attempt = publish
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(1))
                    .without_max_times(),
            )
            .notify(|e, after| warn!(kind, seq = ev.seq, error = %ErrorChain(&**e), retry_in = ?after, "own event not acknowledged"));
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(EmitError::Publish {
                kind,
                seq: ev.seq,
                subject,
                source,
            }),
            Err(_) => Err(EmitError::Publish {
                kind,
                seq: ev.seq,
                subject,
                source: "gave up retrying".into(),
            }),
        }
    }
}
