//! What a service module knows of its service now (`Snapshot`): the last state the
//! supervisor reported, with the version read at each start and the health of its probes.
//! The supervisor's state callback (`on_state`) fills it and forwards each state to the
//! module; the probe task and the readiness gate read it through a watch channel.

use std::sync::mpsc;

use opsfleet_proto::pb;
use tokio::sync::watch;
use tracing::warn;

use super::command::{first_line, run_bounded};
use super::supervisor::OnState;
use crate::config::{ServiceConfig, VersionSource};

/// The service now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The newest state, as published (`version` and `health` filled in).
    pub state: pb::ServiceState,
    /// Why the health is not ready (`probe http: status 503`); empty when it is, or when the
    /// service declares no probe.
    pub health_detail: String,
    /// Probe rounds judged so far (a gate waits for one after its request: a reload is not
    /// judged by a round from before it).
    pub rounds: u64,
    /// Consecutive probe rounds of the current child that found it ready (a deploy's
    /// `ready_samples`).
    pub ready_streak: u64,
    /// The latency of the current child's newest probe rounds (a round's slowest probe),
    /// milliseconds, oldest first, at most `LATENCIES_KEPT`.
    pub latencies_ms: std::collections::VecDeque<u64>,
    /// The child `latencies_ms` are of.
    pub latencies_pid: u32,
}

/// Probe rounds whose latency a service keeps (its heartbeat's p95 is over these).
pub const LATENCIES_KEPT: usize = 64;

/// The 95th percentile (nearest rank) of `samples`; 0 for none.
///
/// ```
/// use opsfleet_agent::modules::service::status::p95;
/// assert_eq!(p95([]), 0);
/// assert_eq!(p95([7]), 7);
/// assert_eq!(p95((1..=100).rev()), 95);
/// assert_eq!(p95([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 900]), 1);
/// assert_eq!(p95([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 900, 900]), 900);
/// ```
pub fn p95(samples: impl IntoIterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = samples.into_iter().collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let rank = (v.len() * 95).div_ceil(100).max(1);
    v[rank - 1]
}

impl Snapshot {
    pub fn run_state(&self) -> pb::ServiceRunState {
        pb::ServiceRunState::try_from(self.state.state).unwrap_or(pb::ServiceRunState::Unspecified)
    }

    pub fn health(&self) -> pb::HealthStatus {
        pb::HealthStatus::try_from(self.state.health).unwrap_or(pb::HealthStatus::Unspecified)
    }

    /// What heartbeats carry of it.
    pub fn summary(&self) -> pb::ServiceSummary {
        pb::ServiceSummary {
            service: self.state.service.clone(),
            state: self.state.state,
            health: self.state.health,
            version: self.state.version.clone(),
            restarts: self.state.restarts,
            since_unix_ms: self.state.since_unix_ms,
            probe_p95_ms: p95(self.latencies_ms.iter().copied()),
            ..Default::default()
        }
    }
}

/// Reads the version from its declared source (blocking; `argv` bounded by its timeout);
/// empty, with a warning, when it cannot be read.
pub fn read_version(service: &str, source: &VersionSource) -> String {
    let read = match (&source.file, &source.argv) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map(|t| first_line(&t))
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        (None, Some(argv)) => run_bounded(argv, source.timeout).map(|t| first_line(&t)),
        (None, None) => Ok(String::new()),
    };
    read.unwrap_or_else(|e| {
        warn!(service, error = %e, "version not read");
        String::new()
    })
}

/// Where a service's version comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Its declared `version` source.
    Declared(VersionSource),
    /// The release `<dir>/current` points to (`[modules.deploy]` without a declared source).
    Release(std::path::PathBuf),
    /// The manager's own (compose: the image tag); none for a process.
    Manager,
}

impl Source {
    pub fn of(cfg: &ServiceConfig) -> Self {
        let release = cfg.deploy.as_ref().and_then(|d| d.dir.clone());
        match (&cfg.version, release) {
            (Some(v), _) => Source::Declared(v.clone()),
            (None, Some(dir)) => Source::Release(dir),
            (None, None) => Source::Manager,
        }
    }

    /// The version now (blocking for a declared `argv`); `None` for the manager's own.
    pub fn read(&self, service: &str) -> Option<String> {
        match self {
            Source::Declared(src) => Some(read_version(service, src)),
            Source::Release(dir) => Some(super::deploy::current_version(dir).unwrap_or_default()),
            Source::Manager => None,
        }
    }
}

/// The supervisor's state callback: on each start reads the version (from its declared
/// source, or the release a deployed service's `current` points to; else the manager's own
/// stands) and resets the health
/// (probes start over for a new child); fills both into the state, publishes it on `board`
/// and hands it to the module through `tx`.
pub fn on_state(
    cfg: &ServiceConfig,
    board: watch::Sender<Snapshot>,
    tx: mpsc::Sender<pb::ServiceState>,
) -> OnState {
    let source = Source::of(cfg);
    let probed = !cfg.health.is_empty();
    let mut version = String::new();
    Box::new(move |mut s: pb::ServiceState| {
        let running = s.state == pb::ServiceRunState::Running as i32;
        // Without a declared source the manager's own version stands (compose: the image tag).
        if source != Source::Manager {
            if running {
                version = source.read(&s.service).unwrap_or_default();
            }
            s.version = version.clone();
        }
        let stopping = s.state == pb::ServiceRunState::Stopping as i32;
        board.send_modify(|snap| {
            let reset = match (probed, running) {
                (false, _) => Some((pb::HealthStatus::Unspecified, "")),
                (true, true) => Some((pb::HealthStatus::Starting, "no probe result yet")),
                // Its probes still judge a stopping child.
                (true, false) if stopping => None,
                (true, false) => Some((pb::HealthStatus::Unspecified, "not running")),
            };
            if let Some((health, detail)) = reset {
                snap.state.health = health as i32;
                snap.health_detail = detail.to_owned();
                snap.ready_streak = 0;
            }
            s.health = snap.state.health;
            snap.state = s.clone();
        });
        // The module (receiver) is gone only when the supervisor is being stopped.
        let _ = tx.send(s);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeployConfig;
    use crate::modules::service::deploy::Releases;

    #[test]
    fn a_deployed_service_reports_the_release_current_points_to_at_each_start() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let releases = Releases::new(tmp.path());
        for v in ["1.0", "2.0"] {
            std::fs::create_dir_all(releases.release(v)).expect("release");
        }
        releases.switch("1.0").expect("switch");
        let mut cfg = ServiceConfig::systemd("app.service");
        cfg.deploy = Some(DeployConfig::dir(tmp.path()));
        assert_eq!(Source::of(&cfg), Source::Release(tmp.path().to_owned()));
        let (board, _) = watch::channel(Snapshot::default());
        let (tx, rx) = mpsc::channel();
        let mut cb = on_state(&cfg, board, tx);
        let state = |s: pb::ServiceRunState| pb::ServiceState {
            service: "app".to_owned(),
            state: s as i32,
            ..Default::default()
        };
        cb(state(pb::ServiceRunState::Running));
        releases.switch("2.0").expect("switch");
        // Read at a start, not at every state: a stop still says what ran.
        cb(state(pb::ServiceRunState::Stopping));
        cb(state(pb::ServiceRunState::Running));
        let seen: Vec<String> = rx.try_iter().map(|s| s.version).collect();
        assert_eq!(seen, ["1.0", "1.0", "2.0"]);
        // A declared source wins over the release.
        cfg.version = Some(VersionSource {
            file: Some(tmp.path().join("VERSION")),
            argv: None,
            timeout: std::time::Duration::from_secs(1),
        });
        assert!(matches!(Source::of(&cfg), Source::Declared(_)));
    }
}
