//! Simulated agents: real `Event`s encoded with the proto crate, per-host seq and incarnation,
//! published to JetStream with `Nats-Msg-Id = id` exactly as `ops-agent` does.

use async_nats::jetstream::{self, context::PublishAckFuture};
use opsfleet_proto::{pb, subjects, EventEnvelope};
use uuid::Uuid;

/// One simulated host's identity and its next seq.
#[derive(Debug, Clone)]
pub struct SimHost {
    pub host: String,
    pub incarnation: Uuid,
    pub next_seq: u64,
}

/// One encoded event, ready to publish.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub subject: String,
    pub id: String,
    pub payload: bytes::Bytes,
}

/// Invented host names: `web-00001`, ... (a subject token, as the projection requires).
pub fn host_name(i: usize) -> String {
    format!("web-{i:05}")
}

pub use opsfleet_proto::time::now_unix_ms;

/// A heartbeat body like the agent's, with one running module.
pub fn heartbeat(uptime_ms: u64) -> pb::event::Body {
    pb::event::Body::Heartbeat(pb::Heartbeat {
        uptime_ms,
        agent_version: "bench".to_owned(),
        interval_ms: 10_000,
        modules: vec![pb::ModuleStatus {
            name: "heartbeat".to_owned(),
            kind: "heartbeat".to_owned(),
            state: pb::ModuleRunState::Running as i32,
            expected_interval_ms: 10_000,
        }],
        outbox_pending: 0,
        labels: Default::default(),
        health: Vec::new(),
        services: Vec::new(),
    })
}

/// A disk sample of `/`.
pub fn disk(used_basis_points: u32) -> pb::event::Body {
    let total = 100_000_000_000u64;
    let used = total / 10_000 * u64::from(used_basis_points);
    pb::event::Body::Disk(pb::DiskUsage {
        path: "/".to_owned(),
        total_bytes: total,
        used_bytes: used,
        avail_bytes: total - used,
        inodes_total: 6_000_000,
        inodes_used: 600_000,
        level: pb::DiskLevel::Ok as i32,
        previous_level: pb::DiskLevel::Ok as i32,
        level_changed: false,
        used_basis_points,
        inodes_used_basis_points: 1000,
    })
}

impl SimHost {
    pub fn new(host: String) -> SimHost {
        SimHost {
            host,
            incarnation: Uuid::now_v7(),
            next_seq: 1,
        }
    }

    /// Stamps `body` with the next seq, a UUIDv7 id and the current time.
    pub fn event(&mut self, module: &str, body: pb::event::Body) -> EventEnvelope {
        let seq = self.next_seq;
        self.next_seq += 1;
        EventEnvelope {
            id: Uuid::now_v7(),
            host: self.host.clone(),
            seq,
            time_unix_ms: now_unix_ms(),
            module: module.to_owned(),
            incarnation: self.incarnation,
            body,
        }
    }

    /// `event` encoded with its subject `ops.evt.<host>.<kind>`.
    pub fn encoded(&mut self, module: &str, body: pb::event::Body) -> Encoded {
        let ev = self.event(module, body);
        Encoded {
            subject: subjects::event_subject(&ev.host, ev.kind()),
            id: ev.id.to_string(),
            payload: ev.encode_to_vec().into(),
        }
    }
}

/// Sends one event with `Nats-Msg-Id`; the returned future resolves to the PubAck.
pub async fn publish(
    js: &jetstream::Context,
    e: Encoded,
) -> Result<PublishAckFuture, async_nats::jetstream::context::PublishError> {
    let msg = jetstream::message::PublishMessage::build()
        .payload(e.payload)
        .message_id(e.id);
    js.send_publish(e.subject, msg).await
}

/// PubAcks outstanding, at most `cap`: `push` awaits the oldest when full, `drain` the rest;
/// `last` is the highest stream sequence acknowledged so far.
pub struct InFlight {
    pending: std::collections::VecDeque<PublishAckFuture>,
    cap: usize,
    pub last: u64,
}

impl InFlight {
    pub fn new(cap: usize) -> Self {
        InFlight {
            pending: std::collections::VecDeque::with_capacity(cap),
            cap: cap.max(1),
            last: 0,
        }
    }

    /// Publishes `e` and keeps its ack in flight.
    pub async fn push(&mut self, js: &jetstream::Context, e: Encoded) -> anyhow::Result<()> {
        use anyhow::Context as _;
        self.pending
            .push_back(publish(js, e).await.context("publish failed")?);
        if self.pending.len() >= self.cap {
            if let Some(ack) = self.pending.pop_front() {
                self.last = ack.await.context("PubAck failed")?.sequence;
            }
        }
        Ok(())
    }

    /// Awaits every ack still in flight; the last stream sequence.
    pub async fn drain(&mut self) -> anyhow::Result<u64> {
        use anyhow::Context as _;
        while let Some(ack) = self.pending.pop_front() {
            self.last = ack.await.context("PubAck failed")?.sequence;
        }
        Ok(self.last)
    }
}

/// A fresh nats-server for one section, a JetStream context on it (30 s timeout) and the
/// project's streams and bucket, as a coordinator would create them.
pub async fn bus_with_topology() -> anyhow::Result<(
    opsfleet_tests::NatsServer,
    jetstream::Context,
    opsfleet_bus::Topology,
)> {
    use anyhow::Context as _;
    let nats = opsfleet_tests::NatsServer::start().await?;
    let client = async_nats::connect(nats.url())
        .await
        .context("cannot connect to nats-server")?;
    let mut js = jetstream::new(client);
    js.set_timeout(std::time::Duration::from_secs(30));
    let topology = opsfleet_bus::ensure_topology(&js, &opsfleet_bus::TopologyConfig::default())
        .await
        .context("cannot create the topology")?;
    Ok((nats, js, topology))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsfleet_coordinator::admit::admit;
    use opsfleet_coordinator::ingest::decode_from;
    use opsfleet_coordinator::projection::Fleet;

    #[test]
    fn simulated_events_pass_the_coordinators_checks() {
        let mut h = SimHost::new(host_name(7));
        for body in [heartbeat(1), disk(4250)] {
            let e = h.encoded("heartbeat", body);
            let (ev, publisher) = decode_from(&e.subject, &e.payload).unwrap();
            // ... including who may say what: a simulated agent says only agent things.
            assert_eq!(admit(&Fleet::new(), &ev, publisher), Ok(()));
            assert_eq!(ev.host, "web-00007");
            assert_eq!(ev.id.to_string(), e.id);
        }
        assert_eq!(h.next_seq, 3);
    }
}
