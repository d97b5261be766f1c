//! The fan-out's arrival clock: a subscriber on its own thread, runtime and connection that
//! stamps each agent's lifecycle events as they arrive.

use super::*;

/// Starts the arrival clock on its own thread, runtime and connection, so that the 1,000
/// simulated agents' tasks cannot delay the stamping of what arrives.
pub(super) async fn start_arrival_clock(
    client: &async_nats::Client,
    arrivals: &Arc<Mutex<Arrivals>>,
    cancel: &CancellationToken,
) -> Result<()> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    let arrivals = Arc::clone(arrivals);
    let port = client.server_info().port;
    let cancel = cancel.clone();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        rt.block_on(stamp_arrivals(port, arrivals, ready_tx, cancel));
    });
    ready_rx.await.context("arrival clock thread died")?
}

/// Subscribes to the lifecycle events on `127.0.0.1:<port>` and stamps each on arrival.
async fn stamp_arrivals(
    port: u16,
    arrivals: Arc<Mutex<Arrivals>>,
    ready: tokio::sync::oneshot::Sender<Result<()>>,
    cancel: CancellationToken,
) {
    let subscribed = async {
        let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .context("cannot connect the arrival clock")?;
        let sub = client
            .subscribe("ops.evt.*.command_accepted")
            .await
            .context("cannot subscribe")?;
        let done = client
            .subscribe("ops.evt.*.command_completed")
            .await
            .context("cannot subscribe")?;
        client.flush().await.context("cannot flush")?;
        anyhow::Ok((client, sub, done))
    }
    .await;
    let (_client, mut sub, mut done) = match subscribed {
        Ok(s) => {
            let _ = ready.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    loop {
        let (msg, accepted) = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(m) = sub.next() => (m, true),
            Some(m) = done.next() => (m, false),
            else => return,
        };
        let at = Instant::now();
        let Ok(ev) = EventEnvelope::decode(&msg.payload) else {
            continue;
        };
        let mut a = arrivals.lock().unwrap_or_else(|e| e.into_inner());
        match ev.body {
            pb::event::Body::CommandAccepted(c) if accepted => {
                a.accepted.insert(c.command_id, at);
            }
            pb::event::Body::CommandCompleted(c) if !accepted => {
                a.completed.insert(c.command_id, at);
            }
            _ => {}
        }
    }
}
