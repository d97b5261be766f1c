//! `opsctl service config apply|rollback|history`: the subcommands (apply and rollback are
//! command verbs sent by `issue::run_request`; history reads `ops.api.service_configs`).

use clap::Subcommand;
use opsfleet_cli::client::Api;
use opsfleet_cli::service_config::{
    self, ServiceConfigApplyArgs, ServiceConfigHistoryArgs, ServiceConfigRollbackArgs,
};
use opsfleet_proto::time::now_unix_ms;

use crate::args::{Output, Targets};
use crate::show::print;

/// `opsctl service config ...`.
#[derive(Subcommand, Debug)]
pub enum ServiceConfigCommand {
    /// Replace a service's config file with a local file's content (admin role).
    ///
    /// The content is written beside the old file, checked with the service's own check,
    /// renamed over it and applied (reload or restart, as the host declares); on any failure
    /// the old content comes back and the command fails with why (the check's output).
    Apply {
        #[command(flatten)]
        what: ServiceConfigApplyArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Go back to a content of the file the host kept, by fingerprint (admin role).
    ///
    /// `history` lists the fingerprints; the content is checked and applied like `apply`.
    Rollback {
        #[command(flatten)]
        what: ServiceConfigRollbackArgs,
        #[command(flatten)]
        targets: Targets,
    },
    /// Every snapshot of the service's config files per host.
    ///
    /// Fingerprint, size, cause (`start`, `drift`, `applied`, `rolled_back`, `restored`), when,
    /// and the command that made the change; oldest first.
    History(ServiceConfigHistoryArgs),
}

impl ServiceConfigCommand {
    /// The targets of apply and rollback.
    pub fn targets(&self) -> Option<&Targets> {
        match self {
            ServiceConfigCommand::Apply { targets, .. }
            | ServiceConfigCommand::Rollback { targets, .. } => Some(targets),
            ServiceConfigCommand::History(_) => None,
        }
    }
}

/// `opsctl service config history`.
pub async fn history(api: &Api, a: ServiceConfigHistoryArgs, output: Output) -> anyhow::Result<()> {
    let reply = service_config::history(api, a).await?;
    print(&reply, output, |r| {
        service_config::render_history(r, now_unix_ms())
    })
}
