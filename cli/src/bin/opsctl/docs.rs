//! `opsctl completion <shell>` and `opsctl man --dir D`: shell completions (clap_complete) and
//! man pages (clap_mangen) generated from opsctl's own clap definition, so they never drift
//! from the flags.

use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;
use opsfleet_cli::out::write_out;

use crate::args::Cli;

/// Prints the completion script for `shell` on standard output.
pub fn completion(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "opsctl", &mut script);
    Ok(write_out(&String::from_utf8_lossy(&script))?)
}

/// Writes `opsctl.1` and one page per subcommand (`opsctl-status.1`, `opsctl-backup-run.1`)
/// into `dir`, and names each page written on standard output.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    let mut written: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".1"))
        .collect();
    written.sort();
    let mut text = written.join("\n");
    text.push('\n');
    Ok(write_out(&text)?)
}
