//! Publishes the outbox to JetStream one event at a time, in seq order: publish with
//! `Nats-Msg-Id = id`, wait for the PubAck, delete, next. Failures retry the same event with
//! exponential backoff, forever.

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use backon::{ExponentialBuilder, Retryable};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

use crate::outbox::{Outbox, OutboxError, StoredEvent};

/// Why one publish attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot send event seq {seq} to {subject}")]
    Send {
        seq: u64,
        subject: String,
        #[source]
        source: jetstream::context::PublishError,
    },
    #[error("no PubAck for event seq {seq} on {subject}")]
    Ack {
        seq: u64,
        subject: String,
        #[source]
        source: jetstream::context::PublishError,
    },
    #[error("no PubAck for event seq {seq} on {subject} within {timeout:?}")]
    Timeout {
        seq: u64,
        subject: String,
        timeout: Duration,
    },
}

/// Where published events go. The JetStream context in production; tests may substitute.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes one event and returns once the stream acknowledged it.
    async fn publish(&self, ev: &StoredEvent) -> Result<(), PublishError>;
}

/// JetStream publishing with `Nats-Msg-Id` dedup and a PubAck timeout.
pub struct JetStreamSink {
    js: jetstream::Context,
    ack_timeout: Duration,
}

impl JetStreamSink {
    pub fn new(js: jetstream::Context, ack_timeout: Duration) -> Self {
        JetStreamSink { js, ack_timeout }
    }
}

#[async_trait::async_trait]
impl EventSink for JetStreamSink {
    async fn publish(&self, ev: &StoredEvent) -> Result<(), PublishError> {
        let attempt = async {
            let msg = PublishMessage::build()
                .payload(ev.bytes.clone())
                .message_id(&ev.id);
            let ack = self
                .js
                .send_publish(ev.subject.clone(), msg)
                .await
                .map_err(|source| PublishError::Send {
                    seq: ev.seq,
                    subject: ev.subject.clone(),
                    source,
                })?;
            let ack = ack.await.map_err(|source| PublishError::Ack {
                seq: ev.seq,
                subject: ev.subject.clone(),
                source,
            })?;
            if ack.duplicate {
                debug!(seq = ev.seq, stream = %ack.stream, "publish was a duplicate");
            }
            Ok(())
        };
        // The ack future has its own timeout; this one also bounds a send stuck while
        // disconnected.
        tokio::time::timeout(self.ack_timeout, attempt)
            .await
            .unwrap_or(Err(PublishError::Timeout {
                seq: ev.seq,
                subject: ev.subject.clone(),
                timeout: self.ack_timeout,
            }))
    }
}

/// Controls of a running publisher.
#[derive(Debug, Clone, Default)]
pub struct PublisherControl {
    /// Stop now, even mid-publish (the event stays in the outbox).
    pub stop: CancellationToken,
    /// Exit once the outbox is empty (graceful shutdown).
    pub drain: CancellationToken,
}

/// Retry schedule: 100 ms doubling to 2 s, no limit on attempts.
pub fn retry_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .without_max_times()
}

/// The single publish loop of an agent.
pub struct Publisher<S> {
    outbox: Arc<Outbox>,
    sink: S,
    notify: Arc<Notify>,
}

impl<S: EventSink> Publisher<S> {
    /// `notify` is signalled by whoever appends to the outbox.
    pub fn new(outbox: Arc<Outbox>, sink: S, notify: Arc<Notify>) -> Self {
        Publisher {
            outbox,
            sink,
            notify,
        }
    }

    /// Runs until `ctl.stop`, or until `ctl.drain` is set and the outbox is empty.
    pub async fn run(self, ctl: PublisherControl) {
        let host = self.outbox.host().to_owned();
        loop {
            if ctl.stop.is_cancelled() {
                return;
            }
            let ev = match self.outbox.first_pending() {
                Ok(ev) => ev,
                Err(e) => {
                    self.on_read_error(&host, e).await;
                    if ctl.stop.is_cancelled() {
                        return;
                    }
                    continue;
                }
            };
            let Some(ev) = ev else {
                if ctl.drain.is_cancelled() {
                    return;
                }
                tokio::select! {
                    _ = ctl.stop.cancelled() => return,
                    _ = ctl.drain.cancelled() => {}
                    _ = self.notify.notified() => {}
                    // Belt and braces: re-check now and then even without a notification.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            let seq = ev.seq;
            let mut failures = 0u64;
            let publish_started = std::time::Instant::now();
            let publish = (|| self.sink.publish(&ev))
                .retry(retry_backoff())
                .sleep(tokio::time::sleep)
                .notify(|err: &PublishError, after: Duration| {
                    failures += 1;
                    // First failure and every 10th after: an outage should not flood the log.
                    if failures % 10 == 1 {
                        warn!(host = %host, seq, failures, error = %ErrorChain(&err), retry_in = ?after, "publish failed");
                    } else {
                        debug!(host = %host, seq, failures, error = %ErrorChain(&err), retry_in = ?after, "publish failed");
                    }
                });
            tokio::select! {
                _ = ctl.stop.cancelled() => return,
                res = publish => {
                    // `retry` without a limit only returns on success.
                    if res.is_ok() {
                        crate::telemetry::publish_latency(publish_started.elapsed());
                        debug!(host = %host, seq, "published");
                        if let Err(e) = self.outbox.remove(seq) {
                            error!(host = %host, seq, error = %ErrorChain(&e), "cannot delete published event");
                        }
                    }
                }
            }
        }
    }

    async fn on_read_error(&self, host: &str, e: OutboxError) {
        match e {
            OutboxError::BadEvent { seq, .. } => {
                // Not decodable means not publishable, ever; keeping it would block every
                // later event. Drop it loudly (the coordinator will see the seq gap).
                error!(host, seq, error = %ErrorChain(&e), "removing undecodable event from outbox");
                if let Err(e) = self.outbox.remove(seq) {
                    error!(host, seq, error = %ErrorChain(&e), "cannot delete undecodable event");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            other => {
                error!(host, error = %ErrorChain(&other), "cannot read outbox");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::NewEvent;
    use opsfleet_proto::pb;
    use std::sync::Mutex;

    /// Fails the first `fail` attempts, then records what it got.
    struct FlakySink {
        fail: Mutex<u32>,
        got: Mutex<Vec<(u64, String)>>,
        attempts: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl EventSink for Arc<FlakySink> {
        async fn publish(&self, ev: &StoredEvent) -> Result<(), PublishError> {
            self.attempts.lock().unwrap().push(ev.id.clone());
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(PublishError::Timeout {
                    seq: ev.seq,
                    subject: ev.subject.clone(),
                    timeout: Duration::ZERO,
                });
            }
            self.got.lock().unwrap().push((ev.seq, ev.id.clone()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn publishes_in_order_retrying_the_same_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ob =
            Arc::new(Outbox::open(&dir.path().join("agent.sled"), "web-01", 100).expect("open"));
        let evs = (0..3)
            .map(|_| NewEvent {
                module: "heartbeat".into(),
                time_unix_ms: 1,
                body: pb::event::Body::Heartbeat(pb::Heartbeat::default()),
            })
            .collect();
        ob.append(evs).await.expect("append");
        let sink = Arc::new(FlakySink {
            fail: Mutex::new(2),
            got: Mutex::new(Vec::new()),
            attempts: Mutex::new(Vec::new()),
        });
        let ctl = PublisherControl::default();
        ctl.drain.cancel();
        let publisher = Publisher::new(ob.clone(), sink.clone(), Arc::new(Notify::new()));
        tokio::time::timeout(Duration::from_secs(10), publisher.run(ctl))
            .await
            .expect("drains");
        let got = sink.got.lock().unwrap().clone();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 2, 3]);
        let attempts = sink.attempts.lock().unwrap().clone();
        assert_eq!(attempts.len(), 5);
        // The two failed attempts and the success carried the same id.
        assert!(attempts[..3].iter().all(|a| *a == got[0].1));
        assert_eq!(ob.pending(), 0);
    }
}
