//! Every agent module end to end: one real agent runs heartbeat, disk, log, sentinel, health,
//! backup and janitor against real files, a real TCP listener and real directories; each
//! module's events reach the coordinator's log through real NATS, exactly once per seq.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{ensure, Context, Result};
use opsfleet_tests::{check_exactly_once, wait_until_default, AgentSpec, Cluster, CoordinatorSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_module_reaches_the_coordinator_log() {
    Cluster::run("agent-modules", async |c: &mut Cluster| {
        let root = c.dir().join("host-files");
        let (logs, sentinel, src, dest, runs) = (
            root.join("logs"),
            root.join("app.heartbeat"),
            root.join("data"),
            root.join("backups"),
            root.join("runs"),
        );
        for d in [&logs, &src, &dest, &runs] {
            fs::create_dir_all(d)?;
        }
        fs::write(&sentinel, "alive")?;
        fs::write(src.join("db.sqlite"), vec![7u8; 64 * 1024])?;
        fs::write(src.join("config.ini"), "[db]\nname = shop\n")?;
        // An old run directory for the janitor.
        let old_run = runs.join("run-0001");
        fs::create_dir_all(&old_run)?;
        let old_file = old_run.join("output.txt");
        fs::write(&old_file, "done")?;
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
        fs::File::options()
            .write(true)
            .open(&old_file)?
            .set_modified(two_days_ago)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let app_log = logs.join("app.log");
        // A free loopback port for the agent's HTTP endpoint.
        let http_port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        fs::write(&app_log, "INFO starting\n")?;

        let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
        let modules = format!(
            r#"
[[modules]]
type = "disk"
interval = "500ms"
paths = ["/"]

[[modules]]
type = "log"
interval = "200ms"
paths = [{log}]

[[modules]]
type = "sentinel"
interval = "300ms"
paths = [{sentinel}]
max_age = "1h"

[[modules]]
type = "health"
interval = "300ms"
[[modules.probes]]
name = "db"
type = "tcp"
address = "{addr}"
timeout = "300ms"

[[modules]]
type = "backup"
interval = "300ms"
[[modules.jobs]]
name = "shop"
sources = [{src}]
destination = {dest}
schedule = "1h"

[[modules]]
type = "janitor"
interval = "300ms"
[[modules.roots]]
path = {runs}
older_than = "1d"

[http]
listen = "127.0.0.1:{http_port}"
"#,
            log = q(&app_log),
            sentinel = q(&sentinel),
            src = q(&src),
            dest = q(&dest),
            runs = q(&runs),
        );
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(&modules),
        )?;

        // Something for the log module: an error line and a three-line traceback.
        {
            let mut f = fs::OpenOptions::new().append(true).open(&app_log)?;
            writeln!(f, "ERROR payment gateway timed out")?;
            writeln!(f, "Traceback (most recent call last):")?;
            writeln!(f, "  File \"shop.py\", line 3, in <module>")?;
            writeln!(f, "ValueError: bad order id")?;
            writeln!(f, "INFO recovered")?;
        }

        let wanted: BTreeSet<&str> = [
            "heartbeat",
            "module_state",
            "disk",
            "log_match",
            "sentinel",
            "health",
            "backup_started",
            "backup_completed",
            "janitor",
        ]
        .into_iter()
        .collect();
        let mut seen = BTreeSet::new();
        let mut events = Vec::new();
        wait_until_default("every module's events in the stream", async || {
            let out = c
                .opsctl
                .run(&[
                    "--output", "json", "events", "--since", "seq:1", "--host", "web-01",
                ])
                .await?
                .ok()?;
            events = out
                .stdout
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .collect::<Vec<_>>();
            seen = events
                .iter()
                .filter_map(|v| v["kind"].as_str().map(str::to_owned))
                .collect::<BTreeSet<String>>();
            Ok(wanted.iter().all(|k| seen.contains(*k)).then_some(()))
        })
        .await
        .with_context(|| format!("kinds seen so far: {seen:?}"))?;

        // The traceback arrived as one event of three lines, not three events.
        let matches: Vec<&str> = events
            .iter()
            .filter(|v| v["kind"] == "log_match")
            .filter_map(|v| v["summary"].as_str())
            .collect();
        ensure!(
            matches
                .iter()
                .any(|m| m.contains("[traceback] 3 line(s): Traceback")),
            "no grouped traceback among {matches:?}"
        );

        // The agent's HTTP endpoint: alive, ready (connected to NATS), and exporting metrics.
        let healthz = http_get(http_port, "/healthz").await?;
        ensure!(healthz.starts_with("HTTP/1.1 200"), "/healthz: {healthz}");
        let readyz = http_get(http_port, "/readyz").await?;
        ensure!(readyz.starts_with("HTTP/1.1 200"), "/readyz: {readyz}");
        let metrics = http_get(http_port, "/metrics").await?;
        for name in [
            "opsfleet_agent_outbox_depth",
            "opsfleet_agent_publish_latency_seconds",
            "opsfleet_agent_module_run_seconds",
        ] {
            ensure!(
                metrics.contains(name),
                "/metrics has no {name} metric:\n{metrics}"
            );
        }

        // The janitor removed the old run, and the backup archive exists.
        ensure!(
            !old_file.exists(),
            "the janitor left {}",
            old_file.display()
        );
        let archives: Vec<_> = fs::read_dir(&dest)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("shop-") && n.ends_with(".tar.zst"))
            .collect();
        ensure!(archives.len() == 1, "archives: {archives:?}");

        // Stop the agent, let the coordinator catch up, and check its log.
        let outboxes = c.stop_agents().await?;
        let web = &outboxes["web-01"];
        let expected = [("web-01".to_owned(), web.last_seq)].into_iter().collect();
        c.wait_caught_up("blue", &expected).await?;
        let coord = c.coordinator("blue")?;
        coord.stop().await?;
        let log = coord.dump_log().await?;
        check_exactly_once(&log, "web-01", &web.incarnation, web.last_seq)
            .map_err(anyhow::Error::msg)?;
        let kinds: BTreeSet<&str> = log
            .iter()
            .filter(|e| e.host == "web-01")
            .map(|e| e.kind.as_str())
            .collect();
        for k in &wanted {
            ensure!(
                kinds.contains(k),
                "coordinator log has no {k} event; kinds: {kinds:?}"
            );
        }
        let tracebacks = log.iter().filter(|e| e.kind == "log_match").count();
        ensure!(
            tracebacks == 2,
            "want 2 log matches (ERROR line + one grouped traceback), got {tracebacks}"
        );
        drop(listener);
        Ok(())
    })
    .await;
}

/// A plain HTTP/1.1 GET on loopback; returns status line, headers and body.
async fn http_get(port: u16, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connect to the agent's HTTP port {port}"))?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut out))
        .await
        .context("HTTP response timed out")??;
    Ok(out)
}
