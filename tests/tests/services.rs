//! Supervised services end to end: a real nats-server, a coordinator and an agent whose config
//! has two `service` modules: `app` exits with status 1 after 3 s (the agent restarts it after
//! a backoff) and `worker` runs on. `opsctl services` shows `app` restarting with a restart
//! count and its last exit; `opsctl hosts` counts it in TROUBLE while it is down; stopping the
//! agent stops `worker`'s process and its stopped state reaches the log. An agent killed with SIGKILL leaves its service running; the
//! restarted agent adopts it (same pid) instead of starting a second copy.

use std::time::Duration;

use anyhow::{ensure, Context};
use opsfleet_proto::api::{HostsReply, ServiceRunState, ServicesReply};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

const MODULES: &str = r#"
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["sh", "-c", "sleep 3; exit 1"]
restart_backoff_min = "1s"
restart_backoff_max = "2s"

[[modules]]
type = "service"
name = "worker"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "2s"
"#;

/// A coordinator and web-01 running `MODULES`; the cluster's opsctl.
fn web_01_with_services(c: &mut Cluster) -> anyhow::Result<opsfleet_tests::Opsctl> {
    c.add_coordinator(CoordinatorSpec::new("blue"))?;
    c.add_agent(
        AgentSpec::new("web-01")
            .heartbeat(Duration::from_millis(300))
            .modules_toml(MODULES),
    )?;
    Ok(c.opsctl.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_show_restarts_and_count_as_host_trouble_while_down() {
    Cluster::run("services", async |c: &mut Cluster| {
        let opsctl = web_01_with_services(c)?;

        // `app` exited, was restarted, and says how its last run ended.
        let restarted: ServicesReply = wait_until(
            "app restarted at least once in `opsctl services`",
            WAIT,
            POLL,
            async || {
                let r: ServicesReply = opsctl.json(&["services", "--host", "web-01"]).await?;
                let app = r.services.iter().find(|s| s.service == "app");
                Ok(app.is_some_and(|a| a.restarts > 0).then_some(r))
            },
        )
        .await?;
        let app = restarted
            .services
            .iter()
            .find(|s| s.service == "app")
            .context("app row")?;
        ensure!(
            app.host == "web-01" && app.manager == "process",
            "app row {app:?}"
        );
        ensure!(app.exit_detail == "exited with status 1", "app row {app:?}");
        let worker = restarted
            .services
            .iter()
            .find(|s| s.service == "worker")
            .context("worker row")?;
        ensure!(
            worker.state == ServiceRunState::Running && worker.pid > 0 && worker.restarts == 0,
            "worker row {worker:?}"
        );
        let worker_pid = worker.pid;

        // The table names the restarts too.
        let table = opsctl.run(&["services"]).await?.ok()?.stdout;
        ensure!(
            table.contains("RESTARTS") && table.lines().any(|l| l.contains(" app ")),
            "opsctl services printed:\n{table}"
        );

        // While `app` is down (failed, waiting for its restart), `opsctl hosts` counts it.
        wait_until(
            "app:failed in the TROUBLE of `opsctl hosts`",
            WAIT,
            POLL,
            async || {
                let r: HostsReply = opsctl.json(&["hosts"]).await?;
                let down = r
                    .hosts
                    .iter()
                    .any(|h| h.host == "web-01" && h.down_services == ["app:failed"]);
                if !down {
                    return Ok(None);
                }
                let table = opsctl.run(&["hosts"]).await?.ok()?.stdout;
                Ok(table.contains("service app:failed").then_some(()))
            },
        )
        .await?;
        let failed: ServicesReply = opsctl.json(&["services", "--state", "running"]).await?;
        ensure!(
            failed
                .services
                .iter()
                .all(|s| s.state == ServiceRunState::Running),
            "--state running gave {:?}",
            failed.services
        );

        // Stopping the agent stops the services it supervises, and says so: the worker's
        // stopping and stopped states are committed before the agent exits and published
        // (here once it is back).
        c.agent("web-01")?.stop().await?;
        wait_until("the worker process gone", WAIT, POLL, async || {
            Ok(gone(worker_pid).then_some(()))
        })
        .await?;
        c.agent("web-01")?.restart()?;
        let pid = worker_pid.to_string();
        wait_until(
            "the worker's stopped state in the log",
            WAIT,
            POLL,
            async || {
                let out = (opsctl.run(&[
                    "--output", "json", "events", "--since", "seq:1", "--host", "web-01", "--kind",
                    "service",
                ]))
                .await?
                .ok()?;
                let states: Vec<String> = (out.stdout.lines())
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .filter(|v| v["payload"]["service"] == "worker")
                    .map(|v| format!("{} {}", v["payload"]["state"], v["payload"]["pid"]))
                    .collect();
                Ok(states
                    .iter()
                    .any(|s| s.starts_with("\"stopping\"") && s.ends_with(&pid))
                    .then_some(())
                    .filter(|()| states.iter().any(|s| s.starts_with("\"stopped\""))))
            },
        )
        .await?;
        Ok(())
    })
    .await;
}

/// No process `pid`, or only its zombie.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The `worker` row once it runs with a pid, with `detail` as its last exit.
async fn worker_running(opsctl: &opsfleet_tests::Opsctl, detail: &str) -> anyhow::Result<u32> {
    wait_until(
        "worker running in `opsctl services`",
        WAIT,
        POLL,
        async || {
            let r: ServicesReply = opsctl.json(&["services", "--host", "web-01"]).await?;
            Ok(r.services
                .iter()
                .find(|s| {
                    s.service == "worker"
                        && s.state == ServiceRunState::Running
                        && s.exit_detail == detail
                })
                .map(|s| s.pid))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_service_is_adopted_not_started_twice() {
    Cluster::run("services-adopt", async |c: &mut Cluster| {
        let opsctl = web_01_with_services(c)?;
        let pid = worker_running(&opsctl, "").await?;

        c.agent("web-01")?.sigkill().await?;
        ensure!(!gone(pid), "the worker died with its agent");
        c.agent("web-01")?.restart()?;
        let adopted = worker_running(&opsctl, "adopted after an agent restart").await?;
        ensure!(
            adopted == pid,
            "adopted pid {adopted}, the running one is {pid}"
        );
        let r: ServicesReply = opsctl.json(&["services", "--host", "web-01"]).await?;
        let worker = r
            .services
            .iter()
            .find(|s| s.service == "worker")
            .context("worker row")?;
        ensure!(worker.restarts == 0, "worker row {worker:?}");

        // The adopted child is stopped with the agent like one it started.
        c.agent("web-01")?.stop().await?;
        wait_until("the adopted worker gone", WAIT, POLL, async || {
            Ok(gone(pid).then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}
