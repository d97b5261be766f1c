//! Rollouts as a pure fold of the log: each rollout's plan (its `started` step), its waves,
//! gates, operators' requests and end, and every command it sent a host with that command's
//! outcome (folded from the agents' lifecycle events through an index of command ids). A step
//! recorded in an older term than one already folded for the same rollout is ignored (a
//! deposed active coordinator cannot move a rollout its successor drives).

use std::collections::{BTreeMap, HashMap};

use opsfleet_proto::api::{CommandState, RolloutPhase, RolloutStrategy};
use opsfleet_proto::pb::{self, event::Body, rollout_step::Step};
use opsfleet_proto::EventEnvelope;
use serde::{Deserialize, Serialize};

use super::bounds::clip;

/// Steps of one rollout kept for `rollout status` (the newest).
pub const ROLLOUT_HISTORY: usize = 200;
/// Rollouts kept; the oldest ended one is forgotten past this.
pub const ROLLOUTS_KEPT: usize = 200;

/// One command a rollout sent one host, and what became of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCommand {
    pub id: String,
    /// `before`, `deploy`, `rollback`, `switch`, `switch_back`, `stop_old`.
    pub purpose: String,
    pub version: String,
    pub wave: u32,
    pub deadline_unix_ms: i64,
    /// The recording coordinator's clock.
    pub at_unix_ms: i64,
    /// `unknown` until its `command_issued` is folded (a crash between the two leaves it so).
    pub state: CommandState,
    pub detail: String,
    /// Rejected by fencing (an epoch older than the agent had seen): it never ran.
    #[serde(default)]
    pub fenced: bool,
}

impl HostCommand {
    /// Final: completed, failed, rejected or expired.
    pub fn is_final(&self) -> bool {
        self.state.is_final()
    }

    /// It ran (or may have): completed or failed. Expired, fenced and other rejections never
    /// started on the host.
    pub fn ran(&self) -> bool {
        matches!(self.state, CommandState::Completed | CommandState::Failed)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutHost {
    pub wave: u32,
    /// Left out when its wave reached it, and why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skipped: String,
    /// Every command sent to it, oldest first.
    pub commands: Vec<HostCommand>,
}

impl RolloutHost {
    /// The newest command of `purpose`.
    pub fn last(&self, purpose: &str) -> Option<&HostCommand> {
        self.commands.iter().rev().find(|c| c.purpose == purpose)
    }

    /// Deploy commands of the rollout it completed.
    pub fn deploys_completed(&self) -> u32 {
        let n = (self.commands.iter())
            .filter(|c| c.purpose == "deploy" && c.state == CommandState::Completed)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateRecord {
    pub wave: u32,
    pub gate: String,
    pub passed: bool,
    pub reason: String,
    pub at_unix_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub at_unix_ms: i64,
    pub epoch: u64,
    pub step: String,
    pub detail: String,
}

/// Why and into what a rollout is being rolled back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub reason: String,
    /// The outcome once every host is back: `rolled_back`, `aborted` or `undone`.
    pub outcome: String,
    pub at_unix_ms: i64,
}

/// The rollout as started: what, where (the waves, fixed), the gates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub service: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub artifact: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    pub strategy: String,
    pub waves: Vec<Vec<String>>,
    /// `(host, reason)` of hosts matched but left out at start.
    pub skipped: Vec<(String, String)>,
    pub previous: BTreeMap<String, String>,
    pub max_unavailable: u32,
    pub ready_samples: u32,
    pub soak_ms: u64,
    pub manual: bool,
    pub two_person: bool,
    pub started_by: String,
    pub started_role: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub before_job: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub green_service: String,
    pub keep_old_ms: u64,
    pub command_deadline_ms: u64,
    /// Probe latency p95 bound of the soak (ms); 0 = none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_p95_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl From<&pb::RolloutStarted> for Plan {
    fn from(p: &pb::RolloutStarted) -> Self {
        Plan {
            service: clip(&p.service),
            version: clip(&p.version),
            artifact: clip(&p.artifact),
            sha256: clip(&p.sha256),
            strategy: clip(&p.strategy),
            waves: p.waves.iter().map(|w| w.hosts.clone()).collect(),
            skipped: (p.skipped.iter())
                .map(|s| (s.host.clone(), clip(&s.reason)))
                .collect(),
            previous: p
                .previous
                .iter()
                .map(|(h, v)| (h.clone(), clip(v)))
                .collect(),
            max_unavailable: p.max_unavailable.max(1),
            ready_samples: p.ready_samples,
            soak_ms: p.soak_ms,
            manual: p.manual,
            two_person: p.two_person,
            started_by: clip(&p.started_by),
            started_role: clip(&p.started_role),
            before_job: clip(&p.before_job),
            green_service: clip(&p.green_service),
            keep_old_ms: p.keep_old_ms,
            command_deadline_ms: p.command_deadline_ms,
            max_p95_ms: p.max_p95_ms,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub plan: Plan,
    pub started_at_unix_ms: i64,
    pub strategy: RolloutStrategy,
    /// The highest epoch of a folded step: older steps are ignored.
    pub epoch: u64,
    /// Steps folded (the driver waits for its own to come back before deciding again).
    pub steps: u64,
    /// Waves started (the current wave is `waves_started - 1`).
    pub waves_started: u32,
    pub hosts: BTreeMap<String, RolloutHost>,
    pub gates: Vec<GateRecord>,
    /// Waves an operator promoted (`--manual`).
    pub promoted: Vec<u32>,
    pub paused: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// `(outcome, reason, at)` once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<(String, String, i64)>,
    pub history: Vec<StepRecord>,
}

impl Rollout {
    /// The wave being updated or gated, if one started.
    pub fn wave(&self) -> Option<u32> {
        self.waves_started.checked_sub(1)
    }

    pub fn wave_count(&self) -> u32 {
        u32::try_from(self.plan.waves.len()).unwrap_or(u32::MAX)
    }

    /// The gate `gate` of `wave`, if recorded (the newest).
    pub fn gate(&self, wave: u32, gate: &str) -> Option<&GateRecord> {
        (self.gates.iter().rev()).find(|g| g.wave == wave && g.gate == gate)
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    pub fn phase(&self) -> RolloutPhase {
        if let Some((outcome, _, _)) = &self.ended {
            return RolloutPhase::from_outcome(outcome).unwrap_or(RolloutPhase::Failed);
        }
        if self.rollback.is_some() {
            return RolloutPhase::RollingBack;
        }
        if self.paused {
            return RolloutPhase::Paused;
        }
        if self.waiting_promote().is_some() {
            return RolloutPhase::WaitingPromote;
        }
        RolloutPhase::Running
    }

    /// The wave that passed its soak and waits for `rollout promote` (`--manual`), if any.
    pub fn waiting_promote(&self) -> Option<u32> {
        let wave = self.wave()?;
        let soaked = self.gate(wave, "soak").is_some_and(|g| g.passed);
        let last = wave + 1 >= self.wave_count();
        (self.plan.manual && soaked && !last && !self.promoted.contains(&wave)).then_some(wave)
    }

    /// `reason` of the end, or of the rollback under way.
    pub fn reason(&self) -> &str {
        match (&self.ended, &self.rollback) {
            (Some((_, reason, _)), _) => reason,
            (None, Some(r)) => &r.reason,
            _ => "",
        }
    }

    fn note(&mut self, at: i64, epoch: u64, step: &str, detail: String) {
        self.history.push(StepRecord {
            at_unix_ms: at,
            epoch,
            step: step.to_owned(),
            detail: clip(&detail),
        });
        let excess = self.history.len().saturating_sub(ROLLOUT_HISTORY);
        self.history.drain(..excess);
    }
}

/// Every rollout, and which rollout each of their commands belongs to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rollouts {
    pub rollouts: BTreeMap<String, Rollout>,
    /// Command id → rollout id: derived from the rollouts, never stored.
    by_command: HashMap<String, String>,
}

impl Rollouts {
    pub fn get(&self, id: &str) -> Option<&Rollout> {
        self.rollouts.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rollout> {
        self.rollouts.values()
    }

    /// Puts a stored rollout back (loading rows).
    pub fn insert(&mut self, r: Rollout) {
        for h in r.hosts.values() {
            for c in &h.commands {
                self.by_command.insert(c.id.clone(), r.id.clone());
            }
        }
        self.rollouts.insert(r.id.clone(), r);
    }

    /// Folds a `rollout` step; returns the rollout id it changed (and any forgotten one).
    pub fn apply_step(&mut self, s: &pb::RolloutStep) -> Vec<String> {
        let Some(step) = &s.step else {
            return Vec::new();
        };
        if let Step::Started(plan) = step {
            // One rollout of a service at a time, whoever recorded a second start.
            let busy = (self.rollouts.values())
                .any(|r| r.plan.service == plan.service && !r.phase().is_final());
            if busy || self.rollouts.contains_key(&s.rollout_id) {
                return Vec::new();
            }
            let mut r = Rollout {
                id: s.rollout_id.clone(),
                plan: Plan::from(plan),
                started_at_unix_ms: s.at_unix_ms,
                strategy: RolloutStrategy::parse(&plan.strategy).unwrap_or_default(),
                epoch: s.epoch,
                steps: 1,
                ..Rollout::default()
            };
            for (i, wave) in r.plan.waves.iter().enumerate() {
                for host in wave {
                    r.hosts.entry(host.clone()).or_default().wave =
                        u32::try_from(i).unwrap_or(u32::MAX);
                }
            }
            let detail = format!(
                "{} {} to {} host(s) in {} wave(s) by {}",
                plan.service,
                plan.version,
                r.hosts.len(),
                plan.waves.len(),
                plan.started_by
            );
            r.note(s.at_unix_ms, s.epoch, "started", detail);
            self.rollouts.insert(r.id.clone(), r);
            let mut changed = vec![s.rollout_id.clone()];
            changed.extend(self.forget_oldest());
            return changed;
        }
        let superseded = self.rollouts.get(&s.rollout_id).is_some_and(|r| {
            (self.rollouts.values()).any(|o| {
                o.plan.service == r.plan.service && o.started_at_unix_ms > r.started_at_unix_ms
            })
        });
        let Some(r) = self.rollouts.get_mut(&s.rollout_id) else {
            return Vec::new();
        };
        if s.epoch < r.epoch {
            return Vec::new();
        }
        if let Step::Control(c) = step {
            // Undo of an older rollout would put back a version a later rollout replaced.
            if c.op == "undo" && superseded {
                return Vec::new();
            }
        }
        if let Step::HostCommand(c) = step {
            let known = (r.hosts.get(&c.host))
                .is_some_and(|h| h.commands.iter().any(|x| x.id == c.command_id));
            if known {
                return Vec::new();
            }
        }
        r.epoch = s.epoch;
        r.steps += 1;
        let (at, epoch) = (s.at_unix_ms, s.epoch);
        match step {
            Step::Started(_) => {}
            Step::WaveStarted(w) => {
                r.waves_started = r.waves_started.max(w.wave.saturating_add(1));
                r.note(at, epoch, "wave_started", format!("wave {}", w.wave));
            }
            Step::HostCommand(c) => {
                let host = r.hosts.entry(c.host.clone()).or_default();
                host.commands.push(HostCommand {
                    id: c.command_id.clone(),
                    purpose: c.purpose.clone(),
                    version: c.version.clone(),
                    wave: c.wave,
                    deadline_unix_ms: c.deadline_unix_ms,
                    at_unix_ms: at,
                    state: CommandState::Unknown,
                    detail: String::new(),
                    fenced: false,
                });
                self.by_command
                    .insert(c.command_id.clone(), s.rollout_id.clone());
                let detail = format!("{} {} {} ({})", c.purpose, c.host, c.version, c.command_id);
                r.note(at, epoch, "host_command", detail);
            }
            Step::HostSkipped(k) => {
                r.hosts.entry(k.host.clone()).or_default().skipped = clip(&k.reason);
                r.note(
                    at,
                    epoch,
                    "host_skipped",
                    format!("{}: {}", k.host, k.reason),
                );
            }
            Step::Gate(g) => {
                r.gates.push(GateRecord {
                    wave: g.wave,
                    gate: g.gate.clone(),
                    passed: g.passed,
                    reason: clip(&g.reason),
                    at_unix_ms: at,
                });
                let verdict = if g.passed { "passed" } else { "failed" };
                let detail = format!("wave {} {} {verdict}: {}", g.wave, g.gate, g.reason);
                r.note(at, epoch, "gate", detail);
                if !g.passed && r.rollback.is_none() && r.ended.is_none() {
                    r.rollback = Some(Rollback {
                        reason: format!("wave {} {} gate failed: {}", g.wave, g.gate, g.reason),
                        outcome: "rolled_back".to_owned(),
                        at_unix_ms: at,
                    });
                }
            }
            Step::Control(c) => {
                apply_control(r, c, at);
                r.note(at, epoch, "control", format!("{} by {}", c.op, c.by));
            }
            Step::Ended(e) => {
                r.ended = Some((e.outcome.clone(), clip(&e.reason), at));
                r.rollback = None;
                r.note(at, epoch, "ended", format!("{}: {}", e.outcome, e.reason));
            }
        }
        vec![s.rollout_id.clone()]
    }

    /// Folds a command lifecycle body of a command some rollout sent; returns that rollout.
    pub fn apply_command(&mut self, ev: &EventEnvelope, id: &str) -> Option<String> {
        let rollout_id = self.by_command.get(id)?.clone();
        let r = self.rollouts.get_mut(&rollout_id)?;
        let cmd = (r.hosts.values_mut())
            .flat_map(|h| h.commands.iter_mut())
            .find(|c| c.id == id)?;
        let (state, detail) = match &ev.body {
            Body::CommandIssued(_) => (CommandState::Issued, String::new()),
            Body::CommandAccepted(_) => (CommandState::Accepted, String::new()),
            Body::CommandCompleted(c) => (CommandState::Completed, c.detail.clone()),
            Body::CommandFailed(c) => (CommandState::Failed, c.reason.clone()),
            Body::CommandRejected(c) => {
                cmd.fenced |= c.highest_epoch_seen > c.epoch;
                (CommandState::Rejected, c.reason.clone())
            }
            Body::CommandExpired(_) => (CommandState::Expired, "expired".to_owned()),
            _ => return None,
        };
        // An agent's own outcome beats the sweeper's expiry that folded first (the agent took
        // the command just before its deadline): a deploy that ran must be rolled back.
        let ran_after_expiry = cmd.state == CommandState::Expired
            && matches!(state, CommandState::Completed | CommandState::Failed);
        if state.rank() > cmd.state.rank() || ran_after_expiry {
            cmd.state = state;
            cmd.detail = clip(&detail);
        }
        Some(rollout_id)
    }

    /// Forgets the oldest ended rollouts beyond `ROLLOUTS_KEPT`; returns their ids.
    fn forget_oldest(&mut self) -> Vec<String> {
        let excess = self.rollouts.len().saturating_sub(ROLLOUTS_KEPT);
        if excess == 0 {
            return Vec::new();
        }
        let mut ended: Vec<(i64, String)> = (self.rollouts.values())
            .filter(|r| r.is_ended())
            .map(|r| (r.started_at_unix_ms, r.id.clone()))
            .collect();
        ended.sort();
        let gone: Vec<String> = ended.into_iter().take(excess).map(|(_, id)| id).collect();
        for id in &gone {
            if let Some(r) = self.rollouts.remove(id) {
                for c in r.hosts.values().flat_map(|h| &h.commands) {
                    self.by_command.remove(&c.id);
                }
            }
        }
        gone
    }
}

fn apply_control(r: &mut Rollout, c: &pb::RolloutControl, at: i64) {
    let running = r.ended.is_none() && r.rollback.is_none();
    match c.op.as_str() {
        "pause" if running => r.paused = true,
        "resume" => r.paused = false,
        "promote" => {
            if let Some(w) = r.wave() {
                if !r.promoted.contains(&w) {
                    r.promoted.push(w);
                }
            }
        }
        "abort" if running => {
            r.rollback = Some(Rollback {
                reason: format!("aborted by {}", c.by),
                outcome: "aborted".to_owned(),
                at_unix_ms: at,
            });
        }
        "undo"
            if r.rollback.is_none()
                && (r.ended.as_ref()).is_none_or(|(outcome, _, _)| outcome == "completed") =>
        {
            // Undo of a completed rollout reopens it to put the previous version back.
            r.ended = None;
            r.paused = false;
            r.rollback = Some(Rollback {
                reason: format!("undone by {}", c.by),
                outcome: "undone".to_owned(),
                at_unix_ms: at,
            });
        }
        _ => {}
    }
}
