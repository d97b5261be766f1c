//! Managers the agent drives instead of parenting the service (`systemd`, `compose`): the
//! `Driven` operations each implements, and the supervisor thread that polls `observe()` every
//! `interval`, reports each change as a `ServiceState` and carries out requested operations,
//! answering each once the observed state matches it. The unit or container is not the
//! agent's child: stopping the supervisor (agent stop, module removal) leaves it as it is, and
//! a restarted agent simply observes it again (nothing to adopt).

pub mod compose;
pub mod runner;
pub mod systemd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opsfleet_proto::pb;
use opsfleet_proto::time::now_unix_ms;
use tracing::{info, warn};

use super::supervisor::{OnState, STOPPED_BY_COMMAND};
use super::ServiceOp;
use crate::config::{ServiceConfig, ServiceManager};
pub use runner::{DrivenError, Output, RunError, Runner, SystemRunner};

/// How long after a successful start / restart / stop command the state may take to match.
const SETTLE: Duration = Duration::from_secs(60);
/// How often the state is read while a request waits for it to match.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// What a manager reports of the service at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub state: pb::ServiceRunState,
    /// The main process (systemd's MainPID, the container's init on the host); 0 if none.
    pub pid: u32,
    /// The unit name (systemd) or the container's short id (compose); empty if none.
    pub instance: String,
    /// When it entered its state (ms since the epoch); 0 when the manager does not say.
    pub since_unix_ms: i64,
    /// Restarts as the manager counts them (systemd's NRestarts, docker's RestartCount).
    pub restarts: u64,
    /// The version running (compose: the image tag); empty when unknown.
    pub version: String,
    /// How it got there, in words (the exit status of a failed run).
    pub detail: String,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            state: pb::ServiceRunState::Unspecified,
            pid: 0,
            instance: String::new(),
            since_unix_ms: 0,
            restarts: 0,
            version: String::new(),
            detail: String::new(),
        }
    }
}

/// A manager's blocking operations on the service.
pub trait Driven: Send {
    fn start(&mut self) -> Result<(), DrivenError>;
    /// Stops it; `grace` is the configured `stop_grace` (how each manager applies it: see its
    /// file).
    fn stop(&mut self, grace: Duration) -> Result<(), DrivenError>;
    fn restart(&mut self, grace: Duration) -> Result<(), DrivenError>;
    fn reload(&mut self) -> Result<(), DrivenError>;
    fn observe(&mut self) -> Result<Observed, DrivenError>;
}

/// The manager `cfg` declares, running its commands with `runner`; `None` for `process` or a
/// missing section (config validation refuses both).
pub fn driver(cfg: &ServiceConfig, runner: Box<dyn Runner>) -> Option<Box<dyn Driven>> {
    match (cfg.manager, &cfg.systemd, &cfg.compose) {
        (ServiceManager::Systemd, Some(s), _) => Some(Box::new(systemd::Systemd::new(s, runner))),
        (ServiceManager::Compose, _, Some(c)) => {
            let driver = compose::Compose::new(c, runner);
            Some(Box::new(
                match cfg.deploy.as_ref().and_then(|d| d.image.as_ref()) {
                    Some(_) => driver.with_override(compose::override_file(c)),
                    None => driver,
                },
            ))
        }
        _ => None,
    }
}

/// The supervisor thread's pace: how often it observes, and the stop grace it passes on.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub interval: Duration,
    pub grace: Duration,
    /// How long a request waits for the state to match after its command succeeded.
    pub settle: Duration,
}

impl Timing {
    pub fn of(cfg: &ServiceConfig) -> Self {
        Timing {
            interval: cfg.interval,
            grace: cfg.stop_grace,
            settle: SETTLE,
        }
    }
}

/// The answer to a request: `Ok(detail)` or `Err(reason)` (the process supervisor's type).
pub use super::supervisor::Done;

enum Msg {
    Op(ServiceOp, Done),
    Stop,
}

/// A running driven supervisor; `stop` (or drop) ends its thread and leaves the service as
/// it is.
pub struct DrivenSupervisor {
    tx: mpsc::Sender<Msg>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DrivenSupervisor {
    /// Starts watching the service `cfg` (module `name`, manager `systemd` or `compose`) with
    /// the real command runner.
    pub fn start(name: String, cfg: &ServiceConfig, on_state: OnState) -> std::io::Result<Self> {
        let driver = driver(cfg, Box::new(SystemRunner)).ok_or_else(|| {
            std::io::Error::other(format!(
                "manager {} is not a driven manager or has no section",
                cfg.manager.as_str()
            ))
        })?;
        Self::with_driver(name, cfg.manager, driver, Timing::of(cfg), on_state)
    }

    /// Starts watching with `driver` (tests give one with a recording runner).
    pub fn with_driver(
        name: String,
        manager: ServiceManager,
        driver: Box<dyn Driven>,
        timing: Timing,
        on_state: OnState,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let run = Run {
            name,
            manager: manager.as_str(),
            driver,
            timing,
            on_state,
            rx,
            stopping: stopping.clone(),
            last: None,
            stopped_by_command: false,
            seen_down: false,
        };
        let thread = std::thread::Builder::new()
            .name("service-driven".to_owned())
            .spawn(move || run.supervise())?;
        Ok(DrivenSupervisor {
            tx,
            stopping,
            thread: Some(thread),
        })
    }

    /// Asks for `op`; `done` gets `Ok(detail)` once the observed state matches (running after
    /// start / restart, stopped or failed after stop; reload: once its command succeeded), or
    /// `Err(reason)` (the command's failure with its stderr's end, or the state not matching
    /// within the settle time). Requests are carried out one at a time, in order.
    pub fn request(&self, op: ServiceOp, done: Done) {
        if let Err(mpsc::SendError(Msg::Op(_, done))) = self.tx.send(Msg::Op(op, done)) {
            let _ = done.send(Err("the service supervisor has stopped".to_owned()));
        }
    }

    /// Ends the thread (a request in progress is answered with an error); the service itself
    /// is left as it is. Blocks until the command in progress, if any, returns.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("driven service supervisor thread panicked");
            }
        }
    }
}

impl Drop for DrivenSupervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What makes a new `ServiceState`: a change of any of these.
type Key = (i32, u32, String, u64, String);

fn key(o: &Observed) -> Key {
    (
        o.state as i32,
        o.pid,
        o.instance.clone(),
        o.restarts,
        o.version.clone(),
    )
}

/// The thread's state.
struct Run {
    name: String,
    manager: &'static str,
    driver: Box<dyn Driven>,
    timing: Timing,
    on_state: OnState,
    rx: mpsc::Receiver<Msg>,
    stopping: Arc<AtomicBool>,
    last: Option<Key>,
    /// A `stop` request stopped it: until it runs again, its stopped state says so (the
    /// `service_down` alert leaves a service an operator stopped alone).
    stopped_by_command: bool,
    /// Seen stopped or failed since `stopped_by_command` was set.
    seen_down: bool,
}

impl Run {
    fn supervise(mut self) {
        self.poll();
        loop {
            match self.rx.recv_timeout(self.timing.interval) {
                Ok(Msg::Op(op, done)) => {
                    let answer = self.perform(op);
                    match &answer {
                        Ok(detail) => {
                            info!(service = %self.name, op = op.as_str(), detail = %detail, "service request done")
                        }
                        Err(reason) => {
                            warn!(service = %self.name, op = op.as_str(), reason = %reason, "service request failed")
                        }
                    }
                    let _ = done.send(answer);
                }
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            self.poll();
        }
    }

    /// Observes the service and reports it when it changed; what was observed.
    fn poll(&mut self) -> Observed {
        let o = match self.driver.observe() {
            Ok(o) => o,
            Err(e) => Observed {
                state: pb::ServiceRunState::Failed,
                detail: format!("cannot observe: {e}"),
                ..Observed::default()
            },
        };
        let down = matches!(
            o.state,
            pb::ServiceRunState::Stopped | pb::ServiceRunState::Failed
        );
        // Cleared once it runs again after having been seen down (the first reads after a
        // stop may still see it running).
        if down {
            self.seen_down = true;
        } else if o.state == pb::ServiceRunState::Running && self.seen_down {
            self.stopped_by_command = false;
        }
        let detail = if self.stopped_by_command && down {
            STOPPED_BY_COMMAND.to_owned()
        } else {
            o.detail.clone()
        };
        let k = key(&o);
        if self.last.as_ref() != Some(&k) {
            if o.detail.starts_with("cannot observe") {
                warn!(service = %self.name, detail = %o.detail, "service not observable");
            }
            self.last = Some(k);
            (self.on_state)(pb::ServiceState {
                service: self.name.clone(),
                manager: self.manager.to_owned(),
                state: o.state as i32,
                pid: o.pid,
                since_unix_ms: if o.since_unix_ms > 0 {
                    o.since_unix_ms
                } else {
                    now_unix_ms()
                },
                restarts: o.restarts,
                exit_detail: detail,
                version: o.version.clone(),
                instance: o.instance.clone(),
                ..pb::ServiceState::default()
            });
        }
        o
    }

    /// Runs `op` and waits for its state.
    fn perform(&mut self, op: ServiceOp) -> Result<String, String> {
        let grace = self.timing.grace;
        let ran = match op {
            ServiceOp::Start => self.driver.start(),
            ServiceOp::Stop => self.driver.stop(grace),
            ServiceOp::Restart => self.driver.restart(grace),
            ServiceOp::Reload => self.driver.reload(),
        };
        if let Err(e) = ran {
            self.poll();
            return Err(format!("{} failed: {e}", op.as_str()));
        }
        self.stopped_by_command = op == ServiceOp::Stop;
        self.seen_down = false;
        let wanted: fn(pb::ServiceRunState) -> bool = match op {
            ServiceOp::Reload => {
                let o = self.poll();
                return Ok(format!("reloaded; {}", describe(&o)));
            }
            ServiceOp::Start | ServiceOp::Restart => |s| s == pb::ServiceRunState::Running,
            ServiceOp::Stop => {
                |s| s == pb::ServiceRunState::Stopped || s == pb::ServiceRunState::Failed
            }
        };
        let deadline = Instant::now() + self.timing.settle;
        loop {
            let o = self.poll();
            if wanted(o.state) {
                return Ok(describe(&o));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} ran, but the service is {} after {:?}",
                    op.as_str(),
                    describe(&o),
                    self.timing.settle
                ));
            }
            if self.stopping.load(Ordering::SeqCst) {
                return Err("the agent is stopping".to_owned());
            }
            std::thread::sleep(SETTLE_POLL.min(self.timing.interval));
        }
    }
}

/// The observed state in words: `running (3f2a9c1b7d0e, version 1.4)`.
fn describe(o: &Observed) -> String {
    let state = o
        .state
        .as_str_name()
        .trim_start_matches("SERVICE_RUN_STATE_")
        .to_lowercase();
    let mut parts = Vec::new();
    if !o.instance.is_empty() {
        parts.push(o.instance.clone());
    }
    if o.pid != 0 {
        parts.push(format!("pid {}", o.pid));
    }
    if !o.version.is_empty() {
        parts.push(format!("version {}", o.version));
    }
    if !o.detail.is_empty() && o.state != pb::ServiceRunState::Running {
        parts.push(o.detail.clone());
    }
    if parts.is_empty() {
        state
    } else {
        format!("{state} ({})", parts.join(", "))
    }
}

#[cfg(test)]
mod tests;
