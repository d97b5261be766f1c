//! The compose stack for real (`deploy/compose.yaml`): images built locally by
//! `deploy/docker/build-local.sh` (no registry), a 3-node NATS cluster with the shipped
//! permissions and TLS, coordinators blue and green, three agents. Checks that events flow
//! (opsctl through the published NATS port, with an operator's credentials), kills the active
//! coordinator's container and sees the standby take over; `down -v` in every case.
//! Without a Docker engine it prints why it skips and passes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use opsfleet_proto::api::Responder;
use opsfleet_tests::secure::{generate_secrets, repo_root};
use opsfleet_tests::{bins, wait_until, Opsctl};

/// Image tag of this test's images (never `local`, which users build).
const TAG: &str = "drill";
/// Compose project names of this test: the prefix plus the test process id.
const PROJECT_PREFIX: &str = "opsfleet-drill-";

/// `docker-compose` for one project; `down -v` on drop.
struct Stack {
    project: String,
    file: PathBuf,
    secrets: PathBuf,
}

impl Stack {
    fn command(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .env("OPSFLEET_SECRETS", &self.secrets)
            .env("OPSFLEET_IMAGE", format!("opsfleet:{TAG}"))
            .env("OPSFLEET_NATS_IMAGE", format!("opsfleet-nats:{TAG}"))
            .env("OPSFLEET_NATS_PUBLISH", "127.0.0.1:0");
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String> {
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

    fn logs(&self) -> String {
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

/// Why the test cannot run here, if it cannot.
fn docker_missing() -> Option<String> {
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
    match Command::new("docker-compose").arg("version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("docker-compose is not installed".to_owned()),
    }
}

/// Stacks of earlier runs that could not tear down (a run killed by the test runner's timeout
/// never reaches `Drop`): `down -v` each.
fn remove_stale_stacks(file: &Path) {
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
        .filter(|p| p.starts_with(PROJECT_PREFIX))
        .map(str::to_owned)
        .collect();
    for project in projects {
        eprintln!("compose_drill: removing the stale stack {project}");
        let _ = Command::new("docker-compose")
            .args(["-p", &project, "-f"])
            .arg(file)
            .args(["down", "-v", "--remove-orphans", "-t", "1"])
            .output();
    }
}

fn leader(replies: &[Responder]) -> Option<&Responder> {
    replies.iter().find(|r| r.role == "active")
}

async fn responders(opsctl: &Opsctl) -> Result<Vec<Responder>> {
    let out = opsctl.run(&["--output", "json", "leader"]).await?.ok()?;
    serde_json::from_str(out.stdout.trim()).context("opsctl leader printed unexpected JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_stack_fails_over_when_the_active_coordinator_dies() -> Result<()> {
    if let Some(why) = docker_missing() {
        eprintln!("SKIPPED compose_drill: {why}; the compose failover drill needs a Docker engine");
        println!("SKIPPED compose_drill: {why}");
        return Ok(());
    }
    let started = Instant::now();
    let root = repo_root();
    // The images hold the binaries the other integration tests use (cargo build --bins).
    let agent = bins::bin(bins::AGENT)?;
    let bin_dir = agent
        .parent()
        .context("the agent binary has no directory")?;
    let build = Command::new("bash")
        .arg(root.join("deploy/docker/build-local.sh"))
        .args(["--profile", "dev", "--tag", TAG, "--bin-dir"])
        .arg(bin_dir)
        .status()
        .context("cannot run build-local.sh")?;
    ensure!(
        build.success(),
        "deploy/docker/build-local.sh failed: {build}"
    );

    remove_stale_stacks(&root.join("deploy/compose.yaml"));
    let tmp = tempfile::Builder::new()
        .prefix("opsfleet-compose-")
        .tempdir()?;
    let secrets = tmp.path().join("secrets");
    generate_secrets(&secrets)?;
    let stack = Stack {
        project: format!("{PROJECT_PREFIX}{}", std::process::id()),
        file: root.join("deploy/compose.yaml"),
        secrets: secrets.clone(),
    };
    let result = drill(&stack, &secrets, started).await;
    if result.is_err() {
        eprintln!("compose logs:\n{}", stack.logs());
    }
    result
}

async fn drill(stack: &Stack, secrets: &Path, started: Instant) -> Result<()> {
    stack.run(&["up", "-d"])?;
    let port = stack.run(&["port", "nats-1", "4222"])?;
    let addr = port.trim();
    ensure!(!addr.is_empty(), "nats-1 has no published port");
    let tls = secrets.join("tls");
    let opsctl = Opsctl::new(&format!("nats://{addr}"))?.with_args([
        "--nkey".to_owned(),
        secrets.join("nkeys/alice.nk").display().to_string(),
        "--operator".to_owned(),
        "alice".to_owned(),
        "--tls-ca".to_owned(),
        tls.join("ca.pem").display().to_string(),
        "--tls-cert".to_owned(),
        tls.join("operator.pem").display().to_string(),
        "--tls-key".to_owned(),
        tls.join("operator-key.pem").display().to_string(),
    ]);

    // Events flow: every agent reported a few times to the coordinators.
    let hosts = ["db-01", "web-01", "web-02"];
    wait_until(
        "all three hosts in opsctl status",
        Duration::from_secs(60),
        Duration::from_millis(500),
        async || {
            let reply = opsctl.status(None).await?;
            let ok = hosts
                .iter()
                .all(|h| reply.hosts.iter().any(|v| v.host == *h && v.last_seq >= 3));
            Ok(ok.then_some(()))
        },
    )
    .await?;
    let before = wait_until(
        "an active coordinator",
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let replies = responders(&opsctl).await?;
            Ok((replies.len() == 2)
                .then(|| leader(&replies).cloned())
                .flatten())
        },
    )
    .await?;
    eprintln!(
        "compose_drill: stack up, events flowing, {} active at epoch {} after {:?}",
        before.name,
        before.epoch,
        started.elapsed()
    );

    // Kill the active coordinator's container (SIGKILL): the standby takes over.
    let killed_at = Instant::now();
    stack.run(&[
        "kill",
        "-s",
        "SIGKILL",
        &format!("coordinator-{}", before.name),
    ])?;
    let after = wait_until(
        "the standby to take over",
        Duration::from_secs(45),
        Duration::from_millis(200),
        async || {
            let replies = responders(&opsctl).await?;
            Ok(leader(&replies)
                .filter(|r| r.name != before.name && r.epoch > before.epoch)
                .cloned())
        },
    )
    .await?;
    let takeover = killed_at.elapsed();
    eprintln!(
        "compose_drill: {} active at epoch {} {:?} after the kill (lease TTL 15s)",
        after.name, after.epoch, takeover
    );

    // Events keep flowing into the new active coordinator.
    let seq_now = opsctl.status(Some(&after.name)).await?;
    let mark: Vec<(String, u64)> = seq_now
        .hosts
        .iter()
        .map(|h| (h.host.clone(), h.last_seq))
        .collect();
    wait_until(
        "events to keep flowing after the takeover",
        Duration::from_secs(30),
        Duration::from_millis(500),
        async || {
            let reply = opsctl.status(Some(&after.name)).await?;
            let ok = mark.iter().all(|(host, seq)| {
                reply
                    .hosts
                    .iter()
                    .any(|h| &h.host == host && h.last_seq > *seq)
            });
            Ok(ok.then_some(()))
        },
    )
    .await?;
    eprintln!("compose_drill: done in {:?}", started.elapsed());
    Ok(())
}
