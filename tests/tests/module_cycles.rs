//! No new module cycles: `scripts/module-cycles.py` lists cycles between sibling modules of
//! every crate; the only ones allowed are those still to be broken (issue 13), listed here. A
//! new cycle fails this test, and so does breaking one without taking it off the list.

use anyhow::{ensure, Context, Result};
use opsfleet_tests::secure::repo_root;

/// Cycles not broken yet, each with the type that ties it.
const STILL_TO_BREAK: [&str; 1] = [
    // runner owns ModuleEntry/RunOutput/StatusBoard/Trigger, control owns ControlHandle.
    "agent: control <-> runner",
];

#[test]
fn no_module_cycles_but_the_known_ones() -> Result<()> {
    let out = std::process::Command::new("python3")
        .arg(repo_root().join("scripts/module-cycles.py"))
        .output()
        .context("cannot run python3 scripts/module-cycles.py")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found: Vec<&str> = text.lines().filter(|l| l.contains(" <-> ")).collect();
    found.sort_unstable();
    let mut known = STILL_TO_BREAK.to_vec();
    known.sort_unstable();
    ensure!(
        found == known,
        "module cycles changed; found:\n{}\nexpected (tests/tests/module_cycles.rs):\n{}",
        found.join("\n"),
        known.join("\n")
    );
    Ok(())
}
