//! What a rollout does next (pure): from its folded state, what the fleet shows of its hosts
//! and `now`, the steps to record and the commands to send. Forward: start the next wave,
//! send each host of the wave its steps (`before`, `deploy`, and for blue/green `switch`) at
//! most `max_unavailable` at once, then the gates (every host updated; the soak with the
//! service running and healthy and no new alert firing; `--manual` waits for a promote).
//! A failed step or gate rolls back every host that ran the new version; abort and undo too.
//! A command that never ran (expired, lost before it was issued, refused by fencing) is sent
//! again, at most `MAX_SENDS` times; one that ran is never sent again.

use opsfleet_proto::api::ServiceRunState;
use opsfleet_proto::api::{CommandAction, CommandState, ProbeStatus, RolloutStrategy};
use opsfleet_proto::pb::{self, rollout_step::Step};

use crate::projection::rollouts::{HostCommand, Rollout, RolloutHost};
use crate::projection::ServiceRow;

/// A command recorded but not in the ledger this long after its deadline was lost before it
/// was issued (a crash between the two).
pub const LOST_GRACE_MS: i64 = 5_000;
/// Sends of one step to one host before it counts as failed.
pub const MAX_SENDS: usize = 3;
/// A command still unanswered this long after its deadline gets no more patience (its agent
/// died with it, or never came back): it counts as failed, and as possibly run.
pub const ABANDON_AFTER_MS: i64 = 3_600_000;
/// After a wave's hosts are updated, their health is judged only from this long on (their
/// first state reports after the restart may reach the bus after the deploy's answer); a
/// soak therefore lasts at least this long.
pub const SETTLE_MS: i64 = 3_000;

/// What the rollout's hosts look like, as the fleet shows them.
pub trait World {
    fn in_maintenance(&self, host: &str) -> bool;
    fn lost(&self, host: &str, now_unix_ms: i64) -> bool;
    fn service(&self, host: &str, service: &str) -> Option<&ServiceRow>;
    /// A firing alert on `host` that began at or after `since_unix_ms`: its id.
    fn firing_since(&self, host: &str, since_unix_ms: i64) -> Option<String>;
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    Record(Step),
    /// Record a `host_command` step for a new command id, then issue the command with it.
    Send {
        host: String,
        purpose: &'static str,
        wave: u32,
        version: String,
        action: CommandAction,
    },
}

/// Where one step of one host is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StepState {
    /// Not sent, or sent and it never ran (may be sent again).
    ToSend,
    InFlight,
    Done,
    Failed(String),
}

/// Where one command is; `None` when it provably never ran (it may be sent again). A command
/// issued or taken on a host that is lost now, or unanswered long past its deadline, is
/// given up: failed, and possibly run.
fn command_state(c: &HostCommand, now: i64, lost: bool) -> Option<StepState> {
    let abandoned = lost || now > c.deadline_unix_ms.saturating_add(ABANDON_AFTER_MS);
    Some(match c.state {
        CommandState::Completed => StepState::Done,
        CommandState::Failed => StepState::Failed(c.detail.clone()),
        CommandState::Rejected if !c.fenced => StepState::Failed(c.detail.clone()),
        CommandState::Rejected | CommandState::Expired => return None,
        CommandState::Unknown if now > c.deadline_unix_ms + LOST_GRACE_MS => return None,
        CommandState::Issued | CommandState::Accepted if abandoned => StepState::Failed(format!(
            "no answer ({}{})",
            c.state.as_str(),
            if lost { ", host lost" } else { "" }
        )),
        _ => StepState::InFlight,
    })
}

/// Whether the host is running any command of the rollout now.
fn busy(h: &RolloutHost, now: i64, lost: bool) -> bool {
    (h.commands.iter()).any(|c| command_state(c, now, lost) == Some(StepState::InFlight))
}

fn step_state(h: &RolloutHost, purpose: &str, now: i64, lost: bool) -> StepState {
    let sent: Vec<&HostCommand> = h.commands.iter().filter(|c| c.purpose == purpose).collect();
    let Some(last) = sent.last() else {
        return StepState::ToSend;
    };
    match command_state(last, now, lost) {
        Some(s) => s,
        None if sent.len() >= MAX_SENDS => StepState::Failed(format!(
            "did not run after {} sends (last: {})",
            sent.len(),
            if last.fenced {
                "refused by fencing"
            } else {
                last.state.as_str()
            }
        )),
        None => StepState::ToSend,
    }
}

/// The forward steps of a host, in order.
fn forward_steps(r: &Rollout) -> Vec<&'static str> {
    let mut steps = Vec::new();
    if !r.plan.before_job.is_empty() {
        steps.push("before");
    }
    steps.push("deploy");
    if r.strategy == RolloutStrategy::BlueGreen {
        steps.push("switch");
    }
    steps
}

enum Progress {
    Next(&'static str, bool),
    Busy,
    Failed(&'static str, String),
    Updated,
}

/// The host's forward progress; `Next(step, fresh)` where `fresh` means nothing was sent yet.
fn progress(r: &Rollout, h: &RolloutHost, now: i64, lost: bool) -> Progress {
    for step in forward_steps(r) {
        match step_state(h, step, now, lost) {
            StepState::Done => continue,
            StepState::InFlight => return Progress::Busy,
            StepState::Failed(why) => return Progress::Failed(step, why),
            StepState::ToSend => return Progress::Next(step, h.commands.is_empty()),
        }
    }
    Progress::Updated
}

/// The command of a forward or rollback step.
fn action_for(r: &Rollout, host: &str, purpose: &str) -> (String, CommandAction) {
    let p = &r.plan;
    let previous = p.previous.get(host).cloned().unwrap_or_default();
    let deploy = |service: &str, version: &str, artifact: bool| CommandAction::ServiceDeploy {
        service: service.to_owned(),
        version: version.to_owned(),
        artifact: (artifact && !p.artifact.is_empty()).then(|| p.artifact.clone()),
        sha256: (artifact && !p.sha256.is_empty()).then(|| p.sha256.clone()),
        ready_samples: Some(p.ready_samples),
    };
    let target = if r.strategy == RolloutStrategy::BlueGreen {
        p.green_service.as_str()
    } else {
        p.service.as_str()
    };
    match purpose {
        "before" => (
            String::new(),
            CommandAction::BackupRun {
                module: None,
                job: Some(p.before_job.clone()),
            },
        ),
        "deploy" => (p.version.clone(), deploy(target, &p.version, true)),
        "rollback" => (previous.clone(), deploy(&p.service, &previous, false)),
        "switch" => (
            p.version.clone(),
            CommandAction::TrafficSwitch {
                service: p.green_service.clone(),
            },
        ),
        "switch_back" => (
            previous,
            CommandAction::TrafficSwitch {
                service: p.service.clone(),
            },
        ),
        "stop_old" => (
            String::new(),
            CommandAction::ServiceStop {
                service: p.service.clone(),
            },
        ),
        _ => (
            String::new(),
            CommandAction::ServiceStart {
                service: p.service.clone(),
            },
        ),
    }
}

fn send(r: &Rollout, host: &str, purpose: &'static str, wave: u32) -> Act {
    let (version, action) = action_for(r, host, purpose);
    Act::Send {
        host: host.to_owned(),
        purpose,
        wave,
        version,
        action,
    }
}

fn gate(wave: u32, gate: &str, passed: bool, reason: String) -> Act {
    Act::Record(Step::Gate(pb::RolloutGate {
        wave,
        passed,
        gate: gate.to_owned(),
        reason,
    }))
}

fn ended(outcome: &str, reason: String) -> Act {
    Act::Record(Step::Ended(pb::RolloutEnded {
        outcome: outcome.to_owned(),
        reason,
    }))
}

/// The next acts of rollout `r`.
pub fn decide(r: &Rollout, w: &impl World, now: i64) -> Vec<Act> {
    if r.is_ended() {
        return Vec::new();
    }
    if r.rollback.is_some() {
        return roll_back(r, w, now);
    }
    let Some(wave) = r.wave() else {
        if r.paused {
            return Vec::new();
        }
        return vec![Act::Record(Step::WaveStarted(pb::RolloutWaveStarted {
            wave: 0,
        }))];
    };
    let hosts = r.plan.waves.get(wave as usize).cloned().unwrap_or_default();
    // A failed step anywhere so far stops the rollout and rolls it back.
    for (name, h) in r.hosts.iter().filter(|(_, h)| h.wave <= wave) {
        if let Progress::Failed(step, why) = progress(r, h, now, w.lost(name, now)) {
            return vec![gate(
                wave,
                "deploy",
                false,
                format!("{name}: {step} failed: {why}"),
            )];
        }
    }
    if let Some(deployed) = r.gate(wave, "deploy").filter(|g| g.passed) {
        let settled = now >= deployed.at_unix_ms.saturating_add(SETTLE_MS);
        if let Some(problem) = health_problem(r, w, wave, now).filter(|_| settled) {
            let name = if r.gate(wave, "soak").is_some() {
                "health"
            } else {
                "soak"
            };
            return vec![gate(wave, name, false, problem)];
        }
        let Some(soaked) = r.gate(wave, "soak").filter(|g| g.passed) else {
            if settled && now >= deployed.at_unix_ms.saturating_add(soak_ms(r)) {
                let soak =
                    humantime::format_duration(std::time::Duration::from_millis(r.plan.soak_ms));
                let why = format!("service running and healthy, no new alert, for {soak}");
                return vec![gate(wave, "soak", true, why)];
            }
            return Vec::new();
        };
        if wave + 1 < r.wave_count() {
            if r.paused || r.waiting_promote().is_some() {
                return Vec::new();
            }
            return vec![Act::Record(Step::WaveStarted(pb::RolloutWaveStarted {
                wave: wave + 1,
            }))];
        }
        return finish(r, w, soaked.at_unix_ms, now);
    }
    // Updating the wave: every host in flight counts before any is sent a step.
    let mut acts = Vec::new();
    let live: Vec<(&String, &RolloutHost)> = (hosts.iter())
        .filter_map(|name| Some((name, r.hosts.get(name)?)))
        .filter(|(_, h)| h.skipped.is_empty())
        .collect();
    let mut busy = u32::try_from(
        (live.iter())
            .filter(|(name, h)| matches!(progress(r, h, now, w.lost(name, now)), Progress::Busy))
            .count(),
    )
    .unwrap_or(u32::MAX);
    let mut pending = 0usize;
    let mut updated = 0usize;
    for (name, h) in live {
        match progress(r, h, now, w.lost(name, now)) {
            Progress::Busy => {}
            Progress::Updated => updated += 1,
            Progress::Failed(..) => {}
            Progress::Next(step, fresh) => {
                pending += 1;
                if fresh && w.in_maintenance(name) {
                    acts.push(skip(name, "in maintenance (opsctl drain)"));
                } else if fresh && w.lost(name, now) {
                    acts.push(skip(name, "lost"));
                } else if !r.paused && busy < r.plan.max_unavailable.max(1) {
                    busy += 1;
                    acts.push(send(r, name, step, wave));
                }
            }
        }
    }
    if acts.is_empty() && busy == 0 && pending == 0 {
        acts.push(gate(
            wave,
            "deploy",
            true,
            format!("{updated} host(s) updated"),
        ));
    }
    acts
}

fn skip(host: &str, reason: &str) -> Act {
    Act::Record(Step::HostSkipped(pb::RolloutSkip {
        host: host.to_owned(),
        reason: reason.to_owned(),
    }))
}

fn soak_ms(r: &Rollout) -> i64 {
    i64::try_from(r.plan.soak_ms).unwrap_or(i64::MAX)
}

/// After the last wave's soak: blue/green keeps the old slot up for `keep_old_ms`, then stops
/// it on every host; then the rollout is completed.
fn finish(r: &Rollout, w: &impl World, soaked_at: i64, now: i64) -> Vec<Act> {
    let updated = (r.hosts.values())
        .filter(|h| h.skipped.is_empty() && h.last("deploy").is_some())
        .count();
    let skipped: Vec<&str> = (r.hosts.iter())
        .filter(|(_, h)| !h.skipped.is_empty())
        .map(|(name, _)| name.as_str())
        .collect();
    let mut done = format!("{updated} host(s) run {}", r.plan.version);
    if !skipped.is_empty() {
        done.push_str(&format!(
            "; skipped on the way, still on their version: {}",
            skipped.join(", ")
        ));
    }
    if r.strategy != RolloutStrategy::BlueGreen {
        return vec![ended("completed", done)];
    }
    let keep = i64::try_from(r.plan.keep_old_ms).unwrap_or(i64::MAX);
    if now < soaked_at.saturating_add(keep) {
        return Vec::new();
    }
    let mut acts = Vec::new();
    let mut waiting = false;
    let mut failures = Vec::new();
    for (name, h) in r.hosts.iter().filter(|(_, h)| h.skipped.is_empty()) {
        if h.last("switch").is_none() {
            continue;
        }
        match step_state(h, "stop_old", now, w.lost(name, now)) {
            StepState::ToSend => acts.push(send(r, name, "stop_old", h.wave)),
            StepState::InFlight => waiting = true,
            StepState::Failed(why) => failures.push(format!("{name}: {why}")),
            StepState::Done => {}
        }
    }
    if !acts.is_empty() || waiting {
        return acts;
    }
    if failures.is_empty() {
        vec![ended("completed", format!("{done}; old slot stopped"))]
    } else {
        let why = failures.join("; ");
        vec![ended(
            "completed",
            format!("{done}; old slot not stopped on {why}"),
        )]
    }
}

/// Why the updated hosts fail the soak, if they do: the service not running or unhealthy, the
/// host lost, or an alert on it that began since the rollout started.
fn health_problem(r: &Rollout, w: &impl World, wave: u32, now: i64) -> Option<String> {
    let service = if r.strategy == RolloutStrategy::BlueGreen {
        &r.plan.green_service
    } else {
        &r.plan.service
    };
    for (name, h) in r.hosts.iter().filter(|(_, h)| h.wave <= wave) {
        if !h.skipped.is_empty() || h.last("deploy").is_none() {
            continue;
        }
        if w.lost(name, now) {
            return Some(format!("{name}: host lost"));
        }
        let Some(row) = w.service(name, service) else {
            return Some(format!("{name}: no state of {service} reported"));
        };
        if row.state != ServiceRunState::Running {
            return Some(format!("{name}: {service} is {}", row.state.as_str()));
        }
        if let Some(h @ (ProbeStatus::Degraded | ProbeStatus::Failed)) = row.health {
            return Some(format!("{name}: {service} is {}", h.as_str()));
        }
        let bound = r.plan.max_p95_ms;
        if bound > 0 && row.probe_p95_ms > bound {
            return Some(format!(
                "{name}: {service} probe latency p95 {} ms over the {bound} ms bound",
                row.probe_p95_ms
            ));
        }
        if let Some(alert) = w.firing_since(name, r.started_at_unix_ms) {
            return Some(format!("{name}: alert {alert} firing"));
        }
    }
    None
}

/// Puts the previous version back on every host that may have run the new one, at most
/// `max_unavailable` hosts at once and never while a host still runs a command of the rollout
/// (whatever its purpose); then ends.
fn roll_back(r: &Rollout, w: &impl World, now: i64) -> Vec<Act> {
    let Some(rb) = &r.rollback else {
        return Vec::new();
    };
    let mut acts = Vec::new();
    let mut in_flight = 0u32;
    let mut pending = Vec::new();
    let mut failures = Vec::new();
    for (name, h) in r.hosts.iter().filter(|(_, h)| h.skipped.is_empty()) {
        let lost = w.lost(name, now);
        if busy(h, now, lost) {
            in_flight += 1;
            continue;
        }
        for step in back_steps(r, h) {
            match step_state(h, step, now, lost) {
                StepState::Done => continue,
                StepState::InFlight => in_flight += 1,
                StepState::Failed(why) => failures.push(format!("{name}: {step} failed: {why}")),
                StepState::ToSend if step == "rollback" && previous(r, name).is_empty() => {
                    failures.push(format!("{name}: no previous version known"));
                }
                StepState::ToSend => pending.push((name, step, h.wave)),
            }
            break;
        }
    }
    for (name, step, wave) in &pending {
        if in_flight >= r.plan.max_unavailable.max(1) {
            break;
        }
        in_flight += 1;
        acts.push(send(r, name, step, *wave));
    }
    if !acts.is_empty() || in_flight > 0 || !pending.is_empty() {
        return acts;
    }
    let reason = if failures.is_empty() {
        rb.reason.clone()
    } else {
        format!("{}; not rolled back: {}", rb.reason, failures.join("; "))
    };
    vec![ended(&rb.outcome, reason)]
}

fn previous<'a>(r: &'a Rollout, host: &str) -> &'a str {
    r.plan.previous.get(host).map_or("", String::as_str)
}

/// Whether a command of `purpose` may have run on the host: taken, answered, or still out
/// (issued and not expired: the agent may yet run it).
fn ran(h: &RolloutHost, purpose: &str) -> bool {
    h.commands.iter().any(|c| {
        c.purpose == purpose
            && matches!(
                c.state,
                CommandState::Issued
                    | CommandState::Accepted
                    | CommandState::Completed
                    | CommandState::Failed
            )
    })
}

/// The steps that undo what ran on a host, in order.
fn back_steps(r: &Rollout, h: &RolloutHost) -> Vec<&'static str> {
    let mut steps = Vec::new();
    if r.strategy == RolloutStrategy::BlueGreen {
        if ran(h, "stop_old") {
            steps.push("start_old");
        }
        if ran(h, "switch") {
            steps.push("switch_back");
        }
    } else if ran(h, "deploy") {
        steps.push("rollback");
    }
    steps
}
