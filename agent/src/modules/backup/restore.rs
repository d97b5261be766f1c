//! Restore: pick an archive of a job, read its manifest, extract it into a hidden temp dir
//! beside the target and verify everything (`extract`: stops at the first damaged entry,
//! never extracts an archive whose own hash is wrong, drops setuid/setgid bits), and only then
//! move the entries into the target. On any failure the temp dir is removed, so are the
//! target's missing parent directories this restore created, and the target is left as it
//! was (not created if it did not exist). Blocking code: call it from `spawn_blocking`.
//!
//! This file owns choosing the archive and the restore itself; `super::report` owns what a
//! restore reports (its success report, corruption details and errors, as events and JSON).

use opsfleet_report::ErrorChain;
use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::archive::{Manifest, ManifestEntry};
use super::extract::extract_verified;
use super::naming::MANIFEST_SUFFIX;
use super::naming::{list_archives, parse_archive_name};
use super::remote;
use crate::config::BackupJobConfig;

pub use super::report::{
    failure_json, Corruption, FileProblem, Problem, RestoreError, RestoreReport,
};

/// Which archive of a job to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSelector {
    /// The newest complete archive (by the timestamp in its name).
    Latest,
    /// An archive file name in the job's destination, e.g. `app-20240131T235959.123Z.tar.zst`.
    Named(String),
}

impl FromStr for ArchiveSelector {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s == "latest" {
            ArchiveSelector::Latest
        } else {
            ArchiveSelector::Named(s.to_owned())
        })
    }
}

/// The archive file name `selector` designates for `job`.
pub fn resolve_archive(
    job: &BackupJobConfig,
    selector: &ArchiveSelector,
) -> Result<String, RestoreError> {
    match selector {
        ArchiveSelector::Named(name) => {
            if parse_archive_name(&job.name, name).is_none() {
                return Err(RestoreError::BadArchiveName {
                    job: job.name.clone(),
                    name: name.clone(),
                });
            }
            Ok(name.clone())
        }
        ArchiveSelector::Latest => list_archives(&job.destination, &job.name)
            .map_err(|source| RestoreError::List {
                dest: job.destination.clone(),
                source,
            })?
            .pop()
            .map(|a| a.name)
            .ok_or_else(|| RestoreError::NoArchive {
                job: job.name.clone(),
                dest: job.destination.clone(),
            }),
    }
}

/// The archive to restore: the local one `selector` designates; when it is not on this host
/// and the job has a remote destination, the remote copy fetched back into the destination
/// (then verified against its manifest like any local archive).
fn archive_to_restore(
    job: &BackupJobConfig,
    selector: &ArchiveSelector,
) -> Result<String, RestoreError> {
    let local = resolve_archive(job, selector);
    let Some(cfg) = &job.remote else {
        return local;
    };
    let complete = |a: &str| {
        job.destination.join(a).is_file()
            && job
                .destination
                .join(format!("{a}{MANIFEST_SUFFIX}"))
                .is_file()
    };
    let wanted = match (&local, selector) {
        (Ok(a), _) if complete(a) => return local,
        (Ok(a), ArchiveSelector::Named(_)) => Some(a.clone()),
        (Err(RestoreError::NoArchive { .. }), ArchiveSelector::Latest) => None,
        _ => return local,
    };
    remote::open(cfg)
        .and_then(|dest| remote::fetch(job, dest.as_ref(), wanted.as_deref()))
        .map_err(|source| RestoreError::Remote {
            job: job.name.clone(),
            destination: cfg.label(),
            source: Box::new(source),
        })
}

/// Reads and checks the manifest of `archive` in the job's destination.
pub fn read_manifest(job: &BackupJobConfig, archive: &str) -> Result<Manifest, RestoreError> {
    let path = job.destination.join(format!("{archive}{MANIFEST_SUFFIX}"));
    let bytes = fs::read(&path).map_err(|source| RestoreError::ManifestRead {
        path: path.clone(),
        source,
    })?;
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| RestoreError::ManifestInvalid {
            path: path.clone(),
            source,
        })?;
    if m.archive != archive || m.job != job.name {
        return Err(RestoreError::ManifestMismatch {
            path,
            found: format!("job {} archive {}", m.job, m.archive),
        });
    }
    Ok(m)
}

/// Restores one archive of `job` into `target` (created if missing; an existing target must be
/// a directory none of whose entries collide with the archive's top-level names).
pub fn restore(
    job: &BackupJobConfig,
    selector: &ArchiveSelector,
    target: &Path,
) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let archive = archive_to_restore(job, selector)?;
    let manifest = read_manifest(job, &archive)?;
    let target = std::path::absolute(target).map_err(target_io(target, "resolve", target))?;
    let (Some(parent), Some(target_name)) = (target.parent(), target.file_name()) else {
        return Err(RestoreError::Target {
            target,
            reason: "needs a parent directory and a name".to_owned(),
        });
    };
    let target_exists = target_is_dir(&target)?;
    let tops = top_level_names(&manifest.entries);
    if target_exists {
        check_conflicts(&target, &tops)?;
    }
    let created =
        create_parents(parent).map_err(|(path, e)| target_io(&target, "create", &path)(e))?;
    let tmp = parent.join(format!(
        ".{}.restore-{}-{}",
        target_name.to_string_lossy(),
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    ));
    let archive_path = job.destination.join(&archive);
    let result = fs::create_dir(&tmp)
        .map_err(target_io(&target, "create", &tmp))
        .and_then(|()| {
            let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700));
            extract_verified(&archive_path, &archive, &manifest, &tmp)
        })
        .and_then(|stats| move_into(&tmp, &target, target_exists, &tops).map(|()| stats));
    clean_up(&tmp, result.is_err().then_some(created.as_slice()));
    let stats = result?;
    Ok(RestoreReport {
        job: job.name.clone(),
        archive,
        target,
        files: stats.files,
        dirs: stats.dirs,
        symlinks: stats.symlinks,
        bytes: stats.bytes,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Whether `target` is an existing directory (`false`: it does not exist); anything else
/// there is an error.
fn target_is_dir(target: &Path) -> Result<bool, RestoreError> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(RestoreError::Target {
            target: target.to_owned(),
            reason: "exists and is not a directory".to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(target_io(target, "stat", target)(source)),
    }
}

/// Maps an I/O error doing `action` on `path`, restoring into `target`.
fn target_io(
    target: &Path,
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> RestoreError {
    let (target, path) = (target.to_owned(), path.to_owned());
    move |source| RestoreError::TargetIo {
        target,
        action,
        path,
        source,
    }
}

/// Removes the temp dir `tmp`, and after a failed restore the target's parents it `created`
/// (deepest first; a directory someone else filled meanwhile stays).
fn clean_up(tmp: &Path, created: Option<&[PathBuf]>) {
    if let Err(e) = fs::remove_dir_all(tmp) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!(path = %tmp.display(), error = %ErrorChain(&e), "cannot remove restore temp dir");
        }
    }
    if let Some(created) = created {
        for dir in created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Creates `dir` and its missing ancestors; returns the directories it created, outermost
/// first (so a failed restore can remove them again), or the one it could not create.
fn create_parents(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, io::Error)> {
    let mut missing = Vec::new();
    let mut p = Some(dir);
    while let Some(d) = p {
        match fs::symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d.to_owned()),
            Err(e) => return Err((d.to_owned(), e)),
        }
        p = d.parent();
    }
    let mut created = Vec::new();
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for c in created.iter().rev() {
                    let _ = fs::remove_dir(c);
                }
                return Err((d, e));
            }
        }
    }
    Ok(created)
}

fn top_level_names(entries: &[ManifestEntry]) -> Vec<String> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter_map(|e| e.path.split('/').next())
        .filter(|t| seen.insert(t.to_string()))
        .map(str::to_owned)
        .collect()
}

fn check_conflicts(target: &Path, tops: &[String]) -> Result<(), RestoreError> {
    let taken: Vec<&str> = tops
        .iter()
        .filter(|t| fs::symlink_metadata(target.join(t)).is_ok())
        .map(String::as_str)
        .collect();
    if taken.is_empty() {
        Ok(())
    } else {
        Err(RestoreError::Target {
            target: target.to_owned(),
            reason: format!("already holds {}; restore elsewhere", taken.join(", ")),
        })
    }
}

/// Moves the verified top-level entries from `tmp` into `target`; on failure moves back what
/// was moved (and removes a target it created).
fn move_into(
    tmp: &Path,
    target: &Path,
    target_exists: bool,
    tops: &[String],
) -> Result<(), RestoreError> {
    if target_exists {
        check_conflicts(target, tops)?;
    } else {
        fs::create_dir(target).map_err(target_io(target, "create", target))?;
    }
    let mut moved: Vec<&str> = Vec::new();
    for top in tops {
        let from = tmp.join(top);
        if fs::symlink_metadata(&from).is_err() {
            continue;
        }
        let to = target.join(top);
        if let Err(e) = fs::rename(&from, &to) {
            for back in moved {
                let _ = fs::rename(target.join(back), tmp.join(back));
            }
            if !target_exists {
                let _ = fs::remove_dir(target);
            }
            return Err(target_io(target, "move into place", &to)(e));
        }
        moved.push(top);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
