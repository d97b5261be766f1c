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

mod retention;
