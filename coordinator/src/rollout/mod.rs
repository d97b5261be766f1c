//! Rollouts: planning one (`plan.rs`), deciding its next steps from the folded state
//! (`decide.rs`, pure), driving it on the active coordinator (`driver.rs`: record each step,
//! then act) and showing it (`view.rs`). The state itself is the projection's
//! (`projection::rollouts`), so a newly active coordinator picks a rollout up from the log.

pub mod decide;
pub mod driver;
pub mod plan;
pub mod view;

#[cfg(test)]
mod tests;

use opsfleet_proto::api::{AlertState, Liveness};

use crate::projection::{Fleet, ServiceRow};

impl decide::World for Fleet {
    fn in_maintenance(&self, host: &str) -> bool {
        self.maintenance().contains(host)
    }

    fn lost(&self, host: &str, now_unix_ms: i64) -> bool {
        matches!(
            crate::dispatch::not_up(self, host, now_unix_ms),
            Some((Liveness::Lost, _))
        )
    }

    fn service(&self, host: &str, service: &str) -> Option<&ServiceRow> {
        self.host(host)?.services.get(service)
    }

    fn firing_since(&self, host: &str, since_unix_ms: i64) -> Option<String> {
        (self.alerts().alerts.values())
            .find(|a| {
                a.host == host
                    && a.state == Some(AlertState::Firing)
                    && a.since_unix_ms >= since_unix_ms
            })
            .map(|a| a.id.clone())
    }
}
