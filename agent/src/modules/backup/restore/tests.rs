//! Restore tests on crafted archives (tar + gzip written here, with a manifest that says what
//! the test needs): set-id bits never restored, the first hash mismatch stops the restore and
//! is named, and nothing of a failed restore stays on disk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::str::FromStr;
use std::time::SystemTime;

use opsfleet_report::error_chain;
use sha2::{Digest, Sha256};

use super::*;
use crate::config::Compression;
use crate::modules::backup::archive::{sha256_file, EntryKind, Manifest, ManifestEntry};
use crate::modules::backup::naming::archive_name;

#[test]
fn selector_parses() {
    assert_eq!(
        ArchiveSelector::from_str("latest"),
        Ok(ArchiveSelector::Latest)
    );
    assert_eq!(
        ArchiveSelector::from_str("a-20240101T000000.000Z.tar.gz"),
        Ok(ArchiveSelector::Named(
            "a-20240101T000000.000Z.tar.gz".into()
        ))
    );
}

fn job(tmp: &Path) -> BackupJobConfig {
    BackupJobConfig {
        compression: Compression::Gzip,
        ..crate::modules::backup::fixtures::job(tmp, "app", vec![tmp.join("src")])
    }
}

/// One entry of a crafted archive: a directory when `data` is `None`.
struct Crafted {
    path: &'static str,
    mode: u32,
    data: Option<&'static [u8]>,
}

fn file(path: &'static str, mode: u32, data: &'static [u8]) -> Crafted {
    Crafted {
        path,
        mode,
        data: Some(data),
    }
}

fn dir(path: &'static str, mode: u32) -> Crafted {
    Crafted {
        path,
        mode,
        data: None,
    }
}

/// Writes a gzip tar of `entries` (the tar headers carry each entry's mode) and a manifest
/// that matches it, after `tweak` had its say, into the job's destination. Returns the
/// archive's name.
fn craft(job: &BackupJobConfig, entries: &[Crafted], tweak: impl FnOnce(&mut Manifest)) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    let mut listed = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(e.mode);
        h.set_mtime(1_700_000_000);
        let data = e.data.unwrap_or_default();
        h.set_size(data.len() as u64);
        h.set_entry_type(if e.data.is_some() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Directory
        });
        builder
            .append_data(&mut h, e.path, data)
            .expect("tar entry");
        listed.push(ManifestEntry {
            path: e.path.to_owned(),
            kind: if e.data.is_some() {
                EntryKind::File
            } else {
                EntryKind::Dir
            },
            mode: e.mode,
            size: data.len() as u64,
            sha256: e.data.map(|d| hex::encode(Sha256::digest(d))),
            target: None,
        });
    }
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).expect("gz");
    let bytes = gz.finish().expect("gz");
    fs::create_dir_all(&job.destination).expect("mkdir");
    let archive = archive_name(&job.name, SystemTime::now(), Compression::Gzip);
    let path = job.destination.join(&archive);
    fs::write(&path, &bytes).expect("write archive");
    let mut m = Manifest {
        version: 1,
        job: job.name.clone(),
        archive: archive.clone(),
        compression: Compression::Gzip,
        created_unix_ms: 0,
        sources: Vec::new(),
        archive_sha256: sha256_file(&path).expect("hash").0,
        archive_size: bytes.len() as u64,
        files: listed.iter().filter(|e| e.kind == EntryKind::File).count() as u64,
        bytes: listed.iter().map(|e| e.size).sum(),
        entries: listed,
        skipped: Vec::new(),
    };
    tweak(&mut m);
    fs::write(
        job.destination.join(format!("{archive}{MANIFEST_SUFFIX}")),
        serde_json::to_vec(&m).expect("json"),
    )
    .expect("write manifest");
    archive
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn setuid_and_setgid_bits_are_never_restored_and_sticky_stays_on_dirs_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path());
    let archive = craft(
        &job,
        &[
            dir("app", 0o3775),
            file("app/su-shell", 0o4755, b"#!/bin/sh\nexec sh\n"),
            file("app/sg-tool", 0o2750, b"tool"),
            file("app/sticky-file", 0o1644, b"note"),
            dir("app/shared", 0o1777),
            file("app/plain", 0o640, b"plain"),
        ],
        |_| {},
    );
    let target = tmp.path().join("restored");
    let report = restore(&job, &ArchiveSelector::Named(archive), &target).expect("restore");
    assert_eq!((report.files, report.dirs), (4, 2), "{report:?}");
    let app = target.join("app");
    assert_eq!(mode(&app.join("su-shell")), 0o755, "setuid dropped");
    assert_eq!(mode(&app.join("sg-tool")), 0o750, "setgid dropped");
    assert_eq!(
        mode(&app.join("sticky-file")),
        0o644,
        "sticky dropped on a file"
    );
    assert_eq!(mode(&app), 0o1775, "setgid dropped, sticky kept on a dir");
    assert_eq!(mode(&app.join("shared")), 0o1777, "sticky kept on a dir");
    assert_eq!(mode(&app.join("plain")), 0o640, "other bits as archived");
    assert_eq!(
        fs::read(app.join("su-shell")).expect("content"),
        b"#!/bin/sh\nexec sh\n"
    );
}

#[test]
fn the_first_hash_mismatch_stops_the_restore_names_the_file_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path());
    // The archive file itself matches its manifest; the manifest's hashes of the first and
    // the third file do not match their content.
    let archive = craft(
        &job,
        &[
            dir("app", 0o755),
            file("app/1-first.txt", 0o644, b"first"),
            file("app/2-second.txt", 0o644, b"second"),
            file("app/3-third.txt", 0o644, b"third"),
        ],
        |m| {
            for e in &mut m.entries {
                if e.path == "app/1-first.txt" || e.path == "app/3-third.txt" {
                    e.sha256 = Some(hex::encode(Sha256::digest(b"something else")));
                }
            }
        },
    );
    // The target's parents do not exist yet: the restore creates them and must remove them.
    let target = tmp.path().join("new/parents/target");
    let err =
        restore(&job, &ArchiveSelector::Named(archive.clone()), &target).expect_err("corrupt");
    let RestoreError::Corrupt { corruption, .. } = &err else {
        panic!("{err}")
    };
    assert!(corruption.archive_sha256_ok);
    assert_eq!(corruption.stream_error, None);
    // Stopped at the first mismatch: the third file was never reached.
    assert_eq!(corruption.problems.len(), 1, "{err}");
    assert_eq!(corruption.problems[0].path, "app/1-first.txt");
    assert!(matches!(
        corruption.problems[0].problem,
        Problem::Sha256Mismatch { .. }
    ));
    assert_eq!(err.corrupt_files(), vec!["app/1-first.txt"]);
    let reason = error_chain(&err);
    assert!(
        reason.contains("stopped at corrupt file app/1-first.txt (sha256 mismatch)"),
        "{reason}"
    );
    assert!(
        reason.contains("nothing restored, target unchanged"),
        "{reason}"
    );
    let body = err.to_body("app", &archive, &target);
    assert_eq!(body.corrupt_files, vec!["app/1-first.txt"]);
    // Nothing remains: no target, no created parents, no hidden temp dir.
    assert!(!target.exists());
    assert_eq!(names(tmp.path()), vec!["backups"]);
}

#[test]
fn a_mismatch_into_an_existing_target_leaves_it_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let job = job(tmp.path());
    let archive = craft(
        &job,
        &[file("a.txt", 0o644, b"a"), file("b.txt", 0o644, b"b")],
        |m| m.entries[1].size = 5,
    );
    let target = tmp.path().join("existing");
    fs::create_dir_all(&target).expect("mkdir");
    fs::write(target.join("keep.txt"), b"before").expect("write");
    let err = restore(&job, &ArchiveSelector::Named(archive), &target).expect_err("corrupt");
    assert_eq!(err.corrupt_files(), vec!["b.txt"], "{err}");
    assert!(
        err.to_string().contains("b.txt (size 1, manifest says 5)"),
        "{err}"
    );
    assert_eq!(names(&target), vec!["keep.txt"]);
    assert_eq!(names(tmp.path()), vec!["backups", "existing"]);
}
