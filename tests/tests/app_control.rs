//! App control forwarding end to end: a real nats-server, a coordinator and web-01 running
//! testapp as a `process` service `web` (`remote = ["app"]`, an http control endpoint with
//! declared actions). `opsctl app` delivers a declared action and records the app's answer as
//! the command's result; an undeclared action or argument, a service whose `remote` lacks
//! `app`, a viewer and an unknown service are refused, and testapp's own log of control
//! requests proves nothing was sent for them; an action the app answers 400 fails with the
//! app's words. The same over NATS: a service whose control is a `nats_subject` gets a
//! request the test answers.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{ServiceRunState, ServicesReply};
use opsfleet_tests::verbs::{only_command, verb};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

const HOST: &str = "web-01";
/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// testapp as `web` on `port` with a declared http control (`pipeline.drop` is declared here
/// but unknown to the app, which answers it 400); `watched` declares a control endpoint but
/// its `remote` does not allow `app`.
fn modules(port: u16, unused_port: u16) -> String {
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/testapp.py");
    format!(
        r#"
[[modules]]
type = "service"
name = "web"
interval = "200ms"
argv = ["python3", "{app}", "--port", "{port}"]
stop_grace = "2s"
remote = ["app"]
[modules.control]
http = "http://127.0.0.1:{port}/control"
timeout = "20s"
[[modules.control.actions]]
name = "pipeline.pause"
args = ["reason"]
[[modules.control.actions]]
name = "pipeline.drop"
[[modules.control.actions]]
name = "module.disable"
args = ["module"]

[[modules]]
type = "service"
name = "watched"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "2s"
remote = ["restart"]
[modules.control]
http = "http://127.0.0.1:{unused_port}/control"
[[modules.control.actions]]
name = "pipeline.pause"
"#
    )
}

/// `GET <path>` from testapp on `port` (HTTP/1.0, one connection): the body.
fn get(port: u16, path: &str) -> Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    ensure!(head.starts_with("HTTP/1.0 200"), "GET {path}: {head}");
    Ok(body.to_owned())
}

/// The actions testapp received on /control, oldest first.
fn received(port: u16) -> Result<Vec<String>> {
    let log: Vec<Value> = serde_json::from_str(&get(port, "/control/log")?)?;
    Ok(log
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect())
}

/// Once a coordinator is active (it answers commands) and `service` runs on web-01.
async fn ready(c: &Cluster, service: &str) -> Result<()> {
    wait_until("an active coordinator", WAIT, POLL, async || {
        Ok(c.opsctl
            .run(&["leader"])
            .await?
            .status
            .success()
            .then_some(()))
    })
    .await?;
    let what = format!("{service} running in `opsctl services`");
    wait_until(&what, WAIT, POLL, async || {
        let r: ServicesReply = c.opsctl.json(&["services", "--host", HOST]).await?;
        Ok(r.services
            .iter()
            .any(|s| s.service == service && s.state == ServiceRunState::Running)
            .then_some(()))
    })
    .await
}

/// `opsctl app <args> --host web-01`: (success, the command's state, its detail).
async fn app(c: &Cluster, args: &[&str]) -> Result<(bool, String, String)> {
    let mut all = vec!["app"];
    all.extend_from_slice(args);
    let (ok, outcome, stderr) = verb(c, HOST, &all).await?;
    let cmd = only_command(&outcome).with_context(|| format!("{args:?}: {stderr}"))?;
    let state = cmd["state"].as_str().unwrap_or_default().to_owned();
    let detail = cmd["detail"].as_str().unwrap_or_default().to_owned();
    Ok((ok, state, detail))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_app_actions_are_delivered_and_everything_else_refused_unsent() {
    Cluster::run("app-control", async |c: &mut Cluster| {
        let port = opsfleet_tests::secure::free_port()?;
        let unused = opsfleet_tests::secure::free_port()?;
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&modules(port, unused)),
        )?;
        ready(c, "web").await?;
        wait_until(
            "testapp answering under the agent",
            WAIT,
            POLL,
            async || Ok(received(port).ok()),
        )
        .await?;

        // A declared action with a declared argument: the app's answer is the result.
        let (ok, state, detail) =
            app(c, &["web", "pipeline.pause", "--arg", "reason=deploy"]).await?;
        ensure!(ok && state == "completed", "{state}: {detail}");
        ensure!(
            detail.starts_with("app answered 200: ")
                && detail.contains(r#""status": "done""#)
                && detail.contains(r#""reason": "deploy""#),
            "detail {detail:?}"
        );
        ensure!(received(port)? == ["pipeline.pause"], "app log");

        // An undeclared action: rejected naming the declared ones.
        let (ok, state, detail) = app(c, &["web", "pipeline.explode"]).await?;
        ensure!(!ok && state == "rejected", "{state}: {detail}");
        ensure!(
            detail.contains(r#"action "pipeline.explode" is not declared"#)
                && detail.contains(r#""pipeline.pause", "pipeline.drop", "module.disable""#),
            "detail {detail:?}"
        );
        // An argument the action does not declare.
        let (ok, state, detail) = app(c, &["web", "pipeline.pause", "--arg", "force=1"]).await?;
        ensure!(!ok && state == "rejected", "{state}: {detail}");
        ensure!(
            detail.contains(r#"takes no argument "force" (declared: "reason")"#),
            "detail {detail:?}"
        );
        // A service whose `remote` does not allow `app`.
        let (ok, state, detail) = app(c, &["watched", "pipeline.pause"]).await?;
        ensure!(!ok && state == "rejected", "{state}: {detail}");
        ensure!(
            detail.starts_with("refused by service.remote"),
            "detail {detail:?}"
        );
        // A viewer may not send app actions: refused by the coordinator, nothing issued.
        let viewer = c
            .opsctl
            .run(&[
                "--operator",
                "vera",
                "--role",
                "viewer",
                "app",
                "web",
                "pipeline.pause",
                "--host",
                HOST,
            ])
            .await?;
        ensure!(
            !viewer.status.success() && viewer.stderr.contains("needs role operator"),
            "viewer: {} {}",
            viewer.stdout,
            viewer.stderr
        );
        ensure!(
            received(port)? == ["pipeline.pause"],
            "the app was sent a refused action: {:?}",
            received(port)?
        );

        // A service the host does not have: refused before anything is sent; an argument
        // given twice is a usage error (exit 2).
        let unknown = c
            .opsctl
            .run(&["app", "nosuch", "pipeline.pause", "--host", HOST])
            .await?;
        ensure!(
            !unknown.status.success() && unknown.stderr.contains("nosuch"),
            "unknown service: {} {}",
            unknown.stdout,
            unknown.stderr
        );
        let twice = c
            .opsctl
            .run(&[
                "app",
                "web",
                "module.disable",
                "--arg",
                "module=a",
                "--arg",
                "module=b",
                "--host",
                HOST,
            ])
            .await?;
        ensure!(
            twice.status.code() == Some(2) && twice.stderr.contains("--arg module is given twice"),
            "twice: {:?} {}",
            twice.status,
            twice.stderr
        );

        // Declared here but refused by the app: the command fails with the app's words.
        let (ok, state, detail) = app(c, &["web", "pipeline.drop"]).await?;
        ensure!(!ok && state == "failed", "{state}: {detail}");
        ensure!(
            detail.starts_with("app answered 400: ")
                && detail.contains("unknown action 'pipeline.drop'"),
            "detail {detail:?}"
        );
        ensure!(
            received(port)? == ["pipeline.pause", "pipeline.drop"],
            "app log {:?}",
            received(port)?
        );
        Ok(())
    })
    .await;
}

/// `ingest` takes control actions as NATS requests on `app.ingest.control` (the test answers
/// them); it runs `sleep`, the control endpoint being independent of the process.
const NATS_MODULES: &str = r#"
[[modules]]
type = "service"
name = "ingest"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "2s"
remote = ["app"]
[modules.control]
nats_subject = "app.ingest.control"
timeout = "20s"
[[modules.control.actions]]
name = "pipeline.pause"
args = ["reason"]
[[modules.control.actions]]
name = "pipeline.fail"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_control_endpoint_gets_a_request_and_its_reply_is_the_result() {
    Cluster::run("app-control-nats", async |c: &mut Cluster| {
        // The app's side: answers each request, an error header for `pipeline.fail`.
        let the_app = async_nats::connect(c.nats_url()).await?;
        let mut requests = the_app.subscribe("app.ingest.control").await?;
        the_app.flush().await?;
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let responder = the_app.clone();
        let serve = tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(msg) = requests.next().await {
                let body: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
                let Some(reply) = msg.reply else { continue };
                let _ = seen_tx.send(body.clone());
                if body["action"] == "pipeline.fail" {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Service-Error", "400");
                    let _ = responder
                        .publish_with_headers(reply, headers, "cannot fail now".into())
                        .await;
                } else {
                    let answer = format!("{{\"status\": \"done\", \"got\": {body}}}");
                    let _ = responder.publish(reply, answer.into()).await;
                }
            }
        });

        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(300))
                .modules_toml(NATS_MODULES),
        )?;
        ready(c, "ingest").await?;
        let (ok, state, detail) =
            app(c, &["ingest", "pipeline.pause", "--arg", "reason=night"]).await?;
        ensure!(ok && state == "completed", "{state}: {detail}");
        ensure!(
            detail.starts_with("app answered: {\"status\": \"done\"")
                && detail.contains(r#""args":{"reason":"night"}"#),
            "detail {detail:?}"
        );
        let (ok, state, detail) = app(c, &["ingest", "pipeline.fail"]).await?;
        ensure!(!ok && state == "failed", "{state}: {detail}");
        ensure!(
            detail == "app answered error 400: cannot fail now",
            "detail {detail:?}"
        );
        // An undeclared action reaches no one.
        let (ok, state, _) = app(c, &["ingest", "pipeline.drop"]).await?;
        ensure!(!ok && state == "rejected", "{state}");
        let mut seen = Vec::new();
        while let Ok(body) = seen_rx.try_recv() {
            seen.push(body["action"].as_str().unwrap_or_default().to_owned());
        }
        ensure!(
            seen == ["pipeline.pause", "pipeline.fail"],
            "the app got {seen:?}"
        );
        serve.abort();
        Ok(())
    })
    .await;
}
