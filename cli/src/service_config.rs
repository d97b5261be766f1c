//! `opsctl service config apply|rollback|history`: the flags, the command actions they send
//! (apply reads the new content from a local file) and the history table of
//! `ops.api.service_configs` (pure, golden-tested).

use std::path::PathBuf;

use clap::Args;
use opsfleet_proto::api::{CommandAction, ServiceConfigsReply, ServiceConfigsRequest};

use crate::client::{Api, ClientError};
use crate::paging::fetch_all;
use crate::render::ago;
use crate::sanitize::inert;
use crate::table::Table;
use crate::verbs::VerbError;
use crate::views::{render::answered_by, Common};

/// Examples shown by `opsctl service config --help`.
pub const SERVICE_CONFIG_HELP: &str = "\
Examples:
  opsctl service config apply app --file ./app.json --host web-01
  opsctl service config apply app --file ./app.json --path /etc/app/app.json --label role=web
  opsctl service config history app --host web-01
  opsctl service config rollback app --to 3fa2c1d0 --host web-01

The service must declare its files in `[modules.config]` and allow `config` in its `remote`
list (docs/modules.md). Contents stay on the hosts (config files may hold secrets): the log,
the history and the alerts carry only sha256 fingerprints. A `drift` snapshot is a change
made by hand; it raises the `config_drift` alert until opsfleet writes the file again.";

/// `opsctl service config apply`.
#[derive(Args, Debug, Clone)]
pub struct ServiceConfigApplyArgs {
    /// The service (its `service` module's name).
    pub service: String,
    /// Local file with the new content (sent as is; the agent checks its sha256).
    #[arg(long)]
    pub file: PathBuf,
    /// Which declared config file of the service to replace (its absolute path on the hosts);
    /// needed only when the service declares several.
    #[arg(long)]
    pub path: Option<String>,
}

impl ServiceConfigApplyArgs {
    /// The action, with the content read from `--file`.
    pub fn request(self) -> Result<CommandAction, VerbError> {
        let content =
            std::fs::read_to_string(&self.file).map_err(|source| VerbError::ReadConfig {
                path: self.file.clone(),
                source,
            })?;
        Ok(CommandAction::ServiceConfigApply {
            service: self.service,
            file: self.path,
            content,
            fingerprint: None,
        })
    }
}

/// `opsctl service config rollback`.
#[derive(Args, Debug, Clone)]
pub struct ServiceConfigRollbackArgs {
    /// The service (its `service` module's name).
    pub service: String,
    /// The content's fingerprint (64 hex, or a unique prefix of at least 8), as
    /// `opsctl service config history` lists them; the host must still keep that content
    /// (`keep` in `[modules.config]`).
    #[arg(long)]
    pub to: String,
    /// Which declared config file (its absolute path on the hosts); needed only when the
    /// service declares several.
    #[arg(long)]
    pub path: Option<String>,
}

impl ServiceConfigRollbackArgs {
    pub fn request(self) -> CommandAction {
        CommandAction::ServiceConfigRollback {
            service: self.service,
            file: self.path,
            fingerprint: self.to,
        }
    }
}

/// `opsctl service config history`.
#[derive(Args, Debug, Clone)]
pub struct ServiceConfigHistoryArgs {
    /// The service (its `service` module's name).
    pub service: String,
    /// Only this declared config file (its absolute path on the hosts).
    #[arg(long)]
    pub path: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Every page of the history `a` asks for.
pub async fn history(
    api: &Api,
    a: ServiceConfigHistoryArgs,
) -> Result<ServiceConfigsReply, ClientError> {
    let req = ServiceConfigsRequest {
        host: a.common.host,
        service: Some(a.service),
        file: a.path,
        ..Default::default()
    };
    let coordinator = a.common.coordinator.as_deref();
    fetch_all(api, coordinator, req, a.common.limit).await
}

/// The history table: one line per snapshot, oldest first per host and file.
pub fn render_history(reply: &ServiceConfigsReply, now_unix_ms: i64) -> String {
    let mut out = answered_by(&reply.responder);
    if reply.snapshots.is_empty() {
        out.push_str("no config snapshots of this service\n");
        return out;
    }
    let mut t = Table::new(&[
        "HOST",
        "FILE",
        "FINGERPRINT",
        "SIZE",
        "CAUSE",
        "WHEN",
        "COMMAND",
    ]);
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    for s in &reply.snapshots {
        let short = s.fingerprint.get(..12).unwrap_or(&s.fingerprint);
        t.row([
            s.host.clone(),
            s.file.clone(),
            if short.is_empty() {
                "(missing)".to_owned()
            } else {
                short.to_owned()
            },
            s.size.to_string(),
            s.cause.clone(),
            ago(now_unix_ms, s.at_unix_ms),
            dash(&s.command_id),
        ]);
    }
    t.write_to(&mut out);
    if let Some(after) = reply.next.as_deref() {
        let after = inert(after);
        out.push_str(&format!("more rows follow after {after} (raise --limit)\n"));
    }
    out
}
