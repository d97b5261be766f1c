//! Backups copied to S3, end to end against a real S3-compatible server (moto's server mode,
//! installed into a cached venv by the harness, on a free loopback port) with a real
//! nats-server, coordinator, agent and opsctl. The archive is uploaded and read back
//! (`backup_synced`, the object's bytes equal the local archive); remote retention deletes the
//! oldest objects; reconciliations compare the objects' metadata (sha256, size) and download
//! nothing; an object overwritten without metadata is read back and reported mismatched, an
//! object deleted in the bucket is reported missing (`backup_discrepancy`); the local archives
//! deleted, `opsctl restore` restores from S3. Credentials come from a 0600 file. Fails (never skips) when moto cannot be installed.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context};
use opsfleet_tests::backup::{self, BackupDirs};
use opsfleet_tests::s3server::S3Server;
use opsfleet_tests::{wait_until_default, Cluster, CoordinatorSpec};

const HOST: &str = "db-01";
const BUCKET: &str = "opsfleet-backups";
const PREFIX: &str = "hosts/db-01";

/// The object's bytes (it must be there).
async fn object_bytes(s3: &S3Server, key: &str) -> anyhow::Result<Vec<u8>> {
    s3.get(BUCKET, key)
        .await?
        .with_context(|| format!("no object {key}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_copied_to_s3_pruned_reconciled_and_restored_from_it() {
    Cluster::run("backup_s3", async |c: &mut Cluster| {
        let dir = c.dir().to_owned();
        let s3 = S3Server::start(&dir).await?;
        s3.create_bucket(BUCKET).await?;
        let dirs = BackupDirs::create(&dir)?;
        let creds = dir.join("s3-credentials");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = testing\naws_secret_access_key = testing-secret\n",
        )?;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600))?;
        let modules = dirs.module(&format!(
            "keep_days = 0\nkeep_count = 2\n\
             [modules.jobs.remote]\ntype = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
             endpoint = \"{endpoint}\"\ncredentials_file = \"{creds}\"\nreconcile_every = \"1s\"\n",
            endpoint = s3.endpoint,
            creds = creds.display(),
        ));
        c.add_coordinator(CoordinatorSpec::new("blue"))?;
        c.add_agent(dirs.agent(HOST, &modules))?;
        let url = c.nats_url();
        let key = |name: &str| format!("{PREFIX}/{name}");

        // 1. The first run: uploaded, read back, the object is the local archive.
        let first = wait_until_default("backup_synced", async || {
            Ok(backup::synced(&url, HOST).await?.into_iter().next())
        })
        .await
        .with_context(|| s3.log_tail())?;
        let a1 = first.archive.clone();
        ensure!(
            first
                .destination
                .starts_with("s3://opsfleet-backups/hosts/db-01"),
            "{first:?}"
        );
        ensure!(
            !first.destination.contains("testing"),
            "no credential in {first:?}"
        );
        let object = s3
            .get(BUCKET, &key(&a1))
            .await?
            .context("object uploaded")?;
        ensure!(
            object == std::fs::read(dirs.dest.join(&a1))?,
            "the object is the local archive"
        );
        ensure!(
            s3.get(BUCKET, &key(&format!("{a1}.manifest.json")))
                .await?
                .is_some(),
            "manifest uploaded"
        );

        // 2. Two more runs: keep_count = 2 prunes the oldest object (archive and manifest).
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            backup::run_now(c, HOST).await?;
        }
        let synced = wait_until_default("three syncs, the oldest pruned", async || {
            let all = backup::synced(&url, HOST).await?;
            Ok(
                (all.len() >= 3 && all.iter().any(|s| s.remote_pruned.contains(&a1)))
                    .then_some(all),
            )
        })
        .await?;
        // Names sort by their timestamp: the newest is the third run's.
        let a3 = synced
            .iter()
            .map(|s| s.archive.clone())
            .max()
            .context("last sync")?;
        let keys = s3.keys(BUCKET, PREFIX).await?;
        ensure!(keys.len() == 4, "2 archives and 2 manifests: {keys:?}");
        ensure!(
            !keys.iter().any(|k| k.contains(&a1)),
            "{a1} pruned: {keys:?}"
        );
        ensure!(keys.contains(&key(&a3)), "{a3} kept: {keys:?}");

        // 3. Reconciliations compare each object's metadata (one HEAD) with the manifest and
        //    download nothing: the only GET of a3 is the read-back after its upload.
        let heads = s3.requests("HEAD", BUCKET, &key(&a3));
        wait_until_default("two more reconciliations of a3", async || {
            Ok((s3.requests("HEAD", BUCKET, &key(&a3)) >= heads + 2).then_some(()))
        })
        .await
        .with_context(|| s3.log_tail())?;
        let gets = s3.requests("GET", BUCKET, &key(&a3));
        ensure!(
            gets == 1,
            "{a3} downloaded {gets} times:\n{}",
            s3.log_tail()
        );

        // 4. The object overwritten by another writer (same size, another byte, no metadata):
        //    read back and reported mismatched.
        let mut other = object_bytes(&s3, &key(&a3)).await?;
        let mid = other.len() / 2;
        other[mid] ^= 0xff;
        s3.put(BUCKET, &key(&a3), other).await?;
        backup::discrepancy(&url, HOST, "with the overwritten object", |d| {
            d.mismatched.contains(&a3)
        })
        .await?;
        ensure!(
            s3.requests("GET", BUCKET, &key(&a3)) > gets + 1,
            "the object without metadata was read back (besides this test's own GET)"
        );

        // 5. An object deleted in the bucket: reported missing by the next reconciliation.
        s3.delete(BUCKET, &key(&a3)).await?;
        backup::discrepancy(&url, HOST, "with the deleted object", |d| {
            d.missing.contains(&a3)
        })
        .await?;

        // 6. The host loses its archives: `opsctl restore` fetches the remaining S3 copy,
        //    verifies it against its manifest and restores it.
        let keys = s3.keys(BUCKET, PREFIX).await?;
        let a2 = synced
            .iter()
            .map(|s| s.archive.clone())
            .find(|a| *a != a1 && *a != a3 && keys.contains(&key(a)))
            .with_context(|| format!("the middle archive in {keys:?}"))?;
        std::fs::remove_dir_all(&dirs.dest)?;
        backup::restore(c, HOST, &a2, &dirs.restores.join("restored")).await?;
        ensure!(dirs.dest.join(&a2).is_file(), "archive fetched back");
        Ok(())
    })
    .await;
}
