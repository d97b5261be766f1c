//! A short command the agent runs for a service (`reload_argv`, `version.argv`): in a process
//! group of its own, its output collected, the group killed when it outlives its timeout; and
//! how a process ended, in words (for these commands and the `process` manager's child).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// How a process ended, in words (a child of the `process` manager, or a short command).
pub fn exit_detail(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => format!("ended: {status}"),
    }
}

/// The (uid, gid) of `user`: a name, or a numeric uid (its group then the user's primary
/// group if it has an entry, else the same number).
pub fn resolve_user(user: &str) -> std::io::Result<(u32, u32)> {
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

/// How much of a command's output is kept in a detail.
const EXCERPT: usize = 200;

/// Runs `argv` (blocking, at most `timeout`); its stdout when it exits 0, else why not (how it
/// ended and the start of its stderr).
pub fn run_bounded(argv: &[String], timeout: Duration) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("empty argv")?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err: String = err.trim().chars().take(EXCERPT).collect();
            let how = exit_detail(out.status);
            Err(if err.is_empty() {
                how
            } else {
                format!("{how}: {err}")
            })
        }
        Ok(Err(e)) => Err(format!("cannot wait for {program:?}: {e}")),
        Err(_) => {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
            }
            Err(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            ))
        }
    }
}

/// The first line of `text`, trimmed.
pub fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_exit_status_and_timeout() {
        let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        let long = Duration::from_secs(30);
        assert_eq!(
            run_bounded(&sh("echo 1.2.3; echo more"), long).map(|o| first_line(&o)),
            Ok("1.2.3".to_owned())
        );
        assert_eq!(
            run_bounded(&sh("echo nope >&2; exit 2"), long),
            Err("exited with status 2: nope".to_owned())
        );
        let started = std::time::Instant::now();
        let err = run_bounded(&sh("sleep 30"), Duration::from_millis(200)).unwrap_err();
        assert_eq!(err, "timed out after 200ms");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(run_bounded(&[], long).is_err());
    }
}
