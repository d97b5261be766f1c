//! Whether this coordinator may act on the fleet now: active in some term, and caught up with
//! the event stream as it stood when the term began (so it has folded everything the previous
//! active recorded). The alert engine and the rollout driver act only through it; the group
//! and drill drivers through `Turns` (a tick or an operator's ask, each in an open gate).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::Stream;
use opsfleet_report::ErrorChain;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
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

/// An operator's request to a driver, refused with why when the gate is closed.
pub(crate) trait Refusable {
    /// Answers the request: not run, because of `why`.
    fn refuse(self, why: Closed);
}

/// One turn of a gated driver: this coordinator may act in `epoch`, on a tick (`ask` is
/// `None`) or on an operator's request.
pub(crate) struct Turn<A> {
    pub epoch: u64,
    /// The first turn of this term: what the driver remembered of the last one is stale.
    pub new_term: bool,
    pub ask: Option<A>,
}

/// The loop the group and drill drivers share: every `every`, or when a request arrives, a
/// turn — only when the gate is open; a request arriving while it is closed is refused with
/// why (not active, catching up).
pub(crate) struct Turns {
    gate: Gate,
    tick: Interval,
    term: u64,
    asks_open: bool,
}

impl Turns {
    pub(crate) fn new(gate: Gate, every: Duration) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Turns {
            gate,
            tick,
            term: 0,
            asks_open: true,
        }
    }

    /// The gate the turns pass through (to check the term still holds before each act).
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The next turn; `None` once `cancel` fired.
    pub(crate) async fn next<A: Refusable>(
        &mut self,
        asks: &mut mpsc::Receiver<A>,
        cancel: &CancellationToken,
    ) -> Option<Turn<A>> {
        loop {
            let ask = tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = self.tick.tick() => None,
                // Once the API is gone, only the ticks are left.
                ask = asks.recv(), if self.asks_open => {
                    self.asks_open = ask.is_some();
                    ask
                }
            };
            match self.gate.open_or_why().await {
                Ok(epoch) => {
                    let new_term = epoch != self.term;
                    self.term = epoch;
                    return Some(Turn {
                        epoch,
                        new_term,
                        ask,
                    });
                }
                Err(why) => {
                    if let Some(ask) = ask {
                        ask.refuse(why);
                    }
                }
            }
        }
    }
}
