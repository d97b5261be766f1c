//! The `compose` service manager against the real Docker engine: an image built locally
//! `FROM scratch` with the static nats-server, one compose service.
//! - The driven supervisor itself: start, reload, restart and stop answered once the engine
//!   shows the state (container id and image tag as instance and version); a request for a
//!   service the project lacks answered with compose's error.
//! - End to end: an agent watching the service; `opsctl services` shows it running with its
//!   container id and image tag; a `docker stop` by hand is reported; `opsctl service
//!   stop|start|restart` drive the container through the command path (a stop by command says
//!   so), a `reload` its host's file does not allow is refused; stopping the agent leaves the
//!   container running.
//!
//! Without a Docker engine, a compose program or a static nats-server it prints why it skips
//! and passes.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_agent::config::{ComposeSection, ServiceConfig};
use opsfleet_agent::modules::service::driven::DrivenSupervisor;
use opsfleet_agent::modules::service::ServiceOp;
use opsfleet_proto::api::{ServiceRunState, ServicesReply};
use opsfleet_proto::pb;
use opsfleet_tests::service_project::{docker, missing, ScratchProject, SERVICE, TAG};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

fn skip(test: &str) -> bool {
    match missing() {
        Some(why) => {
            eprintln!("SKIP: {test}: {why}");
            println!("SKIP: {test}: {why}");
            true
        }
        None => false,
    }
}

fn config(p: &ScratchProject, service: &str) -> ServiceConfig {
    ServiceConfig {
        interval: Duration::from_millis(200),
        stop_grace: Duration::from_secs(2),
        ..ServiceConfig::compose(ComposeSection {
            project_dir: p.dir.path().to_owned(),
            file: None,
            project: Some(p.project.clone()),
            service: service.to_owned(),
            command: None,
        })
    }
}

fn ask(sup: &DrivenSupervisor, op: ServiceOp) -> Result<Result<String, String>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    sup.request(op, tx);
    rx.blocking_recv().context("the request was dropped")
}

/// The state events so far, waiting for one that `pred` accepts.
fn wait_event(
    rx: &mpsc::Receiver<pb::ServiceState>,
    what: &str,
    pred: impl Fn(&pb::ServiceState) -> bool,
) -> Result<pb::ServiceState> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(s) if pred(&s) => return Ok(s),
            Ok(s) => seen.push(s),
            Err(_) => break,
        }
    }
    anyhow::bail!("no state event {what}; saw {seen:#?}")
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[test]
fn the_driven_supervisor_starts_reloads_restarts_and_stops_a_compose_service() -> Result<()> {
    if skip("compose_service requests") {
        return Ok(());
    }
    let started = Instant::now();
    let p = ScratchProject::new()?;
    let (tx, rx) = mpsc::channel();
    let on_state = Box::new(move |s| {
        let _ = tx.send(s);
    });
    let mut sup = DrivenSupervisor::start("app".to_owned(), &config(&p, SERVICE), on_state)?;
    let first = wait_event(&rx, "before start", |_| true)?;
    ensure!(
        first.state() == pb::ServiceRunState::Stopped && first.exit_detail == "no container",
        "before start: {first:?}"
    );
    ensure!(
        first.manager == "compose" && first.service == "app",
        "{first:?}"
    );

    let answer = ask(&sup, ServiceOp::Start)?.map_err(anyhow::Error::msg)?;
    let ids = p.containers()?;
    ensure!(ids.len() == 1, "one container after start: {ids:?}");
    let id = short(&ids[0]);
    ensure!(
        answer.starts_with(&format!("running ({id}, pid "))
            && answer.ends_with(&format!("version {TAG})")),
        "start answered {answer:?}"
    );
    let running = wait_event(&rx, "running", |s| {
        s.state() == pb::ServiceRunState::Running
    })?;
    ensure!(
        running.instance == id && running.version == TAG && running.pid > 0,
        "running: {running:?}"
    );

    let reloaded = ask(&sup, ServiceOp::Reload)?.map_err(anyhow::Error::msg)?;
    ensure!(
        reloaded.starts_with("reloaded; running"),
        "reload answered {reloaded:?}"
    );

    let started_at = p.inspect(&ids[0], "{{.State.StartedAt}}")?;
    let restarted = ask(&sup, ServiceOp::Restart)?.map_err(anyhow::Error::msg)?;
    ensure!(
        restarted.starts_with(&format!("running ({id}")),
        "restart answered {restarted:?}"
    );
    let again = p.inspect(&ids[0], "{{.State.StartedAt}}")?;
    ensure!(
        again != started_at,
        "the container did not restart ({started_at})"
    );
    wait_event(&rx, "with the restarted pid", |s| {
        s.state() == pb::ServiceRunState::Running && s.pid != running.pid
    })?;

    let stopped = ask(&sup, ServiceOp::Stop)?.map_err(anyhow::Error::msg)?;
    ensure!(
        stopped.starts_with(&format!("stopped ({id}")),
        "stop answered {stopped:?}"
    );
    ensure!(
        p.inspect(&ids[0], "{{.State.Status}}")? == "exited",
        "the container still runs after stop"
    );
    wait_event(&rx, "stopped", |s| {
        s.state() == pb::ServiceRunState::Stopped
    })?;

    // Stopping the supervisor leaves the service as it is: started again, it stays up.
    ask(&sup, ServiceOp::Start)?.map_err(anyhow::Error::msg)?;
    sup.stop();
    ensure!(
        p.inspect(&ids[0], "{{.State.Status}}")? == "running",
        "stopping the supervisor stopped the container"
    );
    eprintln!("compose_service requests: {:?}", started.elapsed());
    Ok(())
}

#[test]
fn a_request_for_a_service_the_project_lacks_fails_with_composes_error() -> Result<()> {
    if skip("compose_service unknown service") {
        return Ok(());
    }
    let p = ScratchProject::new()?;
    let sup = DrivenSupervisor::start("ghost".to_owned(), &config(&p, "ghost"), Box::new(|_| {}))?;
    let err = ask(&sup, ServiceOp::Start)?
        .err()
        .context("starting a service the project lacks succeeded")?;
    ensure!(
        err.starts_with("start failed:") && err.contains("ghost"),
        "start answered {err:?}"
    );
    ensure!(p.containers()?.is_empty(), "a container was created");
    Ok(())
}

/// The agent's config: the project's service, watched every 300 ms.
fn modules_toml(p: &ScratchProject) -> String {
    format!(
        r#"
[[modules]]
type = "service"
name = "shop-api"
interval = "300ms"
manager = "compose"
stop_grace = "2s"
remote = ["start", "stop", "restart"]
[modules.compose]
project_dir = "{dir}"
project = "{project}"
service = "{SERVICE}"
"#,
        dir = p.dir.path().display(),
        project = p.project
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reports_a_compose_service_and_its_container_stopped_by_hand() {
    if skip("compose_service agent") {
        return;
    }
    let p = ScratchProject::new().expect("the test project");
    p.compose(&["up", "-d", "--no-deps", SERVICE])
        .expect("compose up");
    let ids = p.containers().expect("containers");
    assert_eq!(ids.len(), 1, "one container: {ids:?}");
    let (full, id) = (ids[0].clone(), short(&ids[0]));
    let toml = modules_toml(&p);
    Cluster::run("compose-service", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&toml),
        )?;
        let opsctl = c.opsctl.clone();
        let row = |state: ServiceRunState| {
            let opsctl = opsctl.clone();
            async move {
                let r: ServicesReply = opsctl.json(&["services", "--host", "web-01"]).await?;
                Ok::<_, anyhow::Error>(
                    r.services
                        .into_iter()
                        .find(|s| s.service == "shop-api" && s.state == state),
                )
            }
        };
        let running = wait_until(
            "shop-api running in `opsctl services`",
            WAIT,
            POLL,
            async || row(ServiceRunState::Running).await,
        )
        .await?;
        ensure!(
            running.manager == "compose" && running.instance == id && running.version == TAG,
            "running row {running:?} (container {id})"
        );
        let table = opsctl.run(&["services"]).await?.ok()?.stdout;
        ensure!(
            table
                .lines()
                .any(|l| l.contains("shop-api") && l.contains(&id) && l.contains(TAG)),
            "opsctl services printed:\n{table}"
        );

        docker(&["stop", "-t", "1", &full])?;
        let stopped = wait_until(
            "shop-api stopped in `opsctl services`",
            WAIT,
            POLL,
            async || row(ServiceRunState::Stopped).await,
        )
        .await?;
        ensure!(
            stopped.instance == id && stopped.exit_detail.starts_with("exited with status"),
            "stopped row {stopped:?}"
        );

        // Started again by hand: running again; the agent's stop leaves it running.
        docker(&["start", &full])?;
        wait_until("shop-api running again", WAIT, POLL, async || {
            row(ServiceRunState::Running).await
        })
        .await?;

        // The same service through the command path: opsctl service stop / start / restart,
        // answered once the container is in that state; reload is not in its `remote`.
        let act = |verb: &'static str| {
            let opsctl = opsctl.clone();
            async move {
                opsctl
                    .run(&["service", verb, "shop-api", "--host", "web-01"])
                    .await
            }
        };
        act("stop").await?.ok()?;
        let status = p.inspect(&full, "{{.State.Status}}")?;
        ensure!(
            status == "exited",
            "after service stop the container is {status}"
        );
        let stopped = wait_until("shop-api stopped by command", WAIT, POLL, async || {
            row(ServiceRunState::Stopped).await
        })
        .await?;
        ensure!(
            stopped.exit_detail == "stopped by command",
            "stopped row {stopped:?}"
        );
        act("start").await?.ok()?;
        ensure!(
            p.inspect(&full, "{{.State.Status}}")? == "running",
            "started"
        );
        let before = p.inspect(&full, "{{.State.StartedAt}}")?;
        act("restart").await?.ok()?;
        let after = p.inspect(&full, "{{.State.StartedAt}}")?;
        ensure!(after != before, "restarted: StartedAt {before} -> {after}");
        let refused = act("reload").await?;
        ensure!(
            !refused.status.success()
                && format!("{}{}", refused.stdout, refused.stderr).contains("service.remote"),
            "reload is not allowed by the host's file:\n{}\n{}",
            refused.stdout,
            refused.stderr
        );
        c.agent("web-01")?.stop().await?;
        let status = p.inspect(&full, "{{.State.Status}}")?;
        ensure!(
            status == "running",
            "after the agent stopped, the container is {status}"
        );
        Ok(())
    })
    .await;
}
