//! Remote destination tests on real temp dirs (the `path` destination): a run's archive and
//! manifest copied and read back, catch-up of archives the remote lacks, retention on the
//! remote, reconciliation (missing, extra, mismatched), the local archive deleted and
//! restored from the remote copy (verified against its manifest), and the module's events.

use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opsfleet_proto::pb;
use opsfleet_report::error_chain;

use super::*;
use crate::config::{BackupConfig, BackupJobConfig};
use crate::modules::backup::fixtures;
use crate::modules::backup::{
    restore, run_job, ArchiveSelector, BackupModule, RestoreError, RunOutcome,
};
use crate::modules::{Module, ModuleCtx};

const DAY: Duration = Duration::from_secs(86_400);

fn job(tmp: &Path) -> BackupJobConfig {
    let src = tmp.join("src/data");
    fs::create_dir_all(src.join("nested")).expect("mkdir");
    fs::write(src.join("a.txt"), b"alpha\n").expect("write");
    fs::write(src.join("nested/b.bin"), vec![7u8; 100_000]).expect("write");
    BackupJobConfig {
        keep_days: 0,
        keep_count: 2,
        remote: Some(fixtures::path_remote(tmp.join("nas/app"))),
        ..fixtures::job(tmp, "app", vec![src])
    }
}

fn dest(job: &BackupJobConfig) -> Box<dyn Destination> {
    open(job.remote.as_ref().expect("remote")).expect("open")
}

fn run(job: &BackupJobConfig, at: SystemTime) -> RunOutcome {
    run_job(job, at, &mut |_| {}, &AtomicBool::new(false)).expect("backup run")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn t(day: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + DAY * u32::try_from(day).unwrap_or(0)
}

#[test]
fn a_synced_archive_is_a_verified_copy_and_remote_retention_keeps_the_newest() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path());
    let d = dest(&job);
    let remote_dir = tmp.path().join("nas/app");
    let first = run(&job, t(0));
    let a0 = first.written.manifest.archive.clone();
    let s = sync(&job, d.as_ref(), &a0, t(0)).expect("sync");
    assert_eq!(s.copied, vec![a0.clone()]);
    assert!(s.pruned.is_empty());
    assert_eq!(
        fs::read(remote_dir.join(&a0)).expect("remote archive"),
        fs::read(job.destination.join(&a0)).expect("local archive")
    );
    assert_eq!(
        names(&remote_dir),
        vec![a0.clone(), format!("{a0}{MANIFEST_SUFFIX}")]
    );
    // A second run whose sync "failed" earlier: the next sync catches up.
    let a1 = run(&job, t(1)).written.manifest.archive;
    let a2 = run(&job, t(2)).written.manifest.archive;
    let s = sync(&job, d.as_ref(), &a2, t(2)).expect("sync");
    // Local retention (keep_count 2) already removed a0 locally; a1 is copied as catch-up;
    // remote retention then drops a0 there too.
    assert_eq!(s.copied, vec![a2.clone(), a1.clone()]);
    assert_eq!(s.pruned, vec![a0.clone()]);
    assert_eq!(
        names(&remote_dir),
        vec![
            a1.clone(),
            format!("{a1}{MANIFEST_SUFFIX}"),
            a2.clone(),
            format!("{a2}{MANIFEST_SUFFIX}")
        ]
    );
    assert_eq!(
        reconcile(&job, d.as_ref()).expect("reconcile"),
        Discrepancy {
            remote_archives: 2,
            ..Discrepancy::default()
        }
    );
}

#[test]
fn reconciliation_reports_missing_extra_and_mismatched_copies() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut job = job(tmp.path());
    job.keep_count = 5;
    let d = dest(&job);
    let remote_dir = tmp.path().join("nas/app");
    let mut archives = Vec::new();
    for day in 0..3 {
        let a = run(&job, t(day)).written.manifest.archive;
        sync(&job, d.as_ref(), &a, t(day)).expect("sync");
        archives.push(a);
    }
    // Deleted remotely, flipped byte remotely, deleted locally.
    fs::remove_file(remote_dir.join(&archives[0])).expect("rm");
    let mut bytes = fs::read(remote_dir.join(&archives[1])).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(remote_dir.join(&archives[1]), bytes).expect("write");
    fs::remove_file(job.destination.join(&archives[2])).expect("rm");
    let got = reconcile(&job, d.as_ref()).expect("reconcile");
    assert_eq!(
        got,
        Discrepancy {
            missing: vec![archives[0].clone()],
            extra: vec![archives[2].clone()],
            mismatched: vec![archives[1].clone()],
            remote_archives: 2,
        }
    );
}

#[test]
fn the_local_archive_deleted_is_restored_from_the_remote_copy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path());
    let d = dest(&job);
    let a = run(&job, t(0)).written.manifest.archive;
    sync(&job, d.as_ref(), &a, t(0)).expect("sync");
    // The host's disk lost its archives.
    fs::remove_dir_all(&job.destination).expect("rm");
    let target = tmp.path().join("restored");
    let report = restore(&job, &ArchiveSelector::Latest, &target).expect("restore");
    assert_eq!(report.archive, a);
    assert_eq!(report.files, 2);
    assert_eq!(
        fs::read(target.join("data/nested/b.bin")).expect("restored"),
        vec![7u8; 100_000]
    );
    // Fetched back into the destination, complete.
    assert_eq!(
        names(&job.destination),
        vec![a.clone(), format!("{a}{MANIFEST_SUFFIX}")]
    );

    // A damaged remote copy is refused by the manifest check; the target stays untouched.
    fs::remove_dir_all(&job.destination).expect("rm");
    let remote_archive = tmp.path().join("nas/app").join(&a);
    let mut bytes = fs::read(&remote_archive).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&remote_archive, bytes).expect("write");
    let target2 = tmp.path().join("restored2");
    let err = restore(&job, &ArchiveSelector::Named(a.clone()), &target2).expect_err("corrupt");
    assert!(matches!(err, RestoreError::Corrupt { .. }), "{err}");
    assert!(!target2.exists());

    // Nothing remote either: a clear error naming the destination.
    fs::remove_dir_all(tmp.path().join("nas")).expect("rm");
    fs::remove_dir_all(&job.destination).expect("rm");
    let err = restore(&job, &ArchiveSelector::Latest, &target2).expect_err("nothing");
    let chain = error_chain(&err);
    assert!(chain.contains("path:"), "{chain}");
    assert!(chain.contains("no complete archive"), "{chain}");
}

#[test]
fn a_failed_copy_is_an_error_naming_the_destination() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut job = job(tmp.path());
    // The remote path is a file: nothing can be created below it.
    fs::write(tmp.path().join("nas-file"), b"x").expect("write");
    if let Some(r) = job.remote.as_mut() {
        r.path = tmp.path().join("nas-file/app");
    }
    let a = run(&job, t(0)).written.manifest.archive;
    let err = sync(&job, dest(&job).as_ref(), &a, t(0)).expect_err("cannot copy");
    let chain = error_chain(&err);
    assert!(chain.contains("nas-file/app"), "{chain}");
    assert!(chain.contains(&a), "{chain}");
}

fn ctx(now: SystemTime) -> ModuleCtx {
    ModuleCtx {
        now,
        uptime: Duration::ZERO,
        statuses: Vec::new(),
        outbox_pending: 0,
        health: Vec::new(),
        services: Vec::new(),
        labels: Default::default(),
        service_configs: Default::default(),
        service_roles: Default::default(),
        data_dir: std::env::temp_dir().into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_reports_synced_and_reconciled() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path());
    let mut m = BackupModule::new(&BackupConfig {
        name: None,
        interval: Duration::from_millis(50),
        jobs: vec![job.clone()],
    });
    let now = SystemTime::now();
    let mut all = Vec::new();
    // First the run and its sync, then (the job idle again) a reconciliation.
    for _ in 0..400 {
        all.extend(m.run_once(&ctx(now)).await.expect("tick"));
        if all
            .iter()
            .any(|b| matches!(b, pb::event::Body::BackupDiscrepancy(_)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let synced = all
        .iter()
        .find_map(|b| match b {
            pb::event::Body::BackupSynced(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no backup_synced in {all:?}"));
    assert_eq!(synced.job, "app");
    assert!(synced.destination.starts_with("path:"), "{synced:?}");
    assert!(synced.bytes > 0);
    let d = all
        .iter()
        .find_map(|b| match b {
            pb::event::Body::BackupDiscrepancy(d) => Some(d.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no backup_discrepancy in {all:?}"));
    assert_eq!(
        (d.missing.len(), d.extra.len(), d.mismatched.len()),
        (0, 0, 0)
    );
    assert_eq!(d.remote_archives, 1);
}

#[test]
fn s3_credentials_files_are_parsed_in_the_aws_shape() {
    let text =
        "[default]\n# comment\naws_access_key_id = AKIA1\naws_secret_access_key=\"s3cr3t\"\n";
    assert_eq!(
        super::s3::parse_credentials(text),
        Some(("AKIA1".to_owned(), "s3cr3t".to_owned()))
    );
    assert_eq!(
        super::s3::parse_credentials("aws_access_key_id = a\n"),
        None
    );
    assert_eq!(
        super::s3::parse_credentials("aws_access_key_id = a\naws_secret_access_key =\n"),
        None
    );
}
