//! Whether this coordinator may act on the fleet now: active in some term, and caught up with
//! the event stream as it stood when the term began (so it has folded everything the previous
//! active recorded). The alert engine and the rollout driver act only through it.

use std::sync::Arc;

use async_nats::jetstream::stream::Stream;
use opsfleet_report::ErrorChain;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::state::Shared;

/// Whether this coordinator may act: active in some term, and its store holds everything the
/// stream held when the term began (so it has folded what the previous active recorded).
pub(crate) struct Gate {
    shared: Arc<Shared>,
    stream: Stream,
    /// (epoch, stream sequence to reach) of the current term.
    barrier: Option<(u64, u64)>,
    caught_up: bool,
}

impl Gate {
    pub(crate) fn new(shared: Arc<Shared>, stream: Stream) -> Self {
        Gate {
            shared,
            stream,
            barrier: None,
            caught_up: false,
        }
    }

    fn epoch(&self) -> Option<u64> {
        self.shared.leadership.view().acting_epoch(Instant::now())
    }

    /// The term's epoch if this coordinator may act now. `None` also when a new term began
    /// (callers drop their per-term memory then).
    pub(crate) async fn open(&mut self) -> Option<u64> {
        let epoch = self.epoch()?;
        let target = match self.barrier {
            Some((e, seq)) if e == epoch => seq,
            _ => {
                let info = match self.stream.get_info().await {
                    Ok(info) => info,
                    Err(e) => {
                        warn!(error = %ErrorChain(&e), "cannot read the event stream's position; acting waits");
                        return None;
                    }
                };
                let seq = info.state.last_sequence;
                self.barrier = Some((epoch, seq));
                self.caught_up = false;
                info!(epoch, stream_seq = seq, "active, catching up before acting");
                seq
            }
        };
        let applied = self.shared.applied();
        if applied < target {
            debug!(applied, target, "catching up");
            return None;
        }
        if !self.caught_up {
            self.caught_up = true;
            info!(epoch, applied, "caught up; acting");
        }
        Some(epoch)
    }

    /// Still acting in `epoch` right now?
    pub(crate) fn still(&self, epoch: u64) -> bool {
        self.epoch() == Some(epoch)
    }
}
