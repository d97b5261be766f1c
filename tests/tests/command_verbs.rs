//! The command verbs beyond pause/resume, end to end with a real nats-server, coordinator,
//! agent and opsctl: `backup run` writes an archive on disk and is tracked to `completed`;
//! `config apply` of a bad config fails with the agent's reason and the old config stays,
//! a good one is applied; `config rollback --to <first fingerprint>` (found by the
//! coordinator in the log) brings the first config back; clear refusals for a restore
//! without --archive and an unknown fingerprint; `--label k=v` selects hosts by the labels
//! their agents declare; a backup runs in the background, not holding up later commands.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use opsfleet_proto::pb;
use opsfleet_tests::{wait_until_default, AgentSpec, Cluster, CoordinatorSpec};
use serde_json::Value;

const HOST: &str = "db-01";

use opsfleet_tests::stream::events_of;
use opsfleet_tests::verbs::{self, backup_toml, command_view, config_apply, only_command};

/// The disk module's `module_state` bodies, oldest first.
async fn disk_states(c: &Cluster) -> Result<Vec<pb::ModuleState>> {
    Ok(events_of(&c.nats_url(), HOST, "module_state")
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::ModuleState(m) if m.module == "disk" => Some(m),
            _ => None,
        })
        .collect())
}

/// `opsctl --output json <args> --host db-01 --wait 60s`.
async fn verb(c: &Cluster, args: &[&str]) -> Result<(bool, Value, String)> {
    verbs::verb(c, HOST, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_run_config_apply_reject_and_rollback() {
    Cluster::run("command_verbs", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        std::fs::create_dir_all(dir.join("src/sub"))?;
        std::fs::write(dir.join("src/a.txt"), b"alpha\n")?;
        std::fs::write(dir.join("src/sub/b.bin"), vec![9u8; 8192])?;
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(
            AgentSpec::new(HOST)
                .heartbeat(Duration::from_millis(200))
                .disk(Duration::from_millis(300), vec!["/".into()])
                .modules_toml(&backup_toml(&dir))
                // A table header may follow the modules: this is the top-level `labels`.
                .modules_toml("[labels]\nrole = \"db\"\n")
                // Remote restores only where the host allows them.
                .policy(&format!(
                    "restore_targets = [{:?}]",
                    dir.display().to_string()
                )),
        )?;
        c.add_agent(
            AgentSpec::new("web-01")
                .heartbeat(Duration::from_millis(200))
                .modules_toml("[labels]\nrole = \"web\"\n"),
        )?;
        let url = c.nats_url();

        // The job has no archive yet, so its schedule runs it once at start; once that
        // run's backup_completed is in the stream, the job is idle.
        wait_until_default("the scheduled first backup", async || {
            Ok((!events_of(&url, HOST, "backup_completed").await?.is_empty()).then_some(()))
        })
        .await?;
        let archives = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir.join("dest"))
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".tar.zst"))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names
        };
        let before = archives(&dir);
        ensure!(before.len() == 1, "one scheduled archive: {before:?}");

        // 1. backup run: a new archive on disk, lifecycle issued → accepted → completed.
        let started = std::time::Instant::now();
        let (ok, outcome, stderr) = verb(c, &["backup", "run", "--job", "app"]).await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "backup run: {outcome} {stderr}"
        );
        let cmd = only_command(&outcome)?;
        let after = archives(&dir);
        ensure!(after.len() == 2, "one more archive: {after:?}");
        let new = after
            .iter()
            .find(|a| !before.contains(a))
            .context("new archive")?;
        let detail = cmd["detail"].as_str().unwrap_or_default();
        ensure!(
            detail.contains(new.as_str()),
            "detail {detail:?} names {new}"
        );
        ensure!(dir
            .join("dest")
            .join(format!("{new}.manifest.json"))
            .exists());
        let steps: Vec<&str> = cmd["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter_map(|h| h["state"].as_str())
            .collect();
        ensure!(
            steps == ["issued", "accepted", "completed"],
            "lifecycle {steps:?}"
        );
        ensure!(
            cmd["action"] == "backup_run"
                && !cmd["issued_by"].as_str().unwrap_or_default().is_empty()
        );
        eprintln!("backup run answered completed in {:?}", started.elapsed());
        let completed = events_of(&url, HOST, "backup_completed").await?;
        ensure!(
            completed.iter().any(|e| matches!(&e.body,
                pb::event::Body::BackupCompleted(b) if b.archive.ends_with(new.as_str()))),
            "backup_completed of the on-demand run in the stream"
        );

        // 1b. restore of that archive (job inferred from its name) reproduces the sources
        // (entries are stored under each source's base name).
        let restored = dir.join("restored");
        let restored_arg = restored.display().to_string();
        let (ok, outcome, stderr) = verb(
            c,
            &[
                "restore",
                "--archive",
                new.as_str(),
                "--target",
                &restored_arg,
            ],
        )
        .await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "restore: {outcome} {stderr}"
        );
        ensure!(
            std::fs::read(restored.join("src/a.txt"))? == b"alpha\n",
            "a.txt restored"
        );
        ensure!(
            std::fs::read(restored.join("src/sub/b.bin"))?.len() == 8192,
            "b.bin restored"
        );

        // 2. The first config, as the agent announced it at start.
        let first = disk_states(c).await?;
        let first = first.first().context("disk started")?;
        ensure!(
            !first.config_toml.is_empty(),
            "start event carries the config"
        );
        let first_fp = first.config_fingerprint.clone();

        // 3. A bad config is rejected with the agent's reason; the old one stays.
        let bad =
            "[[modules]]\ntype = \"disk\"\nname = \"disk\"\ninterval = \"0s\"\npaths = [\"/\"]\n";
        let (ok, outcome, _) = config_apply(c, HOST, "disk", "disk-bad.toml", bad).await?;
        ensure!(!ok, "a rejected config fails opsctl");
        let cmd = only_command(&outcome)?;
        ensure!(cmd["state"] == "failed", "bad apply: {cmd}");
        let reason = cmd["detail"].as_str().unwrap_or_default();
        ensure!(
            reason.contains("interval") && reason.contains("greater than 0"),
            "reason {reason:?}"
        );
        let rejected = events_of(&url, HOST, "config_rejected").await?;
        ensure!(
            rejected.iter().any(|e| matches!(&e.body,
                pb::event::Body::ConfigRejected(r) if r.kept_fingerprint == first_fp)),
            "config_rejected keeps {first_fp}"
        );
        let now = disk_states(c).await?;
        ensure!(
            now.last().map(|m| m.config_fingerprint.as_str()) == Some(first_fp.as_str()),
            "old config kept"
        );

        // 4. A good config is applied.
        let good = "type = \"disk\"\nname = \"disk\"\ninterval = \"700ms\"\npaths = [\"/\"]\n";
        let (ok, outcome, stderr) = config_apply(c, HOST, "disk", "disk-good.toml", good).await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "good apply: {outcome} {stderr}"
        );
        let second_fp = wait_until_default("the reconfigured disk module", async || {
            let states = disk_states(c).await?;
            Ok(states
                .last()
                .filter(|m| m.reason == "reconfigured" && m.config_fingerprint != first_fp)
                .map(|m| m.config_fingerprint.clone()))
        })
        .await?;
        let detail = only_command(&outcome)?["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        ensure!(
            detail.contains(&second_fp),
            "apply detail {detail:?} names {second_fp}"
        );

        // 5. Clear refusals: unknown fingerprint, restore without --archive (clap) / target.
        let (ok, _, stderr) = verb(
            c,
            &["config", "rollback", "disk", "--to", "0123456789abcdef"],
        )
        .await?;
        ensure!(
            !ok && stderr.contains("no config of module disk with fingerprint 0123456789abcdef"),
            "{stderr}"
        );
        ensure!(
            stderr.contains(&first_fp),
            "known fingerprints listed: {stderr}"
        );
        let out = c
            .opsctl
            .run(&["restore", "--target", "/tmp/x", "--host", HOST])
            .await?;
        ensure!(
            !out.status.success() && out.stderr.contains("--archive"),
            "{}",
            out.stderr
        );

        // 6. Rollback to the first fingerprint (a prefix is enough), found in the log.
        let (ok, outcome, stderr) =
            verb(c, &["config", "rollback", "disk", "--to", &first_fp[..12]]).await?;
        ensure!(
            ok && outcome["all_completed"] == true,
            "rollback: {outcome} {stderr}"
        );
        ensure!(only_command(&outcome)?["action"] == "config_rollback");
        wait_until_default("the first config back", async || {
            let states = disk_states(c).await?;
            Ok(states
                .last()
                .filter(|m| m.config_fingerprint == first_fp)
                .map(|_| ()))
        })
        .await?;

        // 7. --label: only the hosts whose agents declare it; an unused label is refused.
        let out = c
            .opsctl
            .run(&[
                "--output", "json", "noop", "--label", "role=db", "--wait", "60s",
            ])
            .await?
            .ok()?;
        let outcome: Value = serde_json::from_str(out.stdout.trim())?;
        let hosts: Vec<&str> = outcome["commands"]
            .as_array()
            .context("commands")?
            .iter()
            .filter_map(|v| v["target"].as_str())
            .collect();
        ensure!(
            hosts == [HOST] && outcome["all_completed"] == true,
            "noop by label: {outcome}"
        );
        let out = c.opsctl.run(&["noop", "--label", "role=cache"]).await?;
        ensure!(
            !out.status.success()
                && out.stderr.contains(
                    "no host has the labels role=cache (labels in use: role=db, role=web)"
                ),
            "{}",
            out.stderr
        );

        // 8. A backup runs in the background on the agent: a command issued behind it
        //    completes before it does (32 MB of incompressible data keeps it busy).
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let big: Vec<u8> = (0..32 * 1024 * 1024 / 8)
            .flat_map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()
            })
            .collect();
        std::fs::write(dir.join("src/big.bin"), big)?;
        let out = c
            .opsctl
            .run(&[
                "--output",
                "json",
                "backup",
                "run",
                "--host",
                HOST,
                "--no-wait",
            ])
            .await?
            .ok()?;
        let issued: Value = serde_json::from_str(out.stdout.trim())?;
        let backup_id = only_command(&issued)?["id"]
            .as_str()
            .context("id")?
            .to_owned();
        let (ok, outcome, stderr) = verb(c, &["noop"]).await?;
        ensure!(ok, "noop behind a backup: {outcome} {stderr}");
        let noop_done = only_command(&outcome)?["history"]
            .as_array()
            .and_then(|h| h.last())
            .and_then(|s| s["at_unix_ms"].as_i64())
            .context("noop completed at")?;
        let backup_done = wait_until_default("the background backup", async || {
            let view = &command_view(c, &backup_id).await?;
            if view["state"] == "completed" {
                return Ok(view["history"]
                    .as_array()
                    .and_then(|h| h.last())
                    .and_then(|s| s["at_unix_ms"].as_i64()));
            }
            ensure!(
                view["state"] != "failed",
                "background backup failed: {view}"
            );
            Ok(None)
        })
        .await?;
        ensure!(
            noop_done < backup_done,
            "noop completed at {noop_done}, after the backup at {backup_done}"
        );
        eprintln!(
            "noop answered {} ms before the backup",
            backup_done - noop_done
        );
        Ok(())
    })
    .await;
}
