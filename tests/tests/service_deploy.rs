//! `opsctl service deploy` end to end: a real agent runs testapp (tests/fixtures) as a
//! `process` service from `<dir>/current`, with `[modules.deploy]` and `remote = ["deploy"]`.
//! Releases are `.tar.gz` files the test builds and serves over loopback HTTP
//! (`opsfleet_tests::artifacts`).
//!
//! - v1 then v2 from the HTTP server: `current` points at each, the process restarted
//!   (another pid) and ready, the app serves the release's version, `opsctl services` and the
//!   heartbeat carry it, `service_deployed` events name version, previous, fetched.
//! - Back to v1 with no artifact and the HTTP server stopped: the kept release runs.
//! - Refused, each leaving what runs untouched: a wrong sha256 (nothing left in `releases/`),
//!   another artifact under a kept version, a version the host does not keep (the message
//!   lists the kept ones), a version that is not a safe name, a service without `deploy` in
//!   `remote` (the policy's reason).
//! - `keep = 2`: a third version removes the oldest release, never the current or previous.
//! - A deploy waiting for many ready rounds holds neither the host's other commands (a `noop`
//!   issued after it completes first) nor runs beside a later op of its own service (a
//!   `service restart` issued right after it completes only after it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{ProbeStatus, ServiceRunState, ServiceView, ServicesReply};
use opsfleet_tests::artifacts::{tar_gz, Artifact, ArtifactServer};
use opsfleet_tests::secure::{free_port, repo_root};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// A release directory `root/src-<version>` with testapp and its VERSION file.
fn release(root: &Path, version: &str) -> Result<PathBuf> {
    let dir = root.join(format!("src-{version}"));
    std::fs::create_dir_all(dir.join("bin"))?;
    std::fs::copy(
        repo_root().join("tests/fixtures/testapp.py"),
        dir.join("bin/testapp.py"),
    )?;
    std::fs::write(dir.join("VERSION"), format!("{version}\n"))?;
    Ok(dir)
}

/// `app` runs from `<deploy>/current`; `locked` may only be restarted remotely.
fn modules(deploy: &Path, port: u16) -> String {
    let d = deploy.display();
    format!(
        r#"
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["sh", "-c", "exec python3 {d}/current/bin/testapp.py --port {port} --version-file {d}/current/VERSION --ready-after 1"]
stop_grace = "5s"
restart_backoff_min = "1s"
restart_backoff_max = "2s"
remote = ["deploy"]
health_interval = "300ms"
ready_timeout = "30s"

[modules.deploy]
dir = "{d}"
keep = 2

[[modules.health]]
name = "web"
type = "http"
url = "http://127.0.0.1:{port}/healthz"
timeout = "300ms"

[[modules]]
type = "service"
name = "locked"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "2s"
remote = ["restart"]
"#
    )
}

/// GET `path` from the app, the body.
fn get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

async fn app_row(opsctl: &Opsctl) -> Result<Option<ServiceView>> {
    let r: ServicesReply = opsctl.json(&["services", "--host", "web-01"]).await?;
    Ok(r.services.into_iter().find(|s| s.service == "app"))
}

/// The `app` row once it runs ready at `version` under a pid other than `old`.
async fn running(opsctl: &Opsctl, version: &str, old: u32) -> Result<ServiceView> {
    wait_until(
        &format!("app running and ready at {version}"),
        WAIT,
        POLL,
        async || {
            Ok(app_row(opsctl).await?.filter(|s| {
                s.state == ServiceRunState::Running
                    && s.health == Some(ProbeStatus::Ready)
                    && s.version == version
                    && s.pid != old
            }))
        },
    )
    .await
}

/// `opsctl service deploy app` on web-01 with `extra` flags; the roll's JSON (exit 0).
async fn deploy(opsctl: &Opsctl, service: &str, extra: &[&str]) -> Result<Value> {
    let mut args = vec![
        "service", "deploy", service, "--host", "web-01", "--wait", "120s", "-o", "json",
    ];
    args.extend(extra);
    let out = opsctl.run(&args).await?.ok()?;
    let roll: Value = serde_json::from_str(&out.stdout)?;
    ensure!(roll["all_completed"] == true, "{roll}");
    Ok(roll)
}

/// The same, expected to fail (exit 1) with `why` in the output.
async fn refused(opsctl: &Opsctl, service: &str, extra: &[&str], why: &str) -> Result<()> {
    let mut args = vec![
        "service", "deploy", service, "--host", "web-01", "--wait", "120s",
    ];
    args.extend(extra);
    let out = opsctl.run(&args).await?;
    let text = format!("{}{}", out.stdout, out.stderr);
    ensure!(
        out.status.code() == Some(1) && text.contains(why),
        "deploy {extra:?}: exit {}, want {why:?} in:\n{text}",
        out.status
    );
    Ok(())
}

fn detail(roll: &Value) -> String {
    roll["commands"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn current(deploy: &Path) -> Result<PathBuf> {
    Ok(std::fs::read_link(deploy.join("current"))?)
}

/// The `service_deployed` events of web-01, oldest first (their payloads).
async fn deployed_events(opsctl: &Opsctl) -> Result<Vec<Value>> {
    let out = opsctl
        .run(&[
            "-o",
            "json",
            "events",
            "--since",
            "10m",
            "--host",
            "web-01",
            "--kind",
            "service_deployed",
        ])
        .await?
        .ok()?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["module"] == "app")
        .map(|v| v["payload"].clone())
        .collect())
}

/// A heartbeat of web-01 carries `app` at `version`.
async fn heartbeat_carries(opsctl: &Opsctl, version: &str) -> Result<()> {
    wait_until("a heartbeat carrying the version", WAIT, POLL, async || {
        let out = opsctl
            .run(&[
                "-o",
                "json",
                "events",
                "--since",
                "1m",
                "--host",
                "web-01",
                "--kind",
                "heartbeat",
            ])
            .await?
            .ok()?;
        let carried = out
            .stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["payload"]["services"].as_array().cloned())
            .flatten()
            .any(|s| s["service"] == "app" && s["version"] == version);
        Ok(carried.then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_switch_current_restart_healthy_and_go_back_without_the_network() {
    Cluster::run("service-deploy", async |c: &mut Cluster| {
        let root = c.dir().to_owned();
        let deploy_dir = root.join("opt-app");
        let port = free_port()?;
        let dist = root.join("dist");
        let v1 = tar_gz(&release(&root, "1.0.0")?, &dist.join("app-1.0.0.tar.gz"))?;
        let v2 = tar_gz(&release(&root, "2.0.0")?, &dist.join("app-2.0.0.tgz"))?;
        let v3 = tar_gz(&release(&root, "3.0.0")?, &dist.join("app-3.0.0.tar.gz"))?;
        let server = ArtifactServer::serve(&dist).await?;
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&modules(&deploy_dir, port)),
        )?;
        let opsctl = c.opsctl.clone();
        // Nothing deployed yet: the service is known (and fails to start).
        wait_until("the app service reported", WAIT, POLL, async || {
            app_row(&opsctl).await
        })
        .await?;

        // v1 from the HTTP server.
        let url1 = server.url(&v1.name());
        let roll = deploy(
            &opsctl,
            "app",
            &[
                "--version",
                "1.0.0",
                "--artifact",
                &url1,
                "--sha256",
                &v1.sha256,
            ],
        )
        .await?;
        ensure!(
            detail(&roll).contains("deployed 1.0.0 (was none)"),
            "{roll}"
        );
        ensure!(current(&deploy_dir)? == Path::new("releases/1.0.0"));
        let first = running(&opsctl, "1.0.0", 0).await?;
        ensure!(get(port, "/version")? == "1.0.0", "the app does not run v1");

        // v2, gated on 3 ready rounds in a row.
        let url2 = server.url(&v2.name());
        let roll = deploy(
            &opsctl,
            "app",
            &[
                "--version",
                "2.0.0",
                "--artifact",
                &url2,
                "--sha256",
                &v2.sha256,
                "--ready-samples",
                "3",
            ],
        )
        .await?;
        let said = detail(&roll);
        ensure!(
            said.contains("deployed 2.0.0 (was 1.0.0)") && said.contains("ready 3 times in a row"),
            "{roll}"
        );
        ensure!(current(&deploy_dir)? == Path::new("releases/2.0.0"));
        let second = running(&opsctl, "2.0.0", first.pid).await?;
        ensure!(get(port, "/version")? == "2.0.0", "the app does not run v2");
        heartbeat_carries(&opsctl, "2.0.0").await?;
        let events = wait_until("two service_deployed events", WAIT, POLL, async || {
            let e = deployed_events(&opsctl).await?;
            Ok((e.len() >= 2).then_some(e))
        })
        .await?;
        let last = &events[events.len() - 1];
        ensure!(
            last["version"] == "2.0.0"
                && last["previous"] == "1.0.0"
                && last["fetched"] == true
                && last["location"]
                    .as_str()
                    .is_some_and(|l| l.ends_with("releases/2.0.0")),
            "{events:?}"
        );

        // Back to v1 with the network gone: the kept release.
        let hits = server.hits();
        server.stop().await;
        let roll = deploy(&opsctl, "app", &["--version", "1.0.0"]).await?;
        ensure!(
            detail(&roll).contains("deployed 1.0.0 (was 2.0.0)"),
            "{roll}"
        );
        ensure!(current(&deploy_dir)? == Path::new("releases/1.0.0"));
        let back = running(&opsctl, "1.0.0", second.pid).await?;
        ensure!(
            get(port, "/version")? == "1.0.0",
            "the app does not run v1 again"
        );
        ensure!(hits == 2, "{hits} downloads, want 2");
        let e = deployed_events(&opsctl).await?;
        ensure!(
            e.iter().any(|p| p["version"] == "1.0.0"
                && p["previous"] == "2.0.0"
                && p["fetched"] == false),
            "{e:?}"
        );

        refusals_leave_it_running(&opsctl, &deploy_dir, &v1, &v3, back.pid).await?;

        // keep = 2: v3 (a local file on the host) removes v2, the oldest; v1 (previous) stays.
        let local = v3.path.to_string_lossy().into_owned();
        let roll = deploy(
            &opsctl,
            "app",
            &[
                "--version",
                "3.0.0",
                "--artifact",
                &local,
                "--sha256",
                &v3.sha256,
            ],
        )
        .await?;
        ensure!(detail(&roll).contains("removed 2.0.0"), "{roll}");
        running(&opsctl, "3.0.0", back.pid).await?;
        let mut kept: Vec<String> = std::fs::read_dir(deploy_dir.join("releases"))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        ensure!(kept == ["1.0.0", "3.0.0"], "kept {kept:?}");
        Ok(())
    })
    .await;
}

/// Each refusal fails the command saying why and changes nothing: v1 runs on, same pid.
async fn refusals_leave_it_running(
    opsctl: &Opsctl,
    deploy_dir: &Path,
    v1: &Artifact,
    v3: &Artifact,
    pid: u32,
) -> Result<()> {
    let local = v3.path.to_string_lossy().into_owned();
    let wrong = "0".repeat(64);
    refused(
        opsctl,
        "app",
        &[
            "--version",
            "3.0.0",
            "--artifact",
            &local,
            "--sha256",
            &wrong,
        ],
        "sha256 mismatch",
    )
    .await?;
    ensure!(
        !deploy_dir.join("releases/3.0.0").exists(),
        "a release from a bad artifact"
    );
    let v1_path = v1.path.to_string_lossy().into_owned();
    refused(
        opsctl,
        "app",
        &[
            "--version",
            "2.0.0",
            "--artifact",
            &v1_path,
            "--sha256",
            &v1.sha256,
        ],
        "already on this host from another artifact",
    )
    .await?;
    refused(
        opsctl,
        "app",
        &["--version", "9.9.9"],
        "not kept on this host and no artifact was given (kept: ",
    )
    .await?;
    refused(opsctl, "app", &["--version", "../../etc"], "refused").await?;
    refused(
        opsctl,
        "locked",
        &["--version", "1.0.0"],
        "refused by service.remote",
    )
    .await?;
    ensure!(current(deploy_dir)? == Path::new("releases/1.0.0"));
    let row = app_row(opsctl).await?.context("app row")?;
    ensure!(
        row.pid == pid && row.version == "1.0.0" && row.state == ServiceRunState::Running,
        "a refused deploy touched the app: {row:?}"
    );
    Ok(())
}

/// When the first command of `action` whose detail contains `detail` completed.
fn completed_at(
    commands: &[opsfleet_proto::api::CommandView],
    action: opsfleet_proto::api::ActionName,
    detail: &str,
) -> Option<i64> {
    use opsfleet_proto::api::CommandState;
    let cmd = commands
        .iter()
        .find(|c| c.action == Some(action) && c.detail.contains(detail))?;
    (cmd.history.iter())
        .find(|h| h.state == CommandState::Completed)
        .map(|h| h.at_unix_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_deploy_holds_only_the_later_ops_of_its_own_service() {
    use opsfleet_proto::api::{ActionName, CommandView};
    Cluster::run("service-deploy-lane", async |c: &mut Cluster| {
        let root = c.dir().to_owned();
        let deploy_dir = root.join("opt-app");
        let port = free_port()?;
        let dist = root.join("dist");
        let v1 = tar_gz(&release(&root, "1.0.0")?, &dist.join("app-1.0.0.tar.gz"))?;
        let v2 = tar_gz(&release(&root, "2.0.0")?, &dist.join("app-2.0.0.tar.gz"))?;
        let toml = modules(&deploy_dir, port).replacen(
            "remote = [\"deploy\"]",
            "remote = [\"deploy\", \"restart\"]",
            1,
        );
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&toml),
        )?;
        let opsctl = c.opsctl.clone();
        wait_until("the app service reported", WAIT, POLL, async || {
            app_row(&opsctl).await
        })
        .await?;
        let p1 = v1.path.to_string_lossy().into_owned();
        deploy(
            &opsctl,
            "app",
            &[
                "--version",
                "1.0.0",
                "--artifact",
                &p1,
                "--sha256",
                &v1.sha256,
            ],
        )
        .await?;
        running(&opsctl, "1.0.0", 0).await?;

        // v2 is done only after 20 ready rounds in a row (about 6s at 300ms a round).
        let p2 = v2.path.to_string_lossy().into_owned();
        let web01 = ["--host", "web-01", "--no-wait"];
        let mut args = vec![
            "service",
            "deploy",
            "app",
            "--version",
            "2.0.0",
            "--artifact",
            &p2,
        ];
        args.extend(["--sha256", &v2.sha256, "--ready-samples", "20"]);
        args.extend(web01);
        opsctl.run(&args).await?.ok()?;
        let mut args = vec!["service", "restart", "app"];
        args.extend(web01);
        opsctl.run(&args).await?.ok()?;
        opsctl
            .run(&["noop", "--host", "web-01", "--wait", "60s"])
            .await?
            .ok()?;
        let (deployed, restarted, noop) = wait_until(
            "the deploy, the restart and the noop completed",
            WAIT,
            POLL,
            async || {
                let r: Vec<CommandView> = opsctl.json(&["commands", "--host", "web-01"]).await?;
                let deployed = completed_at(&r, ActionName::ServiceDeploy, "deployed 2.0.0");
                let restarted = completed_at(&r, ActionName::ServiceRestart, "");
                let noop = completed_at(&r, ActionName::Noop, "");
                Ok(deployed
                    .zip(restarted)
                    .zip(noop)
                    .map(|((d, r), n)| (d, r, n)))
            },
        )
        .await?;
        ensure!(
            noop < deployed,
            "the noop ({noop}) waited for the deploy ({deployed})"
        );
        ensure!(
            restarted >= deployed,
            "the restart ({restarted}) ran beside the deploy ({deployed})"
        );
        ensure!(current(&deploy_dir)? == Path::new("releases/2.0.0"));
        running(&opsctl, "2.0.0", 0).await?;
        Ok(())
    })
    .await;
}
