//! The health module: runs its probes (concurrently, each with its timeout) every interval,
//! folds each outcome through the pure state machine (`state`), emits a `HealthCheck` event on
//! every transition and exposes the current states, which the runner puts on the shared
//! `HealthBoard` that every heartbeat reports.

pub mod probe;
pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use opsfleet_proto::pb;
use tracing::info;

use super::{Module, ModuleCtx, ModuleError};
use crate::config::{HealthConfig, ProbeConfig};
use probe::Outcome;
use state::{step, ProbeState, Status, Thresholds};

/// Current state of every probe of every health module, keyed by module name; the runner
/// updates it after each run and hands a snapshot to every module in `ModuleCtx.health`.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard(Arc<Mutex<BTreeMap<String, Vec<pb::HealthSummary>>>>);

impl HealthBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<pb::HealthSummary>>> {
        // Plain values; a panicked holder cannot leave them inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces what `module` reports (an empty list removes it).
    pub fn set(&self, module: &str, checks: Vec<pb::HealthSummary>) {
        let mut map = self.lock();
        if checks.is_empty() {
            map.remove(module);
        } else {
            map.insert(module.to_owned(), checks);
        }
    }

    /// Every check, in module-name order then probe order.
    pub fn snapshot(&self) -> Vec<pb::HealthSummary> {
        self.lock().values().flatten().cloned().collect()
    }
}

/// One configured probe and its state.
struct Check {
    cfg: ProbeConfig,
    thresholds: Thresholds,
    state: ProbeState,
}

pub struct HealthModule {
    checks: Vec<Check>,
    /// First run; the start period counts from here.
    started: Option<Instant>,
}

impl HealthModule {
    pub fn new(cfg: &HealthConfig) -> Self {
        let checks = cfg
            .probes
            .iter()
            .map(|p| Check {
                thresholds: Thresholds {
                    ready_after: p.ready_after,
                    degraded_after: p.degraded_after,
                    failed_after: p.failed_after,
                    start_period: p.start_period,
                },
                cfg: p.clone(),
                state: ProbeState::INITIAL,
            })
            .collect();
        HealthModule {
            checks,
            started: None,
        }
    }
}

/// The event for a transition of one check (pure).
pub fn transition_body(
    cfg: &ProbeConfig,
    prev: Status,
    next: &ProbeState,
    outcome: &Outcome,
) -> pb::HealthCheck {
    pb::HealthCheck {
        check: cfg.name.clone(),
        probe: cfg.probe.as_str().to_owned(),
        status: next.status.to_pb() as i32,
        previous: prev.to_pb() as i32,
        detail: outcome.detail.clone(),
        consecutive_failures: next.consecutive_failures,
        latency_ms: u64::try_from(outcome.latency.as_millis()).unwrap_or(u64::MAX),
    }
}

#[async_trait::async_trait]
impl Module for HealthModule {
    fn kind(&self) -> &'static str {
        "health"
    }

    async fn run_once(&mut self, _ctx: &ModuleCtx) -> Result<Vec<pb::event::Body>, ModuleError> {
        let since_start = self.started.get_or_insert_with(Instant::now).elapsed();
        let outcomes =
            futures::future::join_all(self.checks.iter().map(|c| probe::run_probe(&c.cfg))).await;
        let mut bodies = Vec::new();
        for (check, outcome) in self.checks.iter_mut().zip(outcomes) {
            let prev = check.state.status;
            let next = step(check.state, outcome.success, since_start, &check.thresholds);
            check.state = next;
            if next.status != prev {
                info!(
                    check = %check.cfg.name,
                    from = prev.as_str(),
                    to = next.status.as_str(),
                    detail = %outcome.detail,
                    "health check changed state"
                );
                bodies.push(pb::event::Body::Health(transition_body(
                    &check.cfg, prev, &next, &outcome,
                )));
            }
        }
        Ok(bodies)
    }

    fn health(&self) -> Vec<pb::HealthSummary> {
        self.checks
            .iter()
            .map(|c| pb::HealthSummary {
                check: c.cfg.name.clone(),
                status: c.state.status.to_pb() as i32,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
