//! `opsctl` under test: `status` as parsed JSON and as the human table.

use std::ffi::OsStr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use opsfleet_proto::api::StatusReply;

use crate::bins;
use crate::procs::{self, CmdOutput, COMMAND_TIMEOUT};

/// Request timeout passed to opsctl; generous for loaded machines.
pub const OPSCTL_TIMEOUT: &str = "10s";

/// Runs opsctl against one NATS server.
#[derive(Debug, Clone)]
pub struct Opsctl {
    bin: PathBuf,
    nats_url: String,
    /// Connection flags given before every command (credentials, TLS).
    extra: Vec<String>,
}

impl Opsctl {
    pub fn new(nats_url: &str) -> Result<Self> {
        Ok(Opsctl {
            bin: bins::bin(bins::OPSCTL)?,
            nats_url: nats_url.to_owned(),
            extra: Vec::new(),
        })
    }

    /// The same opsctl with further connection flags (e.g. `--nkey F --operator alice`).
    pub fn with_args<I: IntoIterator<Item = String>>(mut self, args: I) -> Self {
        self.extra.extend(args);
        self
    }

    /// `opsctl --nats URL --timeout 10s <args>`.
    pub async fn run(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut all: Vec<&OsStr> = vec![
            "--nats".as_ref(),
            self.nats_url.as_ref(),
            "--timeout".as_ref(),
            OPSCTL_TIMEOUT.as_ref(),
        ];
        all.extend(self.extra.iter().map(OsStr::new));
        all.extend(args.iter().map(OsStr::new));
        procs::run(&self.bin, &all, COMMAND_TIMEOUT).await
    }

    /// `opsctl --output json <args>`, parsed.
    pub async fn json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> Result<T> {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await?.ok()?;
        serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("`{}` printed unexpected JSON: {}", out.cmdline, out.stdout))
    }

    /// `opsctl status --output json [--coordinator NAME]`, parsed.
    pub async fn status(&self, coordinator: Option<&str>) -> Result<StatusReply> {
        let mut args = vec!["--output", "json", "status"];
        if let Some(name) = coordinator {
            args.extend(["--coordinator", name]);
        }
        let out = self.run(&args).await?.ok()?;
        serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("`{}` printed unexpected JSON: {}", out.cmdline, out.stdout))
    }

    /// `opsctl status [--coordinator NAME]` as printed for humans.
    pub async fn status_table(&self, coordinator: Option<&str>) -> Result<String> {
        let mut args = vec!["status"];
        if let Some(name) = coordinator {
            args.extend(["--coordinator", name]);
        }
        Ok(self.run(&args).await?.ok()?.stdout)
    }
}
