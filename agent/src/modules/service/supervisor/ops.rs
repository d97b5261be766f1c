//! What each lifecycle request does in each phase of the supervisor: while the child runs,
//! while it waits for a restart after an exit (backoff), and while it is down (stopped by a
//! request). Answers say the state reached or why the request cannot be done.

use std::time::{Duration, Instant};

use opsfleet_proto::pb;
use tracing::info;

use super::{Done, Live, Next, Run, Wake, STOPPED_BY_COMMAND};
use crate::config::parse_signal;
use crate::modules::service::command::run_bounded;
use crate::modules::service::ServiceOp;

impl Run {
    /// A request while the child runs; `Some(next)` when the run ends with it.
    pub(super) fn while_running(
        &mut self,
        live: &mut Live,
        op: ServiceOp,
        done: Done,
    ) -> Option<Next> {
        let pid = live.pid();
        match op {
            ServiceOp::Start => {
                let _ = done.send(Ok(format!("already running (pid {pid})")));
                None
            }
            ServiceOp::Reload => {
                let _ = done.send(self.reload(live));
                None
            }
            ServiceOp::Stop => {
                info!(service = %self.name, pid, "stopping on request");
                self.emit(pb::ServiceRunState::Stopping, pid, String::new());
                let how = live.terminate(self.cfg.stop_grace);
                self.emit(
                    pb::ServiceRunState::Stopped,
                    0,
                    STOPPED_BY_COMMAND.to_owned(),
                );
                let _ = done.send(Ok(format!("stopped ({how})")));
                Some(Next::Down)
            }
            ServiceOp::Restart => {
                info!(service = %self.name, pid, "restarting on request");
                self.emit(pb::ServiceRunState::Stopping, pid, String::new());
                let how = live.terminate(self.cfg.stop_grace);
                self.restarts += 1;
                self.backoff = None;
                self.last_detail = format!("restarted by command (previous run {how})");
                Some(Next::Start(Some(done)))
            }
        }
    }

    /// Waits `wait` before restarting after an exit; a request may start it now, stop it or
    /// find nothing to reload.
    pub(super) fn backoff(&mut self, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait(left) {
                Wake::Stop => {
                    let detail = self.last_detail.clone();
                    self.emit(pb::ServiceRunState::Stopped, 0, detail);
                    return Next::Quit;
                }
                Wake::Timeout if left.is_zero() || Instant::now() >= deadline => {
                    self.restarts += 1;
                    return Next::Start(None);
                }
                Wake::Timeout => {}
                Wake::Request(ServiceOp::Start | ServiceOp::Restart, done) => {
                    self.restarts += 1;
                    self.backoff = None;
                    return Next::Start(Some(done));
                }
                Wake::Request(ServiceOp::Stop, done) => {
                    self.emit(
                        pb::ServiceRunState::Stopped,
                        0,
                        STOPPED_BY_COMMAND.to_owned(),
                    );
                    let _ = done.send(Ok("stopped (it was waiting to be restarted)".to_owned()));
                    return Next::Down;
                }
                Wake::Request(ServiceOp::Reload, done) => {
                    let why = format!(
                        "not running (failed: {}; restart pending); nothing to reload",
                        self.last_detail
                    );
                    let _ = done.send(Err(why));
                }
            }
        }
    }

    /// Down after a stop request: only a start (or restart) brings it back.
    pub(super) fn down(&mut self) -> Next {
        loop {
            match self.wait(Duration::from_secs(3600)) {
                Wake::Stop => return Next::Quit,
                Wake::Timeout => {}
                Wake::Request(ServiceOp::Start, done) => {
                    self.backoff = None;
                    self.last_detail = "started by command".to_owned();
                    return Next::Start(Some(done));
                }
                Wake::Request(ServiceOp::Restart, done) => {
                    self.restarts += 1;
                    self.backoff = None;
                    self.last_detail = "started by command".to_owned();
                    return Next::Start(Some(done));
                }
                Wake::Request(ServiceOp::Stop, done) => {
                    let _ = done.send(Ok("already stopped".to_owned()));
                }
                Wake::Request(ServiceOp::Reload, done) => {
                    let why = "not running (stopped); nothing to reload".to_owned();
                    let _ = done.send(Err(why));
                }
            }
        }
    }

    /// Reloads the running child: `reload_argv` run by the agent (exit 0 = done), else
    /// `reload_signal` sent to its process group.
    fn reload(&self, live: &Live) -> Result<String, String> {
        if let Some(argv) = &self.cfg.reload_argv {
            return run_bounded(argv, self.cfg.reload_timeout)
                .map(|_| {
                    format!(
                        "reloaded: {:?} exited 0",
                        argv.first().unwrap_or(&String::new())
                    )
                })
                .map_err(|e| format!("reload command failed: {e}"));
        }
        let sig = parse_signal(&self.cfg.reload_signal)
            .ok_or_else(|| format!("unknown reload_signal {:?}", self.cfg.reload_signal))?;
        live.signal(sig)?;
        info!(service = %self.name, pid = live.pid(), signal = %sig, "reload signal sent");
        Ok(format!("sent {sig} to process group {}", live.pid()))
    }
}
