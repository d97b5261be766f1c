//! The outbox writer task: group-commits whole run outputs (about `GROUP_MAX` events per
//! flush), reports dropped events and wakes the publisher after each commit.

use opsfleet_report::ErrorChain;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tracing::{error, info, warn};

use super::{RunOutput, GROUP_MAX};
use crate::outbox::Outbox;

/// Group commit: take what is ready (whole run outputs, up to about `GROUP_MAX` events),
/// append + flush once, wake the publisher. Ends when every sender is gone and the channel is
/// drained.
pub(super) async fn writer_loop(
    mut rx: mpsc::Receiver<RunOutput>,
    outbox: Arc<Outbox>,
    notify: Arc<Notify>,
) {
    loop {
        let first = if outbox.unreported_drops() > 0 {
            // Report drops as soon as there is room, even if no module has output.
            tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    commit(&outbox, &notify, RunOutput::default()).await;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(mut group) = first else { break };
        // A run's output is never split, so a group may exceed GROUP_MAX by one run.
        while group.events.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(more) => {
                    group.events.extend(more.events);
                    group.state.extend(more.state);
                }
                Err(_) => break,
            }
        }
        commit(&outbox, &notify, group).await;
    }
    // Last chance to report drops before shutdown.
    if outbox.unreported_drops() > 0 {
        commit(&outbox, &notify, RunOutput::default()).await;
    }
}

async fn commit(outbox: &Outbox, notify: &Notify, group: RunOutput) {
    let origin: Vec<(String, i64)> = group
        .events
        .iter()
        .map(|e| (e.module.clone(), e.time_unix_ms))
        .collect();
    let drops_before = outbox.unreported_drops();
    match outbox.append_with_state(group.events, group.state).await {
        Ok(out) => {
            if !out.seqs.is_empty() {
                notify.notify_one();
            }
            crate::telemetry::events_dropped(out.dropped);
            if out.reported_drops {
                info!(reported = drops_before, "reported dropped events");
            }
            if out.dropped > 0 && drops_before == 0 {
                warn!(
                    dropped = out.dropped,
                    pending = outbox.pending(),
                    "outbox full; dropping events until there is room"
                );
            }
        }
        Err(e) => {
            // Count them so an `events_dropped` event reports the loss later.
            error!(events = origin.len(), error = %ErrorChain(&e), "cannot write events to outbox");
            crate::telemetry::events_dropped(origin.len() as u64);
            outbox.record_dropped(origin.iter().map(|(m, t)| (m.as_str(), *t)));
        }
    }
}
