//! Backups that leave the host: the `Destination` trait (put, get, list, delete, read-back of
//! size and sha256), copying a run's archive and manifest there and checking the copy
//! (`sync`), the job's retention on the remote copies, the reconciliation of local against
//! remote (`reconcile`), and fetching an archive back for a restore (`fetch`). Blocking code.
//! `path` owns the second-directory destination, `s3` the S3 bucket.

mod path;
mod s3;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use opsfleet_report::ErrorChain;
use tracing::{info, warn};

use super::archive::{sha256_file, Manifest};
use super::naming::{self, parse_archive_name, ArchiveFile, MANIFEST_SUFFIX, PARTIAL_SUFFIX};
use super::run::select_prune;
use crate::config::{BackupJobConfig, RemoteConfig, RemoteKind};

/// One object in a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteObject {
    pub name: String,
    pub size: u64,
}

/// An object's sha256 (hex) and size: read back, or recorded with it when it was put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub sha256: String,
    pub size: u64,
}

/// A place archives are copied to. Names are archive and manifest file names (no `/`).
pub trait Destination: Send + Sync {
    /// What events and logs call it (never a credential).
    fn label(&self) -> &str;
    /// Stores the local file `from` as `name`, replacing it, with `sum` (the file's sha256 and
    /// size) recorded beside it; a reader never sees it partial.
    fn put(&self, name: &str, from: &Path, sum: &Fingerprint) -> Result<(), RemoteError>;
    /// The fingerprint recorded with object `name` when it was put, if it has one that still
    /// describes it; `None` for an object put without one (an older agent) or changed since,
    /// which only `read_back` can judge. Reads no object data.
    fn recorded(&self, name: &str) -> Result<Option<Fingerprint>, RemoteError>;
    /// Writes object `name` into the new local file `to`.
    fn get(&self, name: &str, to: &Path) -> Result<(), RemoteError>;
    /// Every complete object, by name.
    fn list(&self) -> Result<Vec<RemoteObject>, RemoteError>;
    /// Removes `name` (gone already is fine).
    fn delete(&self, name: &str) -> Result<(), RemoteError>;
    /// sha256 (hex) and size of object `name`, read back from the destination (all its data).
    fn read_back(&self, name: &str) -> Result<Fingerprint, RemoteError>;
}

/// Why a remote operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{destination}: cannot {op} {name:?}")]
    Io {
        op: &'static str,
        destination: String,
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("{destination}: cannot {op} {name:?}")]
    Store {
        op: &'static str,
        destination: String,
        name: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("{destination}: no usable credentials: {reason}")]
    Credentials { destination: String, reason: String },
    #[error("{name:?} is not an object name")]
    BadName { name: String },
    #[error(
        "{destination}: {name:?} read back as {actual_size} bytes sha256 {actual_sha256}, \
         expected {expected_size} bytes sha256 {expected_sha256}"
    )]
    Mismatch {
        destination: String,
        name: String,
        expected_sha256: String,
        expected_size: u64,
        actual_sha256: String,
        actual_size: u64,
    },
    #[error("{}: cannot read local file", path.display())]
    Local {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{destination}: manifest {name:?} is not valid")]
    Manifest {
        destination: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{destination}: no complete archive {what}")]
    NotThere { destination: String, what: String },
}

/// The destination a job's `remote` config names (fails when S3 credentials are missing or
/// unusable).
pub fn open(cfg: &RemoteConfig) -> Result<Box<dyn Destination>, RemoteError> {
    Ok(match cfg.kind {
        RemoteKind::Path => Box::new(path::PathDestination {
            root: cfg.path.clone(),
            label: cfg.label(),
        }),
        RemoteKind::S3 => Box::new(s3::S3Destination::open(cfg)?),
    })
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Archives copied (the run's own first, then older ones the remote lacked).
    pub copied: Vec<String>,
    /// Bytes of the copied archives and manifests.
    pub bytes: u64,
    pub duration: Duration,
    /// Remote archives deleted by retention.
    pub pruned: Vec<String>,
}

/// The job's complete archives among `objects` (archive and manifest both there), oldest
/// first, with the archive's size.
fn complete(objects: &[RemoteObject], job: &str) -> Vec<(ArchiveFile, u64)> {
    let sizes: BTreeMap<&str, u64> = objects.iter().map(|o| (o.name.as_str(), o.size)).collect();
    let mut out: Vec<(ArchiveFile, u64)> = objects
        .iter()
        .filter(|o| sizes.contains_key(format!("{}{MANIFEST_SUFFIX}", o.name).as_str()))
        .filter_map(|o| {
            parse_archive_name(job, &o.name).map(|(time, compression)| {
                (
                    ArchiveFile {
                        name: o.name.clone(),
                        time,
                        compression,
                    },
                    o.size,
                )
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.0.time
            .cmp(&b.0.time)
            .then_with(|| a.0.name.cmp(&b.0.name))
    });
    out
}

fn local_manifest(
    job: &BackupJobConfig,
    archive: &str,
) -> Result<(Manifest, String, u64), RemoteError> {
    let path = job.destination.join(format!("{archive}{MANIFEST_SUFFIX}"));
    let local = |source| RemoteError::Local {
        path: path.clone(),
        source,
    };
    let bytes = fs::read(&path).map_err(local)?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| local(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    let (sha, size) = sha256_file(&path).map_err(local)?;
    Ok((m, sha, size))
}

/// Copies one archive, then its manifest, each with its fingerprint recorded, and reads both
/// back. A copy that reads back different is deleted (its recorded fingerprint would
/// vouch for it). Returns the bytes copied.
fn copy_one(
    job: &BackupJobConfig,
    dest: &dyn Destination,
    archive: &str,
) -> Result<u64, RemoteError> {
    let (m, manifest_sha, manifest_size) = local_manifest(job, archive)?;
    let manifest_name = format!("{archive}{MANIFEST_SUFFIX}");
    // Archive first: a remote manifest means its archive is there (as locally).
    for (name, sha256, size) in [
        (archive, m.archive_sha256.clone(), m.archive_size),
        (manifest_name.as_str(), manifest_sha, manifest_size),
    ] {
        let sum = Fingerprint { sha256, size };
        dest.put(name, &job.destination.join(name), &sum)?;
        let got = dest.read_back(name)?;
        if got != sum {
            if let Err(e) = dest.delete(name) {
                warn!(destination = dest.label(), name, error = %ErrorChain(&e), "cannot delete a bad copy");
            }
            return Err(RemoteError::Mismatch {
                destination: dest.label().to_owned(),
                name: name.to_owned(),
                expected_sha256: sum.sha256,
                expected_size: sum.size,
                actual_sha256: got.sha256,
                actual_size: got.size,
            });
        }
    }
    Ok(m.archive_size + manifest_size)
}

/// After a run wrote `archive`: copies it and every other complete local archive the remote
/// lacks, checks each copy, then applies the job's retention to the remote copies at `now`.
pub fn sync(
    job: &BackupJobConfig,
    dest: &dyn Destination,
    archive: &str,
    now: SystemTime,
) -> Result<Synced, RemoteError> {
    let started = Instant::now();
    let mut bytes = copy_one(job, dest, archive)?;
    let mut copied = vec![archive.to_owned()];
    let remote: Vec<String> = complete(&dest.list()?, &job.name)
        .into_iter()
        .map(|(a, _)| a.name)
        .collect();
    let local = naming::list_archives(&job.destination, &job.name).map_err(|source| {
        RemoteError::Local {
            path: job.destination.clone(),
            source,
        }
    })?;
    for a in local.iter().rev() {
        if !remote.contains(&a.name) && a.name != archive {
            bytes += copy_one(job, dest, &a.name)?;
            copied.push(a.name.clone());
        }
    }
    let pruned = prune_remote(job, dest, now)?;
    Ok(Synced {
        copied,
        bytes,
        duration: started.elapsed(),
        pruned,
    })
}

/// The job's retention on the remote copies: deletes (archive, then manifest) what
/// `select_prune` picks among the complete remote archives.
pub fn prune_remote(
    job: &BackupJobConfig,
    dest: &dyn Destination,
    now: SystemTime,
) -> Result<Vec<String>, RemoteError> {
    let archives: Vec<ArchiveFile> = complete(&dest.list()?, &job.name)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let mut pruned = Vec::new();
    for name in select_prune(&archives, now, job.keep_days, job.keep_count) {
        dest.delete(&name)?;
        dest.delete(&format!("{name}{MANIFEST_SUFFIX}"))?;
        pruned.push(name);
    }
    if !pruned.is_empty() {
        info!(job = %job.name, destination = dest.label(), pruned = pruned.len(), "remote archives pruned");
    }
    Ok(pruned)
}

/// What a reconciliation found. All empty: local and remote agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discrepancy {
    /// Complete local archives without a complete remote copy.
    pub missing: Vec<String>,
    /// Complete remote archives without a local copy.
    pub extra: Vec<String>,
    /// Archives on both sides whose remote copy's size or sha256 differs from the manifest.
    pub mismatched: Vec<String>,
    pub remote_archives: u32,
    /// Remote copies read back in full: those without a fingerprint recorded at upload (or
    /// changed since).
    pub read_back: u32,
}

/// The remote copy's fingerprint: the one recorded at upload when it still holds, else read
/// back (older uploads, or a copy changed since). Counts read-backs in `d`.
fn remote_fingerprint(
    dest: &dyn Destination,
    name: &str,
    d: &mut Discrepancy,
) -> Result<Fingerprint, RemoteError> {
    if let Some(sum) = dest.recorded(name)? {
        return Ok(sum);
    }
    d.read_back += 1;
    dest.read_back(name)
}

/// Compares the job's complete local archives with the remote ones; a copy on both sides is
/// checked against the local manifest (size and sha256) by the fingerprint recorded when it
/// was put, or read back when it has none.
pub fn reconcile(
    job: &BackupJobConfig,
    dest: &dyn Destination,
) -> Result<Discrepancy, RemoteError> {
    let remote = complete(&dest.list()?, &job.name);
    let local = naming::list_archives(&job.destination, &job.name).map_err(|source| {
        RemoteError::Local {
            path: job.destination.clone(),
            source,
        }
    })?;
    let remote_sizes: BTreeMap<&str, u64> =
        remote.iter().map(|(a, s)| (a.name.as_str(), *s)).collect();
    let mut d = Discrepancy {
        remote_archives: u32::try_from(remote.len()).unwrap_or(u32::MAX),
        ..Discrepancy::default()
    };
    for a in &local {
        let Some(&size) = remote_sizes.get(a.name.as_str()) else {
            d.missing.push(a.name.clone());
            continue;
        };
        let Ok((m, _, _)) = local_manifest(job, &a.name) else {
            continue;
        };
        let same = size == m.archive_size
            && match remote_fingerprint(dest, &a.name, &mut d) {
                Ok(sum) => sum.sha256 == m.archive_sha256 && sum.size == m.archive_size,
                Err(e) => {
                    warn!(job = %job.name, archive = %a.name, error = %ErrorChain(&e), "cannot check remote archive");
                    false
                }
            };
        if !same {
            d.mismatched.push(a.name.clone());
        }
    }
    for (a, _) in &remote {
        if !local.iter().any(|l| l.name == a.name) {
            d.extra.push(a.name.clone());
        }
    }
    Ok(d)
}

/// Fetches a complete remote archive of the job (`name`, or the newest when `None`) and its
/// manifest back into the job's destination (hidden `.partial` files renamed into place,
/// manifest first); returns its name. The restore then verifies it as any local archive.
pub fn fetch(
    job: &BackupJobConfig,
    dest: &dyn Destination,
    name: Option<&str>,
) -> Result<String, RemoteError> {
    let remote = complete(&dest.list()?, &job.name);
    let found = match name {
        Some(n) => remote.iter().find(|(a, _)| a.name == n),
        None => remote.last(),
    };
    let Some((archive, _)) = found else {
        return Err(RemoteError::NotThere {
            destination: dest.label().to_owned(),
            what: name.map_or_else(|| format!("of job {}", job.name), |n| format!("{n:?}")),
        });
    };
    let archive = archive.name.clone();
    let local = |source| RemoteError::Local {
        path: job.destination.clone(),
        source,
    };
    fs::create_dir_all(&job.destination).map_err(local)?;
    let manifest = format!("{archive}{MANIFEST_SUFFIX}");
    for n in [&manifest, &archive] {
        let tmp = job.destination.join(format!(".{n}{PARTIAL_SUFFIX}"));
        let _ = fs::remove_file(&tmp);
        let res = dest.get(n, &tmp).and_then(|()| {
            fs::rename(&tmp, job.destination.join(n)).map_err(|source| RemoteError::Local {
                path: job.destination.join(n),
                source,
            })
        });
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            if n == &archive {
                let _ = fs::remove_file(job.destination.join(&manifest));
            }
            return Err(e);
        }
    }
    info!(job = %job.name, destination = dest.label(), archive, "archive fetched from remote");
    Ok(archive)
}

#[cfg(test)]
mod tests;
