//! Child processes of a test: spawn with output appended to a log file, SIGTERM/SIGKILL, wait
//! with a timeout, restart with the same arguments, and kill on drop. Also runs short commands
//! (`outbox`, `dump-log`, `opsctl status`) and captures their output.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a daemon may take to exit after SIGTERM (graceful shutdown includes draining the
/// outbox for up to the agent's `shutdown_grace`).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a short command (`outbox`, `dump-log`, `rebuild`, `opsctl status`) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of a log printed when a test fails.
pub const TAIL_LINES: usize = 60;

/// A daemon that should be running exited on its own.
#[derive(Debug)]
pub struct ProcessExited {
    pub label: String,
    pub status: ExitStatus,
    pub log_tail: String,
}

impl fmt::Display for ProcessExited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited unexpectedly ({}); log tail:\n{}",
            self.label, self.status, self.log_tail
        )
    }
}

impl std::error::Error for ProcessExited {}

/// One long-running child process whose stdout and stderr go to `log_path` (appended across
/// restarts, with a marker line per start).
#[derive(Debug)]
pub struct Proc {
    label: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log_path: PathBuf,
    child: Option<Child>,
    starts: u32,
    start_offset: u64,
    tail_printed: bool,
}

impl Proc {
    /// Describes a process; nothing runs until [`Proc::spawn`].
    pub fn new(
        label: impl Into<String>,
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
        log_path: impl Into<PathBuf>,
    ) -> Self {
        Proc {
            label: label.into(),
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            envs: Vec::new(),
            log_path: log_path.into(),
            child: None,
            starts: 0,
            start_offset: 0,
            tail_printed: false,
        }
    }

    /// Adds an environment variable for every later start.
    pub fn env(&mut self, key: impl Into<OsString>, value: impl Into<OsString>) {
        self.envs.push((key.into(), value.into()));
    }

    /// Replaces the arguments used by later starts.
    pub fn set_args(&mut self, args: impl IntoIterator<Item = impl Into<OsString>>) {
        self.args = args.into_iter().map(Into::into).collect();
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Byte offset in the log where the output of the latest start begins.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// Starts the process. Fails if it is already running.
    pub fn spawn(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("{} is already running", self.label);
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("cannot open log {}", self.log_path.display()))?;
        self.starts += 1;
        writeln!(
            log,
            "===== opsfleet-tests: start #{} of {}: {} {} =====",
            self.starts,
            self.label,
            self.program.display(),
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )
        .with_context(|| format!("cannot write log {}", self.log_path.display()))?;
        self.start_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log
            .try_clone()
            .with_context(|| format!("cannot dup log {}", self.log_path.display()))?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .env("RUST_BACKTRACE", "1");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.label, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Process id while started (it may have exited without being reaped yet).
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// True while started and not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails with [`ProcessExited`] if the process was started and has exited on its own since.
    /// A process stopped on purpose (or never started) is fine.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("cannot poll {}", self.label))?
            {
                return Err(ProcessExited {
                    label: self.label.clone(),
                    status,
                    log_tail: self.log_tail(TAIL_LINES),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Sends a signal; a process that has already exited is not an error.
    pub fn signal(&mut self, sig: Signal) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("{} is not running; cannot send {sig}", self.label);
        };
        match kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot send {sig} to {}", self.label)),
        }
    }

    /// Waits until the process exits and reaps it.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let Some(child) = &mut self.child else {
            bail!("{} is not running", self.label);
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("cannot wait for {}", self.label))?
            {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {timeout:?}", self.label);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits up to `timeout`; if it does not exit, SIGKILLs it and fails.
    pub async fn sigterm(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM)?;
        match self.wait_exit(timeout).await {
            Ok(status) => Ok(status),
            Err(_) => {
                let _ = self.sigkill().await;
                bail!(
                    "{} did not exit within {timeout:?} of SIGTERM and was killed; log tail:\n{}",
                    self.label,
                    self.log_tail(TAIL_LINES)
                )
            }
        }
    }

    /// SIGTERM and requires exit status 0.
    pub async fn stop_gracefully(&mut self) -> Result<()> {
        let status = self.sigterm(STOP_TIMEOUT).await?;
        if !status.success() {
            bail!(
                "{} exited with {status} after SIGTERM (expected 0); log tail:\n{}",
                self.label,
                self.log_tail(TAIL_LINES)
            );
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub async fn sigkill(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(Duration::from_secs(30)).await
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of_file(&self.log_path, lines)
    }

    /// Everything logged since the latest start.
    pub fn log_since_start(&self) -> String {
        match fs::read(&self.log_path) {
            Ok(bytes) => {
                let from = usize::try_from(self.start_offset)
                    .unwrap_or(0)
                    .min(bytes.len());
                String::from_utf8_lossy(&bytes[from..]).into_owned()
            }
            Err(_) => String::new(),
        }
    }

    /// Prints the log tail to stderr (the test's captured output) once.
    pub fn print_tail(&mut self) {
        if self.tail_printed {
            return;
        }
        self.tail_printed = true;
        eprintln!(
            "----- last {TAIL_LINES} lines of {} ({}) -----\n{}\n----- end of {} -----",
            self.label,
            self.log_path.display(),
            self.log_tail(TAIL_LINES),
            self.label
        );
    }

    fn kill_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_now();
        if std::thread::panicking() {
            self.print_tail();
        }
    }
}

/// The last `lines` lines of a text file (lossy UTF-8); empty if unreadable.
pub fn tail_of_file(path: &Path, lines: usize) -> String {
    let Ok(bytes) = fs::read(path) else {
        return format!("(cannot read {})", path.display());
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].join("\n")
}

/// Output of a finished short command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// Fails unless the command exited 0.
    pub fn ok(self) -> Result<Self> {
        if !self.status.success() {
            bail!(
                "`{}` failed with {}\nstdout:\n{}\nstderr:\n{}",
                self.cmdline,
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }
}

/// Runs `<program> --config <config> <args>` (the offline subcommands of our daemons).
pub async fn run_with_config(program: &Path, config: &Path, args: &[&str]) -> Result<CmdOutput> {
    let mut all: Vec<&OsStr> = vec!["--config".as_ref(), config.as_os_str()];
    all.extend(args.iter().map(OsStr::new));
    run(program, &all, COMMAND_TIMEOUT).await
}

/// Runs a short command to completion with a timeout (killed if it hangs).
pub async fn run(program: &Path, args: &[&OsStr], timeout: Duration) -> Result<CmdOutput> {
    let cmdline = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .with_context(|| format!("`{cmdline}` did not finish within {timeout:?}"))?
        .with_context(|| format!("cannot run `{cmdline}`"))?;
    Ok(CmdOutput {
        cmdline,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
