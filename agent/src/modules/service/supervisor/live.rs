//! The process a supervisor watches: its own child, or one a crashed agent left running
//! (adopted); how it is started in a process group of its own, polled for its exit, signalled
//! and stopped (SIGTERM to the group, SIGKILL after the grace).

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::POLL;
use crate::config::ServiceConfig;
use crate::modules::service::adopt::{alive, ChildRecord};
use crate::modules::service::command::{exit_detail, resolve_user};

/// The running process of a service.
pub(super) enum Live {
    Child(Child),
    Adopted(ChildRecord),
}

impl Live {
    pub(super) fn pid(&self) -> u32 {
        match self {
            Live::Child(c) => c.id(),
            Live::Adopted(r) => r.pid,
        }
    }

    /// How it ended, once it has; `None` while it runs.
    pub(super) fn exited(&mut self) -> Option<String> {
        match self {
            Live::Child(c) => match c.try_wait() {
                Ok(Some(status)) => Some(exit_detail(status)),
                _ => None,
            },
            // Not our child: its exit status went to its new parent.
            Live::Adopted(r) => {
                (!alive(r)).then(|| "exited (adopted: status not observable)".to_owned())
            }
        }
    }

    /// Sends `sig` to its process group.
    pub(super) fn signal(&self, sig: Signal) -> Result<(), String> {
        let pid = self.pid();
        let raw = i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
        killpg(Pid::from_raw(raw), sig)
            .map_err(|e| format!("cannot send {sig} to process group {pid}: {e}"))
    }

    /// SIGTERM to the group, SIGKILL after `grace`; how it ended.
    pub(super) fn terminate(&mut self, grace: Duration) -> String {
        // The group may already be gone (the child exited between two polls).
        let _ = self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(detail) = self.exited() {
                return match self {
                    Live::Child(_) => detail,
                    Live::Adopted(_) => "stopped (adopted: status not observable)".to_owned(),
                };
            }
            std::thread::sleep(POLL.min(grace));
        }
        let _ = self.signal(Signal::SIGKILL);
        match self {
            Live::Child(c) => match c.wait() {
                Ok(status) => format!("{} after the stop grace", exit_detail(status)),
                Err(e) => format!("cannot wait for the child: {e}"),
            },
            Live::Adopted(_) => "killed after the stop grace (adopted)".to_owned(),
        }
    }
}

/// SIGTERM to the child's process group, SIGKILL after `grace`; how it ended.
pub fn terminate(child: Child, grace: Duration) -> String {
    Live::Child(child).terminate(grace)
}

/// Opens a log file for appending (created if missing).
fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Starts the child in a process group of its own, so stop signals reach its children too.
pub(super) fn spawn(cfg: &ServiceConfig) -> std::io::Result<Child> {
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
