//! The `process` manager's supervisor: a thread that starts the child, waits for it, records
//! each exit and restarts it after a capped backoff, and on stop sends SIGTERM to the child's
//! process group, then SIGKILL after the grace. Each state change goes to a callback. A child
//! a crashed agent left running (see `adopt`) is watched instead of started again.

use std::fs::{File, OpenOptions};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use opsfleet_proto::pb;
use tracing::{info, warn};

use super::adopt::{adoptable, alive, ChildRecord};
use crate::config::ServiceConfig;

/// How often a running child is checked for an exit (and the stop flag read).
const POLL: Duration = Duration::from_millis(50);

/// Receives every state change of the service.
pub type OnState = Box<dyn FnMut(pb::ServiceState) + Send>;

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

/// How a child ended, in words.
pub fn exit_detail(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended: {status}"),
    }
}

/// Set by `Supervisor::stop`; the thread waits on it between runs.
type StopFlag = Arc<(Mutex<bool>, Condvar)>;

/// A running supervisor thread; `stop` (or drop) stops the child and joins the thread.
pub struct Supervisor {
    stop: StopFlag,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `cfg` (module `name`) on a thread of its own; `adopt` is the child a
    /// previous agent left running, taken over if it still runs with the same config.
    pub fn start(
        name: String,
        cfg: ServiceConfig,
        adopt: Option<ChildRecord>,
        on_state: OnState,
    ) -> std::io::Result<Self> {
        let stop: StopFlag = Arc::new((Mutex::new(false), Condvar::new()));
        let run = Run {
            name,
            cfg,
            on_state,
            stop: stop.clone(),
            restarts: 0,
        };
        let thread = std::thread::Builder::new()
            .name("service-supervisor".to_owned())
            .spawn(move || run.supervise(adopt))?;
        Ok(Supervisor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the child (SIGTERM, SIGKILL after `stop_grace`) and waits for the thread: blocks
    /// up to the grace plus a poll.
    pub fn stop(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
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

/// The thread's state.
struct Run {
    name: String,
    cfg: ServiceConfig,
    on_state: OnState,
    stop: StopFlag,
    restarts: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Run {
    fn stopping(&self) -> bool {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits `d` or until stop is asked; true when stop was asked.
    fn wait_stop(&self, d: Duration) -> bool {
        let (flag, cv) = &*self.stop;
        let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, d, |stop| !*stop)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    fn emit(&mut self, state: pb::ServiceRunState, pid: u32, exit_detail: String) {
        let s = pb::ServiceState {
            service: self.name.clone(),
            manager: self.cfg.manager.as_str().to_owned(),
            state: state as i32,
            pid,
            since_unix_ms: now_ms(),
            restarts: self.restarts,
            exit_detail,
            ..pb::ServiceState::default()
        };
        (self.on_state)(s);
    }

    fn supervise(mut self, mut adopt: Option<ChildRecord>) {
        let mut backoff = None;
        let mut last_detail = String::new();
        loop {
            if self.stopping() {
                self.emit(pb::ServiceRunState::Stopped, 0, last_detail);
                return;
            }
            let started = Instant::now();
            let watched = match adopt.take() {
                Some(rec) => self.adopt(rec),
                None => self.run_child(&last_detail),
            };
            match watched {
                Watched::Exited(detail) => last_detail = detail,
                Watched::Stopped(detail) => {
                    self.emit(pb::ServiceRunState::Stopped, 0, detail);
                    return;
                }
                Watched::NotAdopted => continue,
            }
            self.emit(pb::ServiceRunState::Failed, 0, last_detail.clone());
            let wait = next_backoff(&self.cfg, backoff, started.elapsed());
            backoff = Some(wait);
            if self.wait_stop(wait) {
                continue;
            }
            self.restarts += 1;
        }
    }

    /// Starts the child and watches it; `last_detail` (how the previous run ended) goes with
    /// the running state.
    fn run_child(&mut self, last_detail: &str) -> Watched {
        match spawn(&self.cfg) {
            Ok(child) => {
                let pid = child.id();
                info!(service = %self.name, pid, restarts = self.restarts, "service started");
                self.emit(pb::ServiceRunState::Running, pid, last_detail.to_owned());
                let watched = self.watch(child);
                if let Watched::Exited(detail) = &watched {
                    warn!(service = %self.name, detail = %detail, "service exited");
                }
                watched
            }
            Err(e) => {
                let detail = format!("cannot start {:?}: {e}", self.cfg.argv.first());
                warn!(service = %self.name, detail = %detail, "service did not start");
                Watched::Exited(detail)
            }
        }
    }

    /// Takes over the child a previous agent left running; one with another config is stopped
    /// first (then `NotAdopted`: start the current config).
    fn adopt(&mut self, rec: ChildRecord) -> Watched {
        if !adoptable(&rec, &self.cfg) {
            if alive(&rec) {
                info!(service = %self.name, pid = rec.pid, "stopping the previous agent's child (config changed)");
                terminate_adopted(&rec, self.cfg.stop_grace);
            }
            return Watched::NotAdopted;
        }
        info!(service = %self.name, pid = rec.pid, "service adopted");
        let adopted = "adopted after an agent restart".to_owned();
        self.emit(pb::ServiceRunState::Running, rec.pid, adopted);
        loop {
            if !alive(&rec) {
                // Not our child: its exit status went to its new parent.
                return Watched::Exited("exited (adopted: status not observable)".to_owned());
            }
            if self.wait_stop(POLL) {
                self.emit(pb::ServiceRunState::Stopping, rec.pid, String::new());
                return Watched::Stopped(terminate_adopted(&rec, self.cfg.stop_grace));
            }
        }
    }

    /// Waits for the child to exit, or stops it when asked.
    fn watch(&mut self, mut child: Child) -> Watched {
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Watched::Exited(exit_detail(status)),
                Ok(None) => {}
                Err(e) => warn!(service = %self.name, error = %e, "cannot poll the child"),
            }
            if self.wait_stop(POLL) {
                self.emit(pb::ServiceRunState::Stopping, child.id(), String::new());
                return Watched::Stopped(terminate(&mut child, self.cfg.stop_grace));
            }
        }
    }
}

enum Watched {
    /// Ended on its own (or did not start); how.
    Exited(String),
    /// Stopped on request; how it ended.
    Stopped(String),
    /// The previous agent's child was not taken over: start one.
    NotAdopted,
}

/// SIGTERM to an adopted child's group, SIGKILL after `grace`; how it ended.
fn terminate_adopted(rec: &ChildRecord, grace: Duration) -> String {
    let Ok(raw) = i32::try_from(rec.pid) else {
        return "pid out of range".to_owned();
    };
    let group = Pid::from_raw(raw);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !alive(rec) {
            return "stopped (adopted: status not observable)".to_owned();
        }
        std::thread::sleep(POLL.min(grace));
    }
    let _ = killpg(group, Signal::SIGKILL);
    "killed after the stop grace (adopted)".to_owned()
}

/// SIGTERM to the child's process group, SIGKILL after `grace`; how it ended.
pub fn terminate(child: &mut Child, grace: Duration) -> String {
    let Ok(raw) = i32::try_from(child.id()) else {
        return "pid out of range".to_owned();
    };
    let group = Pid::from_raw(raw);
    // The group may already be gone (the child exited between two polls).
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return exit_detail(status);
        }
        std::thread::sleep(POLL.min(grace));
    }
    let _ = killpg(group, Signal::SIGKILL);
    match child.wait() {
        Ok(status) => format!("{} after the stop grace", exit_detail(status)),
        Err(e) => format!("cannot wait for the child: {e}"),
    }
}

/// Opens a log file for appending (created if missing).
fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The (uid, gid) of `user`: a name, or a numeric uid (its group then the user's primary
/// group if it has an entry, else the same number).
fn resolve_user(user: &str) -> std::io::Result<(u32, u32)> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid))
            .map(|u| u.map_or((uid, uid), |u| (u.uid.as_raw(), u.gid.as_raw()))),
        Err(_) => User::from_name(user)
            .map(|u| u.map(|u| (u.uid.as_raw(), u.gid.as_raw())))
            .and_then(|u| u.ok_or(nix::errno::Errno::ENOENT)),
    };
    found.map_err(|e| std::io::Error::other(format!("no user {user:?} on this host ({e})")))
}

/// Starts the child in a process group of its own, so stop signals reach its children too.
fn spawn(cfg: &ServiceConfig) -> std::io::Result<Child> {
    let (program, args) = cfg
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty argv"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&cfg.env)
        .stdin(Stdio::null())
        .process_group(0);
    if let Some(dir) = &cfg.workdir {
        cmd.current_dir(dir);
    }
    if let Some(user) = &cfg.user {
        // std drops the supplementary groups when root changes uid.
        let (uid, gid) = resolve_user(user)?;
        cmd.uid(uid).gid(gid);
    }
    cmd.stdout(match &cfg.stdout {
        Some(p) => Stdio::from(append(p)?),
        None => Stdio::null(),
    });
    cmd.stderr(match &cfg.stderr {
        Some(p) => Stdio::from(append(p)?),
        None => Stdio::null(),
    });
    cmd.spawn()
}
