//! Following a rollout (pure): the lines that say what changed between two reads of it (wave
//! started, host updated or failed, gate passed or failed, rolling back), and when following
//! stops with which verdict. opsctl's `rollout.rs` polls; this decides what to print.

use opsfleet_proto::api::{
    RolloutHostState, RolloutHostView, RolloutPhase, RolloutView, RolloutWaveView,
};

use crate::outcome::utc;
use crate::sanitize::inert;
use crate::views::rollouts::{soak_text, wave_name};

/// What a follow waits for: the phase that counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aim {
    /// `rollout start`: completed (or a wave waiting for `promote`).
    Complete,
    /// `rollout abort`: aborted.
    Abort,
    /// `rollout undo`: undone.
    Undo,
}

impl Aim {
    fn phase(self) -> RolloutPhase {
        match self {
            Aim::Complete => RolloutPhase::Completed,
            Aim::Abort => RolloutPhase::Aborted,
            Aim::Undo => RolloutPhase::Undone,
        }
    }
}

/// Where a follow stands after a read: go on, or stop with the closing line (`Ok`: the
/// rollout got where it was asked to; `Err`: it ended otherwise, exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Follow,
    Done(Result<String, String>),
}

/// Whether following `v` stops, and how. Pure.
pub fn verdict(v: &RolloutView, aim: Aim) -> Verdict {
    let id = inert(&v.id);
    if v.phase.is_final() {
        let what = closing(v);
        return Verdict::Done(if v.phase == aim.phase() {
            Ok(what)
        } else {
            Err(what)
        });
    }
    if v.phase == RolloutPhase::WaitingPromote && aim == Aim::Complete {
        return Verdict::Done(Ok(format!(
            "{} passed its gates; `opsctl rollout promote {id}` to go on",
            wave_name(v.wave)
        )));
    }
    Verdict::Follow
}

/// `rollout <id> completed: 6 of 6 hosts run web 2.4.1`, or how and why it ended otherwise.
fn closing(v: &RolloutView) -> String {
    let id = inert(&v.id);
    let updated = count(&v.hosts, RolloutHostState::Updated);
    let mut line = format!("rollout {id} {}", v.phase.as_str());
    if v.phase == RolloutPhase::Completed {
        line.push_str(&format!(
            ": {updated} of {} host(s) run {} {}",
            v.hosts.len(),
            inert(&v.service),
            inert(&v.version)
        ));
    } else if !v.reason.is_empty() {
        line.push_str(&format!(": {}", inert(&v.reason)));
    }
    let stuck: Vec<&str> = v
        .hosts
        .iter()
        .filter(|h| h.state == RolloutHostState::RollbackFailed)
        .map(|h| h.host.as_str())
        .collect();
    if !stuck.is_empty() {
        line.push_str(&format!(
            "; rollback failed on {} (needs an operator)",
            inert(&stuck.join(", "))
        ));
    }
    line
}

fn count(hosts: &[RolloutHostView], state: RolloutHostState) -> usize {
    hosts.iter().filter(|h| h.state == state).count()
}

/// What changed from `prev` to `next`, one line each, in the order a reader follows: a
/// resume or promote first; then wave by wave its start, its hosts' deploys and its gate;
/// then a rollback's reason and each host's way back. A final phase or a wave waiting for
/// promote is said by `verdict`. Pure.
pub fn changes(prev: &RolloutView, next: &RolloutView) -> Vec<String> {
    let mut lines = Vec::new();
    let phase = (prev.phase != next.phase)
        .then(|| phase_line(prev.phase, next))
        .flatten();
    let resumed = next.phase == RolloutPhase::Running;
    if resumed {
        lines.extend(phase.clone());
    }
    let moved = |h: &&RolloutHostView| {
        let before = prev
            .hosts
            .iter()
            .find(|p| p.host == h.host)
            .map_or(RolloutHostState::Pending, |p| p.state);
        before != h.state
    };
    for w in &next.waves {
        let before = prev
            .waves
            .iter()
            .find(|p| p.wave == w.wave)
            .map_or("pending", |p| p.state.as_str());
        let name = wave_name(w.wave);
        let changed = before != w.state;
        if changed && before == "pending" && w.state != "pending" {
            lines.push(started(&name, &w.hosts));
        }
        let forward = next
            .hosts
            .iter()
            .filter(|h| h.wave == w.wave && !backward(h.state))
            .filter(moved);
        lines.extend(forward.filter_map(|h| host_line(next, h)));
        if changed {
            lines.extend(wave_line(next, w));
        }
    }
    if !resumed {
        lines.extend(phase);
    }
    let back = next
        .hosts
        .iter()
        .filter(|h| backward(h.state))
        .filter(moved);
    lines.extend(back.filter_map(|h| host_line(next, h)));
    lines
}

/// States on a host's way back to its previous version.
fn backward(state: RolloutHostState) -> bool {
    matches!(
        state,
        RolloutHostState::RollingBack
            | RolloutHostState::RolledBack
            | RolloutHostState::RollbackFailed
    )
}

/// A wave's new state as a line (its start is said by `started`).
fn wave_line(v: &RolloutView, w: &RolloutWaveView) -> Option<String> {
    let name = wave_name(w.wave);
    let detail = if w.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", inert(&w.detail))
    };
    Some(match w.state.as_str() {
        "pending" | "updating" | "waiting_promote" => return None,
        "soaking" if w.soak_until_unix_ms > 0 => format!(
            "{name} soaking {} until {}",
            soak_text(v.gates.soak_ms),
            utc(w.soak_until_unix_ms)
        ),
        "soaking" => format!("{name} soaking {}", soak_text(v.gates.soak_ms)),
        "passed" => format!("{name} passed its gates{detail}"),
        "failed" => format!("{name} FAILED its gates{detail}"),
        other => format!("{name} {}{detail}", inert(other)),
    })
}

fn started(name: &str, hosts: &[String]) -> String {
    format!(
        "{name} started: {} ({} host(s))",
        inert(&hosts.join(", ")),
        hosts.len()
    )
}

/// A host's new state as a line; `None` for `pending`.
fn host_line(v: &RolloutView, h: &RolloutHostView) -> Option<String> {
    let host = inert(&h.host);
    let previous = if h.previous.is_empty() {
        "its previous version".to_owned()
    } else {
        inert(&h.previous)
    };
    let detail = |lead: &str| {
        if h.detail.is_empty() {
            lead.to_owned()
        } else {
            format!("{lead}: {}", inert(&h.detail))
        }
    };
    Some(match h.state {
        RolloutHostState::Pending => return None,
        RolloutHostState::Before => format!(
            "{host}: running the before step (backup job {})",
            inert(&v.gates.before_job)
        ),
        RolloutHostState::Deploying => format!("{host}: deploying {}", inert(&v.version)),
        RolloutHostState::Updated => {
            format!("{host}: updated to {} (was {previous})", inert(&v.version))
        }
        RolloutHostState::Failed => format!("{host}: {}", detail("FAILED")),
        RolloutHostState::RollingBack => format!("{host}: rolling back to {previous}"),
        RolloutHostState::RolledBack => format!("{host}: rolled back to {previous}"),
        RolloutHostState::RollbackFailed => format!(
            "{host}: {} (needs an operator: `opsctl services --host {host}`)",
            detail("ROLLBACK FAILED")
        ),
    })
}

/// The phase's change as a line, for the phases `verdict` does not close on.
fn phase_line(from: RolloutPhase, v: &RolloutView) -> Option<String> {
    let id = inert(&v.id);
    Some(match v.phase {
        RolloutPhase::Running if from == RolloutPhase::Paused => "resumed".to_owned(),
        RolloutPhase::Running if from == RolloutPhase::WaitingPromote => {
            format!("promoted: {} next", wave_name(v.wave))
        }
        RolloutPhase::Running => "running".to_owned(),
        RolloutPhase::Paused => {
            format!("paused: no new host is updated until `opsctl rollout resume {id}`")
        }
        RolloutPhase::RollingBack if v.reason.is_empty() => "rolling back".to_owned(),
        RolloutPhase::RollingBack => format!("rolling back: {}", inert(&v.reason)),
        RolloutPhase::WaitingPromote
        | RolloutPhase::Completed
        | RolloutPhase::RolledBack
        | RolloutPhase::Aborted
        | RolloutPhase::Undone
        | RolloutPhase::Failed => return None,
    })
}
