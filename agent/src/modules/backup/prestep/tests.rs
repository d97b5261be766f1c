//! Pre-backup step tests with real `/bin/sh` scripts on real temp dirs: the output (named by
//! `{output}` or the env var) is archived and restored byte for byte; a failing, silent or
//! hanging step fails the run with its stderr excerpt, kills its whole process group and
//! leaves no scratch dir and no archive.

use std::fs;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use opsfleet_report::error_chain;

use super::*;
use crate::config::{BackupJobConfig, PreBackupConfig};
use crate::modules::backup::archive::PRE_BACKUP_SOURCE_PREFIX;
use crate::modules::backup::naming::list_archives;
use crate::modules::backup::{restore, run_job, ArchiveError, ArchiveSelector};

fn job(tmp: &Path, script: &str, timeout: Duration) -> BackupJobConfig {
    fs::create_dir_all(tmp.join("src/etc-app")).expect("mkdir");
    fs::write(tmp.join("src/etc-app/app.toml"), b"x = 1\n").expect("write");
    BackupJobConfig {
        pre_backup: Some(PreBackupConfig {
            command: vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                script.to_owned(),
                "sh".to_owned(),
                "{output}".to_owned(),
            ],
            output: "app.dump".to_owned(),
            timeout,
        }),
        ..crate::modules::backup::fixtures::job(tmp, "pg", vec![tmp.join("src/etc-app")])
    }
}

/// Names in `dir` (none when it is missing).
fn listing(dir: &Path) -> Vec<String> {
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

fn run(job: &BackupJobConfig) -> Result<crate::modules::backup::RunOutcome, ArchiveError> {
    run_job(job, SystemTime::now(), &mut |_| {}, &AtomicBool::new(false))
}

/// Whether process `pid` is gone (or a zombie waiting for its new parent to reap it).
fn dead(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_dump_written_by_the_step_is_archived_and_restored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Like `pg_dump -F c -f {output}`: the path comes as an argument; the env vars agree.
    let script = r#"test "$1" = "$OPSFLEET_BACKUP_OUTPUT" || exit 9
test "$OPSFLEET_BACKUP_JOB" = pg || exit 8
test "$(pwd)" = "$(dirname "$1")" || exit 7
printf 'PGDMP-custom-format\000binary\377' > "$1"
echo "pg_dump: dumped 3 tables" >&2"#;
    let job = job(tmp.path(), script, Duration::from_secs(60));
    // A crashed run's scratch dir (with a stale dump) is removed, never archived.
    let stale = scratch_dir(&job);
    fs::create_dir_all(&stale).expect("mkdir");
    fs::write(stale.join("old.dump"), b"stale").expect("write");

    let out = run(&job).expect("backup run");
    let m = &out.written.manifest;
    assert!(
        m.sources
            .contains(&format!("{PRE_BACKUP_SOURCE_PREFIX}app.dump")),
        "{:?}",
        m.sources
    );
    let dump = m
        .entries
        .iter()
        .find(|e| e.path == "app.dump")
        .expect("dump entry");
    assert_eq!(dump.size, 27);
    assert!(!m.entries.iter().any(|e| e.path.contains("old.dump")));
    // Only the archive and its manifest remain: the scratch dir is gone.
    assert_eq!(
        listing(&job.destination),
        vec![
            m.archive.clone(),
            format!("{}{}", m.archive, crate::modules::backup::MANIFEST_SUFFIX)
        ]
    );

    let target = tmp.path().join("restored");
    let report = restore(&job, &ArchiveSelector::Latest, &target).expect("restore");
    assert_eq!(report.files, 2);
    assert_eq!(
        fs::read(target.join("app.dump")).expect("dump"),
        b"PGDMP-custom-format\0binary\xff"
    );
    assert_eq!(
        fs::read(target.join("etc-app/app.toml")).expect("config"),
        b"x = 1\n"
    );
}

#[test]
fn a_failing_step_fails_the_run_with_its_stderr_and_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = r#"echo "partial" > "$1"
echo 'pg_dump: error: connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed' >&2
exit 3"#;
    let job = job(tmp.path(), script, Duration::from_secs(60));
    let err = run(&job).expect_err("step fails");
    assert!(
        matches!(err, ArchiveError::PreStep(PreStepError::Failed { .. })),
        "{err:?}"
    );
    let chain = error_chain(&err);
    assert!(chain.contains("pre-backup step failed"), "{chain}");
    assert!(chain.contains("exited 3"), "{chain}");
    assert!(chain.contains("connection to server on socket"), "{chain}");
    assert_eq!(list_archives(&job.destination, "pg").expect("list"), vec![]);
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}

#[test]
fn only_the_end_of_a_long_stderr_is_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = r#"i=0; while [ $i -lt 500 ]; do echo "noise line $i" >&2; i=$((i+1)); done
echo "FINAL-REASON" >&2; exit 1"#;
    let job = job(tmp.path(), script, Duration::from_secs(60));
    let err = run(&job).expect_err("step fails");
    let ArchiveError::PreStep(PreStepError::Failed { stderr, .. }) = &err else {
        panic!("{err:?}")
    };
    assert!(stderr.ends_with("FINAL-REASON"), "{stderr}");
    assert!(stderr.len() <= STDERR_EXCERPT, "{}", stderr.len());
    assert!(!stderr.contains("noise line 0\n"), "{stderr}");
}

#[test]
fn a_step_that_writes_no_output_fails_the_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path(), "exit 0", Duration::from_secs(60));
    let err = run(&job).expect_err("no output");
    assert!(
        matches!(err, ArchiveError::PreStep(PreStepError::NoOutput { .. })),
        "{err:?}"
    );
    assert!(error_chain(&err).contains("app.dump"), "{err}");
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}

#[test]
fn a_hanging_step_times_out_and_its_whole_group_is_killed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pid_file = tmp.path().join("child.pid");
    // A child in the background (as a dump tool's helper would be) and a shell that waits.
    let script = format!(
        "sleep 600 & echo $! > {}; echo 'waiting for lock' >&2; wait",
        pid_file.display()
    );
    let job = job(tmp.path(), &script, Duration::from_secs(1));
    let started = Instant::now();
    let err = run(&job).expect_err("times out");
    let took = started.elapsed();
    assert!(
        matches!(err, ArchiveError::PreStep(PreStepError::Timeout { .. })),
        "{err:?}"
    );
    let chain = error_chain(&err);
    assert!(chain.contains("timed out after 1s"), "{chain}");
    assert!(chain.contains("waiting for lock"), "{chain}");
    // Generous bound for a loaded box: far below the child's 600 s.
    assert!(took < Duration::from_secs(30), "{took:?}");
    let pid = fs::read_to_string(&pid_file).expect("pid file");
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dead(pid), "background child {pid} survived the timeout");
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}

#[test]
fn a_cancelled_step_stops_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path(), "sleep 600", Duration::from_secs(3600));
    let cancel = AtomicBool::new(false);
    let err = std::thread::scope(|s| {
        let h = s.spawn(|| run_job(&job, SystemTime::now(), &mut |_| {}, &cancel));
        std::thread::sleep(Duration::from_millis(300));
        cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        h.join().expect("join")
    })
    .expect_err("cancelled");
    assert!(
        matches!(err, ArchiveError::PreStep(PreStepError::Cancelled { .. })),
        "{err:?}"
    );
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}

#[test]
fn a_missing_program_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut job = job(tmp.path(), "", Duration::from_secs(5));
    if let Some(p) = job.pre_backup.as_mut() {
        p.command = vec!["/nonexistent/pg_dump".to_owned()];
    }
    let err = run(&job).expect_err("no program");
    let chain = error_chain(&err);
    assert!(
        chain.contains("cannot start \"/nonexistent/pg_dump\""),
        "{chain}"
    );
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}
