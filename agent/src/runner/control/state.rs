//! Run states (running, paused, disabled), the actions that change them, and the pure
//! transition rules.

use opsfleet_proto::pb;
use serde::{Deserialize, Serialize};

/// Whether the scheduler runs a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Paused,
    Disabled,
}

impl RunState {
    pub fn to_pb(self) -> pb::ModuleRunState {
        match self {
            RunState::Running => pb::ModuleRunState::Running,
            RunState::Paused => pb::ModuleRunState::Paused,
            RunState::Disabled => pb::ModuleRunState::Disabled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Disabled => "disabled",
        }
    }
}

/// A run-state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pause,
    Resume,
    Disable,
    Enable,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Disable => "disable",
            Action::Enable => "enable",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pause" => Some(Action::Pause),
            "resume" => Some(Action::Resume),
            "disable" => Some(Action::Disable),
            "enable" => Some(Action::Enable),
            _ => None,
        }
    }
}

/// The state after `action` (pure): `Ok(None)` = already there, `Err(hint)` = refused.
pub fn transition(current: RunState, action: Action) -> Result<Option<RunState>, &'static str> {
    use Action::{Disable, Enable, Pause, Resume};
    use RunState::{Disabled, Paused, Running};
    let next = match (current, action) {
        (Disabled, Pause) | (Disabled, Resume) => return Err("it is disabled; enable it first"),
        (Running, Pause) => Paused,
        (Paused, Resume) => Running,
        (Disabled, Enable) => Running,
        (_, Disable) => Disabled,
        (Paused, Pause) | (Running, Resume) | (Running, Enable) | (Paused, Enable) => current,
    };
    Ok((next != current).then_some(next))
}
