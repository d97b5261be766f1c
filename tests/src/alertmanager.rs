//! A real Alertmanager (Debian's `prometheus-alertmanager`) for notifier tests: started on a
//! free loopback port with a temp config (one receiver that notifies nobody), temp storage and
//! gossip off; read back through its own v2 API.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path) -> anyhow::Result<()> {
//! let am = opsfleet_tests::alertmanager::Alertmanager::start(dir).await?;
//! // point a `kind = "alertmanager"` route at am.url() ...
//! let active = am.alerts("active=true&silenced=false&inhibited=false&unprocessed=true").await?;
//! # let _ = active; Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::procs::Proc;
use crate::secure::free_port;
use crate::wait_until;

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/prometheus-alertmanager";

/// A running Alertmanager; killed when dropped.
pub struct Alertmanager {
    port: u16,
    proc: Proc,
    client: reqwest::Client,
}

/// One receiver that notifies nobody: the test reads the alerts through the API.
const CONFIG: &str = "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n";

impl Alertmanager {
    /// Starts it under `dir/alertmanager/` and waits until `/-/ready` answers. Fails naming the
    /// package to install when the binary is missing.
    pub async fn start(dir: &Path) -> Result<Alertmanager> {
        if !Path::new(BINARY).exists() {
            bail!(
                "{BINARY} is missing: install Debian's prometheus-alertmanager \
                 (apt-get install prometheus-alertmanager; scripts/test.sh does it)"
            );
        }
        let home: PathBuf = dir.join("alertmanager");
        std::fs::create_dir_all(home.join("data"))?;
        let config = home.join("alertmanager.yml");
        std::fs::write(&config, CONFIG)?;
        let port = free_port()?;
        let mut proc = Proc::new(
            "alertmanager",
            BINARY,
            [
                format!("--config.file={}", config.display()),
                format!("--storage.path={}", home.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--cluster.listen-address=".to_owned(),
                "--log.level=info".to_owned(),
            ],
            home.join("alertmanager.log"),
        );
        proc.spawn()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("HTTP client for Alertmanager")?;
        let am = Alertmanager { port, proc, client };
        wait_until(
            "Alertmanager to be ready",
            Duration::from_secs(60),
            Duration::from_millis(200),
            async || {
                let ready = am.client.get(am.url_of("/-/ready")).send().await;
                Ok(ready.is_ok_and(|r| r.status().is_success()).then_some(()))
            },
        )
        .await?;
        Ok(am)
    }

    /// The base URL a route's `url` takes: `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    /// `GET /api/v2/alerts?<query>`: the alerts as Alertmanager holds them.
    pub async fn alerts(&self, query: &str) -> Result<Vec<serde_json::Value>> {
        let resp = (self
            .client
            .get(self.url_of(&format!("/api/v2/alerts?{query}"))))
        .send()
        .await
        .context("GET /api/v2/alerts")?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("GET /api/v2/alerts: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("alerts JSON: {text}"))
    }

    /// `GET /api/v2/silences`: every silence Alertmanager holds (expired ones included).
    pub async fn silences(&self) -> Result<Vec<serde_json::Value>> {
        let resp = (self.client.get(self.url_of("/api/v2/silences")))
            .send()
            .await
            .context("GET /api/v2/silences")?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("GET /api/v2/silences: HTTP {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("silences JSON: {text}"))
    }

    /// Fails if the process died.
    pub fn check_running(&mut self) -> Result<()> {
        self.proc.check_running()
    }

    /// The end of its log, for a failure message.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail(30)
    }
}
