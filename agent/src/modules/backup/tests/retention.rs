//! Retention (pure, proptested, and on disk) and whole module runs: progress events, a failing
//! run, pruning reported.

use super::*;

fn fake(name: &str, t: SystemTime) -> ArchiveFile {
    ArchiveFile {
        name: name.to_owned(),
        time: t,
        compression: Compression::Zstd,
    }
}

#[test]
fn retention_keeps_newer_than_days_or_newest_count() {
    let now = UNIX_EPOCH + DAY * 1000;
    let list: Vec<ArchiveFile> = (0..10u32)
        .map(|i| fake(&format!("a{i}"), now - DAY * i - DAY / 2))
        .collect();
    // Ages 0.5 .. 9.5 days. keep_days 3 keeps a0..a2, keep_count 5 keeps a0..a4.
    assert_eq!(
        select_prune(&list, now, 3, 5),
        vec!["a9", "a8", "a7", "a6", "a5"]
    );
    // keep_days dominates when it covers more.
    assert_eq!(select_prune(&list, now, 8, 2), vec!["a9", "a8"]);
    // keep_days = 0: count only.
    assert_eq!(select_prune(&list, now, 0, 9), vec!["a9"]);
    // Exactly keep_days old is not younger than keep_days: pruned.
    let edge = vec![fake("new", now), fake("edge", now - DAY * 2)];
    assert_eq!(select_prune(&edge, now, 2, 1), vec!["edge"]);
    // Archives from the future (clock skew) count as new.
    let future = vec![fake("f", now + DAY), fake("old", now - DAY * 30)];
    assert_eq!(select_prune(&future, now, 1, 1), vec!["old"]);
    assert!(select_prune(&[], now, 1, 1).is_empty());
}

proptest! {
    #[test]
    fn retention_matches_its_rule(
        ages in proptest::collection::vec(0u64..(40 * 86_400), 0..40),
        keep_days in 0u64..30,
        keep_count in 1u64..12,
    ) {
        let now = UNIX_EPOCH + DAY * 10_000;
        let list: Vec<ArchiveFile> = ages
            .iter()
            .enumerate()
            .map(|(i, a)| fake(&format!("x{i:03}"), now - Duration::from_secs(*a)))
            .collect();
        let pruned = select_prune(&list, now, keep_days, keep_count);
        // Oracle: rank by (time, name) descending.
        let mut ranked: Vec<&ArchiveFile> = list.iter().collect();
        ranked.sort_by(|a, b| (b.time, &b.name).cmp(&(a.time, &a.name)));
        for (rank, a) in ranked.iter().enumerate() {
            let young = naming::age(now, a.time) < DAY * keep_days as u32;
            let top = (rank as u64) < keep_count;
            prop_assert_eq!(pruned.contains(&a.name), !(young || top), "{} rank {}", a.name, rank);
        }
        // The newest is always kept, nothing is listed twice, and the order is oldest first.
        if let Some(newest) = ranked.first() {
            prop_assert!(!pruned.contains(&newest.name));
        }
        let kept = list.len() - pruned.len();
        prop_assert!(kept as u64 >= keep_count.min(list.len() as u64));
        let mut dedup = pruned.clone();
        dedup.dedup();
        prop_assert_eq!(dedup.len(), pruned.len());
        let times: Vec<_> = pruned
            .iter()
            .map(|n| list.iter().find(|a| &a.name == n).map(|a| a.time))
            .collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn timestamps_round_trip(ms in 0u64..253_402_300_799_000) {
        let t = UNIX_EPOCH + Duration::from_millis(ms);
        prop_assert_eq!(naming::parse_timestamp(&naming::timestamp(t)), Some(t));
    }
}

#[test]
fn retention_on_disk_keeps_exactly_the_configured_set() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let mut job = job(tmp.path(), Compression::Zstd);
    job.keep_days = 3;
    job.keep_count = 4;
    let now = SystemTime::now();
    let dest = job.destination.clone();
    fs::create_dir_all(&dest).expect("mkdir");
    // Ten older complete archives, 1..10 days old (+1 h so none sits on the boundary).
    let mut names = Vec::new();
    for i in 1..=10u32 {
        let n = archive_name(
            "app",
            now - DAY * i - Duration::from_secs(3600),
            Compression::Zstd,
        );
        fs::write(dest.join(&n), vec![0u8; 100]).expect("write");
        fs::write(dest.join(format!("{n}{MANIFEST_SUFFIX}")), b"{}").expect("write");
        names.push(n);
    }
    // Not ours: an old archive without manifest, another job's, and a stray file.
    let no_manifest = archive_name("app", now - DAY * 50, Compression::Gzip);
    fs::write(dest.join(&no_manifest), b"x").expect("write");
    let other = archive_name("app-logs", now - DAY * 50, Compression::Zstd);
    fs::write(dest.join(&other), b"x").expect("write");
    fs::write(dest.join(format!("{other}{MANIFEST_SUFFIX}")), b"{}").expect("write");
    fs::write(dest.join("README"), b"x").expect("write");

    let out = run(&job, now);
    // Kept: the new one + ages 1,2 days (younger than 3) + the 4 newest overall (new, 1, 2, 3).
    let new = out.written.manifest.archive.clone();
    let mut kept: Vec<String> = vec![new, names[0].clone(), names[1].clone(), names[2].clone()];
    let mut expect_pruned: Vec<String> = names[3..].to_vec();
    expect_pruned.reverse();
    assert_eq!(out.pruned, expect_pruned);
    assert_eq!(out.bytes_freed, 7 * (100 + 2));
    let mut expect: Vec<String> = kept
        .drain(..)
        .flat_map(|n| [format!("{n}{MANIFEST_SUFFIX}"), n])
        .collect();
    expect.extend([
        no_manifest,
        other.clone(),
        format!("{other}{MANIFEST_SUFFIX}"),
        "README".to_owned(),
    ]);
    expect.sort();
    assert_eq!(listing(&dest), expect);
}

// ---- the module ------------------------------------------------------------------------

fn module_cfg(job: BackupJobConfig) -> BackupConfig {
    BackupConfig {
        name: None,
        interval: Duration::from_millis(50),
        jobs: vec![job],
    }
}

/// Ticks the module until a run finishes; returns every body seen.
async fn tick_until_done(m: &mut BackupModule, now: SystemTime) -> Vec<pb::event::Body> {
    super::fixtures::tick_until(m, &ctx(now), |b| {
        matches!(
            b,
            pb::event::Body::BackupCompleted(_) | pb::event::Body::BackupFailed(_)
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_appear_for_a_run_with_many_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src/data");
    fs::create_dir_all(&src).expect("mkdir");
    for i in 0..300 {
        fs::write(src.join(format!("f{i:04}.txt")), format!("file {i}\n")).expect("write");
    }
    fs::create_dir_all(tmp.path().join("src/etc-app")).expect("mkdir");
    let mut j = job(tmp.path(), Compression::Zstd);
    j.progress_every_files = 50;
    j.progress_every = Duration::from_secs(3600);
    let mut m = BackupModule::new(&module_cfg(j.clone()));
    let now = SystemTime::now();
    let bodies = tick_until_done(&mut m, now).await;
    let pb::event::Body::BackupStarted(started) = &bodies[0] else {
        panic!("{bodies:?}")
    };
    assert_eq!(started.job, "app");
    let progress: Vec<&pb::BackupProgress> = bodies
        .iter()
        .filter_map(|b| match b {
            pb::event::Body::BackupProgress(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(progress.len(), 6, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].files < w[1].files));
    assert!(progress.iter().all(|p| p.run_id == started.run_id));
    let Some(pb::event::Body::BackupCompleted(done)) = bodies.last() else {
        panic!("{bodies:?}")
    };
    assert_eq!(done.files, 300);
    assert_eq!(done.run_id, started.run_id);
    assert_eq!(done.sha256.len(), 64);
    assert!(done.size_bytes > 0);
    // Not due again within the schedule...
    assert!(m.run_once(&ctx(now)).await.expect("tick").is_empty());
    // ...nor after a restart (the newest archive's timestamp is the last run)...
    let mut again = BackupModule::new(&module_cfg(j.clone()));
    assert!(again
        .run_once(&ctx(now + Duration::from_secs(60)))
        .await
        .expect("tick")
        .is_empty());
    // ...but once the schedule has passed.
    let later = now + Duration::from_secs(3601);
    let bodies = tick_until_done(&mut again, later).await;
    assert!(matches!(
        bodies.last(),
        Some(pb::event::Body::BackupCompleted(_))
    ));
    assert_eq!(list_archives(&j.destination, "app").expect("list").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_emits_backup_failed_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut m = BackupModule::new(&module_cfg(job(tmp.path(), Compression::Gzip)));
    let bodies = tick_until_done(&mut m, SystemTime::now()).await;
    let Some(pb::event::Body::BackupFailed(f)) = bodies.last() else {
        panic!("{bodies:?}")
    };
    assert!(f.reason.contains("src/data"), "{}", f.reason);
    assert!(!m.busy());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let mut j = job(tmp.path(), Compression::Zstd);
    j.keep_days = 0;
    j.keep_count = 1;
    let now = SystemTime::now();
    let first = run(&j, now - DAY).written;
    let mut m = BackupModule::new(&module_cfg(j));
    let bodies = tick_until_done(&mut m, now).await;
    // Completed is followed by Pruned in the same hand-over (or the next tick).
    let mut bodies = bodies;
    for _ in 0..20 {
        if bodies
            .iter()
            .any(|b| matches!(b, pb::event::Body::BackupPruned(_)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        bodies.extend(m.run_once(&ctx(now)).await.expect("tick"));
    }
    let pruned = bodies
        .iter()
        .find_map(|b| match b {
            pb::event::Body::BackupPruned(p) => Some(p),
            _ => None,
        })
        .expect("pruned event");
    assert_eq!(pruned.archives, vec![first.manifest.archive.clone()]);
    assert!(pruned.bytes_freed > first.manifest.archive_size);
    assert!(!first.archive_path.exists() && !first.manifest_path.exists());
}
