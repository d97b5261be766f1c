//! A job's pre-backup step (`pre_backup`): the private scratch directory, and running a job's
//! step command (`run_step`: argv, no shell, own process group, timeout, cancellation; also the
//! restore test's `verify_check`) with its failures and the end of its stderr. Blocking code:
//! called from the run on the blocking pool.

use std::ffi::OsString;
use std::fs::{self, DirBuilder};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use opsfleet_report::ErrorChain;
use tracing::{info, warn};

use crate::config::{BackupJobConfig, PreBackupConfig, PRE_BACKUP_OUTPUT_PLACEHOLDER};

/// Env var holding the output file's path.
pub const OUTPUT_ENV: &str = "OPSFLEET_BACKUP_OUTPUT";
/// Env var holding the job's name.
pub const JOB_ENV: &str = "OPSFLEET_BACKUP_JOB";
/// Bytes of stderr kept for the failure reason (its end: where tools say what went wrong).
pub const STDERR_EXCERPT: usize = 2048;
/// How often the wait checks the timeout and cancellation.
const POLL: Duration = Duration::from_millis(50);

/// Why a job's command (a pre-backup step, a restore check) failed. The scratch directory is
/// removed before this is returned.
#[derive(Debug, thiserror::Error)]
pub enum PreStepError {
    #[error("cannot create scratch directory {}", path.display())]
    Scratch {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {program:?}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot wait for {program:?}")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("{program:?} {status}; stderr: {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{program:?} timed out after {timeout:?} (process group killed); stderr: {stderr}")]
    Timeout {
        program: String,
        timeout: Duration,
        stderr: String,
    },
    #[error("{program:?} exited 0 but wrote no output file {}", path.display())]
    NoOutput { program: String, path: PathBuf },
    #[error("{program:?} stopped: the run was cancelled (agent stopping)")]
    Cancelled { program: String },
}

/// The scratch directory of `job`'s pre-backup step.
pub fn scratch_dir(job: &BackupJobConfig) -> PathBuf {
    job.destination.join(format!(".{}.pre-backup", job.name))
}

/// Removes the scratch directory when dropped (every way out of a run or restore test).
pub struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_scratch(&self.0);
    }
}

/// Removes a scratch directory (a leftover of a crash, or the current run's).
pub fn remove_scratch(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %dir.display(), error = %ErrorChain(&e), "cannot remove scratch dir")
        }
    }
}

/// Makes `dir` (inside `parent`, created if missing) a new empty private (0700) directory:
/// a crashed run's leftover goes first. Returns the guard that removes it.
pub fn fresh_scratch(parent: &Path, dir: &Path) -> Result<Scratch, PreStepError> {
    remove_scratch(dir);
    fs::create_dir_all(parent).map_err(|source| PreStepError::Scratch {
        path: parent.to_owned(),
        source,
    })?;
    DirBuilder::new()
        .recursive(false)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PreStepError::Scratch {
            path: dir.to_owned(),
            source,
        })?;
    Ok(Scratch(dir.to_owned()))
}

/// The written output file and the guard removing its directory.
pub struct Output {
    pub path: PathBuf,
    pub scratch: Scratch,
}

/// Runs `pre` for `job`: returns the output file to archive (and the guard of its scratch
/// directory) when the command exits 0 having written it.
pub fn run(
    job: &BackupJobConfig,
    pre: &PreBackupConfig,
    cancel: &AtomicBool,
) -> Result<Output, PreStepError> {
    let dir = scratch_dir(job);
    // A crashed run's scratch dir goes first: the new one must be empty and private.
    let scratch = fresh_scratch(&job.destination, &dir)?;
    let path = dir.join(&pre.output);
    let out_str = path.to_string_lossy().into_owned();
    let argv = pre
        .command
        .iter()
        .map(|a| a.replace(PRE_BACKUP_OUTPUT_PLACEHOLDER, &out_str))
        .collect();
    let step = Step {
        what: "pre-backup step",
        job: &job.name,
        argv,
        dir: &dir,
        env: vec![(OUTPUT_ENV, path.clone().into_os_string())],
        timeout: pre.timeout,
    };
    let program = run_step(&step, cancel)?;
    if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Err(PreStepError::NoOutput { program, path });
    }
    Ok(Output { path, scratch })
}

/// One command of a job (a `pre_backup` step, a restore test's `verify_check`).
pub struct Step<'a> {
    /// What it is, for the logs (`pre-backup step`).
    pub what: &'static str,
    pub job: &'a str,
    /// Program (absolute path) and arguments, placeholders already replaced.
    pub argv: Vec<String>,
    /// Its working directory.
    pub dir: &'a Path,
    /// Env vars set besides `OPSFLEET_BACKUP_JOB`.
    pub env: Vec<(&'static str, OsString)>,
    pub timeout: Duration,
}

/// Runs `step` in its own process group (stdin and stdout closed), killing the group on
/// timeout or cancellation; `Ok` with the program's name when it exits 0.
pub fn run_step(step: &Step<'_>, cancel: &AtomicBool) -> Result<String, PreStepError> {
    let program = step.argv.first().cloned().unwrap_or_default();
    let (what, job) = (step.what, step.job);
    let mut cmd = Command::new(&program);
    cmd.args(step.argv.iter().skip(1))
        .current_dir(step.dir)
        .envs(step.env.iter().map(|(k, v)| (k, v)))
        .env(JOB_ENV, job)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| PreStepError::Spawn {
        program: program.clone(),
        source,
    })?;
    info!(job, what, program, pid = child.id(), "job command started");
    let stderr = child.stderr.take().map(tail_reader);
    let group = i32::try_from(child.id()).ok().map(Pid::from_raw);
    let kill_group = || {
        if let Some(g) = group {
            // The child leads its own group (process_group(0)): this reaches its children.
            let _ = killpg(g, Signal::SIGKILL);
        }
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(source) => {
                kill_group();
                let _ = child.wait();
                return Err(PreStepError::Wait { program, source });
            }
        }
        if cancel.load(Ordering::SeqCst) {
            kill_group();
            let _ = child.wait();
            return Err(PreStepError::Cancelled { program });
        }
        if started.elapsed() >= step.timeout {
            kill_group();
            let _ = child.wait();
            warn!(job, what, program, timeout = ?step.timeout, "job command timed out");
            return Err(PreStepError::Timeout {
                program,
                timeout: step.timeout,
                stderr: collect(stderr),
            });
        }
        std::thread::sleep(POLL);
    };
    let stderr = collect(stderr);
    if !status.success() {
        let status = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exited {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            (None, None) => "ended without a status".to_owned(),
        };
        return Err(PreStepError::Failed {
            program,
            status,
            stderr,
        });
    }
    info!(
        job,
        what,
        program,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "job command done"
    );
    Ok(program)
}

/// Reads a pipe to its end on a thread, keeping the last `STDERR_EXCERPT` bytes.
fn tail_reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_EXCERPT {
                        kept.drain(..kept.len() - STDERR_EXCERPT);
                    }
                }
            }
        }
        let cut = kept.len().saturating_sub(STDERR_EXCERPT);
        let _ = tx.send(kept.split_off(cut));
    });
    rx
}

/// The stderr excerpt: what the reader kept, waiting a little for it (a process that escaped
/// the group may hold the pipe open; then the excerpt is what is known to be missing).
fn collect(rx: Option<mpsc::Receiver<Vec<u8>>>) -> String {
    let Some(rx) = rx else {
        return "(not captured)".to_owned();
    };
    match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim();
            if text.is_empty() {
                "(empty)".to_owned()
            } else {
                text.to_owned()
            }
        }
        Err(_) => "(unavailable: still held open by another process)".to_owned(),
    }
}

#[cfg(test)]
mod tests;
