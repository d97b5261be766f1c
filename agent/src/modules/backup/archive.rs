//! Writing one backup: walk the sources (symlinks archived as symlinks, never followed), stream
//! tar + zstd|gzip into a hidden `.partial` file while hashing every file and the compressed
//! bytes, report progress, write the manifest, and rename both into place only when complete
//! (manifest first, so a visible archive always has its manifest). Blocking code: callers run
//! it in `spawn_blocking`.
//!
//! This file owns `write_archive` and its results and errors; `manifest` owns the manifest
//! format, `writers` the plumbing of one write (progress, hashing, compression, partial-file
//! guard), `walk` the archiving of one source.

mod manifest;
mod walk;
mod writers;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::naming::{self, MANIFEST_SUFFIX, PARTIAL_SUFFIX};
use crate::config::BackupJobConfig;

pub use manifest::{EntryKind, Manifest, ManifestEntry, Skipped};
use walk::Walk;
use writers::{Encoder, HashWriter, PartialGuard, Tracker};

/// How the manifest's `sources` name a pre-backup step's output (`pre_backup:app.dump`).
pub const PRE_BACKUP_SOURCE_PREFIX: &str = "pre_backup:";

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// Why writing an archive failed. The partial files are removed before this is returned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("source {}: cannot read", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot walk {}", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: shrank while being archived ({got} of {expected} bytes)", path.display())]
    Shrank {
        path: PathBuf,
        expected: u64,
        got: u64,
    },
    #[error("{}: cannot write", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cancelled (agent stopping)")]
    Cancelled,
    #[error("pre-backup step failed")]
    PreStep(#[source] super::prestep::PreStepError),
}

/// Counters handed to the progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub files: u64,
    pub bytes: u64,
}

/// What a completed archive is.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub archive_path: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub duration: Duration,
}

/// Writes one archive of `job` stamped `at` into its destination, and its manifest. `extra`
/// (the pre-backup step's output file) is archived after the sources, under its base name.
pub fn write_archive(
    job: &BackupJobConfig,
    at: SystemTime,
    extra: Option<&Path>,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &AtomicBool,
) -> Result<Written, ArchiveError> {
    let started = Instant::now();
    let dest = &job.destination;
    let (at, name) = unique_name(job, at)?;
    let archive_path = dest.join(&name);
    let manifest_path = dest.join(format!("{name}{MANIFEST_SUFFIX}"));
    let archive_tmp = dest.join(format!(".{name}{PARTIAL_SUFFIX}"));
    let manifest_tmp = dest.join(format!(".{name}{MANIFEST_SUFFIX}{PARTIAL_SUFFIX}"));
    let guard = PartialGuard(vec![archive_tmp.clone(), manifest_tmp.clone()]);

    let mut tracker = Tracker::new(
        job.progress_every_files,
        job.progress_every,
        on_progress,
        cancel,
    );
    let tar = write_tar(job, extra, &archive_tmp, &mut tracker)?;
    let progress = tracker.now;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        job: job.name.clone(),
        archive: name.clone(),
        compression: job.compression,
        created_unix_ms: opsfleet_proto::time::unix_ms(at),
        sources: job
            .sources
            .iter()
            .map(|s| s.display().to_string())
            .chain(
                job.pre_backup
                    .iter()
                    .filter(|_| extra.is_some())
                    .map(|p| format!("{PRE_BACKUP_SOURCE_PREFIX}{}", p.output)),
            )
            .collect(),
        archive_sha256: tar.sha256,
        archive_size: tar.size,
        files: progress.files,
        bytes: progress.bytes,
        entries: tar.entries,
        skipped: tar.skipped,
    };
    write_manifest(&manifest, &manifest_tmp)?;
    fs::rename(&manifest_tmp, &manifest_path).map_err(write_err(&manifest_path))?;
    if let Err(source) = fs::rename(&archive_tmp, &archive_path) {
        let _ = fs::remove_file(&manifest_path);
        return Err(ArchiveError::Write {
            path: archive_path,
            source,
        });
    }
    std::mem::forget(guard);
    if let Ok(d) = File::open(dest) {
        let _ = d.sync_all();
    }
    Ok(Written {
        archive_path,
        manifest_path,
        manifest,
        duration: started.elapsed(),
    })
}

/// Creates the job's destination and picks a name free there (archive and manifest): the
/// timestamp is bumped by a millisecond while the name is taken. Returns the stamp and name.
fn unique_name(
    job: &BackupJobConfig,
    at: SystemTime,
) -> Result<(SystemTime, String), ArchiveError> {
    let dest = &job.destination;
    fs::create_dir_all(dest).map_err(|source| ArchiveError::Write {
        path: dest.clone(),
        source,
    })?;
    let mut at = at;
    let mut name = naming::archive_name(&job.name, at, job.compression);
    while dest.join(&name).exists() || dest.join(format!("{name}{MANIFEST_SUFFIX}")).exists() {
        at += Duration::from_millis(1);
        name = naming::archive_name(&job.name, at, job.compression);
    }
    Ok((at, name))
}

/// The written tar stream: its compressed bytes' sha256 and size, and what it holds.
struct Tar {
    sha256: String,
    size: u64,
    entries: Vec<ManifestEntry>,
    skipped: Vec<Skipped>,
}

/// Streams every source of `job` as tar + compression into the new file `archive_tmp` and
/// syncs it.
fn write_tar(
    job: &BackupJobConfig,
    extra: Option<&Path>,
    archive_tmp: &Path,
    tracker: &mut Tracker<'_>,
) -> Result<Tar, ArchiveError> {
    // The archive is readable by its owner only; the manifest holds no content.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(archive_tmp)
        .map_err(write_err(archive_tmp))?;
    let enc = Encoder::new(
        job.compression,
        HashWriter::new(BufWriter::with_capacity(256 * 1024, file)),
    )
    .map_err(write_err(archive_tmp))?;
    let mut builder = tar::Builder::new(enc);
    let mut walk = Walk {
        builder: &mut builder,
        archive_tmp,
        tracker,
        entries: Vec::new(),
        skipped: Vec::new(),
    };
    for source in job.sources.iter().map(PathBuf::as_path).chain(extra) {
        walk.source(source)?;
    }
    let Walk {
        entries, skipped, ..
    } = walk;
    let enc = builder.into_inner().map_err(write_err(archive_tmp))?;
    let hashed = enc.finish().map_err(write_err(archive_tmp))?;
    let (buffered, sha256, size) = hashed.finish();
    let file = buffered.into_inner().map_err(|e| ArchiveError::Write {
        path: archive_tmp.to_owned(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(write_err(archive_tmp))?;
    Ok(Tar {
        sha256,
        size,
        entries,
        skipped,
    })
}

/// Writes the manifest (pretty JSON) to the new file `manifest_tmp` and syncs it.
fn write_manifest(manifest: &Manifest, manifest_tmp: &Path) -> Result<(), ArchiveError> {
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| ArchiveError::Write {
        path: manifest_tmp.to_owned(),
        source: io::Error::other(e),
    })?;
    let mut mf = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(manifest_tmp)
        .map_err(write_err(manifest_tmp))?;
    mf.write_all(&json).map_err(write_err(manifest_tmp))?;
    mf.sync_all().map_err(write_err(manifest_tmp))
}

/// Maps an I/O error writing `path` to `ArchiveError::Write`.
fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_owned();
    move |source| ArchiveError::Write { path, source }
}

/// Maps an I/O error reading `path` to `ArchiveError::Read`.
fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_owned();
    move |source| ArchiveError::Read { path, source }
}

/// sha256 (hex) and length of a whole file.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
