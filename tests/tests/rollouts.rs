//! Rollouts end to end, with real processes and real artifacts: four agents each run `web`
//! (tests/fixtures/testapp.py, from `<dir>/current`, health gated), releases are `.tar.gz`
//! artifacts this test builds and serves over loopback HTTP, and `opsctl rollout` drives the
//! coordinators.
//! * A canary across four agents completes: every host runs 2.0 from `releases/2.0`, healthy,
//!   each updated exactly once, in wave order.
//! * A bad version (never ready) is rolled back by itself: the rollout ends `rolled_back`
//!   naming the host, the hosts it reached run 2.0 again and healthy, the others were never
//!   touched, and `rollout_failed` fires. A version whose probes answer late is rolled back by
//!   the `--max-p95` latency gate.
//! * A drained host is skipped and the rollout's status says so; its version is unchanged.
//! * A service whose host does not allow `deploy` refuses it: the rollout rolls back nothing
//!   and ends naming the host's policy.
//! * The active coordinator is SIGKILLed mid-wave: the standby picks the rollout up from the
//!   log and finishes it, every host updated exactly once (by the log: one completed deploy
//!   command each).
//! * Blue/green across two hosts with two slots each: the new version goes to the idle slot,
//!   the traffic switches to it (the slots' own switch command), the old slot stays up; an
//!   undo while it is up switches the traffic back at once and stops nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{
    ProbeStatus, RolloutHostState, RolloutPhase, RolloutView, ServiceRunState, ServicesReply,
};
use opsfleet_tests::artifacts::{tar_gz, ArtifactServer};
use opsfleet_tests::secure::free_port;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};

const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(300);

fn testapp() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testapp.py")
}

/// A release of `web` as a directory: the app, its config, how long it takes to be ready and
/// how late it answers its health probe (seconds).
fn release_dir(root: &Path, version: &str, ready_after: &str, delay: &str) -> Result<PathBuf> {
    let dir = root.join("build").join(version);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(testapp(), dir.join("app.py"))?;
    std::fs::write(dir.join("app.json"), r#"{"greeting": "hi"}"#)?;
    std::fs::write(dir.join("ready_after"), ready_after)?;
    std::fs::write(dir.join("health_delay"), delay)?;
    Ok(dir)
}

/// One host's `web`: its port and deploy dir, with release 1.0 in place as `current`.
struct Web {
    port: u16,
    dir: PathBuf,
}

impl Web {
    fn new(root: &Path, host: &str, v1: &Path) -> Result<Web> {
        let dir = root.join(format!("web-{host}"));
        let release = dir.join("releases/1.0");
        std::fs::create_dir_all(&release)?;
        for f in ["app.py", "app.json", "ready_after", "health_delay"] {
            std::fs::copy(v1.join(f), release.join(f))?;
        }
        std::os::unix::fs::symlink("releases/1.0", dir.join("current"))?;
        Ok(Web {
            port: free_port()?,
            dir,
        })
    }

    fn modules(&self, remote: &str) -> String {
        let d = self.dir.display();
        format!(
            r#"
[[modules]]
type = "service"
name = "web"
interval = "200ms"
argv = ["sh", "-c", "exec python3 {d}/current/app.py --port {port} --config {d}/current/app.json --ready-after $(cat {d}/current/ready_after) --health-delay $(cat {d}/current/health_delay)"]
stop_grace = "5s"
restart_backoff_min = "1s"
restart_backoff_max = "2s"
remote = {remote}
health_interval = "300ms"
ready_timeout = "8s"

[modules.deploy]
dir = "{d}"
keep = 3

[[modules.health]]
name = "web"
type = "http"
url = "http://127.0.0.1:{port}/healthz"
timeout = "300ms"
"#,
            port = self.port,
        )
    }

    fn current(&self) -> Result<String> {
        Ok(std::fs::read_link(self.dir.join("current"))?
            .file_name()
            .context("current names a release")?
            .to_string_lossy()
            .into_owned())
    }
}

/// Hosts whose `web` runs ready at `version`, as `opsctl services` shows them.
async fn ready_at(opsctl: &Opsctl, hosts: &[&str], version: &str) -> Result<()> {
    wait_until(
        &format!("web ready at {version} on {hosts:?}"),
        WAIT,
        POLL,
        async || {
            let r: ServicesReply = opsctl.json(&["services"]).await?;
            let ok = hosts.iter().all(|h| {
                r.services.iter().any(|s| {
                    s.host == *h
                        && s.service == "web"
                        && s.state == ServiceRunState::Running
                        && s.health == Some(ProbeStatus::Ready)
                        && s.version == version
                })
            });
            Ok(ok.then_some(()))
        },
    )
    .await
}

/// The artifacts of this test: 2.0 (good), 2.1, 3.0 (never ready), 4.0 (slow probes), served
/// on loopback for as long as this lives.
struct Artifacts {
    server: ArtifactServer,
    sha: BTreeMap<String, String>,
    v1: PathBuf,
}

async fn artifacts(root: &Path) -> Result<Artifacts> {
    let v1 = release_dir(root, "1.0", "1", "0")?;
    let out = root.join("served");
    let mut sha = BTreeMap::new();
    let releases = [
        ("2.0", "1", "0"),
        ("2.1", "1", "0"),
        ("3.0", "100000", "0"),
        ("4.0", "1", "0.15"),
    ];
    for (version, ready_after, delay) in releases {
        let dir = release_dir(root, version, ready_after, delay)?;
        let built = tar_gz(&dir, &out.join(format!("web-{version}.tar.gz")))?;
        sha.insert(version.to_owned(), built.sha256);
    }
    Ok(Artifacts {
        server: ArtifactServer::serve(&out).await?,
        sha,
        v1,
    })
}

impl Artifacts {
    fn args(&self, version: &str) -> Vec<String> {
        vec![
            "--version".into(),
            version.into(),
            "--artifact".into(),
            self.server.url(&format!("web-{version}.tar.gz")),
            "--sha256".into(),
            self.sha[version].clone(),
        ]
    }
}

/// `opsctl -o json rollout start web <args>` waiting for the end; the final view and the exit
/// code.
async fn rollout(opsctl: &Opsctl, args: &[String]) -> Result<(RolloutView, Option<i32>)> {
    let mut all: Vec<&str> = vec!["-o", "json", "rollout", "start", "web"];
    all.extend(args.iter().map(String::as_str));
    let out = opsctl.run(&all).await?;
    let view: RolloutView = serde_json::from_str(out.stdout.trim()).with_context(|| {
        format!(
            "rollout printed no view (exit {:?}): {}{}",
            out.status.code(),
            out.stdout,
            out.stderr
        )
    })?;
    Ok((view, out.status.code()))
}

fn gates(soak: &str) -> Vec<String> {
    [
        "--all",
        "--canary",
        "1",
        "--waves",
        "50,100",
        "--soak",
        soak,
        "--ready-samples",
        "2",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_completes_a_bad_version_rolls_back_and_a_drained_host_is_skipped() {
    Cluster::run("rollouts", async |c: &mut Cluster| {
        let hosts = ["web-01", "web-02", "web-03", "web-04"];
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let art = artifacts(c.dir()).await?;
        let mut webs = Vec::new();
        for host in hosts {
            let web = Web::new(c.dir(), host, &art.v1)?;
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(300))
                    .modules_toml(&web.modules(r#"["deploy", "restart"]"#)),
            )?;
            webs.push(web);
        }
        let opsctl = c.opsctl.clone();
        ready_at(&opsctl, &hosts, "1.0").await?;

        // The canary of 2.0 across all four.
        let mut args = art.args("2.0");
        args.extend(gates("2s"));
        let (view, code) = rollout(&opsctl, &args).await?;
        ensure!(
            code == Some(0) && view.phase == RolloutPhase::Completed,
            "exit {code:?}: {view:#?}"
        );
        ensure!(view.waves.len() == 3, "canary, 50%, 100%: {view:#?}");
        for h in &view.hosts {
            ensure!(
                h.state == RolloutHostState::Updated && h.deploys == 1 && h.previous == "1.0",
                "{h:?}"
            );
        }
        for web in &webs {
            ensure!(web.current()? == "2.0", "{}", web.dir.display());
        }
        ready_at(&opsctl, &hosts, "2.0").await?;
        // Wave order: no host of a later wave was sent its deploy before the previous wave's
        // soak passed.
        let order: Vec<&str> = (view.history.iter())
            .filter(|s| s.step == "host_command")
            .filter_map(|s| s.detail.split(' ').nth(1))
            .collect();
        ensure!(order == hosts, "deploy order {order:?}");

        // 3.0 never becomes ready: its canary fails, is put back on 2.0, nobody else touched.
        let mut args = art.args("3.0");
        args.extend(gates("2s"));
        let (view, code) = rollout(&opsctl, &args).await?;
        ensure!(
            code == Some(1) && view.phase == RolloutPhase::RolledBack,
            "exit {code:?}: {view:#?}"
        );
        ensure!(view.reason.contains("web-01"), "{}", view.reason);
        let canary = &view.hosts[0];
        ensure!(
            canary.host == "web-01" && canary.state == RolloutHostState::RolledBack,
            "{canary:?}"
        );
        ensure!(
            view.hosts[1..]
                .iter()
                .all(|h| h.state == RolloutHostState::Pending),
            "{view:#?}"
        );
        ready_at(&opsctl, &hosts, "2.0").await?;
        ensure!(webs[0].current()? == "2.0");
        wait_until("rollout_failed firing", WAIT, POLL, async || {
            let out = opsctl.run(&["-o", "json", "alerts"]).await?.ok()?;
            Ok(out.stdout.contains("rollout_failed").then_some(()))
        })
        .await?;

        // web-04 in maintenance: skipped, said so, left on 2.0.
        opsctl.run(&["drain", "--host", "web-04"]).await?.ok()?;
        let mut args = art.args("2.1");
        args.extend(gates("1s"));
        let (view, code) = rollout(&opsctl, &args).await?;
        ensure!(code == Some(0), "exit {code:?}: {view:#?}");
        ensure!(
            view.skipped
                .iter()
                .any(|s| s.host == "web-04" && s.reason.contains("maintenance")),
            "{view:#?}"
        );
        ensure!(view.hosts.iter().all(|h| h.host != "web-04"));
        ensure!(webs[3].current()? == "2.0");
        ensure!(webs[0].current()? == "2.1");

        // 4.0 answers its probes 150 ms late: ready, but over a 100 ms latency bound.
        let mut args = art.args("4.0");
        args.extend(gates("2s"));
        args.extend(["--max-p95".to_owned(), "100ms".to_owned()]);
        let (view, code) = rollout(&opsctl, &args).await?;
        ensure!(
            code == Some(1) && view.phase == RolloutPhase::RolledBack,
            "exit {code:?}: {view:#?}"
        );
        ensure!(
            view.reason.contains("web-01: web probe latency p95"),
            "{}",
            view.reason
        );
        ensure!(webs[0].current()? == "2.1");
        ready_at(&opsctl, &hosts[..3], "2.1").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_does_not_allow_deploy_refuses_and_nothing_is_rolled_back() {
    Cluster::run("rollout-refused", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let art = artifacts(c.dir()).await?;
        let web = Web::new(c.dir(), "web-01", &art.v1)?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&web.modules(r#"["restart"]"#)),
        )?;
        let opsctl = c.opsctl.clone();
        ready_at(&opsctl, &["web-01"], "1.0").await?;
        let mut args = art.args("2.0");
        args.extend(gates("1s"));
        let (view, code) = rollout(&opsctl, &args).await?;
        ensure!(
            code == Some(1) && view.phase == RolloutPhase::RolledBack,
            "exit {code:?}: {view:#?}"
        );
        ensure!(view.reason.contains("remote"), "{}", view.reason);
        ensure!(web.current()? == "1.0");
        ensure!(
            view.hosts[0].state == RolloutHostState::Failed,
            "{:?}",
            view.hosts
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_killed_mid_wave_and_the_new_active_finishes_updating_each_host_once() {
    Cluster::run("rollout-failover", async |c: &mut Cluster| {
        let hosts = ["web-01", "web-02", "web-03", "web-04"];
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_coordinator(CoordinatorSpec::new("green"))?;
        let art = artifacts(c.dir()).await?;
        let mut webs = Vec::new();
        for host in hosts {
            let web = Web::new(c.dir(), host, &art.v1)?;
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(300))
                    .modules_toml(&web.modules(r#"["deploy"]"#)),
            )?;
            webs.push(web);
        }
        let opsctl = c.opsctl.clone();
        ready_at(&opsctl, &hosts, "1.0").await?;

        let mut args: Vec<String> = vec!["--no-wait".into()];
        args.extend(art.args("2.0"));
        args.extend(gates("4s"));
        let mut all: Vec<&str> = vec!["-o", "json", "rollout", "start", "web"];
        all.extend(args.iter().map(String::as_str));
        let out = opsctl.run(&all).await?.ok()?;
        let started: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
        let id = started["rollout"]["id"]
            .as_str()
            .or_else(|| started["id"].as_str())
            .context("rollout id")?
            .to_owned();
        let status = async |opsctl: &Opsctl| -> Result<RolloutView> {
            opsctl.json(&["rollout", "status", &id]).await
        };
        // Mid-wave: the canary updated, the second wave under way or soaking.
        wait_until("the rollout past its canary", WAIT, POLL, async || {
            let v = status(&opsctl).await?;
            Ok((v.wave >= 1).then_some(()))
        })
        .await?;
        let leader = opsctl.run(&["-o", "json", "leader"]).await?.ok()?.stdout;
        let rows: Vec<serde_json::Value> = serde_json::from_str(leader.trim())?;
        let active = (rows.iter())
            .find(|r| r["answering"] == true && r["role"] == "active")
            .and_then(|r| r["name"].as_str())
            .context("an active coordinator")?
            .to_owned();
        c.coordinator(&active)?.sigkill().await?;

        let view = wait_until(
            "the rollout completed under the new active",
            WAIT,
            POLL,
            async || {
                let v = status(&opsctl).await?;
                ensure!(
                    !v.phase.is_final() || v.phase == RolloutPhase::Completed,
                    "{v:#?}"
                );
                Ok((v.phase == RolloutPhase::Completed).then_some(v))
            },
        )
        .await?;
        for h in &view.hosts {
            ensure!(
                h.deploys == 1 && h.state == RolloutHostState::Updated,
                "{h:?}"
            );
        }
        ensure!(
            view.history
                .iter()
                .any(|s| s.epoch != view.history[0].epoch),
            "the new active recorded steps: {:#?}",
            view.history
        );
        // By the log: one completed deploy command per host.
        let cmds: serde_json::Value = opsctl.json(&["commands", "--limit", "200"]).await?;
        for host in hosts {
            let n = cmds
                .as_array()
                .or_else(|| cmds["commands"].as_array())
                .context("commands")?
                .iter()
                .filter(|c| {
                    c["target"] == host
                        && c["action"] == "service_deploy"
                        && c["state"] == "completed"
                })
                .count();
            ensure!(n == 1, "{host}: {n} completed deploys");
        }
        for web in &webs {
            ensure!(web.current()? == "2.0");
        }
        ready_at(&opsctl, &hosts, "2.0").await?;
        Ok(())
    })
    .await;
}

/// Two slots of `web` on one host: `web-blue` (live at start) and `web-green`, each deployable
/// from its own dir, each able to take the traffic (the switch writes its name into the
/// host's `upstream` file, as re-pointing a proxy would).
fn slot_modules(blue: &Web, green: &Web, upstream: &Path) -> String {
    let slot = |name: &str, web: &Web| {
        let d = web.dir.display();
        format!(
            r#"
[[modules]]
type = "service"
name = "{name}"
interval = "200ms"
argv = ["sh", "-c", "exec python3 {d}/current/app.py --port {port} --config {d}/current/app.json --ready-after $(cat {d}/current/ready_after) --health-delay $(cat {d}/current/health_delay)"]
stop_grace = "5s"
restart_backoff_min = "1s"
restart_backoff_max = "2s"
remote = ["deploy", "switch", "stop", "start"]
health_interval = "300ms"
ready_timeout = "8s"

[modules.deploy]
dir = "{d}"

[modules.traffic]
slot_group = "web"
switch = ["sh", "-c", "echo {{service}} > {up}"]

[[modules.health]]
name = "{name}"
type = "http"
url = "http://127.0.0.1:{port}/healthz"
timeout = "300ms"
"#,
            port = web.port,
            up = upstream.display(),
        )
    };
    format!("{}{}", slot("web-blue", blue), slot("web-green", green))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_flips_the_traffic_and_undo_flips_it_back_while_the_old_slot_is_hot() {
    Cluster::run("rollout-blue-green", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let art = artifacts(c.dir()).await?;
        let hosts = ["web-01", "web-02"];
        let mut slots = Vec::new();
        for host in hosts {
            let blue = Web::new(c.dir(), &format!("{host}-blue"), &art.v1)?;
            let green = Web::new(c.dir(), &format!("{host}-green"), &art.v1)?;
            let upstream = c.dir().join(format!("{host}-upstream"));
            std::fs::write(&upstream, "web-blue\n")?;
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(300))
                    .modules_toml(&slot_modules(&blue, &green, &upstream)),
            )?;
            slots.push((blue, green, upstream));
        }
        let opsctl = c.opsctl.clone();
        wait_until("both slots ready everywhere", WAIT, POLL, async || {
            let r: ServicesReply = opsctl.json(&["services"]).await?;
            let ready = (r.services.iter())
                .filter(|s| s.state == ServiceRunState::Running)
                .filter(|s| s.health == Some(ProbeStatus::Ready))
                .count();
            Ok((ready == 4).then_some(()))
        })
        .await?;

        let mut all: Vec<String> = ["-o", "json", "rollout", "start", "web-blue", "--no-wait"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        all.extend(art.args("2.0"));
        all.extend(gates("1s"));
        all.extend(
            [
                "--strategy",
                "blue-green",
                "--green",
                "web-green",
                "--keep-old",
                "10m",
            ]
            .into_iter()
            .map(str::to_owned),
        );
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = opsctl.run(&args).await?.ok()?;
        let started: serde_json::Value = serde_json::from_str(out.stdout.trim())?;
        let id = started["rollout"]["id"]
            .as_str()
            .or_else(|| started["id"].as_str())
            .context("rollout id")?
            .to_owned();

        // Every wave passed: the traffic is on green (2.0), blue still runs 1.0, kept hot.
        let view = wait_until(
            "both waves passed, the old slot kept",
            WAIT,
            POLL,
            async || {
                let v: RolloutView = opsctl.json(&["rollout", "status", &id]).await?;
                ensure!(!v.phase.is_final(), "ended early: {v:#?}");
                Ok(v.waves.iter().all(|w| w.state == "passed").then_some(v))
            },
        )
        .await?;
        ensure!(view.phase == RolloutPhase::Running, "{view:#?}");
        for (blue, green, upstream) in &slots {
            ensure!(std::fs::read_to_string(upstream)?.trim() == "web-green");
            ensure!(green.current()? == "2.0" && blue.current()? == "1.0");
        }
        let r: ServicesReply = opsctl.json(&["services"]).await?;
        for s in &r.services {
            let want = if s.service == "web-green" {
                "2.0"
            } else {
                "1.0"
            };
            ensure!(
                s.version == want && s.state == ServiceRunState::Running,
                "{s:?}"
            );
        }

        // Undo while blue is hot: the traffic goes back at once, nothing is stopped.
        let out = opsctl.run(&["-o", "json", "rollout", "undo", &id]).await?;
        let view: RolloutView = serde_json::from_str(out.stdout.trim())
            .with_context(|| format!("undo printed: {}{}", out.stdout, out.stderr))?;
        ensure!(
            out.status.code() == Some(0) && view.phase == RolloutPhase::Undone,
            "{view:#?}"
        );
        for (blue, _, upstream) in &slots {
            ensure!(std::fs::read_to_string(upstream)?.trim() == "web-blue");
            ensure!(blue.current()? == "1.0");
        }
        let r: ServicesReply = opsctl.json(&["services"]).await?;
        ensure!(
            r.services
                .iter()
                .all(|s| s.state == ServiceRunState::Running),
            "{r:?}"
        );
        Ok(())
    })
    .await;
}
