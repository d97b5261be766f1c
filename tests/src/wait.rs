//! Polling with generous bounds: the tests run on loaded 2-core machines, so every wait is
//! a condition polled until a deadline of tens of seconds, never a fixed sleep.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::procs::ProcessExited;

/// Default bound of a wait. Long on purpose: a flaky test is a bug.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default interval between polls.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

/// Polls `check` every `poll` until it returns `Ok(Some(value))`, and returns that value.
///
/// `Ok(None)` means "not yet". An error also counts as "not yet" (a coordinator may not answer
/// while it starts) and is reported if the deadline passes, except [`ProcessExited`], which
/// fails at once: a daemon that died will not come back.
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last_err: Option<anyhow::Error>;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => last_err = None,
            Err(e) if e.downcast_ref::<ProcessExited>().is_some() => {
                return Err(e.context(format!("while waiting for {what}")));
            }
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() >= timeout {
            match last_err {
                Some(e) => bail!(
                    "timed out after {timeout:?} ({attempts} polls) waiting for {what}; last \
                     error: {e:#}"
                ),
                None => bail!("timed out after {timeout:?} ({attempts} polls) waiting for {what}"),
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// [`wait_until`] with [`DEFAULT_TIMEOUT`] and [`DEFAULT_POLL`].
pub async fn wait_until_default<T>(
    what: &str,
    check: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    wait_until(what, DEFAULT_TIMEOUT, DEFAULT_POLL, check).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_value_once_ready() {
        let mut n = 0;
        let v = wait_until(
            "n >= 3",
            Duration::from_secs(10),
            Duration::from_millis(1),
            async || {
                n += 1;
                Ok((n >= 3).then_some(n))
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_with_last_error() {
        let err = wait_until::<()>(
            "never",
            Duration::from_millis(50),
            Duration::from_millis(5),
            async || bail!("still broken"),
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("waiting for never") && msg.contains("still broken"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_dead_process_fails_at_once() {
        use std::os::unix::process::ExitStatusExt;
        let started = Instant::now();
        let err = wait_until::<()>(
            "agent",
            Duration::from_secs(60),
            Duration::from_millis(5),
            async || {
                Err(ProcessExited {
                    label: "ops-agent web-01".to_owned(),
                    status: std::process::ExitStatus::from_raw(2 << 8),
                    log_tail: "config error".to_owned(),
                }
                .into())
            },
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(
            format!("{err:#}").contains("ops-agent web-01 exited unexpectedly"),
            "{err:#}"
        );
    }
}
