//! Whether the group driver may act: active in some term, and its store holds everything the
//! stream held when the term began (so it has folded what the previous active recorded). The
//! alert engine's gate (`alerts/engine.rs`), for the groups.

use std::sync::Arc;

use async_nats::jetstream::stream::Stream;
use opsfleet_report::ErrorChain;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::state::Shared;

/// Why the driver may not act now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Not active in any term.
    NotActive,
    /// Active, still folding what the stream held when the term began.
    CatchingUp,
}

pub struct Gate {
    shared: Arc<Shared>,
    stream: Stream,
    /// (epoch, stream sequence to reach) of the current term.
    barrier: Option<(u64, u64)>,
    caught_up: bool,
}

impl Gate {
    pub fn new(shared: Arc<Shared>, stream: Stream) -> Self {
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

    /// The term's epoch if this coordinator may act now.
    pub async fn open(&mut self) -> Result<u64, Closed> {
        let epoch = self.epoch().ok_or(Closed::NotActive)?;
        let target = match self.barrier {
            Some((e, seq)) if e == epoch => seq,
            _ => {
                let info = match self.stream.get_info().await {
                    Ok(info) => info,
                    Err(e) => {
                        warn!(error = %ErrorChain(&e), "cannot read the event stream's position; groups wait");
                        return Err(Closed::CatchingUp);
                    }
                };
                let seq = info.state.last_sequence;
                self.barrier = Some((epoch, seq));
                self.caught_up = false;
                info!(
                    epoch,
                    stream_seq = seq,
                    "groups: active, catching up before acting"
                );
                seq
            }
        };
        let applied = self.shared.applied();
        if applied < target {
            debug!(applied, target, "groups: catching up");
            return Err(Closed::CatchingUp);
        }
        if !self.caught_up {
            self.caught_up = true;
            info!(
                epoch,
                applied, "groups: caught up; keeping one active per group"
            );
        }
        Ok(epoch)
    }

    /// Still acting in `epoch` right now?
    pub fn still(&self, epoch: u64) -> bool {
        self.epoch() == Some(epoch)
    }
}
