//! The service's own health probes: a task that, while the service runs, runs every declared
//! probe each `health_interval` (the health module's probe runner and state machine), keeps
//! the worst status on the snapshot board, and hands a new `ServiceState` (same state, new
//! health) to the module whenever the health changes. Probes start over with each new child.
//! With a remediation policy, its decisions (restart, or capped) go to the module too.

use std::sync::mpsc;
use std::time::Instant;

use opsfleet_proto::pb;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::remediation::Remedy;
use super::status::Snapshot;
use crate::config::ProbeConfig;
use crate::modules::health::probe::{run_probe, Outcome};
use crate::modules::health::state::{step, ProbeState, Status, Thresholds};

fn thresholds(p: &ProbeConfig) -> Thresholds {
    Thresholds {
        ready_after: p.ready_after,
        degraded_after: p.degraded_after,
        failed_after: p.failed_after,
        start_period: p.start_period,
    }
}

/// The service's health from its probes' states (worst first: failed, degraded, starting,
/// ready) and why it is not ready: the first probe that is not, with what it saw. Pure.
pub fn aggregate(probes: &[(&ProbeConfig, ProbeState, &Outcome)]) -> (Status, String) {
    let rank = |s: Status| match s {
        Status::Failed => 3,
        Status::Degraded => 2,
        Status::Starting => 1,
        Status::Ready => 0,
    };
    let worst = probes
        .iter()
        .map(|(_, st, _)| st.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Ready);
    let detail = probes
        .iter()
        .find(|(_, st, _)| st.status != Status::Ready)
        .map(|(p, _, o)| format!("probe {} ({}): {}", p.name, p.probe.as_str(), o.detail))
        .unwrap_or_default();
    (worst, detail)
}

/// Where the probe task reports: the snapshot board, new states for the module, remediation
/// decisions for the module.
pub struct Outputs {
    pub board: watch::Sender<Snapshot>,
    pub states: mpsc::Sender<pb::ServiceState>,
    pub remedies: mpsc::Sender<pb::ServiceRemediation>,
}

/// The remediation decision after a round (`failed_in_a_row` rounds with a failed probe).
fn remediate(
    r: &mut Remedy,
    service: &str,
    failed_in_a_row: u32,
    probes: &[ProbeConfig],
    outcomes: &[Outcome],
) -> Option<pb::ServiceRemediation> {
    let why = outcomes
        .iter()
        .zip(probes)
        .find(|(o, _)| !o.success)
        .map(|(o, p)| format!("probe {}: {}", p.name, o.detail))
        .unwrap_or_default();
    let decision = r.decide(service, failed_in_a_row, &why, Instant::now())?;
    info!(service, capped = decision.capped, reason = %decision.reason, "service remediation");
    Some(decision)
}

/// Puts the health of child `pid` on the board; the new state when the health changed.
fn publish(
    board: &watch::Sender<Snapshot>,
    pid: u32,
    (status, detail): (Status, &str),
    latency_ms: u64,
) -> Option<pb::ServiceState> {
    let health = status.to_pb() as i32;
    let mut changed = None;
    board.send_if_modified(|snap| {
        // A state for another child (restarted meanwhile) is not this probe's to judge.
        if snap.state.pid != pid || snap.run_state() != pb::ServiceRunState::Running {
            return false;
        }
        let moved = snap.state.health != health;
        snap.state.health = health;
        snap.health_detail = detail.to_owned();
        snap.rounds += 1;
        if snap.latencies_pid != pid {
            snap.latencies_ms.clear();
            snap.latencies_pid = pid;
        }
        snap.latencies_ms.push_back(latency_ms);
        while snap.latencies_ms.len() > super::status::LATENCIES_KEPT {
            snap.latencies_ms.pop_front();
        }
        snap.ready_streak = if status == Status::Ready {
            snap.ready_streak + 1
        } else {
            0
        };
        if moved {
            changed = Some(snap.state.clone());
        }
        true
    });
    changed
}

/// Runs the probes until `cancel`; see the module doc.
pub async fn run(
    probes: Vec<ProbeConfig>,
    every: std::time::Duration,
    mut remedy: Option<Remedy>,
    out: Outputs,
    cancel: CancellationToken,
) {
    let Outputs {
        board,
        states: tx,
        remedies,
    } = out;
    crate::modules::health::warn_insecure("service", &probes);
    let mut failed_in_a_row = 0u32;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut states = vec![ProbeState::INITIAL; probes.len()];
    let mut probed_pid = 0;
    let mut since = Instant::now();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let snap = board.borrow().clone();
        let pid = snap.state.pid;
        if snap.run_state() != pb::ServiceRunState::Running {
            continue;
        }
        if pid != probed_pid {
            states = vec![ProbeState::INITIAL; probes.len()];
            probed_pid = pid;
            since = Instant::now();
            failed_in_a_row = 0;
        }
        let outcomes = futures::future::join_all(probes.iter().map(run_probe)).await;
        for ((st, p), o) in states.iter_mut().zip(&probes).zip(&outcomes) {
            *st = step(*st, o.success, since.elapsed(), &thresholds(p));
        }
        let joined: Vec<_> = probes
            .iter()
            .zip(states.iter().copied())
            .zip(&outcomes)
            .map(|((p, s), o)| (p, s, o))
            .collect();
        let (status, detail) = aggregate(&joined);
        if outcomes.iter().all(|o| o.success) {
            failed_in_a_row = 0;
        } else {
            failed_in_a_row = failed_in_a_row.saturating_add(1);
        }
        if let Some(r) = remedy.as_mut() {
            let decision = remediate(r, &snap.state.service, failed_in_a_row, &probes, &outcomes);
            if let Some(decision) = decision {
                if !decision.capped {
                    failed_in_a_row = 0;
                }
                if remedies.send(decision).is_err() {
                    return;
                }
            }
        }
        let slowest = (outcomes.iter())
            .map(|o| o.latency)
            .max()
            .unwrap_or_default();
        let latency_ms = u64::try_from(slowest.as_millis()).unwrap_or(u64::MAX);
        if let Some(state) = publish(&board, pid, (status, &detail), latency_ms) {
            info!(service = %state.service, pid, health = status.as_str(), detail = %detail, "service health changed");
            if tx.send(state).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_childs_probe_latencies_give_its_p95_and_the_next_child_starts_afresh() {
        let running = |pid| Snapshot {
            state: pb::ServiceState {
                pid,
                state: pb::ServiceRunState::Running as i32,
                ..Default::default()
            },
            ..Snapshot::default()
        };
        let (board, _rx) = watch::channel(running(10));
        for ms in 1..=100 {
            publish(&board, 10, (Status::Ready, ""), ms);
        }
        assert_eq!(board.borrow().latencies_ms.len(), 64);
        // The newest 64 rounds: 37..=100 ms; the 61st of them is 97.
        assert_eq!(board.borrow().summary().probe_p95_ms, 97);
        board.send_modify(|s| s.state.pid = 11);
        publish(&board, 11, (Status::Ready, ""), 5);
        assert_eq!(board.borrow().summary().probe_p95_ms, 5);
        // A round for a child that is gone is not counted.
        publish(&board, 10, (Status::Ready, ""), 900);
        assert_eq!(board.borrow().summary().probe_p95_ms, 5);
    }
    use crate::config::ProbeType;

    #[test]
    fn the_worst_probe_decides_and_names_itself() {
        let probe = |name: &str| ProbeConfig {
            url: Some("http://127.0.0.1:1/healthz".to_owned()),
            timeout: Duration::from_secs(1),
            ..ProbeConfig::new(name, ProbeType::Http)
        };
        let (a, b) = (probe("a"), probe("b"));
        let ok = Outcome {
            success: true,
            detail: "status 200".to_owned(),
            latency: Duration::ZERO,
            cert_not_after_unix_ms: None,
        };
        let bad = Outcome {
            success: false,
            detail: "status 503".to_owned(),
            latency: Duration::ZERO,
            cert_not_after_unix_ms: None,
        };
        let ready = ProbeState {
            status: Status::Ready,
            ..ProbeState::INITIAL
        };
        let degraded = ProbeState {
            status: Status::Degraded,
            ..ProbeState::INITIAL
        };
        assert_eq!(
            aggregate(&[(&a, ready, &ok), (&b, degraded, &bad)]),
            (Status::Degraded, "probe b (http): status 503".to_owned())
        );
        assert_eq!(
            aggregate(&[(&a, ready, &ok), (&b, ready, &ok)]),
            (Status::Ready, String::new())
        );
    }
}
