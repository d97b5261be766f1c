//! The service alert rules end to end: a real nats-server, a coordinator with the default
//! `[alerts]` and web-01 supervising `app`, which exits with status 1 a second after each
//! start (short restart backoff): its restarts raise `service_restart_loop` for web-01/app
//! (3 restarts within 1 h by default), visible in `opsctl alerts` with the restart count and
//! the last exit; `worker`, running steadily, raises nothing.

use std::time::Duration;

use anyhow::ensure;
use opsfleet_proto::api::{AlertState, AlertsReply};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(300);

const MODULES: &str = r#"
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["sh", "-c", "sleep 1; exit 1"]
restart_backoff_min = "300ms"
restart_backoff_max = "600ms"

[[modules]]
type = "service"
name = "worker"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "2s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_raises_the_restart_loop_alert() {
    Cluster::run("service-alerts", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(MODULES),
        )?;
        let opsctl = c.opsctl.clone();
        let alert = wait_until(
            "service_restart_loop firing for web-01/app in `opsctl alerts`",
            WAIT,
            POLL,
            async || {
                let r: AlertsReply = opsctl.json(&["alerts"]).await?;
                Ok(r.alerts.into_iter().find(|a| {
                    a.rule == "service_restart_loop"
                        && a.host == "web-01"
                        && a.subject == "app"
                        && a.state == AlertState::Firing
                }))
            },
        )
        .await?;
        ensure!(
            alert.key == "service_restart_loop/web-01/app"
                && alert.detail.contains("service app on web-01 restarted")
                && alert.detail.contains("within 1h")
                && alert.detail.contains("exited with status 1"),
            "alert {alert:?}"
        );
        let r: AlertsReply = opsctl.json(&["alerts"]).await?;
        ensure!(
            !r.alerts.iter().any(|a| a.subject == "worker"),
            "the steady worker raised an alert: {:?}",
            r.alerts
        );
        let table = opsctl.run(&["alerts"]).await?.ok()?.stdout;
        ensure!(
            table.contains("service_restart_loop") && table.contains("web-01"),
            "opsctl alerts printed:\n{table}"
        );
        Ok(())
    })
    .await;
}
