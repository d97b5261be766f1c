//! Releases on disk: the atomic switch, pruning, installs from archives and files (unsafe
//! archives refused with nothing left behind), and fetching with its sha256 check.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use super::fetch::{fetch, FetchError, Limits};
use super::unpack::{install, UnpackError};
use super::*;

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A gzipped tar of raw entries `(name, kind, link, data)`, names written as bytes so unsafe
/// ones can be built.
fn tarball(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar").finish().expect("gz")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

/// Only release dirs and the link: no temp left.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.') || n.contains(".tmp-"))
        .collect()
}

#[test]
fn an_archive_becomes_a_release_and_a_file_keeps_its_name_executable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let tgz = tarball(&[
        ("bin/", tar::EntryType::Directory, "", b""),
        (
            "bin/app",
            tar::EntryType::Regular,
            "",
            b"#!/bin/sh\necho v1\n",
        ),
        ("app", tar::EntryType::Symlink, "bin/app", b""),
    ]);
    let a = write(tmp.path(), "a.tgz", &tgz);
    let dir = install(&r, "1.0", &a, "app-1.0.tar.gz", &sha(&tgz), 1 << 20).expect("installed");
    assert_eq!(dir, tmp.path().join("releases/1.0"));
    let mode = std::fs::metadata(dir.join("bin/app"))
        .expect("app")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable kept");
    assert_eq!(
        std::fs::read_link(dir.join("app")).expect("link"),
        Path::new("bin/app")
    );
    assert_eq!(r.recorded_sha("1.0"), Some(sha(&tgz)));

    let bin = write(tmp.path(), "b.bin", b"\x7fELF...");
    let dir = install(&r, "2.0", &bin, "app", &sha(b"\x7fELF..."), 1 << 20).expect("installed");
    let mode = std::fs::metadata(dir.join("app"))
        .expect("app")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(leftovers(tmp.path()), Vec::<String>::new());
}

#[test]
fn unsafe_archives_are_refused_and_leave_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "dotdot",
            tarball(&[("../evil", tar::EntryType::Regular, "", b"x")]),
        ),
        (
            "absolute",
            tarball(&[("/tmp/evil", tar::EntryType::Regular, "", b"x")]),
        ),
        (
            "escaping symlink",
            tarball(&[("etc", tar::EntryType::Symlink, "../../etc", b"")]),
        ),
        (
            "absolute symlink",
            tarball(&[("passwd", tar::EntryType::Symlink, "/etc/passwd", b"")]),
        ),
    ];
    for (what, tgz) in cases {
        let a = write(tmp.path(), "a.tar.gz", &tgz);
        let e = install(&r, "1.0", &a, "a.tar.gz", &sha(&tgz), 1 << 20).expect_err(what);
        assert!(matches!(e, UnpackError::Entry { .. }), "{what}: {e}");
        assert!(!r.release("1.0").exists(), "{what}: no release");
        assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "{what}");
        assert!(!tmp.path().parent().expect("parent").join("evil").exists());
    }
}

/// A chain of links each passing a lexical check (`a/b/c/l -> ../../..` is the release root)
/// yet leading out of it, and an entry named like the sha marker: refused, nothing written
/// outside.
#[test]
fn link_chains_and_a_marker_entry_are_refused_and_write_nothing_outside() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let svc = tmp.path().join("svc");
    std::fs::create_dir(&svc).expect("svc");
    let r = Releases::new(&svc);
    // The staging dir is `svc/.incoming-*`: two levels up from it is `tmp`.
    let victim = write(tmp.path(), "victim", b"precious");
    let dirs: [(&str, tar::EntryType, &str, &[u8]); 4] = [
        ("a/", tar::EntryType::Directory, "", b""),
        ("a/b/", tar::EntryType::Directory, "", b""),
        ("a/b/c/", tar::EntryType::Directory, "", b""),
        ("a/b/c/l", tar::EntryType::Symlink, "../../..", b""),
    ];
    let with = |last: (&'static str, tar::EntryType, &'static str, &'static [u8])| {
        let mut all = dirs.to_vec();
        all.push(last);
        tarball(&all)
    };
    let cases: [(&str, Vec<u8>); 5] = [
        ("a link up to the root", tarball(&dirs)),
        (
            "the marker as a link through the chain",
            with((
                SHA_FILE,
                tar::EntryType::Symlink,
                "a/b/c/l/../../victim",
                b"",
            )),
        ),
        (
            "another link through the chain",
            with(("run", tar::EntryType::Symlink, "a/b/c/l/../../victim", b"")),
        ),
        (
            "the marker as a file",
            tarball(&[(SHA_FILE, tar::EntryType::Regular, "", b"0000")]),
        ),
        (
            "the marker as a hard link",
            tarball(&[
                ("x", tar::EntryType::Regular, "", b"0000"),
                ("./.opsfleet-sha256", tar::EntryType::Link, "x", b""),
            ]),
        ),
    ];
    for (what, tgz) in cases {
        let a = write(tmp.path(), "a.tar.gz", &tgz);
        let e = install(&r, "1.0", &a, "a.tar.gz", &sha(&tgz), 1 << 20).expect_err(what);
        assert!(matches!(e, UnpackError::Entry { .. }), "{what}: {e}");
        assert!(!r.release("1.0").exists(), "{what}: no release");
        assert_eq!(leftovers(&svc), Vec::<String>::new(), "{what}");
        assert_eq!(
            std::fs::read(&victim).expect("victim"),
            b"precious",
            "{what}"
        );
    }
}

/// A marker replaced by a link (a release from before the checks) is never followed: not
/// read, and rewritten as a new file.
#[test]
fn the_marker_is_never_followed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let svc = tmp.path().join("svc");
    let r = Releases::new(&svc);
    std::fs::create_dir_all(r.release("1.0")).expect("release");
    let victim = write(tmp.path(), "victim", b"precious");
    let marker = r.release("1.0").join(SHA_FILE);
    std::os::unix::fs::symlink(&victim, &marker).expect("link");
    assert_eq!(r.recorded_sha("1.0"), None, "a link is no marker");
    r.touch("1.0", "abc").expect("touch");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    let m = std::fs::symlink_metadata(&marker).expect("marker");
    assert!(m.file_type().is_file(), "the link was replaced");
    assert_eq!(r.recorded_sha("1.0").as_deref(), Some("abc"));
    let names: Vec<String> = std::fs::read_dir(r.release("1.0"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![SHA_FILE.to_owned()], "no temp left");
}

/// An archive unpacking past the bound is refused before its data is written: one big entry,
/// or many small ones (each header counts 512 bytes).
#[test]
fn an_archive_unpacking_past_the_bound_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    let zeros = vec![0u8; 64 * 1024];
    let big = tarball(&[("big", tar::EntryType::Regular, "", &zeros)]);
    assert!(big.len() < 4096, "compresses well: {}", big.len());
    let names: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
    let many: Vec<(&str, tar::EntryType, &str, &[u8])> = names
        .iter()
        .map(|n| (n.as_str(), tar::EntryType::Regular, "", &b""[..]))
        .collect();
    let many = tarball(&many);
    for (what, tgz, max) in [
        ("one big entry", &big, 32 * 1024),
        ("many entries", &many, 50 * 512),
    ] {
        let a = write(tmp.path(), "a.tar.gz", tgz);
        let e = install(&r, "1.0", &a, "a.tar.gz", &sha(tgz), max).expect_err(what);
        assert!(matches!(e, UnpackError::TooLarge { .. }), "{what}: {e}");
        assert!(!r.release("1.0").exists(), "{what}: no release");
        assert_eq!(leftovers(tmp.path()), Vec::<String>::new(), "{what}");
        // Within the bound the same archive installs.
        let v = format!("ok-{}", what.len());
        install(&r, &v, &a, "a.tar.gz", &sha(tgz), 1 << 20).expect(what);
    }
}

#[test]
fn the_switch_is_a_rename_and_returns_the_previous_version() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    for v in ["1.0", "2.0"] {
        std::fs::create_dir_all(r.release(v)).expect("release");
    }
    assert_eq!(r.current(), None);
    assert_eq!(r.switch("1.0").expect("switch"), None);
    assert_eq!(r.current().as_deref(), Some("1.0"));
    let link = tmp.path().join(CURRENT);
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        Path::new("releases/1.0")
    );
    assert_eq!(r.switch("2.0").expect("switch").as_deref(), Some("1.0"));
    assert_eq!(current_version(tmp.path()).as_deref(), Some("2.0"));
    assert!(
        tmp.path().join("current/.").is_dir(),
        "resolves to the release"
    );
    assert_eq!(
        leftovers(tmp.path()),
        Vec::<String>::new(),
        "no temp link left"
    );

    // A real directory named `current` is not replaced.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(other.path().join(CURRENT)).expect("dir");
    let e = Releases::new(other.path())
        .switch("1.0")
        .expect_err("not a link");
    assert!(matches!(e, ReleaseError::NotALink { .. }), "{e}");
}

#[test]
fn what_an_interrupted_deploy_left_is_removed_and_nothing_else() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    std::fs::create_dir_all(r.release("1.0")).expect("release");
    r.switch("1.0").expect("switch");
    std::fs::create_dir_all(tmp.path().join(".incoming-2.0-abc/bin")).expect("staging");
    write(tmp.path(), ".fetch-abc", b"partial");
    std::os::unix::fs::symlink("releases/1.0", tmp.path().join("current.tmp-abc")).expect("link");
    write(tmp.path(), "notes.txt", b"mine");
    let mut removed = r.clean_leftovers();
    removed.sort();
    assert_eq!(
        removed,
        [".fetch-abc", ".incoming-2.0-abc", "current.tmp-abc"]
    );
    assert!(tmp.path().join("notes.txt").exists());
    assert_eq!(r.current().as_deref(), Some("1.0"));
    assert!(r.release("1.0").is_dir());
}

#[test]
fn pruning_keeps_the_newest_and_never_the_current_or_previous() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = Releases::new(tmp.path());
    // Activated in this order: 1 (oldest) .. 5; current is 1, previous 2 (a rollback).
    for v in ["1", "2", "3", "4", "5"] {
        std::fs::create_dir_all(r.release(v)).expect("release");
        r.touch(v, "x").expect("touch");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(r.kept(), ["1", "2", "3", "4", "5"]);
    let (removed, problems) = r.prune(3, "1", Some("2"));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(removed, ["3", "4"]);
    assert_eq!(r.kept(), ["1", "2", "5"]);
    let (removed, _) = r.prune(2, "1", Some("2"));
    assert_eq!(removed, ["5"]);
    let (removed, _) = r.prune(2, "1", Some("2"));
    assert!(removed.is_empty());
}

#[tokio::test]
async fn a_fetch_checks_the_sha256_and_removes_what_does_not_match() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = write(tmp.path(), "app-2.0.tgz", b"payload");
    let into = tmp.path().join("into");
    std::fs::create_dir(&into).expect("dir");
    let limits = Limits {
        max_bytes: 1024,
        timeout: Duration::from_secs(30),
    };
    let path = src.to_str().expect("utf-8");
    let got = fetch(path, &sha(b"payload").to_uppercase(), &into, limits)
        .await
        .expect("fetched");
    assert_eq!((got.name.as_str(), got.bytes), ("app-2.0.tgz", 7));
    std::fs::remove_file(&got.path).expect("temp");

    let e = fetch(path, &sha(b"other"), &into, limits)
        .await
        .expect_err("mismatch");
    assert!(matches!(e, FetchError::Sha { .. }), "{e}");
    let told = format!("{e} {e:?}");
    assert!(
        !told.contains(&sha(b"payload")),
        "the local file's hash is never told: {told}"
    );
    assert!(told.contains(&sha(b"other")), "{told}");
    let small = Limits {
        max_bytes: 3,
        ..limits
    };
    let e = fetch(path, &sha(b"payload"), &into, small)
        .await
        .expect_err("too large");
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e}");
    let e = fetch("relative/app.tgz", "x", &into, limits)
        .await
        .expect_err("relative");
    assert!(matches!(e, FetchError::Source { .. }), "{e}");
    assert_eq!(
        std::fs::read_dir(&into).expect("dir").count(),
        0,
        "temp files removed"
    );
}

#[tokio::test]
async fn a_download_is_streamed_hashed_and_bounded() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/app-1.0.tgz", get(|| async { b"release".to_vec() }))
        .route("/big.tgz", get(|| async { vec![7u8; 4096] }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let limits = Limits {
        max_bytes: 1024,
        timeout: Duration::from_secs(30),
    };
    let url = |p: &str| format!("http://{addr}{p}");
    let got = fetch(&url("/app-1.0.tgz"), &sha(b"release"), tmp.path(), limits)
        .await
        .expect("downloaded");
    assert_eq!((got.name.as_str(), got.bytes), ("app-1.0.tgz", 7));
    assert_eq!(std::fs::read(&got.path).expect("temp"), b"release");
    std::fs::remove_file(&got.path).expect("temp");
    let e = fetch(&url("/nope.tgz"), "ab", tmp.path(), limits)
        .await
        .expect_err("404");
    assert!(matches!(e, FetchError::Status { status: 404, .. }), "{e}");
    let e = fetch(&url("/big.tgz"), &sha(&[7u8; 4096]), tmp.path(), limits)
        .await
        .expect_err("too large");
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e}");
    let e = fetch(&url("/app-1.0.tgz"), &sha(b"other"), tmp.path(), limits)
        .await
        .expect_err("mismatch");
    assert!(e.to_string().contains("sha256 mismatch"), "{e}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("dir").count(),
        0,
        "nothing left"
    );
    server.abort();
}
