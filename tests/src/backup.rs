//! What the backup tests with a remote copy share (`backup_remote.rs`, `backup_s3.rs`): the
//! source tree, the agent whose policy lets restores write under one root, the job's module
//! entry, waiting for a reconciliation's finding, and running a backup or a restore through
//! `opsctl` with the source's content checked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Result};
use opsfleet_proto::pb;

use crate::stream::events_of;
use crate::{verbs, wait_until_default, AgentSpec, Cluster};

/// The one file of the source tree, and its content.
pub const SOURCE_FILE: &str = "app.toml";
pub const SOURCE_CONTENT: &[u8] = b"x = 1\n";

/// A backup test's directories under the cluster's: the source tree (written), the job's
/// destination and the root restores may write under (created).
pub struct BackupDirs {
    pub src: PathBuf,
    pub dest: PathBuf,
    pub restores: PathBuf,
}

impl BackupDirs {
    pub fn create(dir: &Path) -> Result<BackupDirs> {
        let dirs = BackupDirs {
            src: dir.join("src"),
            dest: dir.join("dest"),
            restores: dir.join("restores"),
        };
        std::fs::create_dir_all(&dirs.src)?;
        std::fs::write(dirs.src.join(SOURCE_FILE), SOURCE_CONTENT)?;
        std::fs::create_dir_all(&dirs.restores)?;
        Ok(dirs)
    }

    /// A backup module with one job `app` of `src` into `dest`, scheduled daily: `job_toml`
    /// adds keys to the job, then its sub-tables (`[modules.jobs.remote]`, …).
    pub fn module(&self, job_toml: &str) -> String {
        format!(
            "[[modules]]\ntype = \"backup\"\nname = \"backup\"\ninterval = \"200ms\"\n\
             [[modules.jobs]]\nname = \"app\"\nsources = [\"{src}\"]\ndestination = \"{dest}\"\n\
             schedule = \"24h\"\n{job_toml}",
            src = self.src.display(),
            dest = self.dest.display(),
        )
    }

    /// Agent `host` with `modules`, heartbeats every 200 ms, restores allowed under `restores`.
    pub fn agent(&self, host: &str, modules: &str) -> AgentSpec {
        AgentSpec::new(host)
            .heartbeat(Duration::from_millis(200))
            .modules_toml(modules)
            .policy(&format!(
                "restore_targets = [{:?}]",
                self.restores.display().to_string()
            ))
    }
}

/// Waits for a `backup_discrepancy` of `host` that `found` accepts (`what` names it).
pub async fn discrepancy(
    url: &str,
    host: &str,
    what: &str,
    found: impl Fn(&pb::BackupDiscrepancy) -> bool,
) -> Result<pb::BackupDiscrepancy> {
    wait_until_default(&format!("backup_discrepancy {what}"), async || {
        Ok(events_of(url, host, "backup_discrepancy")
            .await?
            .into_iter()
            .find_map(|e| match e.body {
                pb::event::Body::BackupDiscrepancy(d) if found(&d) => Some(d),
                _ => None,
            }))
    })
    .await
}

/// The `backup_synced` events of `host` so far.
pub async fn synced(url: &str, host: &str) -> Result<Vec<pb::BackupSynced>> {
    Ok(events_of(url, host, "backup_synced")
        .await?
        .into_iter()
        .filter_map(|e| match e.body {
            pb::event::Body::BackupSynced(s) => Some(s),
            _ => None,
        })
        .collect())
}

/// `opsctl backup run --job app` on `host`, which must complete.
pub async fn run_now(c: &Cluster, host: &str) -> Result<()> {
    let (ok, outcome, stderr) = verbs::verb(c, host, &["backup", "run", "--job", "app"]).await?;
    ensure!(
        ok && outcome["all_completed"] == true,
        "backup run: {outcome} {stderr}"
    );
    Ok(())
}

/// `opsctl restore --archive <archive> --target <target>` on `host`, which must complete
/// with the source file restored.
pub async fn restore(c: &Cluster, host: &str, archive: &str, target: &Path) -> Result<()> {
    let target_arg = target.display().to_string();
    let (ok, outcome, stderr) = verbs::verb(
        c,
        host,
        &["restore", "--archive", archive, "--target", &target_arg],
    )
    .await?;
    ensure!(
        ok && outcome["all_completed"] == true,
        "restore: {outcome} {stderr}"
    );
    let restored = target.join("src").join(SOURCE_FILE);
    ensure!(
        std::fs::read(&restored)? == SOURCE_CONTENT,
        "{} restored",
        restored.display()
    );
    Ok(())
}
