//! The `process` manager's supervisor: a thread that starts the child, waits for it, records
//! each exit and restarts it after a capped backoff, and on stop sends SIGTERM to the child's
//! process group, then SIGKILL after the grace. Lifecycle requests (`request`: start, stop,
//! restart, reload) are read alongside the stop flag; a service stopped by a request stays
//! down until started again. Each state change goes to a callback. A child a crashed agent
//! left running (see `adopt`) is watched instead of started again. `live` owns the process
//! itself, `ops` what each request does in each phase.

mod live;
mod ops;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opsfleet_proto::pb;
use opsfleet_proto::time::now_unix_ms;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::adopt::{adoptable, alive, ChildRecord};
use super::ServiceOp;
use crate::config::ServiceConfig;
pub use live::terminate;
use live::{spawn, Live};

/// How often a running child is checked for an exit (and the stop flag read).
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// The exit detail of a service stopped by a `stop` request (it stays down, across agent
/// restarts, until a `start`).
pub const STOPPED_BY_COMMAND: &str = "stopped by command";

/// Receives every state change of the service.
pub type OnState = Box<dyn FnMut(pb::ServiceState) + Send>;

/// Answers a lifecycle request: the detail once the asked state is reached, or why not.
pub type Done = oneshot::Sender<Result<String, String>>;

/// How supervision begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Start the child.
    Fresh,
    /// Take over the child a previous agent left running (if it still runs the same config).
    Adopt(ChildRecord),
    /// The service was stopped by a command: stay down until a `start` or `restart`.
    Down,
}

/// The wait before the next restart: `restart_backoff_min` after a run that lasted at least
/// `restart_backoff_max` (the service was healthy for a while), else twice the previous wait,
/// capped at `restart_backoff_max`. `previous` is `None` before the first exit.
pub fn next_backoff(cfg: &ServiceConfig, previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        Some(prev) if ran < cfg.restart_backoff_max => {
            prev.saturating_mul(2).min(cfg.restart_backoff_max)
        }
        _ => cfg.restart_backoff_min,
    }
}

/// What the thread is asked: stop (the agent stops) or lifecycle requests, in order.
#[derive(Default)]
struct Control {
    stop: bool,
    requests: VecDeque<(ServiceOp, Done)>,
}

type Shared = Arc<(Mutex<Control>, Condvar)>;

/// A running supervisor thread; `stop` (or drop) stops the child and joins the thread.
pub struct Supervisor {
    control: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `cfg` (module `name`) on a thread of its own, as `boot` says.
    pub fn start(
        name: String,
        cfg: ServiceConfig,
        boot: Boot,
        on_state: OnState,
    ) -> std::io::Result<Self> {
        let control: Shared = Arc::default();
        let run = Run {
            name,
            cfg,
            on_state,
            control: control.clone(),
            restarts: 0,
            backoff: None,
            last_detail: String::new(),
        };
        let thread = std::thread::Builder::new()
            .name("service-supervisor".to_owned())
            .spawn(move || run.supervise(boot))?;
        Ok(Supervisor {
            control,
            thread: Some(thread),
        })
    }

    /// Asks for a lifecycle action; `done` is answered once the asked state is reached (see
    /// `ops`), or dropped when the supervisor stops first.
    pub fn request(&self, op: ServiceOp, done: Done) {
        let (control, cv) = &*self.control;
        let mut c = control.lock().unwrap_or_else(|p| p.into_inner());
        c.requests.push_back((op, done));
        cv.notify_all();
    }

    /// Stops the child (SIGTERM, SIGKILL after `stop_grace`) and waits for the thread: blocks
    /// up to the grace plus a poll.
    pub fn stop(&mut self) {
        let (control, cv) = &*self.control;
        control.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("service supervisor thread panicked");
            }
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What woke the thread up.
enum Wake {
    Stop,
    Request(ServiceOp, Done),
    Timeout,
}

/// What comes after a phase.
enum Next {
    /// Start the child; answer the request that asked for it once it runs.
    Start(Option<Done>),
    Adopt(ChildRecord),
    /// Exited: wait this long, then start again.
    Backoff(Duration),
    /// Stopped by a request: wait for a start.
    Down,
    /// The agent stops the supervisor.
    Quit,
}

/// The thread's state.
struct Run {
    name: String,
    cfg: ServiceConfig,
    on_state: OnState,
    control: Shared,
    restarts: u64,
    /// The previous restart wait (`None` after a start on request).
    backoff: Option<Duration>,
    /// How the previous run ended.
    last_detail: String,
}

impl Run {
    /// Waits up to `d` for a stop or a request (stop first).
    fn wait(&self, d: Duration) -> Wake {
        let (control, cv) = &*self.control;
        let guard = control.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = cv
            .wait_timeout_while(guard, d, |c| !c.stop && c.requests.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        if guard.stop {
            return Wake::Stop;
        }
        match guard.requests.pop_front() {
            Some((op, done)) => Wake::Request(op, done),
            None => Wake::Timeout,
        }
    }

    fn emit(&mut self, state: pb::ServiceRunState, pid: u32, exit_detail: String) {
        let s = pb::ServiceState {
            service: self.name.clone(),
            manager: self.cfg.manager.as_str().to_owned(),
            state: state as i32,
            pid,
            since_unix_ms: now_unix_ms(),
            restarts: self.restarts,
            exit_detail,
            ..pb::ServiceState::default()
        };
        (self.on_state)(s);
    }

    fn supervise(mut self, boot: Boot) {
        let mut next = match boot {
            Boot::Fresh => Next::Start(None),
            Boot::Adopt(rec) => Next::Adopt(rec),
            Boot::Down => {
                info!(service = %self.name, "service stays stopped (stopped by command)");
                self.emit(
                    pb::ServiceRunState::Stopped,
                    0,
                    STOPPED_BY_COMMAND.to_owned(),
                );
                Next::Down
            }
        };
        loop {
            next = match next {
                Next::Start(answer) => self.run_child(answer),
                Next::Adopt(rec) => self.adopt(rec),
                Next::Backoff(wait) => self.backoff(wait),
                Next::Down => self.down(),
                Next::Quit => return,
            };
        }
    }

    /// Starts the child and watches it; `answer` learns that it runs (or could not start).
    fn run_child(&mut self, answer: Option<Done>) -> Next {
        let started = Instant::now();
        match spawn(&self.cfg) {
            Ok(child) => {
                let pid = child.id();
                info!(service = %self.name, pid, restarts = self.restarts, "service started");
                self.emit(pb::ServiceRunState::Running, pid, self.last_detail.clone());
                if let Some(done) = answer {
                    let _ = done.send(Ok(format!("running (pid {pid})")));
                }
                self.watch(Live::Child(child), started)
            }
            Err(e) => {
                let detail = format!("cannot start {:?}: {e}", self.cfg.argv.first());
                warn!(service = %self.name, detail = %detail, "service did not start");
                if let Some(done) = answer {
                    let _ = done.send(Err(detail.clone()));
                }
                self.exited(detail, started)
            }
        }
    }

    /// Takes over the child a previous agent left running; one with another config is stopped
    /// first (then the current config is started).
    fn adopt(&mut self, rec: ChildRecord) -> Next {
        if !adoptable(&rec, &self.cfg) {
            if alive(&rec) {
                info!(service = %self.name, pid = rec.pid, "stopping the previous agent's child (config changed)");
                Live::Adopted(rec).terminate(self.cfg.stop_grace);
            }
            return Next::Start(None);
        }
        info!(service = %self.name, pid = rec.pid, "service adopted");
        let adopted = "adopted after an agent restart".to_owned();
        self.emit(pb::ServiceRunState::Running, rec.pid, adopted);
        self.watch(Live::Adopted(rec), Instant::now())
    }

    /// A run ended on its own after starting at `started`: failed, restart after the backoff.
    fn exited(&mut self, detail: String, started: Instant) -> Next {
        self.emit(pb::ServiceRunState::Failed, 0, detail.clone());
        self.last_detail = detail;
        let wait = next_backoff(&self.cfg, self.backoff, started.elapsed());
        self.backoff = Some(wait);
        Next::Backoff(wait)
    }

    /// Waits for the child to exit, answering requests meanwhile.
    fn watch(&mut self, mut live: Live, started: Instant) -> Next {
        loop {
            if let Some(detail) = live.exited() {
                warn!(service = %self.name, detail = %detail, "service exited");
                return self.exited(detail, started);
            }
            let next = match self.wait(POLL) {
                Wake::Timeout => None,
                Wake::Stop => {
                    self.emit(pb::ServiceRunState::Stopping, live.pid(), String::new());
                    let detail = live.terminate(self.cfg.stop_grace);
                    self.emit(pb::ServiceRunState::Stopped, 0, detail);
                    Some(Next::Quit)
                }
                Wake::Request(op, done) => self.while_running(&mut live, op, done),
            };
            if let Some(next) = next {
                return next;
            }
        }
    }
}

#[cfg(test)]
mod tests;
