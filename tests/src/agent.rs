//! `ops-agent` under test: its TOML config (per SPEC), the process, and its `outbox` report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::bins;
use crate::procs::{self, CmdOutput, Proc};

/// What one agent runs. Intervals are short so tests produce many events quickly.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub host: String,
    pub heartbeat: Duration,
    /// `disk` module: interval and watched paths (none: no disk module).
    pub disk: Option<(Duration, Vec<PathBuf>)>,
    /// Long enough to drain the outbox on a loaded machine, so `pending` is 0 after a stop.
    pub shutdown_grace: Duration,
    pub max_events: u64,
    /// Further `[[modules]]` entries, as TOML, appended to the config.
    pub extra_modules: String,
    /// Network namespace to run the agent in (`ip netns exec <ns> ops-agent …`).
    pub netns: Option<String>,
    /// NATS URL to use instead of the cluster's (e.g. as seen from inside `netns`).
    pub nats_url: Option<String>,
    /// Further keys of the `[nats]` table (credentials, TLS), as TOML lines.
    pub nats_toml: String,
    /// Keys of the `[policy]` table (what remote changes may do), as TOML lines; the safe
    /// defaults when empty.
    pub policy_toml: String,
    /// The `ops-agent` executable to run instead of the one `bins::bin` finds (the idle bench
    /// runs each agent from its own copy, as one agent per host does).
    pub binary: Option<PathBuf>,
    /// Environment variables the agent process gets beside the test's own.
    pub env: Vec<(String, String)>,
}

impl AgentSpec {
    /// Heartbeat every 100 ms, no disk module, 20 s shutdown grace.
    pub fn new(host: &str) -> Self {
        AgentSpec {
            host: host.to_owned(),
            heartbeat: Duration::from_millis(100),
            disk: None,
            shutdown_grace: Duration::from_secs(20),
            max_events: 100_000,
            extra_modules: String::new(),
            netns: None,
            nats_url: None,
            nats_toml: String::new(),
            policy_toml: String::new(),
            binary: None,
            env: Vec::new(),
        }
    }

    /// Sets `key` to `value` in the agent process's environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs this executable instead of the workspace's `ops-agent`.
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// Adds keys to the `[policy]` table (e.g. `restore_targets = ["/srv/restore"]`).
    pub fn policy(mut self, toml: &str) -> Self {
        self.policy_toml.push_str(toml);
        self.policy_toml.push('\n');
        self
    }

    /// Adds keys to the `[nats]` table (e.g. `nkey = "..."`, `tls = { ... }`).
    pub fn nats_toml(mut self, toml: &str) -> Self {
        self.nats_toml.push_str(toml);
        self
    }

    /// Runs the agent inside network namespace `ns`, connecting to `nats_url` from there.
    pub fn in_netns(mut self, ns: &str, nats_url: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self.nats_url = Some(nats_url.to_owned());
        self
    }

    /// Appends raw `[[modules]]` TOML (e.g. log, health, backup modules) to the config.
    pub fn modules_toml(mut self, toml: &str) -> Self {
        self.extra_modules.push('\n');
        self.extra_modules.push_str(toml);
        self
    }

    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    pub fn disk(mut self, every: Duration, paths: Vec<PathBuf>) -> Self {
        self.disk = Some((every, paths));
        self
    }

    /// The agent's config file, in the format of SPEC.md.
    pub fn to_toml(&self, data_dir: &Path, nats_url: &str) -> String {
        let mut out = format!(
            "host = {}\ndata_dir = {}\nshutdown_grace = {}\n\n[nats]\nurls = [{}]\n{}\n\
             [outbox]\nmax_events = {}\n\n[[modules]]\ntype = \"heartbeat\"\ninterval = {}\n",
            quote(&self.host),
            quote(&data_dir.display().to_string()),
            quote(&duration_str(self.shutdown_grace)),
            quote(nats_url),
            self.nats_toml,
            self.max_events,
            quote(&duration_str(self.heartbeat)),
        );
        if let Some((every, paths)) = &self.disk {
            let paths: Vec<String> = paths
                .iter()
                .map(|p| quote(&p.display().to_string()))
                .collect();
            out.push_str(&format!(
                "\n[[modules]]\ntype = \"disk\"\nname = \"disk\"\ninterval = {}\npaths = [{}]\n\
                 warn_percent = 85.0\ncrit_percent = 95.0\nhysteresis_percent = 2.0\n",
                quote(&duration_str(*every)),
                paths.join(", ")
            ));
        }
        out.push_str(&self.extra_modules);
        if !self.policy_toml.is_empty() {
            // Last: a table header ends whatever table the modules left open.
            out.push_str("\n[policy]\n");
            out.push_str(&self.policy_toml);
        }
        out
    }
}

/// A disk module (every 500 ms, over `disks`, with these thresholds and a 0.05 % hysteresis)
/// and a log module (every 200 ms, tailing `log`, tracebacks grouped within 1 s), as
/// `[[modules]]` entries for `AgentSpec::modules_toml`.
pub fn disk_and_log_modules(disks: &[&Path], log: &Path, warn: f64, crit: f64) -> String {
    let paths: Vec<String> = disks
        .iter()
        .map(|d| quote(&d.display().to_string()))
        .collect();
    format!(
        "\n[[modules]]\ntype = \"disk\"\ninterval = \"500ms\"\npaths = [{}]\n\
         warn_percent = {warn}\ncrit_percent = {crit}\nhysteresis_percent = 0.05\n\n\
         [[modules]]\ntype = \"log\"\ninterval = \"200ms\"\npaths = [{}]\n\
         multiline_timeout = \"1s\"\n",
        paths.join(", "),
        quote(&log.display().to_string()),
    )
}

/// A TOML string literal.
pub(crate) fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A duration in the humantime form the configs use ("100ms", "20s").
pub(crate) fn duration_str(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `ops-agent --config F outbox --output json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OutboxInfo {
    pub host: String,
    pub incarnation: String,
    pub last_seq: u64,
    pub pending: u64,
}

/// One agent process with its own config and data dir under the test's temp dir.
#[derive(Debug)]
pub struct Agent {
    pub host: String,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    bin: PathBuf,
    proc: Proc,
}

impl Agent {
    /// Writes `<dir>/agent-<host>/agent.toml` and starts the agent.
    pub fn spawn(dir: &Path, spec: &AgentSpec, nats_url: &str) -> Result<Agent> {
        let bin = match &spec.binary {
            Some(path) => path.clone(),
            None => bins::bin(bins::AGENT)?,
        };
        let home = dir.join(format!("agent-{}", spec.host));
        let data_dir = home.join("data");
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let config_path = home.join("agent.toml");
        let nats_url = spec.nats_url.as_deref().unwrap_or(nats_url);
        std::fs::write(&config_path, spec.to_toml(&data_dir, nats_url))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let args: Vec<std::ffi::OsString> =
            vec!["--config".into(), config_path.clone().into_os_string()];
        let mut proc = match &spec.netns {
            // `ip netns exec` execs the program in place: the pid is the agent's own, so
            // signals reach it directly.
            Some(ns) => Proc::new(
                format!("ops-agent {} (netns {ns})", spec.host),
                "ip",
                [
                    "netns".into(),
                    "exec".into(),
                    ns.into(),
                    bin.clone().into_os_string(),
                ]
                .into_iter()
                .chain(args),
                home.join("agent.log"),
            ),
            None => Proc::new(
                format!("ops-agent {}", spec.host),
                &bin,
                args,
                home.join("agent.log"),
            ),
        };
        for (key, value) in &spec.env {
            proc.env(key, value);
        }
        proc.spawn()?;
        Ok(Agent {
            host: spec.host.clone(),
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

    /// SIGTERM; the agent must drain and exit 0.
    pub async fn stop(&mut self) -> Result<()> {
        self.proc.stop_gracefully().await
    }

    /// SIGKILL: no chance to drain the outbox.
    pub async fn sigkill(&mut self) -> Result<()> {
        self.proc.sigkill().await?;
        Ok(())
    }

    /// Starts again with the same config and data dir (must be stopped).
    pub fn restart(&mut self) -> Result<()> {
        self.proc.spawn()
    }

    /// Runs `ops-agent --config F <args>`.
    pub async fn command(&self, args: &[&str]) -> Result<CmdOutput> {
        procs::run_with_config(&self.bin, &self.config_path, args).await
    }

    /// The outbox report; the agent must be stopped.
    pub async fn outbox(&self) -> Result<OutboxInfo> {
        let out = self.command(&["outbox", "--output", "json"]).await?.ok()?;
        let info: OutboxInfo = serde_json::from_str(out.stdout.trim()).with_context(|| {
            format!("`{}` printed unexpected JSON: {}", out.cmdline, out.stdout)
        })?;
        if info.host != self.host {
            bail!("outbox of {} reports host {:?}", self.host, info.host);
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_spec_layout() {
        let spec = AgentSpec::new("web-01")
            .heartbeat(Duration::from_millis(50))
            .disk(Duration::from_secs(1), vec![PathBuf::from("/tmp")]);
        let text = spec.to_toml(Path::new("/tmp/a b"), "nats://127.0.0.1:4222");
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["host"].as_str(), Some("web-01"));
        assert_eq!(v["data_dir"].as_str(), Some("/tmp/a b"));
        assert_eq!(v["shutdown_grace"].as_str(), Some("20s"));
        assert_eq!(v["nats"]["urls"][0].as_str(), Some("nats://127.0.0.1:4222"));
        assert_eq!(v["outbox"]["max_events"].as_integer(), Some(100_000));
        assert_eq!(v["modules"][0]["type"].as_str(), Some("heartbeat"));
        assert_eq!(v["modules"][0]["interval"].as_str(), Some("50ms"));
        assert_eq!(v["modules"][1]["type"].as_str(), Some("disk"));
        assert_eq!(v["modules"][1]["paths"][0].as_str(), Some("/tmp"));
        assert!(v.get("policy").is_none(), "the safe defaults");
        let spec = spec
            .modules_toml("[labels]\nrole = \"db\"\n")
            .policy("restore_targets = [\"/srv/restore\"]");
        let v: toml::Value = toml::from_str(&spec.to_toml(Path::new("/d"), "nats://x")).unwrap();
        assert_eq!(
            v["policy"]["restore_targets"][0].as_str(),
            Some("/srv/restore")
        );
        assert_eq!(v["labels"]["role"].as_str(), Some("db"));
    }
}
