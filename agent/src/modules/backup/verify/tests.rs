//! Restore test tests on real archives in temp dirs: a good archive passes with its files
//! counted and the check run in the restored tree; a file whose content differs from the
//! manifest fails naming it; a check exiting 1 fails with its stderr; the remote copy is read
//! (not the local one, which may be gone); the scheduled and on-demand paths of the module;
//! and the scratch directory is gone in every case.

use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{BackupConfig, BackupJobConfig, VerifyCheckConfig};
use crate::modules::backup::archive::Manifest;
use crate::modules::backup::fixtures;
use crate::modules::backup::naming::{list_archives, MANIFEST_SUFFIX};
use crate::modules::backup::{run_job, BackupModule};
use crate::modules::{Module, ModuleCtx, OnDemand};

/// A job over `tmp/src/data` (two files), archives in `tmp/backups`.
fn job(tmp: &Path) -> BackupJobConfig {
    let src = tmp.join("src/data");
    fs::create_dir_all(src.join("nested")).expect("mkdir");
    fs::write(src.join("a.txt"), b"alpha\n").expect("write");
    fs::write(src.join("nested/b.bin"), vec![7u8; 50_000]).expect("write");
    fixtures::job(tmp, "app", vec![src])
}

fn sh_check(script: &str) -> VerifyCheckConfig {
    VerifyCheckConfig {
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        timeout: Duration::from_secs(30),
    }
}

/// Writes one archive of `job`; returns its name.
fn backup(job: &BackupJobConfig) -> String {
    let cancel = AtomicBool::new(false);
    let out = run_job(job, SystemTime::now(), &mut |_| {}, &cancel).expect("backup run");
    out.written.manifest.archive
}

fn test(job: &BackupJobConfig, root: &Path) -> TestReport {
    let report = restore_test(job, root, &AtomicBool::new(false));
    assert!(
        !scratch_dir(root, &job.name).exists(),
        "scratch dir left behind: {report:?}"
    );
    report
}

#[test]
fn a_good_archive_passes_and_the_check_runs_in_the_restored_tree() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut j = job(tmp.path());
    let archive = backup(&j);
    // The check sees the restored files in its working dir and in the env var.
    j.verify_check = Some(sh_check(
        "test \"$PWD\" = \"$OPSFLEET_RESTORE_DIR\" && test \"$OPSFLEET_BACKUP_JOB\" = app \
         && grep -qx alpha data/a.txt && test $(wc -c < data/nested/b.bin) -eq 50000 \
         && touch \"$OPSFLEET_RESTORE_DIR/../../../check-ran\"",
    ));
    let root = tmp.path().join("agent-data").join(SCRATCH_DIR);
    let r = test(&j, &root);
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.archive, archive);
    assert_eq!(r.source, LOCAL_SOURCE);
    assert_eq!((r.files, r.bytes), (2, 6 + 50_000));
    assert_eq!(r.check, "passed");
    assert!(tmp.path().join("agent-data/check-ran").exists());
    let body = r.to_body(BY_SCHEDULE);
    assert!(body.passed && body.reason.is_empty(), "{body:?}");
    assert_eq!(body.requested_by, "schedule");
    // Nothing was restored near the sources, and the archive is still there.
    assert_eq!(list_archives(&j.destination, "app").expect("list").len(), 1);
    // Without a check: passed, `check` empty.
    j.verify_check = None;
    let r = test(&j, &root);
    assert!(r.passed() && r.check.is_empty(), "{r:?}");
}

#[test]
fn a_file_differing_from_the_manifest_fails_naming_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = job(tmp.path());
    let archive = backup(&j);
    // The manifest says a.txt holds something else: the archive's own hash still matches,
    // so the restore reads it and stops at that file.
    let mpath = j.destination.join(format!("{archive}{MANIFEST_SUFFIX}"));
    let mut m: Manifest = serde_json::from_slice(&fs::read(&mpath).expect("read")).expect("json");
    let e = (m.entries.iter_mut())
        .find(|e| e.path == "data/a.txt")
        .expect("entry");
    e.sha256 = Some("0".repeat(64));
    fs::write(&mpath, serde_json::to_vec(&m).expect("json")).expect("write");
    let root = tmp.path().join("scratch");
    let r = test(&j, &root);
    assert!(!r.passed());
    let body = r.to_body("cmd-1");
    assert!(body.reason.contains("data/a.txt"), "{body:?}");
    assert!(body.reason.contains("sha256"), "{body:?}");
    assert_eq!(
        (body.archive.as_str(), body.check.as_str()),
        (archive.as_str(), "")
    );
    assert_eq!(body.requested_by, "cmd-1");
    assert!(r.detail().is_err_and(|d| d.contains("data/a.txt")));
}

#[test]
fn a_failing_check_fails_the_test_with_its_stderr() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut j = job(tmp.path());
    backup(&j);
    j.verify_check = Some(sh_check(
        "echo 'pg_restore: error: dump is truncated' >&2; exit 1",
    ));
    let r = test(&j, &tmp.path().join("scratch"));
    assert!(!r.passed());
    assert_eq!(r.check, "failed");
    assert_eq!(r.files, 2, "the restore itself went through: {r:?}");
    let body = r.to_body(BY_SCHEDULE);
    assert!(body.reason.contains("dump is truncated"), "{body:?}");
    assert!(body.reason.contains("exited 1"), "{body:?}");
    assert!(body.reason.contains("verify_check"), "{body:?}");
}

#[test]
fn no_archive_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let j = job(tmp.path());
    let r = test(&j, &tmp.path().join("scratch"));
    assert!(!r.passed());
    assert!(r.archive.is_empty());
    assert!(
        r.to_body("x").reason.contains("no complete archive"),
        "{r:?}"
    );
}

#[test]
fn the_remote_copy_is_tested_even_when_the_local_one_is_gone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut j = job(tmp.path());
    j.remote = Some(fixtures::path_remote(tmp.path().join("nas/app")));
    let archive = backup(&j);
    let cfg = j.remote.clone().expect("remote");
    let dest = remote::open(&cfg).expect("open");
    remote::sync(&j, dest.as_ref(), &archive, SystemTime::now()).expect("sync");
    for n in [archive.clone(), format!("{archive}{MANIFEST_SUFFIX}")] {
        fs::remove_file(j.destination.join(n)).expect("rm local");
    }
    let r = test(&j, &tmp.path().join("scratch"));
    assert!(r.passed(), "{r:?}");
    assert_eq!(r.source, cfg.label());
    assert!(r.source.starts_with("path:"), "{r:?}");
    assert_eq!((r.archive.as_str(), r.files), (archive.as_str(), 2));
    // Read into the scratch dir, not fetched back into the job's destination.
    assert!(list_archives(&j.destination, "app")
        .expect("list")
        .is_empty());
    // A remote copy that differs from its manifest fails, naming the remote.
    fs::write(cfg.path.join(&archive), b"not an archive").expect("clobber");
    let r = test(&j, &tmp.path().join("scratch"));
    assert!(!r.passed());
    assert_eq!(r.source, cfg.label());
    assert!(r.to_body("x").reason.contains("sha256"), "{r:?}");
}

fn ctx(now: SystemTime, data_dir: &Path) -> ModuleCtx {
    ModuleCtx {
        now,
        data_dir: data_dir.into(),
        ..ModuleCtx::empty()
    }
}

/// Ticks with `c` until a `restore_tested` comes out.
async fn tick_until_tested(m: &mut BackupModule, c: &ModuleCtx) -> pb::RestoreTested {
    let bodies =
        fixtures::tick_until(m, c, |b| matches!(b, pb::event::Body::RestoreTested(_))).await;
    match bodies.last() {
        Some(pb::event::Body::RestoreTested(t)) => t.clone(),
        other => panic!("no restore test: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_module_tests_on_schedule_persists_the_time_and_tests_on_demand() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut j = job(tmp.path());
    j.verify_restore = Some(Duration::from_secs(3600));
    let data = tmp.path().join("data");
    let cfg = BackupConfig {
        name: None,
        interval: Duration::from_secs(1),
        jobs: vec![j.clone()],
    };
    let t0 = SystemTime::now();
    let mut m = BackupModule::new(&cfg);
    // First tick: the backup runs (no archive yet); the test's period starts now.
    let bodies = fixtures::tick_until(&mut m, &ctx(t0, &data), |b| {
        matches!(b, pb::event::Body::BackupCompleted(_))
    })
    .await;
    assert!(
        !bodies
            .iter()
            .any(|b| matches!(b, pb::event::Body::RestoreTested(_))),
        "tested before its period: {bodies:?}"
    );
    let state = m.take_state();
    assert_eq!(state.len(), 1, "{state:?}");
    assert_eq!(state[0].0, "verify/app");
    // One period later: due.
    let t1 = t0 + Duration::from_secs(3600);
    let t = tick_until_tested(&mut m, &ctx(t1, &data)).await;
    assert!(t.passed, "{t:?}");
    assert_eq!(
        (t.source.as_str(), t.requested_by.as_str()),
        ("local", "schedule")
    );
    assert!(!data.join(SCRATCH_DIR).join("app").exists());
    // A new instance (agent restart) keeps the schedule: not due again before t1 + period.
    let saved: Vec<(String, Vec<u8>)> = (m.take_state().into_iter())
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    let mut m2 = BackupModule::new(&cfg);
    m2.restore(saved);
    let c = ctx(t1 + Duration::from_secs(60), &data);
    for _ in 0..20 {
        let bodies = m2.run_once(&c).await.expect("tick");
        assert!(
            !bodies
                .iter()
                .any(|b| matches!(b, pb::event::Body::RestoreTested(_))),
            "{bodies:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // On demand: unknown jobs are refused, a known one answers with the test's detail.
    let ask = |job: &str| OnDemand::VerifyRestore {
        job: job.into(),
        requested_by: "cmd-7".into(),
        scratch_root: data.join(SCRATCH_DIR),
    };
    let err = m2.run_now(&ask("nope"), t1).expect_err("unknown job");
    assert!(err.contains("no backup job \"nope\""), "{err}");
    let ticket = m2.run_now(&ask("app"), t1).expect("started");
    // Never beside the job's run: a backup asked now is refused while the test runs.
    let busy = m2
        .run_now(&OnDemand::Run("app".into()), t1)
        .expect_err("busy");
    assert!(busy.contains("already running"), "{busy}");
    let t = tick_until_tested(&mut m2, &c).await;
    assert_eq!(t.requested_by, "cmd-7");
    let detail = ticket.await.expect("answered").expect("passed");
    assert!(detail.contains("passed"), "{detail}");
}
