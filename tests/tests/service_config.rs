//! App config of a supervised service end to end: a real nats-server, a coordinator and an
//! agent running `tests/fixtures/testapp.py` as a `process` service with a declared config file
//! (checked by the app's own `--check-config`), and a second service that declares a config
//! but does not allow `config` remotely.
//!
//! - A bad config is refused by the app's check: the command fails with the check's output,
//!   the file is byte-identical, the app runs on with the same pid and the old config.
//! - Negative: a service without `config` in `remote` refuses (`refused by service.remote`);
//!   the operator role is refused (admin needed); a content whose fingerprint does not match
//!   is refused; a rollback to an unknown fingerprint fails clearly.
//! - A hand edit is a `drift` snapshot in `opsctl service config history` and raises the
//!   `config_drift` alert. A restarted agent reports the file again only when it changed while
//!   the agent was down (`start`, naming the fingerprint it had persisted).
//! - A good config is applied (the app reloads it) and rolled back by fingerprint; the history
//!   lists start → applied → rolled_back. A reload that fails puts the previous content back
//!   (start → applied → restored). The reload is the service module's (`ServiceOp::Reload`,
//!   `reload_argv`), built on another branch (s15-ops): until it lands these two fail.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{AlertsReply, ServiceConfigsReply, ServicesReply};
use opsfleet_tests::secure::{free_port, repo_root};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

/// Generous: the machine is shared and loaded.
const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

const GOOD_V1: &str = "{\"greeting\": \"hello v1\"}\n";

/// The app's files and port.
struct App {
    port: u16,
    config: PathBuf,
    locked_config: PathBuf,
}

fn testapp() -> String {
    repo_root()
        .join("tests/fixtures/testapp.py")
        .to_string_lossy()
        .into_owned()
}

/// `app`: testapp with its config, `remote = ["config", "reload"]`; `locked`: a sleeper
/// declaring a config file but allowing only `reload`.
fn modules(app: &App) -> String {
    let script = testapp();
    format!(
        r#"
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["python3", "{script}", "--port", "{port}", "--config", "{config}"]
stop_grace = "3s"
remote = ["config", "reload"]

[modules.config]
files = ["{config}"]
check = ["python3", "{script}", "--check-config", "{{file}}"]
apply = "reload"
check_timeout = "20s"
keep = 5

[[modules]]
type = "service"
name = "locked"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "1s"
remote = ["reload"]

[modules.config]
files = ["{locked}"]
"#,
        port = app.port,
        config = app.config.display(),
        locked = app.locked_config.display(),
    )
}

async fn start(c: &mut Cluster) -> Result<(App, Opsctl)> {
    let etc = c.dir().join("etc-app");
    std::fs::create_dir_all(&etc)?;
    let app = App {
        port: free_port()?,
        config: etc.join("app.json"),
        locked_config: etc.join("locked.json"),
    };
    std::fs::write(&app.config, GOOD_V1)?;
    std::fs::write(&app.locked_config, "{}\n")?;
    c.add_coordinator(
        CoordinatorSpec::new("blue")
            .config_toml("[alerts]\ninterval = \"500ms\"\nmin_silence = \"1h\"\n"),
    )?;
    c.add_agent(
        AgentSpec::new("web-01")
            .heartbeat(Duration::from_millis(300))
            .modules_toml(&modules(&app)),
    )?;
    Ok((app, c.opsctl.clone()))
}

/// `GET <path>` of the app on loopback, its body as JSON.
fn get_json(port: u16, path: &str) -> Result<Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).with_context(|| format!("GET {path}: {text}"))
}

/// The greeting the running app serves, once it answers.
async fn serving(port: u16, greeting: &str) -> Result<Value> {
    wait_until(
        &format!("the app serving greeting {greeting:?}"),
        WAIT,
        POLL,
        async || {
            let Ok(cfg) = get_json(port, "/config") else {
                return Ok(None);
            };
            let now = cfg.pointer("/greeting").and_then(Value::as_str);
            Ok((now == Some(greeting)).then_some(cfg))
        },
    )
    .await
}

/// The pid of the running `app` service.
async fn app_pid(opsctl: &Opsctl) -> Result<u32> {
    wait_until("app running with a pid", WAIT, POLL, async || {
        let r: ServicesReply = opsctl.json(&["services", "--host", "web-01"]).await?;
        Ok(r.services
            .iter()
            .find(|s| s.service == "app" && s.pid > 0)
            .map(|s| s.pid))
    })
    .await
}

/// The causes of `app`'s history of `file`, once `done` holds for them.
async fn history_until(
    opsctl: &Opsctl,
    file: &Path,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Result<ServiceConfigsReply> {
    let path = file.to_string_lossy().into_owned();
    wait_until(what, WAIT, POLL, async || {
        let r: ServiceConfigsReply = opsctl
            .json(&[
                "service", "config", "history", "app", "--host", "web-01", "--path", &path,
            ])
            .await?;
        let causes: Vec<String> = r.snapshots.iter().map(|s| s.cause.clone()).collect();
        Ok(done(&causes).then_some(r))
    })
    .await
}

/// `opsctl -o json <args>` for a command verb: exit status and the outcome JSON.
async fn command(opsctl: &Opsctl, args: &[&str]) -> Result<(bool, Value, String)> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = opsctl.run(&all).await?;
    let json = serde_json::from_str(out.stdout.trim()).unwrap_or(Value::Null);
    Ok((out.status.success(), json, out.stderr))
}

/// The state and detail of the one command of an outcome.
fn only_command(outcome: &Value) -> (String, String) {
    let c = &outcome["commands"][0];
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (s("state"), s("detail"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_by_the_apps_check_and_nothing_changes() {
    Cluster::run("service-config-bad", async |c: &mut Cluster| {
        let (app, opsctl) = start(c).await?;
        serving(app.port, "hello v1").await?;
        let pid = app_pid(&opsctl).await?;
        let first = history_until(&opsctl, &app.config, "the start snapshot", |c| {
            c == ["start"]
        })
        .await?;
        ensure!(
            first.snapshots[0].fingerprint == sha256(GOOD_V1.as_bytes()),
            "start snapshot {:?}",
            first.snapshots[0]
        );

        let bad = c.dir().join("bad.json");
        std::fs::write(&bad, "{\"valid\": false, \"greeting\": \"broken\"}\n")?;
        let bad_arg = bad.to_string_lossy().into_owned();
        let (ok, outcome, stderr) = command(
            &opsctl,
            &[
                "service", "config", "apply", "app", "--file", &bad_arg, "--host", "web-01",
            ],
        )
        .await?;
        let (state, detail) = only_command(&outcome);
        ensure!(!ok, "a refused config exits non-zero: {outcome}");
        ensure!(state == "failed", "state {state}: {outcome} {stderr}");
        ensure!(
            detail.contains("check refused") && detail.contains("\"valid\" is false"),
            "the failure carries the check's output: {detail}"
        );
        ensure!(
            std::fs::read(&app.config)? == GOOD_V1.as_bytes(),
            "the old file is byte-identical"
        );
        let leftovers: Vec<_> = std::fs::read_dir(app.config.parent().context("dir")?)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("opsfleet-new"))
            .collect();
        ensure!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        let cfg = serving(app.port, "hello v1").await?;
        ensure!(cfg["reloads"] == 0, "the app was not reloaded: {cfg}");
        ensure!(app_pid(&opsctl).await? == pid, "the app kept its pid");
        let after: ServiceConfigsReply = opsctl
            .json(&["service", "config", "history", "app", "--host", "web-01"])
            .await?;
        ensure!(
            after.snapshots.len() == 1,
            "a refused content is no snapshot: {:?}",
            after.snapshots
        );

        // NEGATIVE: `locked` declares a config but its host file does not allow it remotely.
        let good = c.dir().join("good.json");
        std::fs::write(&good, "{\"greeting\": \"v2\"}\n")?;
        let good_arg = good.to_string_lossy().into_owned();
        let (ok, outcome, _) = command(
            &opsctl,
            &[
                "service", "config", "apply", "locked", "--file", &good_arg, "--host", "web-01",
            ],
        )
        .await?;
        let (state, detail) = only_command(&outcome);
        ensure!(
            !ok && state == "rejected" && detail.contains("refused by service.remote"),
            "locked: {state} {detail}"
        );
        ensure!(
            std::fs::read(&app.locked_config)? == b"{}\n",
            "locked file unchanged"
        );

        // NEGATIVE: the operator role may not change a service's config (admin needed).
        let out = opsctl
            .run(&[
                "--operator",
                "alice",
                "--role",
                "operator",
                "service",
                "config",
                "apply",
                "app",
                "--file",
                &good_arg,
                "--host",
                "web-01",
            ])
            .await?;
        ensure!(
            !out.status.success() && out.stderr.contains("needs role admin"),
            "operator role: {} {}",
            out.stdout,
            out.stderr
        );

        // NEGATIVE: a content that does not match its fingerprint is refused.
        let reply = raw_command(
            c,
            serde_json::json!({
                "action": "service_config_apply", "module": "app", "content": "{}",
                "fingerprint": sha256(b"something else"),
                "hosts": ["web-01"], "deadline_ms": 60000, "issued_by": "test",
            }),
        )
        .await?;
        ensure!(
            reply.contains("error") && reply.contains("is not that of its config"),
            "a mismatching fingerprint: {reply}"
        );

        // NEGATIVE: a rollback to a content the host never kept fails clearly.
        let (ok, outcome, _) = command(
            &opsctl,
            &[
                "service",
                "config",
                "rollback",
                "app",
                "--to",
                "0123456789abcdef",
                "--host",
                "web-01",
            ],
        )
        .await?;
        let (state, detail) = only_command(&outcome);
        ensure!(
            !ok && state == "failed" && detail.contains("no kept content"),
            "unknown fingerprint: {state} {detail}"
        );
        ensure!(
            std::fs::read(&app.config)? == GOOD_V1.as_bytes(),
            "still byte-identical"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_is_drift_in_the_history_and_an_alert() {
    Cluster::run("service-config-drift", async |c: &mut Cluster| {
        let (app, opsctl) = start(c).await?;
        history_until(&opsctl, &app.config, "the start snapshot", |c| {
            c == ["start"]
        })
        .await?;
        let edited = "{\"greeting\": \"edited by hand\"}\n";
        std::fs::write(&app.config, edited)?;
        let r = history_until(&opsctl, &app.config, "a drift snapshot", |c| {
            c == ["start", "drift"]
        })
        .await?;
        let drift = &r.snapshots[1];
        ensure!(
            drift.fingerprint == sha256(edited.as_bytes())
                && drift.previous_fingerprint == r.snapshots[0].fingerprint
                && drift.command_id.is_empty(),
            "drift snapshot {drift:?}"
        );
        let table = opsctl
            .run(&["service", "config", "history", "app"])
            .await?
            .ok()?
            .stdout;
        ensure!(
            table.contains("CAUSE") && table.contains("drift"),
            "history table:\n{table}"
        );
        let subject = format!("app:{}", app.config.display());
        wait_until("the config_drift alert firing", WAIT, POLL, async || {
            let a: AlertsReply = opsctl.json(&["alerts", "--host", "web-01"]).await?;
            Ok(a.alerts
                .iter()
                .any(|a| {
                    a.rule == "config_drift"
                        && a.subject == subject
                        && a.state.to_string() == "firing"
                })
                .then_some(()))
        })
        .await?;

        // An agent restart reports an unchanged file again only when it changed meanwhile:
        // restarted with the file as it was, the next snapshot is the next hand edit's. (A
        // stopped agent stops the app: its new pid says the restarted module has run, and its
        // first run looks at the file.)
        let before = app_pid(&opsctl).await?;
        c.agent("web-01")?.stop().await?;
        c.agent("web-01")?.restart()?;
        wait_until(
            "the app started again by the new agent",
            WAIT,
            POLL,
            async || Ok((app_pid(&opsctl).await? != before).then_some(())),
        )
        .await?;
        let again = "{\"greeting\": \"edited again\"}\n";
        std::fs::write(&app.config, again)?;
        let r = history_until(&opsctl, &app.config, "a second drift, no new start", |c| {
            c.len() >= 3
        })
        .await?;
        let causes: Vec<&str> = r.snapshots.iter().map(|s| s.cause.as_str()).collect();
        ensure!(
            causes == ["start", "drift", "drift"],
            "after a restart: {causes:?}"
        );
        // Changed while the agent was down: a `drift` from the fingerprint it had persisted.
        c.agent("web-01")?.stop().await?;
        std::fs::write(&app.config, GOOD_V1)?;
        c.agent("web-01")?.restart()?;
        let r = history_until(&opsctl, &app.config, "a drift after the restart", |c| {
            c.len() >= 4
        })
        .await?;
        let last = r.snapshots.last().context("a snapshot")?;
        ensure!(
            last.cause == "drift"
                && last.fingerprint == sha256(GOOD_V1.as_bytes())
                && last.previous_fingerprint == sha256(again.as_bytes()),
            "changed while down: {:?}",
            r.snapshots
        );
        Ok(())
    })
    .await;
}

/// Needs the service module's reload (branch s15-ops).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_config_is_applied_and_rolled_back_by_fingerprint() {
    Cluster::run("service-config-apply", async |c: &mut Cluster| {
        let (app, opsctl) = start(c).await?;
        serving(app.port, "hello v1").await?;
        let start = history_until(&opsctl, &app.config, "the start snapshot", |c| {
            c == ["start"]
        })
        .await?;
        let v1 = start.snapshots[0].fingerprint.clone();

        let v2 = "{\"greeting\": \"hello v2\"}\n";
        let file = c.dir().join("v2.json");
        std::fs::write(&file, v2)?;
        let file_arg = file.to_string_lossy().into_owned();
        let (ok, outcome, stderr) = command(
            &opsctl,
            &[
                "service", "config", "apply", "app", "--file", &file_arg, "--host", "web-01",
                "--wait", "60s",
            ],
        )
        .await?;
        ensure!(ok, "apply: {outcome} {stderr}");
        ensure!(std::fs::read(&app.config)? == v2.as_bytes(), "v2 on disk");
        serving(app.port, "hello v2").await?;

        let (ok, outcome, stderr) = command(
            &opsctl,
            &[
                "service",
                "config",
                "rollback",
                "app",
                "--to",
                &v1[..12],
                "--host",
                "web-01",
                "--wait",
                "60s",
            ],
        )
        .await?;
        ensure!(ok, "rollback: {outcome} {stderr}");
        ensure!(
            std::fs::read(&app.config)? == GOOD_V1.as_bytes(),
            "v1 on disk again"
        );
        serving(app.port, "hello v1").await?;
        let r = history_until(&opsctl, &app.config, "start, applied, rolled_back", |c| {
            c == ["start", "applied", "rolled_back"]
        })
        .await?;
        ensure!(
            r.snapshots[1].fingerprint == sha256(v2.as_bytes())
                && !r.snapshots[1].command_id.is_empty()
                && r.snapshots[2].fingerprint == v1
                && !r.snapshots[2].command_id.is_empty(),
            "history {:?}",
            r.snapshots
        );
        Ok(())
    })
    .await;
}

/// A reload that fails puts the previous content back and reloads again. Needs the service
/// module's reload and `reload_argv` (branch s15-ops): the reload command refuses a file that
/// says `noreload`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reload_puts_the_previous_content_back() {
    Cluster::run("service-config-restore", async |c: &mut Cluster| {
        let etc = c.dir().join("etc-app");
        std::fs::create_dir_all(&etc)?;
        let config = etc.join("app.json");
        std::fs::write(&config, GOOD_V1)?;
        let modules = format!(
            r#"
[[modules]]
type = "service"
name = "app"
interval = "200ms"
argv = ["sleep", "300"]
stop_grace = "1s"
remote = ["config"]
reload_argv = ["sh", "-c", "! grep -q noreload {config}"]

[modules.config]
files = ["{config}"]
"#,
            config = config.display()
        );
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&modules),
        )?;
        let opsctl = c.opsctl.clone();
        history_until(&opsctl, &config, "the start snapshot", |c| c == ["start"]).await?;
        let bad = c.dir().join("noreload.json");
        std::fs::write(&bad, "{\"greeting\": \"noreload\"}\n")?;
        let bad_arg = bad.to_string_lossy().into_owned();
        let (ok, outcome, _) = command(
            &opsctl,
            &[
                "service", "config", "apply", "app", "--file", &bad_arg, "--host", "web-01",
            ],
        )
        .await?;
        let (state, detail) = only_command(&outcome);
        ensure!(
            !ok && state == "failed"
                && detail.contains("reload after writing")
                && detail.contains("is back and the service reloaded"),
            "a failing reload: {state} {detail}"
        );
        ensure!(
            std::fs::read(&config)? == GOOD_V1.as_bytes(),
            "the old content is back"
        );
        let r = history_until(&opsctl, &config, "start, applied, restored", |c| {
            c == ["start", "applied", "restored"]
        })
        .await?;
        ensure!(
            r.snapshots[2].fingerprint == sha256(GOOD_V1.as_bytes())
                && r.snapshots[2].command_id == r.snapshots[1].command_id,
            "history {:?}",
            r.snapshots
        );
        Ok(())
    })
    .await;
}

/// A raw `ops.api.command` request (what opsctl sends, with fields opsctl never sets); the
/// reply's text.
async fn raw_command(c: &mut Cluster, req: Value) -> Result<String> {
    let client = async_nats::connect(c.nats_url()).await?;
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(
            opsfleet_proto::subjects::API_COMMAND,
            serde_json::to_vec(&req)?.into(),
        ),
    )
    .await??;
    Ok(String::from_utf8_lossy(&reply.payload).into_owned())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
