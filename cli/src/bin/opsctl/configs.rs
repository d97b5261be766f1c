//! `opsctl config show|history|diff`: ask `ops.api.configs`, then print JSON or the text
//! `opsfleet_cli::configs` renders.

use opsfleet_cli::client::Api;
use opsfleet_cli::configs::{self, ConfigDiffArgs, ConfigReadArgs, ConfigShowArgs};
use serde_json::json;

use crate::args::Output;
use crate::show::print;

/// `opsctl config show`: a config's fingerprint and TOML (default: the current one).
pub async fn show(api: &Api, a: ConfigShowArgs, output: Output) -> anyhow::Result<()> {
    let reply = configs::fetch(api, &a.read).await?;
    let shown = configs::pick_one(&reply, a.fingerprint.as_deref()).map_err(anyhow::Error::msg)?;
    print(shown, output, |c| configs::show(&reply, c))
}

/// `opsctl config history`: every config the log kept, with dates, the current one marked.
pub async fn history(api: &Api, a: ConfigReadArgs, output: Output) -> anyhow::Result<()> {
    let reply = configs::fetch(api, &a).await?;
    print(&reply, output, configs::history)
}

/// `opsctl config diff`: what changed between two configs (default: previous → current).
pub async fn diff(api: &Api, a: ConfigDiffArgs, output: Output) -> anyhow::Result<()> {
    let reply = configs::fetch(api, &a.read).await?;
    let (from, to) = configs::pick_pair(&reply, a.from.as_deref(), a.to.as_deref())
        .map_err(anyhow::Error::msg)?;
    let pair = json!({ "from": from, "to": to });
    print(&pair, output, |_| configs::diff(from, to))
}
