//! Tests of the backup module on real temp dirs: archive + manifest, byte-for-byte restore,
//! corruption (flipped archive byte, tampered file inside, truncation, unsafe entries) with the
//! target left untouched, retention (pure, proptested, and on disk), progress and schedules.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::archive::{EntryKind, Manifest};
use super::naming::{archive_name, list_archives};
use super::*;
use crate::config::Compression;

const DAY: Duration = Duration::from_secs(86_400);

fn job(tmp: &Path, compression: Compression) -> BackupJobConfig {
    let sources = vec![tmp.join("src/data"), tmp.join("src/etc-app")];
    BackupJobConfig {
        compression,
        ..super::fixtures::job(tmp, "app", sources)
    }
}

/// Pseudo-random, incompressible bytes (so zstd stores them as raw blocks).
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Two sources: a tree with nested dirs, an empty file, a big binary file, modes, a relative
/// symlink and a symlink to a directory outside the sources (with content that must not be
/// archived); and a single config file.
fn make_sources(tmp: &Path) {
    let data = tmp.join("src/data");
    fs::create_dir_all(data.join("nested/deeper")).expect("mkdir");
    fs::write(data.join("a.txt"), b"alpha\n").expect("write");
    fs::write(data.join("empty"), b"").expect("write");
    fs::write(data.join("nested/b.txt"), b"MARKER-B-CONTENT bravo\n").expect("write");
    fs::write(data.join("nested/deeper/big.bin"), noise(300_000, 42)).expect("write");
    fs::write(data.join("run.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    fs::set_permissions(data.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::set_permissions(data.join("a.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    symlink("a.txt", data.join("link-to-a")).expect("symlink");
    let outside = tmp.join("outside");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(outside.join("secret.txt"), b"not archived").expect("write");
    symlink(&outside, data.join("link-outside")).expect("symlink");
    fs::create_dir_all(tmp.join("src/etc-app")).expect("mkdir");
    fs::write(tmp.join("src/etc-app/app.toml"), b"x = 1\n").expect("write");
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    File(Vec<u8>, u32),
    Dir(u32),
    Link(PathBuf),
}

/// Everything under `root`, links not followed.
fn tree(root: &Path) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).follow_links(false) {
        let e = e.expect("walk");
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("inside")
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(e.path()).expect("stat");
        let mode = meta.permissions().mode() & 0o7777;
        let item = if meta.file_type().is_symlink() {
            Item::Link(fs::read_link(e.path()).expect("readlink"))
        } else if meta.is_dir() {
            Item::Dir(mode)
        } else {
            Item::File(fs::read(e.path()).expect("read"), mode)
        };
        out.insert(rel, item);
    }
    out
}

fn run(job: &BackupJobConfig, at: SystemTime) -> RunOutcome {
    let cancel = AtomicBool::new(false);
    run_job(job, at, &mut |_| {}, &cancel).expect("backup run")
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

/// Entries of `dir` (names), for "untouched" checks.
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

#[test]
fn happy_path_restore_reproduces_the_tree_byte_for_byte() {
    for compression in [Compression::Zstd, Compression::Gzip] {
        let tmp = tempfile::tempdir().expect("tempdir");
        make_sources(tmp.path());
        let job = job(tmp.path(), compression);
        let out = run(&job, SystemTime::now());
        let w = &out.written;
        assert!(w.archive_path.exists() && w.manifest_path.exists());
        assert!(w
            .archive_path
            .to_string_lossy()
            .ends_with(compression.suffix()));
        let m: Manifest =
            serde_json::from_slice(&fs::read(&w.manifest_path).expect("manifest")).expect("json");
        assert_eq!(m, w.manifest);
        assert_eq!(m.files, 6);
        assert_eq!(
            archive::sha256_file(&w.archive_path).expect("hash").0,
            m.archive_sha256
        );
        // Symlinks archived as symlinks: the outside dir's content is not in the archive.
        let link = m
            .entries
            .iter()
            .find(|e| e.path == "data/link-outside")
            .expect("link entry");
        assert_eq!(link.kind, EntryKind::Symlink);
        assert!(!m.entries.iter().any(|e| e.path.contains("secret")));
        let a = m
            .entries
            .iter()
            .find(|e| e.path == "data/a.txt")
            .expect("a.txt");
        assert_eq!((a.size, a.mode), (6, 0o640));

        let target = tmp.path().join("restored");
        let report = restore(&job, &ArchiveSelector::Latest, &target).expect("restore");
        assert_eq!(report.files, 6);
        assert_eq!(report.symlinks, 2);
        assert_eq!(report.bytes, m.bytes);
        assert_eq!(
            tree(&tmp.path().join("src")),
            tree(&target),
            "{compression:?}"
        );
        // No temp dir left beside the target.
        assert_eq!(
            listing(tmp.path()),
            vec!["backups", "outside", "restored", "src"]
        );
        let body = report.to_body();
        assert_eq!((body.job.as_str(), body.files), ("app", 6));
    }
}

#[test]
fn restore_by_name_into_an_existing_dir_and_refuses_collisions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let job = job(tmp.path(), Compression::Zstd);
    let name = run(&job, SystemTime::now()).written.manifest.archive;
    let target = tmp.path().join("t");
    fs::create_dir_all(&target).expect("mkdir");
    fs::write(target.join("unrelated.txt"), b"stays").expect("write");
    let sel = ArchiveSelector::Named(name.clone());
    restore(&job, &sel, &target).expect("restore into existing dir");
    assert_eq!(
        fs::read(target.join("unrelated.txt")).expect("kept"),
        b"stays"
    );
    assert_eq!(
        fs::read(target.join("data/a.txt")).expect("restored"),
        b"alpha\n"
    );
    // Again into the same target: `data` exists now, refused, nothing changed.
    let before = tree(&target);
    let err = restore(&job, &sel, &target).expect_err("collision");
    assert!(matches!(err, RestoreError::Target { .. }), "{err}");
    assert!(err.to_string().contains("data"), "{err}");
    assert_eq!(tree(&target), before);
    // Names that are not this job's archives are refused before touching anything.
    for bad in ["../../etc/passwd", "other-20240101T000000.000Z.tar.zst"] {
        let err =
            restore(&job, &ArchiveSelector::Named(bad.into()), &target).expect_err("bad name");
        assert!(matches!(err, RestoreError::BadArchiveName { .. }), "{err}");
    }
}

#[test]
fn a_flipped_byte_in_the_archive_is_reported_and_the_target_is_untouched() {
    for compression in [Compression::Zstd, Compression::Gzip] {
        let tmp = tempfile::tempdir().expect("tempdir");
        make_sources(tmp.path());
        let job = job(tmp.path(), compression);
        let w = run(&job, SystemTime::now()).written;
        let mut bytes = fs::read(&w.archive_path).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        fs::write(&w.archive_path, &bytes).expect("write");

        let target = tmp.path().join("t");
        fs::create_dir_all(&target).expect("mkdir");
        fs::write(target.join("keep.txt"), b"before").expect("write");
        let before = tree(&target);
        let err = restore(&job, &ArchiveSelector::Latest, &target).expect_err("corrupt");
        let RestoreError::Corrupt { corruption, .. } = &err else {
            panic!("{err}")
        };
        assert!(!corruption.archive_sha256_ok);
        // The flipped byte sits in the big file's data: it is named first.
        let files = err.corrupt_files();
        assert_eq!(
            files.first().map(String::as_str),
            Some("data/nested/deeper/big.bin"),
            "{compression:?}: {err}"
        );
        assert!(err.to_string().contains("big.bin"), "{err}");
        assert_eq!(tree(&target), before);
        assert_eq!(listing(tmp.path()), vec!["backups", "outside", "src", "t"]);
        let body = err.to_body("app", &w.manifest.archive, &target);
        assert_eq!(body.corrupt_files, files);
        assert!(body.reason.contains("corrupt"));
    }
}

/// Rewrites the archive with one byte of `data/nested/b.txt` changed and the manifest's
/// archive hash updated, so only the per-file sha256 can catch it.
fn tamper_inside(w: &archive::Written) {
    let mut raw = Vec::new();
    zstd::Decoder::new(fs::File::open(&w.archive_path).expect("open"))
        .expect("decoder")
        .read_to_end(&mut raw)
        .expect("decode");
    let at = raw
        .windows(16)
        .position(|win| win == b"MARKER-B-CONTENT")
        .expect("marker in tar");
    raw[at] = b'X';
    let mut enc = zstd::Encoder::new(Vec::new(), 3).expect("encoder");
    enc.write_all(&raw).expect("encode");
    let packed = enc.finish().expect("finish");
    fs::write(&w.archive_path, &packed).expect("write");
    let mut m = w.manifest.clone();
    m.archive_sha256 = archive::sha256_file(&w.archive_path).expect("hash").0;
    fs::write(&w.manifest_path, serde_json::to_vec(&m).expect("json")).expect("write");
}

#[test]
fn a_tampered_file_inside_a_valid_archive_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let job = job(tmp.path(), Compression::Zstd);
    let w = run(&job, SystemTime::now()).written;
    tamper_inside(&w);
    let target = tmp.path().join("fresh-target");
    let err = restore(&job, &ArchiveSelector::Latest, &target).expect_err("tampered");
    let RestoreError::Corrupt { corruption, .. } = &err else {
        panic!("{err}")
    };
    assert!(corruption.archive_sha256_ok);
    assert_eq!(corruption.stream_error, None);
    assert_eq!(corruption.problems.len(), 1, "{err}");
    assert_eq!(corruption.problems[0].path, "data/nested/b.txt");
    assert!(matches!(
        corruption.problems[0].problem,
        Problem::Sha256Mismatch { .. }
    ));
    assert!(
        err.to_string()
            .contains("data/nested/b.txt (sha256 mismatch)"),
        "{err}"
    );
    assert!(!target.exists(), "target must not be created");
    assert_eq!(listing(tmp.path()), vec!["backups", "outside", "src"]);
}

#[test]
fn a_truncated_archive_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let job = job(tmp.path(), Compression::Gzip);
    let w = run(&job, SystemTime::now()).written;
    let len = fs::metadata(&w.archive_path).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&w.archive_path)
        .expect("open")
        .set_len(len / 3)
        .expect("truncate");
    let target = tmp.path().join("t");
    let err = restore(&job, &ArchiveSelector::Latest, &target).expect_err("truncated");
    assert!(matches!(err, RestoreError::Corrupt { .. }), "{err}");
    assert!(!err.corrupt_files().is_empty());
    assert!(!target.exists());
}

/// A gzip tar whose single entry has the raw name `name` (bypassing the tar crate's checks),
/// plus a manifest that lists it, in the job's destination.
fn hostile_archive(job: &BackupJobConfig, name: &[u8]) -> String {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    let mut tar = Vec::new();
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(b"evil");
    tar.resize(512 * 2, 0);
    tar.resize(512 * 4, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gz");
    let bytes = gz.finish().expect("gz");
    fs::create_dir_all(&job.destination).expect("mkdir");
    let archive = archive_name(&job.name, SystemTime::now(), Compression::Gzip);
    fs::write(job.destination.join(&archive), &bytes).expect("write");
    let path = String::from_utf8_lossy(name).into_owned();
    let m = Manifest {
        version: 1,
        job: job.name.clone(),
        archive: archive.clone(),
        compression: Compression::Gzip,
        created_unix_ms: 0,
        sources: Vec::new(),
        archive_sha256: archive::sha256_file(&job.destination.join(&archive))
            .expect("hash")
            .0,
        archive_size: bytes.len() as u64,
        files: 1,
        bytes: 4,
        entries: vec![ManifestEntry {
            path,
            kind: EntryKind::File,
            mode: 0o644,
            size: 4,
            sha256: None,
            target: None,
        }],
        skipped: Vec::new(),
    };
    fs::write(
        job.destination.join(format!("{archive}{MANIFEST_SUFFIX}")),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write");
    archive
}

#[test]
fn entries_with_absolute_paths_or_dotdot_are_refused() {
    for name in [
        &b"../escaped.txt"[..],
        b"/tmp/abs-escaped.txt",
        b"a/../../up.txt",
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let job = job(tmp.path(), Compression::Gzip);
        let archive = hostile_archive(&job, name);
        let target = tmp.path().join("deep/t");
        let err = restore(&job, &ArchiveSelector::Named(archive), &target).expect_err("refused");
        assert!(
            matches!(err, RestoreError::UnsafeEntry { .. }),
            "{}: {err}",
            String::from_utf8_lossy(name)
        );
        assert!(!target.exists());
        assert!(!tmp.path().join("escaped.txt").exists());
        assert!(!tmp.path().join("deep/escaped.txt").exists());
        assert!(!tmp.path().join("up.txt").exists());
        assert_eq!(listing(&tmp.path().join("deep")), Vec::<String>::new());
    }
}

#[test]
fn missing_manifest_or_archive_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let job = job(tmp.path(), Compression::Zstd);
    let err = restore(&job, &ArchiveSelector::Latest, &tmp.path().join("t")).expect_err("none");
    assert!(matches!(err, RestoreError::NoArchive { .. }), "{err}");
    let w = run(&job, SystemTime::now()).written;
    fs::remove_file(&w.manifest_path).expect("rm");
    // Without its manifest the archive is not a candidate for `latest`...
    let err = restore(&job, &ArchiveSelector::Latest, &tmp.path().join("t")).expect_err("none");
    assert!(matches!(err, RestoreError::NoArchive { .. }), "{err}");
    // ...and by name it cannot be verified.
    let err = restore(
        &job,
        &ArchiveSelector::Named(w.manifest.archive.clone()),
        &tmp.path().join("t"),
    )
    .expect_err("no manifest");
    assert!(matches!(err, RestoreError::ManifestRead { .. }), "{err}");
}

#[test]
fn leftovers_of_a_crash_are_never_listed_and_are_cleaned_by_the_next_run() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let job = job(tmp.path(), Compression::Zstd);
    let dest = &job.destination;
    fs::create_dir_all(dest).expect("mkdir");
    let t0 = SystemTime::now() - DAY;
    let half = archive_name("app", t0, Compression::Zstd);
    fs::write(dest.join(format!(".{half}.partial")), b"half an archive").expect("write");
    let orphan = archive_name("app", t0 + Duration::from_secs(1), Compression::Zstd);
    fs::write(dest.join(format!("{orphan}{MANIFEST_SUFFIX}")), b"{}").expect("write");
    // Another job's partial file is not ours to remove.
    let other = format!(
        ".{}.partial",
        archive_name("app-logs", t0, Compression::Zstd)
    );
    fs::write(dest.join(&other), b"x").expect("write");
    assert!(list_archives(dest, "app").expect("list").is_empty());
    let out = run(&job, SystemTime::now());
    let mut expect = vec![
        other,
        out.written.manifest.archive.clone(),
        format!("{}{MANIFEST_SUFFIX}", out.written.manifest.archive),
    ];
    expect.sort();
    assert_eq!(listing(dest), expect);
}

#[test]
fn a_cancelled_run_leaves_no_partial_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_sources(tmp.path());
    let job = job(tmp.path(), Compression::Zstd);
    let cancel = AtomicBool::new(true);
    let err = run_job(&job, SystemTime::now(), &mut |_| {}, &cancel).expect_err("cancelled");
    assert!(matches!(err, ArchiveError::Cancelled), "{err}");
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}

#[test]
fn a_missing_source_fails_the_run_with_its_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path(), Compression::Zstd);
    let cancel = AtomicBool::new(false);
    let err = run_job(&job, SystemTime::now(), &mut |_| {}, &cancel).expect_err("no source");
    assert!(
        opsfleet_report::error_chain(&err).contains("src/data"),
        "{err}"
    );
    assert_eq!(listing(&job.destination), Vec::<String>::new());
}

// ---- retention -------------------------------------------------------------------------

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
