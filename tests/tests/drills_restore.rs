//! A `restore_test` drill end to end: a real nats-server, a coordinator, and three hosts
//! labelled `tier=db` — db-01 and db-02 each with a backup job `app` whose restore test runs a
//! check command (db-01's passes; db-02's exits 1 naming the dump it found corrupt), web-01
//! with no backup module. `opsctl drill run` runs the drill: one `restore_test` command per
//! host with the job, issued as `blue-drill-db-restore` (in the ledger), each host's
//! `restore_tested` event answered to its command; the run fails because db-02's check failed,
//! its detail names each host's result (web-01 skipped), and `drill_failed` fires. Once
//! db-02's check is repaired, the next run passes and `drill_failed` resolves.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::api::{AlertsReply, BackupsReply};
use opsfleet_tests::{wait_until, AgentSpec, Cluster, CoordinatorSpec, Opsctl};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(250);
const DB: [&str; 2] = ["db-01", "db-02"];
/// The agents' label.
const TIER_DB: &str = "[labels]\ntier = \"db\"\n";

/// The drill, switched off on the schedule (the test runs it as an operator would): every
/// host labelled `tier=db`, job `app`.
const COORDINATOR: &str = r#"
[alerts]
interval = "500ms"

[[drills]]
name = "db-restore"
kind = "restore_test"
labels = { tier = "db" }
job = "app"
every = "1h"
enabled = false
timeout = "90s"
"#;

/// A backup module with job `app` of `dir/src`, its restore test running `check`.
fn backup_modules(dir: &Path, check: &Path) -> String {
    format!(
        "[[modules]]\ntype = \"backup\"\nname = \"backup\"\ninterval = \"200ms\"\n\
         [[modules.jobs]]\nname = \"app\"\nsources = [\"{src}\"]\ndestination = \"{dest}\"\n\
         schedule = \"24h\"\nkeep_count = 3\n\
         [modules.jobs.verify_check]\ncommand = [\"/bin/sh\", \"{check}\"]\ntimeout = \"30s\"\n",
        src = dir.join("src").display(),
        dest = dir.join("dest").display(),
        check = check.display(),
    )
}

/// `host`'s files: a source directory and the check script (`ok`: it checks the restored
/// file; else it fails naming the dump).
fn host_dir(root: &Path, host: &str, ok: bool) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let dir = root.join(host);
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("src/app.toml"), format!("host = {host:?}\n"))?;
    let check = dir.join("check.sh");
    write_check(&check, ok)?;
    Ok((dir, check))
}

fn write_check(check: &Path, ok: bool) -> Result<()> {
    let body = if ok {
        "#!/bin/sh\nfind \"$OPSFLEET_RESTORE_DIR\" -name app.toml | grep -q . || { echo 'app.toml missing' >&2; exit 1; }\n"
    } else {
        "#!/bin/sh\necho 'app.dump is corrupt' >&2\nexit 1\n"
    };
    std::fs::write(check, body)?;
    Ok(())
}

/// Runs the drill as operator alice: the run's JSON answer (exit 0 when it passed, 1 when it
/// failed).
async fn run_drill(opsctl: &Opsctl) -> Result<Value> {
    let out = (opsctl)
        .run(&[
            "--operator",
            "alice",
            "-o",
            "json",
            "drill",
            "run",
            "db-restore",
            "--wait",
            "3m",
        ])
        .await?;
    let ran: Value = serde_json::from_str(out.stdout.trim())
        .with_context(|| format!("drill run JSON: {out:?}"))?;
    let want = if ran["phase"] == "passed" { 0 } else { 1 };
    ensure!(out.status.code() == Some(want), "exit for {ran}: {out:?}");
    Ok(ran)
}

/// The `drill_failed` alert of the drill in `state`.
async fn drill_failed(opsctl: &Opsctl, state: &str) -> Result<()> {
    wait_until(&format!("drill_failed {state}"), WAIT, POLL, async || {
        let r: AlertsReply = opsctl.json(&["alerts"]).await?;
        let found = (r.alerts.iter()).any(|a| {
            a.rule == "drill_failed" && a.subject == "db-restore" && a.state.to_string() == state
        });
        Ok(found.then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_test_drill_fails_on_one_failed_check_and_passes_once_it_is_repaired() {
    Cluster::run("drill-restore", async |c: &mut Cluster| {
        c.add_coordinator(CoordinatorSpec::new("blue").config_toml(COORDINATOR))?;
        c.wait_role("blue", "active", WAIT).await?;
        let root = c.dir().to_owned();
        let mut checks = Vec::new();
        for (host, ok) in [(DB[0], true), (DB[1], false)] {
            let (dir, check) = host_dir(&root, host, ok)?;
            c.add_agent(
                AgentSpec::new(host)
                    .heartbeat(Duration::from_millis(300))
                    .modules_toml(&backup_modules(&dir, &check))
                    // A table header may follow the modules: this is the top-level `labels`.
                    .modules_toml(TIER_DB),
            )?;
            checks.push(check);
        }
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(300))
                .modules_toml(TIER_DB),
        )?;
        let opsctl = c.opsctl.clone();
        // Each db host's scheduled first backup is in the catalog: an archive to test.
        wait_until(
            "an archive of app on both db hosts",
            WAIT,
            POLL,
            async || {
                let r: BackupsReply = opsctl.json(&["backups"]).await?;
                let done = DB.iter().all(|h| {
                    (r.backups.iter())
                        .any(|b| b.host == *h && b.job == "app" && b.archives_kept > 0)
                });
                Ok(done.then_some(()))
            },
        )
        .await?;
        wait_until("web-01 known", WAIT, POLL, async || {
            let s = opsctl.status(None).await?;
            Ok((s.hosts.len() == 3).then_some(()))
        })
        .await?;

        // One check fails: the run fails, naming each host's result.
        let ran = run_drill(&opsctl).await?;
        println!("first run: {ran}");
        let detail = ran["detail"].as_str().unwrap_or_default();
        ensure!(ran["phase"] == "failed", "{ran}");
        ensure!(
            detail.contains("db-01 passed (local, ")
                && detail.contains("db-02 failed: ")
                && detail.contains("app.dump is corrupt")
                && detail.contains("web-01 skipped: no backup module"),
            "{ran}"
        );
        // Through the ordinary dispatch: one restore_test command per db host, in the ledger
        // under the drill's issuer, each completed or failed by its agent.
        for host in DB {
            let views: Vec<Value> = opsctl.json(&["commands", "--host", host]).await?;
            let cmd = (views.iter())
                .find(|v| v["action"] == "restore_test")
                .with_context(|| format!("a restore_test command to {host}: {views:?}"))?;
            ensure!(
                cmd["issued_by"] == "blue-drill-db-restore",
                "issued as the drill: {cmd}"
            );
        }
        drill_failed(&opsctl, "firing").await?;

        // Repaired: every host passes, the run passes, the alert resolves.
        write_check(&checks[1], true)?;
        let ran = run_drill(&opsctl).await?;
        println!("second run: {ran}");
        let detail = ran["detail"].as_str().unwrap_or_default();
        ensure!(
            ran["phase"] == "passed"
                && detail.contains("db-01 passed (local, ")
                && detail.contains("db-02 passed (local, "),
            "{ran}"
        );
        drill_failed(&opsctl, "resolved").await?;
        Ok(())
    })
    .await;
}
