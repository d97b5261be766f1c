//! The programs of Debian's `prometheus` package as the test runs them (`promtool` lints and
//! checks, the `prometheus` server), and the metric names a text exports or refers to.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::repo_root;
use tokio::io::AsyncWriteExt;

/// `tool` (`promtool`, `prometheus`) on PATH, or an error naming what to install.
pub fn find_tool(tool: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{tool} not found on PATH: install Debian's `prometheus` package \
                 (`apt-get install prometheus`; scripts/test.sh does it)"
            )
        })
}

pub fn promtool() -> Result<PathBuf> {
    find_tool("promtool")
}

/// Runs promtool with `args` (and `stdin`); its exit status must be 0 and, for `check
/// metrics`, it must print nothing (each lint problem is a line).
pub async fn run_promtool(args: &[&str], stdin: Option<&str>, quiet: bool) -> Result<String> {
    let mut cmd = tokio::process::Command::new(promtool()?);
    cmd.args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawn promtool")?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await?;
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("promtool took over 60 s")??;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{said}",
        out.status
    );
    ensure!(
        !quiet || said.trim().is_empty(),
        "promtool {args:?} found problems:\n{said}"
    );
    Ok(said)
}

/// Every `opsfleet_*` metric name a sample line of `body` uses.
pub fn exported_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for l in body.lines().filter(|l| l.starts_with("opsfleet_")) {
        let end = l.find(['{', ' ']).unwrap_or(l.len());
        let name = &l[..end];
        names.insert(name.to_owned());
        // A histogram's family name is what queries may name too.
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                names.insert(base.to_owned());
            }
        }
    }
    names
}

/// Every `opsfleet_*` identifier in `text`.
pub fn referenced_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("opsfleet_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // `job="opsfleet-agents"` and the like are not metric names.
        if i == 0 || !rest[..i].ends_with(['-', '/']) {
            out.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}
