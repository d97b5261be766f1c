//! Service lifecycle commands end to end, with real processes: testapp (tests/fixtures) run by
//! the `process` manager on each agent, its own HTTP health probe gating every start, restart
//! and reload. A rolling `opsctl service restart --max-parallel 1` across three agents changes
//! every pid and sends each host its command only after the previous host answered ready; a
//! host whose app does not come back ready stops the roll there, the next host untouched.
//! `service stop` keeps the service down across an agent restart until `service start`;
//! `service reload` sends SIGHUP; refusals: a service whose `remote` lacks the action, a
//! module that is not a service, an unknown service. (A viewer's refusal is in
//! permissions/verbs.rs.) A restart waiting for its readiness gate does not hold the host's
//! later commands.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{ProbeStatus, ServiceRunState, ServiceView, ServicesReply};
use opsfleet_tests::secure::free_port;
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

fn testapp() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/testapp.py")
}

/// One host's app: its port and the directory holding its `ready_after` and `VERSION` files.
struct App {
    port: u16,
    dir: PathBuf,
}

impl App {
    fn new(root: &Path, host: &str, version: &str) -> Result<App> {
        let dir = root.join(format!("app-{host}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ready_after"), "2")?;
        std::fs::write(dir.join("VERSION"), format!("{version}\n"))?;
        std::fs::write(dir.join("app.json"), r#"{"greeting": "hi"}"#)?;
        Ok(App {
            port: free_port()?,
            dir,
        })
    }

    /// The agent's modules: `app` (testapp, every action allowed remotely, health gated) and
    /// `locked` (only `start` allowed remotely).
    fn modules(&self) -> String {
        let d = self.dir.display();
        format!(
            r#"
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["sh", "-c", "exec python3 {app} --port {port} --config {d}/app.json --ready-after $(cat {d}/ready_after)"]
stop_grace = "5s"
restart_backoff_min = "1s"
restart_backoff_max = "2s"
remote = ["start", "stop", "restart", "reload"]
health_interval = "300ms"
ready_timeout = "10s"
version = {{ file = "{d}/VERSION" }}

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
remote = ["start"]
"#,
            app = testapp().display(),
            port = self.port,
        )
    }

    /// GET `path` from the app (loopback), the body.
    fn get(&self, path: &str) -> Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default())
    }
}

async fn app_row(opsctl: &Opsctl, host: &str) -> Result<Option<ServiceView>> {
    let r: ServicesReply = opsctl.json(&["services", "--host", host]).await?;
    Ok(r.services.into_iter().find(|s| s.service == "app"))
}

/// The `app` row of `host` once it runs ready under a pid `fits` accepts.
async fn ready_app(opsctl: &Opsctl, host: &str, fits: impl Fn(u32) -> bool) -> Result<ServiceView> {
    wait_until(
        &format!("app on {host} running and ready"),
        WAIT,
        POLL,
        async || {
            Ok(app_row(opsctl, host).await?.filter(|s| {
                s.state == ServiceRunState::Running
                    && s.health == Some(ProbeStatus::Ready)
                    && fits(s.pid)
            }))
        },
    )
    .await
}

/// The time of the first and the last step of the command for `host` in a roll's JSON.
fn command_times(out: &Value, host: &str) -> Result<(i64, i64, String)> {
    let cmd = out["commands"]
        .as_array()
        .context("commands")?
        .iter()
        .find(|c| c["target"] == host)
        .with_context(|| format!("no command for {host} in {out}"))?;
    let steps = cmd["history"].as_array().context("history")?;
    let at = |s: &Value| s["at_unix_ms"].as_i64().unwrap_or_default();
    let first = steps.iter().map(at).min().context("a step")?;
    let last = steps.iter().map(at).max().context("a step")?;
    Ok((
        first,
        last,
        cmd["state"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

/// A service whose `remote` lacks the action, a module that is not a service and an unknown
/// service are refused on web-01, each saying why (exit 1).
async fn refusals_say_why(opsctl: &Opsctl) -> Result<()> {
    for (svc, why) in [
        ("locked", "refused by service.remote"),
        ("heartbeat", "not a service"),
        ("nope", "nope"),
    ] {
        let args = [
            "service", "restart", svc, "--host", "web-01", "--wait", "60s",
        ];
        let out = opsctl.run(&args).await?;
        let text = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            out.status.code() == Some(1) && text.contains(why),
            "restart {svc}: exit {}, want {why:?} in:\n{text}",
            out.status
        );
    }
    Ok(())
}

/// Waits for a heartbeat of web-01 that carries `app` running, ready, at `version`.
async fn heartbeat_carries_app(opsctl: &Opsctl, version: &str) -> Result<()> {
    wait_until(
        "a heartbeat carrying app running and ready",
        WAIT,
        POLL,
        async || {
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
                .any(|s| {
                    s["service"] == "app"
                        && s["state"] == "running"
                        && s["health"] == "ready"
                        && s["version"] == version
                });
            Ok(carried.then_some(()))
        },
    )
    .await
}

/// Each host's command of the roll completed, and was issued only after the previous host's
/// command was done (the agent answers a restart once the service is ready).
fn issued_after_the_previous_was_done(roll: &Value, hosts: &[&str]) -> Result<()> {
    let mut previous_done = 0;
    for host in hosts {
        let (first, last, state) = command_times(roll, host)?;
        ensure!(state == "completed", "{host}: {state}: {roll}");
        ensure!(
            first >= previous_done,
            "{host}'s restart was issued at {first}, before the previous host was done at \
             {previous_done}: {roll}"
        );
        previous_done = last;
    }
    Ok(())
}

/// Waits until `opsctl hosts` counts `host`'s app as unhealthy (`app:failed`/`app:degraded`).
async fn unhealthy_is_trouble(opsctl: &Opsctl, host: &str) -> Result<()> {
    wait_until(
        &format!("{host} unhealthy in hosts' TROUBLE"),
        WAIT,
        POLL,
        async || {
            let r: opsfleet_proto::api::HostsReply = opsctl.json(&["hosts"]).await?;
            let trouble = r.hosts.iter().any(|h| {
                h.host == host
                    && h.down_services
                        .iter()
                        .any(|d| d == "app:failed" || d == "app:degraded")
            });
            Ok(trouble.then_some(()))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_waits_for_each_host_and_stops_at_one_that_is_not_ready() {
    Cluster::run("service-roll", async |c: &mut Cluster| {
        let hosts = ["web-01", "web-02", "web-03"];
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let mut apps = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let app = App::new(c.dir(), host, &format!("1.0.{i}"))?;
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(300))
                    .modules_toml(&app.modules()),
            )?;
            apps.push(app);
        }
        let opsctl = c.opsctl.clone();
        let mut before = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            let row = ready_app(&opsctl, host, |_| true).await?;
            ensure!(row.version == format!("1.0.{i}"), "{row:?}");
            before.push(row.pid);
        }
        let table = opsctl.run(&["services"]).await?.ok()?.stdout;
        ensure!(
            table.contains("HEALTH") && table.contains("VERSION") && table.contains("1.0.2"),
            "opsctl services printed:\n{table}"
        );

        // Every host restarted, one after the other, each only once the previous was ready.
        let args = [
            "service",
            "restart",
            "app",
            "--all",
            "--max-parallel",
            "1",
            "--wait",
            "90s",
            "-o",
            "json",
        ];
        let out = opsctl.run(&args).await?.ok()?;
        let roll: Value = serde_json::from_str(&out.stdout)?;
        ensure!(roll["all_completed"] == true, "{roll}");
        issued_after_the_previous_was_done(&roll, &hosts)?;
        let mut after = Vec::new();
        for (host, old) in hosts.iter().zip(&before) {
            let row = ready_app(&opsctl, host, |pid| pid != *old).await?;
            ensure!(row.restarts == 1, "{row:?}");
            after.push(row.pid);
        }

        // web-02's app will not come back ready: the roll stops there; web-03 is untouched.
        std::fs::write(apps[1].dir.join("ready_after"), "9999")?;
        let args = [
            "service",
            "restart",
            "app",
            "--all",
            "--max-parallel",
            "1",
            "--wait",
            "90s",
        ];
        let out = opsctl.run(&args).await?;
        ensure!(
            out.status.code() == Some(1),
            "exit {} (want 1)\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        let text = format!("{}{}", out.stdout, out.stderr);
        ensure!(
            text.contains("web-03: not attempted: roll stopped at web-02 failed")
                && text.contains("not ready after 10s")
                && text.contains("status 503"),
            "the output names neither the host nor the reason:\n{text}"
        );
        let web3 = app_row(&opsctl, "web-03").await?.context("web-03 app")?;
        ensure!(
            web3.pid == after[2] && web3.restarts == 1 && pid_alive(after[2]),
            "web-03 was touched: {web3:?}"
        );
        ready_app(&opsctl, "web-01", |pid| pid != after[0]).await?;
        // web-02's app runs but its probe fails: trouble for `opsctl hosts`.
        unhealthy_is_trouble(&opsctl, "web-02").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_survives_an_agent_restart_reload_signals_and_refusals_say_why() {
    Cluster::run("service-ops", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let app = App::new(c.dir(), "web-01", "2.0.0")?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&app.modules()),
        )?;
        let opsctl = c.opsctl.clone();
        let first = ready_app(&opsctl, "web-01", |_| true).await?;
        let web01 = ["--host", "web-01", "--wait", "60s"];
        let run = |verb: &'static str, svc: &'static str| {
            let mut a = vec!["service", verb, svc];
            a.extend(web01);
            a
        };

        // reload: SIGHUP to the app, which re-reads its config.
        let out = opsctl.run(&run("reload", "app")).await?.ok()?;
        ensure!(out.stdout.contains("SIGHUP"), "{}", out.stdout);
        let config: Value = serde_json::from_str(&app.get("/config")?)?;
        ensure!(config["reloads"] == 1, "/config after reload: {config}");
        let row = app_row(&opsctl, "web-01").await?.context("app row")?;
        ensure!(row.pid == first.pid, "a reload restarted it: {row:?}");

        refusals_say_why(&opsctl).await?;

        // stop: down, and still down after the agent restarts, until `service start`.
        let out = opsctl.run(&run("stop", "app")).await?.ok()?;
        ensure!(out.stdout.contains("stopped"), "{}", out.stdout);
        wait_until("the app process gone", WAIT, POLL, async || {
            Ok((!pid_alive(first.pid)).then_some(()))
        })
        .await?;
        let stopped = app_row(&opsctl, "web-01").await?.context("app row")?;
        ensure!(
            stopped.state == ServiceRunState::Stopped
                && stopped.exit_detail == "stopped by command",
            "{stopped:?}"
        );
        c.agent("web-01")?.stop().await?;
        c.agent("web-01")?.restart()?;
        // The restarted agent reports it stopped again (a newer state), without starting it.
        let again = wait_until(
            "app reported stopped by the new agent",
            WAIT,
            POLL,
            async || {
                Ok(app_row(&opsctl, "web-01").await?.filter(|s| {
                    s.since_unix_ms > stopped.since_unix_ms && s.state == ServiceRunState::Stopped
                }))
            },
        )
        .await?;
        ensure!(again.exit_detail == "stopped by command", "{again:?}");
        ensure!(
            TcpStream::connect(("127.0.0.1", app.port)).is_err(),
            "something listens on the app's port while it is stopped"
        );

        let out = opsctl.run(&run("start", "app")).await?.ok()?;
        ensure!(out.stdout.contains("ready"), "{}", out.stdout);
        let started = ready_app(&opsctl, "web-01", |pid| pid != first.pid).await?;
        ensure!(started.version == "2.0.0", "{started:?}");

        heartbeat_carries_app(&opsctl, "2.0.0").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_checks_restart_the_service_until_the_hourly_cap() {
    Cluster::run("service-remediation", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let app = App::new(c.dir(), "web-01", "3.0.0")?;
        // Never ready: every probe round fails.
        std::fs::write(app.dir.join("ready_after"), "9999")?;
        let modules = app.modules().replacen(
            "ready_timeout = \"10s\"",
            "ready_timeout = \"10s\"\nremediation = { restart_after_failed_checks = 3, \
             backoff = \"2s\", max_per_hour = 2 }",
            1,
        );
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&modules),
        )?;
        let opsctl = c.opsctl.clone();
        let events = wait_until(
            "two automatic restarts, then the cap",
            WAIT,
            POLL,
            async || {
                let out = opsctl
                    .run(&[
                        "-o",
                        "json",
                        "events",
                        "--since",
                        "seq:1",
                        "--host",
                        "web-01",
                        "--kind",
                        "service_remediation",
                    ])
                    .await?
                    .ok()?;
                let summaries: Vec<String> = out
                    .stdout
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter_map(|v| v["summary"].as_str().map(str::to_owned))
                    .collect();
                Ok((summaries.iter().any(|s| s.contains("capped"))).then_some(summaries))
            },
        )
        .await?;
        let done: Vec<_> = events.iter().filter(|s| !s.contains("capped")).collect();
        ensure!(done.len() == 2, "two restarts before the cap: {events:?}");
        ensure!(
            events[0].contains("3 failed health checks in a row: probe web: status 503"),
            "{events:?}"
        );
        let row = wait_until("the app restarted twice", WAIT, POLL, async || {
            Ok(app_row(&opsctl, "web-01")
                .await?
                .filter(|s| s.restarts == 2))
        })
        .await?;
        ensure!(row.state == ServiceRunState::Running, "{row:?}");
        Ok(())
    })
    .await;
}

/// When the newest command of `action` reached `state`, by its history.
fn reached(
    commands: &[opsfleet_proto::api::CommandView],
    action: opsfleet_proto::api::ActionName,
    state: opsfleet_proto::api::CommandState,
) -> Option<i64> {
    let cmd = commands.iter().find(|c| c.action == Some(action))?;
    cmd.history
        .iter()
        .find(|h| h.state == state)
        .map(|h| h.at_unix_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_waiting_for_ready_does_not_hold_the_hosts_other_commands() {
    use opsfleet_proto::api::{ActionName, CommandState, CommandView};
    Cluster::run("service-detached", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let app = App::new(c.dir(), "web-01", "1.0.0")?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&app.modules()),
        )?;
        let opsctl = c.opsctl.clone();
        ready_app(&opsctl, "web-01", |_| true).await?;
        // The restarted app never gets ready: the restart waits its whole ready_timeout (10s).
        std::fs::write(app.dir.join("ready_after"), "9999")?;
        (opsctl.run(&["service", "restart", "app", "--host", "web-01", "--no-wait"]))
            .await?
            .ok()?;
        // Issued after the restart, answered while the restart still waits.
        (opsctl.run(&["noop", "--host", "web-01", "--wait", "60s"]))
            .await?
            .ok()?;
        let (noop_done, restart_failed) = wait_until(
            "the restart failed (not ready) and the noop completed",
            WAIT,
            POLL,
            async || {
                let r: Vec<CommandView> = opsctl.json(&["commands", "--host", "web-01"]).await?;
                Ok(
                    reached(&r, ActionName::Noop, CommandState::Completed).zip(reached(
                        &r,
                        ActionName::ServiceRestart,
                        CommandState::Failed,
                    )),
                )
            },
        )
        .await?;
        ensure!(
            noop_done < restart_failed,
            "the noop ({noop_done}) waited for the restart ({restart_failed})"
        );
        Ok(())
    })
    .await;
}
