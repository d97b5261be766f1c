//! Remediation policy of a service (pure given the clock): after `restart_after_failed_checks`
//! probe rounds in a row with a failed probe, an automatic restart, at most once per `backoff`
//! and `max_per_hour` an hour; past the cap, a `capped` event instead (at most once per
//! backoff). Each decision is the `ServiceRemediation` event that says it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use opsfleet_proto::pb;

use crate::config::RemediationConfig;

const HOUR: Duration = Duration::from_secs(3600);

/// What the policy remembers: when it acted in the last hour, and when it last decided.
#[derive(Debug, Clone)]
pub struct Remedy {
    cfg: RemediationConfig,
    actions: VecDeque<Instant>,
    last: Option<Instant>,
}

impl Remedy {
    pub fn new(cfg: RemediationConfig) -> Self {
        Remedy {
            cfg,
            actions: VecDeque::new(),
            last: None,
        }
    }

    /// The decision after a probe round: `None` (nothing to do), or the event of a restart
    /// to do now, or of one the hourly cap stopped (`capped`).
    pub fn decide(
        &mut self,
        service: &str,
        failed_in_a_row: u32,
        why: &str,
        now: Instant,
    ) -> Option<pb::ServiceRemediation> {
        if failed_in_a_row < self.cfg.restart_after_failed_checks {
            return None;
        }
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < self.cfg.backoff)
        {
            return None;
        }
        while self
            .actions
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            self.actions.pop_front();
        }
        self.last = Some(now);
        let capped = self.actions.len() >= self.cfg.max_per_hour as usize;
        if !capped {
            self.actions.push_back(now);
        }
        let reason = format!("{failed_in_a_row} failed health checks in a row: {why}");
        let reason = if capped {
            format!(
                "{reason}; not restarted: {} automatic restarts in the last hour (max_per_hour)",
                self.actions.len()
            )
        } else {
            reason
        };
        Some(pb::ServiceRemediation {
            service: service.to_owned(),
            action: "restart".to_owned(),
            reason,
            in_last_hour: u32::try_from(self.actions.len()).unwrap_or(u32::MAX),
            capped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_after_n_failures_with_backoff_then_the_cap_stops_them() {
        let mut r = Remedy::new(RemediationConfig {
            restart_after_failed_checks: 3,
            backoff: Duration::from_secs(30),
            max_per_hour: 2,
        });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(r.decide("app", 2, "status 503", at(0)).is_none());
        let first = r.decide("app", 3, "status 503", at(0)).expect("restart");
        assert!(!first.capped && first.in_last_hour == 1, "{first:?}");
        assert_eq!(first.reason, "3 failed health checks in a row: status 503");
        assert!(
            r.decide("app", 3, "x", at(10)).is_none(),
            "within the backoff"
        );
        let second = r.decide("app", 3, "x", at(40)).expect("restart");
        assert!(!second.capped && second.in_last_hour == 2);
        let capped = r.decide("app", 3, "x", at(80)).expect("capped");
        assert!(capped.capped && capped.in_last_hour == 2, "{capped:?}");
        assert!(capped.reason.contains("max_per_hour"), "{}", capped.reason);
        assert!(
            r.decide("app", 3, "x", at(90)).is_none(),
            "capped once per backoff"
        );
        // An hour after the first, a restart is allowed again.
        let later = r.decide("app", 3, "x", at(3601)).expect("restart");
        assert!(!later.capped && later.in_last_hour == 2, "{later:?}");
    }
}
