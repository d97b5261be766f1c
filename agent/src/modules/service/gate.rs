//! The readiness gate of a lifecycle request: once the supervisor reached the asked state, a
//! start, restart or reload is done only when the service runs and (with probes) is ready
//! within `ready_timeout`; else it fails saying where the service is.

use std::time::Duration;

use opsfleet_proto::pb;
use tokio::sync::{oneshot, watch};

use super::status::Snapshot;
use super::ServiceOp;

/// Whether `snap` is a running service that is ready (or declares no probe), judged by a
/// probe round that began after round `after_round` was done (the round in flight then may
/// have probed before the request took effect).
pub fn is_ready(snap: &Snapshot, probed: bool, after_round: u64) -> bool {
    snap.run_state() == pb::ServiceRunState::Running
        && (!probed
            || (snap.health() == pb::HealthStatus::Ready
                && snap.rounds > after_round.saturating_add(1)))
}

/// Where the service is, for a failed gate: `failed: exited with status 1`, `health
/// degraded: probe web (http): status 503`. Pure.
pub fn where_it_is(snap: &Snapshot, probed: bool) -> String {
    let state = snap.run_state();
    if state != pb::ServiceRunState::Running {
        let name = state.as_str_name().to_ascii_lowercase();
        let name = name.trim_start_matches("service_run_state_").to_owned();
        return if snap.state.exit_detail.is_empty() {
            format!("service {name}")
        } else {
            format!("service {name}: {}", snap.state.exit_detail)
        };
    }
    if !probed {
        return "running".to_owned();
    }
    let health = snap.health().as_str_name().to_ascii_lowercase();
    let health = health.trim_start_matches("health_status_");
    format!("health {health}: {}", snap.health_detail)
}

/// How long a supervisor may take to answer beyond the service's stop grace (a driven
/// manager waits up to 60 s for the observed state).
pub const SUPERVISOR_ANSWER: Duration = Duration::from_secs(120);

/// What a gate waits for after the supervisor's answer.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// The service declares probes.
    pub probed: bool,
    /// Its `ready_timeout`.
    pub timeout: Duration,
    /// Consecutive ready probe rounds, all begun after the request (0: one, as `is_ready`).
    pub samples: u32,
}

/// Whether `snap` had `samples` consecutive ready rounds, all begun after round
/// `after_round` was done (see `is_ready`). Pure.
pub fn has_samples(snap: &Snapshot, samples: u32, after_round: u64) -> bool {
    let samples = u64::from(samples);
    snap.run_state() == pb::ServiceRunState::Running
        && snap.health() == pb::HealthStatus::Ready
        && snap.ready_streak >= samples
        && snap.rounds >= after_round.saturating_add(1).saturating_add(samples)
}

/// Waits for the supervisor's answer to `op` (at most `within`), then (but for a stop) for
/// readiness.
pub async fn gate(
    op: ServiceOp,
    (answer, within): (oneshot::Receiver<Result<String, String>>, Duration),
    mut board: watch::Receiver<Snapshot>,
    wait: Wait,
) -> Result<String, String> {
    let Wait {
        probed,
        timeout,
        samples,
    } = wait;
    let detail = match tokio::time::timeout(within, answer).await {
        Ok(Ok(r)) => r?,
        Ok(Err(_)) => return Err("abandoned: the service's supervisor stopped".to_owned()),
        Err(_) => {
            return Err(format!(
                "the service's supervisor did not answer {} within {within:?}",
                op.as_str()
            ))
        }
    };
    if op == ServiceOp::Stop {
        return Ok(detail);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let after_round = board.borrow().rounds;
    loop {
        {
            let snap = board.borrow_and_update();
            if samples > 0 && has_samples(&snap, samples, after_round) {
                return Ok(format!("{detail}; ready {samples} times in a row"));
            }
            if samples == 0 && is_ready(&snap, probed, after_round) {
                let ready = if probed { "; ready" } else { "" };
                return Ok(format!("{detail}{ready}"));
            }
        }
        match tokio::time::timeout_at(deadline, board.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err("abandoned: the service module stopped".to_owned()),
            Err(_) => {
                let snap = board.borrow();
                let streak = if samples > 0 {
                    format!(
                        " {samples} times in a row (ready {} so far)",
                        snap.ready_streak
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "{} but not ready{streak} after {}: {}",
                    detail,
                    humantime::format_duration(timeout),
                    where_it_is(&snap, probed)
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(state: pb::ServiceRunState, health: pb::HealthStatus, detail: &str) -> Snapshot {
        Snapshot {
            state: pb::ServiceState {
                state: state as i32,
                health: health as i32,
                exit_detail: "exited with status 1".to_owned(),
                ..Default::default()
            },
            health_detail: detail.to_owned(),
            rounds: 0,
            ready_streak: 0,
            ..Snapshot::default()
        }
    }

    #[test]
    fn ready_needs_running_and_with_probes_a_ready_health() {
        use pb::HealthStatus as H;
        use pb::ServiceRunState as S;
        assert!(is_ready(&snap(S::Running, H::Unspecified, ""), false, 0));
        assert!(!is_ready(&snap(S::Running, H::Starting, ""), true, 0));
        let mut ready = snap(S::Running, H::Ready, "");
        ready.rounds = 3;
        assert!(is_ready(&ready, true, 1));
        assert!(
            !is_ready(&ready, true, 2),
            "only the round in flight at the request"
        );
        assert!(!is_ready(&ready, true, 3), "no round since the request");
        assert!(!is_ready(&snap(S::Failed, H::Ready, ""), true, 0));
        let probing = snap(S::Running, H::Degraded, "probe web (http): status 503");
        assert_eq!(
            where_it_is(&probing, true),
            "health degraded: probe web (http): status 503"
        );
        assert_eq!(
            where_it_is(&snap(S::Failed, H::Unspecified, ""), true),
            "service failed: exited with status 1"
        );
    }

    fn wait(timeout: Duration, samples: u32) -> Wait {
        Wait {
            probed: true,
            timeout,
            samples,
        }
    }

    #[test]
    fn samples_are_consecutive_ready_rounds_after_the_request() {
        use pb::HealthStatus as H;
        use pb::ServiceRunState as S;
        let mut s = snap(S::Running, H::Ready, "");
        (s.rounds, s.ready_streak) = (5, 3);
        assert!(has_samples(&s, 3, 1), "rounds 3, 4, 5 began after round 2");
        assert!(
            !has_samples(&s, 3, 2),
            "round 3 was in flight at the request"
        );
        assert!(!has_samples(&s, 4, 0), "a streak of 3 is not 4");
        s.state.health = H::Degraded as i32;
        assert!(!has_samples(&s, 1, 0));
    }

    #[tokio::test]
    async fn a_gate_with_samples_waits_for_that_many_ready_rounds_in_a_row() {
        use pb::HealthStatus as H;
        use pb::ServiceRunState as S;
        let (board, rx) = watch::channel(snap(S::Running, H::Starting, "no probe result yet"));
        let (tx, answer) = oneshot::channel();
        let _ = tx.send(Ok("running (pid 7)".to_owned()));
        let waiting = tokio::spawn(gate(
            ServiceOp::Restart,
            (answer, Duration::from_secs(30)),
            rx,
            wait(Duration::from_secs(30), 4),
        ));
        // Ready, ready, not ready, then ready from round 4 on: done at round 7, not before.
        for round in 1..=7u64 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut s = board.borrow().clone();
            s.rounds = round;
            let ok = round != 3;
            s.state.health = if ok { H::Ready } else { H::Degraded } as i32;
            s.ready_streak = if ok { s.ready_streak + 1 } else { 0 };
            board.send_replace(s);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if round < 7 {
                assert!(!waiting.is_finished(), "done at round {round}");
            }
        }
        let done = waiting.await.expect("joined");
        assert_eq!(
            done,
            Ok("running (pid 7); ready 4 times in a row".to_owned())
        );
    }

    #[tokio::test]
    async fn the_gate_waits_for_ready_and_fails_saying_where_it_is() {
        use pb::HealthStatus as H;
        use pb::ServiceRunState as S;
        let (board, rx) = watch::channel(snap(S::Running, H::Starting, "no probe result yet"));
        let (tx, answer) = oneshot::channel();
        let _ = tx.send(Ok("running (pid 7)".to_owned()));
        let waiting = tokio::spawn(gate(
            ServiceOp::Start,
            (answer, Duration::from_secs(30)),
            rx.clone(),
            wait(Duration::from_secs(30), 0),
        ));
        // Probe rounds keep coming; the gate answers after two that began after its start.
        for round in 1..=20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut ready = snap(S::Running, H::Ready, "");
            ready.rounds = round;
            board.send_replace(ready);
        }
        let done = waiting.await.expect("joined");
        assert_eq!(done, Ok("running (pid 7); ready".to_owned()));

        board.send_replace(snap(S::Running, H::Failed, "probe web (http): status 503"));
        let (tx, answer) = oneshot::channel();
        let _ = tx.send(Ok("running (pid 8)".to_owned()));
        let err = gate(
            ServiceOp::Restart,
            (answer, Duration::from_secs(30)),
            rx.clone(),
            wait(Duration::from_millis(200), 0),
        )
        .await
        .expect_err("not ready");
        assert_eq!(
            err,
            "running (pid 8) but not ready after 200ms: health failed: probe web (http): status 503"
        );

        // A supervisor that never answers does not hold the command forever.
        let (_tx, answer) = oneshot::channel::<Result<String, String>>();
        let err = gate(
            ServiceOp::Stop,
            (answer, Duration::from_millis(100)),
            rx,
            wait(Duration::from_secs(30), 0),
        )
        .await
        .expect_err("no answer");
        assert_eq!(
            err,
            "the service's supervisor did not answer stop within 100ms"
        );
    }
}
