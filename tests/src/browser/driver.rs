//! The `chromedriver` process of a browser test: Debian's binary on a free loopback port, in a
//! process group of its own (so the Chromium processes it starts are in it too), with `HOME` and
//! its log in the browser's temp dir, and SIGKILL to the whole group (and to any process that
//! left the group but names the temp dir) on [`Driver::kill`] and on drop.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Debian's `chromium-driver`.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's `chromium`.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// How long chromedriver may take to answer `/status` after it starts.
pub const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the killed process group may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails, naming the Debian packages and `scripts/test.sh`, when chromium or chromedriver is
/// missing: a browser test must not pass without a browser.
pub fn check_installed() -> Result<()> {
    check_tools(&[(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")])
}

/// [`check_installed`] for given `(path, Debian package)` pairs.
fn check_tools(tools: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(path, _)| !Path::new(path).exists())
        .map(|(path, _)| *path)
        .collect();
    if !missing.is_empty() {
        bail!(
            "the browser tests need Debian's `chromium chromium-driver` ({} missing): run \
             `apt-get install chromium chromium-driver`, or `scripts/test.sh`, which installs them",
            missing.join(", ")
        );
    }
    Ok(())
}

/// One running chromedriver and everything it started (same process group).
#[derive(Debug)]
pub struct Driver {
    child: Option<Child>,
    pgid: i32,
    addr: SocketAddr,
    log_path: PathBuf,
    /// The browser's temp dir: every process of this browser names it in its command line.
    dir: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free loopback port and waits until `/status` says it is ready.
    /// Retries on another port if the one picked was taken in between.
    pub async fn start(dir: &Path) -> Result<Driver> {
        check_installed()?;
        let mut last = None;
        for attempt in 1..=3 {
            let log_path = dir.join(format!("chromedriver-{attempt}.log"));
            let mut driver = Driver::spawn(dir, &log_path)?;
            match driver.wait_ready().await {
                Ok(()) => return Ok(driver),
                Err(e) => {
                    driver.kill();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("chromedriver did not start")))
    }

    fn spawn(dir: &Path, log_path: &Path) -> Result<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot pick a free loopback port for chromedriver")?
            .port();
        let log = File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let err = log
            .try_clone()
            .with_context(|| format!("cannot dup {}", log_path.display()))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            // Chromium inherits it: nothing of the browser's goes to the real home.
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .env("XDG_CACHE_HOME", dir.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            // A new process group led by chromedriver: the browsers it starts inherit it, so one
            // killpg ends them all.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {CHROMEDRIVER}"))?;
        let pgid = i32::try_from(child.id()).context("chromedriver pid out of range")?;
        Ok(Driver {
            child: Some(child),
            pgid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log_path: log_path.to_path_buf(),
            dir: dir.to_path_buf(),
        })
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "chromedriver exited ({status}) before it answered; log tail:\n{}",
                        self.log_tail(20)
                    );
                }
            }
            if status_ready(self.addr).await {
                return Ok(());
            }
            if start.elapsed() > DRIVER_READY_TIMEOUT {
                bail!(
                    "chromedriver on {} did not answer /status within {DRIVER_READY_TIMEOUT:?}; \
                     log tail:\n{}",
                    self.addr,
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, the WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process group of chromedriver and every browser process it started.
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of chromedriver's log (each cut at 300 characters).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Live processes of this browser: its process group, and any process naming its temp
    /// dir (one that started a session of its own would have left the group).
    pub fn live(&self) -> Vec<i32> {
        let mut pids = live_in_group(self.pgid);
        pids.extend(live_naming(&self.dir.to_string_lossy()));
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILL to the whole group and to any process naming the temp dir, reaps chromedriver,
    /// and waits (bounded) until none is left alive. Idempotent.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        let start = Instant::now();
        loop {
            let live = self.live();
            if live.is_empty() || start.elapsed() > KILL_TIMEOUT {
                break;
            }
            // A process forked between the signal and now gets the next one.
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
            for pid in live {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET /status` answers `"ready": true`. chromedriver keeps the connection open whatever the
/// request says, so this reads until the answer is complete rather than until EOF.
async fn status_ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await?;
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if n == 0 || status_complete(&text) {
                return Ok::<_, std::io::Error>(text.into_owned());
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(text)) => text.starts_with("HTTP/1.1 200") && text.contains("\"ready\":true"),
        _ => false,
    }
}

/// The `/status` answer has arrived whole (its JSON body closes).
fn status_complete(text: &str) -> bool {
    text.split_once("\r\n\r\n")
        .is_some_and(|(_, body)| body.trim_end().ends_with("}}"))
}

/// Live (not zombie) processes whose process group is `pgid`, from `/proc`.
pub fn live_in_group(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z' && state != 'X')
        })
        .collect()
}

/// Live (not zombie) processes other than this one whose command line contains `needle`.
pub fn live_naming(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, _)| state != 'Z' && state != 'X');
            alive
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                    String::from_utf8_lossy(&cmd)
                        .replace('\0', " ")
                        .contains(needle)
                })
        })
        .collect()
}

/// State and process group from a `/proc/PID/stat` line (`pid (comm) state ppid pgrp ...`;
/// `comm` may hold spaces and parentheses, so fields are counted after the last `)`).
pub fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_browser_names_what_to_install() {
        let err = check_tools(&[("/nonexistent/chromedriver", "chromium-driver")])
            .expect_err("a missing chromedriver must fail");
        let msg = err.to_string();
        assert!(msg.contains("chromium chromium-driver"), "{msg}");
        assert!(msg.contains("scripts/test.sh"), "{msg}");
        assert!(msg.contains("/nonexistent/chromedriver"), "{msg}");
        assert!(check_tools(&[("/", "base-files")]).is_ok());
    }

    #[test]
    fn stat_fields_after_the_command_name() {
        assert_eq!(
            parse_stat("4242 (chrome (x) y) S 1 4200 4200 0 -1 4194560"),
            Some(('S', 4200))
        );
        assert_eq!(parse_stat("7 (z) Z 1 7 7"), Some(('Z', 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_found_in_its_own_group() {
        let me = std::process::id() as i32;
        let pgid = nix::unistd::getpgrp().as_raw();
        assert!(live_in_group(pgid).contains(&me));
    }
}
