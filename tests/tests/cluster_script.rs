//! scripts/cluster.sh as operators use it during a runbook: detached (`up -d`, `status`,
//! `stop NAME`, `restart NAME`, `down`), and in the foreground with stdout piped, where it keeps
//! running (and says so) when one agent stops, and stops everything when interrupted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use opsfleet_tests::bins;

const NAMES: &[&str] = &[
    "nats-server",
    "coordinator-blue",
    "coordinator-green",
    "agent-web-01",
    "agent-web-02",
    "agent-db-01",
];
/// Starting a cluster on a loaded 2-core machine.
const START_BOUND: Duration = Duration::from_secs(240);

/// One cluster of the script in its own directory and port; `down` on drop.
struct Script {
    dir: tempfile::TempDir,
    port: u16,
    bin_dir: PathBuf,
}

impl Script {
    fn new() -> Result<Script> {
        let opsctl = bins::bin(bins::OPSCTL)?;
        let bin_dir = opsctl
            .parent()
            .context("opsctl has no directory")?
            .to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(Script {
            dir: tempfile::tempdir()?,
            port,
            bin_dir,
        })
    }

    fn cluster_dir(&self) -> PathBuf {
        self.dir.path().join("cluster")
    }

    fn command(&self, args: &[&str]) -> Command {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .args(args)
            .env("OPSFLEET_CLUSTER_DIR", self.cluster_dir())
            .env("OPSFLEET_NATS_PORT", self.port.to_string())
            .env("OPSFLEET_BIN_DIR", &self.bin_dir)
            .env("OPSFLEET_REFRESH_SECONDS", "1")
            .env_remove("CI")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the script to its end (bounded) and returns its output.
    fn run(&self, args: &[&str], bound: Duration) -> Result<Output> {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn scripts/cluster.sh")?;
        wait_output(child, bound).with_context(|| format!("scripts/cluster.sh {args:?}"))
    }

    fn pid(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.cluster_dir().join(format!("pids/{name}.pid")));
        text.ok()?.trim().parse().ok()
    }

    fn running(&self, name: &str) -> bool {
        self.pid(name).is_some_and(alive)
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.run(&["down"], Duration::from_secs(60));
    }
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn wait_output(mut child: Child, bound: Duration) -> Result<Output> {
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > bound {
            let _ = child.kill();
            bail!("did not end within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child.wait_with_output()?)
}

fn ok(out: Output) -> Result<String> {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(out.status.success(), "{:?}: {stderr}", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `check` every 100 ms for up to `bound`.
fn poll(what: &str, bound: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !check() {
        ensure!(start.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn others_running(s: &Script, except: &str) -> Result<()> {
    for name in NAMES.iter().filter(|n| **n != except) {
        ensure!(s.running(name), "{name} stopped with {except}");
    }
    Ok(())
}

#[test]
fn detached_cluster_stops_restarts_one_process_and_comes_down() -> Result<()> {
    let s = Script::new()?;
    ok(s.run(&["up", "-d"], START_BOUND)?)?;
    for name in NAMES {
        ensure!(
            s.running(name),
            "{name} is not running after up -d returned"
        );
    }
    let old = s.pid("agent-web-01").context("no pid for agent-web-01")?;
    ok(s.run(&["stop", "agent-web-01"], Duration::from_secs(60))?)?;
    ensure!(
        !alive(old),
        "agent-web-01 (pid {old}) still runs after stop"
    );
    others_running(&s, "agent-web-01")?;
    let status = ok(s.run(&["status"], Duration::from_secs(60))?)?;
    ensure!(
        status
            .lines()
            .any(|l| l.starts_with("agent-web-01") && l.contains("stopped")),
        "status does not show agent-web-01 stopped:\n{status}"
    );
    ok(s.run(&["restart", "agent-web-01"], Duration::from_secs(60))?)?;
    ensure!(
        s.running("agent-web-01"),
        "agent-web-01 not running after restart"
    );
    let refused = s.run(&["restart", "agent-mail-09"], Duration::from_secs(60))?;
    ensure!(
        !refused.status.success(),
        "restart of an unknown process succeeded"
    );
    let pids: Vec<u32> = NAMES.iter().filter_map(|n| s.pid(n)).collect();
    ok(s.run(&["down"], Duration::from_secs(90))?)?;
    for pid in pids {
        ensure!(!alive(pid), "pid {pid} still runs after down");
    }
    Ok(())
}

#[test]
fn foreground_cluster_keeps_running_when_one_agent_stops_and_stops_all_on_sigterm() -> Result<()> {
    let s = Script::new()?;
    let stderr_path = s.dir.path().join("script.stderr");
    let mut child = s
        .command(&[])
        .stdout(std::fs::File::create(s.dir.path().join("script.stdout"))?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()
        .context("spawn scripts/cluster.sh")?;
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    poll("the cluster to come up", START_BOUND, || {
        stderr().contains("cluster is up") || !matches!(child.try_wait(), Ok(None))
    })?;
    ensure!(
        child.try_wait()?.is_none(),
        "the script ended:\n{}",
        stderr()
    );
    ensure!(
        stderr().contains("not a terminal"),
        "no word on what it does when piped:\n{}",
        stderr()
    );
    let agent = s.pid("agent-web-01").context("no pid for agent-web-01")?;
    let killed = Command::new("kill")
        .args(["-TERM", &agent.to_string()])
        .status()?;
    ensure!(killed.success(), "kill agent-web-01");
    poll(
        "the script to report agent-web-01 stopped",
        Duration::from_secs(60),
        || stderr().contains("agent-web-01 (pid"),
    )?;
    ensure!(
        child.try_wait()?.is_none(),
        "the script ended:\n{}",
        stderr()
    );
    others_running(&s, "agent-web-01")?;
    ok(s.run(&["restart", "agent-web-01"], Duration::from_secs(60))?)?;
    ensure!(
        s.running("agent-web-01"),
        "agent-web-01 not running after restart"
    );

    let pids: Vec<u32> = NAMES.iter().filter_map(|n| s.pid(n)).collect();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    ensure!(term.success(), "kill the script");
    poll(
        "the script to end on SIGTERM",
        Duration::from_secs(90),
        || !matches!(child.try_wait(), Ok(None)),
    )?;
    for pid in pids {
        ensure!(!alive(pid), "pid {pid} still runs after the script ended");
    }
    Ok(())
}
