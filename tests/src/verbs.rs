//! Helpers of the command-verb tests: a backup module's config and `opsctl -o json <verb>`
//! against one host, its outcome parsed.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::Cluster;

/// A backup module `backup` with one job `app` of `<dir>/src` into `<dir>/dest`.
pub fn backup_toml(dir: &Path) -> String {
    format!(
        "[[modules]]\ntype = \"backup\"\nname = \"backup\"\ninterval = \"200ms\"\n\
         [[modules.jobs]]\nname = \"app\"\nsources = [\"{}\"]\ndestination = \"{}\"\n\
         schedule = \"24h\"\nkeep_count = 5\n",
        dir.join("src").display(),
        dir.join("dest").display()
    )
}

/// `opsctl --output json <args> --host <host> --wait 60s`: (success, outcome JSON, stderr),
/// whatever the exit.
pub async fn verb(c: &Cluster, host: &str, args: &[&str]) -> Result<(bool, Value, String)> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--host", host, "--wait", "60s"]);
    let out = c.opsctl.run(&all).await?;
    let value = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    Ok((out.status.success(), value, out.stderr))
}

/// Writes `toml` to `<cluster dir>/<file>` and runs `opsctl config apply <module> --file` on
/// it against `host`: as [`verb`].
pub async fn config_apply(
    c: &Cluster,
    host: &str,
    module: &str,
    file: &str,
    toml: &str,
) -> Result<(bool, Value, String)> {
    let path = c.dir().join(file);
    std::fs::write(&path, toml)?;
    let path = path.display().to_string();
    verb(c, host, &["config", "apply", module, "--file", &path]).await
}

/// The ledger's view of one command (`opsctl -o json commands --id ID`), `Null` if unknown.
pub async fn command_view(c: &Cluster, id: &str) -> Result<Value> {
    let out = c
        .opsctl
        .run(&["--output", "json", "commands", "--id", id])
        .await?
        .ok()?;
    let views: Value = serde_json::from_str(out.stdout.trim())?;
    Ok(views[0].clone())
}

/// The one command of an outcome.
pub fn only_command(outcome: &Value) -> Result<&Value> {
    let cmds = outcome["commands"].as_array().context("commands")?;
    ensure!(cmds.len() == 1, "one command: {outcome}");
    Ok(&cmds[0])
}
