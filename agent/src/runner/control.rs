//! Run-time control of the modules: pause / resume / disable / enable / reconfigure by name
//! through a cloneable `ControlHandle` on the runner. Each change is persisted in the agent's
//! sled (`c/<module>`, flushed) before it takes effect, emits a `module_state` event (a refused
//! reconfiguration a `config_rejected` event), and is restored at start.
//!
//! Rules:
//! * paused = still scheduled, runs skipped; disabled = not run, reported as disabled, its
//!   health checks leave the heartbeat. `pause` of a disabled module and `resume` of a disabled
//!   one are refused (use `enable`); `enable` of a paused module leaves it paused. Repeating
//!   the current state is a no-op (no event).
//! * At start the persisted run state wins over the file. A run-time config override is used
//!   only while the file's entry for that module still has the fingerprint it had when the
//!   override was made; once the file changes, the file wins and the override is dropped
//!   (the operator edited the file after the push). A record of a module no longer in the file
//!   is deleted.
//! * reconfigure validates with the config file's checks (every problem), requires the same
//!   `name`, checks a claimed fingerprint against the config's own and the host's `[policy]`
//!   (`HostPolicy`, for the request's `Surface`), swaps the module instance (handing it the
//!   module's persisted state when the kind is unchanged) and keeps the run state. A config
//!   equal to the file's clears the override. A persisted override the policy now refuses is
//!   dropped at start (the file wins).
//!
//! This file owns what the handle and the controller share (replies, errors, requests, the
//! controller's state); `state` owns the run states and their rules, `handle` the
//! `ControlHandle`, `records` the persisted records and start-up, `controller` the requests.

mod controller;
mod handle;
mod records;
mod state;

use std::sync::Arc;

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::{HostPolicy, ModuleConfig, Surface};
use crate::modules::HealthBoard;
use crate::outbox::{NewEvent, Outbox, OutboxError};
use crate::runner::{ModuleEntry, RunOutput, StatusBoard, Trigger};
use opsfleet_proto::time::unix_ms;

pub use handle::ControlHandle;
pub use records::{paused_for, start_plan, Record, StartPlan};
pub use state::{transition, Action, RunState};

/// What a control request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReply {
    pub module: String,
    pub kind: String,
    pub state: RunState,
    /// Fingerprint of the module's config now in effect.
    pub fingerprint: String,
    /// False when the module already was in the requested state.
    pub changed: bool,
}

/// Where a reconfiguration comes from, and the fingerprint its sender claims for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub surface: Surface,
    /// The issuer's fingerprint of the config (`config_apply` / `config_rollback`); the
    /// agent recomputes it and refuses a mismatch (rule `fingerprint`).
    pub claimed_fingerprint: Option<String>,
}

impl Origin {
    /// A command; `claimed` is the command's fingerprint (empty = none claimed).
    pub fn command(claimed: &str) -> Self {
        Origin {
            surface: Surface::Command,
            claimed_fingerprint: (!claimed.is_empty()).then(|| claimed.to_owned()),
        }
    }

    /// The admin HTTP routes.
    pub fn admin() -> Self {
        Origin {
            surface: Surface::Admin,
            claimed_fingerprint: None,
        }
    }
}

/// Rule name of a fingerprint mismatch (in `config_rejected.rules`).
pub const FINGERPRINT_RULE: &str = "fingerprint";

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no module named {module:?}")]
    UnknownModule { module: String },
    #[error("cannot {action} module {module}: {hint}")]
    Conflict {
        module: String,
        action: &'static str,
        hint: &'static str,
    },
    #[error(
        "reconfiguration of module {module} rejected: {}",
        join_problems(problems)
    )]
    Rejected {
        module: String,
        /// (key relative to the module entry, reason), every problem found.
        problems: Vec<(String, String)>,
        /// The host rules broken (`policy.log_paths`, `fingerprint`); empty for plain
        /// config problems.
        rules: Vec<String>,
    },
    #[error("cannot persist the control state of module {module}")]
    Store {
        module: String,
        #[source]
        source: OutboxError,
    },
    #[error("the module runner is not running")]
    Stopped,
    #[error("run of module {module} failed: {reason}")]
    RunFailed { module: String, reason: String },
}

fn join_problems(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(k, r)| format!("{k}: {r}"))
        .collect::<Vec<_>>()
        .join("; ")
}

enum Op {
    Act {
        action: Action,
        reason: String,
    },
    Reconfigure(Box<ModuleConfig>, Origin),
    /// A config that did not even parse: rejected with these problems.
    Reject {
        problems: Vec<(String, String)>,
        fingerprint: String,
    },
    /// Hand events (and state) to the outbox writer behind every change made so far, so they
    /// land after those changes' events (command results).
    Emit(RunOutput),
    /// Start an on-demand run of `what` (a backup job, empty = all); `done` gets its outcome.
    RunNow {
        what: crate::modules::OnDemand,
        done: oneshot::Sender<Result<String, String>>,
    },
}

pub(crate) struct Request {
    module: String,
    op: Op,
    reply: oneshot::Sender<Result<ControlReply, ControlError>>,
}

/// One module as the controller sees it.
struct Controlled {
    name: String,
    kind: &'static str,
    state: RunState,
    /// Config in effect (None for entries built without one, e.g. tests).
    config: Option<ModuleConfig>,
    fingerprint: String,
    /// Fingerprint of the file's entry (what an override is checked against).
    file_fingerprint: String,
    has_override: bool,
    swap: Option<mpsc::Sender<ModuleEntry>>,
    /// Where on-demand runs go (the module's worker).
    trigger: Option<mpsc::Sender<Trigger>>,
}

/// The task behind every `ControlHandle` of one runner.
pub(crate) struct Controller {
    outbox: Arc<Outbox>,
    board: StatusBoard,
    health: HealthBoard,
    events: mpsc::Sender<RunOutput>,
    modules: Vec<Controlled>,
    /// The host's `[policy]` and its config file's own paths, kinds and probes.
    policy: Arc<HostPolicy>,
}

/// A module config as the TOML of one `[[modules]]` entry (what `config rollback` sends
/// back); empty if it cannot be written as TOML.
pub fn config_toml(cfg: &ModuleConfig) -> String {
    toml::to_string(cfg).unwrap_or_default()
}

/// A `module_state` event; `config` is set on start and reconfiguration (see `config_toml`).
fn state_event(
    name: &str,
    kind: &str,
    state: RunState,
    reason: &str,
    fp: &str,
    config: Option<&ModuleConfig>,
) -> NewEvent {
    NewEvent {
        module: name.to_owned(),
        time_unix_ms: unix_ms(std::time::SystemTime::now()),
        body: pb::event::Body::ModuleState(pb::ModuleState {
            module: name.to_owned(),
            kind: kind.to_owned(),
            state: state.to_pb() as i32,
            reason: reason.to_owned(),
            config_fingerprint: fp.to_owned(),
            config_toml: config.map(config_toml).unwrap_or_default(),
        }),
    }
}

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod run_now_tests;
#[cfg(test)]
mod tests;
