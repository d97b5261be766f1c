//! One simulated agent of the fan-out: the real command protocol (durable consumer, the fast
//! path under `ops-agent`'s own rules, lifecycle events through JetStream), no sled outbox.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use opsfleet_proto::pb;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::sim::{self, SimHost};

/// One simulated agent's command loop: a command from the durable consumer (acked after
/// deciding) or, while `fast_on`, from the fast path under `ops-agent`'s rules (the stream's
/// republish, right after the last message handled); each id once, then
/// `command_accepted` and `command_completed`, each awaited (one publish in flight per host,
/// as `ops-agent`).
pub(super) async fn sim_agent(
    mut host: SimHost,
    c: consumer::PullConsumer,
    mut fast: async_nats::Subscriber,
    fast_on: Arc<AtomicBool>,
    js: jetstream::Context,
    cancel: CancellationToken,
) {
    use opsfleet_agent::commands::{fast_copy, fast_step, FastStep};
    let Ok(mut messages) = c
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
    else {
        return;
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let cmd = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            Some(m) = fast.next() => {
                if !fast_on.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(placed) = fast_copy(&host.host, m.subject.as_str(), m.headers.as_ref()) else {
                    continue;
                };
                if fast_step(placed, cursor) != FastStep::Run {
                    continue;
                }
                cursor = placed.seq;
                let Ok(cmd) = pb::Command::decode(m.payload.as_ref()) else {
                    continue;
                };
                if seen.contains(&cmd.id) {
                    continue;
                }
                cmd
            }
            n = messages.next() => {
                let msg = match n {
                    None => return,
                    Some(Err(_)) => continue,
                    Some(Ok(m)) => m,
                };
                let decoded = pb::Command::decode(msg.payload.as_ref());
                let _ = msg.ack().await;
                if let Ok(info) = msg.info() {
                    cursor = cursor.max(info.stream_sequence);
                }
                match decoded {
                    Ok(cmd) if !seen.contains(&cmd.id) => cmd,
                    _ => continue,
                }
            }
        };
        seen.insert(cmd.id.clone());
        let accepted = pb::event::Body::CommandAccepted(pb::CommandAccepted {
            command_id: cmd.id.clone(),
            epoch: cmd.epoch,
        });
        let completed = pb::event::Body::CommandCompleted(pb::CommandCompleted {
            command_id: cmd.id,
            detail: "bench".to_owned(),
        });
        for body in [accepted, completed] {
            let e = host.encoded("agent", body);
            if let Ok(ack) = sim::publish(&js, e).await {
                let _ = ack.await;
            }
        }
    }
}
