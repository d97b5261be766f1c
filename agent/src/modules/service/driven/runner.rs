//! How a driven manager runs its commands (`systemctl`, compose, `docker inspect`): the
//! `Runner` trait (tests record the argv and answer with canned output), the real one (a child
//! with a deadline, killed past it) and the errors of a manager's operation.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often a running command is checked for its exit.
const POLL: Duration = Duration::from_millis(20);
/// The most of a failed command's output an error quotes.
const EXCERPT: usize = 400;

/// What a finished command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit status 0 with `stdout` (for canned answers).
    pub fn ok(stdout: &str) -> Self {
        Output {
            code: Some(0),
            stdout: stdout.to_owned(),
            stderr: String::new(),
        }
    }

    /// Exit status `code` with `stderr` (for canned answers).
    pub fn failed(code: i32, stderr: &str) -> Self {
        Output {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.to_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The end of stderr (of stdout when stderr is empty), trimmed, for an error message.
    pub fn excerpt(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        let start = text.len().saturating_sub(EXCERPT);
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

/// A command could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{argv}` did not finish within {after:?} (killed)")]
    Timeout { argv: String, after: Duration },
    #[error("`{argv}` was given no program")]
    Empty { argv: String },
}

/// Runs one command to its end (no shell, stdin closed), killing it past `timeout`.
pub trait Runner: Send {
    fn run(&self, argv: &[String], timeout: Duration) -> Result<Output, RunError>;
}

/// The real runner: a child process per command.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRunner;

/// Reads a child's pipe to its end on a thread of its own (so a full pipe cannot block it).
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl Runner for SystemRunner {
    fn run(&self, argv: &[String], timeout: Duration) -> Result<Output, RunError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(RunError::Empty {
                argv: String::new(),
            });
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: past the timeout the whole group is killed, so no grandchild
            // keeps the pipes (and the readers) open.
            .process_group(0)
            .spawn()
            .map_err(|source| RunError::Spawn {
                program: program.clone(),
                source,
            })?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                Ok(None) | Err(_) => {
                    if let Ok(pid) = i32::try_from(child.id()) {
                        let group = nix::unistd::Pid::from_raw(pid);
                        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        match status {
            Some(status) => Ok(Output {
                code: status.code(),
                stdout,
                stderr,
            }),
            None => Err(RunError::Timeout {
                argv: argv.join(" "),
                after: timeout,
            }),
        }
    }
}

/// An operation or observation of a driven manager failed.
#[derive(Debug, thiserror::Error)]
pub enum DrivenError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("`{argv}` failed (status {code}): {excerpt}")]
    Failed {
        argv: String,
        code: String,
        excerpt: String,
    },
    #[error("unexpected output of `{argv}`: {detail}")]
    Parse { argv: String, detail: String },
    #[error(
        "no compose program answers (tried `docker compose version` and `docker-compose version`)"
    )]
    NoCompose,
}

/// Runs `argv`; its output when it exited 0, else `Failed` with its stderr's end.
pub fn check(
    runner: &dyn Runner,
    argv: &[String],
    timeout: Duration,
) -> Result<Output, DrivenError> {
    let out = runner.run(argv, timeout)?;
    if out.success() {
        return Ok(out);
    }
    Err(DrivenError::Failed {
        argv: argv.join(" "),
        code: out
            .code
            .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string()),
        excerpt: out.excerpt(),
    })
}

/// `&str`s as the owned argv a runner takes.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

#[cfg(test)]
pub mod fake {
    //! A runner that records every argv and answers from canned outputs.

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::{Output, RunError, Runner};

    type Answer = Box<dyn Fn(&[String]) -> Option<Output> + Send>;

    /// Answers with the latest rule whose closure returns `Some`; `Output::ok("")` otherwise.
    #[derive(Clone, Default)]
    pub struct Recorder {
        pub ran: Arc<Mutex<Vec<Vec<String>>>>,
        rules: Arc<Mutex<Vec<Answer>>>,
    }

    impl Recorder {
        /// Answers `out` to every argv containing `needle` as a whole word sequence.
        pub fn answer(&self, needle: &[&str], out: Output) {
            let needle: Vec<String> = needle.iter().map(|s| (*s).to_owned()).collect();
            self.rules
                .lock()
                .expect("rules")
                .push(Box::new(move |argv: &[String]| {
                    argv.windows(needle.len())
                        .any(|w| w == needle.as_slice())
                        .then(|| out.clone())
                }));
        }

        /// The commands run so far, each joined with spaces.
        pub fn commands(&self) -> Vec<String> {
            self.ran
                .lock()
                .expect("ran")
                .iter()
                .map(|a| a.join(" "))
                .collect()
        }
    }

    impl Runner for Recorder {
        fn run(&self, argv: &[String], _timeout: Duration) -> Result<Output, RunError> {
            self.ran.lock().expect("ran").push(argv.to_vec());
            let rules = self.rules.lock().expect("rules");
            Ok(rules
                .iter()
                .rev()
                .find_map(|r| r(argv))
                .unwrap_or_else(|| Output::ok("")))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn the_system_runner_returns_status_and_both_outputs() {
        let out = SystemRunner
            .run(
                &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
                Duration::from_secs(30),
            )
            .expect("ran");
        assert_eq!(
            out,
            Output {
                code: Some(3),
                stdout: "out\n".to_owned(),
                stderr: "err\n".to_owned()
            }
        );
        assert_eq!(out.excerpt(), "err");
        let err = check(
            &SystemRunner,
            &argv(&["sh", "-c", "exit 2"]),
            Duration::from_secs(30),
        )
        .expect_err("failed")
        .to_string();
        assert!(err.contains("(status 2)"), "{err}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let began = Instant::now();
        let err = SystemRunner
            .run(
                &argv(&["sh", "-c", "sleep 30; echo never"]),
                Duration::from_millis(200),
            )
            .expect_err("timed out");
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "{:?}",
            began.elapsed()
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = SystemRunner
            .run(&argv(&["/nonexistent/systemctl"]), Duration::from_secs(5))
            .expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("cannot run /nonexistent/systemctl"),
            "{err}"
        );
    }

    #[test]
    fn an_excerpt_keeps_the_end_of_a_long_output() {
        let out = Output::failed(1, &format!("{}\nthe reason", "é".repeat(500)));
        let e = out.excerpt();
        assert!(e.ends_with("the reason") && e.len() <= EXCERPT, "{e}");
    }
}
