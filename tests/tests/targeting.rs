//! Targeting checked at the coordinator before anything is sent, and honest results, end to
//! end with a real nats-server, coordinator, agents and opsctl: an unknown host or a host
//! without the module is refused naming what is known (exit 1); `--all` and globs (`web-*`)
//! go to the hosts that have the module and say how many were skipped and why; a missing
//! target is a usage error (exit 2); `status --host nosuch` says the host is unknown; a
//! rejection states its reason without the fencing epochs; a command to a lost host says so
//! up front with the deadline and returns at once; `audit --by nobody` says there are none;
//! a command issued with no operator and no OS user is recorded as `anonymous`;
//! an unreachable NATS says its cause once and exits 3.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

/// `opsctl <args>`: exit code, stdout, stderr.
async fn run(c: &Cluster, args: &[&str]) -> Result<(i32, String, String)> {
    let out = c.opsctl.run(args).await?;
    Ok((out.status.code().unwrap_or(-1), out.stdout, out.stderr))
}

/// Fails unless `opsctl <args>` exits `code` with `stderr` holding `wanted`.
async fn expect(c: &Cluster, args: &[&str], code: i32, wanted: &str) -> Result<String> {
    let (got, stdout, stderr) = run(c, args).await?;
    ensure!(
        got == code && stderr.contains(wanted),
        "`opsctl {}`: exit {got} (wanted {code}), stderr {stderr:?} (wanted {wanted:?}), stdout {stdout}",
        args.join(" ")
    );
    Ok(stderr)
}

fn log_module(c: &Cluster) -> Result<String> {
    let log = c.dir().join("app.log");
    std::fs::write(&log, "INFO starting\n")?;
    Ok(format!(
        "\n[[modules]]\ntype = \"log\"\nname = \"log\"\ninterval = \"200ms\"\npaths = [{:?}]\n",
        log.display().to_string()
    ))
}

fn backup_module(c: &Cluster) -> String {
    format!(
        "\n[[modules]]\ntype = \"backup\"\nname = \"nightly\"\ninterval = \"300ms\"\n\
         [[modules.jobs]]\nname = \"site\"\nsources = [{:?}]\ndestination = {:?}\n\
         schedule = \"24h\"\nkeep_count = 1\n",
        c.dir().join("site").display().to_string(),
        c.dir().join("site-backups").display().to_string()
    )
}

/// Every host known, with web-01's log and web-02's backup module.
async fn wait_ready(c: &mut Cluster) -> Result<()> {
    wait_until_default("three hosts with their modules", async || {
        let s = c.status(None).await?;
        let has = |host: &str, module: &str| {
            s.hosts
                .iter()
                .any(|h| h.host == host && h.modules.iter().any(|m| m.name == module))
        };
        Ok((s.hosts.len() == 3 && has("web-01", "log") && has("web-02", "nightly")).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_are_checked_before_anything_is_sent() {
    Cluster::run("targeting", async |c: &mut Cluster| {
        std::fs::create_dir_all(c.dir().join("site"))?;
        std::fs::write(c.dir().join("site/index.html"), "<h1>shop</h1>")?;
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        let hb = Duration::from_millis(200);
        let log = log_module(c)?;
        let backup = backup_module(c);
        c.add_agent(AgentSpec::new("web-01").heartbeat(hb).modules_toml(&log))?;
        c.add_agent(AgentSpec::new("web-02").heartbeat(hb).modules_toml(&backup))?;
        c.add_agent(AgentSpec::new("db-01").heartbeat(hb))?;
        wait_ready(c).await?;

        // Refused at the coordinator, naming what is known; nothing is recorded.
        expect(
            c,
            &["pause", "log", "--host", "nosuch"],
            1,
            "unknown host(s): nosuch (known: db-01, web-01, web-02)",
        )
        .await?;
        expect(
            c,
            &["pause", "nosuch", "--host", "web-01"],
            1,
            "host web-01 has no module nosuch (its modules: heartbeat, log)",
        )
        .await?;
        expect(
            c,
            &["noop", "--host", "cache-*"],
            1,
            "no host matches cache-* (known: db-01, web-01, web-02)",
        )
        .await?;
        expect(
            c,
            &["pause", "nosuch", "--all"],
            1,
            "none of the 3 matched host(s) can take the command: no module nosuch on any of them",
        )
        .await?;
        let (_, ledger, _) = run(c, &["--output", "json", "commands"]).await?;
        let ledger: Value = serde_json::from_str(ledger.trim()).context("ledger JSON")?;
        ensure!(
            ledger.as_array().is_some_and(Vec::is_empty),
            "refused requests recorded nothing: {ledger}"
        );

        // Usage: a missing target names every way to give one.
        expect(
            c,
            &["pause", "log"],
            2,
            "a command needs a target: --host, --all or --label",
        )
        .await?;
        expect(
            c,
            &["status", "--host", "nosuch"],
            1,
            "unknown host nosuch (known: db-01, web-01, web-02)",
        )
        .await?;
        expect(
            c,
            &["audit", "--by", "nobody"],
            0,
            "",
        )
        .await?;
        let (_, audit, _) = run(c, &["audit", "--by", "nobody"]).await?;
        ensure!(
            audit == "no commands by nobody in the newest 100 of the ledger\n",
            "audit --by nobody: {audit:?}"
        );

        // --all means the hosts that have the module: the others are skipped, and said.
        let stderr = expect(
            c,
            &["--output", "json", "pause", "log", "--all", "--wait", "60s"],
            0,
            "skipped 2 host(s) that cannot take the command: db-01 (no module log), web-02 (no module log)",
        )
        .await?;
        let (code, out, _) = run(
            c,
            &["--output", "json", "resume", "log", "--host", "web-*", "--wait", "60s"],
        )
        .await?;
        let outcome: Value = serde_json::from_str(out.trim()).context("resume JSON")?;
        ensure!(code == 0 && outcome["all_completed"] == true, "{outcome} {stderr}");
        let targets: Vec<&str> = outcome["commands"]
            .as_array()
            .context("commands")?
            .iter()
            .filter_map(|c| c["target"].as_str())
            .collect();
        ensure!(targets == ["web-01"], "glob with the module: {outcome}");
        ensure!(
            outcome["skipped"][0]["host"] == "web-02",
            "web-02 skipped: {outcome}"
        );
        let (code, out, stderr) =
            run(c, &["--output", "json", "noop", "--host", "web-*", "--wait", "60s"]).await?;
        let outcome: Value = serde_json::from_str(out.trim()).context("noop JSON")?;
        ensure!(
            code == 0 && outcome["commands"].as_array().map(Vec::len) == Some(2),
            "noop to web-*: {outcome} {stderr}"
        );

        // backup run --all: the host with a backup module runs it, the others are skipped.
        let (code, out, stderr) = run(
            c,
            &["--output", "json", "backup", "run", "--all", "--wait", "60s"],
        )
        .await?;
        let outcome: Value = serde_json::from_str(out.trim()).context("backup JSON")?;
        let skipped: Vec<&str> = outcome["skipped"]
            .as_array()
            .context("skipped")?
            .iter()
            .filter_map(|s| s["host"].as_str())
            .collect();
        ensure!(
            code == 0
                && outcome["commands"][0]["target"] == "web-02"
                && skipped == ["db-01", "web-01"]
                && stderr.contains("skipped 2 host(s) that cannot take the command: db-01 (no backup module), web-01 (no backup module)"),
            "backup run --all: {outcome} {stderr}"
        );

        // No operator and no OS user in the environment: recorded as anonymous.
        let out = tokio::process::Command::new(opsfleet_tests::bins::bin(opsfleet_tests::bins::OPSCTL)?)
            .args(["--nats", &c.nats_url(), "noop", "--host", "web-01", "--wait", "60s"])
            .env_remove("USER")
            .env_remove("LOGNAME")
            .env_remove("OPS_OPERATOR")
            .output()
            .await?;
        ensure!(out.status.success(), "anonymous noop: {out:?}");
        let (_, audit, _) = run(c, &["audit", "--host", "web-01", "--limit", "1"]).await?;
        ensure!(audit.contains("anonymous (unverified)"), "{audit}");

        // A rejection for a reason other than fencing carries no epochs, and the last line
        // says what happened.
        let stderr = expect(
            c,
            &[
                "restore", "--archive", "site-20260101T000000.000Z.tar.zst", "--job", "site",
                "--target", "/srv/restore", "--host", "web-02", "--wait", "60s",
            ],
            1,
            "opsctl: restore did not complete on 1 of 1 host(s): web-02 rejected: refused by",
        )
        .await?;
        ensure!(!stderr.contains("highest seen"), "no epochs: {stderr}");
        ensure!(!stderr.contains("still open"), "{stderr}");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_host_is_said_up_front_and_unreachable_nats_exits_3() {
    Cluster::run("targeting_lost", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(AgentSpec::new("db-01").heartbeat(Duration::from_millis(200)))?;
        wait_until_default("db-01 known", async || {
            Ok((c.status(None).await?.hosts.len() == 1).then_some(()))
        })
        .await?;
        c.agent("db-01")?.sigkill().await?;
        wait_until_default("db-01 lost", async || {
            let (_, out, _) = run(c, &["--output", "json", "hosts"]).await?;
            Ok(out.contains("\"lost\"").then_some(()))
        })
        .await?;
        let started = Instant::now();
        let stderr = expect(
            c,
            &[
                "noop",
                "--host",
                "db-01",
                "--deadline",
                "40s",
                "--wait",
                "60s",
            ],
            1,
            "db-01 is lost (last heard from ",
        )
        .await?;
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "returned at once, not after the wait: {:?}",
            started.elapsed()
        );
        ensure!(
            stderr.contains("its command waits until its deadline ")
                && stderr.contains(
                    "noop did not complete on 1 of 1 host(s): db-01 not up: queued until "
                ),
            "{stderr}"
        );
        ensure!(!stderr.contains("hosts answered"), "{stderr}");

        // NATS down: the cause once, exit 3 — as `--help` documents.
        let down = Opsctl::new("nats://127.0.0.1:1")?;
        let help = down.run(&["--help"]).await?.ok()?.stdout;
        ensure!(
            help.contains("Exit codes: 0 ok; 1 the operation failed")
                && help.contains("2 usage")
                && help.contains("3 cluster unreachable"),
            "{help}"
        );
        let out = down.run(&["status"]).await?;
        ensure!(out.status.code() == Some(3), "exit 3: {out:?}");
        ensure!(
            out.stderr.matches("Connection refused").count() == 1
                && out
                    .stderr
                    .starts_with("opsctl: cannot connect to NATS at nats://127.0.0.1:1"),
            "the cause once: {:?}",
            out.stderr
        );
        Ok(())
    })
    .await;
}
