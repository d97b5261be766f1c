//! A Python virtual environment for the tests that run Python programs: created once under the
//! target dir from a requirements file, reused while that file is unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::secure::repo_root;

/// The cargo target dir (`$CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from)
}

/// The Python interpreter of `target/<name>`, a venv with `requirements` installed (pip, from
/// PyPI), reused while the requirements file is unchanged. Built under a lock in a private dir
/// and renamed into place (the venv is only ever used through `bin/python`, which survives the
/// move), so no test sees half an environment, even after an interrupted build. Fails saying
/// what to install when python3, venv or pip cannot do it.
pub fn python_env(name: &str, requirements: &Path) -> Result<PathBuf> {
    // One builder at a time, across test threads and processes (nextest): the others wait
    // here and then find it ready. Released when the file is closed.
    std::fs::create_dir_all(target_dir())?;
    let lock_path = target_dir().join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
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
    let built = build(&work, requirements);
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    std::fs::write(work.join("requirements.txt"), &wanted)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot replace the stale {}", dir.display()))?;
    }
    std::fs::rename(&work, &dir)
        .with_context(|| format!("cannot move {} to {}", work.display(), dir.display()))?;
    if !ready(&dir) {
        bail!("{} is not a usable Python environment", dir.display());
    }
    Ok(dir.join("bin/python"))
}

/// `python3 -m venv work` and `pip install -r requirements` into it.
fn build(work: &Path, requirements: &Path) -> Result<()> {
    run(
        Command::new("python3").args(["-m", "venv"]).arg(work),
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
            "pip install -r {} (needs PyPI or a mirror)",
            requirements.display()
        ),
    )
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
