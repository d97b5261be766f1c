//! `ops-coordinator` under test: its TOML config (per SPEC), the process, and its offline
//! `dump-log` and `rebuild` commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::agent::quote;
use crate::bins;
use crate::check::LogEntry;
use crate::procs::{self, CmdOutput, Proc};

/// What one coordinator runs as.
#[derive(Debug, Clone)]
pub struct CoordinatorSpec {
    pub name: String,
    pub color: String,
    /// Small batches make a SIGKILL more likely to land between persist and ack.
    pub batch_max: u32,
    /// Serve `/healthz` and `/readyz` on a loopback port the OS picks (see
    /// [`Coordinator::http_addr`]).
    pub http: bool,
    /// Data dir to use instead of `<home>/data` (e.g. on a small filesystem the test mounted).
    pub data_dir: Option<PathBuf>,
    /// Further keys of the `[nats]` table (credentials, TLS), as TOML lines.
    pub nats_toml: String,
    /// Further sections (e.g. `[alerts]`, `[notify]`), as TOML, appended to the config.
    pub extra_toml: String,
    /// Further keys of the `[ingest]` table (e.g. the snapshot cadence), as TOML lines.
    pub ingest_toml: String,
    /// `[api] allow_unidentified`: on by default here, because most tests issue commands
    /// without an operator identity (plain `ops.api.command`); tests of the secure setup turn
    /// it off with [`CoordinatorSpec::identified_only`]. A test that writes its own `[api]`
    /// section gets exactly that.
    pub allow_unidentified: bool,
    /// Further keys of the `[topology]` table (e.g. `events_max_bytes`), as TOML lines.
    pub topology_toml: String,
}

impl CoordinatorSpec {
    /// Color = name, batch_max = 1000.
    pub fn new(name: &str) -> Self {
        CoordinatorSpec {
            name: name.to_owned(),
            color: name.to_owned(),
            batch_max: 1000,
            http: false,
            data_dir: None,
            nats_toml: String::new(),
            extra_toml: String::new(),
            ingest_toml: String::new(),
            allow_unidentified: true,
            topology_toml: String::new(),
        }
    }

    /// Refuses plain `ops.api.command` / `ops.api.failover` (the coordinator's default):
    /// only identified operators (`ops.api.as.<operator>.<role>.*`) may act.
    pub fn identified_only(mut self) -> Self {
        self.allow_unidentified = false;
        self
    }

    /// Adds keys to the `[topology]` table (e.g. `events_max_bytes = 65536`).
    pub fn topology_toml(mut self, toml: &str) -> Self {
        self.topology_toml.push_str(toml);
        if !toml.ends_with('\n') {
            self.topology_toml.push('\n');
        }
        self
    }

    /// Adds keys to the `[nats]` table (e.g. `nkey = "..."`, `tls = { ... }`).
    pub fn nats_toml(mut self, toml: &str) -> Self {
        self.nats_toml.push_str(toml);
        self
    }

    /// Serves `/healthz` and `/readyz` on `127.0.0.1:0`.
    pub fn http(mut self) -> Self {
        self.http = true;
        self
    }

    /// Keeps the store in `dir` instead of under the test's temp dir.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Appends raw TOML sections to the config.
    pub fn config_toml(mut self, toml: &str) -> Self {
        self.extra_toml.push('\n');
        self.extra_toml.push_str(toml);
        self
    }

    pub fn batch_max(mut self, n: u32) -> Self {
        self.batch_max = n;
        self
    }

    /// Adds keys to the `[ingest]` table (e.g. `snapshot_batches = 100000`).
    pub fn ingest_toml(mut self, toml: &str) -> Self {
        self.ingest_toml.push_str(toml);
        if !toml.ends_with('\n') {
            self.ingest_toml.push('\n');
        }
        self
    }

    /// The coordinator's config file, in the format of SPEC.md.
    pub fn to_toml(&self, data_dir: &Path, nats_url: &str) -> String {
        // One replica on the single test server, unless the test asks for more.
        let replicas = if self.topology_toml.contains("replicas") {
            ""
        } else {
            "replicas = 1\n"
        };
        let mut out = format!(
            "name = {}\ncolor = {}\ndata_dir = {}\n\n[nats]\nurls = [{}]\n{}\n[topology]\n\
             {}{}\n[ingest]\nbatch_max = {}\n{}",
            quote(&self.name),
            quote(&self.color),
            quote(&data_dir.display().to_string()),
            quote(nats_url),
            self.nats_toml,
            replicas,
            self.topology_toml,
            self.batch_max,
            self.ingest_toml
        );
        // Tests that are not about alerts compare digests and log lengths after their agents
        // stop; the dead-man rules would add host-lost events of their own once the agents
        // are silent for `min_silence`. Such tests get a silence floor longer than they run;
        // a test that configures `[alerts]` itself gets exactly what it asks for.
        if !self.extra_toml.contains("[alerts") {
            out.push_str("\n[alerts]\nmin_silence = \"1h\"\n");
        }
        if self.allow_unidentified && !self.extra_toml.contains("[api]") {
            out.push_str("\n[api]\nallow_unidentified = true\n");
        }
        out.push_str(&self.extra_toml);
        if self.http {
            out.push_str("\n[http]\nlisten = \"127.0.0.1:0\"\n");
        }
        out
    }
}

/// `ops-coordinator rebuild [--verify] --output json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RebuildReport {
    pub digest: String,
    #[serde(default)]
    pub stored_digest: Option<String>,
    pub events: u64,
    pub hosts: serde_json::Value,
    pub matches: bool,
}

/// One coordinator process with its own config and data dir under the test's temp dir.
#[derive(Debug)]
pub struct Coordinator {
    pub name: String,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    bin: PathBuf,
    proc: Proc,
}

impl Coordinator {
    /// Writes `<dir>/coordinator-<name>/coordinator.toml` and starts the coordinator.
    pub fn spawn(dir: &Path, spec: &CoordinatorSpec, nats_url: &str) -> Result<Coordinator> {
        Coordinator::spawn_bin(dir, spec, nats_url, &bins::bin(bins::COORDINATOR)?)
    }

    /// [`Coordinator::spawn`] running the binary at `bin` (an older build, for a baseline).
    pub fn spawn_bin(
        dir: &Path,
        spec: &CoordinatorSpec,
        nats_url: &str,
        bin: &Path,
    ) -> Result<Coordinator> {
        let bin = bin.to_path_buf();
        let home = dir.join(format!("coordinator-{}", spec.name));
        let data_dir = spec.data_dir.clone().unwrap_or_else(|| home.join("data"));
        for dir in [&home, &data_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let config_path = home.join("coordinator.toml");
        std::fs::write(&config_path, spec.to_toml(&data_dir, nats_url))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let mut proc = Proc::new(
            format!("ops-coordinator {}", spec.name),
            &bin,
            ["--config".into(), config_path.clone().into_os_string()],
            home.join("coordinator.log"),
        );
        proc.spawn()?;
        Ok(Coordinator {
            name: spec.name.clone(),
            config_path,
            data_dir,
            bin,
            proc,
        })
    }

    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    pub fn proc_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// SIGTERM; the coordinator must finish its batch and exit 0.
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.stop_gracefully().await
    }

    /// SIGKILL, possibly between persisting a batch and acking it.
    pub async fn sigkill(&mut self) -> Result<()> {
        self.proc.sigkill().await?;
        Ok(())
    }

    /// Starts again with the same config and data dir (must be stopped).
    pub fn restart(&mut self) -> Result<()> {
        self.proc.spawn()
    }

    /// The address of its HTTP endpoint, from the log line of the latest start (`[http]` must
    /// be configured, see [`CoordinatorSpec::http`]); `None` until it listens.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        parse_http_addr(&self.proc.log_since_start())
    }

    /// `GET /readyz`: the HTTP status code and the body.
    pub async fn readyz(&self) -> Result<(u16, String)> {
        let addr = self
            .http_addr()
            .with_context(|| format!("coordinator {} does not serve HTTP (yet)", self.name))?;
        http_get(addr, "/readyz").await
    }

    /// Runs `ops-coordinator --config F <args>`.
    pub async fn command(&self, args: &[&str]) -> Result<CmdOutput> {
        procs::run_with_config(&self.bin, &self.config_path, args).await
    }

    /// Every log entry in stream order; the coordinator must be stopped.
    pub async fn dump_log(&self) -> Result<Vec<LogEntry>> {
        let out = self
            .command(&["dump-log", "--output", "json"])
            .await?
            .ok()?;
        out.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| {
                    format!("`{}` line {}: unexpected JSON: {line}", out.cmdline, i + 1)
                })
            })
            .collect()
    }

    /// `rebuild [--verify] --output json`: the report and the raw output (exit status: with
    /// `--verify`, 1 means the stored projection differs).
    pub async fn rebuild(&self, verify: bool) -> Result<(RebuildReport, CmdOutput)> {
        let mut args = vec!["rebuild"];
        if verify {
            args.push("--verify");
        }
        args.extend(["--output", "json"]);
        let out = self.command(&args).await?;
        let report: RebuildReport = serde_json::from_str(out.stdout.trim()).with_context(|| {
            format!(
                "`{}` ({}) printed unexpected JSON: {}\nstderr:\n{}",
                out.cmdline, out.status, out.stdout, out.stderr
            )
        })?;
        Ok((report, out))
    }
}

/// A minimal HTTP/1.1 GET (no client library needed for two probe endpoints).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let raw = tokio::time::timeout(std::time::Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("GET http://{addr}{path} timed out"))?
        .with_context(|| format!("GET http://{addr}{path}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET http://{addr}{path}: not an HTTP response: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((code, body))
}

/// Address from the log line `... HTTP endpoint listening addr=127.0.0.1:PORT`.
pub fn parse_http_addr(log: &str) -> Option<std::net::SocketAddr> {
    let line = log
        .lines()
        .find(|l| l.contains("HTTP endpoint listening"))?;
    let (_, rest) = line.split_once("addr=")?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_spec_layout() {
        let text = CoordinatorSpec::new("blue")
            .batch_max(10)
            .to_toml(Path::new("/tmp/c"), "nats://127.0.0.1:4222");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["name"].as_str(), Some("blue"));
        assert_eq!(v["color"].as_str(), Some("blue"));
        assert_eq!(v["data_dir"].as_str(), Some("/tmp/c"));
        assert_eq!(v["nats"]["urls"][0].as_str(), Some("nats://127.0.0.1:4222"));
        assert_eq!(v["topology"]["replicas"].as_integer(), Some(1));
        assert_eq!(v["ingest"]["batch_max"].as_integer(), Some(10));
        assert!(v.get("http").is_none());
        assert_eq!(v["api"]["allow_unidentified"].as_bool(), Some(true));
        let text = CoordinatorSpec::new("blue")
            .identified_only()
            .to_toml(Path::new("/tmp/c"), "nats://127.0.0.1:4222");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert!(v.get("api").is_none());
        let text = CoordinatorSpec::new("blue")
            .http()
            .to_toml(Path::new("/tmp/c"), "nats://127.0.0.1:4222");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["http"]["listen"].as_str(), Some("127.0.0.1:0"));
    }

    #[test]
    fn http_addr_comes_from_the_log() {
        let log = "2026-12-02T00:00:00Z  INFO opsfleet_coordinator::service: store opened\n\
                   2026-12-02T00:00:00Z  INFO opsfleet_coordinator::service: HTTP endpoint \
                   listening addr=127.0.0.1:39123\n";
        assert_eq!(
            parse_http_addr(log),
            Some("127.0.0.1:39123".parse().unwrap())
        );
        assert_eq!(parse_http_addr("nothing here"), None);
    }
}
