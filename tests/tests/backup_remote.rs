//! Backups that leave the host, end to end with a real nats-server, coordinator, agent and
//! opsctl: a job with a `pg_dump`-style pre-backup step (a script writing a file, run with the
//! variable its job passes and none of the agent's others) and a second-path remote copy. The
//! archive is synced (`backup_synced`, `opsctl backups` shows the remote state); a remote copy deleted is reported as a discrepancy and raises the
//! `backup_discrepancy` alert; the local archives deleted, `opsctl restore` restores from the
//! remote copy, the dump included; a restore outside the host's `restore_targets` is still
//! refused.

use anyhow::ensure;
use opsfleet_proto::api::{AlertsReply, BackupsReply};
use opsfleet_tests::backup::{self, BackupDirs};
use opsfleet_tests::verbs;
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};

const HOST: &str = "db-01";
/// In the agent's environment, never passed to its pre-backup step.
const SECRET: &str = "s3cret-never-passed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dumped_and_copied_backup_is_restored_from_the_remote_copy() {
    Cluster::run("backup_remote", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        let dirs = BackupDirs::create(&dir)?;
        let script = dir.join("pg_dump.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf 'PGDMP custom dump of %s\\n' \"$OPSFLEET_BACKUP_JOB\" > \"$1\"\nenv >> \"$1\"\n",
        )?;
        let modules = dirs.module(&format!(
            "keep_count = 5\n\
             [modules.jobs.pre_backup]\ncommand = [\"/bin/sh\", \"{script}\", \"{{output}}\"]\n\
             output = \"app.dump\"\ntimeout = \"30s\"\npass_env = [\"PGHOST\"]\n\
             [modules.jobs.remote]\ntype = \"path\"\npath = \"{nas}\"\nreconcile_every = \"1s\"\n",
            script = script.display(),
            nas = dir.join("nas").display(),
        ));
        let mut blue = CoordinatorSpec::new("blue");
        blue.extra_toml = "[alerts]\ninterval = \"500ms\"\nmin_silence = \"1h\"\n".to_owned();
        c.add_coordinator(blue)?;
        c.add_agent(
            dirs.agent(HOST, &modules)
                .env("PGHOST", "/run/postgresql")
                .env("OPSFLEET_TEST_SECRET", SECRET),
        )?;
        let url = c.nats_url();

        // 1. The scheduled first run: archived with the dump, copied and read back.
        let synced = wait_until_default("backup_synced", async || {
            Ok(backup::synced(&url, HOST).await?.into_iter().next())
        })
        .await?;
        let archive = synced.archive.clone();
        ensure!(synced.destination.starts_with("path:"), "{synced:?}");
        ensure!(
            dir.join("nas").join(&archive).is_file(),
            "remote copy of {archive}"
        );
        ensure!(
            dir.join("nas")
                .join(format!("{archive}.manifest.json"))
                .is_file(),
            "remote manifest"
        );
        // `opsctl backups` shows the remote state (JSON).
        wait_until_default("remote state in opsctl backups", async || {
            let reply: BackupsReply = c.opsctl.json(&["backups", "--host", HOST]).await?;
            Ok(reply
                .backups
                .iter()
                .find(|b| b.job == "app")
                .and_then(|b| b.remote.clone())
                .filter(|r| r.state() == "ok" && r.last_synced.is_some()))
        })
        .await?;

        // 2. The remote copy deleted: the next reconciliation reports it missing, and the
        //    coordinator raises backup_discrepancy.
        std::fs::remove_file(dir.join("nas").join(&archive))?;
        backup::discrepancy(&url, HOST, "with the missing archive", |d| {
            d.missing.contains(&archive)
        })
        .await?;
        let alert = wait_until_default("backup_discrepancy alert firing", async || {
            let alerts: AlertsReply = c.opsctl.json(&["alerts"]).await?;
            Ok(alerts
                .alerts
                .into_iter()
                .find(|a| a.rule == "backup_discrepancy" && a.state.to_string() == "firing"))
        })
        .await?;
        ensure!(alert.detail.contains("1 missing"), "{}", alert.detail);
        let table = c.opsctl.run(&["backups", "--host", HOST]).await?;
        ensure!(
            table.stdout.contains("discrepancy: 1 missing"),
            "REMOTE column: {}",
            table.stdout
        );

        // 3. The next run copies again (catch-up), then the host loses its archives:
        //    `opsctl restore` fetches the remote copy, verifies it and restores the dump too.
        backup::run_now(c, HOST).await?;
        ensure!(
            dir.join("nas").join(&archive).is_file(),
            "catch-up copied {archive} again"
        );
        std::fs::remove_dir_all(&dirs.dest)?;
        let target = dirs.restores.join("restored");
        backup::restore(c, HOST, &archive, &target).await?;
        let dump = std::fs::read_to_string(target.join("app.dump"))?;
        ensure!(
            dump.starts_with("PGDMP custom dump of app\n"),
            "the pre-backup dump restored: {dump}"
        );
        // The step got the variable its job passes, not the rest of the agent's environment.
        ensure!(
            dump.lines().any(|l| l == "PGHOST=/run/postgresql") && !dump.contains(SECRET),
            "the step's environment: {dump}"
        );

        // 4. The host's policy still decides where a restore may write.
        let outside = dir.join("elsewhere").display().to_string();
        let (ok, outcome, _) = verbs::verb(
            c,
            HOST,
            &[
                "restore",
                "--archive",
                archive.as_str(),
                "--target",
                &outside,
            ],
        )
        .await?;
        let text = outcome.to_string();
        ensure!(!ok && text.contains("restore_targets"), "refused: {text}");
        ensure!(!dir.join("elsewhere").exists(), "nothing written outside");
        Ok(())
    })
    .await;
}
