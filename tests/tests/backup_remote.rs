//! Backups that leave the host, end to end with a real nats-server, coordinator, agent and
//! opsctl: a job with a `pg_dump`-style pre-backup step (a script writing a file, run with the
//! variable its job passes and none of the agent's others) and a second-path remote copy. The archive is synced (`backup_synced`, `opsctl backups` shows
//! the remote state); a remote copy deleted is reported as a discrepancy and raises the
//! `backup_discrepancy` alert; the local archives deleted, `opsctl restore` restores from the
//! remote copy, the dump included; a restore outside the host's `restore_targets` is still
//! refused.

use std::time::Duration;

use anyhow::ensure;
use opsfleet_proto::api::{AlertsReply, BackupsReply};
use opsfleet_proto::pb;
use opsfleet_tests::stream::events_of;
use opsfleet_tests::verbs;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};

const HOST: &str = "db-01";
/// In the agent's environment, never passed to its pre-backup step.
const SECRET: &str = "s3cret-never-passed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dumped_and_copied_backup_is_restored_from_the_remote_copy() {
    Cluster::run("backup_remote", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        std::fs::create_dir_all(dir.join("src"))?;
        std::fs::write(dir.join("src/app.toml"), b"x = 1\n")?;
        let script = dir.join("pg_dump.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nprintf 'PGDMP custom dump of %s\\n' \"$OPSFLEET_BACKUP_JOB\" > \"$1\"\nenv >> \"$1\"\n",
        )?;
        let modules = format!(
            "[[modules]]\ntype = \"backup\"\nname = \"backup\"\ninterval = \"200ms\"\n\
             [[modules.jobs]]\nname = \"app\"\nsources = [\"{src}\"]\ndestination = \"{dest}\"\n\
             schedule = \"24h\"\nkeep_count = 5\n\
             [modules.jobs.pre_backup]\ncommand = [\"/bin/sh\", \"{script}\", \"{{output}}\"]\n\
             output = \"app.dump\"\ntimeout = \"30s\"\npass_env = [\"PGHOST\"]\n\
             [modules.jobs.remote]\ntype = \"path\"\npath = \"{nas}\"\nreconcile_every = \"1s\"\n",
            src = dir.join("src").display(),
            dest = dir.join("dest").display(),
            script = script.display(),
            nas = dir.join("nas").display(),
        );
        let mut blue = CoordinatorSpec::new("blue");
        blue.extra_toml = "[alerts]\ninterval = \"500ms\"\nmin_silence = \"1h\"\n".to_owned();
        c.add_coordinator(blue)?;
        let restore_root = dir.join("restores");
        std::fs::create_dir_all(&restore_root)?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(200))
                .env("PGHOST", "/run/postgresql")
                .env("OPSFLEET_TEST_SECRET", SECRET)
                .modules_toml(&modules)
                .policy(&format!(
                    "restore_targets = [{:?}]",
                    restore_root.display().to_string()
                )),
        )?;
        let url = c.nats_url();

        // 1. The scheduled first run: archived with the dump, copied and read back.
        let synced = wait_until_default("backup_synced", async || {
            Ok(events_of(&url, HOST, "backup_synced")
                .await?
                .into_iter()
                .find_map(|e| match e.body {
                    pb::event::Body::BackupSynced(s) => Some(s),
                    _ => None,
                }))
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
        wait_until_default("backup_discrepancy with the missing archive", async || {
            Ok(events_of(&url, HOST, "backup_discrepancy")
                .await?
                .into_iter()
                .find(|e| {
                    matches!(&e.body,
                    pb::event::Body::BackupDiscrepancy(d) if d.missing.contains(&archive))
                }))
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
        let (ok, outcome, stderr) =
            verbs::verb(c, HOST, &["backup", "run", "--job", "app"]).await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "backup run: {outcome} {stderr}"
        );
        ensure!(
            dir.join("nas").join(&archive).is_file(),
            "catch-up copied {archive} again"
        );
        std::fs::remove_dir_all(dir.join("dest"))?;
        let target = restore_root.join("restored");
        let target_arg = target.display().to_string();
        let (ok, outcome, stderr) = verbs::verb(
            c,
            HOST,
            &[
                "restore",
                "--archive",
                archive.as_str(),
                "--target",
                &target_arg,
            ],
        )
        .await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "restore: {outcome} {stderr}"
        );
        ensure!(
            std::fs::read(target.join("src/app.toml"))? == b"x = 1\n",
            "source restored"
        );
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
