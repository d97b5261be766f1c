//! Janitor tests: the pure plan and include globs, and real passes over temp dirs with
//! symlinks leading out of the root (removal, dry run, symlinked root, the module's reports).

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;
use super::{clean, dirfd};

const DAY: Duration = Duration::from_secs(86_400);

fn node(rel: &str, kind: NodeKind, age_days: u64, now: SystemTime) -> Node {
    Node {
        rel: PathBuf::from(rel),
        kind,
        mtime: now - DAY * age_days as u32,
        size: 10,
    }
}

#[test]
fn plan_removes_old_files_then_emptied_dirs() {
    let now = SystemTime::UNIX_EPOCH + DAY * 1000;
    let nodes = vec![
        node("a", NodeKind::Dir, 30, now),
        node("a/old.log", NodeKind::File, 30, now),
        node("a/new.log", NodeKind::File, 1, now),
        node("b", NodeKind::Dir, 30, now),
        node("b/c", NodeKind::Dir, 30, now),
        node("b/c/old.txt", NodeKind::File, 30, now),
        node("b/link", NodeKind::Symlink, 30, now),
        node("d", NodeKind::Dir, 1, now),
        node("empty", NodeKind::Dir, 30, now),
        node("sock", NodeKind::Other, 30, now),
    ];
    let none = HashSet::new();
    let got: Vec<&str> = plan(&nodes, now, DAY * 7, &Include::default(), true, &none)
        .into_iter()
        .map(|i| nodes[i].rel.to_str().unwrap_or(""))
        .collect();
    assert_eq!(
        got,
        vec!["a/old.log", "b/c/old.txt", "b/link", "b/c", "b", "empty"]
    );
    // Without dir removal, only files; a pinned dir (unlistable child) is kept.
    let files = plan(&nodes, now, DAY * 7, &Include::default(), false, &none);
    assert_eq!(files.len(), 3);
    let pinned: HashSet<PathBuf> = [PathBuf::from("b/c/x")].into();
    let got = plan(&nodes, now, DAY * 7, &Include::default(), true, &pinned);
    assert!(!got.iter().any(|&i| nodes[i].rel == Path::new("b")));
}

#[test]
fn include_globs_match_names_or_relative_paths() {
    let inc = Include::new(&["*.log".into(), "runs/*/tmp-*".into()]).expect("globs");
    assert!(inc.matches(Path::new("x/y/app.log")));
    assert!(inc.matches(Path::new("runs/42/tmp-a")));
    assert!(!inc.matches(Path::new("runs/42/deeper/tmp-a")));
    assert!(!inc.matches(Path::new("app.txt")));
    assert!(Include::default().matches(Path::new("anything")));
}

fn set_old(path: &Path, days: u64) {
    let t = SystemTime::now() - DAY * days as u32;
    let ts = nix::sys::time::TimeSpec::from(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .expect("after epoch"),
    );
    nix::sys::stat::utimensat(
        None,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
}

fn write(path: &Path, bytes: &[u8], days: u64) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, bytes).expect("write");
    set_old(path, days);
}

fn root_cfg(path: &Path, dry_run: bool) -> JanitorRootConfig {
    JanitorRootConfig {
        path: path.to_owned(),
        older_than: DAY * 7,
        include: Vec::new(),
        dry_run,
        remove_empty_dirs: true,
    }
}

/// A root with old and new files, an old subtree, and symlinks leading outside to old
/// files and directories.
fn scene() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    write(&outside.join("precious.txt"), b"keep me", 30);
    write(&outside.join("dir/deep.txt"), b"keep me too", 30);
    set_old(&outside.join("dir"), 30);
    set_old(&outside, 30);
    write(&root.join("old.log"), b"0123456789", 30);
    write(&root.join("fresh.log"), b"new", 0);
    write(&root.join("runs/1/out.txt"), b"abc", 30);
    set_old(&root.join("runs/1"), 30);
    set_old(&root.join("runs"), 30);
    symlink(outside.join("precious.txt"), root.join("old-link")).expect("symlink");
    set_old(&root.join("old-link"), 30);
    symlink(&outside, root.join("new-link-to-dir")).expect("symlink");
    symlink(outside.join("dir"), root.join("runs/old-link-to-dir")).expect("symlink");
    set_old(&root.join("runs/old-link-to-dir"), 30);
    set_old(&root.join("runs"), 30);
    (tmp, root, outside)
}

fn outside_intact(outside: &Path) {
    assert_eq!(
        fs::read(outside.join("precious.txt")).expect("precious"),
        b"keep me"
    );
    assert_eq!(
        fs::read(outside.join("dir/deep.txt")).expect("deep"),
        b"keep me too"
    );
}

#[test]
fn symlinks_out_of_the_root_are_removed_as_links_only() {
    let (_tmp, root, outside) = scene();
    let cancel = AtomicBool::new(false);
    let rep = clean_root(&root_cfg(&root, false), SystemTime::now(), 10, &cancel).expect("clean");
    outside_intact(&outside);
    assert!(fs::symlink_metadata(root.join("old.log")).is_err());
    assert!(
        fs::symlink_metadata(root.join("old-link")).is_err(),
        "old link removed"
    );
    assert!(root.join("fresh.log").exists());
    // A new link is kept even though its target is old.
    assert!(fs::symlink_metadata(root.join("new-link-to-dir")).is_ok());
    // The old subtree went: file, link to an outside dir (as a link), then the dirs.
    assert!(!root.join("runs").exists());
    assert_eq!(rep.removed_files, 4, "{rep:?}");
    assert_eq!(rep.removed_dirs, 2, "{rep:?}");
    assert_eq!(rep.errors, 0);
    assert!(rep.sample.iter().any(|s| s.ends_with("old.log")));
    assert!(root.exists(), "the root itself stays");
}

#[test]
fn dry_run_deletes_nothing_but_reports() {
    let (_tmp, root, outside) = scene();
    let before: Vec<_> = walkdir::WalkDir::new(root.parent().expect("parent"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .collect();
    let cancel = AtomicBool::new(false);
    let rep = clean_root(&root_cfg(&root, true), SystemTime::now(), 10, &cancel).expect("clean");
    let after: Vec<_> = walkdir::WalkDir::new(root.parent().expect("parent"))
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_owned())
        .collect();
    assert_eq!(before, after);
    outside_intact(&outside);
    assert!(rep.dry_run);
    assert_eq!((rep.removed_files, rep.removed_dirs), (4, 2), "{rep:?}");
    assert_eq!(rep.bytes, 10 + 3 + link_len(&root));
}

fn link_len(root: &Path) -> u64 {
    // Symlink sizes are their target's length; the two old links in the scene.
    let outside = root.parent().expect("parent").join("outside");
    (outside.join("precious.txt").as_os_str().len() + outside.join("dir").as_os_str().len()) as u64
}

#[test]
fn root_that_is_a_symlink_is_resolved_and_include_filters_apply() {
    let (tmp, root, outside) = scene();
    let alias = tmp.path().join("alias");
    symlink(&root, &alias).expect("alias");
    let mut cfg = root_cfg(&alias, false);
    cfg.include = vec!["*.log".into()];
    let cancel = AtomicBool::new(false);
    let rep = clean_root(&cfg, SystemTime::now(), 10, &cancel).expect("clean");
    outside_intact(&outside);
    assert_eq!(rep.removed_files, 1, "{rep:?}");
    assert!(!root.join("old.log").exists());
    assert!(root.join("runs/1/out.txt").exists());
    assert!(fs::symlink_metadata(root.join("old-link")).is_ok());
}

#[tokio::test]
async fn module_reports_each_root() {
    let (_tmp, root, outside) = scene();
    let cfg = JanitorConfig {
        name: None,
        interval: Duration::from_secs(10),
        roots: vec![
            root_cfg(&root, true),
            root_cfg(&outside.join("missing"), false),
        ],
        sample_size: 2,
    };
    let mut m = JanitorModule::new(&cfg);
    let ctx = ModuleCtx::empty();
    let bodies = m.run_once(&ctx).await.expect("run");
    assert_eq!(bodies.len(), 2);
    let pb::event::Body::Janitor(first) = &bodies[0] else {
        panic!("{bodies:?}")
    };
    assert!(first.dry_run);
    assert_eq!(first.removed_files, 4);
    assert_eq!(first.sample.len(), 2);
    let pb::event::Body::Janitor(second) = &bodies[1] else {
        panic!("{bodies:?}")
    };
    assert_eq!(second.errors, 1);
    outside_intact(&outside);
}

/// Swaps the directory `root/<name>` for a symlink to `to` (the real directory moves to
/// `root/<name>.moved`).
fn swap_for_symlink(root: &Path, name: &str, to: &Path) {
    fs::rename(root.join(name), root.join(format!("{name}.moved"))).expect("move dir away");
    symlink(to, root.join(name)).expect("symlink in its place");
}

#[test]
fn a_parent_swapped_for_a_symlink_cannot_lead_a_removal_out_of_the_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    // Same names as the planned removals, outside the root.
    write(&outside.join("old.log"), b"precious", 30);
    write(&root.join("a/old.log"), b"a", 30);
    write(&root.join("b/old.log"), b"b", 30);
    let mut cfg = root_cfg(&root, false);
    cfg.remove_empty_dirs = false;
    let cancel = AtomicBool::new(false);
    let mut swapped = false;
    // Right after `a/old.log` is checked and before it is removed, `a` (its parent, already
    // checked) and `b` (the next one's parent, not yet checked) become symlinks to `outside`.
    let mut race = |rel: &Path| {
        if rel == Path::new("a/old.log") && !swapped {
            swapped = true;
            swap_for_symlink(&root, "a", &outside);
            swap_for_symlink(&root, "b", &outside);
        }
    };
    let rep =
        clean::clean_root_hooked(&cfg, SystemTime::now(), 10, &cancel, &mut race).expect("clean");
    assert!(swapped, "the race hook ran");
    assert_eq!(
        fs::read(outside.join("old.log")).expect("the outside file survives"),
        b"precious"
    );
    // `a/old.log` was removed from the directory that was checked (now `a.moved`); `b`'s
    // removal was skipped because `b` is a symlink by then.
    assert!(!root.join("a.moved/old.log").exists());
    assert_eq!(
        fs::read(root.join("b.moved/old.log")).expect("b kept"),
        b"b"
    );
    assert_eq!((rep.removed_files, rep.errors), (1, 0), "{rep:?}");
}

#[test]
fn deep_trees_and_unlistable_dirs_are_pinned_not_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let mut deep = root.clone();
    for _ in 0..dirfd::MAX_DEPTH + 2 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).expect("deep dirs");
    write(&deep.join("old.log"), b"x", 30);
    write(&root.join("old.log"), b"0123", 30);
    let cancel = AtomicBool::new(false);
    let rep = clean_root(&root_cfg(&root, false), SystemTime::now(), 10, &cancel).expect("clean");
    assert!(!root.join("old.log").exists());
    assert!(
        deep.join("old.log").exists(),
        "below the depth limit: untouched"
    );
    assert!(root.join("d").is_dir(), "ancestors of a pinned dir stay");
    assert_eq!((rep.removed_files, rep.errors), (1, 1), "{rep:?}");
}
