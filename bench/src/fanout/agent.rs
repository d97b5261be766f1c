//! The fan-out's simulated agents: each takes its commands the way `ops-agent` does, over the
//! fast path (a plain subscription on `ops.cmd.<host>`, run only while the agent's
//! `FastGate` says the durable consumer is caught up) and over its durable pull consumer
//! `agent-<host>` (explicit acks, one in flight), which still acks every copy it delivers;
//! a seen set makes the second arrival a duplicate. `--fanout-durable-only` leaves the
//! subscription out: the agents as they were before the fast path.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_agent::commands::{published_to_own_subject, FastGate, FastStep};
use opsfleet_proto::{pb, subjects};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::sim::{self, SimHost};

/// The connection count of `client` (a reconnect raises it), as the agent reads it.
fn connection(client: &async_nats::Client) -> u64 {
    client
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Acquire)
}

/// Brings `agents` simulated agents up: a first heartbeat (so the coordinator knows the host),
/// the fast-path subscription (unless `durable_only`), then the command consumer.
pub(super) async fn start(
    js: &jetstream::Context,
    agents: usize,
    durable_only: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let commands = js
        .get_stream(subjects::COMMANDS_STREAM)
        .await
        .context("no OPS_CMDS stream")?;
    let client = js.client();
    let mut acks = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..agents {
        let mut host = SimHost::new(sim::host_name(i));
        acks.push(sim::publish(js, host.encoded("heartbeat", sim::heartbeat(0))).await?);
        hosts.push(host);
    }
    for a in acks {
        a.await.context("PubAck failed")?;
    }
    let mut subscribed = Vec::new();
    for host in hosts {
        let fast = if durable_only {
            None
        } else {
            Some(
                client
                    .subscribe(subjects::command_subject(&host.host))
                    .await
                    .context("cannot subscribe to the fast path")?,
            )
        };
        subscribed.push((host, fast));
    }
    // The subscriptions are in place before any consumer is read.
    client.flush().await.context("cannot flush")?;
    for (host, fast) in subscribed {
        let durable = format!("agent-{}", host.host);
        let c: consumer::PullConsumer = commands
            .get_or_create_consumer(
                &durable,
                consumer::pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: subjects::command_subject(&host.host),
                    ack_policy: consumer::AckPolicy::Explicit,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("cannot create consumer {durable}"))?;
        let agent = SimAgent {
            host,
            js: js.clone(),
            seen: HashSet::new(),
            gate: FastGate::new(connection(&client)),
        };
        tokio::spawn(agent.run(c, fast, cancel.clone()));
    }
    Ok(())
}

struct SimAgent {
    host: SimHost,
    js: jetstream::Context,
    seen: HashSet<String>,
    gate: FastGate,
}

impl SimAgent {
    /// The command loop: fast-path messages while the gate is live, every durable delivery
    /// (acked, then handled), a reading of the consumer whenever it caught up while behind.
    async fn run(
        mut self,
        mut c: consumer::PullConsumer,
        mut fast: Option<async_nats::Subscriber>,
        cancel: CancellationToken,
    ) {
        let client = self.js.client();
        self.read(&mut c, &client).await;
        let Ok(mut messages) = c
            .stream()
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        else {
            return;
        };
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                Some(m) = async {
                    match fast.as_mut() {
                        Some(f) => f.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let own = published_to_own_subject(
                        &self.host.host,
                        m.subject.as_str(),
                        m.reply.as_ref().map(|r| r.as_str()),
                        m.headers.as_ref().is_some_and(|h| h.get("Nats-Stream").is_some()),
                    );
                    match self.gate.step(connection(&client)) {
                        FastStep::Run if own => self.handle(&m.payload).await,
                        // One shared connection: a reconnect loses the fast path for good.
                        FastStep::Reopen => fast = None,
                        _ => {}
                    }
                    continue;
                }
                n = messages.next() => n,
            };
            let msg = match next {
                None => return,
                Some(Err(_)) => {
                    self.gate.lost();
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let caught_up = msg.info().is_ok_and(|i| i.pending == 0);
            let _ = msg.ack().await;
            self.handle(&msg.payload).await;
            if caught_up && !self.gate.live() {
                self.read(&mut c, &client).await;
            }
        }
    }

    /// Reads the consumer's counts into the gate, as the agent does.
    async fn read(&mut self, c: &mut consumer::PullConsumer, client: &async_nats::Client) {
        let asked_on = connection(client);
        match c.info().await {
            Ok(info) => {
                let (pending, unacked) = (info.num_pending, info.num_ack_pending as u64);
                self.gate
                    .reading(pending, unacked, asked_on, connection(client));
            }
            Err(_) => self.gate.lost(),
        }
    }

    /// A command seen for the first time: `command_accepted` then `command_completed`, each
    /// awaited (one publish in flight per host, as `ops-agent`). A duplicate: nothing.
    async fn handle(&mut self, payload: &[u8]) {
        let Ok(cmd) = pb::Command::decode(payload) else {
            return;
        };
        if !self.seen.insert(cmd.id.clone()) {
            return;
        }
        let accepted = pb::event::Body::CommandAccepted(pb::CommandAccepted {
            command_id: cmd.id.clone(),
            epoch: cmd.epoch,
        });
        let completed = pb::event::Body::CommandCompleted(pb::CommandCompleted {
            command_id: cmd.id,
            detail: "bench".to_owned(),
        });
        for body in [accepted, completed] {
            let e = self.host.encoded("agent", body);
            if let Ok(ack) = sim::publish(&self.js, e).await {
                let _ = ack.await;
            }
        }
    }
}
