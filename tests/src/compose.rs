//! The compose stack (`deploy/compose.yaml`) driven from a test: images built locally by
//! `deploy/docker/build-local.sh` (no registry), one compose project per test process torn down
//! with `down -v` on drop, stale projects of killed runs removed, and the reason a test skips
//! where no Docker engine or docker-compose is.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::bins;
use crate::secure::repo_root;

/// `docker-compose` for one project (the shipped file plus the test's override files);
/// `down -v` on drop.
pub struct Stack {
    pub project: String,
    pub files: Vec<PathBuf>,
    pub secrets: PathBuf,
    /// Image tag of the test's images (never `local`, which users build).
    pub tag: String,
}

impl Stack {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.args(["-p", &self.project]);
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        cmd.env("OPSFLEET_SECRETS", &self.secrets)
            .env("OPSFLEET_IMAGE", format!("opsfleet:{}", self.tag))
            .env("OPSFLEET_NATS_IMAGE", format!("opsfleet-nats:{}", self.tag))
            .env("OPSFLEET_NATS_PUBLISH", "127.0.0.1:0");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .command()
            .args(args)
            .output()
            .with_context(|| format!("cannot run docker-compose {args:?}"))?;
        if !out.status.success() {
            bail!(
                "docker-compose {args:?} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn logs(&self) -> String {
        self.command()
            .args(["logs", "--no-color", "--tail", "30"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
    }
}

/// Why a compose test cannot run here, if it cannot: no Docker engine or no docker-compose.
pub fn docker_missing() -> Option<String> {
    if let Some(why) = docker_engine_missing() {
        return Some(why);
    }
    match Command::new("docker-compose").arg("version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("docker-compose is not installed".to_owned()),
    }
}

/// Why no container can run here, if none can: no Docker engine answers.
pub fn docker_engine_missing() -> Option<String> {
    let answers = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match answers {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "no Docker engine answers: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
        Err(e) => return Some(format!("docker is not installed ({e})")),
    }
    None
}

/// Stacks of earlier runs that could not tear down (a run killed by the test runner's timeout
/// never reaches `Drop`): `down -v` each.
pub fn remove_stale_stacks(file: &Path, prefix: &str) {
    let Ok(out) = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--format",
            "{{.Label \"com.docker.compose.project\"}}",
        ])
        .output()
    else {
        return;
    };
    let projects: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|p| p.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    for project in projects {
        eprintln!("removing the stale compose stack {project}");
        let _ = Command::new("docker-compose")
            .args(["-p", &project, "-f"])
            .arg(file)
            .args(["down", "-v", "--remove-orphans", "-t", "1"])
            .output();
    }
}

/// Builds `opsfleet:<tag>` and `opsfleet-nats:<tag>` from the binaries the other integration
/// tests use (`cargo build --bins`).
pub fn build_images(tag: &str) -> Result<()> {
    let agent = bins::bin(bins::AGENT)?;
    let bin_dir = agent
        .parent()
        .context("the agent binary has no directory")?;
    let build = Command::new("bash")
        .arg(repo_root().join("deploy/docker/build-local.sh"))
        .args(["--profile", "dev", "--tag", tag, "--bin-dir"])
        .arg(bin_dir)
        .status()
        .context("cannot run build-local.sh")?;
    ensure!(
        build.success(),
        "deploy/docker/build-local.sh failed: {build}"
    );
    Ok(())
}

/// Runs `docker <args>`; its stdout, or an error with its output.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .with_context(|| format!("cannot run docker {args:?}"))?;
    if !out.status.success() {
        bail!(
            "docker {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
