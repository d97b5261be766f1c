//! Whether this coordinator may act on the fleet now: active in some term, and caught up with
//! the event stream as it stood when the term began (so it has folded everything the previous
//! active recorded). The alert engine and the rollout driver act only through it.

use std::sync::Arc;

use async_nats::jetstream::stream::Stream;
use opsfleet_report::ErrorChain;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::state::Shared;

/// Why a gate is closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Not active in any term.
    NotActive,
    /// Active, still folding what the stream held when the term began.
    CatchingUp,
}

/// Whether this coordinator may act: active in some term, and its store holds everything the
/// stream held when the term began (so it has folded what the previous active recorded).
pub(crate) struct Gate {
    shared: Arc<Shared>,
    stream: Stream,
    /// Who acts through it, for the log ("alerts", "rollouts", "groups").
    what: &'static str,
    /// (epoch, stream sequence to reach) of the current term.
    barrier: Option<(u64, u64)>,
    caught_up: bool,
}

impl Gate {
    pub(crate) fn new(shared: Arc<Shared>, stream: Stream, what: &'static str) -> Self {
        Gate {
            shared,
            stream,
            what,
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
        self.open_or_why().await.ok()
    }

    /// The term's epoch if this coordinator may act now, else why not.
    pub(crate) async fn open_or_why(&mut self) -> Result<u64, Closed> {
        let what = self.what;
        let epoch = self.epoch().ok_or(Closed::NotActive)?;
        let target = match self.barrier {
            Some((e, seq)) if e == epoch => seq,
            _ => {
                let info = match self.stream.get_info().await {
                    Ok(info) => info,
                    Err(e) => {
                        warn!(what, error = %ErrorChain(&e), "cannot read the event stream's position; waiting");
                        return Err(Closed::CatchingUp);
                    }
                };
                let seq = info.state.last_sequence;
                self.barrier = Some((epoch, seq));
                self.caught_up = false;
                info!(
                    what,
                    epoch,
                    stream_seq = seq,
                    "active, catching up before acting"
                );
                seq
            }
        };
        let applied = self.shared.applied();
        if applied < target {
            debug!(what, applied, target, "catching up");
            return Err(Closed::CatchingUp);
        }
        if !self.caught_up {
            self.caught_up = true;
            info!(what, epoch, applied, "caught up; acting");
        }
        Ok(epoch)
    }

    /// Still acting in `epoch` right now?
    pub(crate) fn still(&self, epoch: u64) -> bool {
        self.epoch() == Some(epoch)
    }
}
