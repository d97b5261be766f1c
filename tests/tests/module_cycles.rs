//! No module cycles: `scripts/module-cycles.py` lists cycles between sibling modules of every
//! crate (a module's paths `crate::…`/`super::…` lifted to the level where two modules are
//! siblings); there must be none.

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::repo_root;

#[test]
fn no_module_cycles() -> Result<()> {
    let out = std::process::Command::new("python3")
        .arg(repo_root().join("scripts/module-cycles.py"))
        .output()
        .context("cannot run python3 scripts/module-cycles.py")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = text.lines().filter(|l| l.contains(" <-> ")).collect();
    ensure!(
        out.status.success() && found.is_empty(),
        "module cycles ({}):\n{}{}",
        out.status,
        found.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
