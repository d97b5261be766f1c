//! An operator's run of a drill now (`ops.api.drill`): the request as the driver receives it,
//! its answer, and why it is refused — an unknown drill (checked by any coordinator), a drill
//! already running (one drill at a time, fleet-wide: refused, not queued, so an operator never
//! waits on someone else's drill without knowing), or this coordinator not acting.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::config::DrillConfig;
use crate::acting::{Closed, Refusable};

/// A run asked of the driver.
#[derive(Debug)]
pub struct Ask {
    pub drill: String,
    pub requested_by: String,
    pub reply: oneshot::Sender<Result<Ran, Refused>>,
}

impl Refusable for Ask {
    fn refuse(self, why: Closed) {
        let _ = self.reply.send(Err(match why {
            Closed::NotActive => Refused::NotActive,
            Closed::CatchingUp => Refused::CatchingUp,
        }));
    }
}

/// A run that ended (passed or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub drill: String,
    pub kind: String,
    pub run_id: String,
    pub phase: String,
    pub took_ms: u64,
    pub detail: String,
}

/// Why a run was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this coordinator is not active; the active one answers")]
    NotActive,
    #[error(
        "this coordinator is active but still catching up with the stream; try again in a moment"
    )]
    CatchingUp,
    #[error("unknown drill {drill:?} (declared: {known})")]
    Unknown { drill: String, known: String },
    #[error("drill {running} is running (run {run_id}); one drill runs at a time: try again when it ended (opsctl drills)")]
    Busy { running: String, run_id: String },
    #[error("the start of drill {drill} could not be recorded; it was not run")]
    NotRecorded { drill: String },
}

/// The run now under way on this coordinator: (drill, run id).
pub type Running = Arc<Mutex<Option<(String, String)>>>;

/// The API's way to the driver, and the declared drills it checks names against.
#[derive(Debug, Clone)]
pub struct DrillsHandle {
    tx: mpsc::Sender<Ask>,
    drills: Arc<Vec<DrillConfig>>,
    running: Running,
}

impl DrillsHandle {
    pub(super) fn new(tx: mpsc::Sender<Ask>, drills: &[DrillConfig], running: Running) -> Self {
        DrillsHandle {
            tx,
            drills: Arc::new(drills.to_vec()),
            running,
        }
    }

    /// The declared drills.
    pub fn drills(&self) -> &[DrillConfig] {
        &self.drills
    }

    /// Whether `drill` is declared: the refusal naming what is, if not (pure).
    pub fn check(&self, drill: &str) -> Result<(), Refused> {
        if self.drills.iter().any(|d| d.name == drill) {
            return Ok(());
        }
        let known: Vec<&str> = self.drills.iter().map(|d| d.name.as_str()).collect();
        Err(Refused::Unknown {
            drill: drill.to_owned(),
            known: if known.is_empty() {
                "none: no [[drills]] in the coordinator's config".to_owned()
            } else {
                known.join(", ")
            },
        })
    }

    /// Runs `drill` now; answered when it ended (or is refused).
    pub async fn run(&self, drill: String, requested_by: String) -> Result<Ran, Refused> {
        self.check(&drill)?;
        if let Some((running, run_id)) = self.running.lock().ok().and_then(|r| r.clone()) {
            return Err(Refused::Busy { running, run_id });
        }
        let (reply, rx) = oneshot::channel();
        let ask = Ask {
            drill,
            requested_by,
            reply,
        };
        self.tx.send(ask).await.map_err(|_| Refused::NotActive)?;
        rx.await.unwrap_or(Err(Refused::NotActive))
    }
}
