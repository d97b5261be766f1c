//! A real Prometheus server (Debian's `prometheus`, beside `promtool`) running the shipped
//! `deploy/prometheus/prometheus.yml` with only the targets, the token file, the rule file's
//! path and the intervals changed: what it scraped and how its rules stand, through its HTTP
//! API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use opsfleet_tests::secure::{free_port, repo_root};
use serde_yaml_ng::Value;

/// A running server; killed when dropped.
pub struct Server {
    _child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
    log: PathBuf,
}

fn yaml(text: &str) -> Result<Value> {
    Ok(serde_yaml_ng::from_str(text)?)
}

/// The shipped scrape config aimed at these targets: both jobs, the coordinators' with the
/// token file, every second.
fn config(
    coordinators: &[SocketAddr],
    agents: &[SocketAddr],
    token_file: &Path,
    dir: &Path,
) -> Result<String> {
    let shipped = repo_root().join("deploy/prometheus/prometheus.yml");
    let mut cfg: Value = yaml(&std::fs::read_to_string(&shipped)?)?;
    cfg["global"]["scrape_interval"] = yaml("1s")?;
    cfg["global"]["evaluation_interval"] = yaml("1s")?;
    let rules = repo_root().join("deploy/prometheus/rules/opsfleet.rules.yml");
    cfg["rule_files"] = yaml(&format!("[\"{}\"]", rules.display()))?;
    let targets = |addrs: &[SocketAddr]| {
        let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        format!("[{}]", list.join(", "))
    };
    let jobs = cfg["scrape_configs"]
        .as_sequence_mut()
        .context("the shipped config has no scrape_configs")?;
    let mut seen = 0;
    for job in jobs.iter_mut() {
        match job["job_name"].as_str() {
            Some("opsfleet-coordinators") => {
                job["static_configs"][0]["targets"] = yaml(&targets(coordinators))?;
                job["authorization"] = yaml(&format!(
                    "{{credentials_file: \"{}\"}}",
                    token_file.display()
                ))?;
                seen += 1;
            }
            Some("opsfleet-agents") => {
                let file = dir.join("agents.yml");
                std::fs::write(&file, format!("- targets: {}\n", targets(agents)))?;
                job["file_sd_configs"][0]["files"] = yaml(&format!("[\"{}\"]", file.display()))?;
                job["file_sd_configs"][0]["refresh_interval"] = yaml("1s")?;
                seen += 1;
            }
            other => bail!("unexpected job {other:?} in {}", shipped.display()),
        }
    }
    ensure!(seen == 2, "the shipped config lacks one of the two jobs");
    Ok(serde_yaml_ng::to_string(&cfg)?)
}

/// Percent-encodes a query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Server {
    pub async fn start(
        prometheus: &Path,
        dir: &Path,
        coordinators: &[SocketAddr],
        agents: &[SocketAddr],
        token_file: &Path,
    ) -> Result<Server> {
        std::fs::create_dir_all(dir)?;
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config(coordinators, agents, token_file, dir)?)?;
        let port = free_port()?;
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(prometheus)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", prometheus.display()))?;
        Ok(Server {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            log,
        })
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn api(&self, path: &str) -> Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let reply: serde_json::Value = self.client.get(&url).send().await?.json().await?;
        ensure!(reply["status"] == "success", "GET {url}: {reply}");
        Ok(reply["data"].clone())
    }

    /// An instant query: each series' labels (as JSON) and value.
    pub async fn query(&self, q: &str) -> Result<Vec<(serde_json::Value, f64)>> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(q)))
            .await?;
        let mut out = Vec::new();
        for r in data["result"].as_array().into_iter().flatten() {
            let v = r["value"][1].as_str().and_then(|v| v.parse().ok());
            out.push((r["metric"].clone(), v.context("a sample without a value")?));
        }
        Ok(out)
    }

    /// The alerting rules it loaded: (name, health, state).
    pub async fn rules(&self) -> Result<Vec<(String, String, String)>> {
        let data = self.api("/api/v1/rules?type=alert").await?;
        let mut out = Vec::new();
        for g in data["groups"].as_array().into_iter().flatten() {
            for r in g["rules"].as_array().into_iter().flatten() {
                let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                out.push((text("name"), text("health"), text("state")));
            }
        }
        Ok(out)
    }
}
