//! The health module: runs its probes (concurrently, each with its timeout) every interval,
//! folds each outcome through the pure state machine (`state`), the latency window
//! (`latency`) and the certificate level (`cert`), emits a `HealthCheck` event on every
//! transition of any of them and exposes the current states, which the runner puts on the
//! shared `HealthBoard` that every heartbeat reports.

mod assert;
pub mod cert;
mod http;
pub mod latency;
pub mod probe;
mod seen;
pub mod state;
mod tls;
mod ws;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsfleet_proto::pb;
use tracing::{info, warn};

use super::{Module, ModuleCtx, ModuleError};
use crate::config::{HealthConfig, ProbeConfig, DEFAULT_LATENCY_WINDOW};
use latency::Latencies;
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
    /// With `latency_p95`: the window and the slow verdict.
    latency: Option<Latencies>,
    /// With a certificate check: the level and `notAfter` last seen.
    cert: Option<(pb::CertLevel, i64)>,
}

/// What a check reports beside its status (pure view of a `Check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditions {
    pub slow: bool,
    pub latency_p95: Option<Duration>,
    pub latency_bound: Option<Duration>,
    pub cert: Option<(pb::CertLevel, i64)>,
}

impl Check {
    fn conditions(&self) -> Conditions {
        Conditions {
            slow: self.latency.as_ref().is_some_and(|l| l.slow),
            latency_p95: self.latency.as_ref().and_then(|l| l.p95),
            latency_bound: self.latency.as_ref().map(Latencies::bound),
            cert: self.cert,
        }
    }
}

pub struct HealthModule {
    checks: Vec<Check>,
    /// First run; the start period counts from here.
    started: Option<Instant>,
}

/// Logs a warning for every probe that does not verify its server (`insecure = true`).
pub fn warn_insecure(owner: &str, probes: &[ProbeConfig]) {
    for p in probes.iter().filter(|p| p.insecure) {
        warn!(
            module = owner,
            check = %p.name,
            url = p.url.as_deref().unwrap_or_default(),
            "probe does not verify the server certificate (insecure = true)"
        );
    }
}

impl HealthModule {
    pub fn new(cfg: &HealthConfig) -> Self {
        warn_insecure(cfg.name.as_deref().unwrap_or("health"), &cfg.probes);
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
                latency: p.latency_p95.map(|bound| {
                    Latencies::new(bound, p.latency_window.unwrap_or(DEFAULT_LATENCY_WINDOW))
                }),
                cert: None,
            })
            .collect();
        HealthModule {
            checks,
            started: None,
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The event for a transition of one check (pure).
pub fn transition_body(
    cfg: &ProbeConfig,
    prev: Status,
    next: &ProbeState,
    outcome: &Outcome,
    c: &Conditions,
) -> pb::HealthCheck {
    let (cert_level, not_after) = c.cert.unwrap_or((pb::CertLevel::Unspecified, 0));
    pb::HealthCheck {
        check: cfg.name.clone(),
        probe: cfg.probe.as_str().to_owned(),
        status: next.status.to_pb() as i32,
        previous: prev.to_pb() as i32,
        detail: outcome.detail.clone(),
        consecutive_failures: next.consecutive_failures,
        latency_ms: ms(outcome.latency),
        slow: c.slow,
        latency_p95_ms: c.latency_p95.map_or(0, ms),
        latency_bound_ms: c.latency_bound.map_or(0, ms),
        cert_level: cert_level as i32,
        cert_not_after_unix_ms: not_after,
    }
}

/// The heartbeat's line of one check (pure).
pub fn summary(name: &str, status: Status, c: &Conditions) -> pb::HealthSummary {
    let (cert_level, not_after) = c.cert.unwrap_or((pb::CertLevel::Unspecified, 0));
    pb::HealthSummary {
        check: name.to_owned(),
        status: status.to_pb() as i32,
        slow: c.slow,
        latency_p95_ms: c.latency_p95.map_or(0, ms),
        cert_level: cert_level as i32,
        cert_not_after_unix_ms: not_after,
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
        let now_ms = probe::now_unix_ms();
        let mut bodies = Vec::new();
        for (check, outcome) in self.checks.iter_mut().zip(outcomes) {
            let prev = check.state.status;
            let before = check.conditions();
            let next = step(check.state, outcome.success, since_start, &check.thresholds);
            check.state = next;
            if let Some(l) = check.latency.as_mut() {
                // Only successes measure the service; a failure is the status's business.
                if outcome.success {
                    l.record(since_start, outcome.latency);
                } else {
                    l.judge(since_start);
                }
            }
            if let (Some(days), Some(not_after)) =
                (check.cfg.cert_days(), outcome.cert_not_after_unix_ms)
            {
                check.cert = Some((cert::level(not_after, now_ms, days), not_after));
            }
            let after = check.conditions();
            if next.status != prev || after.slow != before.slow || level(&after) != level(&before) {
                info!(
                    check = %check.cfg.name,
                    from = prev.as_str(),
                    to = next.status.as_str(),
                    slow = after.slow,
                    cert = level(&after).as_str_name(),
                    detail = %outcome.detail,
                    "health check changed state"
                );
                bodies.push(pb::event::Body::Health(transition_body(
                    &check.cfg, prev, &next, &outcome, &after,
                )));
            }
        }
        Ok(bodies)
    }

    fn health(&self) -> Vec<pb::HealthSummary> {
        self.checks
            .iter()
            .map(|c| summary(&c.cfg.name, c.state.status, &c.conditions()))
            .collect()
    }
}

fn level(c: &Conditions) -> pb::CertLevel {
    c.cert.map_or(pb::CertLevel::Unspecified, |(l, _)| l)
}

#[cfg(test)]
mod probe_tests;
#[cfg(test)]
mod tests;
