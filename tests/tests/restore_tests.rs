//! Scheduled restore tests end to end with a real nats-server, coordinator, agent and opsctl:
//! a job with a short `verify_restore`, a second-path remote and a check script. The test runs
//! on its schedule from the remote copy and `opsctl backups` shows it passed; the check made
//! to fail raises `restore_test_failed`; `opsctl backup verify` runs one now (passing, the
//! alert resolves) and an unknown job is refused by the agent naming it; the backup module
//! paused, tests stop and `restore_test_missing` fires. No scratch directory is left.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use opsfleet_proto::api::{AlertView, AlertsReply, BackupsReply};
use opsfleet_proto::pb;
use opsfleet_tests::stream::events_of;
use opsfleet_tests::verbs;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};

const HOST: &str = "db-01";

/// The restore tests the agent reported so far, oldest first.
async fn tests_of(url: &str) -> anyhow::Result<Vec<pb::RestoreTested>> {
    Ok(events_of(url, HOST, "restore_tested")
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::RestoreTested(t) => Some(t),
            _ => None,
        })
        .collect())
}

/// The alert of `rule` in `state`, if the coordinator has it.
async fn alert(c: &Cluster, rule: &str, state: &str) -> anyhow::Result<Option<AlertView>> {
    let alerts: AlertsReply = c.opsctl.json(&["alerts"]).await?;
    Ok(alerts
        .alerts
        .into_iter()
        .find(|a| a.rule == rule && a.state.to_string() == state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_tests_run_on_schedule_and_on_demand_and_raise_their_alerts() {
    Cluster::run("restore_tests", async |c: &mut Cluster| {
        let started = Instant::now();
        let dir = c.dir().to_owned();
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(dir.join("src/app.toml"), b"x = 1\n")?;
        // The check reads the restored tree (its working dir) and fails while `fail-check`
        // exists, saying why on stderr.
        let flag = dir.join("fail-check");
        let check = dir.join("check.sh");
        std::fs::write(
            &check,
            format!(
                "#!/bin/sh\ngrep -q 'x = 1' src/app.toml || {{ echo 'app.toml not restored' >&2; exit 2; }}\n\
                 test \"$PWD\" = \"$OPSFLEET_RESTORE_DIR\" || exit 3\n\
                 if [ -e {flag:?} ]; then echo 'integrity check: schema version mismatch' >&2; exit 1; fi\n",
                flag = flag.display().to_string()
            ),
        )?;
        let modules = format!(
            "[[modules]]\ntype = \"backup\"\nname = \"backup\"\ninterval = \"200ms\"\n\
             [[modules.jobs]]\nname = \"app\"\nsources = [\"{src}\"]\ndestination = \"{dest}\"\n\
             schedule = \"24h\"\nverify_restore = \"2s\"\n\
             [modules.jobs.verify_check]\ncommand = [\"/bin/sh\", \"{check}\"]\ntimeout = \"20s\"\n\
             [modules.jobs.remote]\ntype = \"path\"\npath = \"{nas}\"\nreconcile_every = \"1h\"\n",
            src = dir.join("src").display(),
            dest = dir.join("dest").display(),
            check = check.display(),
            nas = dir.join("nas").display(),
        );
        let mut blue = CoordinatorSpec::new("blue");
        blue.extra_toml = "[alerts]\ninterval = \"500ms\"\nmin_silence = \"1h\"\n\
                           [alerts.rules.restore_test_missing]\nwindow = \"3s\"\n"
            .to_owned();
        c.add_coordinator(blue)?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(200))
                .modules_toml(&modules),
        )?;
        let url = c.nats_url();
        let scratch = c.agent(HOST)?.data_dir.join("restore-tests/app");

        // 1. On its schedule (2 s after the module started, after the first run and its
        //    copy): the remote copy restored, checked, passed.
        let first = wait_until_default("a scheduled restore test", async || {
            Ok(tests_of(&url).await?.into_iter().next())
        })
        .await?;
        ensure!(
            first.passed && first.requested_by == "schedule",
            "{first:?}"
        );
        ensure!(first.source.starts_with("path:"), "read from the remote: {first:?}");
        ensure!((first.check.as_str(), first.files) == ("passed", 1), "{first:?}");
        let row = wait_until_default("the test in opsctl backups", async || {
            let reply: BackupsReply = c.opsctl.json(&["backups", "--host", HOST]).await?;
            Ok(reply
                .backups
                .into_iter()
                .find(|b| b.job == "app")
                .and_then(|b| b.restore_test)
                .filter(|t| t.state() == "passed"))
        })
        .await?;
        ensure!(row.every_ms == Some(2000), "declared period learned: {row:?}");
        let table = c.opsctl.run(&["backups", "--host", HOST]).await?;
        ensure!(
            table.stdout.contains("RESTORE TEST") && table.stdout.contains("passed"),
            "{}",
            table.stdout
        );
        eprintln!("scheduled test passed after {:?}", started.elapsed());

        // 2. The check fails: the next scheduled test fails with its stderr, and the
        //    coordinator raises restore_test_failed.
        std::fs::write(&flag, b"")?;
        let failed = wait_until_default("a failed restore test", async || {
            Ok(tests_of(&url).await?.into_iter().find(|t| !t.passed))
        })
        .await?;
        ensure!(failed.check == "failed", "{failed:?}");
        ensure!(failed.reason.contains("schema version mismatch"), "{failed:?}");
        let firing = wait_until_default("restore_test_failed firing", async || {
            alert(c, "restore_test_failed", "firing").await
        })
        .await?;
        ensure!(firing.detail.contains("schema version mismatch"), "{}", firing.detail);
        eprintln!("restore_test_failed fired after {:?}", started.elapsed());

        // 3. Fixed, and tested now on demand: the command answers with the result, the event
        //    names the command, the alert resolves.
        std::fs::remove_file(&flag)?;
        let (ok, outcome, stderr) = verbs::verb(c, HOST, &["backup", "verify", "app"]).await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "backup verify: {outcome} {stderr}"
        );
        let cmd = verbs::only_command(&outcome)?;
        let id = cmd["id"].as_str().context("command id")?.to_owned();
        ensure!(cmd.to_string().contains("passed"), "detail: {cmd}");
        let asked = wait_until_default("the on-demand test's event", async || {
            Ok(tests_of(&url).await?.into_iter().find(|t| t.requested_by == id))
        })
        .await?;
        ensure!(asked.passed, "{asked:?}");
        wait_until_default("restore_test_failed resolved", async || {
            alert(c, "restore_test_failed", "resolved").await
        })
        .await?;
        // An unknown job is refused by the agent, naming it.
        let (ok, outcome, _) = verbs::verb(c, HOST, &["backup", "verify", "nope"]).await?;
        let text = outcome.to_string();
        ensure!(!ok && text.contains("no backup job \\\"nope\\\""), "refused: {text}");
        eprintln!("on-demand test and refusal done after {:?}", started.elapsed());

        // 4. Tests stop (the module paused): no pass within the period plus the window.
        let (ok, outcome, stderr) = verbs::verb(c, HOST, &["pause", "backup"]).await?;
        ensure!(ok, "pause: {outcome} {stderr}");
        let missing = wait_until_default("restore_test_missing firing", async || {
            alert(c, "restore_test_missing", "firing").await
        })
        .await?;
        ensure!(
            missing.detail.contains("backup app on db-01")
                && missing.detail.contains("newest passing restore test"),
            "{}",
            missing.detail
        );
        ensure!(!scratch.exists(), "scratch dir {} left", scratch.display());
        ensure!(
            std::fs::read_dir(dir.join("dest"))?.count() == 2,
            "the destination holds the archive and its manifest only"
        );
        eprintln!("restore_test_missing fired after {:?}", started.elapsed());
        Ok(())
    })
    .await;
}
