//! A Python virtual environment for the tests that run Python programs: created once under the
//! target dir from a requirements file, reused while that file is unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

use crate::secure::repo_root;

/// The cargo target dir (`$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// The Python interpreter of `target/<name>`, a venv with `requirements` installed (pip, from
/// PyPI), reused while the requirements file is unchanged. Built in a private dir and renamed
/// into place (the venv is only ever used through `bin/python`, which survives the move), so
/// concurrent tests never see half an environment. Fails saying what to install when python3,
/// venv or pip cannot do it.
pub fn python_env(name: &str, requirements: &Path) -> Result<PathBuf> {
    // One builder per test process (tests run on threads); other processes race by rename.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let dir = target_dir().join(name);
    let ready = |dir: &Path| {
        dir.join("bin/python").is_file()
            && std::fs::read_to_string(dir.join("requirements.txt"))
                .ok()
                .as_deref()
                == Some(wanted.as_str())
    };
    if ready(&dir) {
        return Ok(dir.join("bin/python"));
    }
    let work = target_dir().join(format!("{name}.tmp-{}", uuid::Uuid::now_v7().simple()));
    let _ = std::fs::remove_dir_all(&work);
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&work),
        "python3 -m venv (install python3 and python3-venv: apt-get install python3-venv)",
    )?;
    run(
        Command::new(work.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(requirements),
        &format!(
            "pip install -r {} (needs PyPI or a mirror; pip's own error is above)",
            requirements.display()
        ),
    )?;
    std::fs::write(work.join("requirements.txt"), &wanted)?;
    if dir.exists() && !ready(&dir) {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot replace the stale {}", dir.display()))?;
    }
    if std::fs::rename(&work, &dir).is_err() {
        // Another test process put its own in place meanwhile.
        let _ = std::fs::remove_dir_all(&work);
    }
    if !ready(&dir) {
        bail!("{} is not a usable Python environment", dir.display());
    }
    Ok(dir.join("bin/python"))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
