//! The probe state machine (pure): starting / ready / degraded / failed from consecutive
//! successes and failures, the configured thresholds and the time since the module started.

use std::time::Duration;

use opsfleet_proto::pb;

/// State of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// No success yet, and still inside the start period (or not enough failures to judge).
    Starting,
    Ready,
    Degraded,
    Failed,
}

impl Status {
    pub fn to_pb(self) -> pb::HealthStatus {
        match self {
            Status::Starting => pb::HealthStatus::Starting,
            Status::Ready => pb::HealthStatus::Ready,
            Status::Degraded => pb::HealthStatus::Degraded,
            Status::Failed => pb::HealthStatus::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ready => "ready",
            Status::Degraded => "degraded",
            Status::Failed => "failed",
        }
    }
}

/// Thresholds of one probe (validated: every count >= 1, `failed_after >= degraded_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive successes that make a check ready.
    pub ready_after: u32,
    /// Consecutive failures that make a ready (or starting, after the start period) check degraded.
    pub degraded_after: u32,
    /// Consecutive failures that make a check failed.
    pub failed_after: u32,
    /// Failures do not move a starting check before this much time since the module started.
    pub start_period: Duration,
}

/// What the machine remembers of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeState {
    pub status: Status,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
}

impl ProbeState {
    pub const INITIAL: ProbeState = ProbeState {
        status: Status::Starting,
        consecutive_successes: 0,
        consecutive_failures: 0,
    };
}

/// The next state after one probe outcome. `since_start` is the time since the module (not the
/// probe attempt) started.
///
/// * success: `ready_after` consecutive successes make the check ready, from any state;
///   fewer leave the state as it is.
/// * failure: inside the start period a starting check stays starting. Otherwise
///   `failed_after` consecutive failures make it failed, `degraded_after` make it degraded
///   (never better than it was: a failed check stays failed until it recovers).
pub fn step(prev: ProbeState, success: bool, since_start: Duration, t: &Thresholds) -> ProbeState {
    if success {
        let successes = prev.consecutive_successes.saturating_add(1);
        let status = if successes >= t.ready_after {
            Status::Ready
        } else {
            prev.status
        };
        return ProbeState {
            status,
            consecutive_successes: successes,
            consecutive_failures: 0,
        };
    }
    let failures = prev.consecutive_failures.saturating_add(1);
    let in_start = prev.status == Status::Starting && since_start < t.start_period;
    let status = if in_start {
        Status::Starting
    } else if failures >= t.failed_after || prev.status == Status::Failed {
        Status::Failed
    } else if failures >= t.degraded_after || prev.status == Status::Degraded {
        Status::Degraded
    } else {
        prev.status
    };
    ProbeState {
        status,
        consecutive_successes: 0,
        consecutive_failures: failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: Thresholds = Thresholds {
        ready_after: 2,
        degraded_after: 2,
        failed_after: 4,
        start_period: Duration::from_secs(30),
    };

    fn run(outcomes: &[bool], since_start: Duration, t: &Thresholds) -> Vec<Status> {
        let mut s = ProbeState::INITIAL;
        outcomes
            .iter()
            .map(|ok| {
                s = step(s, *ok, since_start, t);
                s.status
            })
            .collect()
    }

    #[test]
    fn starts_ready_after_enough_successes() {
        use Status::*;
        let late = Duration::from_secs(60);
        assert_eq!(run(&[true, true, true], late, &T), [Starting, Ready, Ready]);
    }

    #[test]
    fn failures_inside_the_start_period_keep_starting() {
        let early = Duration::from_secs(1);
        assert!(run(&[false; 10], early, &T)
            .iter()
            .all(|s| *s == Status::Starting));
        // After the start period the accumulated failures count at once.
        let s = (0..5).fold(ProbeState::INITIAL, |s, _| step(s, false, early, &T));
        assert_eq!(
            step(s, false, Duration::from_secs(31), &T).status,
            Status::Failed
        );
    }

    #[test]
    fn degrades_then_fails_then_recovers() {
        use Status::*;
        let late = Duration::from_secs(60);
        let seq = [true, true, false, false, false, false, true, true];
        assert_eq!(
            run(&seq, late, &T),
            [Starting, Ready, Ready, Degraded, Degraded, Failed, Failed, Ready]
        );
    }

    #[test]
    fn one_success_does_not_lift_a_failed_check_with_ready_after_two() {
        let late = Duration::from_secs(60);
        let failed = ProbeState {
            status: Status::Failed,
            consecutive_successes: 0,
            consecutive_failures: 9,
        };
        let s = step(failed, true, late, &T);
        assert_eq!(s.status, Status::Failed);
        assert_eq!(step(s, false, late, &T).status, Status::Failed);
    }

    fn thresholds() -> impl Strategy<Value = Thresholds> {
        (1u32..5, 1u32..5, 0u32..4, 0u64..3).prop_map(|(r, d, extra, sp)| Thresholds {
            ready_after: r,
            degraded_after: d,
            failed_after: d + extra,
            start_period: Duration::from_secs(sp),
        })
    }

    /// Length of the run of `value` at the end of `xs`.
    fn tail_run(xs: &[bool], value: bool) -> usize {
        xs.iter().rev().take_while(|x| **x == value).count()
    }

    proptest! {
        #[test]
        fn never_ready_without_ready_after_successes(
            t in thresholds(),
            outcomes in proptest::collection::vec(any::<bool>(), 0..60),
            since in 0u64..5,
        ) {
            let statuses = run(&outcomes, Duration::from_secs(since), &t);
            let mut prev = Status::Starting;
            for (i, s) in statuses.iter().enumerate() {
                if *s == Status::Ready && prev != Status::Ready {
                    prop_assert!(tail_run(&outcomes[..=i], true) >= t.ready_after as usize);
                }
                if *s == Status::Ready {
                    prop_assert!(outcomes[..=i].contains(&true));
                }
                prev = *s;
            }
        }

        #[test]
        fn flapping_cannot_move_faster_than_the_thresholds(
            t in thresholds(),
            outcomes in proptest::collection::vec(any::<bool>(), 0..80),
        ) {
            let statuses = run(&outcomes, Duration::from_secs(100), &t);
            let mut prev = Status::Starting;
            for (i, s) in statuses.iter().enumerate() {
                if *s != prev {
                    let before = &outcomes[..=i];
                    match s {
                        Status::Ready => prop_assert!(tail_run(before, true) >= t.ready_after as usize),
                        Status::Degraded => prop_assert!(tail_run(before, false) >= t.degraded_after as usize),
                        Status::Failed => prop_assert!(tail_run(before, false) >= t.failed_after as usize),
                        Status::Starting => prop_assert!(false, "starting is never re-entered"),
                    }
                }
                prev = *s;
            }
        }

        #[test]
        fn alternating_outcomes_never_bounce_with_thresholds_above_one(
            start_ready in any::<bool>(),
            len in 0usize..50,
        ) {
            let t = Thresholds { ready_after: 2, degraded_after: 2, failed_after: 3, start_period: Duration::ZERO };
            let first = if start_ready { Status::Ready } else { Status::Failed };
            let mut s = ProbeState { status: first, consecutive_successes: 0, consecutive_failures: 0 };
            for i in 0..len {
                s = step(s, i % 2 == 0, Duration::from_secs(1), &t);
                prop_assert_eq!(s.status, first);
            }
        }

        #[test]
        fn starting_holds_within_the_start_period_until_a_success(
            t in thresholds(),
            n in 0usize..30,
        ) {
            let statuses = run(&vec![false; n], Duration::ZERO, &Thresholds { start_period: Duration::from_secs(1), ..t });
            prop_assert!(statuses.iter().all(|s| *s == Status::Starting));
        }
    }
}
